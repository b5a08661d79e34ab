// Durations as operators write them (`7d`, `36mo`, `1d12h`, `90min`) for
// retention windows and timeouts. Months and years are calendar units, so
// "1mo before March 31" is the last day of February, not 30 days back.

import { CairnError } from '../cli/errors.js';
import { quote } from '../wal/quote.js';

export type DurationUnit = 's' | 'min' | 'h' | 'd' | 'w' | 'mo' | 'y';

const FIXED_MS: Record<Exclude<DurationUnit, 'mo' | 'y'>, number> = {
  s: 1000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

export interface Duration {
  /** The text as given (trimmed), for messages and plans. */
  text: string;
  /** Calendar months (years count 12). */
  months: number;
  /** Everything else, in milliseconds. */
  ms: number;
  /** The moment this long before `date`: calendar months first, then the fixed part. */
  before(date: Date): Date;
  /** The moment this long after `date`. */
  after(date: Date): Date;
}

const PART_RE = /(\d+)(min|mo|[smhdwy])/gy;
const UNIT_HINT = 'write a number and a unit: s, min, h, d, w, mo (months), y; combine them as in 1d12h';

/**
 * Parses `7d`, `2w`, `36mo`, `1y`, `90min`, `1d12h`. Throws USAGE naming
 * `what` (e.g. "--keep-within") for a bare number, an unknown unit, `m`
 * (minutes or months?) or a zero duration.
 */
export function parseDuration(text: string, what = 'duration'): Duration {
  const t = text.trim();
  const bad = (why: string, hint = UNIT_HINT) => new CairnError('USAGE', `invalid ${what} ${quote(text)}: ${why}`, { hint });
  if (t === '') throw bad('empty');
  if (/^\d+(\.\d+)?$/.test(t)) throw bad('no unit', `a bare number is ambiguous: ${UNIT_HINT} (e.g. ${t}d or ${t}h)`);
  let months = 0;
  let ms = 0;
  let pos = 0;
  PART_RE.lastIndex = 0;
  for (let m = PART_RE.exec(t); m !== null; m = PART_RE.exec(t)) {
    const n = Number(m[1]);
    const unit = m[2] as DurationUnit | 'm';
    if (unit === 'm') throw bad('"m" could mean minutes or months', 'write min for minutes or mo for months');
    if (unit === 'mo') months += n;
    else if (unit === 'y') months += 12 * n;
    else ms += n * FIXED_MS[unit];
    pos = PART_RE.lastIndex;
  }
  if (pos !== t.length) throw bad(`cannot read ${quote(t.slice(pos))}`);
  if (!Number.isSafeInteger(ms) || months > 12 * 10_000) throw bad('too long');
  if (months === 0 && ms === 0) throw bad('zero length', 'give a duration longer than zero, e.g. 1h');
  return {
    text: t,
    months,
    ms,
    before: (date) => new Date(addMonths(date, -months).getTime() - ms),
    after: (date) => new Date(addMonths(date, months).getTime() + ms),
  };
}

/**
 * `date` moved by `n` calendar months in UTC, the day clamped to the target
 * month's last day (Mar 31 − 1 month = Feb 28 or 29), time of day kept.
 */
export function addMonths(date: Date, n: number): Date {
  if (n === 0) return new Date(date.getTime());
  const total = date.getUTCFullYear() * 12 + date.getUTCMonth() + n;
  const year = Math.floor(total / 12);
  const month = total - year * 12;
  const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  const d = new Date(date.getTime());
  d.setUTCFullYear(year, month, Math.min(date.getUTCDate(), lastDay));
  return d;
}
