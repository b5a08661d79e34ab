// The checks an operator gives cairn-drill in `--check-sql FILE`: SQL
// statements, each ending with `;` at the end of a line, each expected to
// return one row whose first column is true, or — after a `-- expect: N rows`
// comment line — exactly N rows. Parsing and judging are pure; the tool runs
// the statements. Format documented in the README ("cairn-drill").

import { CairnError } from '../cli/errors.js';
import { quote } from '../wal/quote.js';

export type CheckExpectation = { kind: 'true' } | { kind: 'rows'; rows: number };

export interface CheckStatement {
  /** 1-based line of the statement's first line in the file: the check is named `sql:<line>`. */
  line: number;
  sql: string;
  expect: CheckExpectation;
}

const EXPECT_RE = /^\s*--\s*expect\s*:\s*(.*?)\s*$/i;
const EXPECT_VALUE_RE = /^(?:(true)|(\d{1,9})\s+rows?)$/i;

/**
 * Splits a check file into statements. A statement ends at a line whose last
 * non-blank character is `;` (or at the end of the file); `-- expect:` lines
 * before a statement set what it must return. Semicolons inside a line (in
 * strings, or several statements on one line) are left to PostgreSQL: a line
 * is never split. Throws USAGE naming the file and line on a bad expectation
 * or a file without statements.
 */
export function parseCheckSql(text: string, file: string): CheckStatement[] {
  const out: CheckStatement[] = [];
  let expect: CheckExpectation | undefined;
  let expectLine = 0;
  let buf: string[] = [];
  let first = 0;
  const flush = () => {
    const sql = buf.join('\n').trim().replace(/;\s*$/, '').trim();
    // A statement of comments alone is nothing to run.
    const meaningful = buf.some((l) => l.trim() !== '' && !l.trim().startsWith('--'));
    if (meaningful && sql !== '') {
      out.push({ line: first, sql, expect: expect ?? { kind: 'true' } });
      expect = undefined;
    }
    buf = [];
    first = 0;
  };
  const lines = text.split(/\r?\n/);
  lines.forEach((l, i) => {
    const m = EXPECT_RE.exec(l);
    if (m) {
      const v = EXPECT_VALUE_RE.exec(m[1]!);
      if (!v) {
        throw new CairnError('USAGE', `${quote(file)} line ${i + 1}: invalid expectation ${quote(m[1]!)}`, {
          hint: 'write "-- expect: true" (one row, first column true; the default) or "-- expect: N rows"',
        });
      }
      if (buf.some((b) => b.trim() !== '' && !b.trim().startsWith('--'))) {
        throw new CairnError('USAGE', `${quote(file)} line ${i + 1}: "-- expect:" inside a statement`, {
          hint: 'end the statement before with ";" at the end of its line; "-- expect:" goes on a line of its own before the statement it is for',
        });
      }
      expect = v[1] !== undefined ? { kind: 'true' } : { kind: 'rows', rows: Number(v[2]) };
      expectLine = i + 1;
      return;
    }
    if (buf.length === 0 && l.trim() === '') return;
    if (first === 0 && l.trim() !== '' && !l.trim().startsWith('--')) first = i + 1;
    buf.push(l);
    if (/;\s*$/.test(l) && !l.trim().startsWith('--')) flush();
  });
  flush();
  if (expect !== undefined) {
    throw new CairnError('USAGE', `${quote(file)} line ${expectLine}: "-- expect:" with no statement after it`, { hint: 'put the statement it is for after it, or remove the line' });
  }
  if (out.length === 0) {
    throw new CairnError('USAGE', `${quote(file)} holds no SQL statement`, { hint: 'write statements ending with ";", e.g. select count(*) > 0 from orders;' });
  }
  return out;
}

/** Judges what a statement returned (rows as arrays of column values, as pg's rowMode 'array' gives them). */
export function judgeCheck(stmt: CheckStatement, rows: unknown[][]): { ok: boolean; message: string } {
  const shown = firstLine(stmt.sql);
  if (stmt.expect.kind === 'rows') {
    const ok = rows.length === stmt.expect.rows;
    return { ok, message: `${quote(shown)} returned ${rows.length} row${rows.length === 1 ? '' : 's'}${ok ? '' : `, expected ${stmt.expect.rows}`}` };
  }
  if (rows.length !== 1) return { ok: false, message: `${quote(shown)} returned ${rows.length} rows, expected one row whose first column is true` };
  const v = rows[0]![0];
  // node-postgres gives booleans as booleans; a text 't' (a cast left out) is also PostgreSQL's true.
  const ok = v === true || v === 't';
  return { ok, message: `${quote(shown)} returned ${v === null || v === undefined ? 'null' : String(v)}${ok ? '' : ', expected true'}` };
}

function firstLine(sql: string): string {
  const l = sql.split('\n').find((x) => x.trim() !== '' && !x.trim().startsWith('--'))?.trim() ?? sql;
  return l.length > 80 ? l.slice(0, 77) + '...' : l;
}
