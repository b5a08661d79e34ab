// Planning retention, without I/O: which backups, dumps, WAL files and debris
// a policy lets go, and why each backup stays. The rule it keeps (docs/design.md
// §4.6): a backup goes only with everything that depends on it, and WAL only
// below the oldest kept backup that can read it; what a live reader lease (a
// restore or drill in progress, issue 12) needs stays whatever the policy.
// applyExpire deletes exactly the keys listed here (and, for a backup or dump
// planned from counts, the objects under its prefix: issue 19) and decides nothing.

import { chainDepth, indexChains } from '../backup/chain.js';
import { isBackupId, type BackupSummary } from '../backup/manifest.js';
import { GLOBALS_DIR, isDumpId, type DumpSummary } from '../dump/manifest.js';
import type { StoredWal } from '../repo/wal-archive.js';
import { abandonedDebris, type RepoDebris } from '../repo/debris.js';
import { describeReader, isLiveReader, readerLeaseKey, type ReaderLease, type ReaderPurpose } from '../repo/reader-lease.js';
import type { ObjectInfo } from '../storage/driver.js';
import type { Duration } from '../util/duration.js';
import { groupByTimeline, isSegmentName } from '../wal/file-name.js';
import { historyTimelines, type TimelineHistoryEntry } from '../wal/history.js';
import { isLsn, parseLsn } from '../wal/lsn.js';
import { placeOnTimeline } from '../restore/planner.js';
import { compareSegments, isValidSegmentSize, lsnToSegmentNumber, segmentName, segmentNumber } from '../wal/segment.js';

export const EXPIRE_PLAN_FORMAT = 'cairn.expire-plan/1';

/** Counts are ≥ 1 when set; an unset field is no policy. */
export interface ExpirePolicy {
  keepFull?: number;
  keepDiff?: number;
  keepWithin?: Duration;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  keepDumps?: number;
  keepDumpsWithin?: Duration;
  keepDumpsDaily?: number;
  keepDumpsWeekly?: number;
  keepDumpsMonthly?: number;
  keepDumpsYearly?: number;
  /** Objects of a backup or dump without a manifest go once their newest is older than this. */
  debrisGrace: Duration;
}

/** The WAL archive of one system as expire needs it. */
export interface ExpireWal {
  /** Every stored WAL object (every copy), history files included. */
  files: readonly StoredWal[];
  /** Decoded history files by timeline. */
  histories: ReadonlyMap<number, readonly TimelineHistoryEntry[]>;
}

export interface ExpireCatalog {
  cluster: string;
  /** The repository's URL (no credentials). */
  repo: string;
  backups: readonly BackupSummary[];
  dumps: readonly DumpSummary[];
  /** By system id. */
  wal: ReadonlyMap<string, ExpireWal>;
  /** Every object under <cluster>/backups/ and <cluster>/dumps/, manifests included (left empty when objectGroups is given). */
  objects: readonly ObjectInfo[];
  /**
   * The same objects counted per backup or dump (createObjectGrouper without
   * keys): what the I/O half gives, so a million objects are a few numbers
   * (issue 19). Steps of these groups then name a prefix that applyExpire
   * lists, rather than every key.
   */
  objectGroups?: ReadonlyMap<string, ExpireObjectGroup>;
  /** Leftovers of unfinished writes under <cluster>/ (temp files and empty directories on fs; intents of WAL pushes). */
  leftovers?: readonly RepoDebris[];
  /** Reader leases of the cluster (restores and drills in progress), live or lapsed. */
  readers?: readonly ReaderLease[];
  /** Objects under readers/ that are not leases cairn can judge: listed, never protecting, never removed. */
  unreadableReaders?: readonly { key: string; problem: string }[];
}

export type ExpireAction = 'keep' | 'remove';

export interface ExpirePlanBackup {
  id: string;
  type: BackupSummary['type'];
  parent: string | null;
  systemId: string;
  timeline: number;
  stopTime: string;
  action: ExpireAction;
  /** Why it stays (each policy that keeps it), or why it goes. */
  reasons: string[];
  objects: number;
  bytes: number;
}

export interface ExpirePlanDump {
  /** null for the globals dump. */
  database: string | null;
  dir: string;
  id: string;
  stopTime: string;
  action: ExpireAction;
  reasons: string[];
  objects: number;
  bytes: number;
}

export interface ExpirePlanWal {
  systemId: string;
  timeline: number;
  /** The first segment number kept on this timeline, as a name; null when all of it goes or all stays. */
  keepFrom: string | null;
  /** What goes: segment-like names from…to (inclusive); null when nothing goes. */
  removed: { from: string; to: string; segments: number; files: number; bytes: number } | null;
  /** Files (segments, .partial, .backup) that stay on this timeline. */
  keptFiles: number;
  reason: string;
}

export interface ExpirePlanDebris {
  /**
   * backups/<id>/ or dumps/<dir>/<id>/ under the cluster; or a leftover of
   * an unfinished write, as the repository path (a temp file, an empty
   * directory ending in '/', or the key of a WAL push's intent).
   */
  prefix: string;
  objects: number;
  bytes: number;
  /** The newest object's mtime. */
  newest: string;
}

/** A reader lease as the plan shows it; an unreadable object under readers/ has nulls. */
export interface ExpirePlanReader {
  /** The lease id; for an unreadable object, its name under readers/. */
  id: string;
  key: string;
  purpose: ReaderPurpose | null;
  host: string | null;
  pgdata: string | null;
  backup: string | null;
  /** Dumps it reads, as <dir>/<id>. */
  dumps: string[];
  renewedAt: string | null;
  expiresAt: string | null;
  /** Unexpired at the plan's time: what it needs stays. */
  live: boolean;
  /** remove: lapsed longer ago than the debris grace. */
  action: ExpireAction;
  reason: string;
}

export interface ExpirePlan {
  format: typeof EXPIRE_PLAN_FORMAT;
  createdAt: string;
  cluster: string;
  repo: string;
  policy: Record<string, number | string | null>;
  /** Every backup, oldest first. */
  backups: ExpirePlanBackup[];
  /** Every dump, by database dir then oldest first. */
  dumps: ExpirePlanDump[];
  wal: ExpirePlanWal[];
  debris: ExpirePlanDebris[];
  /** Every reader lease, by id, then the unreadable objects under readers/. */
  readers: ExpirePlanReader[];
  totals: {
    backupsRemoved: number;
    backupsKept: number;
    dumpsRemoved: number;
    dumpsKept: number;
    walSegmentsRemoved: number;
    walFilesRemoved: number;
    debrisObjectsRemoved: number;
    /** Stored bytes freed by all of the above. */
    bytes: number;
    readersLive: number;
    /** Lapsed leases removed. */
    readersRemoved: number;
    /** What stays only because a live reader lease needs it (the policies alone would remove it). */
    backupsKeptForReaders: number;
    dumpsKeptForReaders: number;
    walSegmentsKeptForReaders: number;
  };
}

/** One group of deletions, in apply order; `keys` in order too (a manifest first). */
export interface ExpireStep {
  kind: 'backup' | 'dump' | 'wal' | 'debris' | 'lease' | 'leftover';
  /** The backup id, dump dir/id, system/timeline, debris prefix, reader lease id or leftover path. */
  name: string;
  keys: string[];
  /**
   * After `keys`: every object listed under this prefix when the step is
   * applied (the objects of a backup or dump planned from objectGroups; the
   * manifest is in `keys`, so it still goes first).
   */
  prefix?: string;
  bytes: number;
}

export interface ExpireResult {
  plan: ExpirePlan;
  steps: ExpireStep[];
}

export function hasBackupPolicy(p: ExpirePolicy): boolean {
  return [p.keepFull, p.keepDiff, p.keepWithin, p.keepDaily, p.keepWeekly, p.keepMonthly, p.keepYearly].some((v) => v !== undefined);
}

export function hasDumpPolicy(p: ExpirePolicy): boolean {
  return [p.keepDumps, p.keepDumpsWithin, p.keepDumpsDaily, p.keepDumpsWeekly, p.keepDumpsMonthly, p.keepDumpsYearly].some((v) => v !== undefined);
}

/** The policy as the plan shows it: the flag names, null when not given. */
function describePolicy(p: ExpirePolicy): Record<string, number | string | null> {
  return {
    keepFull: p.keepFull ?? null,
    keepDiff: p.keepDiff ?? null,
    keepWithin: p.keepWithin?.text ?? null,
    keepDaily: p.keepDaily ?? null,
    keepWeekly: p.keepWeekly ?? null,
    keepMonthly: p.keepMonthly ?? null,
    keepYearly: p.keepYearly ?? null,
    keepDumps: p.keepDumps ?? null,
    keepDumpsWithin: p.keepDumpsWithin?.text ?? null,
    keepDumpsDaily: p.keepDumpsDaily ?? null,
    keepDumpsWeekly: p.keepDumpsWeekly ?? null,
    keepDumpsMonthly: p.keepDumpsMonthly ?? null,
    keepDumpsYearly: p.keepDumpsYearly ?? null,
    debrisGrace: p.debrisGrace.text,
  };
}

/**
 * Plans expiry over one repository's catalog at `now`. Policies combine as a
 * union: whatever any of them keeps stays, with everything it needs.
 */
export function planExpire(catalog: ExpireCatalog, policy: ExpirePolicy, now: Date): ExpireResult {
  const groups = groupObjects(catalog);
  // Only a lease unexpired now protects: one nobody renewed stopped
  // protecting when it lapsed, whether or not it is removed yet.
  const live = (catalog.readers ?? []).filter((r) => isLiveReader(r, now));
  const { backups, keptForReaders: backupsForReaders } = planBackups(catalog, policy, now, groups, live);
  const { dumps, keptForReaders: dumpsForReaders } = planDumps(catalog, policy, now, groups, live);
  const keptIds = new Set(backups.filter((b) => b.action === 'keep').map((b) => b.id));
  const kept = catalog.backups.filter((b) => keptIds.has(b.id));
  // With no backup policy the operator asked about dumps only: WAL stays.
  const wal = hasBackupPolicy(policy) ? planWal(catalog, kept, live) : { entries: [], steps: [] };
  const segmentsRemoved = (entries: readonly ExpirePlanWal[]) => entries.reduce((n, e) => n + (e.removed?.segments ?? 0), 0);
  // What the leases keep of WAL, for the summary: the plan the policies alone would make, minus this one.
  const walForReaders = live.length === 0 || !hasBackupPolicy(policy)
    ? 0
    : segmentsRemoved(planWal(catalog, kept.filter((b) => !backupsForReaders.has(b.id)), []).entries) - segmentsRemoved(wal.entries);
  const debris = planDebris(groups, policy, now);
  const readers = planReaders(catalog, policy, now);
  // Leftovers go last: the steps above leave fewer behind (remove prunes
  // empty directories), and a directory goes after what was in it.
  const leftovers = abandonedDebris(catalog.leftovers ?? [], now, now.getTime() - policy.debrisGrace.before(now).getTime());

  const steps: ExpireStep[] = [];
  // Children before parents (deeper in a chain first), so that at every
  // moment each backup that still has a manifest has its whole chain.
  const byId = new Map(catalog.backups.map((b) => [b.id, b]));
  const depth = (id: string): number => chainDepth(byId, id);
  const goingBackups = backups.filter((b) => b.action === 'remove').sort((a, b) => depth(b.id) - depth(a.id) || (a.id < b.id ? 1 : -1));
  for (const b of goingBackups) {
    const g = groups.get(`backups/${b.id}/`);
    steps.push({ kind: 'backup', name: b.id, ...(g ? groupKeys(catalog.cluster, g) : { keys: [] }), bytes: b.bytes });
  }
  for (const d of dumps.filter((x) => x.action === 'remove')) {
    const g = groups.get(`dumps/${d.dir}/${d.id}/`);
    steps.push({ kind: 'dump', name: `${d.dir}/${d.id}`, ...(g ? groupKeys(catalog.cluster, g) : { keys: [] }), bytes: d.bytes });
  }
  for (const w of wal.steps) steps.push(w);
  for (const d of debris) {
    const g = groups.get(d.prefix)!;
    steps.push({ kind: 'debris', name: d.prefix, ...groupKeys(catalog.cluster, g), bytes: d.bytes });
  }
  for (const r of readers.filter((x) => x.action === 'remove')) steps.push({ kind: 'lease', name: r.id, keys: [r.key], bytes: 0 });
  for (const l of leftovers) {
    // An intent is a stored object (every store): remove() takes it, as debris.
    steps.push({ kind: l.intent ? 'debris' : 'leftover', name: l.path, keys: [l.path], bytes: l.size });
    debris.push({ prefix: l.path, objects: 1, bytes: l.size, newest: l.mtime.toISOString() });
  }

  const removed = (xs: { action: ExpireAction }[]) => xs.filter((x) => x.action === 'remove').length;
  const plan: ExpirePlan = {
    format: EXPIRE_PLAN_FORMAT,
    createdAt: now.toISOString(),
    cluster: catalog.cluster,
    repo: catalog.repo,
    policy: describePolicy(policy),
    backups,
    dumps,
    wal: wal.entries,
    debris,
    readers,
    totals: {
      backupsRemoved: removed(backups),
      backupsKept: backups.length - removed(backups),
      dumpsRemoved: removed(dumps),
      dumpsKept: dumps.length - removed(dumps),
      walSegmentsRemoved: segmentsRemoved(wal.entries),
      walFilesRemoved: wal.entries.reduce((n, e) => n + (e.removed?.files ?? 0), 0),
      debrisObjectsRemoved: debris.reduce((n, d) => n + d.objects, 0),
      bytes: steps.reduce((n, s) => n + s.bytes, 0),
      readersLive: live.length,
      readersRemoved: removed(readers),
      backupsKeptForReaders: backupsForReaders.size,
      dumpsKeptForReaders: dumpsForReaders.size,
      walSegmentsKeptForReaders: walForReaders,
    },
  };
  return { plan, steps };
}

// ---- objects of backups and dumps -----------------------------------------

/** The objects of one backup or dump (or of an abandoned one: debris). */
export interface ExpireObjectGroup {
  /** backups/<id>/ or dumps/<dir>/<id>/, relative to the cluster. */
  prefix: string;
  objects: number;
  bytes: number;
  /** The newest object's mtime, ms. */
  newest: number;
  /** Its manifest.json, when it has one. */
  manifestKey: string | undefined;
  /** Every key in listing order, when the grouper keeps them. */
  keys?: string[];
}

/**
 * Sorts listed objects under backups/ and dumps/ into groups by the backup
 * or dump they belong to; `keepKeys` false keeps counts only (bounded).
 */
export function createObjectGrouper(cluster: string, keepKeys: boolean): { add(o: ObjectInfo): void; result(): Map<string, ExpireObjectGroup> } {
  const root = `${cluster}/`;
  const groups = new Map<string, ExpireObjectGroup>();
  return {
    add(o: ObjectInfo): void {
      if (!o.key.startsWith(root)) return;
      const parts = o.key.slice(root.length).split('/');
      let prefix: string;
      let rest: string[];
      // Only names cairn writes: anything else under backups/ or dumps/ is
      // not ours to judge.
      if (parts[0] === 'backups' && parts.length >= 3 && isBackupId(parts[1]!)) {
        prefix = `backups/${parts[1]}/`;
        rest = parts.slice(2);
      } else if (parts[0] === 'dumps' && parts.length >= 4 && isDumpId(parts[2]!)) {
        prefix = `dumps/${parts[1]}/${parts[2]}/`;
        rest = parts.slice(3);
      } else {
        return;
      }
      let g = groups.get(prefix);
      if (!g) groups.set(prefix, (g = { prefix, objects: 0, bytes: 0, newest: -Infinity, manifestKey: undefined, ...(keepKeys ? { keys: [] } : {}) }));
      g.objects++;
      g.bytes += o.size;
      g.newest = Math.max(g.newest, o.mtime.getTime());
      g.keys?.push(o.key);
      if (rest.length === 1 && rest[0] === 'manifest.json') g.manifestKey = o.key;
    },
    result: () => groups,
  };
}

/** The objects under backups/ and dumps/ by the backup or dump they belong to. */
function groupObjects(catalog: ExpireCatalog): ReadonlyMap<string, ExpireObjectGroup> {
  if (catalog.objectGroups) return catalog.objectGroups;
  const grouper = createObjectGrouper(catalog.cluster, true);
  for (const o of catalog.objects) grouper.add(o);
  return grouper.result();
}

/**
 * What deleting a group takes: the manifest first (deleting it first makes
 * the backup or dump stop existing at once), then the rest, named or, for a
 * group counted without its keys, listed under its prefix when applied.
 */
function groupKeys(cluster: string, g: ExpireObjectGroup): Pick<ExpireStep, 'keys' | 'prefix'> {
  const manifest = g.manifestKey === undefined ? [] : [g.manifestKey];
  if (g.keys === undefined) return { keys: manifest, prefix: `${cluster}/${g.prefix}` };
  return { keys: [...manifest, ...g.keys.filter((k) => k !== g.manifestKey)] };
}

function sizeOf(g: ExpireObjectGroup | undefined): { objects: number; bytes: number } {
  return { objects: g?.objects ?? 0, bytes: g?.bytes ?? 0 };
}

function planDebris(groups: ReadonlyMap<string, ExpireObjectGroup>, policy: ExpirePolicy, now: Date): ExpirePlanDebris[] {
  const before = policy.debrisGrace.before(now).getTime();
  const out: ExpirePlanDebris[] = [];
  for (const g of groups.values()) {
    if (g.manifestKey !== undefined) continue;
    const newest = g.newest;
    // A backup or dump still being written has young objects: the grace
    // period keeps expire from pulling them from under it.
    if (newest > before) continue;
    out.push({ prefix: g.prefix, ...sizeOf(g), newest: new Date(newest).toISOString() });
  }
  return out.sort((a, b) => (a.prefix < b.prefix ? -1 : 1));
}

// ---- retention by count, window and calendar ------------------------------

interface Dated {
  id: string;
  /** When it became restorable: the stop time, in ms. */
  time: number;
}

type Period = 'daily' | 'weekly' | 'monthly' | 'yearly';

/** The UTC day, ISO week, month or year `ms` falls in. */
export function periodOf(period: Period, ms: number): string {
  const iso = new Date(ms).toISOString();
  switch (period) {
    case 'daily':
      return iso.slice(0, 10);
    case 'monthly':
      return iso.slice(0, 7);
    case 'yearly':
      return iso.slice(0, 4);
    case 'weekly': {
      // ISO 8601: weeks start on Monday; week 1 holds the year's first Thursday.
      const d = new Date(Date.UTC(+iso.slice(0, 4), +iso.slice(5, 7) - 1, +iso.slice(8, 10)));
      const dow = d.getUTCDay() || 7;
      d.setUTCDate(d.getUTCDate() + 4 - dow);
      const year = d.getUTCFullYear();
      const week = Math.ceil(((d.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
      return `${year}-W${String(week).padStart(2, '0')}`;
    }
  }
}

const newestFirst = (a: Dated, b: Dated) => b.time - a.time || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

/**
 * GFS as restic's `forget --keep-daily` does it: for the newest `n` periods
 * that have an item, the newest item of each. Returns id → period.
 */
function keepPerPeriod(items: readonly Dated[], period: Period, n: number): Map<string, string> {
  const out = new Map<string, string>();
  const seen = new Set<string>();
  for (const it of [...items].sort(newestFirst)) {
    if (seen.size >= n) break;
    const p = periodOf(period, it.time);
    if (seen.has(p)) continue;
    seen.add(p);
    out.set(it.id, p);
  }
  return out;
}

const PERIODS: { period: Period; backup: keyof ExpirePolicy; dump: keyof ExpirePolicy }[] = [
  { period: 'daily', backup: 'keepDaily', dump: 'keepDumpsDaily' },
  { period: 'weekly', backup: 'keepWeekly', dump: 'keepDumpsWeekly' },
  { period: 'monthly', backup: 'keepMonthly', dump: 'keepDumpsMonthly' },
  { period: 'yearly', backup: 'keepYearly', dump: 'keepDumpsYearly' },
];

function timeMs(text: string): number {
  const ms = Date.parse(text);
  // An unreadable stop time sorts as the newest: never expired for being old.
  return Number.isNaN(ms) ? Number.MAX_SAFE_INTEGER : ms;
}

class Reasons {
  readonly keep = new Map<string, string[]>();
  add(id: string, reason: string): void {
    const r = this.keep.get(id);
    if (r === undefined) this.keep.set(id, [reason]);
    else if (!r.includes(reason)) r.push(reason);
  }
  has(id: string): boolean {
    return this.keep.has(id);
  }
}

/** Whether recovery along timeline `tli` can start from backup `b` (planRestore's route check). */
function reaches(b: BackupSummary, tli: number, hist: ReadonlyMap<number, readonly TimelineHistoryEntry[]>): boolean {
  if (b.timeline === tli) return true;
  if (!isLsn(b.start.lsn) || !isLsn(b.stop.lsn)) return false;
  let spans;
  try {
    spans = historyTimelines(hist.get(tli) ?? [], tli);
  } catch {
    return false; // a damaged history leads nowhere; planRestore refuses it too
  }
  return placeOnTimeline(spans, b.timeline, parseLsn(b.start.lsn), parseLsn(b.stop.lsn)).where === 'on-path';
}

function planBackups(
  catalog: ExpireCatalog,
  policy: ExpirePolicy,
  now: Date,
  groups: ReadonlyMap<string, ExpireObjectGroup>,
  live: readonly ReaderLease[],
): { backups: ExpirePlanBackup[]; keptForReaders: Set<string> } {
  const all = [...catalog.backups].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  // A damaged catalog may loop; the chain walks visit each backup once.
  const { byId, descendants, ancestors: chainOf } = indexChains(all);
  const dated = (b: BackupSummary): Dated => ({ id: b.id, time: timeMs(b.stop.time) });

  const keep = new Reasons();
  /** Policies that decide about each backup; one that none decides about stays. */
  const governed = new Map<string, string[]>();
  const govern = (id: string, label: string) => governed.set(id, [...(governed.get(id) ?? []), label]);

  if (!hasBackupPolicy(policy)) {
    for (const b of all) keep.add(b.id, 'no backup policy given');
  }
  if (policy.keepFull !== undefined) {
    const label = `keep-full ${policy.keepFull}`;
    for (const b of all) govern(b.id, label);
    const fulls = all.filter((b) => b.type === 'full').map(dated).sort(newestFirst).slice(0, policy.keepFull);
    for (const f of fulls) {
      keep.add(f.id, label);
      for (const d of descendants(f.id)) keep.add(d, `${label} (depends on ${f.id})`);
    }
  }
  if (policy.keepDiff !== undefined) {
    // Differential retention decides about differential backups and what
    // depends on them; full backups are --keep-full's business.
    const label = `keep-diff ${policy.keepDiff}`;
    for (const b of all) if (b.type === 'diff') for (const id of [b.id, ...descendants(b.id)]) govern(id, label);
    const diffs = all.filter((b) => b.type === 'diff').map(dated).sort(newestFirst).slice(0, policy.keepDiff);
    for (const d of diffs) {
      keep.add(d.id, label);
      for (const x of descendants(d.id)) keep.add(x, `${label} (depends on ${d.id})`);
    }
  }
  if (policy.keepWithin !== undefined) {
    const label = `keep-within ${policy.keepWithin.text}`;
    const cutoff = policy.keepWithin.before(now).getTime();
    for (const b of all) {
      govern(b.id, label);
      if (dated(b).time > cutoff) keep.add(b.id, label);
    }
    // The start of the window is reached from the newest backup that ended
    // before it; on every timeline a restore may follow, since a backup on
    // one branch cannot start recovery along another.
    for (const systemId of new Set(all.map((b) => b.systemId))) {
      const mine = all.filter((b) => b.systemId === systemId);
      const hist = catalog.wal.get(systemId)?.histories ?? new Map<number, readonly TimelineHistoryEntry[]>();
      const timelines = new Set([...mine.map((b) => b.timeline), ...hist.keys()]);
      for (const tli of timelines) {
        const anchor = mine
          .filter((b) => dated(b).time <= cutoff && reaches(b, tli, hist))
          .map(dated)
          .sort(newestFirst)[0];
        if (anchor) keep.add(anchor.id, `${label} (restores the start of the window on timeline ${tli})`);
      }
    }
  }
  for (const { period, backup } of PERIODS) {
    const n = policy[backup] as number | undefined;
    if (n === undefined) continue;
    const label = `keep-${period} ${n}`;
    for (const b of all) govern(b.id, label);
    for (const [id, p] of keepPerPeriod(all.map(dated), period, n)) keep.add(id, `${label} (${p})`);
  }
  // A repository is never emptied by expire.
  const newest = all.map(dated).sort(newestFirst)[0];
  if (newest) keep.add(newest.id, 'newest backup');
  if (hasBackupPolicy(policy)) for (const b of all) if (!governed.has(b.id)) keep.add(b.id, `no policy given decides about ${b.type} backups`);

  // Everything a kept backup restores through stays with it.
  for (const b of all) {
    if (!keep.has(b.id) || b.parent === null) continue;
    for (const anc of chainOf(b.id)) keep.add(anc, `needed by ${b.id}`);
  }

  // A recovery in progress reads its whole chain: the lease's own list and,
  // should that list be short, the ancestors the catalog links (issue 12).
  const byPolicy = new Set(keep.keep.keys());
  for (const lease of live) {
    const why = `needed by ${describeReader(lease)}`;
    for (const id of new Set([...lease.chain, ...(lease.backup === null ? [] : [lease.backup])])) {
      if (!byId.has(id)) continue;
      for (const x of [id, ...chainOf(id)]) if (byId.has(x)) keep.add(x, why);
    }
  }
  const keptForReaders = new Set([...keep.keep.keys()].filter((id) => !byPolicy.has(id)));

  const backups = all.map((b): ExpirePlanBackup => {
    const size = sizeOf(groups.get(`backups/${b.id}/`));
    const reasons = keep.keep.get(b.id);
    return {
      id: b.id,
      type: b.type,
      parent: b.parent,
      systemId: b.systemId,
      timeline: b.timeline,
      stopTime: b.stop.time,
      action: reasons ? 'keep' : 'remove',
      reasons: reasons ?? [`kept by none of: ${governed.get(b.id)!.join(', ')}`],
      ...size,
    };
  });
  return { backups, keptForReaders };
}

function planDumps(
  catalog: ExpireCatalog,
  policy: ExpirePolicy,
  now: Date,
  groups: ReadonlyMap<string, ExpireObjectGroup>,
  live: readonly ReaderLease[],
): { dumps: ExpirePlanDump[]; keptForReaders: Set<string> } {
  const keep = new Reasons();
  const governing: string[] = [];
  const byDir = new Map<string, DumpSummary[]>();
  for (const d of catalog.dumps) byDir.set(d.dir, [...(byDir.get(d.dir) ?? []), d]);
  const out: ExpirePlanDump[] = [];
  const ref = (d: DumpSummary) => `${d.dir}/${d.id}`;
  const dated = (d: DumpSummary): Dated => ({ id: ref(d), time: timeMs(d.stop.time) });

  for (const dumps of byDir.values()) {
    const items = dumps.map(dated);
    if (!hasDumpPolicy(policy)) for (const d of items) keep.add(d.id, 'no dump policy given');
    if (policy.keepDumps !== undefined) {
      const label = `keep-dumps ${policy.keepDumps}`;
      governing.push(label);
      for (const d of [...items].sort(newestFirst).slice(0, policy.keepDumps)) keep.add(d.id, label);
    }
    if (policy.keepDumpsWithin !== undefined) {
      const label = `keep-dumps-within ${policy.keepDumpsWithin.text}`;
      governing.push(label);
      const cutoff = policy.keepDumpsWithin.before(now).getTime();
      for (const d of items) if (d.time > cutoff) keep.add(d.id, label);
      const anchor = items.filter((d) => d.time <= cutoff).sort(newestFirst)[0];
      if (anchor) keep.add(anchor.id, `${label} (the state at the start of the window)`);
    }
    for (const { period, dump } of PERIODS) {
      const n = policy[dump] as number | undefined;
      if (n === undefined) continue;
      const label = `keep-dumps-${period} ${n}`;
      governing.push(label);
      for (const [id, p] of keepPerPeriod(items, period, n)) keep.add(id, `${label} (${p})`);
    }
    const newest = [...items].sort(newestFirst)[0];
    if (newest) keep.add(newest.id, 'newest dump of its database');
  }
  const byPolicy = new Set(keep.keep.keys());
  const refs = new Set(catalog.dumps.map(ref));
  for (const lease of live) {
    for (const d of lease.dumps) if (refs.has(d)) keep.add(d, `needed by ${describeReader(lease)}`);
  }
  const keptForReaders = new Set([...keep.keep.keys()].filter((id) => !byPolicy.has(id)));
  const because = [...new Set(governing)].join(', ');
  const sorted = [...catalog.dumps].sort((a, b) => (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const d of sorted) {
    const reasons = keep.keep.get(ref(d));
    out.push({
      database: d.dir === GLOBALS_DIR ? null : d.database,
      dir: d.dir,
      id: d.id,
      stopTime: d.stop.time,
      action: reasons ? 'keep' : 'remove',
      reasons: reasons ?? [`kept by none of: ${because}`],
      ...sizeOf(groups.get(`dumps/${d.dir}/${d.id}/`)),
    });
  }
  return { dumps: out, keptForReaders };
}

// ---- WAL -------------------------------------------------------------------

/**
 * Per system and timeline T: the files on T below the oldest start segment
 * of the kept backups that recovery along T can start from (those on T or
 * an ancestor of T), i.e. WAL no kept backup will ever read; and never at or
 * above the first segment on T a live reader lease's WAL ranges name, even
 * when that lease's backup is gone from the catalog. History files stay (a
 * restore along a timeline needs them, and they are tiny).
 */
function planWal(catalog: ExpireCatalog, kept: readonly BackupSummary[], live: readonly ReaderLease[]): { entries: ExpirePlanWal[]; steps: ExpireStep[] } {
  const entries: ExpirePlanWal[] = [];
  const steps: ExpireStep[] = [];
  for (const [systemId, archive] of [...catalog.wal].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const mine = kept.filter((b) => b.systemId === systemId);
    const byTli = groupByTimeline(archive.files.filter((f) => !f.walName.endsWith('.history')), (f) => f.walName);
    const segSize = mine[0]?.walSegmentSize;
    for (const [tli, files] of [...byTli].sort(([a], [b]) => a - b)) {
      const entry: ExpirePlanWal = { systemId, timeline: tli, keepFrom: null, removed: null, keptFiles: files.length, reason: '' };
      entries.push(entry);
      if (segSize === undefined || !isValidSegmentSize(segSize)) {
        // A new system whose first backup is still running, or one whose
        // backups the operator removed by hand: its WAL is not ours to judge.
        entry.reason = 'no kept backup of this system';
        continue;
      }
      if (tli > 1 && !archive.histories.has(tli)) {
        // Without its history file (not archived yet, or lost) nobody can
        // tell which backups lead to this timeline: after a failover it may
        // be all the WAL since the promotion. Not ours to judge.
        entry.reason = `no history file for timeline ${tli}: kept until one is archived`;
        continue;
      }
      const lineage = new Set([tli, ...(archive.histories.get(tli) ?? []).map((e) => e.timeline)]);
      if (mine.some((b) => lineage.has(b.timeline) && !isLsn(b.start.lsn))) {
        entry.reason = 'a kept backup that restores along this timeline has no readable start LSN: kept';
        continue;
      }
      let threshold: bigint | undefined;
      let from: string | undefined;
      for (const b of mine) {
        if (!lineage.has(b.timeline)) continue;
        const s = lsnToSegmentNumber(parseLsn(b.start.lsn), segSize);
        if (threshold === undefined || s < threshold) {
          threshold = s;
          from = b.id;
        }
      }
      entry.reason = threshold === undefined
        ? 'no kept backup can restore along this timeline'
        : `below the start of backup ${from}, the oldest kept one that restores along this timeline`;
      if (threshold !== undefined) entry.keepFrom = segmentName(tli, threshold, segSize);
      const floor = readerFloor(live, systemId, tli);
      if (floor !== undefined && (entry.keepFrom === null || floor.name.slice(8) < entry.keepFrom.slice(8))) {
        entry.keepFrom = floor.name;
        entry.reason = `below ${floor.name}, from where it is needed by ${describeReader(floor.lease)}`;
      }
      const going = files
        .filter((f) => {
          let n: bigint;
          try {
            n = segmentNumber(f.walName, segSize);
          } catch {
            return false; // not a name of this segment size: not ours to judge
          }
          // Within one timeline, fixed-width upper-case hex: text order is segment order.
          if (floor !== undefined && f.walName.slice(8, 24) >= floor.name.slice(8)) return false;
          return threshold === undefined || n < threshold;
        })
        .sort((a, b) => compareSegments(a.walName, b.walName) || (a.key < b.key ? -1 : 1));
      if (going.length === 0) continue;
      const bytes = going.reduce((n, f) => n + f.size, 0);
      entry.keptFiles = files.length - going.length;
      entry.removed = {
        from: going[0]!.walName,
        to: going.at(-1)!.walName,
        segments: new Set(going.filter((f) => isSegmentName(f.walName)).map((f) => f.walName)).size,
        files: going.length,
        bytes,
      };
      steps.push({ kind: 'wal', name: `${systemId}/timeline ${tli}`, keys: going.map((f) => f.key), bytes });
    }
  }
  return { entries, steps };
}

/**
 * The lowest segment on timeline `tli` of system `systemId` that a live
 * lease's WAL ranges start at. A lease without a system id (none of cairn's
 * tools write one) holds that timeline of every system: safe, not precise.
 */
function readerFloor(live: readonly ReaderLease[], systemId: string, tli: number): { name: string; lease: ReaderLease } | undefined {
  let best: { name: string; lease: ReaderLease } | undefined;
  for (const lease of live) {
    if (lease.systemId !== null && lease.systemId !== systemId) continue;
    for (const r of lease.wal) {
      if (r.timeline !== tli) continue;
      const name = segmentNameOnTimeline(tli, r.from);
      if (best === undefined || name.slice(8) < best.name.slice(8)) best = { name, lease };
    }
  }
  return best;
}

/** `from` with its timeline field set to `tli` (a lease's ranges are per timeline; the name's own field is not trusted). */
function segmentNameOnTimeline(tli: number, from: string): string {
  return tli.toString(16).toUpperCase().padStart(8, '0') + from.slice(8);
}

// ---- reader leases ------------------------------------------------------------

/**
 * Every reader lease as the plan shows it. A lease that lapsed longer than
 * the debris grace ago goes (its recovery is long over or abandoned); a live
 * one, or one lapsed more recently, stays: cairn-wal-get renews a lease only
 * while it exists, so one removed early is never made again. An object cairn
 * cannot read is listed and left alone.
 */
function planReaders(catalog: ExpireCatalog, policy: ExpirePolicy, now: Date): ExpirePlanReader[] {
  const before = policy.debrisGrace.before(now).getTime();
  const grace = policy.debrisGrace.text;
  const out: ExpirePlanReader[] = [];
  for (const r of [...(catalog.readers ?? [])].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    const live = isLiveReader(r, now);
    const lapsedLongAgo = !live && Date.parse(r.expiresAt) <= before;
    out.push({
      id: r.id,
      key: readerLeaseKey(catalog.cluster, r.id),
      purpose: r.purpose,
      host: r.host,
      pgdata: r.pgdata,
      backup: r.backup,
      dumps: [...r.dumps],
      renewedAt: r.renewedAt,
      expiresAt: r.expiresAt,
      live,
      action: lapsedLongAgo ? 'remove' : 'keep',
      reason: live
        ? `live until ${r.expiresAt}: what ${describeReader(r)} needs stays`
        : lapsedLongAgo
          ? `lapsed at ${r.expiresAt}, more than ${grace} ago: protects nothing`
          : `lapsed at ${r.expiresAt}: protects nothing; removed once lapsed for ${grace}`,
    });
  }
  for (const u of catalog.unreadableReaders ?? []) {
    out.push({
      id: u.key.slice(u.key.lastIndexOf('/') + 1),
      key: u.key,
      purpose: null,
      host: null,
      pgdata: null,
      backup: null,
      dumps: [],
      renewedAt: null,
      expiresAt: null,
      live: false,
      action: 'keep',
      reason: `not a reader lease cairn can read (${u.problem}): protects nothing and is not removed; remove it by hand once no restore uses it`,
    });
  }
  return out;
}
