import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { throwsWith } from '../testing/errors.js';
import { MANIFEST_FORMAT, parseBackupId, type BackupSummary } from '../backup/manifest.js';
import { formatLsn, parseLsn } from '../wal/lsn.js';
import { segmentName } from '../wal/segment.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { PLAN_FORMAT, type PlanWalRange, type RecoveryTarget } from './plan-format.js';
import { parsePlan } from './parse-plan.js';
import { planRestore, type PlanInput } from './planner.js';
import { parseTarget, TARGET_SETTINGS } from './target.js';
import type { Settings } from '../config/settings.js';

const SEG = 16 * 1024 * 1024;
const SYS = '7312345678901234567';
const SYS2 = '7400000000000000001';
const REPO = 'memory://plan-test';
const NOW = new Date('2026-12-01T00:00:00Z');

/** An LSN `off` bytes into segment number `seg`. */
const lsnAt = (seg: number, off = 0x28) => formatLsn(BigInt(seg) * BigInt(SEG) + BigInt(off));
const seg = (tli: number, n: number) => segmentName(tli, BigInt(n), SEG);
/** Segment n of any timeline was archived at 2026-11-21 n:30 UTC (hours past midnight). */
const archivedAt = (n: number) => new Date(Date.UTC(2026, 10, 21, 0, 30) + n * 3600_000);

interface BackupSpec {
  id: string;
  tli?: number;
  start: number;
  stop: number;
  /** Default: 10 minutes after the start (the id's time). */
  stopTime?: string;
  parent?: string;
  system?: string;
}

/** A BackupSummary as basebackup writes it: start at the id's time, 0x28 into `start`, stop 0x100 into `stop`. */
function backup(o: BackupSpec): BackupSummary {
  const { time, type } = parseBackupId(o.id);
  const tli = o.tli ?? 1;
  return {
    format: MANIFEST_FORMAT,
    tool: { name: 'cairn-basebackup', version: '0.1.0' },
    id: o.id,
    type,
    parent: o.parent ?? null,
    references: o.parent ? [o.parent] : [],
    source: 'local',
    cluster: 'main',
    systemId: o.system ?? SYS,
    pgVersionNum: 170002,
    pgMajor: '17',
    walSegmentSize: SEG,
    timeline: tli,
    start: { time: time.toISOString(), lsn: lsnAt(o.start), wal: seg(tli, o.start) },
    stop: { time: o.stopTime ?? new Date(time.getTime() + 600_000).toISOString(), lsn: lsnAt(o.stop, 0x100), wal: seg(tli, o.stop) },
    checkpointLsn: lsnAt(o.start, 0x60),
    compress: 'zstd:3',
    encrypted: false,
    dataChecksums: true,
    tablespaces: [],
    totals: { size: 1, storedSize: 1, filesStored: 1, filesReferenced: 0, badPages: 0 },
    durationSeconds: 600,
  };
}

/** Stored segments: [timeline, first, last] ranges, minus `without`. */
function walOf(ranges: [number, number, number][], without: string[] = []): Map<string, { mtime: Date }> {
  const m = new Map<string, { mtime: Date }>();
  for (const [tli, from, to] of ranges) {
    for (let n = from; n <= to; n++) m.set(seg(tli, n), { mtime: archivedAt(n) });
  }
  for (const w of without) m.delete(w);
  return m;
}

const hist = (...entries: [number, string][]): TimelineHistoryEntry[] =>
  entries.map(([timeline, lsn]) => ({ timeline, switchLsn: parseLsn(lsn), reason: 'no recovery target specified' }));

/** Target settings as the flags give them (defaults filled in). */
function target(s: Settings = {}): { target: RecoveryTarget; set?: string } {
  return parseTarget({ ...Object.fromEntries(TARGET_SETTINGS.map((d) => [d.name, d.default])), ...s });
}

interface Catalog {
  backups: BackupSummary[];
  wal: Map<string, Map<string, { mtime: Date }>>;
  histories?: Map<string, Map<number, TimelineHistoryEntry[]>>;
}

function plan(cat: Catalog, s: Settings = {}) {
  const t = target(s);
  const input: PlanInput = {
    cluster: 'main',
    repo: REPO,
    backups: cat.backups,
    wal: cat.wal,
    histories: cat.histories ?? new Map(),
    target: t.target,
    ...(t.set ? { set: t.set } : {}),
    now: NOW,
  };
  return planRestore(input);
}

const range = (tli: number, from: number, to: number): PlanWalRange => ({ timeline: tli, from: seg(tli, from), to: seg(tli, to), segments: to - from + 1 });

// ---- one timeline ----------------------------------------------------------

// A: 02:00–02:10 in segments 2–3; B: 05:00–05:10 in 5–6; WAL 1–9 archived
// at n:30.
const A = backup({ id: '20261121-020000F', start: 2, stop: 3 });
const B = backup({ id: '20261121-050000F', start: 5, stop: 6 });
const ONE: Catalog = { backups: [A, B], wal: new Map([[SYS, walOf([[1, 1, 9]])]]) };

describe('planRestore: one timeline', () => {
  const cases: {
    name: string;
    settings: Settings;
    backup: string;
    wal: PlanWalRange[];
    settingsOut: Record<string, string>;
    warnings?: RegExp;
  }[] = [
    { name: 'latest: the newest backup, to the end of the archive', settings: {}, backup: B.id, wal: [range(1, 5, 9)], settingsOut: { recovery_target_timeline: '1' } },
    {
      name: 'immediate: to the backup\'s stop segment',
      settings: { target: 'immediate' },
      backup: B.id,
      wal: [range(1, 5, 6)],
      settingsOut: { recovery_target: 'immediate', recovery_target_timeline: '1', recovery_target_action: 'pause' },
    },
    {
      name: 'time between the backups: the older one, to the segment after the first one archived after the target (archive lag)',
      settings: { 'target-time': '2026-11-21 04:00:00+00' },
      backup: A.id,
      wal: [range(1, 2, 5)],
      settingsOut: { recovery_target_time: '2026-11-21 04:00:00.000000+00', recovery_target_timeline: '1', recovery_target_action: 'pause' },
    },
    {
      name: 'time exactly at a backup\'s end, inclusive: that backup',
      settings: { 'target-time': '2026-11-21T05:10:00Z', 'target-action': 'promote' },
      backup: B.id,
      wal: [range(1, 5, 7)], // segment 6, archived 06:30, reaches past 05:10; 7 in case 6 was archived late
      settingsOut: { recovery_target_time: '2026-11-21 05:10:00.000000+00', recovery_target_timeline: '1', recovery_target_action: 'promote' },
    },
    {
      name: 'time exactly at a backup\'s end, exclusive: the one before',
      settings: { 'target-time': '2026-11-21T05:10:00Z', 'target-exclusive': true },
      backup: A.id,
      wal: [range(1, 2, 6)],
      settingsOut: { recovery_target_time: '2026-11-21 05:10:00.000000+00', recovery_target_timeline: '1', recovery_target_action: 'pause', recovery_target_inclusive: 'off' },
    },
    {
      name: 'time after the newest archived WAL: to the end, with a warning',
      settings: { 'target-time': '2026-11-22 00:00:00+00' },
      backup: B.id,
      wal: [range(1, 5, 9)],
      settingsOut: { recovery_target_time: '2026-11-22 00:00:00.000000+00', recovery_target_timeline: '1', recovery_target_action: 'pause' },
      warnings: /target may lie beyond the newest archived segment "000000010000000000000009"/,
    },
    {
      name: 'LSN after B: B, to the segment holding the target',
      settings: { 'target-lsn': lsnAt(8, 0x1234) },
      backup: B.id,
      wal: [range(1, 5, 8)],
      settingsOut: { recovery_target_lsn: lsnAt(8, 0x1234), recovery_target_timeline: '1', recovery_target_action: 'pause' },
    },
    {
      name: 'LSN exactly at B\'s stop: B',
      settings: { 'target-lsn': B.stop.lsn },
      backup: B.id,
      wal: [range(1, 5, 6)],
      settingsOut: { recovery_target_lsn: B.stop.lsn, recovery_target_timeline: '1', recovery_target_action: 'pause' },
    },
    {
      name: 'LSN inside B: A',
      settings: { 'target-lsn': lsnAt(5, 0x1000), 'target-exclusive': true },
      backup: A.id,
      wal: [range(1, 2, 5)],
      settingsOut: { recovery_target_lsn: lsnAt(5, 0x1000), recovery_target_timeline: '1', recovery_target_action: 'pause', recovery_target_inclusive: 'off' },
    },
    {
      name: 'xid: the newest, to the end of the archive',
      settings: { 'target-xid': '1234' },
      backup: B.id,
      wal: [range(1, 5, 9)],
      settingsOut: { recovery_target_xid: '1234', recovery_target_timeline: '1', recovery_target_action: 'pause' },
    },
    {
      name: 'restore point: the newest, to the end of the archive',
      settings: { 'target-name': 'nightly', 'target-action': 'shutdown' },
      backup: B.id,
      wal: [range(1, 5, 9)],
      settingsOut: { recovery_target_name: 'nightly', recovery_target_timeline: '1', recovery_target_action: 'shutdown' },
    },
    { name: '--set an older backup', settings: { set: A.id }, backup: A.id, wal: [range(1, 2, 9)], settingsOut: { recovery_target_timeline: '1' } },
    {
      name: '--set with a time target after it',
      settings: { set: A.id, 'target-time': '2026-11-21 06:00:00+00' },
      backup: A.id,
      wal: [range(1, 2, 7)],
      settingsOut: { recovery_target_time: '2026-11-21 06:00:00.000000+00', recovery_target_timeline: '1', recovery_target_action: 'pause' },
    },
    { name: 'timeline current', settings: { 'target-timeline': 'current' }, backup: B.id, wal: [range(1, 5, 9)], settingsOut: { recovery_target_timeline: '1' } },
    { name: 'timeline 1 (no history file needed)', settings: { 'target-timeline': '1' }, backup: B.id, wal: [range(1, 5, 9)], settingsOut: { recovery_target_timeline: '1' } },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const p = plan(ONE, c.settings);
      assert.equal(p.backup.id, c.backup);
      assert.deepEqual(p.wal, c.wal);
      assert.equal(p.walEnd, c.wal.at(-1)!.to);
      assert.deepEqual(p.recoverySettings, c.settingsOut);
      assert.equal(p.targetTimeline, 1);
      assert.deepEqual(p.timelines, [1]);
      if (c.warnings) assert.match(p.warnings.join('\n'), c.warnings);
      else assert.deepEqual(p.warnings, []);
    });
  }

  test('the whole plan', () => {
    const p = plan(ONE, { 'target-time': '2026-11-21 04:00:00+00' });
    assert.deepEqual(p, {
      format: PLAN_FORMAT,
      createdAt: '2026-12-01T00:00:00.000Z',
      cluster: 'main',
      repo: REPO,
      systemId: SYS,
      pgMajor: '17',
      walSegmentSize: SEG,
      backup: {
        id: A.id,
        type: 'full',
        timeline: 1,
        startLsn: '0/2000028',
        stopLsn: '0/3000100',
        startTime: '2026-11-21T02:00:00.000Z',
        stopTime: '2026-11-21T02:10:00.000Z',
        startWal: '000000010000000000000002',
        stopWal: '000000010000000000000003',
      },
      chain: [A.id],
      target: { kind: 'time', value: '2026-11-21 04:00:00.000000+00', timeline: 'latest', action: 'pause', inclusive: true },
      targetTimeline: 1,
      timelines: [1],
      wal: [{ timeline: 1, from: '000000010000000000000002', to: '000000010000000000000005', segments: 4 }],
      walEnd: '000000010000000000000005',
      recoverySettings: { recovery_target_time: '2026-11-21 04:00:00.000000+00', recovery_target_timeline: '1', recovery_target_action: 'pause' },
      warnings: [],
    });
  });

  const errors: { name: string; cat?: Catalog; settings: Settings; code?: 'NOT_FOUND' | 'FORMAT_INVALID'; msg: string | RegExp }[] = [
    {
      name: 'no backup ends before the target time',
      settings: { 'target-time': '2026-11-21 01:00:00+00' },
      msg: 'no backup ends before time 2026-11-21 01:00:00.000000+00; the oldest ends at 2026-11-21 02:10:00.000000+00 (backup "20261121-020000F")',
    },
    {
      name: 'no backup ends before the target LSN',
      settings: { 'target-lsn': '0/3000000' },
      msg: 'no backup ends before LSN 0/3000000; the oldest ends at 0/3000100 (backup "20261121-020000F")',
    },
    {
      name: '--set a backup that ends after the target time',
      settings: { set: B.id, 'target-time': '2026-11-21 05:05:00+00' },
      msg: 'backup "20261121-050000F" ends at 2026-11-21 05:10:00.000000+00, after the target time 2026-11-21 05:05:00.000000+00',
    },
    {
      name: '--set a backup that ends after the target LSN',
      settings: { set: B.id, 'target-lsn': lsnAt(6) },
      msg: 'backup "20261121-050000F" ends at LSN 0/6000100, after the target LSN 0/6000028',
    },
    {
      name: '--set a backup that does not exist',
      settings: { set: '20261121-030000F' },
      msg: 'backup "20261121-030000F" is not in cluster "main" of repository "memory://plan-test"',
    },
    {
      name: 'a missing segment in the middle is named',
      cat: { backups: [A, B], wal: new Map([[SYS, walOf([[1, 1, 9]], [seg(1, 7), seg(1, 8)])]]) },
      settings: {},
      msg: 'WAL segment "000000010000000000000007" needed to restore backup "20261121-050000F" to the end of the archived WAL (latest) on timeline 1 is missing from repository "memory://plan-test"',
    },
    {
      name: 'a missing segment of the backup itself',
      cat: { backups: [A, B], wal: new Map([[SYS, walOf([[1, 1, 9]], [seg(1, 6)])]]) },
      settings: { target: 'immediate' },
      msg: 'WAL segment "000000010000000000000006" needed to restore backup "20261121-050000F" to the end of the backup (immediate) on timeline 1 is missing from repository "memory://plan-test"',
    },
    {
      name: 'a time target with a gap before later WAL',
      cat: { backups: [A, B], wal: new Map([[SYS, walOf([[1, 1, 9]], [seg(1, 8)])]]) },
      settings: { 'target-time': '2026-11-22 00:00:00+00' },
      msg: /^WAL segment "000000010000000000000008" needed to restore backup "20261121-050000F" to time 2026-11-22 00:00:00.000000\+00 on timeline 1 is missing/,
    },
    {
      name: 'an LSN target past the archive',
      settings: { 'target-lsn': lsnAt(12) },
      msg: /^WAL segment "00000001000000000000000A" needed to restore backup "20261121-050000F" to LSN 0\/C000028 on timeline 1 is missing/,
    },
    {
      name: 'no backups',
      cat: { backups: [], wal: new Map() },
      settings: {},
      msg: 'no backups in cluster "main" of repository "memory://plan-test"',
    },
    {
      name: 'a timeline without a history file',
      settings: { 'target-timeline': '3' },
      msg: /^no backup can be restored along target timeline 3: timeline 3 has no history file "00000003.history" in repository "memory:\/\/plan-test"/,
    },
  ];
  for (const c of errors) {
    test(`refuses: ${c.name}`, () => {
      const e = throwsWith(() => plan(c.cat ?? ONE, c.settings), c.code ?? 'NOT_FOUND', c.msg);
      assert.ok(e.hint, 'every refusal says what to do');
    });
  }

  test('hints tell a gap in the backup from one after it', () => {
    const inBackup = throwsWith(() => plan({ backups: [B], wal: new Map([[SYS, walOf([[1, 1, 9]], [seg(1, 6)])]]) }), 'NOT_FOUND');
    assert.match(inBackup.hint!, /cannot become consistent/);
    const after = throwsWith(() => plan({ backups: [B], wal: new Map([[SYS, walOf([[1, 1, 9]], [seg(1, 7)])]]) }), 'NOT_FOUND');
    assert.match(after.hint!, /earlier target/);
  });

  test('WAL across a log boundary (…000000FF → …0000000100000000)', () => {
    const b = backup({ id: '20261121-020000F', start: 0xFE, stop: 0xFF });
    const p = plan({ backups: [b], wal: new Map([[SYS, walOf([[1, 0xFD, 0x101]])]]) });
    assert.deepEqual(p.wal, [{ timeline: 1, from: '0000000100000000000000FE', to: '000000010000000100000001', segments: 4 }]);
  });

  test('names other than segments in the listing are ignored', () => {
    const wal = walOf([[1, 1, 9]]);
    wal.set('000000010000000000000009.partial', { mtime: archivedAt(10) });
    wal.set('00000001000000000000000C.00000028.backup', { mtime: archivedAt(12) });
    assert.equal(plan({ backups: [A, B], wal: new Map([[SYS, wal]]) }).walEnd, seg(1, 9));
  });
});

// ---- timelines ---------------------------------------------------------------

// Timeline 2 branched off 1 at 0/7000100 (segment 7). The old primary went on
// writing timeline 1 to segment 9. C was taken on timeline 2.
const SWITCH_2 = '0/7000100';
const C = backup({ id: '20261121-090000F', tli: 2, start: 9, stop: 10 });
const D = backup({ id: '20261121-080000F', tli: 1, start: 8, stop: 8 }); // on 1, after the branch
const E = backup({ id: '20261121-063000F', tli: 1, start: 6, stop: 8, stopTime: '2026-11-21T08:05:00Z' }); // across the branch
const TWO_WAL = walOf([[1, 1, 9], [2, 7, 12]]);
const TWO_HIST = new Map([[SYS, new Map([[2, hist([1, SWITCH_2])]])]]);
const TWO: Catalog = { backups: [A, B, C], wal: new Map([[SYS, TWO_WAL]]), histories: TWO_HIST };

describe('planRestore: timelines', () => {
  const cases: {
    name: string;
    cat?: Catalog;
    settings: Settings;
    backup: string;
    tli: number;
    timelines: number[];
    wal: PlanWalRange[];
  }[] = [
    { name: 'latest: the newest backup, on timeline 2', settings: {}, backup: C.id, tli: 2, timelines: [2], wal: [range(2, 9, 12)] },
    {
      name: 'a backup on 1 to latest: the switch-point segment comes from timeline 2',
      settings: { set: A.id },
      backup: A.id,
      tli: 2,
      timelines: [1, 2],
      wal: [range(1, 2, 6), range(2, 7, 12)],
    },
    {
      name: 'timeline current stays on 1 (the old primary\'s later segments too)',
      settings: { set: A.id, 'target-timeline': 'current' },
      backup: A.id,
      tli: 1,
      timelines: [1],
      wal: [range(1, 2, 9)],
    },
    { name: 'timeline 2 by number', settings: { 'target-timeline': '2', set: B.id }, backup: B.id, tli: 2, timelines: [1, 2], wal: [range(1, 5, 6), range(2, 7, 12)] },
    {
      name: 'timeline 1 by number: the newest backup on it',
      settings: { 'target-timeline': '1' },
      backup: B.id,
      tli: 1,
      timelines: [1],
      wal: [range(1, 5, 9)],
    },
    {
      name: 'an LSN on timeline 1 before the switch, following timeline 2',
      settings: { 'target-lsn': lsnAt(6, 0x2000) },
      backup: B.id,
      tli: 2,
      timelines: [1, 2],
      wal: [range(1, 5, 6)],
    },
    {
      name: 'an LSN in the switch-point segment is read from timeline 2',
      settings: { 'target-lsn': lsnAt(7, 0x80) },
      backup: B.id,
      tli: 2,
      timelines: [1, 2],
      wal: [range(1, 5, 6), range(2, 7, 7)],
    },
    {
      name: 'a time target on timeline 2, before C ended: B',
      settings: { 'target-time': '2026-11-21 08:00:00+00' },
      backup: B.id,
      tli: 2,
      timelines: [1, 2],
      wal: [range(1, 5, 6), range(2, 7, 9)],
    },
    {
      name: 'backups on 1 after the branch are passed over for latest',
      cat: { backups: [A, B, D, E], wal: new Map([[SYS, TWO_WAL]]), histories: TWO_HIST },
      settings: {},
      backup: B.id,
      tli: 2,
      timelines: [1, 2],
      wal: [range(1, 5, 6), range(2, 7, 12)],
    },
    {
      name: '... but taken on timeline current',
      cat: { backups: [A, B, D, E], wal: new Map([[SYS, TWO_WAL]]), histories: TWO_HIST },
      settings: { 'target-timeline': 'current' },
      backup: D.id,
      tli: 1,
      timelines: [1],
      wal: [range(1, 8, 9)],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const p = plan(c.cat ?? TWO, c.settings);
      assert.equal(p.backup.id, c.backup);
      assert.equal(p.targetTimeline, c.tli);
      assert.deepEqual(p.timelines, c.timelines);
      assert.deepEqual(p.wal, c.wal);
      assert.equal(p.walEnd, c.wal.at(-1)!.to);
      // The backup's own timeline above 1 is 'current': no history file needed.
      const tliOfBackup = p.backup.timeline;
      assert.equal(p.recoverySettings['recovery_target_timeline'], c.tli === tliOfBackup && c.tli !== 1 ? 'current' : String(c.tli));
      assert.deepEqual(p.warnings, []);
    });
  }

  // Timeline 3 branched off 1 at 0/8000100: a sibling of 2.
  const SIB_HIST = new Map([[SYS, new Map([[2, hist([1, SWITCH_2])], [3, hist([1, '0/8000100'])]])]]);
  const SIB: Catalog = { backups: [A, B, C], wal: new Map([[SYS, walOf([[1, 1, 9], [2, 7, 12], [3, 8, 10]])]]), histories: SIB_HIST };

  test('latest is the highest timeline: a backup on the sibling branch is passed over', () => {
    const p = plan(SIB);
    assert.equal(p.backup.id, B.id);
    assert.equal(p.targetTimeline, 3);
    assert.deepEqual(p.timelines, [1, 3]);
    assert.deepEqual(p.wal, [range(1, 5, 7), range(3, 8, 10)]);
  });

  const errors: { name: string; cat?: Catalog; settings: Settings; msg: string | RegExp }[] = [
    {
      name: 'timeline branched off before the backup started',
      cat: { backups: [A, B, D], wal: new Map([[SYS, TWO_WAL]]), histories: TWO_HIST },
      settings: { set: D.id },
      msg: 'timeline 2 branched off timeline 1 at 0/7000100, before backup "20261121-080000F" started at 0/8000028',
    },
    {
      name: 'timeline branched off while the backup ran',
      cat: { backups: [A, B, E], wal: new Map([[SYS, TWO_WAL]]), histories: TWO_HIST },
      settings: { set: E.id, 'target-timeline': '2' },
      msg: 'timeline 2 branched off timeline 1 at 0/7000100, while backup "20261121-063000F" was running (0/6000028 to 0/8000100)',
    },
    {
      name: 'a backup on another branch',
      cat: SIB,
      settings: { set: C.id },
      msg: 'backup "20261121-090000F" on timeline 2 is not in the history of timeline 3',
    },
    {
      name: 'a backup on a child timeline restored to its parent',
      settings: { set: C.id, 'target-timeline': '1' },
      msg: 'backup "20261121-090000F" on timeline 2 is not in the history of timeline 1',
    },
    {
      name: 'no backup on the target timeline\'s history',
      cat: { backups: [C], wal: SIB.wal, histories: SIB_HIST },
      settings: {},
      msg: 'no backup can be restored along target timeline latest: backup "20261121-090000F" on timeline 2 is not in the history of timeline 3',
    },
    {
      name: 'the switch-point segment missing on the new timeline (the old one\'s copy does not do)',
      cat: { backups: [A, B], wal: new Map([[SYS, walOf([[1, 1, 9], [2, 7, 12]], [seg(2, 7)])]]), histories: TWO_HIST },
      settings: {},
      msg: 'WAL segment "000000020000000000000007" needed to restore backup "20261121-050000F" to the end of the archived WAL (latest) on timeline 2 is missing from repository "memory://plan-test"',
    },
  ];
  for (const c of errors) {
    test(`refuses: ${c.name}`, () => {
      const e = throwsWith(() => plan(c.cat ?? TWO, c.settings), 'NOT_FOUND', c.msg);
      assert.ok(e.hint);
    });
  }

  test('a damaged history file stops the plan', () => {
    const bad = new Map([[SYS, new Map([[2, hist([2, SWITCH_2])]])]]);
    throwsWith(() => plan({ ...TWO, histories: bad }), 'FORMAT_INVALID', /parent timeline 2 is not below timeline 2/);
  });

  test('a backup on a timeline whose history file is missing: warned', () => {
    const p = plan({ backups: [A, C], wal: new Map([[SYS, TWO_WAL]]), histories: new Map() });
    assert.equal(p.backup.id, C.id);
    assert.equal(p.targetTimeline, 2);
    assert.match(p.warnings.join('\n'), /timeline 2 has no history file/);
  });
});

// ---- chains and systems ----------------------------------------------------------

describe('planRestore: chains and systems', () => {
  const F = backup({ id: '20261121-020000F', start: 2, stop: 3 });
  const Dd = backup({ id: '20261121-050000D', start: 5, stop: 5, parent: F.id });
  const I = backup({ id: '20261121-070000I', start: 7, stop: 7, parent: Dd.id });

  test('an incremental restores with its whole chain, full first', () => {
    const p = plan({ backups: [F, Dd, I], wal: new Map([[SYS, walOf([[1, 1, 9]])]]) });
    assert.equal(p.backup.id, I.id);
    assert.equal(p.backup.type, 'incr');
    assert.deepEqual(p.chain, [F.id, Dd.id, I.id]);
    assert.deepEqual(p.wal, [range(1, 7, 9)]);
  });

  test('a differential by time', () => {
    const p = plan({ backups: [F, Dd, I], wal: new Map([[SYS, walOf([[1, 1, 9]])]]) }, { 'target-time': '2026-11-21 06:00:00+00' });
    assert.deepEqual(p.chain, [F.id, Dd.id]);
  });

  test('a chain with a missing parent', () => {
    throwsWith(() => plan({ backups: [F, I], wal: new Map([[SYS, walOf([[1, 1, 9]])]]) }), 'FORMAT_INVALID',
      'backup "20261121-050000D" needed by "20261121-070000I" is missing from the repository');
  });

  // After pg_upgrade: a new system whose WAL starts again on timeline 1.
  const N = backup({ id: '20261121-100000F', start: 3, stop: 3, system: SYS2 });
  const SYSTEMS: Catalog = {
    backups: [A, B, N],
    wal: new Map([[SYS, walOf([[1, 1, 9]])], [SYS2, walOf([[1, 3, 4]])]]),
  };

  test('the newest system for latest', () => {
    const p = plan(SYSTEMS);
    assert.equal(p.systemId, SYS2);
    assert.deepEqual(p.wal, [range(1, 3, 4)]);
  });

  test('the older system for a time before the upgrade, with its own WAL', () => {
    const p = plan(SYSTEMS, { 'target-time': '2026-11-21 07:00:00+00' });
    assert.equal(p.systemId, SYS);
    assert.equal(p.backup.id, B.id);
    assert.deepEqual(p.wal, [range(1, 5, 8)]);
  });
});

// ---- plans read back (parse-plan.ts; here for the plans these fixtures make) ------

describe('parsePlan', () => {
  const good = plan(TWO, { set: A.id, 'target-time': '2026-11-21 08:00:00+00' });

  test('reads back what planRestore makes', () => {
    assert.deepEqual(parsePlan(JSON.stringify(good, null, 2), 'plan.json'), good);
  });

  test('not JSON is a usage error', () => {
    throwsWith(() => parsePlan('backup: x', 'plan.json'), 'USAGE', 'restore plan "plan.json" is not JSON');
    throwsWith(() => parsePlan('', '-'), 'USAGE', 'restore plan on stdin is not JSON');
  });

  const edits: [string, (p: Record<string, any>) => void, RegExp][] = [
    ['another format', (p) => (p.format = 'cairn.restore-plan/2'), /^restore plan "plan.json" has format "cairn.restore-plan\/2", expected cairn.restore-plan\/1$/],
    ['no format', (p) => delete p.format, /has format "undefined"/],
    ['a bad backup id', (p) => (p.backup.id = '../x'), /backup.id is not a backup id/],
    ['a chain not ending in the backup', (p) => (p.chain = ['20261121-050000F']), /chain does not end with the backup/],
    ['an unknown target kind', (p) => (p.target.kind = 'tomorrow'), /target.kind is unknown/],
    ['a zone-less time', (p) => (p.target.value = '2026-11-21 08:00:00'), /target.value is not a time with a zone/],
    ['a bad LSN', (p) => (p.backup.stopLsn = 'x'), /backup.stopLsn is not an LSN/],
    ['a bad WAL range', (p) => (p.wal[0].from = '../../etc/passwd'), /wal\[0\].from is not a WAL segment name/],
    ['a setting other than recovery_target*', (p) => (p.recoverySettings.archive_command = 'rm -rf /'), /names "archive_command", which is not a recovery target setting/],
    ['a multi-line setting', (p) => (p.recoverySettings.recovery_target_name = "x'\nrestore_command = 'sh"), /recoverySettings.recovery_target_name is not a one-line string/],
    ['warnings that are not a list', (p) => Object.assign(p, { warnings: 'none' }), /warnings is not a list of strings/],
  ];
  for (const [name, edit, msg] of edits) {
    test(`refuses ${name}`, () => {
      const p = structuredClone(good) as unknown as Record<string, any>;
      edit(p);
      throwsWith(() => parsePlan(JSON.stringify(p), 'plan.json'), 'FORMAT_INVALID', msg);
    });
  }

  test('refuses a JSON array', () => {
    throwsWith(() => parsePlan('[]', 'plan.json'), 'FORMAT_INVALID', /not an object/);
  });
});
