import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DEFAULT_SEGMENT_SIZE,
  MAX_LSN,
  checkSegmentSize,
  compareSegments,
  formatLsn,
  isLsn,
  isValidSegmentSize,
  lsnToSegmentName,
  lsnToSegmentNumber,
  nextSegmentName,
  parseLsn,
  segmentDirName,
  segmentEndLsn,
  segmentName,
  segmentNumber,
  segmentStartLsn,
  segmentsPerLogId,
  timelineOf,
} from './index.js';
import { throwsWith } from '../testing/errors.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SIXTEEN = DEFAULT_SEGMENT_SIZE;

describe('LSNs', () => {
  const good: [string, bigint, string][] = [
    ['0/0', 0n, '0/0'],
    ['0/3000028', 0x3000028n, '0/3000028'],
    ['16/B374D848', 0x16_b374d848n, '16/B374D848'],
    ['16/b374d848', 0x16_b374d848n, '16/B374D848'],
    ['00000016/0B374D84', 0x16_0b374d84n, '16/B374D84'],
    ['1/0', 0x1_00000000n, '1/0'],
    ['FFFFFFFF/FFFFFFFF', MAX_LSN, 'FFFFFFFF/FFFFFFFF'],
  ];
  for (const [text, value, formatted] of good) {
    test(`parse ${text}`, () => {
      assert.equal(parseLsn(text), value);
      assert.equal(formatLsn(value), formatted);
      assert.equal(parseLsn(formatLsn(value)), value);
      assert.ok(isLsn(text));
    });
  }

  const bad = ['', '0', '16', '/1', '1/', '123456789/0', '0/123456789', ' 0/1', '0/1 ', '0x1/0', 'G/0', '-1/0', '1//0', '1/2/3', '0/1\n', '１/0'];
  for (const text of bad) {
    test(`refuse ${JSON.stringify(text)}`, () => {
      const err = throwsWith(() => parseLsn(text), 'USAGE', `invalid LSN ${JSON.stringify(text)}`);
      assert.equal(err.hint, 'expected X/Y in hex, e.g. 0/3000028');
      assert.ok(!isLsn(text));
    });
  }

  test('formatLsn refuses values that are not LSNs', () => {
    throwsWith(() => formatLsn(-1n), 'INTERNAL');
    throwsWith(() => formatLsn(MAX_LSN + 1n), 'INTERNAL');
  });
});

describe('segment sizes', () => {
  test('valid: powers of 2 from 1 MiB to 1 GiB', () => {
    for (let s = MiB; s <= GiB; s *= 2) {
      assert.ok(isValidSegmentSize(s));
      assert.equal(checkSegmentSize(s), s);
    }
  });
  test('invalid sizes are CONFIG_INVALID', () => {
    for (const s of [0, -16 * MiB, 1000, 512 * 1024, 3 * MiB, 2 * GiB, 16 * MiB + 0.5, NaN]) {
      assert.ok(!isValidSegmentSize(s));
      throwsWith(() => checkSegmentSize(s), 'CONFIG_INVALID', `invalid WAL segment size "${String(s)}"`);
    }
  });
  test('segments per log id', () => {
    assert.equal(segmentsPerLogId(16 * MiB), 256);
    assert.equal(segmentsPerLogId(GiB), 4);
    assert.equal(segmentsPerLogId(MiB), 4096);
    throwsWith(() => segmentsPerLogId(1234), 'CONFIG_INVALID');
  });
});

describe('segment arithmetic, 16 MiB', () => {
  const cases: [string, bigint][] = [
    ['000000010000000000000000', 0n],
    ['000000010000000000000001', 1n],
    ['0000000100000000000000FF', 255n],
    ['000000010000000100000000', 256n],
    ['000000010000000100000001', 257n],
    ['0000000A00000016000000B3', 0x16n * 256n + 0xb3n],
    ['00000001FFFFFFFF000000FF', 0xffffffffn * 256n + 255n],
  ];
  for (const [name, segno] of cases) {
    test(`${name} ⇄ ${segno}`, () => {
      assert.equal(segmentNumber(name, SIXTEEN), segno);
      assert.equal(segmentName(timelineOf(name), segno, SIXTEEN), name);
      assert.equal(segmentStartLsn(name, SIXTEEN), segno * BigInt(SIXTEEN));
      assert.equal(segmentEndLsn(name, SIXTEEN), (segno + 1n) * BigInt(SIXTEEN));
    });
  }

  test('next and previous across a log boundary', () => {
    assert.equal(nextSegmentName('0000000100000000000000FE', SIXTEEN), '0000000100000000000000FF');
    assert.equal(nextSegmentName('0000000100000000000000FF', SIXTEEN), '000000010000000100000000');
    assert.equal(nextSegmentName('000000010000000100000000', SIXTEEN, -1), '0000000100000000000000FF');
    assert.equal(nextSegmentName('0000000200000000000000FE', SIXTEEN, 3), '000000020000000100000001');
    assert.equal(nextSegmentName('000000020000000000000001', SIXTEEN, 0x1000n), '000000020000001000000001');
    assert.equal(nextSegmentName('000000020000000000000001', SIXTEEN, 0), '000000020000000000000001');
  });

  test('next refuses to leave the name space and non-segments', () => {
    throwsWith(() => nextSegmentName('000000010000000000000000', SIXTEEN, -1), 'USAGE');
    throwsWith(() => nextSegmentName('00000001FFFFFFFF000000FF', SIXTEEN), 'USAGE');
    throwsWith(() => nextSegmentName('000000010000000000000001.partial', SIXTEEN), 'USAGE', '"000000010000000000000001.partial" is not a WAL segment name');
    throwsWith(() => nextSegmentName('00000002.history', SIXTEEN), 'USAGE');
    throwsWith(() => nextSegmentName('garbage', SIXTEEN), 'USAGE', 'invalid WAL file name "garbage"');
  });

  test('a seg part beyond 0xFF does not exist with 16 MiB segments', () => {
    throwsWith(() => segmentNumber('000000010000000000000100', SIXTEEN), 'USAGE', 'invalid WAL segment name "000000010000000000000100" for a 16 MiB segment size');
  });

  test('segment-like names (partial, backup) have segment numbers too', () => {
    assert.equal(segmentNumber('000000010000000100000002.partial', SIXTEEN), 258n);
    assert.equal(segmentNumber('000000010000000100000002.00000028.backup', SIXTEEN), 258n);
    throwsWith(() => segmentNumber('00000001.history', SIXTEEN), 'USAGE', '"00000001.history" is not a WAL segment name');
  });

  test('LSN to segment (XLByteToSeg / XLByteToPrevSeg)', () => {
    assert.equal(lsnToSegmentName(1, parseLsn('16/B374D848'), SIXTEEN), '0000000100000016000000B3');
    assert.equal(lsnToSegmentName(1, parseLsn('0/3000028'), SIXTEEN), '000000010000000000000003');
    // On a boundary: the segment starting there, or (as an end) the one before.
    assert.equal(lsnToSegmentName(1, parseLsn('0/3000000'), SIXTEEN), '000000010000000000000003');
    assert.equal(lsnToSegmentName(1, parseLsn('0/3000000'), SIXTEEN, { end: true }), '000000010000000000000002');
    assert.equal(lsnToSegmentName(1, parseLsn('1/0'), SIXTEEN, { end: true }), '0000000100000000000000FF');
    assert.equal(lsnToSegmentName(3, parseLsn('1/0'), SIXTEEN), '000000030000000100000000');
    assert.equal(lsnToSegmentNumber(parseLsn('0/3000001'), SIXTEEN, { end: true }), 3n);
    assert.equal(lsnToSegmentName(1, MAX_LSN, SIXTEEN), '00000001FFFFFFFF000000FF');
    throwsWith(() => lsnToSegmentNumber(0n, SIXTEEN, { end: true }), 'INTERNAL');
  });
});

describe('segment arithmetic, 1 GiB', () => {
  test('names and numbers across a log boundary', () => {
    assert.equal(segmentNumber('000000010000000000000003', GiB), 3n);
    assert.equal(segmentNumber('000000010000000100000000', GiB), 4n);
    assert.equal(segmentNumber('000000010000000100000002', GiB), 6n);
    assert.equal(nextSegmentName('000000010000000000000003', GiB), '000000010000000100000000');
    assert.equal(nextSegmentName('000000010000000100000000', GiB, -1), '000000010000000000000003');
    assert.equal(segmentName(1, 6n, GiB), '000000010000000100000002');
    assert.equal(segmentStartLsn('000000010000000100000002', GiB), parseLsn('1/80000000'));
  });

  test('seg part 4 and above do not exist', () => {
    throwsWith(() => segmentNumber('000000010000000000000004', GiB), 'USAGE', 'invalid WAL segment name "000000010000000000000004" for a 1 GiB segment size');
  });

  test('LSN to segment', () => {
    // With any segment size the log part equals the LSN's high word.
    assert.equal(lsnToSegmentName(1, parseLsn('16/B374D848'), GiB), '000000010000001600000002');
    assert.equal(lsnToSegmentName(1, parseLsn('0/40000000'), GiB), '000000010000000000000001');
    assert.equal(lsnToSegmentName(1, parseLsn('0/40000000'), GiB, { end: true }), '000000010000000000000000');
  });

  test('round trip over many segment numbers and sizes', () => {
    for (const size of [MiB, 16 * MiB, 64 * MiB, GiB]) {
      for (const segno of [0n, 1n, 3n, 4n, 255n, 256n, 4095n, 4096n, 123456789n]) {
        const name = segmentName(7, segno, size);
        assert.equal(segmentNumber(name, size), segno);
        assert.equal(lsnToSegmentName(7, segmentStartLsn(name, size), size), name);
        assert.equal(lsnToSegmentName(7, segmentEndLsn(name, size), size, { end: true }), name);
      }
    }
  });
});

test('segmentDirName is timeline + log', () => {
  assert.equal(segmentDirName('0000000100000000000000FF'), '0000000100000000');
  assert.equal(segmentDirName('0000000A00000016000000B3'), '0000000A00000016');
  assert.equal(segmentDirName('0000000A00000016000000B3.partial'), '0000000A00000016');
  assert.equal(segmentDirName('0000000A00000016000000B3.00000028.backup'), '0000000A00000016');
  throwsWith(() => segmentDirName('0000000A.history'), 'USAGE');
  throwsWith(() => segmentDirName('../x'), 'USAGE');
});

test('compareSegments orders by timeline, then position; ties by whole name', () => {
  const names = [
    '000000020000000000000001',
    '000000010000000100000000',
    '0000000100000000000000FF',
    '000000010000000000000003.partial',
    '000000010000000000000003',
    '000000010000000000000003.00000028.backup',
    '000000010000000000000002',
  ];
  assert.deepEqual([...names].sort(compareSegments), [
    '000000010000000000000002',
    '000000010000000000000003',
    '000000010000000000000003.00000028.backup',
    '000000010000000000000003.partial',
    '0000000100000000000000FF',
    '000000010000000100000000',
    '000000020000000000000001',
  ]);
  assert.equal(compareSegments('000000010000000000000003', '000000010000000000000003'), 0);
});
