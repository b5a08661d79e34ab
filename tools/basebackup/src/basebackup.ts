// cairn-basebackup: a physical backup into the repository, from PGDATA on
// this host (pg_backup_start/stop on one session) or from a pg_basebackup tar
// stream. Files are stored one object each, the manifest last (a backup
// exists iff its manifest does), then the id goes to stdout.

import { createReadStream } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { CairnError } from '@cairn/core/cli/errors';
import type { ToolContext } from '@cairn/core/cli/run';
import { parseCompress, type EncryptionKey } from '@cairn/core/codec/index';
import { createSlots, readFilePieces, SMALL_FILE } from '@cairn/core/codec/file-codec';
import { createBundler } from '@cairn/core/backup/bundle';
import { pageLevelBlocker } from '@cairn/core/backup/pages';
import { createFileWorkers, SMALL_BATCH_FILES, type FileWorkers } from '@cairn/core/backup/file-worker';
import { findWorkerEntry } from '@cairn/core/util/worker-entry';
import {
  backupId,
  backupPrefix,
  manifestKey,
  MANIFEST_FORMAT_STREAM,
  type BackupManifest,
  type BackupType,
  type ManifestConfigFile,
  type ManifestFile,
} from '@cairn/core/backup/manifest';
import { comparePaths, writeManifestRecords, type ManifestHead, type OpenedManifest } from '@cairn/core/backup/manifest-stream';
import type { Hole } from '@cairn/core/backup/manifest-spool';
import { createRecords, parentLookup, type Records } from './records.js';
import { readTarEntries } from '@cairn/core/backup/tar-reader';
import { eachOpenedManifest } from '@cairn/core/repo/catalog';
import { sweepLeftovers } from '@cairn/core/repo/debris';
import { ensureRepoConfig } from '@cairn/core/repo/repo-config';
import { ensureSystemRegistered, listSystems } from '@cairn/core/repo/systems';
import { findWal } from '@cairn/core/repo/wal-archive';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { createLimiter, sleep } from '@cairn/core/util/limit';
import { describeExit, isProgramFailure, startProgram, type Program, type ProgramExit } from '@cairn/core/util/program';
import { formatLsn, parseLsn } from '@cairn/core/wal/lsn';
import { lsnToSegmentName } from '@cairn/core/wal/segment';
import { CAIRN_VERSION } from '@cairn/core/version';
import { parseBackupLabel, segmentSizeFrom } from './label.js';
import { streamPgData, type WalkedFile } from './pgdata-walk.js';
import { createProgress } from '@cairn/core/cli/progress';
import { connectPg } from '@cairn/core/pg/connect';
import { libpqEnv } from '@cairn/core/pg/server-address';
import { createBackupStore, eachTarget, liveTargets, referencesOf, type BackupStore, type FileInfo, type ParentRecords, type StoreTarget } from './store.js';
import { configFilesToStore, includedFiles, storeConfigFiles, type ServerConfigPaths } from './config-files.js';

/** A repository the backup goes to; `failed` when it is out before the start (its lease could not be taken). */
export interface BackupRepo {
  driver: StorageDriver;
  /** Aborts when this repository's lease is lost (the run's signal is in it). */
  signal?: AbortSignal;
  failed?: unknown;
}

export interface BasebackupOptions {
  /** Every repository the backup goes to, from one read of the source (issue 18 item 1). */
  repos: BackupRepo[];
  cluster: string;
  key: EncryptionKey | undefined;
  compress: string;
  type: BackupType;
  checksumDelta: boolean;
  /** diff/incr in local mode: main forks page by page (@cairn/core/backup/pages), where the rule holds. */
  pageLevel: boolean;
  jobs: number;
  archiveTimeoutMs: number;
  /** For the worker threads, which open the key themselves. */
  keyFile: string | undefined;
  keyCommand?: string | undefined;
  source: { kind: 'local'; pgdata: string; fastCheckpoint: boolean } | { kind: 'stream'; input: AsyncIterable<Buffer>; program?: Program };
  label: string;
  /** What prepareBackup started before the lease was held (default: started here). */
  prep?: BackupPrep;
}

/**
 * What a backup may look at before it holds the backup lease, started while
 * the lease is taken (on a far-away store each is a round trip or more): the
 * repository's configuration and key, created on first use as every writer
 * does (wal-push holds no lease for it either), and in local mode the
 * server's session and what the server says it is.
 */
export interface BackupPrep {
  /** The environment libpq is given (backupContext): derived once, here. */
  env: NodeJS.ProcessEnv;
  /** Per repository of the options, in order. */
  repos: ReturnType<typeof ensureRepoConfig>[];
  /** The session, from now on the caller's to end (local mode). */
  take(): Promise<Session>;
  /** Ends the session unless it was taken; for every way the run ends. */
  abandon(): void;
}

export function prepareBackup(o: Pick<BasebackupOptions, 'repos' | 'cluster' | 'key' | 'source'>, toolCtx: ToolContext): BackupPrep {
  return startPrep(o, backupContext(o, toolCtx));
}

/** prepareBackup with the backup's context already derived. */
function startPrep(o: Pick<BasebackupOptions, 'repos' | 'cluster' | 'key' | 'source'>, ctx: ToolContext): BackupPrep {
  const repos = o.repos.map((r) => ensureRepoConfig(r.driver, o.cluster, o.key, ctx.now(), ctx.signal));
  const session = o.source.kind === 'local' ? openSession(ctx) : undefined;
  // Each is reported where it is awaited.
  for (const repo of repos) repo.catch(() => {});
  session?.catch(() => {});
  let taken = false;
  return {
    env: ctx.env,
    repos,
    take() {
      if (!session) throw new Error('no session in stream mode');
      taken = true;
      return session;
    },
    abandon() {
      if (!taken) session?.then((sn) => sn.client.end(), () => {}).catch(() => {});
    },
  };
}

/** The server libpq would reach; in local mode the one that owns --pgdata, from its postmaster.pid (docs/gotchas.md §Real hosts). */
function backupContext(o: Pick<BasebackupOptions, 'source'>, toolCtx: ToolContext): ToolContext {
  return { ...toolCtx, env: libpqEnv(toolCtx.env, o.source.kind === 'local' ? { pgdata: o.source.pgdata } : {}) };
}

export interface BasebackupResult {
  /** The manifest's head in the first repository that holds the backup. */
  manifest: ManifestHead;
  /** Bytes of the files it references in its parents (not stored by it), there. */
  referencedSize: number;
  /** Every repository that holds it whole, with its manifest's head. */
  stored: { url: string; manifest: ManifestHead; referencedSize: number }[];
  /** The repositories that do not, and why (the run then fails, naming them). */
  failed: { url: string; error: unknown }[];
}

/** The parent of a diff (newest full) or incr (newest of any type) of the same system. */
function pickParent(catalog: OpenedManifest[], type: BackupType, systemId: string | undefined): OpenedManifest | undefined {
  const mine = catalog.filter((b) => systemId === undefined || b.head.systemId === systemId);
  if (type === 'diff') return mine.filter((b) => b.head.type === 'full').at(-1);
  if (type === 'incr') return mine.at(-1);
  return undefined;
}

/** The ids this run took, so a failed run can take its objects back (see basebackup). */
const taken = new Set<string>();

/** The first id from `start` on that no repository still going uses: one id for the backup in every repository. */
async function freeId(targets: StoreTarget[], cluster: string, start: Date, type: BackupType, log: ToolContext['log']): Promise<string> {
  // Two backups in one second, or debris of an interrupted one: take the next second.
  for (let i = 0; ; i++) {
    const id = backupId(new Date(start.getTime() + i * 1000), type);
    let used = false;
    await eachTarget(targets, log, async (t) => {
      for await (const _ of t.driver.list(backupPrefix(cluster, id), t.signal)) {
        used = true;
        break;
      }
    });
    if (!used) {
      taken.add(id);
      return id;
    }
  }
}

/**
 * The parent every repository's backup is based on. Each repository has its
 * own chain, and one read of the source makes one decision per file; that is
 * sound only when every repository's parent is the same backup (as after
 * runs that went to all of them). Otherwise every repository gets a full
 * backup, the weakest common choice, and the log says why.
 */
async function commonParent(targets: StoreTarget[], catalogs: Map<StoreTarget, OpenedManifest[]>, type: BackupType, systemId: string | undefined, ctx: ToolContext): Promise<BackupType> {
  const live = liveTargets(targets);
  if (type === 'full') return type;
  const parents = live.map((t) => pickParent(catalogs.get(t)!, type, systemId));
  if (parents.every((p) => p === undefined)) {
    ctx.log.warn(systemId === undefined ? `no backup to base a ${type} backup on: taking a full backup` : `no backup of system ${systemId} to base a ${type} backup on: taking a full backup`);
    return 'full';
  }
  const first = parents[0];
  let same = parents.every((p) => p !== undefined && first !== undefined && p.head.id === first.head.id);
  for (const p of parents.slice(1)) if (same) same = await sameBackup(first!, p!, ctx.signal);
  if (!same) {
    const names = live.map((t, i) => `"${t.driver.url}": ${parents[i]?.head.id ?? 'none'}`).join(', ');
    ctx.log.warn(`the repositories' parents for a ${type} backup differ (${names}): taking a full backup in every repository, so that each chain stays whole; --repo-only backs up one repository`);
    return 'full';
  }
  live.forEach((t, i) => {
    t.parent = parents[i]!.head;
    t.parentManifest = parents[i]!;
  });
  return type;
}

/** Whether two repositories' manifests describe the same backup, file by file (what a decision against the parent reads); both read as streams. */
async function sameBackup(a: OpenedManifest, b: OpenedManifest, signal: AbortSignal): Promise<boolean> {
  const ha = a.head;
  const hb = b.head;
  if (ha.id !== hb.id || ha.systemId !== hb.systemId || ha.start.lsn !== hb.start.lsn || ha.start.time !== hb.start.time || a.fileCount !== b.fileCount) return false;
  const shape = (f: ManifestFile) => JSON.stringify([f.path, f.size, f.sha256, f.mtime, f.ino, f.pages?.layers.map((l) => [l.size, l.fileSize, l.fileSha256])]);
  const ib = b.files(signal)[Symbol.asyncIterator]();
  try {
    for await (const fa of a.files(signal)) {
      const fb = await ib.next();
      if (fb.done || shape(fa) !== shape(fb.value)) return false;
    }
    return (await ib.next()).done === true;
  } finally {
    await ib.return?.(undefined);
  }
}

async function waitForWal(driver: StorageDriver, cluster: string, systemId: string, wal: string, timeoutMs: number, ctx: ToolContext): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  for (;;) {
    // A listing that fails for a passing reason (a response cut off, once the
    // driver's own retries are spent) is one poll lost, not the backup: the
    // loop polls again until the deadline (s3-faults e2e, 10% of bodies cut).
    let found = false;
    try {
      found = (await findWal(driver, cluster, systemId, wal, ctx.signal)).length > 0;
    } catch (err) {
      if (!(err instanceof CairnError) || !err.transient || Date.now() > deadline) throw err;
      ctx.log.debug(`looking for ${wal}: ${err.message}; trying again`);
    }
    if (found) return;
    if (Date.now() > deadline) {
      throw new CairnError('NOT_FOUND', `WAL segment "${wal}" that ends the backup did not reach repository "${driver.url}" within ${Math.round(timeoutMs / 1000)} s`, {
        hint: "check that archive_command is 'cairn-wal-push %p' with this repository and that pg_stat_archiver shows no failures; raise --archive-timeout if archiving lags",
      });
    }
    // The segment usually lands within a second or two: look often then
    // (each look is one listing), less often once archiving is plainly slow.
    await sleep(Date.now() - started < 5000 ? 25 : 100, ctx.signal);
  }
}

/**
 * A backup that failed (a full disk, an error, SIGTERM) removes what it
 * stored: without a manifest it is only debris, and on a full disk the
 * space it holds may be what keeps expire from taking its lease (issue 11).
 * Only while its manifest is certainly absent; best effort.
 */
export async function basebackup(o: BasebackupOptions, toolCtx: ToolContext): Promise<BasebackupResult> {
  const ctx = o.prep ? { ...toolCtx, env: o.prep.env } : backupContext(o, toolCtx);
  taken.clear();
  const takeBack = async (drivers: StorageDriver[]) => {
    for (const driver of drivers) {
      for (const id of taken) {
        try {
          if ((await driver.stat(manifestKey(o.cluster, id))) !== undefined) continue;
          const keys: string[] = [];
          for await (const obj of driver.list(backupPrefix(o.cluster, id))) keys.push(obj.key);
          for (const key of keys) await driver.remove(key);
          if (keys.length > 0) ctx.log.info(`removed the ${keys.length} object(s) backup ${id} had stored in "${driver.url}"`);
        } catch {
          /* expire removes them after --debris-grace */
        }
      }
    }
  };
  // Only where this run holds the lease: in a repository whose lease another
  // run holds, objects under our id may be that run's (the id was free only
  // where we looked).
  const ours = o.repos.filter((x) => x.failed === undefined);
  try {
    const r = await runBackup(o, ctx);
    // A repository that dropped out holds no manifest of this backup, only
    // objects: they go now, or stay as debris for the next run or expire.
    await takeBack(ours.filter((x) => r.failed.some((f) => f.url === x.driver.url)).map((x) => x.driver));
    return r;
  } catch (err) {
    await takeBack(ours.map((x) => x.driver));
    throw err;
  }
}

/**
 * The limiter for a file of `size` bytes. Many files at once: most are small
 * and wait on I/O, not CPU; the pieces in flight (slots) bound memory and
 * CPU. Small files, each one request to the store, go as many at once as the
 * store takes (features.requests: tens for an object store, where each PUT
 * is a round trip), and at least `smallAtOnce` (the worker threads' batches).
 */
function fileLimiter(o: BasebackupOptions, smallAtOnce = 0): (size: number) => <T>(job: () => Promise<T>) => Promise<T> {
  const big = createLimiter(Math.max(8, o.jobs * 4));
  const small = createLimiter(Math.max(...o.repos.map((r) => r.driver.features.requests), o.jobs * 4, smallAtOnce));
  return (size) => (size <= SMALL_FILE ? small : big);
}

async function runBackup(o: BasebackupOptions, ctx: ToolContext): Promise<BasebackupResult> {
  const t0 = Date.now();
  // In local mode the server is asked what it is while the repository is
  // read: on a far-away store each step below is a round trip.
  const prep = o.prep ?? startPrep(o, ctx);
  const compress = parseCompress(o.compress);
  const targets: StoreTarget[] = o.repos.map((r, index) => ({
    index, driver: r.driver, spec: { compress }, parent: undefined, signal: r.signal ?? ctx.signal, ...(r.failed !== undefined ? { failed: r.failed } : {}),
  }));
  // Each backup's head only; its records are read when it is the parent (issue 19).
  const catalogs = new Map<StoreTarget, OpenedManifest[]>();
  try {
    await eachTarget(targets, ctx.log, async (t) => {
      // Objects are encrypted with each repository's own data key (or, in a
      // cluster made before data keys, the operator's key).
      const dataKey = (await prep.repos[t.index]!).dataKey;
      t.spec = { compress, ...(dataKey ? { key: dataKey } : {}) };
      await sweepLeftovers(t.driver, o.cluster, 'backups/', { ...ctx, signal: t.signal });
      const catalog: OpenedManifest[] = [];
      for await (const m of eachOpenedManifest(t.driver, o.cluster, { signal: t.signal })) catalog.push(m);
      catalogs.set(t, catalog);
    });
  } catch (err) {
    // The repository's error is the one reported; the session is closed.
    prep.abandon();
    throw err;
  }
  const slots = createSlots(Math.max(2, o.jobs * 2));
  const progress = createProgress(ctx, 'backup');

  const startedAt = ctx.now();

  if (o.source.kind === 'local') {
    return await backupLocal(o, o.source, await prep.take(), ctx, { targets, catalogs, slots, progress, t0, startedAt, type: o.type });
  }
  // Stream: the system id arrives with global/pg_control at the end of the
  // tar, so pick the parent by cluster and check the system at the end.
  const type = await commonParent(targets, catalogs, o.type, undefined, ctx);
  const id = await freeId(targets, o.cluster, startedAt, type, ctx.log);
  const live = liveTargets(targets);
  const parent = live[0]!.parent;
  const store = createBackupStore({
    targets: live, cluster: o.cluster, id, slots, checksumDelta: o.checksumDelta,
    pageCheckLsn: undefined, log: ctx.log, signal: ctx.signal, onBytes: progress.add,
  });
  let label: string | undefined;
  let spcmap: string | null = null;
  let pgManifest: { 'WAL-Ranges'?: { Timeline: number; 'Start-LSN': string; 'End-LSN': string }[] } | undefined;
  let systemId: string | undefined;
  let pgMajor = '';
  const limitFor = fileLimiter(o);
  const pending: Promise<void>[] = [];
  // In tar order: the parents' records in maps, the entries gathered and sorted at the end.
  const parents = parentLookup(live, false, ctx.signal);
  const entries = new Map<StoreTarget, ManifestFile[]>(live.map((t) => [t, []]));
  const add = async (info: FileInfo, open: () => AsyncIterable<Buffer>) => {
    const made = await store.addFile(info, open, { once: true, parents: await parents.at(info.path) });
    for (const [t, f] of made) entries.get(t)!.push(f);
  };
  const smallText = async (body: AsyncIterable<Buffer>) => {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(Buffer.from(c));
    return Buffer.concat(parts);
  };
  try {
    for await (const entry of readTarEntries(o.source.input, 'the pg_basebackup tar stream')) {
      const h = entry.header;
      if (h.type === 'dir') {
        store.addDir({ path: h.path, mode: h.mode & 0o7777 });
        continue;
      }
      if (h.type !== 'file') continue;
      if (h.path === 'backup_label') {
        label = (await smallText(entry.body())).toString('utf8');
        continue;
      }
      if (h.path === 'tablespace_map') {
        spcmap = (await smallText(entry.body())).toString('utf8');
        continue;
      }
      if (h.path === 'backup_manifest') {
        pgManifest = JSON.parse((await smallText(entry.body())).toString('utf8')) as typeof pgManifest;
        continue;
      }
      const info: FileInfo = { path: h.path, size: h.size, mode: h.mode & 0o7777, mtime: h.mtime };
      if (h.path === 'global/pg_control' || h.path === 'PG_VERSION') {
        // Small: read it here, learn from it, and store it from memory.
        const bytes = await smallText(entry.body());
        if (h.path === 'PG_VERSION') pgMajor = bytes.toString('utf8').trim();
        else if (bytes.length >= 8) systemId = bytes.readBigUInt64LE(0).toString();
        pending.push(limitFor(bytes.length)(() => add(info, async function* () { yield bytes; })));
        continue;
      }
      // The tar yields each body once, in order: hand it over and wait until it
      // is consumed (not stored) before asking for the next entry.
      let consumed!: () => void;
      const read = new Promise<void>((r) => (consumed = r));
      const body = entry.body();
      const once = async function* () {
        try {
          yield* body;
        } finally {
          consumed();
        }
      };
      const p = limitFor(info.size)(() => add(info, once));
      p.catch(() => consumed());
      pending.push(p);
      await Promise.race([read, p]);
    }
  } catch (err) {
    // A broken stream: let the files in flight finish or fail before reporting.
    o.source.program?.kill();
    await Promise.allSettled(pending);
    // pg_basebackup's stream errors when it fails, even half-way through a
    // file: its exit says more than where the tar stopped.
    if (o.source.program && isProgramFailure(err)) throw ctx.signal.aborted ? (ctx.signal.reason ?? err) : pgBasebackupFailed(await o.source.program.exited);
    throw err;
  }
  await Promise.all(pending);
  if (o.source.program) {
    const e = await o.source.program.exited;
    if (e.code !== 0) throw pgBasebackupFailed(e);
  }
  if (label === undefined) throw new CairnError('FORMAT_INVALID', 'the tar stream has no backup_label', { hint: 'pipe `pg_basebackup -D - -Ft -X none` into cairn-basebackup --from-tar -' });
  const ranges = pgManifest?.['WAL-Ranges'];
  if (!ranges || ranges.length === 0) {
    throw new CairnError('FORMAT_INVALID', 'the tar stream has no backup_manifest with WAL ranges', { hint: 'run pg_basebackup without --no-manifest (PostgreSQL 13 or later)' });
  }
  if (systemId === undefined) throw new CairnError('FORMAT_INVALID', 'the tar stream has no global/pg_control', { hint: 'the stream is not a complete pg_basebackup base.tar' });
  await parents.finish();
  if (parent && parent.systemId !== systemId) {
    throw new CairnError('SYSTEM_MISMATCH', `backup ${parent.id} is of system ${parent.systemId}, this server is ${systemId}`, { hint: 'take a full backup after initdb or pg_upgrade' });
  }
  const bl = parseBackupLabel(label);
  const stopLsn = parseLsn(ranges[ranges.length - 1]!['End-LSN']);
  const segSize = segmentSizeFrom(bl.startLsn, bl.startWal, 16 * 1024 * 1024);
  const records = new Map<StoreTarget, Records>();
  for (const [t, list] of entries) {
    const r = createRecords(id);
    for (const f of list.sort((a, b) => comparePaths(a.path, b.path))) r.add(f);
    records.set(t, r);
  }
  entries.clear();
  return await finish(o, ctx, {
    id, type, parent, store, records, targets, t0, progress, systemId, pgMajor, pgVersionNum: Number(pgMajor) * 10000,
    segSize, label, spcmap, tablespaces: [], startLsn: bl.startLsn, startTime: bl.startTime, stopLsn, timeline: bl.timeline,
    checkpointLsn: bl.checkpointLsn, dataChecksums: false, source: 'stream',
  });
}

interface Shared {
  targets: StoreTarget[];
  catalogs: Map<StoreTarget, OpenedManifest[]>;
  slots: ReturnType<typeof createSlots>;
  progress: ReturnType<typeof createProgress>;
  t0: number;
  startedAt: Date;
  type: BackupType;
}

/**
 * The configuration files the server read, as it names them. Reading
 * config_file and pg_file_settings needs pg_read_all_settings (or superuser):
 * without it the backup goes on without them, and says so.
 */
async function serverConfigPaths(q: <T>(sql: string, params?: unknown[]) => Promise<T[]>, ctx: ToolContext): Promise<ServerConfigPaths> {
  try {
    const [r] = await q<{ cf: string; hf: string; idf: string; inc: string[] | null }>(
      `select current_setting('config_file') cf, current_setting('hba_file') hf, current_setting('ident_file') idf,
              (select array_agg(distinct sourcefile) from pg_file_settings where sourcefile is not null) inc`,
    );
    return { config_file: r!.cf, hba_file: r!.hf, ident_file: r!.idf, includes: [...new Set([...(r!.inc ?? []), ...(await includedFiles(r!.cf))])] };
  } catch (err) {
    ctx.log.warn(`the server did not say where its configuration files are (${(err as Error).message}): files outside the data directory are not in this backup; grant pg_read_all_settings to the backup role`);
    return { config_file: '', hba_file: '', ident_file: '', includes: [] };
  }
}

/**
 * Files in flight at once, in walk order: the work and the records waiting
 * for the oldest to finish are bounded by this, not by the file count
 * (issue 19). Wide enough that the small-file limiter never starves behind
 * one big file.
 */
const FILE_WINDOW = 4096;

/** What the progress line counts toward: the databases' size (the walk is streamed, so it is not summed first); 0 (no percentage) when the role may not ask. */
async function clusterSize(q: <T>(sql: string, params?: unknown[]) => Promise<T[]>): Promise<number> {
  try {
    const [r] = await q<{ n: string | null }>('select sum(pg_database_size(oid))::text n from pg_database where datallowconn');
    return Number(r?.n ?? 0);
  } catch {
    return 0;
  }
}

interface ServerInfo {
  v: string;
  dir: string;
  sys: string;
  seg: string;
  ck: string;
  rec: boolean;
  su: string | null;
}

interface Session {
  client: Awaited<ReturnType<typeof connectPg>>;
  info: ServerInfo;
}

/** The session a local backup runs in, and what the server says it is. The caller ends the client. */
async function openSession(ctx: ToolContext): Promise<Session> {
  const client = await connectPg({ env: ctx.env, application: 'cairn-basebackup', needs: 'a superuser or a role with pg_backup_start rights' });
  try {
    const { rows } = await client.query<ServerInfo>(
      `select current_setting('server_version_num') v, current_setting('data_directory') dir,
              (select rolname from pg_roles where oid = 10) su,
              (select system_identifier::text from pg_control_system()) sys,
              (select setting from pg_settings where name = 'wal_segment_size') seg, current_setting('data_checksums') ck, pg_is_in_recovery() rec`,
    );
    return { client, info: rows[0]! };
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
}

async function backupLocal(
  o: BasebackupOptions,
  src: { pgdata: string; fastCheckpoint: boolean },
  session: Session,
  ctx: ToolContext,
  sh: Shared,
): Promise<BasebackupResult> {
  const { client, info } = session;
  let started = false;
  let workers: FileWorkers | undefined;
  try {
    const q = async <T>(sql: string, params: unknown[] = []) => (await client.query(sql, params)).rows as T[];
    const pgVersionNum = Number(info.v);
    if (pgVersionNum < 150000) {
      throw new CairnError('CONFIG_INVALID', `PostgreSQL ${Math.floor(pgVersionNum / 10000)} is not supported for local backups`, { hint: 'use --remote (pg_basebackup) for servers before 15' });
    }
    const pgdata = await realpath(src.pgdata);
    const serverDir = await realpath(info.dir).catch(() => info.dir);
    if (pgdata !== serverDir) {
      throw new CairnError('CONFIG_INVALID', `--pgdata "${src.pgdata}" is not the data directory of the server cairn connected to ("${info.dir}")`, {
        hint: 'point PGHOST/PGPORT at the server whose data directory you back up, or use --remote',
      });
    }
    const systemId = info.sys;
    const segSize = Number(info.seg);
    const dataChecksums = info.ck === 'on';
    const type = await commonParent(sh.targets, sh.catalogs, sh.type, systemId, ctx);
    const parent = liveTargets(sh.targets)[0]!.parent;
    // Three looks at each repository at once (each a round trip on an object store).
    const [, id] = await Promise.all([
      eachTarget(sh.targets, ctx.log, async (t) => {
        const [others, registered] = await Promise.all([
          listSystems(t.driver, o.cluster, t.signal),
          ensureSystemRegistered(t.driver, o.cluster, { systemId, firstSeen: ctx.now().toISOString(), registeredBy: `cairn-basebackup ${CAIRN_VERSION}`, walSegmentSize: segSize, pgVersion: String(pgVersionNum) }, { force: true, signal: t.signal }),
        ]);
        const besides = others.filter((x) => x !== systemId);
        if (registered === 'registered' && besides.length > 0) ctx.log.warn(`registered system ${systemId} in cluster "${o.cluster}" of "${t.driver.url}" beside ${besides.join(', ')}`);
      }),
      freeId(sh.targets, o.cluster, sh.startedAt, type, ctx.log),
    ]);
    const live = liveTargets(sh.targets);
    const [start] = await q<{ lsn: string }>('select pg_backup_start($1, $2)::text lsn', [o.label || `cairn ${id}`, src.fastCheckpoint]);
    started = true;
    const startLsn = parseLsn(start!.lsn);
    ctx.log.debug(`backup started at ${start!.lsn} after ${Date.now() - sh.t0} ms`);
    // Page-level only where its rule holds (@cairn/core/backup/pages).
    let pages: { parentStartLsn: bigint } | undefined;
    if (o.pageLevel && parent) {
      const [tl] = await q<{ tl: number }>('select timeline_id tl from pg_control_checkpoint()');
      const blocker = pageLevelBlocker(parent, { systemId, timeline: Number(tl!.tl), startLsn, dataChecksums, source: 'local' });
      if (blocker === undefined) pages = { parentStartLsn: parseLsn(parent.start.lsn) };
      else ctx.log.info(`relation files are compared whole, not page by page: ${blocker}`);
    }
    // A clock that went back since the parent makes mtimes meaningless: compare contents.
    let checksumDelta = o.checksumDelta;
    if (parent && !checksumDelta && Date.parse(parent.start.time) > sh.startedAt.getTime()) {
      ctx.log.warn(`parent ${parent.id} started after this backup by the clock (${parent.start.time}): the clock went back, so files are compared by content, not mtime`);
      checksumDelta = true;
    }
    // Streamed (issue 19): each file is met, stored and recorded in walk
    // order through a bounded window; nothing per file outlives it but its
    // record in the spool.
    const walk = streamPgData(pgdata);
    // Asked beside the copy (the server stats every file of every database for it).
    void clusterSize(q).then((n) => sh.progress.total(n));
    const entry = findWorkerEntry(import.meta.url);
    // The workers write each big file to every repository (EncodeJob.targets),
    // and encode the small ones for this thread to bundle; each starts at its
    // first job (createFileWorkers).
    const repoUrls = o.repos.map((r) => r.driver.url);
    const workerCount = Math.max(1, Math.min(o.jobs, availableParallelism()));
    workers = entry ? createFileWorkers(entry, workerCount, { repoUrl: repoUrls[0]!, repoUrls, env: ctx.env, cluster: o.cluster, keyFile: o.keyFile, keyCommand: o.keyCommand, compress: o.compress }) : undefined;
    // Small files in few objects (docs in @cairn/core/backup/bundle), each repository its own.
    for (const t of live) t.bundler = createBundler({ driver: t.driver, cluster: o.cluster, id, signal: t.signal });
    const store = createBackupStore({
      targets: live, cluster: o.cluster, id, slots: sh.slots, checksumDelta,
      pageCheckLsn: dataChecksums ? startLsn : undefined, log: ctx.log, signal: ctx.signal, onBytes: sh.progress.add,
      ...(workers ? { workers } : {}),
      ...(pages ? { pages } : {}),
    });
    const records = new Map<StoreTarget, Records>(live.map((t) => [t, createRecords(id)]));
    const parents = parentLookup(live, true, ctx.signal);
    // Small files go to a worker in batches (FileWorkers.small): two in flight.
    const limitFor = fileLimiter(o, workers ? 2 * SMALL_BATCH_FILES : 0);
    const one = (f: WalkedFile, ps: ParentRecords) => limitFor(f.info.size)(async () => {
      try {
        return await store.addFile(f.info, () => readFilePieces(f.source, f.info.size), { source: f.source, parents: ps });
      } catch (err) {
        // Dropped while we copied (DROP TABLE, a finished temp file): replay restores the truth.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    });
    // pg_control last, as pg_basebackup sends it: the newest copy; its
    // record keeps its place in the order (a hole in each spool).
    let control: { f: WalkedFile; ps: ParentRecords; holes?: Map<StoreTarget, Hole> } | undefined;
    const window: Promise<Map<StoreTarget, ManifestFile> | 'control' | undefined>[] = [];
    const emit = async () => {
      const made = await window.shift()!;
      if (made === 'control') control!.holes = new Map([...records].map(([t, r]) => [t, r.hole()]));
      else if (made) for (const [t, f] of made) records.get(t)?.add(f);
    };
    try {
      for await (const f of walk.files) {
        const ps = await parents.at(f.info.path);
        if (f.info.path === 'global/pg_control') {
          control = { f, ps };
          window.push(Promise.resolve('control'));
          continue;
        }
        const p = one(f, ps);
        p.catch(() => {}); // met in order by emit()
        window.push(p);
        while (window.length >= FILE_WINDOW) await emit();
      }
      while (window.length > 0) await emit();
    } catch (err) {
      await Promise.allSettled(window);
      throw err;
    }
    for (const d of walk.dirs) store.addDir(d);
    await parents.finish();
    if (control) {
      const made = await one(control.f, control.ps);
      for (const [t, f] of made ?? []) records.get(t)?.fill(control.holes!.get(t)!, f);
    }
    const configFiles = configFilesToStore([src.pgdata, pgdata, info.dir], await serverConfigPaths(q, ctx));
    // A few small files: each repository reads and stores its own copy.
    const config = new Map<StoreTarget, ManifestConfigFile[]>();
    await eachTarget(store.live(), ctx.log, async (t) => {
      config.set(t, await storeConfigFiles({ driver: t.driver, cluster: o.cluster, id, spec: t.spec, log: ctx.log, signal: t.signal }, configFiles));
    });
    // The last bundle is written with the files, not after the stop.
    await store.finishBundles();
    ctx.log.debug(`files copied after ${Date.now() - sh.t0} ms`);

    // wait_for_archive => false: PostgreSQL would poll its archive status once
    // a second; we wait for the segment in our own repository instead (in
    // finish()), which is what the backup needs and is faster.
    const [stop] = await q<{ lsn: string; labelfile: string; spcmapfile: string }>('select lsn::text, labelfile, spcmapfile from pg_backup_stop(false)');
    started = false;
    ctx.log.debug(`backup stopped at ${stop!.lsn} after ${Date.now() - sh.t0} ms`);
    const bl = parseBackupLabel(stop!.labelfile);
    return await finish(o, ctx, {
      id, type, parent, store, targets: sh.targets, t0: sh.t0, progress: sh.progress, systemId, pgMajor: String(Math.floor(pgVersionNum / 10000)), pgVersionNum,
      ...(info.su ? { superuser: info.su } : {}),
      segSize, label: stop!.labelfile, spcmap: stop!.spcmapfile === '' ? null : stop!.spcmapfile, tablespaces: walk.tablespaces, records,
      startLsn, startTime: bl.startTime, stopLsn: parseLsn(stop!.lsn), timeline: bl.timeline, checkpointLsn: bl.checkpointLsn, dataChecksums, source: 'local',
      config,
    });
  } finally {
    // Ending the session aborts a backup still in progress (pg_backup_start's session rule).
    if (started) ctx.log.warn('backup aborted; PostgreSQL ends the backup mode with this session');
    await client.end().catch(() => {});
    await workers?.close();
  }
}

interface Finish {
  id: string;
  type: BackupType;
  parent: ManifestHead | undefined;
  store: BackupStore;
  /** Each repository's records and totals. */
  records: Map<StoreTarget, Records>;
  /** Every repository, those that dropped out included (they are reported). */
  targets: StoreTarget[];
  t0: number;
  progress: ReturnType<typeof createProgress>;
  systemId: string;
  pgMajor: string;
  pgVersionNum: number;
  /** The role with oid 10 (local backups). */
  superuser?: string;
  /** Configuration files from outside PGDATA, per repository (local backups). */
  config?: Map<StoreTarget, ManifestConfigFile[]>;
  segSize: number;
  label: string;
  spcmap: string | null;
  tablespaces: BackupManifest['tablespaces'];
  startLsn: bigint;
  startTime: Date;
  stopLsn: bigint;
  timeline: number;
  checkpointLsn: bigint;
  dataChecksums: boolean;
  source: 'local' | 'stream';
}

async function finish(o: BasebackupOptions, ctx: ToolContext, f: Finish): Promise<BasebackupResult> {
  const stopTime = ctx.now();
  const stopWal = lsnToSegmentName(f.timeline, f.stopLsn, f.segSize, { end: true });
  const bundles = await f.store.finishBundles();
  const stored: BasebackupResult['stored'] = [];
  // Each repository on its own: its WAL, its manifest; one that fails here
  // holds no manifest, and the others go on.
  await eachTarget(f.store.live(), ctx.log, async (t) => {
    await waitForWal(t.driver, o.cluster, f.systemId, stopWal, o.archiveTimeoutMs, { ...ctx, signal: t.signal });
    ctx.log.debug(`${stopWal} is in the repository after ${Date.now() - f.t0} ms${f.targets.length > 1 ? ` ("${t.driver.url}")` : ''}`);
    // Files were written atomically but not yet durably: make them durable in
    // one batch before the manifest that makes the backup exist. Bundled
    // files are in the bundles.
    const config = f.config?.get(t) ?? [];
    const records = f.records.get(t)!;
    await t.driver.syncKeys?.([...records.alone, ...config.map((x) => x.key), ...(bundles.get(t) ?? [])], t.signal);
    const manifest = manifestOf(o, f, t, stopTime, stopWal, config);
    await writeManifestRecords(t.driver, manifest, records.spool.count, records.spool.records(), t.signal);
    stored.push({ url: t.driver.url, manifest, referencedSize: records.size - records.storedFilesSize });
  });
  f.progress.done();
  // In the order of the repositories, whatever order they finished in.
  stored.sort((a, b) => f.targets.findIndex((t) => t.driver.url === a.url) - f.targets.findIndex((t) => t.driver.url === b.url));
  const failed = f.targets.filter((t) => t.failed !== undefined).map((t) => ({ url: t.driver.url, error: t.failed }));
  return { manifest: stored[0]!.manifest, referencedSize: stored[0]!.referencedSize, stored, failed };
}

/** The head of backup `f`'s manifest in repository `t` (its records are in f.records). */
function manifestOf(o: BasebackupOptions, f: Finish, t: StoreTarget, stopTime: Date, stopWal: string, config: ManifestConfigFile[]): ManifestHead {
  const r = f.records.get(t)!;
  return {
    format: MANIFEST_FORMAT_STREAM,
    tool: { name: 'cairn-basebackup', version: CAIRN_VERSION },
    id: f.id,
    type: f.type,
    parent: t.parent?.id ?? null,
    references: referencesOf(t.parent),
    source: f.source,
    cluster: o.cluster,
    systemId: f.systemId,
    pgVersionNum: f.pgVersionNum,
    pgMajor: f.pgMajor,
    ...(f.superuser !== undefined ? { superuser: f.superuser } : {}),
    walSegmentSize: f.segSize,
    timeline: f.timeline,
    start: { time: f.startTime.toISOString(), lsn: formatLsn(f.startLsn), wal: lsnToSegmentName(f.timeline, f.startLsn, f.segSize) },
    stop: { time: stopTime.toISOString(), lsn: formatLsn(f.stopLsn), wal: stopWal },
    checkpointLsn: formatLsn(f.checkpointLsn),
    compress: o.compress,
    encrypted: o.key !== undefined,
    dataChecksums: f.dataChecksums,
    backupLabel: f.label,
    tablespaceMap: f.spcmap,
    tablespaces: f.tablespaces,
    dirs: f.store.dirs().slice().sort((a, b) => (a.path < b.path ? -1 : 1)),
    ...(config.length > 0 ? { config } : {}),
    totals: {
      size: r.size,
      storedSize: r.storedSize,
      filesStored: r.filesStored,
      filesReferenced: r.filesReferenced,
      badPages: r.badPages,
    },
    durationSeconds: (Date.now() - f.t0) / 1000,
  };
}

export function defaultJobs(): number {
  return availableParallelism();
}

function pgBasebackupFailed(e: ProgramExit): CairnError {
  return new CairnError('PG_CONNECT', `pg_basebackup failed (${e.code !== null ? `exit ${e.code}` : describeExit(e)}); the backup was not recorded`, {
    hint: 'see its message above; check the connection settings (PGHOST, PGPORT, PGUSER) and that the role has REPLICATION',
  });
}

/** The input of stream mode: stdin, a file, or pg_basebackup run by us. */
export function streamInput(from: string | undefined, remote: boolean, pgBin: string | undefined, fast: boolean, ctx: ToolContext): { input: AsyncIterable<Buffer>; program?: Program } {
  if (remote) {
    const bin = pgBin ? join(pgBin, 'pg_basebackup') : 'pg_basebackup';
    // Its messages go straight to our stderr, as the user would see them.
    const program = startProgram(bin, ['-D', '-', '-F', 't', '-X', 'none', '-c', fast ? 'fast' : 'spread'], { env: libpqEnv(ctx.env), stdout: 'pipe', stderr: 'inherit', signal: ctx.signal });
    return { input: program.stdout(), program };
  }
  if (from === '-' || from === undefined) return { input: ctx.stdin as AsyncIterable<Buffer> };
  return { input: createReadStream(from, { highWaterMark: 1024 * 1024 }) };
}
