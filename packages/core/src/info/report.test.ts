import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MANIFEST_FORMAT, type BackupSummary } from '../backup/manifest.js';
import { DUMP_MANIFEST_FORMAT, type DumpSummary } from '../dump/manifest.js';
import type { RepoCatalog, WalListing } from '../repo/catalog.js';
import type { StoredWal } from '../repo/wal-archive.js';
import { VERIFY_RESULT_FORMAT, type VerifyResult } from '../verify/result-format.js';
import { parseLsn, formatLsn } from '../wal/lsn.js';
import { segmentName } from '../wal/segment.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { READER_LEASE_FORMAT, type ReaderLease } from '../repo/reader-lease.js';
import { describeRepository, emptyUsage, INFO_FORMAT, MAX_LISTED_GAPS, tallyObject, type InfoExtras, type InfoReport } from './report.js';

const SEG = 16 * 1024 * 1024;
const SYS = '7312345678901234567';
const NOW = new Date('2026-11-22T00:00:00Z');
const seg = (tli: number, n: number) => segmentName(tli, BigInt(n), SEG);
/** Segment n was archived n hours after 2026-11-21 00:30 UTC. */
const archivedAt = (n: number) => new Date(Date.UTC(2026, 10, 21, 0, 30) + n * 3600_000);
/** The LSN just past segment n. */
const segEnd = (n: number) => formatLsn(BigInt(n + 1) * BigInt(SEG));

/**
 * A backup starting 0x28 into segment `start` and stopping 0x100 into `stop`
 * (timeline `tli`), its stop time 10 minutes after segment `stop` began to be
 * written (i.e. before archivedAt(stop)).
 */
function backup(id: string, start: number, stop: number, opts: { parent?: string; tli?: number } = {}): BackupSummary {
  const tli = opts.tli ?? 1;
  const at = (n: number, off: number) => formatLsn(BigInt(n) * BigInt(SEG) + BigInt(off));
  const type = id.endsWith('F') ? 'full' : id.endsWith('D') ? 'diff' : 'incr';
  return {
    format: MANIFEST_FORMAT,
    tool: { name: 'cairn-basebackup', version: '0.1.0' },
    id,
    type,
    parent: opts.parent ?? null,
    references: opts.parent ? [opts.parent] : [],
    source: 'local',
    cluster: 'main',
    systemId: SYS,
    pgVersionNum: 150004,
    pgMajor: '15',
    walSegmentSize: SEG,
    timeline: tli,
    start: { time: new Date(archivedAt(start).getTime() - 3000_000).toISOString(), lsn: at(start, 0x28), wal: seg(tli, start) },
    stop: { time: new Date(archivedAt(stop).getTime() - 3000_000).toISOString(), lsn: at(stop, 0x100), wal: seg(tli, stop) },
    checkpointLsn: at(start, 0x60),
    compress: 'zstd:3',
    encrypted: false,
    dataChecksums: true,
    tablespaces: [],
    totals: { size: 30_000_000, storedSize: 4_000_000, filesStored: 10, filesReferenced: 0, badPages: 0 },
    durationSeconds: 12,
  };
}

/** Stored segments: [timeline, first, last] ranges minus the numbers in `without` (timeline 1). */
function listing(ranges: [number, number, number][], without: number[] = [], historyTimelines: number[] = []): WalListing {
  const stored = (walName: string, mtime: Date): StoredWal => ({
    walName, sha256: '0'.repeat(64), ext: '.zst', key: `main/wal/${SYS}/${walName.slice(0, 16)}/${walName}-${'0'.repeat(64)}.zst`, size: 1000, mtime,
  });
  const segments = new Map<string, StoredWal>();
  for (const [tli, from, to] of ranges) {
    for (let n = from; n <= to; n++) if (!(tli === 1 && without.includes(n))) segments.set(seg(tli, n), stored(seg(tli, n), archivedAt(n)));
  }
  const histories = new Map(historyTimelines.map((t) => [t, stored(`${t.toString(16).toUpperCase().padStart(8, '0')}.history`, archivedAt(0))]));
  return { systemId: SYS, segments, histories, others: [], all: [...segments.values(), ...histories.values()], foreign: [] };
}

function catalogOf(backups: BackupSummary[], wal?: WalListing): RepoCatalog {
  return { cluster: 'main', repo: 'memory://info-test', backups, dumps: [], systems: wal ? [SYS] : [], wal: new Map(wal ? [[SYS, wal]] : []) };
}

function extras(o: Partial<InfoExtras> = {}): InfoExtras {
  return { usage: emptyUsage(), encrypted: false, systems: [], histories: new Map(), lastVerify: undefined, lastDrill: undefined, ...o };
}

const histOf = (entries: [number, string][]): Map<string, Map<number, TimelineHistoryEntry[]>> =>
  new Map([[SYS, new Map([[2, entries.map(([timeline, lsn]) => ({ timeline, switchLsn: parseLsn(lsn), reason: 'no recovery target specified' }))]])]]);

interface WindowCase {
  name: string;
  backups: BackupSummary[];
  wal: WalListing;
  histories?: Map<string, Map<number, TimelineHistoryEntry[]>>;
  /** [backup id, LSN] of the earliest point, or null. */
  earliest: [string, string] | null;
  /** [backup id, last segment, timeline] of the latest point, or null. */
  latest: [string, string, number] | null;
  /** Backups not restorable, with a piece of their problem. */
  notRestorable?: Record<string, RegExp>;
  unreachable?: [string, string][];
  note?: RegExp;
}

const F1 = '20261121-010000F';
const I1 = '20261121-040000I';
const F2 = '20261121-050000F';

const windowCases: WindowCase[] = [
  {
    name: 'one full backup and continuous WAL: from its stop to the end of the archive',
    backups: [backup(F1, 2, 3)],
    wal: listing([[1, 2, 6]]),
    earliest: [F1, '0/3000100'],
    latest: [F1, seg(1, 6), 1],
  },
  {
    name: 'a full and an incremental: latest from the incremental',
    backups: [backup(F1, 2, 3), backup(I1, 5, 6, { parent: F1 })],
    wal: listing([[1, 2, 9]]),
    earliest: [F1, '0/3000100'],
    latest: [I1, seg(1, 9), 1],
  },
  {
    name: 'a gap after the newest backup: latest stops before it, with a note',
    backups: [backup(F1, 2, 3), backup(I1, 5, 6, { parent: F1 })],
    wal: listing([[1, 2, 10]], [8]),
    earliest: [F1, '0/3000100'],
    latest: [I1, seg(1, 7), 1],
    note: /WAL segment 000000010000000000000008 is missing/,
  },
  {
    name: 'the oldest backup misses its own WAL: the window starts at the next',
    backups: [backup(F1, 2, 3), backup(F2, 5, 6)],
    wal: listing([[1, 2, 7]], [3]),
    earliest: [F2, '0/6000100'],
    latest: [F2, seg(1, 7), 1],
    notRestorable: { [F1]: /000000010000000000000003.*is missing/ },
  },
  {
    name: 'a gap between two backups: the stretch between is unreachable',
    backups: [backup(F1, 2, 3), backup(F2, 6, 7)],
    wal: listing([[1, 2, 9]], [5]),
    earliest: [F1, '0/3000100'],
    latest: [F2, seg(1, 9), 1],
    unreachable: [[segEnd(4), '0/7000100']],
  },
  {
    name: 'an incremental whose parent is gone is not restorable',
    backups: [backup(I1, 5, 6, { parent: F1 })],
    wal: listing([[1, 2, 7]]),
    earliest: null,
    latest: null,
    notRestorable: { [I1]: /20261121-010000F.*missing from the repository/ },
    note: /none of its 1 backup can be restored/,
  },
  {
    name: 'a promotion: latest follows the newest timeline',
    backups: [backup(F1, 2, 3)],
    wal: listing([[1, 2, 5], [2, 5, 8]], [], [2]),
    histories: histOf([[1, '0/5000100']]),
    earliest: [F1, '0/3000100'],
    latest: [F1, seg(2, 8), 2],
  },
  {
    name: 'a backup the newest timeline branched away from: latest on its own timeline',
    backups: [backup(F1, 2, 3)],
    wal: listing([[1, 1, 6], [2, 1, 3]], [], [2]),
    histories: histOf([[1, '0/1000100']]),
    earliest: [F1, '0/3000100'],
    latest: [F1, seg(1, 6), 1],
  },
];

describe('describeRepository: the recoverability window', () => {
  for (const c of windowCases) {
    test(c.name, () => {
      const r = describeRepository(catalogOf(c.backups, c.wal), extras(c.histories ? { histories: c.histories } : {}), NOW);
      const rec = r.recoverability;
      if (c.earliest === null) assert.equal(rec.earliest, null);
      else {
        assert.equal(rec.earliest?.backup, c.earliest[0]);
        assert.equal(rec.earliest?.lsn, c.earliest[1]);
        assert.equal(rec.earliest?.timeIsUpperBound, false);
        assert.equal(rec.earliest?.time, c.backups.find((b) => b.id === c.earliest![0])!.stop.time);
      }
      if (c.latest === null) {
        assert.equal(rec.latest, null);
        assert.equal(rec.latestAgeSeconds, null);
      } else {
        const [id, wal, tli] = c.latest;
        assert.equal(rec.latest?.backup, id);
        assert.equal(rec.latest?.wal, wal);
        assert.equal(rec.latest?.timeline, tli);
        const n = parseInt(wal.slice(16), 16);
        assert.equal(rec.latest?.lsn, segEnd(n));
        assert.equal(rec.latest?.time, archivedAt(n).toISOString());
        assert.equal(rec.latest?.timeIsUpperBound, true);
        assert.equal(rec.latestAgeSeconds, (NOW.getTime() - archivedAt(n).getTime()) / 1000);
      }
      for (const b of r.backups) {
        const expected = c.notRestorable?.[b.id];
        assert.equal(b.restorable, expected === undefined, `${b.id} restorable`);
        if (expected) assert.match(b.problem ?? '', expected);
        else assert.equal(b.problem, null);
      }
      const sys = rec.systems[0]!;
      assert.deepEqual(sys.unreachable.map((u) => [u.from.lsn, u.to.lsn]), c.unreachable ?? []);
      if (c.note) assert.ok(sys.notes.some((n) => c.note!.test(n)), `notes: ${JSON.stringify(sys.notes)}`);
      else assert.deepEqual(sys.notes, []);
    });
  }
});

describe('describeRepository: the rest of the report', () => {
  test('an empty cluster: nothing, and nothing restorable', () => {
    const r = describeRepository(catalogOf([]), extras({ encrypted: undefined }), NOW);
    const expected: InfoReport = {
      format: INFO_FORMAT,
      createdAt: NOW.toISOString(),
      cluster: 'main',
      repo: 'memory://info-test',
      backups: [],
      dumps: [],
      wal: [],
      repository: { url: 'memory://info-test', cluster: 'main', encrypted: null, ...emptyUsage() },
      lastVerify: null,
      lastDrill: null,
      recoverability: { earliest: null, latest: null, latestAgeSeconds: null, systems: [] },
      readers: [],
      readersUnreadable: [],
    };
    assert.deepEqual(r, expected);
  });

  test('reader leases: every one by id, live or lapsed at the report\'s time, with its description; unreadable ones apart', () => {
    const lease = (id: string, expiresAt: string): ReaderLease => ({
      format: READER_LEASE_FORMAT, id, purpose: 'restore', tool: 'cairn-restore', host: 'db1', pid: 7, pgdata: '/srv/pg', systemId: '1',
      walSegmentSize: 16 * 1024 * 1024, backup: F1, chain: [F1], dumps: [], wal: [{ timeline: 1, from: '000000010000000000000002', to: '000000010000000000000009' }],
      target: 'latest', lifetimeSeconds: 86400, createdAt: '2026-11-21T00:00:00.000Z', renewedAt: '2026-11-21T00:00:00.000Z', expiresAt,
    });
    const live = lease('20261121-000000-0000000b', '2026-11-22T00:00:00.001Z');
    const lapsed = lease('20261121-000000-0000000a', NOW.toISOString());
    const readers = { leases: [live, lapsed], unreadable: [{ key: 'main/readers/x.json', problem: 'not a reader lease name' }] };
    const r = describeRepository(catalogOf([]), extras({ readers }), NOW);
    assert.deepEqual(r.readers.map((x) => [x.id, x.live]), [[lapsed.id, false], [live.id, true]]);
    const { format: _format, ...fields } = live;
    assert.deepEqual(r.readers[1], { ...fields, live: true, description: `the restore of backup ${F1} into "/srv/pg" on host "db1" (lease ${live.id}, renewed at 2026-11-21T00:00:00.000Z)` });
    assert.deepEqual(r.readersUnreadable, readers.unreadable);
  });

  test('WAL per timeline: range, count, bytes, gaps and the newest archive time', () => {
    const r = describeRepository(catalogOf([backup(F1, 2, 3)], listing([[1, 2, 12], [2, 12, 14]], [4, 7, 8], [2])), extras(), NOW);
    assert.equal(r.wal.length, 1);
    const w = r.wal[0]!;
    assert.equal(w.systemId, SYS);
    assert.equal(w.registered, true);
    assert.equal(w.walSegmentSize, SEG);
    assert.deepEqual(w.historyFiles, [2]);
    assert.deepEqual(w.timelines, [
      {
        timeline: 1, first: seg(1, 2), last: seg(1, 12), segments: 8, bytes: 8000, missingSegments: 3, gapCount: 2,
        gaps: [{ from: seg(1, 4), to: seg(1, 4), segments: 1 }, { from: seg(1, 7), to: seg(1, 8), segments: 2 }],
        newestArchived: archivedAt(12).toISOString(),
      },
      { timeline: 2, first: seg(2, 12), last: seg(2, 14), segments: 3, bytes: 3000, missingSegments: 0, gapCount: 0, gaps: [], newestArchived: archivedAt(14).toISOString() },
    ]);
  });

  test(`gaps are all counted, the first ${MAX_LISTED_GAPS} listed`, () => {
    const every2nd = Array.from({ length: 15 }, (_, i) => 3 + 2 * i);
    const t = describeRepository(catalogOf([], listing([[1, 2, 40]], every2nd)), extras(), NOW).wal[0]!.timelines[0]!;
    assert.equal(t.gapCount, 15);
    assert.equal(t.missingSegments, 15);
    assert.equal(t.gaps.length, MAX_LISTED_GAPS);
    assert.equal(t.gaps[0]!.from, seg(1, 3));
  });

  test('backups: ids, type, parent, positions and sizes as the manifest has them', () => {
    const r = describeRepository(catalogOf([backup(F1, 2, 3), backup(I1, 5, 6, { parent: F1 })], listing([[1, 2, 6]])), extras(), NOW);
    assert.deepEqual(r.backups.map((b) => [b.id, b.type, b.parent, b.start.lsn, b.stop.lsn, b.stop.wal, b.size, b.storedSize]), [
      [F1, 'full', null, '0/2000028', '0/3000100', seg(1, 3), 30_000_000, 4_000_000],
      [I1, 'incr', F1, '0/5000028', '0/6000100', seg(1, 6), 30_000_000, 4_000_000],
    ]);
  });

  test('a long archive with many backups: every backup restorable, latest from the newest', () => {
    const ids = Array.from({ length: 30 }, (_, i) => `202611${String(1 + Math.floor(i / 24)).padStart(2, '0')}-${String(i % 24).padStart(2, '0')}0000F`);
    const backups = ids.map((id, i) => backup(id, 100 + i * 300, 101 + i * 300));
    const started = Date.now();
    const r = describeRepository(catalogOf(backups, listing([[1, 100, 9200]])), extras(), NOW);
    const ms = Date.now() - started;
    assert.ok(r.backups.every((b) => b.restorable));
    assert.equal(r.recoverability.systems[0]!.restorableBackups, 30);
    assert.equal(r.recoverability.earliest?.backup, ids[0]);
    assert.equal(r.recoverability.latest?.backup, ids[29]);
    assert.equal(r.recoverability.latest?.wal, seg(1, 9200));
    assert.ok(ms < 20_000, `took ${ms} ms`);
  });

  test('dumps: database (null for globals), format, times and sizes', () => {
    const dump = (id: string, database: string | null): DumpSummary => ({
      format: DUMP_MANIFEST_FORMAT, cairnVersion: '0.1.0', id, database, dir: database ?? '@globals',
      dumpFormat: database === null ? 'globals' : 'custom', systemId: SYS, serverVersionNum: 150004, pgMajor: '15',
      pgDumpVersion: 'pg_dump (PostgreSQL) 15.4', filters: { schemas: [], tables: [], excludeTables: [] }, compress: 'zstd:3', encrypted: false,
      start: { time: '2026-11-21T03:00:00.000Z' }, stop: { time: '2026-11-21T03:00:05.000Z' }, durationSeconds: 5, totals: { size: 500, storedSize: 100 },
    });
    const cat = { ...catalogOf([]), dumps: [dump('20261121-030000000', 'app'), dump('20261121-030000001', null)] };
    assert.deepEqual(describeRepository(cat, extras(), NOW).dumps, [
      { id: '20261121-030000000', database: 'app', dumpFormat: 'custom', systemId: SYS, pgMajor: '15', startTime: '2026-11-21T03:00:00.000Z', stopTime: '2026-11-21T03:00:05.000Z', size: 500, storedSize: 100, durationSeconds: 5, compress: 'zstd:3', encrypted: false },
      { id: '20261121-030000001', database: null, dumpFormat: 'globals', systemId: SYS, pgMajor: '15', startTime: '2026-11-21T03:00:00.000Z', stopTime: '2026-11-21T03:00:05.000Z', size: 500, storedSize: 100, durationSeconds: 5, compress: 'zstd:3', encrypted: false },
    ]);
  });

  test('the last verify is summarised; a drill result is read defensively', () => {
    const verify: VerifyResult = {
      format: VERIFY_RESULT_FORMAT, id: '20261121-230000', cluster: 'main', repo: 'memory://info-test', scope: 'all',
      start: { time: '2026-11-21T23:00:00.000Z' }, stop: { time: '2026-11-21T23:05:00.000Z' }, durationSeconds: 300, ok: false,
      checked: { backups: 1, dumps: 0, objects: 10, bytes: 1, storedBytes: 1, walSegments: 3, historyFiles: 0 },
      problems: [{ kind: 'wal-gap', subject: seg(1, 4), message: 'missing', hint: 'run archiving' }],
    };
    const cases: { body: unknown; expected: InfoReport['lastDrill'] }[] = [
      {
        body: { ok: true, rtoSeconds: 42.5, dataAgeSeconds: 60, start: { time: '2026-11-21T21:58:30Z' }, stop: { time: '2026-11-21T22:00:00Z' } },
        expected: { id: 'd1', ok: true, rtoSeconds: 42.5, dataAgeSeconds: 60, durationSeconds: 90, time: '2026-11-21T22:00:00Z' },
      },
      // No start, or a stop before it: no duration.
      { body: { ok: true, stop: { time: '2026-11-21T22:00:00Z' } }, expected: { id: 'd1', ok: true, rtoSeconds: null, dataAgeSeconds: null, durationSeconds: null, time: '2026-11-21T22:00:00Z' } },
      {
        body: { ok: false, start: { time: '2026-11-21T22:00:01Z' }, stop: { time: '2026-11-21T22:00:00Z' } },
        expected: { id: 'd1', ok: false, rtoSeconds: null, dataAgeSeconds: null, durationSeconds: null, time: '2026-11-21T22:00:00Z' },
      },
      { body: { ok: 'yes', rtoSeconds: '42', time: 7, start: { time: 'soon' } }, expected: { id: 'd1', ok: null, rtoSeconds: null, dataAgeSeconds: null, durationSeconds: null, time: null } },
      { body: null, expected: { id: 'd1', ok: null, rtoSeconds: null, dataAgeSeconds: null, durationSeconds: null, time: null } },
    ];
    for (const c of cases) {
      const r = describeRepository(catalogOf([]), extras({ lastVerify: verify, lastDrill: { id: 'd1', body: c.body } }), NOW);
      assert.deepEqual(r.lastVerify, { id: '20261121-230000', time: '2026-11-21T23:05:00.000Z', ok: false, scope: 'all', problems: 1, durationSeconds: 300 });
      assert.deepEqual(r.lastDrill, c.expected);
    }
  });

  test('tallyObject counts objects and bytes by area', () => {
    const u = emptyUsage();
    const objects: [string, number][] = [
      ['main/backups/20261121-010000F/manifest.json', 10],
      ['main/backups/20261121-010000F/base/1/1259.zst', 1000],
      ['main/wal/1/0000000100000000/x', 100],
      ['main/dumps/db/20261121-010000/manifest.json', 5],
      ['main/repo.json', 1],
      ['main/verify/20261121-230000.json', 2],
    ];
    for (const [k, s] of objects) tallyObject(u, 'main', k, s);
    assert.deepEqual(u, {
      objects: 6, bytes: 1118,
      areas: { backups: { objects: 2, bytes: 1010 }, wal: { objects: 1, bytes: 100 }, dumps: { objects: 1, bytes: 5 }, other: { objects: 2, bytes: 3 } },
    });
  });
});
