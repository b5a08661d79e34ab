// What cairn-info reports about one repository, computed without I/O from the
// catalog and a few extras: backups, dumps, the WAL archive per system and
// timeline, the repository's size, the last verify and drill, the
// recoverability window (the earliest and latest point a restore reaches,
// computed in recoverability.ts) and the reader leases of restores and
// drills in progress. The JSON form is `cairn.info/1`,
// documented in the README as stable: fields are only ever added.

import type { BackupSummary } from '../backup/manifest.js';
import type { DumpSummary } from '../dump/manifest.js';
import type { RepoCatalog, WalListing } from '../repo/catalog.js';
import { describeReader, isLiveReader, type ReaderLease, type ReaderLeaseListing } from '../repo/reader-lease.js';
import type { SystemRecord } from '../repo/systems.js';
import type { VerifyResult } from '../verify/result-format.js';
import { timelineOf } from '../wal/file-name.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { DEFAULT_SEGMENT_SIZE, isValidSegmentSize, segmentName, segmentNumber } from '../wal/segment.js';
import { describeRecoverability, type InfoRecoverability } from './recoverability.js';

export const INFO_FORMAT = 'cairn.info/1';

/** How many gaps of a timeline the report lists (all are counted). */
export const MAX_LISTED_GAPS = 10;

// ---- the report ------------------------------------------------------------

export interface InfoBackup {
  id: string;
  type: 'full' | 'diff' | 'incr';
  parent: string | null;
  systemId: string;
  pgMajor: string;
  timeline: number;
  start: { time: string; lsn: string; wal: string };
  stop: { time: string; lsn: string; wal: string };
  /** Restored size (sum of file sizes). */
  size: number;
  /** Bytes this backup stored itself (not counting what it references). */
  storedSize: number;
  durationSeconds: number;
  compress: string;
  encrypted: boolean;
  /** Its chain is complete and its WAL from start to stop is archived. */
  restorable: boolean;
  /** Why it is not restorable; null when it is. */
  problem: string | null;
}

export interface InfoDump {
  id: string;
  /** null for the globals dump (roles, tablespaces). */
  database: string | null;
  dumpFormat: string;
  systemId: string;
  pgMajor: string;
  startTime: string;
  stopTime: string;
  size: number;
  storedSize: number;
  durationSeconds: number;
  compress: string;
  encrypted: boolean;
}

export interface InfoWalGap {
  /** First and last missing segment (inclusive). */
  from: string;
  to: string;
  segments: number;
}

export interface InfoWalTimeline {
  timeline: number;
  first: string;
  last: string;
  segments: number;
  /** Stored bytes. */
  bytes: number;
  /** Segments missing between first and last. */
  missingSegments: number;
  gapCount: number;
  /** The first MAX_LISTED_GAPS gaps, oldest first. */
  gaps: InfoWalGap[];
  /** When the newest segment of the timeline was stored (ISO 8601). */
  newestArchived: string;
}

export interface InfoWalSystem {
  systemId: string;
  /** Has systems/<id>.json. */
  registered: boolean;
  /** From its backups or its registration; 16 MiB when neither says. */
  walSegmentSize: number;
  timelines: InfoWalTimeline[];
  /** Timelines whose history file is stored. */
  historyFiles: number[];
  /** .partial and .backup files. */
  otherFiles: number;
  /** Objects under the system's WAL prefix that cairn does not write. */
  foreignObjects: number;
}

export interface AreaUsage {
  objects: number;
  bytes: number;
}

/** Stored objects and bytes under `<cluster>/`, by top-level area. */
export interface RepoUsage extends AreaUsage {
  areas: { backups: AreaUsage; dumps: AreaUsage; wal: AreaUsage; other: AreaUsage };
}

export interface InfoRepository extends RepoUsage {
  url: string;
  cluster: string;
  /** From repo.json; null when the cluster has none yet. */
  encrypted: boolean | null;
}

export interface InfoVerify {
  id: string;
  time: string;
  ok: boolean;
  scope: string;
  problems: number;
  durationSeconds: number;
}

export interface InfoDrill {
  id: string;
  /** Fields the drill result did not have (or not as expected) are null. */
  time: string | null;
  ok: boolean | null;
  rtoSeconds: number | null;
  dataAgeSeconds: number | null;
  /** The whole drill's wall time (its stop − start: restore, recovery, checks). */
  durationSeconds: number | null;
}

/** A reader lease (issue 12): a restore or drill that says what it still needs; expire keeps that while the lease is live. */
export interface InfoReader extends Omit<ReaderLease, 'format'> {
  /** Unexpired at the report's time. */
  live: boolean;
  /** For people: what reads, where, and the lease's last renewal. */
  description: string;
}

export interface InfoReport {
  format: typeof INFO_FORMAT;
  createdAt: string;
  cluster: string;
  repo: string;
  /** Oldest first. */
  backups: InfoBackup[];
  /** Oldest first. */
  dumps: InfoDump[];
  wal: InfoWalSystem[];
  repository: InfoRepository;
  lastVerify: InfoVerify | null;
  lastDrill: InfoDrill | null;
  recoverability: InfoRecoverability;
  /** Every reader lease, live or lapsed (a lapsed one protects nothing; cairn-expire removes it later), by id. */
  readers: InfoReader[];
  /** Objects under readers/ that are not leases cairn can read: they protect nothing. */
  readersUnreadable: { key: string; problem: string }[];
  /** Backups and dumps left out because their manifest is damaged (present only when there are some; exit status 4). */
  damaged?: InfoDamaged[];
}

export interface InfoDamaged {
  kind: 'backup' | 'dump';
  /** Backup id, or `DIR/ID` of a dump. */
  id: string;
  /** The manifest's key. */
  key: string;
  message: string;
}

/** What cairn-info --json prints: one report per repository, and the repositories that could not be read. */
export interface InfoDocument {
  format: typeof INFO_FORMAT;
  createdAt: string;
  repositories: InfoReport[];
  errors: { repo: string; code: string; message: string; hint: string | null }[];
}

// ---- inputs besides the catalog ---------------------------------------------

export interface InfoExtras {
  usage: RepoUsage;
  /** repo.json says encrypted; undefined when there is no repo.json. */
  encrypted: boolean | undefined;
  /** Registration records of the systems (segment size when no backup says). */
  systems: readonly SystemRecord[];
  /** Decoded history files per system id, by timeline. */
  histories: ReadonlyMap<string, ReadonlyMap<number, readonly TimelineHistoryEntry[]>>;
  lastVerify: VerifyResult | undefined;
  /** The newest drill result as stored (its id from the key, its JSON unchecked). */
  lastDrill: { id: string; body: unknown } | undefined;
  /** The cluster's reader leases; none when not given. */
  readers?: ReaderLeaseListing;
}

export function emptyUsage(): RepoUsage {
  const z = () => ({ objects: 0, bytes: 0 });
  return { objects: 0, bytes: 0, areas: { backups: z(), dumps: z(), wal: z(), other: z() } };
}

/** Counts one object of a listing of `<cluster>/` into `usage`. */
export function tallyObject(usage: RepoUsage, cluster: string, key: string, size: number): void {
  const area = key.slice(cluster.length + 1).split('/', 1)[0];
  const a = area === 'backups' || area === 'dumps' || area === 'wal' ? usage.areas[area] : usage.areas.other;
  a.objects++;
  a.bytes += size;
  usage.objects++;
  usage.bytes += size;
}

// ---- the pure half -----------------------------------------------------------

export function describeRepository(catalog: RepoCatalog, extras: InfoExtras, now: Date): InfoReport {
  const segSizes = segmentSizes(catalog, extras);
  const recoverability = describeRecoverability(catalog, extras.histories, now);
  const problems = new Map<string, string>();
  for (const [id, p] of recoverability.problems) problems.set(id, p);
  return {
    format: INFO_FORMAT,
    createdAt: now.toISOString(),
    cluster: catalog.cluster,
    repo: catalog.repo,
    backups: catalog.backups.map((b) => describeBackup(b, problems.get(b.id))),
    dumps: catalog.dumps.map(describeDump),
    wal: describeWal(catalog, segSizes),
    repository: {
      url: catalog.repo,
      cluster: catalog.cluster,
      encrypted: extras.encrypted ?? null,
      ...extras.usage,
    },
    lastVerify: extras.lastVerify ? describeVerify(extras.lastVerify) : null,
    lastDrill: extras.lastDrill ? describeDrill(extras.lastDrill) : null,
    recoverability: recoverability.report,
    readers: [...(extras.readers?.leases ?? [])]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((r) => describeReaderLease(r, now)),
    readersUnreadable: (extras.readers?.unreadable ?? []).map((u) => ({ key: u.key, problem: u.problem })),
  };
}

function describeReaderLease(r: ReaderLease, now: Date): InfoReader {
  const { format: _format, ...fields } = r;
  return { ...fields, live: isLiveReader(r, now), description: describeReader(r) };
}

function describeBackup(b: BackupSummary, problem: string | undefined): InfoBackup {
  return {
    id: b.id,
    type: b.type,
    parent: b.parent,
    systemId: b.systemId,
    pgMajor: b.pgMajor,
    timeline: b.timeline,
    start: { time: b.start.time, lsn: b.start.lsn, wal: b.start.wal },
    stop: { time: b.stop.time, lsn: b.stop.lsn, wal: b.stop.wal },
    size: b.totals.size,
    storedSize: b.totals.storedSize,
    durationSeconds: b.durationSeconds,
    compress: b.compress,
    encrypted: b.encrypted,
    restorable: problem === undefined,
    problem: problem ?? null,
  };
}

function describeDump(d: DumpSummary): InfoDump {
  return {
    id: d.id,
    database: d.database,
    dumpFormat: d.dumpFormat,
    systemId: d.systemId,
    pgMajor: d.pgMajor,
    startTime: d.start.time,
    stopTime: d.stop.time,
    size: d.totals.size,
    storedSize: d.totals.storedSize,
    durationSeconds: d.durationSeconds,
    compress: d.compress,
    encrypted: d.encrypted,
  };
}

function describeVerify(v: VerifyResult): InfoVerify {
  return { id: v.id, time: v.stop.time, ok: v.ok, scope: v.scope, problems: v.problems.length, durationSeconds: v.durationSeconds };
}

/**
 * Drill results are written by cairn-drill (a later tool); their format is
 * read defensively here: a field that is missing or of another type is null.
 */
function describeDrill(d: { id: string; body: unknown }): InfoDrill {
  const o = typeof d.body === 'object' && d.body !== null ? (d.body as Record<string, unknown>) : {};
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const stop = typeof o['stop'] === 'object' && o['stop'] !== null ? (o['stop'] as Record<string, unknown>) : {};
  const time = typeof stop['time'] === 'string' ? stop['time'] : typeof o['time'] === 'string' ? o['time'] : null;
  const start = typeof o['start'] === 'object' && o['start'] !== null ? (o['start'] as Record<string, unknown>) : {};
  const ms = typeof start['time'] === 'string' && time !== null ? Date.parse(time) - Date.parse(start['time']) : NaN;
  return {
    id: d.id,
    time,
    ok: typeof o['ok'] === 'boolean' ? o['ok'] : null,
    rtoSeconds: num(o['rtoSeconds']),
    dataAgeSeconds: num(o['dataAgeSeconds']),
    durationSeconds: Number.isFinite(ms) && ms >= 0 ? ms / 1000 : null,
  };
}

/** WAL segment size per system: its backups say, else its registration, else PostgreSQL's default. */
function segmentSizes(catalog: RepoCatalog, extras: InfoExtras): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of extras.systems) {
    if (r.walSegmentSize !== undefined && isValidSegmentSize(r.walSegmentSize)) out.set(r.systemId, r.walSegmentSize);
  }
  for (const b of catalog.backups) if (isValidSegmentSize(b.walSegmentSize)) out.set(b.systemId, b.walSegmentSize);
  return out;
}

function describeWal(catalog: RepoCatalog, segSizes: ReadonlyMap<string, number>): InfoWalSystem[] {
  const ids = [...new Set([...catalog.systems, ...catalog.wal.keys()])].sort();
  return ids.map((systemId) => {
    const segSize = segSizes.get(systemId) ?? DEFAULT_SEGMENT_SIZE;
    const listing = catalog.wal.get(systemId);
    return {
      systemId,
      registered: catalog.systems.includes(systemId),
      walSegmentSize: segSize,
      timelines: listing ? describeTimelines(listing, segSize) : [],
      historyFiles: listing ? [...listing.histories.keys()].sort((a, b) => a - b) : [],
      otherFiles: listing?.others.length ?? 0,
      foreignObjects: listing?.foreign.length ?? 0,
    };
  });
}

function describeTimelines(listing: WalListing, segSize: number): InfoWalTimeline[] {
  const byTli = new Map<number, { segno: bigint; name: string; size: number; mtime: Date }[]>();
  for (const [name, s] of listing.segments) {
    let segno: bigint;
    try {
      segno = segmentNumber(name, segSize);
    } catch {
      continue; // not a segment name of this size: nothing PostgreSQL would ask for
    }
    const tli = timelineOf(name);
    let list = byTli.get(tli);
    if (!list) byTli.set(tli, (list = []));
    list.push({ segno, name, size: s.size, mtime: s.mtime });
  }
  const out: InfoWalTimeline[] = [];
  for (const [tli, list] of [...byTli].sort((a, b) => a[0] - b[0])) {
    list.sort((a, b) => (a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : 0));
    const gaps: InfoWalGap[] = [];
    let gapCount = 0;
    let missing = 0n;
    let bytes = 0;
    let newest = list[0]!.mtime;
    for (let i = 0; i < list.length; i++) {
      const s = list[i]!;
      bytes += s.size;
      if (s.mtime > newest) newest = s.mtime;
      const prev = list[i - 1];
      if (prev !== undefined && s.segno > prev.segno + 1n) {
        gapCount++;
        missing += s.segno - prev.segno - 1n;
        if (gaps.length < MAX_LISTED_GAPS) {
          gaps.push({
            from: segmentName(tli, prev.segno + 1n, segSize),
            to: segmentName(tli, s.segno - 1n, segSize),
            segments: Number(s.segno - prev.segno - 1n),
          });
        }
      }
    }
    out.push({
      timeline: tli,
      first: list[0]!.name,
      last: list.at(-1)!.name,
      segments: list.length,
      bytes,
      missingSegments: Number(missing),
      gapCount,
      gaps,
      newestArchived: newest.toISOString(),
    });
  }
  return out;
}
