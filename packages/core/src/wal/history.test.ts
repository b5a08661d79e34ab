import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  historyTimelines,
  parseLsn,
  parseTimelineHistory,
  timelineForLsn,
  timelineForSegment,
  timelinesForSegment,
  type TimelineSpan,
} from './index.js';
import { throwsWith } from '../testing/errors.js';

const SIXTEEN = 16 * 1024 * 1024;

// 00000003.history as PostgreSQL 15 writes it after two promotions: the
// parent's file copied, a blank line (writeTimeLineHistory's "\n" prefix),
// then the new line.
const HISTORY_3 =
  '1\t0/3000158\tno recovery target specified\n' +
  '\n' +
  '2\t0/5000060\tbefore 2024-05-01 12:00:00.000042+00\n';

describe('parseTimelineHistory', () => {
  test('a realistic file', () => {
    assert.deepEqual(parseTimelineHistory(HISTORY_3, '00000003.history'), [
      { timeline: 1, switchLsn: parseLsn('0/3000158'), reason: 'no recovery target specified' },
      { timeline: 2, switchLsn: parseLsn('0/5000060'), reason: 'before 2024-05-01 12:00:00.000042+00' },
    ]);
  });

  test('the format variations timeline.c accepts', () => {
    const text =
      '# a comment\r\n' +
      '   \t \n' +
      '  # an indented comment\n' +
      '1 0/3000158 reason with  spaces\r\n' +
      '2\t1/a0000b8\n' + // lowercase hex, no reason
      '5\t\t16/B374D848\t\tat restore point "nightly"'; // no final newline
    assert.deepEqual(parseTimelineHistory(text), [
      { timeline: 1, switchLsn: parseLsn('0/3000158'), reason: 'reason with  spaces' },
      { timeline: 2, switchLsn: parseLsn('1/A0000B8'), reason: '' },
      { timeline: 5, switchLsn: parseLsn('16/B374D848'), reason: 'at restore point "nightly"' },
    ]);
  });

  test('an empty file has no entries', () => {
    assert.deepEqual(parseTimelineHistory(''), []);
    assert.deepEqual(parseTimelineHistory('\n# nothing\n'), []);
  });

  const bad: [string, string, string][] = [
    ['no timeline', 'abc\t0/1\treason\n', 'line 1: expected a numeric timeline ID'],
    ['no switch point', '1\n', 'line 1: expected a write-ahead log switchpoint location'],
    ['bad switch point', '1\t0/3000158\n\n2\tzz/1\tx\n', 'line 3: expected a write-ahead log switchpoint location'],
    ['switch point without slash', '1\t3000158\n', 'line 1: expected a write-ahead log switchpoint location'],
    ['decreasing timelines', '2\t0/1\tx\n1\t0/2\tx\n', 'line 2: timeline IDs must be in increasing sequence (1 after 2)'],
    ['repeated timeline', '1\t0/1\tx\n1\t0/2\tx\n', 'line 2: timeline IDs must be in increasing sequence (1 after 1)'],
    ['timeline 0', '0\t0/1\tx\n', 'line 1: timeline ID 0 is out of range'],
    ['timeline too big', '4294967296\t0/1\tx\n', 'line 1: timeline ID 4294967296 is out of range'],
  ];
  for (const [name, text, why] of bad) {
    test(`refuses: ${name}`, () => {
      const err = throwsWith(() => parseTimelineHistory(text, '00000003.history'), 'FORMAT_INVALID', `invalid timeline history "00000003.history": ${why}`);
      assert.ok(err.hint);
    });
  }
});

describe('historyTimelines and the timeline of a position', () => {
  const spans = historyTimelines(parseTimelineHistory(HISTORY_3), 3);

  test('newest first, each with its range (expectedTLEs)', () => {
    assert.deepEqual(spans, [
      { timeline: 3, begin: parseLsn('0/5000060'), end: undefined },
      { timeline: 2, begin: parseLsn('0/3000158'), end: parseLsn('0/5000060') },
      { timeline: 1, begin: 0n, end: parseLsn('0/3000158') },
    ] satisfies TimelineSpan[]);
  });

  test('timeline 1 has no history file', () => {
    assert.deepEqual(historyTimelines([], 1), [{ timeline: 1, begin: 0n, end: undefined }]);
  });

  test('the target must be above every parent', () => {
    const entries = parseTimelineHistory(HISTORY_3);
    throwsWith(() => historyTimelines(entries, 2, '00000002.history'), 'FORMAT_INVALID',
      'invalid timeline history "00000002.history": parent timeline 2 is not below timeline 2');
    throwsWith(() => historyTimelines(entries, 0), 'INTERNAL');
  });

  test('timelineForLsn (tliOfPointInHistory): a switch point belongs to the child', () => {
    const cases: [string, number][] = [
      ['0/0', 1],
      ['0/3000157', 1],
      ['0/3000158', 2],
      ['0/5000059', 2],
      ['0/5000060', 3],
      ['FFFFFFFF/FFFFFFFF', 3],
    ];
    for (const [lsn, tli] of cases) assert.equal(timelineForLsn(spans, parseLsn(lsn)), tli, lsn);
  });

  test('timelineForSegment (XLogFileReadAnyTLI): the newest timeline that has the segment', () => {
    const cases: [bigint, number, number[]][] = [
      [1n, 1, [1]],
      [2n, 1, [1]],
      [3n, 2, [2, 1]], // 0/3000158 is in segment 3: it exists on 1 and 2, 2 wins
      [4n, 2, [2, 1]],
      [5n, 3, [3, 2, 1]],
      [1000n, 3, [3, 2, 1]],
    ];
    for (const [segno, tli, candidates] of cases) {
      assert.equal(timelineForSegment(spans, segno, SIXTEEN), tli, `segment ${segno}`);
      assert.deepEqual(timelinesForSegment(spans, segno, SIXTEEN), candidates, `segment ${segno}`);
    }
  });

  test('a switch exactly on a segment boundary', () => {
    // Promoted at 0/4000000: segment 4 is the child's first, 3 stays the parent's.
    const s = historyTimelines(parseTimelineHistory('1\t0/4000000\tno recovery target specified\n'), 2);
    assert.equal(timelineForSegment(s, 3n, SIXTEEN), 1);
    assert.equal(timelineForSegment(s, 4n, SIXTEEN), 2);
  });
});
