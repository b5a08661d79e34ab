// Building expire catalogs for unit tests: backups, dumps, WAL and objects as
// the repository would hold them, without I/O.

import { MANIFEST_FORMAT, parseBackupId, type BackupSummary } from '../backup/manifest.js';
import { databaseDir, DUMP_MANIFEST_FORMAT, GLOBALS_DIR, type DumpSummary } from '../dump/manifest.js';
import { READER_LEASE_FORMAT, type ReaderLease } from '../repo/reader-lease.js';
import type { StoredWal } from '../repo/wal-archive.js';
import type { ObjectInfo } from '../storage/driver.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { formatLsn, parseLsn } from '../wal/lsn.js';
import { segmentName } from '../wal/segment.js';
import type { ExpireCatalog, ExpireWal } from './plan.js';

export const SEG = 16 * 1024 * 1024;
export const SYS = '7312345678901234567';
export const SYS2 = '7400000000000000001';
const SHA = 'a'.repeat(64);

export const lsnAt = (seg: number, off = 0x28) => formatLsn(BigInt(seg) * BigInt(SEG) + BigInt(off));
export const seg = (tli: number, n: number) => segmentName(tli, BigInt(n), SEG);

export interface BackupSpec {
  id: string;
  tli?: number;
  /** Start and stop segment numbers. */
  start: number;
  stop?: number;
  /** ISO time; default 10 minutes after the id's time. */
  stopTime?: string;
  parent?: string;
  system?: string;
}

/** What every test backup shares: PostgreSQL 15, 16 MiB segments, one file. */
const BACKUP_TEMPLATE = {
  format: MANIFEST_FORMAT,
  tool: { name: 'cairn-basebackup', version: '0.1.0' },
  source: 'local',
  cluster: 'main',
  pgVersionNum: 150004,
  pgMajor: '15',
  walSegmentSize: SEG,
  compress: 'zstd:3',
  encrypted: false,
  dataChecksums: true,
  tablespaces: [],
  totals: { size: 100, storedSize: 10, filesStored: 1, filesReferenced: 0, badPages: 0 },
  durationSeconds: 600,
} as const;

/** A backup starting at its id's time 0x28 into segment `start`, stopping 10 minutes later in `stop`. */
export function backup(o: BackupSpec): BackupSummary {
  const { time, type } = parseBackupId(o.id);
  const timeline = o.tli ?? 1;
  const stopSeg = o.stop ?? o.start + 1;
  const stopTime = o.stopTime ?? new Date(time.getTime() + 600_000).toISOString();
  const parent = o.parent ?? null;
  return {
    ...BACKUP_TEMPLATE,
    tablespaces: [],
    id: o.id,
    type,
    parent,
    references: parent === null ? [] : [parent],
    systemId: o.system ?? SYS,
    timeline,
    start: { time: time.toISOString(), lsn: lsnAt(o.start), wal: seg(timeline, o.start) },
    stop: { time: stopTime, lsn: lsnAt(stopSeg, 0x100), wal: seg(timeline, stopSeg) },
    checkpointLsn: lsnAt(o.start, 0x60),
    totals: { ...BACKUP_TEMPLATE.totals },
  };
}

export function dump(database: string | null, id: string, stopTime?: string): DumpSummary {
  const start = new Date(Date.UTC(+id.slice(0, 4), +id.slice(4, 6) - 1, +id.slice(6, 8), +id.slice(9, 11), +id.slice(11, 13), +id.slice(13, 15)));
  return {
    format: DUMP_MANIFEST_FORMAT,
    cairnVersion: '0.1.0',
    id,
    database,
    dir: database === null ? GLOBALS_DIR : databaseDir(database),
    dumpFormat: database === null ? 'globals' : 'custom',
    systemId: SYS,
    serverVersionNum: 150004,
    pgMajor: '15',
    pgDumpVersion: '15.4',
    filters: { schemas: [], tables: [], excludeTables: [] },
    compress: 'zstd:3',
    encrypted: false,
    start: { time: start.toISOString() },
    stop: { time: stopTime ?? new Date(start.getTime() + 60_000).toISOString() },
    durationSeconds: 60,
    totals: { size: 10, storedSize: 5 },
  } as DumpSummary;
}

export const hist = (...entries: [number, number][]): TimelineHistoryEntry[] =>
  entries.map(([timeline, segno]) => ({ timeline, switchLsn: parseLsn(lsnAt(segno, 0x1000)), reason: 'no recovery target specified' }));

/** A stored WAL file; segments are archived an hour apart from 2026-01-01 by default. */
export function walFile(system: string, walName: string, mtime = new Date('2026-01-01T00:00:00Z'), size = 1000): StoredWal {
  const dir = walName.endsWith('.history') ? '' : walName.slice(0, 16) + '/';
  return { walName, sha256: SHA, ext: '.zst', key: `main/wal/${system}/${dir}${walName}-${SHA}.zst`, size, mtime };
}

export interface CatalogSpec {
  backups?: BackupSummary[];
  dumps?: DumpSummary[];
  /** Per system: [timeline, first, last] segment ranges, extra file names, histories. */
  wal?: { system?: string; ranges: [number, number, number][]; extra?: string[]; histories?: Map<number, TimelineHistoryEntry[]>; mtime?: (tli: number, n: number) => Date }[];
  /** Extra objects (debris) with their mtimes. */
  objects?: ObjectInfo[];
  readers?: ReaderLease[];
  unreadableReaders?: { key: string; problem: string }[];
}

export interface LeaseSpec {
  /** Default: a restore lease id from `expiresAt`'s day. */
  id?: string;
  purpose?: ReaderLease['purpose'];
  backup?: string | null;
  /** Default: [backup]. */
  chain?: string[];
  dumps?: string[];
  /** [timeline, first segment number, last]. */
  wal?: [number, number, number][];
  /** Default SYS; null: a lease that names no system. */
  system?: string | null;
  expiresAt: string;
  /** Default: 24 h before expiresAt. */
  renewedAt?: string;
}

/** A reader lease as cairn-restore writes it, on host "db1" into /srv/pg. */
export function readerLease(o: LeaseSpec): ReaderLease {
  const expires = Date.parse(o.expiresAt);
  const renewedAt = o.renewedAt ?? new Date(expires - 86_400_000).toISOString();
  const backup = o.backup === undefined ? null : o.backup;
  return {
    format: READER_LEASE_FORMAT,
    id: o.id ?? `${renewedAt.slice(0, 10).replaceAll('-', '')}-${renewedAt.slice(11, 19).replaceAll(':', '')}-0000abcd`,
    purpose: o.purpose ?? 'restore',
    tool: 'cairn-restore',
    host: 'db1',
    pid: 4242,
    pgdata: '/srv/pg',
    systemId: o.system === undefined ? SYS : o.system,
    walSegmentSize: SEG,
    backup,
    chain: o.chain ?? (backup === null ? [] : [backup]),
    dumps: o.dumps ?? [],
    wal: (o.wal ?? []).map(([timeline, from, to]) => ({ timeline, from: seg(timeline, from), to: seg(timeline, to) })),
    target: 'latest',
    lifetimeSeconds: 86_400,
    createdAt: renewedAt,
    renewedAt,
    expiresAt: o.expiresAt,
  };
}

/** The objects a backup or dump with a manifest holds: the manifest and one data object. */
export function catalogOf(spec: CatalogSpec): ExpireCatalog {
  const backups = spec.backups ?? [];
  const dumps = spec.dumps ?? [];
  const objects: ObjectInfo[] = [];
  const t = new Date('2026-01-01T00:00:00Z');
  for (const b of backups) {
    objects.push({ key: `main/backups/${b.id}/data/base/1/1259.zst`, size: 1000, mtime: t });
    objects.push({ key: `main/backups/${b.id}/manifest.json`, size: 10, mtime: t });
  }
  for (const d of dumps) {
    objects.push({ key: `main/dumps/${d.dir}/${d.id}/dump.zst`, size: 500, mtime: t });
    objects.push({ key: `main/dumps/${d.dir}/${d.id}/manifest.json`, size: 10, mtime: t });
  }
  objects.push(...(spec.objects ?? []));
  objects.sort((a, b) => (a.key < b.key ? -1 : 1));
  const wal = new Map<string, ExpireWal>();
  for (const w of spec.wal ?? []) {
    const system = w.system ?? SYS;
    const files: StoredWal[] = [];
    for (const [tli, from, to] of w.ranges) {
      for (let n = from; n <= to; n++) files.push(walFile(system, seg(tli, n), w.mtime?.(tli, n)));
    }
    for (const name of w.extra ?? []) files.push(walFile(system, name));
    for (const tli of w.histories?.keys() ?? []) files.push(walFile(system, `${tli.toString(16).toUpperCase().padStart(8, '0')}.history`));
    wal.set(system, { files, histories: w.histories ?? new Map() });
  }
  return {
    cluster: 'main', repo: 'memory://expire-test', backups, dumps, wal, objects,
    ...(spec.readers ? { readers: spec.readers } : {}),
    ...(spec.unreadableReaders ? { unreadableReaders: spec.unreadableReaders } : {}),
  };
}
