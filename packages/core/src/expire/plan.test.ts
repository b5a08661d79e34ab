import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDuration } from '../util/duration.js';
import { backup, catalogOf, dump, hist, readerLease, seg, SYS, SYS2, type CatalogSpec } from './test-catalog.js';
import { createObjectGrouper, EXPIRE_PLAN_FORMAT, periodOf, planExpire, type ExpirePolicy } from './plan.js';

const NOW = new Date('2026-11-21T12:00:00Z');
const GRACE = parseDuration('6h');

function plan(spec: CatalogSpec, p: Omit<ExpirePolicy, 'debrisGrace'> & { debrisGrace?: ExpirePolicy['debrisGrace'] }, now = NOW) {
  return planExpire(catalogOf(spec), { debrisGrace: GRACE, ...p }, now);
}
const removedBackups = (r: ReturnType<typeof plan>) => r.plan.backups.filter((b) => b.action === 'remove').map((b) => b.id);
const keptBackups = (r: ReturnType<typeof plan>) => r.plan.backups.filter((b) => b.action === 'keep').map((b) => b.id);
const reasonsOf = (r: ReturnType<typeof plan>, id: string) => r.plan.backups.find((b) => b.id === id)!.reasons;

// Two chains: F1 ← I1 ← I1b, and F2 ← D2 ← I2.
const chains = [
  backup({ id: '20261101-010000F', start: 2 }),
  backup({ id: '20261102-010000I', start: 4, parent: '20261101-010000F' }),
  backup({ id: '20261103-010000I', start: 6, parent: '20261102-010000I' }),
  backup({ id: '20261110-010000F', start: 10 }),
  backup({ id: '20261111-010000D', start: 12, parent: '20261110-010000F' }),
  backup({ id: '20261112-010000I', start: 14, parent: '20261111-010000D' }),
];

describe('planExpire: counts and chains', () => {
  const cases: { name: string; policy: Omit<ExpirePolicy, 'debrisGrace'>; backups: typeof chains; removed: string[] }[] = [
    { name: 'keep-full 1 removes the older full with its whole chain', policy: { keepFull: 1 }, backups: chains, removed: ['20261101-010000F', '20261102-010000I', '20261103-010000I'] },
    { name: 'keep-full 2 keeps both chains', policy: { keepFull: 2 }, backups: chains, removed: [] },
    {
      name: 'keep-diff 1 removes older diffs with the incrs on them, never a full',
      policy: { keepDiff: 1 },
      backups: [
        backup({ id: '20261101-010000F', start: 2 }),
        backup({ id: '20261102-010000I', start: 3, parent: '20261101-010000F' }),
        backup({ id: '20261103-010000D', start: 4, parent: '20261101-010000F' }),
        backup({ id: '20261104-010000I', start: 6, parent: '20261103-010000D' }),
        backup({ id: '20261105-010000D', start: 8, parent: '20261101-010000F' }),
        backup({ id: '20261106-010000I', start: 10, parent: '20261105-010000D' }),
      ],
      removed: ['20261103-010000D', '20261104-010000I'],
    },
    {
      name: 'keep-full 1 with keep-diff 1: the union',
      policy: { keepFull: 1, keepDiff: 1 },
      backups: [
        backup({ id: '20261101-010000F', start: 2 }),
        backup({ id: '20261103-010000D', start: 4, parent: '20261101-010000F' }),
        backup({ id: '20261105-010000F', start: 8 }),
        backup({ id: '20261106-010000I', start: 10, parent: '20261105-010000F' }),
      ],
      // keep-diff keeps the only diff and with it its full: nothing goes.
      removed: [],
    },
    {
      name: 'the newest backup stays even when it is an orphan no policy keeps',
      policy: { keepFull: 1 },
      backups: [
        backup({ id: '20261101-010000F', start: 2 }),
        backup({ id: '20261105-010000I', start: 8, parent: '20261104-010000F' }),
      ],
      removed: [],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = plan({ backups: c.backups }, c.policy);
      assert.deepEqual(removedBackups(r).sort(), c.removed.sort());
    });
  }

  test('reasons: policies that keep, the chain, and what a removed one was not kept by', () => {
    const r = plan({ backups: chains }, { keepFull: 1, keepDaily: 1 });
    assert.deepEqual(reasonsOf(r, '20261110-010000F'), ['keep-full 1', 'needed by 20261111-010000D', 'needed by 20261112-010000I']);
    assert.deepEqual(reasonsOf(r, '20261112-010000I'), ['keep-full 1 (depends on 20261110-010000F)', 'keep-daily 1 (2026-11-12)', 'newest backup']);
    assert.deepEqual(reasonsOf(r, '20261101-010000F'), ['kept by none of: keep-full 1, keep-daily 1']);
  });

  test('apply order: children before parents, each manifest before its objects', () => {
    const r = plan({ backups: chains }, { keepFull: 1 });
    const bs = r.steps.filter((s) => s.kind === 'backup');
    assert.deepEqual(bs.map((s) => s.name), ['20261103-010000I', '20261102-010000I', '20261101-010000F']);
    for (const s of bs) {
      assert.deepEqual(s.keys, [`main/backups/${s.name}/manifest.json`, `main/backups/${s.name}/data/base/1/1259.zst`]);
      assert.equal(s.bytes, 1010);
    }
    assert.equal(r.plan.format, EXPIRE_PLAN_FORMAT);
    assert.equal(r.plan.totals.backupsRemoved, 3);
    assert.equal(r.plan.totals.backupsKept, 3);
  });

  test('no backup policy: every backup and all WAL stay', () => {
    const r = plan({ backups: chains, wal: [{ ranges: [[1, 1, 20]] }], dumps: [dump('app', '20261101-000000L')] }, { keepDumps: 1 });
    assert.deepEqual(removedBackups(r), []);
    assert.deepEqual(r.plan.wal, []);
    assert.ok(r.steps.every((s) => s.kind !== 'wal'));
    assert.equal(reasonsOf(r, '20261101-010000F')[0], 'no backup policy given');
    assert.ok(!reasonsOf(r, '20261101-010000F').some((x) => x.startsWith('no policy given decides')));
  });
});

describe('planExpire: the recovery window', () => {
  // Backups stop 10 minutes after their start (the id's time).
  const bs = [
    backup({ id: '20261101-000000F', start: 2 }),
    backup({ id: '20261110-000000F', start: 10 }),
    backup({ id: '20261114-115000I', start: 14, parent: '20261110-000000F' }), // stops 2026-11-14 12:00, = now − 7d
    backup({ id: '20261116-000000I', start: 16, parent: '20261114-115000I' }),
    backup({ id: '20261120-000000F', start: 20 }),
  ];
  test('the newest backup that stopped at the window start (boundary included) and everything after stay', () => {
    const r = plan({ backups: bs }, { keepWithin: parseDuration('7d') });
    assert.deepEqual(removedBackups(r), ['20261101-000000F']);
    assert.ok(reasonsOf(r, '20261114-115000I').includes('keep-within 7d (restores the start of the window on timeline 1)'));
    assert.ok(reasonsOf(r, '20261110-000000F').includes('needed by 20261114-115000I'));
  });
  test('one second later the boundary backup stopped after the window start: the one before is the anchor', () => {
    const r = plan({ backups: bs }, { keepWithin: parseDuration('7d') }, new Date(NOW.getTime() - 1000));
    assert.deepEqual(removedBackups(r), ['20261101-000000F']);
    assert.ok(reasonsOf(r, '20261110-000000F').includes('keep-within 7d (restores the start of the window on timeline 1)'));
  });
  test('no backup stopped before the window: all stay', () => {
    const r = plan({ backups: bs }, { keepWithin: parseDuration('1y') });
    assert.deepEqual(removedBackups(r), []);
  });
  test('a window measured in calendar months', () => {
    const r = plan({ backups: bs }, { keepWithin: parseDuration('1mo') }, new Date('2026-12-10T00:00:00Z'));
    // now − 1mo = 2026-11-10 00:00: 20261101F is the newest that stopped before it.
    assert.deepEqual(removedBackups(r), []);
    const r2 = plan({ backups: bs }, { keepWithin: parseDuration('1mo') }, new Date('2026-12-10T00:10:00Z'));
    assert.deepEqual(removedBackups(r2), ['20261101-000000F']);
  });
  test('an anchor on each timeline: a backup on a branch does not start recovery along its parent', () => {
    // Timeline 2 branched off 1 at segment 8; a newer backup on 2 and an old one on 1.
    const r = plan(
      {
        backups: [
          backup({ id: '20261101-000000F', start: 2 }),
          backup({ id: '20261105-000000F', tli: 2, start: 10 }),
          backup({ id: '20261120-000000F', tli: 1, start: 30 }),
        ],
        wal: [{ ranges: [[1, 1, 31], [2, 8, 12]], histories: new Map([[2, hist([1, 8])]]) }],
      },
      { keepWithin: parseDuration('7d') },
    );
    assert.deepEqual(removedBackups(r), []);
    assert.ok(reasonsOf(r, '20261101-000000F').includes('keep-within 7d (restores the start of the window on timeline 1)'));
    assert.ok(reasonsOf(r, '20261105-000000F').includes('keep-within 7d (restores the start of the window on timeline 2)'));
  });
});

describe('planExpire: GFS', () => {
  const at = (id: string) => backup({ id, start: 2 });
  const cases: { name: string; ids: string[]; policy: Omit<ExpirePolicy, 'debrisGrace'>; kept: string[] }[] = [
    {
      name: 'daily across a month end: the newest of each of the last 2 days that have one',
      ids: ['20261030-010000F', '20261031-010000F', '20261031-220000F', '20261101-050000F'],
      policy: { keepDaily: 2 },
      kept: ['20261031-220000F', '20261101-050000F'],
    },
    {
      name: 'days without a backup do not count',
      ids: ['20261001-010000F', '20261010-010000F', '20261020-010000F'],
      policy: { keepDaily: 2 },
      kept: ['20261010-010000F', '20261020-010000F'],
    },
    {
      name: 'ISO weeks across a year end: Mon 2025-12-29 and Thu 2026-01-01 are both 2026-W01',
      ids: ['20251222-010000F', '20251229-010000F', '20260101-010000F'],
      policy: { keepWeekly: 1 },
      kept: ['20260101-010000F'],
    },
    {
      name: 'weekly 2 across a year end',
      ids: ['20251221-010000F', '20251222-010000F', '20251228-230000F', '20260101-010000F'],
      policy: { keepWeekly: 2 },
      kept: ['20251228-230000F', '20260101-010000F'],
    },
    {
      name: 'monthly across a year end',
      ids: ['20251115-010000F', '20251201-010000F', '20251231-230000F', '20260115-010000F'],
      policy: { keepMonthly: 2 },
      kept: ['20251231-230000F', '20260115-010000F'],
    },
    {
      name: 'yearly, with monthly as a union',
      ids: ['20241231-230000F', '20250601-010000F', '20251231-010000F', '20260110-010000F', '20260210-010000F'],
      policy: { keepYearly: 2, keepMonthly: 1 },
      kept: ['20251231-010000F', '20260210-010000F'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = plan({ backups: c.ids.map(at) }, c.policy);
      assert.deepEqual(keptBackups(r), c.kept);
    });
  }
  test('periodOf: ISO weeks at year ends', () => {
    assert.equal(periodOf('weekly', Date.parse('2027-01-01T00:00:00Z')), '2026-W53');
    assert.equal(periodOf('weekly', Date.parse('2025-12-29T00:00:00Z')), '2026-W01');
    assert.equal(periodOf('weekly', Date.parse('2024-12-30T12:00:00Z')), '2025-W01');
    assert.equal(periodOf('weekly', Date.parse('2021-01-03T23:59:59Z')), '2020-W53');
    assert.equal(periodOf('monthly', Date.parse('2026-02-28T23:59:59Z')), '2026-02');
    assert.equal(periodOf('daily', Date.parse('2026-02-28T23:59:59Z')), '2026-02-28');
  });
  test('GFS keeps the chain of the period\'s newest backup', () => {
    const r = plan({ backups: chains }, { keepWeekly: 1 });
    // 2026-11-12 is in week 46 with 2026-11-10 and 11: the incr and its chain stay.
    assert.deepEqual(removedBackups(r), ['20261101-010000F', '20261102-010000I', '20261103-010000I']);
  });
});

describe('planExpire: WAL', () => {
  test('below the oldest kept backup\'s start segment, history files and other systems stay', () => {
    const r = plan(
      {
        backups: chains,
        wal: [
          { ranges: [[1, 1, 16]], extra: [`${seg(1, 2)}.00000028.backup`, `${seg(1, 10)}.00000028.backup`] },
          { system: SYS2, ranges: [[1, 1, 4]] },
        ],
      },
      { keepFull: 1 },
    );
    assert.deepEqual(r.plan.wal, [
      {
        systemId: SYS,
        timeline: 1,
        keepFrom: seg(1, 10),
        removed: { from: seg(1, 1), to: seg(1, 9), segments: 9, files: 10, bytes: 10_000 },
        keptFiles: 8,
        reason: 'below the start of backup 20261110-010000F, the oldest kept one that restores along this timeline',
      },
      { systemId: SYS2, timeline: 1, keepFrom: null, removed: null, keptFiles: 4, reason: 'no kept backup of this system' },
    ]);
    const keys = r.steps.filter((s) => s.kind === 'wal').flatMap((s) => s.keys);
    assert.equal(keys.length, 10);
    assert.ok(keys.every((k) => k.startsWith(`main/wal/${SYS}/0000000100000000/`)));
    assert.ok(keys.some((k) => k.includes(`${seg(1, 2)}.00000028.backup`)));
    assert.ok(!keys.some((k) => k.includes(`${seg(1, 10)}`)));
  });

  test('several timelines: an ancestor\'s backup holds WAL on its children; a timeline no kept backup can follow goes whole', () => {
    // 2 branched off 1 at segment 10, 3 off 2 at segment 20; 4 off 1 at 6 (an abandoned branch).
    const histories = new Map([
      [2, hist([1, 10])],
      [3, hist([1, 10], [2, 20])],
      [4, hist([1, 6])],
    ]);
    const spec: CatalogSpec = {
      backups: [
        backup({ id: '20261101-010000F', start: 2 }),
        backup({ id: '20261110-010000F', tli: 2, start: 14 }),
        backup({ id: '20261115-010000I', tli: 3, start: 24, parent: '20261110-010000F' }),
      ],
      wal: [{ ranges: [[1, 1, 10], [2, 10, 20], [3, 20, 26], [4, 6, 8]], histories }],
    };
    const r = plan(spec, { keepFull: 1 });
    assert.deepEqual(removedBackups(r), ['20261101-010000F']);
    const byTli = new Map(r.plan.wal.map((w) => [w.timeline, w]));
    assert.deepEqual(byTli.get(1)!.removed, { from: seg(1, 1), to: seg(1, 10), segments: 10, files: 10, bytes: 10_000 });
    assert.equal(byTli.get(1)!.reason, 'no kept backup can restore along this timeline');
    assert.deepEqual(byTli.get(2)!.removed, { from: seg(2, 10), to: seg(2, 13), segments: 4, files: 4, bytes: 4000 });
    assert.equal(byTli.get(3)!.keepFrom, seg(3, 14));
    assert.equal(byTli.get(3)!.removed, null);
    assert.equal(byTli.get(4)!.removed!.files, 3);
    // History files are never in a step.
    assert.ok(r.steps.every((s) => s.keys.every((k) => !k.includes('.history'))));

    // Keeping the old full on timeline 1 keeps every timeline from its start.
    const r2 = plan(spec, { keepFull: 2 });
    assert.deepEqual(r2.plan.wal.map((w) => [w.timeline, w.keepFrom, w.removed?.files ?? 0]), [
      [1, seg(1, 2), 1],
      [2, seg(2, 2), 0],
      [3, seg(3, 2), 0],
      [4, seg(4, 2), 0],
    ]);
  });
});

describe('planExpire: WAL it cannot judge', () => {
  test('a timeline above 1 without its history file keeps all its WAL (after a failover it may be everything since)', () => {
    const spec: CatalogSpec = {
      backups: [backup({ id: '20261101-010000F', start: 2 }), backup({ id: '20261110-010000F', start: 8 })],
      // Timeline 2 has segments but its history file was never archived.
      wal: [{ ranges: [[1, 1, 12], [2, 10, 14]], histories: new Map() }],
    };
    const r = plan(spec, { keepFull: 1 });
    const byTli = new Map(r.plan.wal.map((w) => [w.timeline, w]));
    assert.equal(byTli.get(1)!.removed!.to, seg(1, 7));
    assert.equal(byTli.get(2)!.removed, null);
    assert.equal(byTli.get(2)!.keptFiles, 5);
    assert.equal(byTli.get(2)!.reason, 'no history file for timeline 2: kept until one is archived');
  });

  test('a kept backup without a readable start LSN keeps the WAL of its timeline', () => {
    const spec: CatalogSpec = {
      backups: [backup({ id: '20261101-010000F', start: 2 }), { ...backup({ id: '20261110-010000F', start: 8 }), start: { time: '2026-11-10T01:00:00Z', lsn: 'garbage', wal: seg(1, 8) } }],
      wal: [{ ranges: [[1, 1, 12]] }],
    };
    const r = plan(spec, { keepFull: 1 });
    assert.equal(r.plan.wal[0]!.removed, null);
    assert.match(r.plan.wal[0]!.reason, /no readable start LSN/);
  });
});

describe('planExpire: dumps', () => {
  const dumps = [
    dump('app', '20250101-000000L'),
    dump('app', '20260105-000000L'),
    dump('app', '20260131-230000L'),
    dump('app', '20260201-010000L'),
    dump('app', '20261120-000000L'),
    dump('shop', '20250101-000000L'),
    dump(null, '20250101-000000L'),
    dump(null, '20261120-000000L'),
  ];
  const removedDumps = (r: ReturnType<typeof plan>) => r.plan.dumps.filter((d) => d.action === 'remove').map((d) => `${d.dir}/${d.id}`);
  test('per database; the newest of each always stays; globals are their own series', () => {
    const r = plan({ dumps }, { keepDumps: 2 });
    assert.deepEqual(removedDumps(r), ['app/20250101-000000L', 'app/20260105-000000L', 'app/20260131-230000L']);
    const steps = r.steps.filter((s) => s.kind === 'dump');
    assert.deepEqual(steps[0]!.keys, ['main/dumps/app/20250101-000000L/manifest.json', 'main/dumps/app/20250101-000000L/dump.zst']);
    assert.deepEqual(r.plan.dumps.find((d) => d.dir === 'shop')!.reasons, ['keep-dumps 2', 'newest dump of its database']);
    assert.equal(r.plan.dumps.find((d) => d.dir === '@globals')!.database, null);
  });
  test('monthly dumps across months: the newest of each month', () => {
    const r = plan({ dumps }, { keepDumpsMonthly: 36 });
    assert.deepEqual(removedDumps(r), ['app/20260105-000000L']);
  });
  test('a dump window keeps the dump at its start and everything after', () => {
    const r = plan({ dumps }, { keepDumpsWithin: parseDuration('300d') });
    // now − 300d = 2026-01-25 12:00: the 2026-01-05 dump is the state at the window's start
    // (and for the globals, the 2025 one).
    assert.deepEqual(removedDumps(r), ['app/20250101-000000L']);
  });
  test('dump policies leave backups alone, backup policies leave dumps alone', () => {
    const r = plan({ dumps, backups: chains }, { keepFull: 1 });
    assert.deepEqual(removedDumps(r), []);
    assert.equal(r.plan.dumps[0]!.reasons[0], 'no dump policy given');
  });
});

describe('planExpire: debris', () => {
  const old = new Date('2026-11-21T05:00:00Z');
  const young = new Date('2026-11-21T07:00:00Z');
  const objects = [
    { key: 'main/backups/20261120-000000F/data/base/1/1.zst', size: 7, mtime: old },
    { key: 'main/backups/20261121-000000F/data/base/1/1.zst', size: 7, mtime: old },
    { key: 'main/backups/20261121-000000F/data/base/1/2.zst', size: 7, mtime: young },
    { key: 'main/dumps/app/20261120-000000L/dump.zst', size: 3, mtime: old },
    { key: 'main/backups/not-a-backup/x', size: 3, mtime: old },
  ];
  test('objects without a manifest past the grace period go; younger ones and foreign names stay', () => {
    const r = plan({ backups: chains, objects }, { keepFull: 2 });
    assert.deepEqual(r.plan.debris, [
      { prefix: 'backups/20261120-000000F/', objects: 1, bytes: 7, newest: old.toISOString() },
      { prefix: 'dumps/app/20261120-000000L/', objects: 1, bytes: 3, newest: old.toISOString() },
    ]);
    const keys = r.steps.filter((s) => s.kind === 'debris').flatMap((s) => s.keys);
    assert.deepEqual(keys, ['main/backups/20261120-000000F/data/base/1/1.zst', 'main/dumps/app/20261120-000000L/dump.zst']);
    assert.equal(r.plan.totals.debrisObjectsRemoved, 2);
  });
  test('a longer grace keeps them', () => {
    const r = plan({ backups: chains, objects }, { keepFull: 2, debrisGrace: parseDuration('1d') });
    assert.deepEqual(r.plan.debris, []);
  });
  test('nothing outside backups/, dumps/ and wal/ is ever in a step', () => {
    const r = plan({ backups: chains, objects, wal: [{ ranges: [[1, 1, 20]] }] }, { keepFull: 1 });
    for (const k of r.steps.flatMap((s) => s.keys)) assert.match(k, /^main\/(backups|dumps|wal)\//);
  });
});

describe('planExpire: reader leases (issue 12)', () => {
  // F1 ← I1 ← I1b, F2 ← D2 ← I2; keep-full 1 alone removes the first chain and the WAL below F2 (segment 10).
  const wal = [{ ranges: [[1, 1, 20]] as [number, number, number][] }];
  const LIVE = '2026-11-22T06:00:00.000Z'; // renewed 2026-11-21 06:00, lease 20261121-060000-0000abcd
  const why = (backup: string) =>
    `needed by the restore of backup ${backup} into "/srv/pg" on host "db1" (lease 20261121-060000-0000abcd, renewed at 2026-11-21T06:00:00.000Z)`;
  const restoreOfI1b = { backup: '20261103-010000I', chain: ['20261101-010000F', '20261102-010000I', '20261103-010000I'], wal: [[1, 2, 8]] as [number, number, number][] };

  test('a live lease keeps its whole chain and the WAL from its start; the reason names the restore', () => {
    const r = plan({ backups: chains, wal, readers: [readerLease({ ...restoreOfI1b, expiresAt: LIVE })] }, { keepFull: 1 });
    assert.deepEqual(removedBackups(r), []);
    for (const id of restoreOfI1b.chain) assert.deepEqual(reasonsOf(r, id).filter((x) => x.startsWith('needed by the')), [why('20261103-010000I')]);
    assert.equal(r.plan.wal[0]!.keepFrom, seg(1, 2));
    assert.deepEqual(r.plan.wal[0]!.removed, { from: seg(1, 1), to: seg(1, 1), segments: 1, files: 1, bytes: 1000 });
    assert.deepEqual(
      [r.plan.totals.readersLive, r.plan.totals.backupsKeptForReaders, r.plan.totals.walSegmentsKeptForReaders, r.plan.totals.readersRemoved],
      [1, 3, 8, 0],
    );
    assert.deepEqual(r.plan.readers, [{
      id: '20261121-060000-0000abcd', key: 'main/readers/20261121-060000-0000abcd.json', purpose: 'restore', host: 'db1', pgdata: '/srv/pg',
      backup: '20261103-010000I', dumps: [], renewedAt: '2026-11-21T06:00:00.000Z', expiresAt: LIVE, live: true, action: 'keep',
      reason: `live until ${LIVE}: what ${why('20261103-010000I').slice('needed by '.length)} needs stays`,
    }]);
    assert.ok(r.steps.every((s) => s.kind !== 'lease'));
  });

  test('a lease whose chain names only its backup still keeps the ancestors the catalog links', () => {
    const r = plan({ backups: chains, readers: [readerLease({ backup: '20261103-010000I', expiresAt: LIVE })] }, { keepFull: 1 });
    assert.deepEqual(removedBackups(r), []);
    assert.ok(reasonsOf(r, '20261101-010000F').includes(why('20261103-010000I')));
  });

  test('a lease on a backup the policies keep anyway adds its reason and keeps nothing more', () => {
    const r = plan({ backups: chains, wal, readers: [readerLease({ backup: '20261111-010000D', chain: ['20261110-010000F', '20261111-010000D'], wal: [[1, 12, 20]], expiresAt: LIVE })] }, { keepFull: 1 });
    assert.deepEqual(removedBackups(r).sort(), ['20261101-010000F', '20261102-010000I', '20261103-010000I']);
    assert.deepEqual(reasonsOf(r, '20261111-010000D'), ['keep-full 1 (depends on 20261110-010000F)', 'needed by 20261112-010000I', why('20261111-010000D')]);
    assert.equal(r.plan.wal[0]!.keepFrom, seg(1, 10));
    assert.deepEqual([r.plan.totals.backupsKeptForReaders, r.plan.totals.walSegmentsKeptForReaders], [0, 0]);
  });

  test('the WAL floor holds even when the lease\'s backup is gone from the catalog; per system and timeline', () => {
    const leases = [
      readerLease({ backup: '20261001-010000F', wal: [[1, 5, 9]], expiresAt: LIVE }),
      // Another system's lease, and a range on another timeline, hold nothing here.
      readerLease({ id: '20261121-070000-0000abcd', backup: '20261001-010000F', system: SYS2, wal: [[1, 3, 9]], expiresAt: LIVE }),
      readerLease({ id: '20261121-080000-0000abcd', backup: '20261001-010000F', wal: [[2, 3, 9]], expiresAt: LIVE }),
    ];
    const r = plan({ backups: chains, wal, readers: leases }, { keepFull: 1 });
    assert.deepEqual(removedBackups(r).sort(), ['20261101-010000F', '20261102-010000I', '20261103-010000I']);
    assert.equal(r.plan.wal[0]!.keepFrom, seg(1, 5));
    assert.deepEqual(r.plan.wal[0]!.removed, { from: seg(1, 1), to: seg(1, 4), segments: 4, files: 4, bytes: 4000 });
    assert.equal(
      r.plan.wal[0]!.reason,
      `below ${seg(1, 5)}, from where it is needed by the restore of backup 20261001-010000F into "/srv/pg" on host "db1" (lease 20261121-060000-0000abcd, renewed at 2026-11-21T06:00:00.000Z)`,
    );
    assert.equal(r.plan.totals.walSegmentsKeptForReaders, 5);
    // A lease that names no system holds that timeline of every system.
    const anySystem = plan({ backups: chains, wal, readers: [readerLease({ backup: null, system: null, wal: [[1, 7, 9]], expiresAt: LIVE })] }, { keepFull: 1 });
    assert.equal(anySystem.plan.wal[0]!.keepFrom, seg(1, 7));
  });

  test('timelines no kept backup follows keep the WAL a lease reads on them', () => {
    // 2 branched off 1 at segment 10, 3 off 1 at 12; the only backup is on 3, the lease's backup is gone.
    const histories = new Map([[2, hist([1, 10])], [3, hist([1, 12])]]);
    const spec: CatalogSpec = {
      backups: [backup({ id: '20261110-010000F', tli: 3, start: 14 })],
      wal: [{ ranges: [[1, 1, 12], [2, 10, 16], [3, 12, 16]], histories }],
      readers: [readerLease({ backup: '20261001-010000F', wal: [[1, 5, 10], [2, 10, 16]], expiresAt: LIVE })],
    };
    const withLease = plan(spec, { keepFull: 1 });
    assert.deepEqual(withLease.plan.wal.map((w) => [w.timeline, w.keepFrom, w.removed?.segments ?? 0]), [[1, seg(1, 5), 4], [2, seg(2, 10), 0], [3, seg(3, 14), 2]]);
    const without = plan({ ...spec, readers: [] }, { keepFull: 1 });
    assert.deepEqual(without.plan.wal.map((w) => [w.timeline, w.keepFrom, w.removed?.segments ?? 0]), [[1, null, 12], [2, null, 7], [3, seg(3, 14), 2]]);
    assert.equal(withLease.plan.totals.walSegmentsKeptForReaders, 15);
  });

  test('a live lease keeps the dumps it reads', () => {
    const dumps = [dump('app', '20261101-000000L'), dump('app', '20261110-000000L'), dump('app', '20261120-000000L')];
    const lease = readerLease({ purpose: 'drill', backup: null, dumps: ['app/20261101-000000L'], expiresAt: LIVE });
    const r = plan({ dumps, readers: [lease] }, { keepDumps: 1 });
    assert.deepEqual(r.plan.dumps.map((d) => [d.id, d.action]), [['20261101-000000L', 'keep'], ['20261110-000000L', 'remove'], ['20261120-000000L', 'keep']]);
    assert.deepEqual(r.plan.dumps[0]!.reasons, ['needed by the drill of dump app/20261101-000000L on host "db1" (lease 20261121-060000-0000abcd, renewed at 2026-11-21T06:00:00.000Z)']);
    assert.equal(r.plan.totals.dumpsKeptForReaders, 1);
  });

  test('a lapsed lease protects nothing: the plan is the policies\' own; it goes once lapsed longer than the debris grace', () => {
    const base = plan({ backups: chains, wal }, { keepFull: 1 });
    const lapsed = (expiresAt: string) => plan({ backups: chains, wal, readers: [readerLease({ ...restoreOfI1b, expiresAt })] }, { keepFull: 1 });
    // Lapsed at the plan's time exactly, an hour ago, and seven hours ago (the grace is 6h).
    for (const at of ['2026-11-21T12:00:00.000Z', '2026-11-21T11:00:00.000Z', '2026-11-21T05:00:00.000Z']) {
      const r = lapsed(at);
      assert.deepEqual(r.plan.backups, base.plan.backups, at);
      assert.deepEqual(r.plan.wal, base.plan.wal, at);
      assert.deepEqual(r.steps.filter((s) => s.kind !== 'lease'), base.steps, at);
      assert.equal(r.plan.totals.readersLive, 0);
      assert.equal(r.plan.readers[0]!.live, false);
    }
    const recent = lapsed('2026-11-21T11:00:00.000Z');
    assert.equal(recent.plan.readers[0]!.action, 'keep');
    assert.equal(recent.plan.readers[0]!.reason, 'lapsed at 2026-11-21T11:00:00.000Z: protects nothing; removed once lapsed for 6h');
    const old = lapsed('2026-11-21T05:00:00.000Z');
    assert.equal(old.plan.readers[0]!.action, 'remove');
    assert.equal(old.plan.readers[0]!.reason, 'lapsed at 2026-11-21T05:00:00.000Z, more than 6h ago: protects nothing');
    assert.deepEqual(old.steps.filter((s) => s.kind === 'lease'), [{ kind: 'lease', name: old.plan.readers[0]!.id, keys: [`main/readers/${old.plan.readers[0]!.id}.json`], bytes: 0 }]);
    assert.equal(old.plan.totals.readersRemoved, 1);
  });

  test('an unreadable object under readers/ is listed, kept, and protects nothing', () => {
    const r = plan({ backups: chains, unreadableReaders: [{ key: 'main/readers/notes.txt', problem: 'not a reader lease name' }] }, { keepFull: 1 });
    assert.equal(removedBackups(r).length, 3);
    assert.deepEqual(r.plan.readers.map((x) => [x.id, x.key, x.live, x.action]), [['notes.txt', 'main/readers/notes.txt', false, 'keep']]);
    assert.match(r.plan.readers[0]!.reason, /^not a reader lease cairn can read \(not a reader lease name\): protects nothing/);
    assert.ok(r.steps.every((s) => s.keys.every((k) => !k.includes('/readers/'))));
  });
});

describe('planExpire from counts (issue 19)', () => {
  test('objects counted per backup, dump and debris give the same plan as the objects themselves; steps name the prefix instead of the keys', () => {
    const old = new Date('2026-01-01T00:00:00Z');
    const spec: CatalogSpec = {
      backups: chains,
      dumps: [dump('app', '20261101-010000', '2026-11-01T01:10:00Z'), dump('app', '20261120-010000', '2026-11-20T01:10:00Z')],
      wal: [{ ranges: [[1, 2, 20]] }],
      // Debris: an interrupted backup long ago, and one still being written (young).
      objects: [
        { key: 'main/backups/20261005-010000F/data/base/1/1.zst', size: 7, mtime: old },
        { key: 'main/backups/20261121-115900F/data/base/1/1.zst', size: 7, mtime: new Date(NOW.getTime() - 60_000) },
      ],
    };
    const policy: ExpirePolicy = { keepFull: 1, keepDumps: 1, debrisGrace: GRACE };
    const byKeys = planExpire(catalogOf(spec), policy, NOW);
    const catalog = catalogOf(spec);
    const grouper = createObjectGrouper(catalog.cluster, false);
    for (const o of catalog.objects) grouper.add(o);
    const byCounts = planExpire({ ...catalog, objects: [], objectGroups: grouper.result() }, policy, NOW);
    assert.deepEqual(byCounts.plan, byKeys.plan);
    assert.deepEqual(removedBackups(byCounts), ['20261101-010000F', '20261102-010000I', '20261103-010000I']);
    assert.equal(byCounts.plan.debris.length, 1, 'the young one stays');
    // Same steps in the same order; each group's manifest still first, the rest listed when applied.
    assert.deepEqual(byCounts.steps.map((s) => [s.kind, s.name, s.bytes]), byKeys.steps.map((s) => [s.kind, s.name, s.bytes]));
    for (const [i, s] of byCounts.steps.entries()) {
      const k = byKeys.steps[i]!;
      if (s.kind === 'wal' || (s.prefix === undefined && k.keys.length === 0)) {
        // WAL steps name their keys either way; a group with no object listed has none to list.
        assert.deepEqual(s, k);
        continue;
      }
      assert.ok(s.prefix !== undefined && k.keys.every((key) => key.startsWith(s.prefix!)), `${s.name}: every key under ${s.prefix}`);
      assert.deepEqual(s.keys, k.keys.filter((key) => key.endsWith('/manifest.json')), `${s.name}: the manifest first, by name`);
      assert.equal(k.keys[0]!.endsWith('/manifest.json'), s.keys.length === 1);
    }
  });
});
