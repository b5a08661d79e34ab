import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryDriver } from '../storage/memory.js';
import { throwsWith } from '../testing/errors.js';
import { judgeCheck, parseCheckSql } from './check-sql.js';
import { dataAgeSeconds, judgeRecoveryTarget } from './judge.js';
import { compareDrillIds, DRILL_RESULT_FORMAT, readLatestDrillResult, storeDrillResult, type DrillResult } from './result-format.js';

describe('parseCheckSql', () => {
  test('statements end with ";" at a line end; expectations apply to the next statement only', () => {
    const text = [
      '-- orders are there',
      'select count(*) > 0',
      '  from orders;',
      '',
      '-- expect: 2 rows',
      "select * from t where v = 'a;b';",
      'select true; ',
      '-- expect: TRUE',
      'select 1 = 1',
    ].join('\n');
    assert.deepEqual(parseCheckSql(text, 'c.sql'), [
      { line: 2, sql: '-- orders are there\nselect count(*) > 0\n  from orders', expect: { kind: 'true' } },
      { line: 6, sql: "select * from t where v = 'a;b'", expect: { kind: 'rows', rows: 2 } },
      { line: 7, sql: 'select true', expect: { kind: 'true' } },
      { line: 9, sql: 'select 1 = 1', expect: { kind: 'true' } },
    ]);
  });

  test('comments alone are no statement; "-- expect: 0 rows" and "1 row"', () => {
    assert.deepEqual(parseCheckSql('-- expect: 0 rows\nselect 1 where false;\n-- expect: 1 row\nselect 1;\n-- the end\n', 'c.sql').map((s) => s.expect), [
      { kind: 'rows', rows: 0 },
      { kind: 'rows', rows: 1 },
    ]);
  });

  test('bad files are usage errors naming the file and line', () => {
    throwsWith(() => parseCheckSql('-- expect: some rows\nselect 1;', 'c.sql'), 'USAGE', '"c.sql" line 1: invalid expectation "some rows"');
    throwsWith(() => parseCheckSql('select 1;\n-- expect: true\n', 'c.sql'), 'USAGE', '"c.sql" line 2: "-- expect:" with no statement after it');
    throwsWith(() => parseCheckSql('select 1\n-- expect: true\nselect 2;', 'c.sql'), 'USAGE', '"c.sql" line 2: "-- expect:" inside a statement');
    throwsWith(() => parseCheckSql('-- nothing\n\n', 'c.sql'), 'USAGE', '"c.sql" holds no SQL statement');
  });
});

describe('judgeCheck', () => {
  const stmt = (expect: { kind: 'true' } | { kind: 'rows'; rows: number }) => ({ line: 1, sql: 'select x\nfrom t', expect });
  const cases: [string, ReturnType<typeof stmt>, unknown[][], boolean, string][] = [
    ['true', stmt({ kind: 'true' }), [[true]], true, '"select x" returned true'],
    ['false', stmt({ kind: 'true' }), [[false]], false, '"select x" returned false, expected true'],
    ['null', stmt({ kind: 'true' }), [[null]], false, '"select x" returned null, expected true'],
    ['text t', stmt({ kind: 'true' }), [['t']], true, '"select x" returned t'],
    ['no row', stmt({ kind: 'true' }), [], false, '"select x" returned 0 rows, expected one row whose first column is true'],
    ['two rows', stmt({ kind: 'true' }), [[true], [true]], false, '"select x" returned 2 rows, expected one row whose first column is true'],
    ['rows match', stmt({ kind: 'rows', rows: 2 }), [[1], [2]], true, '"select x" returned 2 rows'],
    ['rows differ', stmt({ kind: 'rows', rows: 0 }), [[1]], false, '"select x" returned 1 row, expected 0'],
  ];
  for (const [name, s, rows, ok, message] of cases) {
    test(name, () => assert.deepEqual(judgeCheck(s, rows), { ok, message }));
  }
});

describe('judgeRecoveryTarget', () => {
  const log = (...lines: string[]) => lines.map((l) => `2026-11-21 20:00:00.000 UTC [42] LOG:  ${l}`).join('\n');
  const time = { kind: 'time', value: '2026-11-21 20:00:00.000000+00' };
  test('a time target: the stopping line, and no commit after the target', () => {
    const stop = 'recovery stopping before commit of transaction 745, time 2026-11-21 20:00:01.5+00';
    assert.deepEqual(judgeRecoveryTarget(time, log('starting archive recovery', stop, 'archive recovery complete'), new Date('2026-11-21T19:59:59.9Z')), { ok: true, message: stop });
    assert.deepEqual(judgeRecoveryTarget(time, log(stop), new Date('2026-11-21T20:00:00.000Z')).ok, true, 'a commit at the target is inside it');
    const late = judgeRecoveryTarget(time, log(stop), new Date('2026-11-21T20:00:00.002Z'));
    assert.equal(late.ok, false);
    assert.match(late.message, /a commit of 2026-11-21T20:00:00.002Z \(after the target/);
  });
  test('no stopping line: not reached', () => {
    assert.deepEqual(judgeRecoveryTarget({ kind: 'name', value: 'before' }, log('archive recovery complete'), null), {
      ok: false,
      message: 'the server log does not show recovery stopping at the target (name before)',
    });
  });
  test('latest: the archive recovery ended', () => {
    assert.equal(judgeRecoveryTarget({ kind: 'latest' }, log('selected new timeline ID: 2', 'archive recovery complete'), null).ok, true);
    assert.equal(judgeRecoveryTarget({ kind: 'latest' }, log('redo starts at 0/2000028'), null).ok, false);
  });
});

describe('dataAgeSeconds', () => {
  const start = new Date('2026-11-21T21:00:00Z');
  test('time target: from the target; others: from the drill start; unknown without a commit', () => {
    assert.equal(dataAgeSeconds({ kind: 'time', value: '2026-11-21 20:00:00.500000+00' }, start, new Date('2026-11-21T19:59:58.250Z')), 2.25);
    assert.equal(dataAgeSeconds({ kind: 'latest' }, start, new Date('2026-11-21T20:59:00Z')), 60);
    assert.equal(dataAgeSeconds({ kind: 'xid', value: '900' }, start, new Date('2026-11-21T20:00:00Z')), 3600);
    assert.equal(dataAgeSeconds({ kind: 'latest' }, start, null), null);
  });
  test('a latest drill that replays commits made after it started: age 0, never negative', () => {
    assert.equal(dataAgeSeconds({ kind: 'latest' }, start, new Date('2026-11-21T21:00:01.502Z')), 0);
  });
});

describe('drill results in the repository', () => {
  const result = (id: string, ok: boolean): DrillResult => ({
    format: DRILL_RESULT_FORMAT, id, cluster: 'main', repo: 'memory://x', kind: 'backup', backup: '20261121-020000F', dump: null,
    target: { kind: 'latest', value: null, timeline: 1 }, ok, checks: [], restoreSeconds: 1, replaySeconds: 1, rtoSeconds: 2,
    dataAgeSeconds: 3, newestCommit: null, start: { time: '' }, stop: { time: '' },
  });
  test('stored once per drill, same second suffixed, the newest read back', async () => {
    const d = new MemoryDriver();
    assert.equal(await readLatestDrillResult(d, 'main'), undefined);
    assert.equal(await storeDrillResult(d, result('20261121-200000', true)), 'main/drills/20261121-200000.json');
    const second = result('20261121-200000', false);
    assert.equal(await storeDrillResult(d, second), 'main/drills/20261121-200000-2.json');
    assert.equal(second.id, '20261121-200000-2');
    assert.deepEqual(await readLatestDrillResult(d, 'main'), second);
    await d.write('main/drills/notes.txt', Buffer.from('x'));
    assert.equal((await readLatestDrillResult(d, 'main'))?.id, '20261121-200000-2');
    await storeDrillResult(d, result('20261121-190000', true));
    assert.equal((await readLatestDrillResult(d, 'main'))?.id, '20261121-200000-2', 'the newest by time, not by write order');
  });
  test('ids order by time, then by suffix', () => {
    const ids = ['20261121-200000-10', '20261121-200000', '20261121-195959', '20261121-200000-2'];
    assert.deepEqual(ids.sort(compareDrillIds), ['20261121-195959', '20261121-200000', '20261121-200000-2', '20261121-200000-10']);
  });
});
