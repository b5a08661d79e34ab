// cairn-restore: turns a plan into a data directory ready to start. Fetches
// the chain's files in parallel, checks every SHA-256, writes files with their
// modes, maps tablespaces, writes backup_label, tablespace_map,
// recovery.signal and the recovery settings. global/pg_control is written
// last: a restore that stops half-way leaves a directory PostgreSQL refuses
// to start ("could not open file global/pg_control"). The manifest is input:
// it is checked before anything is written (core backup/manifest-rules), and
// nothing is written through a symbolic link (target-dir.ts).

import { openCluster } from '@cairn/core/repo/repo-config';
import { startProgram } from '@cairn/core/util/program';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, fchmodSync, fchownSync, futimesSync, lstatSync, openSync, writeSync, type Stats } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readdir, readFile, readlink, rm, stat, symlink, utimes } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { CairnError } from '@cairn/core/cli/errors';
import type { ToolContext } from '@cairn/core/cli/run';
import type { EncryptionKey } from '@cairn/core/codec/index';
import { decodeWhole, SMALL_FILE } from '@cairn/core/codec/file-codec';
import { RESTORE_WRITE_FLAGS, restoreFile, type FileToRestore } from '@cairn/core/backup/restore-file';
import { restorePaged } from '@cairn/core/backup/restore-pages';
import { createSpanReader, isBundled } from '@cairn/core/backup/bundle';
import { otherCopies, restoreFromOtherCopy, type BackupPart, type FileCopy } from '@cairn/core/backup/other-copies';
import { readRange } from '@cairn/core/storage/driver';
import { createFileWorkers, type FileWorkers } from '@cairn/core/backup/file-worker';
import { findWorkerEntry } from '@cairn/core/util/worker-entry';
import { backupChain, missingParentError, readChainLinks } from '@cairn/core/backup/chain';
import { manifestKey, type ManifestFile } from '@cairn/core/backup/manifest';
import { comparePaths, openManifest, readManifestSummary } from '@cairn/core/backup/manifest-stream';
import { backupGroupAccess, createManifestChecker, refuseUnsafe, restoredDirMode, restoredFileMode } from '@cairn/core/backup/manifest-rules';
import type { RestorePlan } from '@cairn/core/restore/plan-format';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { createLimiter } from '@cairn/core/util/limit';
import { fsyncDir, localWriteError } from '@cairn/core/util/local-file';
import { confString } from '@cairn/core/util/literals';
import { quote } from '@cairn/core/wal/quote';
import { checkDestructiveTarget, ensureRealDir, RESTORE_MARKER, writeFileNoFollow, writeRestoreMarker } from './target-dir.js';
import { checkConfigTargets, reportUnwrittenConfig, writeConfigFiles } from './config-files.js';


/**
 * lstat of a path that may be missing (undefined then, or on any error):
 * synchronous and without building an error for a missing file, which
 * was 40% of a --delta restore's CPU over an empty directory (the 1M-file
 * simulation, issue 19).
 */
function lstatIfThere(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

export interface RestoreOptions {
  plan: RestorePlan;
  driver: StorageDriver;
  key: EncryptionKey | undefined;
  pgdata: string;
  delta: boolean;
  force: boolean;
  /** OID or old location → new location. */
  tablespaceMap: Map<string, string>;
  jobs: number;
  /** The restore_command to write. */
  restoreCommand: string;
  /** For the worker threads, which open the key themselves. */
  keyFile: string | undefined;
  keyCommand?: string | undefined;
  /** Where the configuration files the backup kept from outside PGDATA go; undefined: not written. */
  configDir: string | undefined;
  /**
   * The other configured repositories, in order: a file whose stored copy
   * in `driver` is missing or damaged is taken from the first of them that
   * holds the same backup with the same SHA-256 for it (issue 18 item 3).
   */
  others?: StorageDriver[];
}

/** Files restored from another repository that each get their own warning line. */
const HEAL_WARNINGS = 10;
/** File records restored per batch (issue 19): what restore holds of the manifest's small files. */
const RESTORE_BATCH = 4096;

type BundledFile = ManifestFile & { bundle: NonNullable<ManifestFile['bundle']> };

/** Files from this size on are restored in a worker thread. */
const BIG_FILE = 32 * 1024 * 1024;
/** Files bigger than SMALL_FILE and smaller than BIG_FILE restored at once (each streams through this thread). */
const MEDIUM_JOBS = 2;

export interface RestoreResult {
  backup: string;
  pgdata: string;
  files: number;
  filesFetched: number;
  filesKept: number;
  bytesWritten: number;
  bytesKept: number;
  removed: number;
  /** Files taken from another repository because their copy in the plan's was missing or damaged. */
  healed: number;
  seconds: number;
}

const CONTROL = 'global/pg_control';

/** pg_tblspc/<oid>: a tablespace's link; pg_tblspc/<oid>/<rest>: an entry in its location. */
const TABLESPACE_LINK_RE = /^pg_tblspc\/(\d+)$/;
const TABLESPACE_ENTRY_RE = /^pg_tblspc\/(\d+)\/(.+)$/;

/** postgresql.auto.conf lines that would steer this recovery: replaced, not added to. */
const RECOVERY_SETTING_RE = /^\s*(restore_command|recovery_target\w*|recovery_end_command|archive_cleanup_command)\s*=/i;

async function postmasterRunning(pgdata: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(join(pgdata, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? -1 : undefined;
  }
}

async function sha256OfFile(path: string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    h.update(c);
    size += c.length;
  }
  return { sha256: h.digest('hex'), size };
}

export async function restore(o: RestoreOptions, ctx: ToolContext): Promise<RestoreResult> {
  // File workers started before the manifest is walked: closed whatever happens.
  const early: { workers?: FileWorkers } = {};
  try {
    return await restoreWith(o, ctx, early);
  } finally {
    await early.workers?.close();
  }
}

async function restoreWith(o: RestoreOptions, ctx: ToolContext, early: { workers?: FileWorkers }): Promise<RestoreResult> {
  const t0 = Date.now();
  const plan = o.plan;
  // Copies in the other repositories decrypt with their own data keys.
  const copies = o.others && o.others.length > 0 ? otherCopies({ drivers: o.others, cluster: plan.cluster, key: o.key, backupId: plan.backup.id, signal: ctx.signal }) : undefined;
  // Objects decrypt with the cluster's data key (or, in a cluster made
  // before data keys, the operator's key); a wrong key is told here.
  o = { ...o, key: (await openCluster(o.driver, plan.cluster, o.key, ctx.signal))?.dataKey ?? o.key };
  // The manifest is walked as a stream (issue 19): a first pass checks every
  // record before anything is written, a second restores them in batches.
  const opened = await openManifest(o.driver, plan.cluster, plan.backup.id, ctx.signal);
  if (!opened) {
    throw new CairnError('NOT_FOUND', `backup "${plan.backup.id}" is not in repository "${o.driver.url}" cluster "${plan.cluster}"`, {
      hint: 'make a new plan with cairn-restore-plan; cairn-info lists the backups',
    });
  }
  // Its chain, and every backup whose objects it references, must be there
  // before anything is written.
  const manifest = opened.head;
  // Big files each in a worker thread (see @cairn/core/backup/file-worker).
  // The first one is started now, while the manifest is walked and the
  // directories made, when the backup is big enough to hold a big file:
  // started with the first big file, it took 0.25 s to boot beside the busy
  // main thread, the 1 GiB segment that sets the restore's length waiting.
  const entry = findWorkerEntry(import.meta.url);
  const workerCount = Math.max(1, Math.min(o.jobs, availableParallelism()));
  const startWorkers = () => createFileWorkers(entry!, workerCount, { repoUrl: o.driver.url, env: ctx.env, cluster: o.plan.cluster, keyFile: o.keyFile, keyCommand: o.keyCommand, compress: 'none' });
  // (The header's totals are not checked input: a manifest without them only starts no worker early.)
  const total: unknown = (manifest.totals as Partial<typeof manifest.totals> | undefined)?.size;
  if (entry && typeof total === 'number' && total >= BIG_FILE) (early.workers = startWorkers()).warm(1);
  const read = (id: string) => readManifestSummary(o.driver, plan.cluster, id, ctx.signal);
  const chain = new Set(backupChain(await readChainLinks(manifest, read), manifest.id));
  for (const ref of manifest.references) if (!chain.has(ref) && !(await read(ref))) throw missingParentError(manifest.id, ref);
  // Manifests are input (issue 11): one that could write outside the data
  // directory or the tablespace locations it describes, or read objects
  // outside its chain, is refused before anything is written.
  // The first pass: the rules record by record, and what the restore needs
  // to know ahead (pg_control, the big files that go first, the parents).
  const where = `${quote(manifestKey(plan.cluster, manifest.id))} in repository ${quote(o.driver.url)}`;
  const checker = createManifestChecker(manifest, plan.cluster);
  let control: ManifestFile | undefined;
  const big: ManifestFile[] = [];
  const parents = new Set<string>();
  let fileCount = 0;
  for await (const f of opened.files(ctx.signal)) {
    checker.file(f);
    fileCount++;
    if (f.path === CONTROL) control = f;
    else if (f.size > SMALL_FILE && (!isBundled(f) || f.pages)) big.push(f);
    const slash = f.path.lastIndexOf('/');
    if (slash > 0) parents.add(f.path.slice(0, slash));
  }
  const modeFindings = refuseUnsafe(checker.findings, where);
  if (modeFindings.length > 0) {
    ctx.log.warn(`backup ${manifest.id}: ${modeFindings[0]!.message}${modeFindings.length > 1 ? ` (and ${modeFindings.length - 1} more such entries)` : ''}`);
  }
  const groupAccess = backupGroupAccess(manifest);
  const pgdata = resolve(o.pgdata);

  // Where each tablespace goes: its (mapped) location, as the backup describes it.
  const tsLocation = new Map<string, string>();
  for (const ts of manifest.tablespaces) {
    const mapped = o.tablespaceMap.get(ts.oid) ?? o.tablespaceMap.get(ts.location) ?? ts.location;
    tsLocation.set(ts.oid, resolve(mapped));
  }
  /** The root an entry is written under and its path there: tablespace entries in their location, the rest in PGDATA. */
  const place = (path: string): { root: string; rel: string } => {
    const m = TABLESPACE_ENTRY_RE.exec(path);
    if (m && tsLocation.has(m[1]!)) return { root: tsLocation.get(m[1]!)!, rel: m[2]! };
    return { root: pgdata, rel: path };
  };
  const target = (path: string): string => {
    const { root, rel } = place(path);
    return join(root, rel);
  };

  // The target directory: absent or empty, unless --delta or --force; those
  // only on a data directory or an unfinished restore (a typo in --pgdata
  // must not empty a directory).
  let existing: string[] = [];
  try {
    existing = await readdir(pgdata);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') {
      throw new CairnError('CONFIG_INVALID', `cannot restore into ${quote(pgdata)}: ${code === 'ENOTDIR' ? 'not a directory' : (code ?? (err as Error).message)}`, { hint: 'give --pgdata an empty directory (or one to create) that this user can write' });
    }
    await mkdir(pgdata, { recursive: true, mode: 0o700 });
  }
  if (existing.length > 0) {
    const pid = await postmasterRunning(pgdata);
    if (pid !== undefined) {
      throw new CairnError('CONFIG_INVALID', `PostgreSQL is running in "${pgdata}"${pid > 0 ? ` (pid ${pid})` : ''}`, { hint: 'stop it first (pg_ctl stop); cairn-restore never writes under a running server' });
    }
    if (!o.delta && !o.force) {
      throw new CairnError('CONFIG_INVALID', `"${pgdata}" is not empty`, {
        hint: 'restore into an empty directory, or give --delta (keep matching files, fetch the rest) or --force (remove what is there)',
      });
    }
    checkDestructiveTarget(pgdata, o.delta ? '--delta' : '--force');
  }
  const config = manifest.config ?? [];
  if (o.configDir !== undefined) await checkConfigTargets(config, o.configDir, o.force);
  const owner = process.getuid?.() === 0 ? await stat(pgdata) : undefined;
  const umask = process.umask();
  const give = async (p: string) => {
    if (owner) await chown(p, owner.uid, owner.gid).catch(() => {});
  };
  // First: the marker, so an interrupted run is recognised by the next --force/--delta.
  writeRestoreMarker(pgdata, manifest.id, ctx.now());
  await give(join(pgdata, RESTORE_MARKER));
  // Then no pg_control, so a half-restored directory cannot start. Never
  // through a link: a global/ that is not a real directory goes (the link
  // itself, not what it points to) and is made again below.
  const globalDir = join(pgdata, 'global');
  const globalSt = await lstat(globalDir).catch(() => undefined);
  if (globalSt?.isDirectory()) {
    await rm(join(pgdata, CONTROL), { force: true });
    await fsyncDir(globalDir).catch(() => {});
  } else if (globalSt !== undefined) {
    await rm(globalDir, { force: true });
  }
  if (o.force && !o.delta) {
    // rm never follows a link: a link goes, what it points to stays.
    for (const name of existing) if (name !== RESTORE_MARKER) await rm(join(pgdata, name), { recursive: true, force: true });
  }

  const result: RestoreResult = { backup: manifest.id, pgdata, files: fileCount, filesFetched: 0, filesKept: 0, bytesWritten: 0, bytesKept: 0, removed: 0, healed: 0, seconds: 0 };

  // --delta: remove what the backup does not have (pg_wal's old segments
  // included). Links are removed, never followed, except a tablespace link
  // the backup describes that already points where this restore puts it.
  if (o.delta && existing.length > 0) {
    // The backup's paths are not held (issue 19): the sweep visits each
    // directory's names sorted, depth first, which is the manifest's order
    // (comparePaths), so one pass over its records beside it tells which
    // files the backup has. A name visited out of that order would only be
    // removed and fetched again, never kept wrongly.
    const records = opened.files(ctx.signal)[Symbol.asyncIterator]();
    let record = await records.next();
    const inBackup = async (path: string): Promise<boolean> => {
      while (!record.done && comparePaths(record.value.path, path) < 0) record = await records.next();
      return !record.done && record.value.path === path;
    };
    const wantDirs = new Set(manifest.dirs.map((d) => d.path));
    const sweep = async (abs: string, rel: string): Promise<void> => {
      for (const name of (await readdir(abs)).sort()) {
        const childRel = rel === '' ? name : `${rel}/${name}`;
        if (childRel === RESTORE_MARKER) continue;
        const childAbs = join(abs, name);
        const st = await lstat(childAbs);
        if (st.isSymbolicLink()) {
          const ts = TABLESPACE_LINK_RE.exec(childRel);
          const loc = ts ? tsLocation.get(ts[1]!) : undefined;
          if (loc !== undefined && wantDirs.has(childRel) && (await readlink(childAbs)) === loc) {
            await sweep(loc, childRel);
            continue;
          }
        } else if (st.isDirectory() && wantDirs.has(childRel)) {
          await sweep(childAbs, childRel);
          continue;
        } else if (st.isFile() && (await inBackup(childRel))) {
          continue;
        }
        await rm(childAbs, { recursive: true, force: true });
        result.removed++;
      }
    };
    try {
      await sweep(pgdata, '');
      // To the end line: this is a second read of the manifest, and what it
      // said is trusted (a file kept) only once it checks out whole, as the
      // first pass did; altered since, the restore stops here.
      while (!record.done) record = await records.next();
    } finally {
      await records.return?.(undefined);
    }
  }

  // Directories, each component checked with lstat (ensureRealDir), modes
  // masked to what PostgreSQL creates; tablespace links to their locations.
  const made = new Set<string>();
  const parentMode = restoredDirMode(0o750, groupAccess);
  for (const d of manifest.dirs) {
    const tm = TABLESPACE_LINK_RE.exec(d.path);
    if (tm && tsLocation.has(tm[1]!)) {
      const loc = tsLocation.get(tm[1]!)!;
      await mkdir(loc, { recursive: true, mode: 0o700 });
      await give(loc);
      await ensureRealDir(pgdata, 'pg_tblspc', parentMode, made);
      const link = join(pgdata, d.path);
      const cur = await readlink(link).catch(() => undefined);
      if (cur !== loc) {
        await rm(link, { recursive: true, force: true });
        await symlink(loc, link);
      }
      continue;
    }
    const mode = restoredDirMode(d.mode, groupAccess);
    const { root, rel } = place(d.path);
    const p = await ensureRealDir(root, rel, mode, made);
    await chmod(p, mode);
    await give(p);
  }
  // Parents the manifest does not list (a damaged one): made the same way.
  for (const dir of parents) {
    // Placed as a file in it would be: a tablespace's files go to its location.
    const { root, rel } = place(`${dir}/x`);
    const slash = rel.lastIndexOf('/');
    if (slash > 0) await ensureRealDir(root, rel.slice(0, slash), parentMode, made);
  }

  // Bundled files are read a span of neighbours at a time (backup/bundle.ts),
  // a batch of records at a time. Page-level files read their layers
  // themselves (backup/restore-pages.ts).
  let spans = createSpanReader<BundledFile>(o.driver, [], ctx.signal);
  const writeOne = async (f: ManifestFile): Promise<void> => {
    const path = target(f.path);
    const mode = restoredFileMode(f.mode, groupAccess);
    if (f.pages) {
      // Page-level (backup/restore-pages.ts); big ones in a worker thread, as whole files.
      const label = `"${f.path}" of backup ${f.ref}`;
      const t = { path, mode, mtime: f.mtime, label, ...(owner ? { owner: { uid: owner.uid, gid: owner.gid } } : {}) };
      const r = await (workers && f.size >= BIG_FILE ? workers.pages({ kind: 'pages', file: f, target: t, delta: o.delta, size: f.size }) : restorePaged(o.driver, o.key, f, t, o.delta, ctx.signal))
        .catch((err: unknown) => heal(err, f, (c) => restorePaged(c.driver, c.key, c.file, t, o.delta, ctx.signal)));
      if (r.kept) {
        result.filesKept++;
        result.bytesKept += f.size;
        return;
      }
      result.filesFetched++;
      result.bytesWritten += r.written;
      result.bytesKept += f.size - r.written;
      written.push(path);
      return;
    }
    if (o.delta) {
      const st = lstatIfThere(path);
      if (st?.isFile() && st.size === f.size) {
        // Big files hashed in the worker threads, beside the rest.
        const local = workers && f.size >= BIG_FILE ? ((await workers.hash({ kind: 'hash', path, size: f.size })) ?? { sha256: '', size: -1 }) : await sha256OfFile(path);
        if (local.sha256 === f.sha256) {
          if (isBundled(f) && !f.pages) spans.skip(f);
          await chmod(path, mode);
          await utimes(path, f.mtime, f.mtime);
          result.filesKept++;
          result.bytesKept += f.size;
          return;
        }
      }
    }
    const label = `"${f.path}" of backup ${f.ref} (${f.key})`;
    const job: FileToRestore = { key: f.key, path, sha256: f.sha256, size: f.size, mode, mtime: f.mtime, label, ...(owner ? { owner: { uid: owner.uid, gid: owner.gid } } : {}) };
    await fetchFile(f, job, { driver: o.driver, key: o.key, primary: true }).catch((err: unknown) =>
      heal(err, f, (c) => fetchFile(c.file, { ...job, key: c.file.key, label: `"${f.path}" of backup ${c.file.ref} (${c.file.key}) in repository ${quote(c.driver.url)}` }, { driver: c.driver, key: c.key, primary: false })));
    result.filesFetched++;
    result.bytesWritten += f.size;
    written.push(path);
  };
  /** Files written and not yet fsynced; emptied as they are (a batch at a time when `sync -f` is missing). */
  const written: string[] = [];

  /**
   * Writes one whole file from a stored copy: the repository read
   * (`primary`: its span reader and the worker threads) or another one's
   * copy of the same file, read alone on this thread.
   */
  const fetchFile = async (f: ManifestFile, job: FileToRestore, src: { driver: StorageDriver; key: EncryptionKey | undefined; primary: boolean }): Promise<void> => {
    if (f.size <= SMALL_FILE) {
      // Small files (most of them): decode in memory and write with
      // synchronous calls. Each promise-based call is a trip through the
      // threadpool that costs more than the syscall, and a cluster is a
      // thousand small files.
      const stored = isBundled(f)
        ? src.primary ? await spans.read(f) : await readRange(src.driver, f.bundle.key, f.bundle.offset, f.storedSize, ctx.signal)
        : src.driver.readSmall ? await src.driver.readSmall(f.key, ctx.signal) : await buffer(await src.driver.read(f.key, ctx.signal));
      const data = await decodeWhole(stored, f.key, src.key, { sha256: f.sha256, size: f.size, label: job.label });
      let fd: number | undefined;
      try {
        fd = openSync(job.path, RESTORE_WRITE_FLAGS, job.mode);
        let off = 0;
        while (off < data.length) off += writeSync(fd, data, off, data.length - off);
        futimesSync(fd, job.mtime, job.mtime);
        if ((job.mode & umask) !== 0) fchmodSync(fd, job.mode);
        if (owner) fchownSync(fd, owner.uid, owner.gid);
      } catch (err) {
        throw localWriteError(err, job.path);
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    } else if (src.primary && workers && f.size >= BIG_FILE) {
      await workers.decode({ kind: 'decode', ...job });
    } else {
      await restoreFile(src.driver, src.key, job, 2, ctx.signal);
    }
  };
  /** A damaged or missing copy in the repository read: the same file from another (other-copies.ts), with a warning. */
  const healed = { files: 0, warned: 0 };
  const heal = <T>(err: unknown, f: ManifestFile, write: (c: FileCopy) => Promise<T>, part: BackupPart = 'files'): Promise<T> =>
    restoreFromOtherCopy(err, {
      bad: o.driver, file: f, part, backupId: manifest.id, copies,
      warn: (line) => {
        healed.files++;
        // A lost bundle is every file in it: the first few are told, then a count at the end.
        if (healed.warned++ < HEAL_WARNINGS) ctx.log.warn(line);
      },
    }, write);

  // Many small files wait on I/O: the store's requests in flight (tens for
  // an object store, whose every GET is a round trip). Files between
  // SMALL_FILE and BIG_FILE hold two decoded 4 MiB pieces each, and more in
  // their streams' buffers: MEDIUM_JOBS of them at once (issue 19: 8 at once
  // took 110 MB at the start of a restore, and the heap kept it). Big ones
  // wait on the workers, which queue them: 8 at once.
  const limit = createLimiter(8);
  const medium = createLimiter(MEDIUM_JOBS);
  const many = createLimiter(o.driver.features.requests);
  // Big files each in a worker thread: their SHA-256 runs there, beside the
  // small files on this thread. No more threads than such files (issue 19):
  // each is an isolate of its own, tens of MB, and a cluster of many small
  // tables has one or two; another worker starts only when every one started
  // has a big file queued (file-worker.ts).
  const bigCount = big.filter((f) => f.size >= BIG_FILE).length;
  if (bigCount === 0 && early.workers) {
    await early.workers.close();
    delete early.workers;
  }
  // Closed by restore() on every path, with an early one.
  const workers = bigCount > 0 && entry ? (early.workers ??= startWorkers()) : undefined;
  const abort = new AbortController();
  const limiterOf = (f: ManifestFile) => (f.size <= SMALL_FILE ? many : workers && f.size >= BIG_FILE ? limit : medium);
  const run = (files: readonly ManifestFile[]) => Promise.all(files.map((f) => limiterOf(f)(() => (abort.signal.aborted ? Promise.resolve() : writeOne(f).catch((err) => {
    abort.abort();
    throw err;
  })))));
  // Big files first: they set the length of the restore (they are few
  // whatever the file count: each is over SMALL_FILE bytes). The small ones
  // go beside them.
  big.sort((a, b) => b.size - a.size);
  // Whether syncfs works, asked beside the files, not in their way: `sync
  // -f` flushes the whole file system (seconds on a busy one), and it was
  // a spawnSync that stopped the event loop meanwhile.
  const syncfsWorks = syncFileSystems([pgdata], ctx.env, ctx.signal);
  const bigDone = run(big);
  bigDone.catch(() => {}); // awaited below, after the small ones
  // The small ones, a batch of records at a time, each batch's
  // bundled files span by span; the records are checked again on the way
  // (the same rules: a manifest that differs now is refused).
  const again = createManifestChecker(manifest, plan.cluster);
  let batch: ManifestFile[] = [];
  const flush = async () => {
    const bundled = batch.filter((f): f is BundledFile => isBundled(f) && !f.pages);
    spans = createSpanReader(o.driver, bundled, ctx.signal);
    await run([...batch.filter((f) => !isBundled(f) || f.pages), ...spans.order]);
    batch = [];
    // Without syncfs, what was written is fsynced batch by batch; with it,
    // one syncfs at the end covers it: either way no path is held for the
    // whole run (issue 19: 120,000 paths).
    if (!(await syncfsWorks)) await syncFiles(written.splice(0), limit);
    else written.length = 0;
  };
  for await (const f of opened.files(ctx.signal)) {
    again.file(f);
    if (again.findings.length > 0) refuseUnsafe(again.findings, where);
    if (f.path === CONTROL || (f.size > SMALL_FILE && (!isBundled(f) || f.pages))) continue;
    batch.push(f);
    if (batch.length >= RESTORE_BATCH) await flush();
  }
  await flush();
  await bigDone;

  // Recovery configuration.
  const tsMap = manifest.tablespaceMap === null ? null : manifest.tablespaces.map((t) => `${t.oid} ${tsLocation.get(t.oid)!}`).join('\n') + '\n';
  writeFileNoFollow(join(pgdata, 'backup_label'), manifest.backupLabel);
  await give(join(pgdata, 'backup_label'));
  if (tsMap !== null) {
    writeFileNoFollow(join(pgdata, 'tablespace_map'), tsMap);
    await give(join(pgdata, 'tablespace_map'));
  }
  writeFileNoFollow(join(pgdata, 'recovery.signal'), '');
  await give(join(pgdata, 'recovery.signal'));
  const auto = join(pgdata, 'postgresql.auto.conf');
  const lines = [`# recovery settings added by cairn-restore at ${ctx.now().toISOString()} (backup ${manifest.id})`, `restore_command = ${confString(o.restoreCommand)}`];
  for (const [k, v] of Object.entries(plan.recoverySettings)) lines.push(`${k} = ${confString(v)}`);
  // Recovery settings left in the backup (a cluster restored earlier keeps
  // them after promotion) would add a second target, which PostgreSQL
  // refuses ("multiple recovery targets specified"): comment them out.
  const old = existsSync(auto) ? await readFile(auto, 'utf8') : '';
  const kept = old
    .split('\n')
    .map((l) => (RECOVERY_SETTING_RE.test(l) ? `# ${l}  # disabled by cairn-restore` : l))
    .join('\n');
  writeFileNoFollow(auto, (kept === '' || kept.endsWith('\n') ? kept : kept + '\n') + lines.join('\n') + '\n');
  await give(auto);
  if (o.configDir === undefined) reportUnwrittenConfig(config, ctx.log);
  else if (config.length > 0) {
    const paths = await writeConfigFiles({ driver: o.driver, key: o.key, configDir: o.configDir, owner, signal: ctx.signal, heal: (err, c, read) => heal(err, c, read, 'config') }, config);
    await syncFiles(paths, limit);
    ctx.log.info(`wrote ${paths.length} configuration file${paths.length > 1 ? 's' : ''} into ${quote(resolve(o.configDir))}: ${config.map((c) => c.path).join(', ')}`);
  }
  // Durable before pg_control: fsync in parallel batches (concurrent fsyncs
  // share journal commits) rather than one in line per file.
  await syncAll([pgdata, ...tsLocation.values()], written.splice(0), limit, ctx, await syncfsWorks);

  // Last: pg_control makes the directory startable.
  if (control) {
    // Its own span reader: a bundled pg_control is read alone.
    spans = createSpanReader(o.driver, isBundled(control) && !control.pages ? [control] : [], ctx.signal);
    await writeOne({ ...control });
    await syncFiles(written.splice(0), limit);
    await fsyncDir(join(pgdata, 'global'));
  }
  await rm(join(pgdata, RESTORE_MARKER), { force: true });
  await fsyncDir(pgdata);
  if (healed.files > HEAL_WARNINGS) ctx.log.warn(`${healed.files} files of backup ${manifest.id} were restored from other repositories than ${quote(o.driver.url)} (${healed.files - HEAL_WARNINGS} not listed above); run cairn-verify on ${quote(o.driver.url)}`);
  result.healed = healed.files;
  result.seconds = (Date.now() - t0) / 1000;
  return result;
}

/**
 * `sync -f` (syncfs(2), coreutils) on the file systems of `roots`: whether it
 * worked (then written files need not be remembered for fsync).
 */
async function syncFileSystems(roots: string[], env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<boolean> {
  const exit = await startProgram('sync', ['-f', ...roots], { env, signal }).exited;
  return exit.code === 0;
}

/**
 * Everything written so far durable before pg_control: one syncfs(2) per
 * file system (`sync -f`, coreutils) instead of a thousand fsyncs; per-file
 * fsync when that is unavailable: `files`, or, when the restore did not keep
 * them (`forgotten`: syncfs worked when it began), every file under `roots`.
 */
async function syncAll(roots: string[], files: string[], limit: <T>(job: () => Promise<T>) => Promise<T>, ctx: Pick<ToolContext, 'env' | 'signal'>, forgotten: boolean): Promise<void> {
  if (await syncFileSystems(roots, ctx.env, ctx.signal)) return;
  await syncFiles(files, limit);
  const each = forgotten ? (paths: string[]) => syncFiles(paths, limit) : undefined;
  // An fsync that fails fails the restore; a directory's, as before, does not.
  for (const root of roots) await (each ? syncTree(root, each) : syncTree(root).catch(() => {}));
}

async function syncFiles(paths: string[], limit: <T>(job: () => Promise<T>) => Promise<T>): Promise<void> {
  await Promise.all(
    paths.map((p) =>
      limit(async () => {
        const fh = await open(p, 'r');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }),
    ),
  );
}

/**
 * fsync every directory (files were flushed as they closed), so renames and
 * creations are durable; with `files`, each directory's regular files first.
 */
async function syncTree(dir: string, files?: (paths: string[]) => Promise<void>): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  if (files) await files(entries.filter((e) => e.isFile()).map((e) => join(dir, e.name)));
  for (const e of entries) if (e.isDirectory()) await syncTree(join(dir, e.name), files);
  await fsyncDir(dir).catch(() => {});
}

