// What one repository holds for a cluster, read once: backup and dump
// summaries, and the WAL archive listed per system. restore-plan, verify,
// expire, info and basebackup read manifests through its one loop; the pure
// halves of those tools take its parts as input.

import { Writable } from 'node:stream';
import { CairnError } from '../cli/errors.js';
import type { EncryptionKey } from '../codec/index.js';
import { listBackupIds, manifestKey, readManifest, type BackupManifest, type BackupSummary } from '../backup/manifest.js';
import { openManifest, readManifestSummary, type OpenedManifest } from '../backup/manifest-stream.js';
import { dumpManifestKey, listDumps, readDumpManifest, summarizeDump, type DumpManifest, type DumpRef, type DumpSummary } from '../dump/manifest.js';
import type { ObjectInfo, StorageDriver } from '../storage/driver.js';
import { isSegmentName, timelineOf } from '../wal/file-name.js';
import { parseTimelineHistory, type TimelineHistoryEntry } from '../wal/history.js';
import { quote } from '../wal/quote.js';
import { parseWalObjectName } from './layout.js';
import { listSystems } from './systems.js';
import { readWalInto, type StoredWal } from './wal-archive.js';

/** The WAL archive of one system. */
export interface WalListing {
  systemId: string;
  /** Segment name → its stored copy (the first listed when there are several: they differ only in encoding). */
  segments: Map<string, StoredWal>;
  /** Timeline → its stored history file. */
  histories: Map<number, StoredWal>;
  /** .partial and .backup files. */
  others: StoredWal[];
  /** Every WAL object of the system in key order: each stored copy, history files included. */
  all: StoredWal[];
  /** Keys under the system's WAL prefix that are no WAL object cairn writes (debris, foreign files). */
  foreign: ObjectInfo[];
}

export function walPrefix(cluster: string): string {
  return `${cluster}/wal/`;
}

/**
 * Sorts listed objects under `<cluster>/wal/` into listings by system id; a
 * caller that lists more of the cluster feeds it the WAL keys it meets.
 */
export function createWalArchiveCollector(cluster: string): { add(obj: ObjectInfo): void; result(): Map<string, WalListing> } {
  const prefix = walPrefix(cluster);
  const out = new Map<string, WalListing>();
  return {
    add(obj: ObjectInfo): void {
      if (!obj.key.startsWith(prefix)) return;
      const rest = obj.key.slice(prefix.length);
      const slash = rest.indexOf('/');
      if (slash <= 0) return;
      const systemId = rest.slice(0, slash);
      let listing = out.get(systemId);
      if (!listing) out.set(systemId, (listing = { systemId, segments: new Map(), histories: new Map(), others: [], all: [], foreign: [] }));
      const parsed = parseWalObjectName(obj.key);
      if (!parsed) {
        listing.foreign.push(obj);
        return;
      }
      const stored: StoredWal = { ...parsed, key: obj.key, size: obj.size, mtime: obj.mtime };
      listing.all.push(stored);
      if (isSegmentName(parsed.walName)) {
        if (!listing.segments.has(parsed.walName)) listing.segments.set(parsed.walName, stored);
      } else if (parsed.walName.endsWith('.history')) {
        const tli = timelineOf(parsed.walName);
        if (!listing.histories.has(tli)) listing.histories.set(tli, stored);
      } else {
        listing.others.push(stored);
      }
    },
    result: () => out,
  };
}

/**
 * Lists the WAL of every system in the cluster (one listing of
 * `<cluster>/wal/`), by system id.
 */
export async function listWalArchive(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<Map<string, WalListing>> {
  const collect = createWalArchiveCollector(cluster);
  for await (const obj of driver.list(walPrefix(cluster), signal)) collect.add(obj);
  return collect.result();
}

/** History files hold a line per timeline; anything this large is not one. */
const MAX_HISTORY_BYTES = 16 * 1024 * 1024;

/** Decodes and verifies (SHA-256) a stored history file into text. */
export async function readHistoryText(driver: StorageDriver, stored: StoredWal, key: EncryptionKey | undefined, signal?: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      total += chunk.length;
      if (total > MAX_HISTORY_BYTES) {
        cb(new CairnError('FORMAT_INVALID', `timeline history ${quote(stored.walName)} in repository ${quote(driver.url)} is larger than ${MAX_HISTORY_BYTES} bytes`, {
          hint: 'this is not a history file PostgreSQL wrote; run cairn-verify',
        }));
        return;
      }
      chunks.push(chunk);
      cb();
    },
  });
  await readWalInto(driver, stored, key, sink, signal);
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads and parses every history file of a listing, by timeline. */
export async function readHistories(
  driver: StorageDriver,
  listing: WalListing,
  key: EncryptionKey | undefined,
  signal?: AbortSignal,
): Promise<Map<number, TimelineHistoryEntry[]>> {
  const byTimeline = new Map<number, TimelineHistoryEntry[]>();
  for (const [tli, stored] of listing.histories) {
    const text = await readHistoryText(driver, stored, key, signal);
    byTimeline.set(tli, parseTimelineHistory(text, `${stored.walName} in repository "${driver.url}"`));
  }
  return byTimeline;
}

export interface RepoCatalog {
  cluster: string;
  /** The repository's URL (no credentials). */
  repo: string;
  /** Every backup with a manifest, oldest first. */
  backups: BackupSummary[];
  /** Every dump with a manifest, oldest first. */
  dumps: DumpSummary[];
  /** Registered systems (systems/<id>.json). */
  systems: string[];
  /** The WAL archive by system id (every system with WAL stored). */
  wal: Map<string, WalListing>;
}

/** A manifest that exists but cannot be used (not JSON, wrong format, missing fields). */
export interface InvalidManifest {
  kind: 'backup' | 'dump';
  /** Backup id, or `DIR/ID` of a dump. */
  id: string;
  key: string;
  error: CairnError;
  /** The dump's place, for a dump. */
  dump?: DumpRef;
}

export interface ReadManifestsOptions {
  signal?: AbortSignal;
  /**
   * Called for each damaged manifest, which is then left out. Without it the
   * first damaged manifest throws (FORMAT_INVALID): a tool that restores
   * must not plan around a hole it does not report.
   */
  onInvalid?: (bad: InvalidManifest) => void;
}

/** Runs `read`; a damaged manifest goes to `onInvalid` (when given) and reads as absent. */
async function tolerating<T>(o: ReadManifestsOptions, bad: Omit<InvalidManifest, 'error'>, read: () => Promise<T | undefined>): Promise<T | undefined> {
  try {
    return await read();
  } catch (err) {
    if (!o.onInvalid || !(err instanceof CairnError) || err.code !== 'FORMAT_INVALID') throw err;
    o.onInvalid({ ...bad, error: err });
    return undefined;
  }
}

/**
 * Manifests read ahead of the one a loop is at: on an object store each read
 * is a round trip, so one at a time costs the repository's distance once per
 * backup; a few at a time keeps memory bounded by that few.
 */
const MANIFEST_READ_AHEAD = 4;

/**
 * `read` of each item, started at most `ahead` before it is taken, handed out
 * in order as unsettled reads (in a box: a generator would await a bare
 * promise), so the caller meets each failure in order too.
 */
function* readAhead<I, T>(items: readonly I[], ahead: number, read: (item: I) => Promise<T>): Generator<{ item: I; value: Promise<T> }> {
  const started: { item: I; value: Promise<T> }[] = [];
  let next = 0;
  for (;;) {
    while (next < items.length && started.length < ahead) {
      const item = items[next++]!;
      const value = read(item);
      value.catch(() => {}); // met by the caller when it takes this one; a loop that stops early leaves it
      started.push({ item, value });
    }
    const first = started.shift();
    if (!first) return;
    yield first;
  }
}

/** Each backup that exists (or each of `ids`), oldest first, read by `read` at most `ahead` before it is taken. */
async function* eachBackup<T>(driver: StorageDriver, cluster: string, o: ReadManifestsOptions & { ids?: readonly string[] }, ahead: number, read: (id: string) => Promise<T | undefined>): AsyncGenerator<T> {
  const ids = o.ids ?? (await listBackupIds(driver, cluster, o.signal));
  for (const { item: id, value } of readAhead(ids, ahead, read)) {
    const m = await tolerating(o, { kind: 'backup', id, key: manifestKey(cluster, id) }, () => value);
    if (m) yield m;
  }
}

/**
 * The one loop over backup manifests: each backup that exists (or each of
 * `ids`), oldest first, a few read ahead (MANIFEST_READ_AHEAD) so a caller
 * that keeps only a summary never holds every file list.
 */
export function eachBackupManifest(driver: StorageDriver, cluster: string, o: ReadManifestsOptions & { ids?: readonly string[] } = {}): AsyncGenerator<BackupManifest> {
  return eachBackup(driver, cluster, o, MANIFEST_READ_AHEAD, (id) => readManifest(driver, cluster, id, o.signal));
}

/**
 * The same loop, each manifest opened rather than read (backup/manifest-stream.ts):
 * its head at once, its file records as a stream, so a walk over every
 * backup's files holds one record at a time. One ahead: an older manifest
 * opened is one read whole.
 */
export function eachOpenedManifest(driver: StorageDriver, cluster: string, o: ReadManifestsOptions & { ids?: readonly string[] } = {}): AsyncGenerator<OpenedManifest> {
  return eachBackup(driver, cluster, o, 1, (id) => openManifest(driver, cluster, id, o.signal));
}

/** The same loop over dump manifests: each dump that exists (or each of `refs`), oldest first. */
export async function* eachDumpManifest(driver: StorageDriver, cluster: string, o: ReadManifestsOptions & { refs?: readonly DumpRef[] } = {}): AsyncGenerator<DumpManifest> {
  const refs = o.refs ?? (await listDumps(driver, cluster, o.signal));
  for (const { item: ref, value } of readAhead(refs, MANIFEST_READ_AHEAD, (ref) => readDumpManifest(driver, cluster, ref.dir, ref.id, o.signal))) {
    const bad = { kind: 'dump' as const, id: `${ref.dir}/${ref.id}`, key: dumpManifestKey(cluster, ref.dir, ref.id), dump: ref };
    const m = await tolerating(o, bad, () => value);
    if (m) yield m;
  }
}

/**
 * Every backup's summary, oldest first. A streamed manifest gives its
 * summary from its first line (its file records are not read: a damaged
 * record shows when a tool walks them, before it acts on them); an older one
 * is read whole.
 */
export async function readBackupSummaries(driver: StorageDriver, cluster: string, o: ReadManifestsOptions = {}): Promise<BackupSummary[]> {
  const out: BackupSummary[] = [];
  for await (const s of eachBackup(driver, cluster, o, MANIFEST_READ_AHEAD, (id) => readManifestSummary(driver, cluster, id, o.signal))) out.push(s);
  return out;
}

export interface ReadCatalogOptions extends ReadManifestsOptions {
  /**
   * Lists the WAL archive instead of listWalArchive: a caller that lists the
   * whole cluster anyway (cairn-info's sizes) collects the WAL on the way.
   * Called after the manifests are read, as listWalArchive is, so a backup
   * in the catalog never misses WAL archived before it finished.
   */
  listWal?: () => Promise<Map<string, WalListing>>;
}

/**
 * Reads the catalog of one cluster: manifests one at a time, kept as
 * summaries (file lists can be large), and one listing of the WAL archive.
 * History files are not decoded here (readHistories does, with the key).
 */
export async function readRepoCatalog(driver: StorageDriver, cluster: string, opts: ReadCatalogOptions | AbortSignal = {}): Promise<RepoCatalog> {
  const o: ReadCatalogOptions = opts instanceof AbortSignal ? { signal: opts } : opts;
  const { signal } = o;
  const backups = await readBackupSummaries(driver, cluster, o);
  const dumps: DumpSummary[] = [];
  for await (const m of eachDumpManifest(driver, cluster, o)) dumps.push(summarizeDump(m));
  return {
    cluster,
    repo: driver.url,
    backups,
    dumps,
    systems: await listSystems(driver, cluster, signal),
    wal: o.listWal ? await o.listWal() : await listWalArchive(driver, cluster, signal),
  };
}
