import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { throwsWith } from '../testing/errors.js';
import { addMonths, parseDuration } from './duration.js';

const at = (iso: string) => new Date(iso);

describe('parseDuration', () => {
  const cases: [string, string, string][] = [
    // text, now, expected "before"
    ['30s', '2026-11-21T12:00:00Z', '2026-11-21T11:59:30.000Z'],
    ['90min', '2026-11-21T12:00:00Z', '2026-11-21T10:30:00.000Z'],
    ['6h', '2026-11-21T02:00:00Z', '2026-11-20T20:00:00.000Z'],
    ['7d', '2026-03-03T00:00:00Z', '2026-02-24T00:00:00.000Z'],
    ['2w', '2026-01-10T00:00:00Z', '2025-12-27T00:00:00.000Z'],
    ['1d12h', '2026-11-21T12:00:00Z', '2026-11-20T00:00:00.000Z'],
    // calendar months: the day is clamped to the shorter month
    ['1mo', '2026-03-31T10:00:00Z', '2026-02-28T10:00:00.000Z'],
    ['1mo', '2028-03-31T10:00:00Z', '2028-02-29T10:00:00.000Z'],
    ['36mo', '2026-11-21T00:00:00Z', '2023-11-21T00:00:00.000Z'],
    ['1y', '2028-02-29T00:00:00Z', '2027-02-28T00:00:00.000Z'],
    ['13mo', '2026-01-15T00:00:00Z', '2024-12-15T00:00:00.000Z'],
    ['1y1d', '2026-01-01T00:00:00Z', '2024-12-31T00:00:00.000Z'],
    [' 5d ', '2026-01-06T00:00:00Z', '2026-01-01T00:00:00.000Z'],
  ];
  for (const [text, now, want] of cases) {
    test(`${JSON.stringify(text)} before ${now}`, () => {
      assert.equal(parseDuration(text).before(at(now)).toISOString(), want);
    });
  }

  test('after is the inverse for fixed units and moves calendar months forward', () => {
    assert.equal(parseDuration('1d12h').after(at('2026-11-20T00:00:00Z')).toISOString(), '2026-11-21T12:00:00.000Z');
    assert.equal(parseDuration('1mo').after(at('2026-01-31T00:00:00Z')).toISOString(), '2026-02-28T00:00:00.000Z');
  });

  test('keeps the text and splits months from fixed time', () => {
    const d = parseDuration('1y2mo3h', '--keep-within');
    assert.equal(d.text, '1y2mo3h');
    assert.equal(d.months, 14);
    assert.equal(d.ms, 3 * 3600_000);
  });

  test('a bare number is refused with a hint naming units', () => {
    const e = throwsWith(() => parseDuration('14', '--keep-within'), 'USAGE', 'invalid --keep-within "14": no unit');
    assert.match(e.hint!, /14d or 14h/);
  });

  test('"m" is refused as ambiguous', () => {
    const e = throwsWith(() => parseDuration('5m'), 'USAGE', 'invalid duration "5m": "m" could mean minutes or months');
    assert.match(e.hint!, /min for minutes or mo for months/);
  });

  for (const bad of ['', '5x', 'd', '1.5d', '-1d', '3d foo', '1 d']) {
    test(`${JSON.stringify(bad)} is refused`, () => {
      throwsWith(() => parseDuration(bad, '--debris-grace'), 'USAGE', /^invalid --debris-grace /);
    });
  }

  test('zero is refused', () => {
    throwsWith(() => parseDuration('0d'), 'USAGE', 'invalid duration "0d": zero length');
  });
});

describe('addMonths', () => {
  test('crosses year ends both ways', () => {
    assert.equal(addMonths(at('2026-01-31T05:00:00Z'), -2).toISOString(), '2025-11-30T05:00:00.000Z');
    assert.equal(addMonths(at('2025-12-31T05:00:00Z'), 2).toISOString(), '2026-02-28T05:00:00.000Z');
  });
});
