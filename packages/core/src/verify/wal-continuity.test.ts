import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatLsn } from '../wal/lsn.js';
import { segmentName } from '../wal/segment.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { checkWalContinuity, type WalBackup, type WalContinuityInput } from './wal-continuity.js';

const SEG = 16 * 1024 * 1024;
const seg = (tli: number, n: number) => segmentName(tli, BigInt(n), SEG);
const lsnAt = (n: number, off = 0x28) => formatLsn(BigInt(n) * BigInt(SEG) + BigInt(off));
const segs = (tli: number, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => seg(tli, from + i));
const without = (names: string[], ...drop: string[]) => names.filter((n) => !drop.includes(n));

function backup(id: string, tli: number, start: number, stop: number): WalBackup {
  return { id, timeline: tli, start: { lsn: lsnAt(start), wal: seg(tli, start), time: '' }, stop: { lsn: lsnAt(stop, 0x100), wal: seg(tli, stop), time: '' } };
}

/** A history entry: parent `tli` switched at `off` bytes into segment `n`. */
const sw = (tli: number, n: number, off = 0x1000): TimelineHistoryEntry => ({ timeline: tli, switchLsn: BigInt(n) * BigInt(SEG) + BigInt(off), reason: 'no recovery target specified' });

function input(o: Partial<WalContinuityInput>): WalContinuityInput {
  return { systemId: '7300000000000000001', segSize: SEG, segments: [], partials: [], histories: new Map(), backups: [], archive: true, ...o };
}

/** kind and subject of each problem, in order. */
const found = (i: WalContinuityInput) => checkWalContinuity(i).problems.map((p) => `${p.kind} ${p.subject}`);

const B1 = backup('20261121-020000F', 1, 3, 4);

describe('checkWalContinuity', () => {
  const cases: { name: string; in: Partial<WalContinuityInput>; want: string[] }[] = [
    { name: 'a whole archive on one timeline', in: { segments: segs(1, 1, 10), backups: [B1] }, want: [] },
    { name: 'no backups, no WAL', in: {}, want: [] },
    {
      name: 'a gap in the middle',
      in: { segments: without(segs(1, 1, 10), seg(1, 6), seg(1, 7)), backups: [B1] },
      want: [`wal-gap ${seg(1, 6)}`],
    },
    {
      name: 'WAL below the oldest backup may be gone (expire removed it)',
      in: { segments: [seg(1, 1), ...segs(1, 3, 8)], backups: [B1] },
      want: [],
    },
    {
      name: "a backup's own WAL missing is also a gap",
      in: { segments: without(segs(1, 1, 10), seg(1, 4)), backups: [B1] },
      want: [`backup-wal-missing ${B1.id}`, `wal-gap ${seg(1, 4)}`],
    },
    {
      name: "a backup's stop segment missing at the archive's end",
      in: { segments: segs(1, 3, 3), backups: [B1] },
      want: [`backup-wal-missing ${B1.id}`],
    },
    {
      name: 'without backups, from the first stored segment',
      in: { segments: without(segs(1, 5, 9), seg(1, 7)) },
      want: [`wal-gap ${seg(1, 7)}`],
    },
    {
      name: 'timeline 2 after a restore: timeline 1 goes on past the switch, timeline 2 starts at the switch segment',
      in: { segments: [...segs(1, 1, 12), ...segs(2, 6, 9)], histories: new Map([[2, [sw(1, 6)]]]), backups: [B1] },
      want: [],
    },
    {
      name: 'promotion of a standby: the parent ends with a .partial of the switch segment',
      in: { segments: [...segs(1, 1, 5), ...segs(2, 6, 9)], partials: [`${seg(1, 6)}.partial`], histories: new Map([[2, [sw(1, 6)]]]), backups: [B1] },
      want: [],
    },
    {
      name: 'a switch on a segment boundary needs the parent up to the segment before',
      in: { segments: [...segs(1, 1, 5), ...segs(2, 6, 9)], histories: new Map([[2, [sw(1, 6, 0)]]]), backups: [B1] },
      want: [],
    },
    {
      name: 'a gap on the parent after its newest full segment, before the .partial at the switch',
      in: { segments: [...segs(1, 1, 8), ...segs(2, 11, 14)], partials: [`${seg(1, 11)}.partial`], histories: new Map([[2, [sw(1, 11)]]]), backups: [B1] },
      want: [`wal-gap ${seg(1, 9)}`],
    },
    {
      name: 'the parent has no segment at the switch point',
      in: { segments: [...segs(1, 1, 5), ...segs(2, 6, 9)], histories: new Map([[2, [sw(1, 6)]]]), backups: [B1] },
      want: ['timeline-break timeline 2'],
    },
    {
      name: 'the switch lies below the oldest backup: the parent there may be expired',
      in: { segments: [...segs(2, 8, 12)], histories: new Map([[2, [sw(1, 6)]]]), backups: [backup('20261121-030000F', 2, 9, 9)] },
      want: [],
    },
    {
      name: "the child's first segment missing is a gap on the child",
      in: { segments: [...segs(1, 1, 12), ...segs(2, 7, 9)], histories: new Map([[2, [sw(1, 6)]]]), backups: [B1] },
      want: [`wal-gap ${seg(2, 6)}`],
    },
    {
      name: 'history file missing for a timeline with segments',
      in: { segments: [...segs(1, 1, 12), ...segs(2, 6, 9)], backups: [B1] },
      want: ['history-missing timeline 2'],
    },
    {
      name: 'history file missing for a timeline with only a backup',
      in: { segments: segs(1, 1, 12), backups: [B1, backup('20261121-030000F', 3, 9, 9)] },
      want: [`backup-wal-missing 20261121-030000F`, 'history-missing timeline 3'],
    },
    {
      name: "a parent's history file missing (timeline 3 names 2 as its parent)",
      in: { segments: [...segs(1, 1, 12), ...segs(3, 8, 9)], histories: new Map([[3, [sw(1, 6), sw(2, 8)]]]), backups: [B1] },
      want: ['history-missing timeline 2', 'timeline-break timeline 3'],
    },
    {
      name: 'an unreadable history file is not reported missing',
      in: { segments: [...segs(1, 1, 12), ...segs(2, 6, 9)], unreadableHistories: new Set([2]), backups: [B1] },
      want: [],
    },
    {
      name: "segments of a timeline before its history's switch point",
      in: { segments: [...segs(1, 1, 12), ...segs(2, 4, 9)], histories: new Map([[2, [sw(1, 6)]]]), backups: [B1] },
      want: ['history-mismatch timeline 2'],
    },
    {
      name: "a child's history that does not continue its parent's",
      in: {
        segments: [...segs(1, 1, 12), ...segs(2, 6, 9), ...segs(3, 8, 10)],
        histories: new Map([[2, [sw(1, 6)]], [3, [sw(1, 5), sw(2, 8)]]]),
        backups: [B1],
      },
      want: ['history-mismatch timeline 3'],
    },
    {
      name: 'three timelines that agree',
      in: {
        segments: [...segs(1, 1, 12), ...segs(2, 6, 9), ...segs(3, 8, 10)],
        histories: new Map([[2, [sw(1, 6)]], [3, [sw(1, 6), sw(2, 8)]]]),
        backups: [B1],
      },
      want: [],
    },
  ];
  for (const c of cases) {
    test(c.name, () => assert.deepEqual(found(input(c.in)), c.want));
  }

  test('a scoped run checks only the chosen backups and not the archive', () => {
    const other = backup('20261121-030000F', 1, 8, 9);
    const i = input({ segments: without(segs(1, 1, 12), seg(1, 6), seg(1, 9)), backups: [B1, other], checkBackups: new Set([B1.id]), archive: false });
    assert.deepEqual(found(i), []);
    assert.deepEqual(found({ ...i, checkBackups: new Set([other.id]) }), [`backup-wal-missing ${other.id}`]);
  });

  test('a gap before a child\'s switch names the child', () => {
    const [p] = checkWalContinuity(input({ segments: [...segs(1, 1, 8), ...segs(2, 11, 14)], partials: [`${seg(1, 11)}.partial`], histories: new Map([[2, [sw(1, 11)]]]), backups: [B1] })).problems;
    assert.match(p!.message, new RegExp(`^WAL "${seg(1, 9)}" to "${seg(1, 10)}" \\(2 segments\\) on timeline 1 of system \\d+ is missing \\(timeline 2 branches off in "${seg(1, 11)}"\\)$`));
  });

  test('messages name the range and what to do', () => {
    const { problems } = checkWalContinuity(input({ segments: without(segs(1, 1, 10), seg(1, 5), seg(1, 6)), backups: [B1] }));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!.message, new RegExp(`"${seg(1, 5)}" to "${seg(1, 6)}" \\(2 segments\\) on timeline 1 .* is missing`));
    assert.match(problems[0]!.hint, /cairn-wal-push/);
  });

  test('gaps across a log boundary (…FF → next log)', () => {
    const names = without(segs(1, 0xfe, 0x102), seg(1, 0xff), seg(1, 0x100));
    const { problems } = checkWalContinuity(input({ segments: names }));
    assert.deepEqual(problems.map((p) => p.subject), ['0000000100000000000000FF']);
    assert.match(problems[0]!.message, /"000000010000000100000000"/);
  });

  test('the timelines seen', () => {
    const r = checkWalContinuity(input({ segments: segs(1, 1, 3), histories: new Map([[3, [sw(1, 2), sw(2, 3)]]]) }));
    assert.deepEqual(r.timelines, [1, 2, 3]);
  });
});

describe('checkWalContinuity: not archived yet vs lost', () => {
  const NOW = new Date('2026-12-03T12:00:00Z');
  const ago = (s: number) => new Date(NOW.getTime() - s * 1000);
  /** Segments 1–10 of timeline 1 without 6 and 7; `ages` (seconds) per segment number, default an hour. */
  const archive = (ages: Record<number, number> = {}) => {
    const names = without(segs(1, 1, 10), seg(1, 6), seg(1, 7));
    return { segments: names, storedAt: new Map(names.map((n) => [n, ago(ages[Number.parseInt(n.slice(16), 16)] ?? 3600)])), now: NOW, backups: [B1] };
  };
  const cases: { name: string; in: Partial<WalContinuityInput>; problems: string[]; notes: number }[] = [
    { name: 'the segment after the gap is old: lost', in: { ...archive(), gapGraceMs: 300_000 }, problems: [`wal-gap ${seg(1, 6)}`], notes: 0 },
    { name: 'the segment after the gap is young (a push-ahead drain): a note', in: { ...archive({ 8: 30, 9: 20, 10: 10 }), gapGraceMs: 300_000 }, problems: [], notes: 1 },
    { name: 'young, but older than the grace period: lost', in: { ...archive({ 8: 400 }), gapGraceMs: 300_000 }, problems: [`wal-gap ${seg(1, 6)}`], notes: 0 },
    { name: 'only the newest segment young, the one after the gap old: lost', in: { ...archive({ 10: 5 }), gapGraceMs: 300_000 }, problems: [`wal-gap ${seg(1, 6)}`], notes: 0 },
    { name: 'grace 0: every gap is a problem', in: { ...archive({ 8: 1 }), gapGraceMs: 0 }, problems: [`wal-gap ${seg(1, 6)}`], notes: 0 },
    { name: 'no timestamps: every gap is a problem', in: { segments: without(segs(1, 1, 10), seg(1, 6), seg(1, 7)), backups: [B1], now: NOW, gapGraceMs: 300_000 }, problems: [`wal-gap ${seg(1, 6)}`], notes: 0 },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = checkWalContinuity(input(c.in));
      assert.deepEqual(r.problems.map((p) => `${p.kind} ${p.subject}`), c.problems);
      assert.equal(r.notes.length, c.notes);
      if (c.notes) assert.match(r.notes[0]!, /^WAL "000000010000000000000006" to "000000010000000000000007" \(2 segments\) on timeline 1 .* is not archived yet/);
    });
  }
});
