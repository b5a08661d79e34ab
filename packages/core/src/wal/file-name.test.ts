import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { groupByTimeline, historyFileName, isSegmentName, isWalFileName, parseWalFileName, sameTimeline, timelineOf, type WalFileName } from './index.js';
import { throwsWith } from '../testing/errors.js';

const HINT = 'expected a segment (24 hex digits), TTTTTTTT.history, <segment>.partial or <segment>.XXXXXXXX.backup';

describe('parseWalFileName accepts what PostgreSQL writes', () => {
  const good: [string, WalFileName][] = [
    [
      '000000010000000000000001',
      { name: '000000010000000000000001', kind: 'segment', timeline: 1, segment: '000000010000000000000001', log: 0, seg: 1 },
    ],
    [
      '0000000A00000016000000B3',
      { name: '0000000A00000016000000B3', kind: 'segment', timeline: 10, segment: '0000000A00000016000000B3', log: 0x16, seg: 0xb3 },
    ],
    [
      'FFFFFFFFFFFFFFFF00000FFF',
      { name: 'FFFFFFFFFFFFFFFF00000FFF', kind: 'segment', timeline: 0xffffffff, segment: 'FFFFFFFFFFFFFFFF00000FFF', log: 0xffffffff, seg: 0xfff },
    ],
    ['00000002.history', { name: '00000002.history', kind: 'history', timeline: 2 }],
    ['0000001F.history', { name: '0000001F.history', kind: 'history', timeline: 31 }],
    [
      '000000010000000000000003.partial',
      { name: '000000010000000000000003.partial', kind: 'partial', timeline: 1, segment: '000000010000000000000003', log: 0, seg: 3 },
    ],
    [
      '000000010000000000000002.00000028.backup',
      {
        name: '000000010000000000000002.00000028.backup',
        kind: 'backup',
        timeline: 1,
        segment: '000000010000000000000002',
        log: 0,
        seg: 2,
        backupOffset: '00000028',
      },
    ],
  ];
  for (const [name, want] of good) {
    test(name, () => {
      assert.deepEqual(parseWalFileName(name), want);
      assert.ok(isWalFileName(name));
    });
  }
});

describe('parseWalFileName refuses anything else', () => {
  const bad: [string, string][] = [
    ['', 'empty'],
    ['00000001000000000000000', '23 digits'],
    ['0000000100000000000000001', '25 digits'],
    ['00000001000000000000000a', 'lowercase hex'],
    ['0000000a.history', 'lowercase history'],
    ['000000010000000000000001.PARTIAL', 'uppercase suffix'],
    ['00000001.HISTORY', 'uppercase suffix'],
    ['../000000010000000000000001', 'path traversal'],
    ['pg_wal/000000010000000000000001', 'a path'],
    ['000000010000000000000001/..', 'a path'],
    ['..', 'dot dot'],
    ['.', 'dot'],
    ['/etc/passwd', 'absolute path'],
    ['000000010000000000000001\n', 'trailing newline'],
    [' 000000010000000000000001', 'leading space'],
    ['000000010000000000000001.gz', 'other suffix'],
    ['000000010000000000000001.zst', 'other suffix'],
    ['000000010000000000000001.ready', 'archive status'],
    ['000000010000000000000001.00000028.BACKUP', 'uppercase backup'],
    ['000000010000000000000001.0000028.backup', 'short offset'],
    ['000000010000000000000001.backup', 'backup without offset'],
    ['00000001.history.partial', 'history partial'],
    ['0000001.history', 'short history'],
    ['RECOVERYXLOG', 'the %p name'],
    ['RECOVERYHISTORY', 'the %p name'],
    ['0000000G0000000000000001', 'non-hex'],
    ['０００００００１0000000000000001', 'full-width digits'],
    ['000000010000000000000001\u0000', 'NUL'],
  ];
  for (const [name, why] of bad) {
    test(`${why}: ${JSON.stringify(name)}`, () => {
      const err = throwsWith(() => parseWalFileName(name), 'USAGE', `invalid WAL file name ${JSON.stringify(name)}`);
      assert.equal(err.hint, HINT);
      assert.ok(!isWalFileName(name));
    });
  }

  test('timeline 0 is refused with its own hint', () => {
    for (const name of ['000000000000000000000001', '00000000.history', '000000000000000000000001.partial', '000000000000000000000001.00000028.backup']) {
      const err = throwsWith(() => parseWalFileName(name), 'USAGE', `invalid WAL file name "${name}"`);
      assert.match(err.hint ?? '', /timelines start at 00000001/);
    }
  });

  test('a seg part no segment size allows (≥ 0x1000) is refused', () => {
    throwsWith(() => parseWalFileName('000000010000000000001000'), 'USAGE', 'invalid WAL file name "000000010000000000001000"');
    throwsWith(() => parseWalFileName('0000000100000000FFFFFFFF.partial'), 'USAGE');
  });

  test('control characters are escaped in the message', () => {
    const err = throwsWith(() => parseWalFileName('evil\nFATAL: fake'), 'USAGE');
    assert.equal(err.message, 'invalid WAL file name "evil\\nFATAL: fake"');
    assert.ok(!err.message.includes('\n'));
  });

  test('non-strings are refused, not crashed on', () => {
    throwsWith(() => parseWalFileName(undefined as unknown as string), 'USAGE');
    throwsWith(() => parseWalFileName(42 as unknown as string), 'USAGE');
  });
});

test('historyFileName', () => {
  assert.equal(historyFileName(1), '00000001.history');
  assert.equal(historyFileName(0x2a), '0000002A.history');
  assert.equal(historyFileName(0xffffffff), 'FFFFFFFF.history');
  throwsWith(() => historyFileName(0), 'INTERNAL');
  throwsWith(() => historyFileName(2 ** 32), 'INTERNAL');
});

describe('segment name helpers', () => {
  const cases: [string, boolean, number][] = [
    ['000000010000000000000003', true, 1],
    ['0000000A00000001000000FF', true, 10],
    ['FFFFFFFF0000000000000001', true, 0xffffffff],
    ['00000002.history', false, 2],
    ['000000030000000000000004.partial', false, 3],
    ['000000010000000000000003.00000028.backup', false, 1],
    ['00000001000000000000000', false, 1],
    ['000000010000000000000003a', false, 1],
    ['00000001000000000000000a', false, 1],
  ];
  for (const [name, segment, tli] of cases) {
    test(`${name}: segment ${segment}, timeline ${tli}`, () => {
      assert.equal(isSegmentName(name), segment);
      assert.equal(timelineOf(name), tli);
    });
  }
  test('sameTimeline compares the first 8 digits', () => {
    assert.ok(sameTimeline('000000010000000000000003', '00000001.history'));
    assert.ok(!sameTimeline('000000010000000000000003', '000000020000000000000003'));
  });
  test('groupByTimeline keeps the order met', () => {
    const names = ['000000010000000000000001', '000000020000000000000002', '000000010000000000000003', '00000002.history'];
    assert.deepEqual([...groupByTimeline(names, (n) => n)], [
      [1, ['000000010000000000000001', '000000010000000000000003']],
      [2, ['000000020000000000000002', '00000002.history']],
    ]);
  });
});
