// cairn-copy as a function: bring one repository's cluster to hold everything
// another one holds — repo.json, systems, WAL and history files, backups with
// every object their chains need, dumps, verify and drill results — copying
// the stored bytes as they are (never recompressed; encrypted again only for
// a target with its own data key) and checking each object's plaintext
// SHA-256 and stored size against what was recorded for it on the way. A backup's or dump's manifest is written last, once all its objects
// are durable in the target, so the target never shows one whose objects are
// missing; what the target has already (same key, same size) is skipped, so
// a rerun after a kill finishes the job.

import { PassThrough, Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { buffer } from 'node:stream/consumers';
import { createHash } from 'node:crypto';
import { CairnError } from '@cairn/core/cli/errors';
import { createDecryptStage, createEncryptStage, createHashStage, decodeStagesFor, storedEncoding, type EncryptionKey } from '@cairn/core/codec/index';
import { checksumMismatch, decodeFileStages, decodeWhole } from '@cairn/core/codec/file-codec';
import { objectEntries } from '@cairn/core/backup/pages';
import { backupPrefix, listBackupIds, manifestKey, type ManifestFile } from '@cairn/core/backup/manifest';
import { createRecordCursor, openManifest, openManifestFrom, recordsInPathOrder, type ManifestHead, type OpenedManifest, type RecordCursor } from '@cairn/core/backup/manifest-stream';
import { createManifestChecker } from '@cairn/core/backup/manifest-rules';
import { bundlePrefix } from '@cairn/core/backup/bundle';
import { checkDumpManifestAt, dumpManifestKey, dumpPrefix, listDumps, type DumpManifest } from '@cairn/core/dump/manifest';
import { listWalArchive, type WalListing } from '@cairn/core/repo/catalog';
import { readJsonBytes, readObjectBytes } from '@cairn/core/repo/json-object';
import { dataKeysPrefix, repoConfigKey, systemsPrefix } from '@cairn/core/repo/layout';
import { openCluster, readRepoConfig, type OpenedRepoConfig, type RepoConfig } from '@cairn/core/repo/repo-config';
import { storeWal, type StoredWal } from '@cairn/core/repo/wal-archive';
import { drillResultsPrefix } from '@cairn/core/drill/result-format';
import { verifyResultsPrefix } from '@cairn/core/verify/result-format';
import { ObjectNotFoundError, readRange, WriteConflictError, type StorageDriver } from '@cairn/core/storage/driver';
import { COPY_LEASE_LIFETIME_MS, holdReaderLease, waitForRunningExpire, type HeldReaderLease } from '@cairn/core/repo/reader-lease';
import { forEachLimit } from '@cairn/core/util/limit';
import { quote } from '@cairn/core/wal/quote';

export const COPY_RESULT_FORMAT = 'cairn.copy/1';

export interface CopyOptions {
  from: StorageDriver;
  to: StorageDriver;
  cluster: string;
  /** The operator's key, needed when the source is encrypted: plaintext checksums are checked by decoding with the cluster's data key it opens. */
  key: EncryptionKey | undefined;
  dryRun: boolean;
  /** Objects copied at once. */
  jobs: number;
  /** The source's WAL listing when holdSourceLease made one that is still good. */
  sourceWal?: Map<string, WalListing> | undefined;
}

export interface CopyContext {
  signal: AbortSignal;
  log: { info(msg: string): void; warn(msg: string): void; debug(msg: string): void };
  /** Stored bytes as they are copied (a progress line). */
  onBytes?: (n: number) => void;
  /** Told the total of stored bytes to copy once it is known per part. */
  onPlanned?: (bytes: number) => void;
}

export interface CopyCounts {
  objects: number;
  bytes: number;
}

export interface CopyResult {
  format: typeof COPY_RESULT_FORMAT;
  from: string;
  to: string;
  cluster: string;
  dryRun: boolean;
  /** Objects written to the target (with --dry-run: that would be). */
  copied: CopyCounts;
  /** Objects the target had already (same key and size). */
  skipped: CopyCounts;
  backups: { copied: string[]; present: string[] };
  dumps: { copied: string[]; present: string[] };
  wal: { copied: number; present: number };
  results: { copied: number; present: number };
  /** What could not be copied, one line each (e.g. a WAL file the target holds with other content). */
  problems: string[];
  /** Plaintext bytes decoded and checked against their SHA-256 on the way. */
  checkedBytes: number;
  /** Whether encrypted objects were encrypted again under the target's data key. */
  reencrypted: boolean;
  seconds: number;
}

/** One object to bring over, with what its bytes must decode to. */
interface Item {
  key: string;
  storedSize: number;
  /**
   * How the bytes are checked. 'plain': stored size only (manifests, JSON
   * records: nothing records a hash of them). 'read': these bytes, read and
   * checked already (a dump's manifest: what was checked is what is written).
   * 'manifest': a backup's manifest read again as a stream, its bytes
   * hashed on the way and the write failed unless they are those the
   * passes over its records read. 'object': decoded plaintext
   * SHA-256 and size. 'bundle': each member's span decoded and checked.
   */
  check: { kind: 'plain' } | { kind: 'read'; bytes: Buffer } | { kind: 'object'; sha256: string; size: number; backupFile?: boolean } | { kind: 'bundle'; members: BundleMember[] } | { kind: 'manifest'; read: ManifestRead };
}

/** What one whole read of a manifest object gave: its SHA-256 and length. */
interface ManifestRead {
  sha256: string;
  bytes: number;
}

interface BundleMember {
  name: string;
  offset: number;
  storedSize: number;
  sha256: string;
  size: number;
}

/** Bundles above this are not read whole (createBundler aims at 16 MiB). */
const BUNDLE_MAX = 64 * 1024 * 1024;

function describeCipher(cfg: RepoConfig): string {
  return cfg.cipher === 'none' ? 'not encrypted' : `encrypted (${cfg.cipher})`;
}

/**
 * The target must hold what it is given as the source does: both encrypted
 * or both not. Whether the bytes are copied as stored or re-encrypted is
 * decided by the keys (checkRepositories).
 */
function checkTargetConfig(src: RepoConfig, dst: RepoConfig, from: string, to: string, cluster: string): void {
  if (src.cipher === dst.cipher) return;
  throw new CairnError('KEY_MISMATCH', `cannot copy cluster ${quote(cluster)} from repository ${quote(from)} to ${quote(to)}: the source is ${describeCipher(src)}, the target ${describeCipher(dst)}`, {
    hint: 'cairn-copy does not add or strip encryption: copy into a repository (or --cluster) with the same setting, or into an empty one',
  });
}

/** Keys (and sizes) under `prefix` in `driver`. */
async function listSizes(driver: StorageDriver, prefix: string, signal: AbortSignal): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const o of driver.list(prefix, signal)) out.set(o.key, o.size);
  return out;
}

/**
 * A pass-through stage that also feeds what it passes to a decoder and checks
 * the plaintext's SHA-256 and size at the end: the bytes written to the target
 * are exactly the bytes checked, and a mismatch fails the stage before the
 * write completes, so the driver leaves nothing under the key.
 */
function createCheckingTap(storedKey: string, key: EncryptionKey | undefined, expect: { sha256: string; size: number; label: string }, onChecked: (bytes: number) => void, backupFile = false): Transform {
  const input = new PassThrough();
  const hash = createHashStage();
  // The plaintext is only measured: dropped once hashed.
  const sink = new Writable({
    write(_chunk: Buffer, _e, cb) {
      cb();
    },
  });
  // Backup files are zstd frames of 4 MiB pieces, each decoded on its own
  // (as restore and verify do); WAL and dump objects are one stream.
  const stages = backupFile ? decodeFileStages(storedKey, key, expect.label) : decodeStagesFor(storedKey, key, expect.label);
  const decoded = pipeline([input, ...stages, hash.stage, sink]);
  decoded.catch(() => {}); // awaited in flush; a failure before then ends the tap there too
  let failed: unknown;
  decoded.catch((err: unknown) => {
    failed = err;
  });
  return new Transform({
    transform(chunk: Buffer, _e, cb: TransformCallback) {
      if (failed !== undefined) return cb(failed as Error);
      this.push(chunk);
      if (input.write(chunk)) cb();
      else input.once('drain', () => cb());
    },
    flush(cb: TransformCallback) {
      input.end();
      decoded.then(() => {
        const got = hash.digest();
        const size = hash.bytes();
        // WAL keys carry the SHA-256 but no size (expect.size < 0).
        if (got !== expect.sha256 || (expect.size >= 0 && size !== expect.size)) cb(checksumMismatch(expect, got, size));
        else {
          onChecked(size);
          cb();
        }
      }, (err: unknown) => cb(err as Error));
    },
  });
}

/** A stream of `key`'s bytes in `from`, through `stages`, that counts them. */
function sourceStream(from: StorageDriver, key: string, stages: Transform[], counted: { n: number }, onBytes: ((n: number) => void) | undefined, signal: AbortSignal): Readable {
  const out = new PassThrough();
  const count = new Transform({
    transform(chunk: Buffer, _e, cb) {
      counted.n += chunk.length;
      onBytes?.(chunk.length);
      cb(null, chunk);
    },
  });
  from.read(key, signal).then(
    (src) => pipeline([src, count, ...stages, out], { signal }).catch((err: unknown) => out.destroy(err as Error)),
    (err: unknown) => out.destroy(err as Error),
  );
  return out;
}

/**
 * What the copy reads, held in a reader lease on the source (as a restore
 * holds its chain): every backup, dump and WAL segment listed now, so a
 * cairn-expire of the source that starts while the copy runs keeps them. An
 * expire already running planned without the lease: it is waited for, and
 * the WAL is listed again after it.
 */
export async function holdSourceLease(
  from: StorageDriver,
  cluster: string,
  ctx: { now: () => Date; signal: AbortSignal; log: CopyContext['log'] },
): Promise<{ lease: HeldReaderLease; wal: Map<string, WalListing> | undefined }> {
  const [wal, backups, dumps] = await Promise.all([listWalArchive(from, cluster, ctx.signal), listBackupIds(from, cluster, ctx.signal), listDumps(from, cluster, ctx.signal)]);
  const ranges = new Map<number, { from: string; to: string }>();
  for (const listing of wal.values()) {
    for (const name of listing.segments.keys()) {
      const tli = parseInt(name.slice(0, 8), 16);
      const r = ranges.get(tli);
      if (r === undefined) ranges.set(tli, { from: name, to: name });
      else {
        if (name < r.from) r.from = name;
        if (name > r.to) r.to = name;
      }
    }
  }
  const systems = [...wal.keys()];
  const lease = await holdReaderLease(
    from,
    cluster,
    {
      purpose: 'copy',
      pgdata: null,
      // A lease without a system holds its timelines in every system.
      systemId: systems.length === 1 ? systems[0]! : null,
      walSegmentSize: null,
      backup: null,
      chain: backups,
      dumps: dumps.map((d) => `${d.dir}/${d.id}`),
      wal: [...ranges].sort((a, b) => a[0] - b[0]).map(([timeline, r]) => ({ timeline, ...r })),
      target: null,
    },
    { lifetimeMs: COPY_LEASE_LIFETIME_MS, now: ctx.now, tool: 'cairn-copy', signal: ctx.signal, onRenewError: (err) => ctx.log.warn(`could not renew the reader lease on ${quote(from.url)}: ${(err as Error).message}`) },
  );
  try {
    const waited = await waitForRunningExpire(from, cluster, { signal: ctx.signal, maxWaitMs: 10 * 60_000, onWait: (holder) => ctx.log.info(`waiting for ${holder} on the source to finish`) });
    return { lease, wal: waited ? undefined : wal };
  } catch (err) {
    await lease.release();
    throw err;
  }
}

/**
 * Reads both repo.json files, writing nothing: the source's cluster must be
 * there and open with the key given, and the target's settings must be the
 * source's (or the target must have none yet, and no objects). The command
 * runs it before it takes any lease, so a typo in --from leaves no trace.
 */
export async function checkRepositories(
  opts: Pick<CopyOptions, 'from' | 'to' | 'cluster' | 'key'>,
  signal: AbortSignal,
): Promise<{ srcCfg: OpenedRepoConfig; dstCfg: RepoConfig | undefined; reencrypt: Reencrypt | undefined }> {
  const { from, to, cluster } = opts;
  const srcCfg = await openCluster(from, cluster, opts.key, signal);
  if (srcCfg === undefined) {
    throw new CairnError('CONFIG_INVALID', `repository ${quote(from.url)} has no cluster ${quote(cluster)} (no ${repoConfigKey(cluster)})`, {
      hint: 'check --from and --cluster; cairn-info --repo URL lists what a repository holds',
    });
  }
  const dstCfg = await readRepoConfig(to, cluster, signal);
  let reencrypt: Reencrypt | undefined;
  if (dstCfg !== undefined) {
    checkTargetConfig(srcCfg, dstCfg, from.url, to.url, cluster);
    // Encrypted under another data key (each repository made its own, as
    // wal-push does into every repository): the target is opened with the
    // same operator key, and every encrypted object is decrypted and
    // encrypted again under the target's data key on the way.
    if (srcCfg.cipher !== 'none' && srcCfg.keyCheck !== dstCfg.keyCheck) {
      const opened = await openCluster(to, cluster, opts.key, signal);
      if (opened?.dataKey === undefined || srcCfg.dataKey === undefined) throw new CairnError('INTERNAL', 'an encrypted cluster opened without its key');
      reencrypt = { from: srcCfg.dataKey, to: opened.dataKey };
    }
  } else {
    // A cluster without repo.json but with objects is refused by every
    // writer (repo-config.ts); so is it here. Leases, and the data key a
    // copy killed before repo.json stored, are no such objects.
    for await (const o of to.list(`${cluster}/`, signal)) {
      if (o.key.startsWith(`${cluster}/locks/`) || o.key.startsWith(dataKeysPrefix(cluster))) continue;
      throw new CairnError('FORMAT_INVALID', `repository ${quote(to.url)} cluster ${quote(cluster)} holds objects (e.g. ${quote(o.key)}) but no repo.json`, {
        hint: `copy into an empty repository or cluster, or restore ${repoConfigKey(cluster)} there first`,
      });
    }
  }
  return { srcCfg, dstCfg, reencrypt };
}

/** The source's and the target's data keys, when they differ. */
interface Reencrypt {
  from: EncryptionKey;
  to: EncryptionKey;
}

/** Decrypts under the source's data key and encrypts under the target's: the stored size is unchanged (same chunking, same header size). */
function reencryptStages(r: Reencrypt, label: string): Transform[] {
  return [createDecryptStage(r.from, label), createEncryptStage(r.to)];
}

async function reencryptBuffer(r: Reencrypt, stored: Buffer, label: string): Promise<Buffer> {
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      out.push(chunk);
      cb();
    },
  });
  await pipeline([Readable.from([stored]), ...reencryptStages(r, label), sink]);
  return Buffer.concat(out);
}

export async function copyRepository(opts: CopyOptions, ctx: CopyContext): Promise<CopyResult> {
  const t0 = Date.now();
  const { from, to, cluster, dryRun } = opts;
  const signal = ctx.signal;
  const result: CopyResult = {
    format: COPY_RESULT_FORMAT,
    from: from.url,
    to: to.url,
    cluster,
    dryRun,
    copied: { objects: 0, bytes: 0 },
    skipped: { objects: 0, bytes: 0 },
    backups: { copied: [], present: [] },
    dumps: { copied: [], present: [] },
    wal: { copied: 0, present: 0 },
    results: { copied: 0, present: 0 },
    problems: [],
    checkedBytes: 0,
    reencrypted: false,
    seconds: 0,
  };
  const checked = (n: number) => {
    result.checkedBytes += n;
  };

  // 1. repo.json (again: a writer may have created the target's since the check).
  const { srcCfg, dstCfg, reencrypt } = await checkRepositories(opts, signal);
  // Objects decode with the cluster's data key (openCluster checked the
  // operator's key against it), or the operator's key for older clusters.
  // What is written is checked with the key the target reads it with.
  const key = srcCfg.dataKey;
  const written = reencrypt?.to ?? key;
  result.reencrypted = reencrypt !== undefined;
  /** The stages between the source's bytes and the target: re-encryption (for an encrypted object) and the check of what comes out. */
  const stagesFor = (storedKey: string, expect: { sha256: string; size: number; label: string }, backupFile = false): Transform[] => [
    ...(reencrypt !== undefined && storedEncoding(storedKey).encrypted ? reencryptStages(reencrypt, expect.label) : []),
    createCheckingTap(storedKey, written, expect, checked, backupFile),
  ];

  const copyOne = async (item: Item, present: Presence): Promise<'copied' | 'present'> => {
    const have = await present(item.key);
    if (have !== undefined) {
      // A record (a system, a verify or drill result) the target has under
      // the same name is its own: each repository keeps its own.
      if (have !== item.storedSize && item.check.kind !== 'plain') {
        throw new CairnError('WRITE_CONFLICT', `object ${quote(item.key)} in repository ${quote(to.url)} has ${have} bytes, the source's ${item.storedSize}`, {
          hint: 'the target holds other content under this key: run cairn-verify on both repositories',
        });
      }
      result.skipped.objects++;
      result.skipped.bytes += item.storedSize;
      return 'present';
    }
    result.copied.objects++;
    if (dryRun) {
      result.copied.bytes += item.storedSize;
      return 'copied';
    }
    const counted = { n: 0 };
    const label = `${quote(item.key)} in repository ${quote(from.url)}`;
    let body: Readable | Buffer;
    if (item.check.kind === 'bundle' || item.check.kind === 'read') {
      body = item.check.kind === 'read' ? item.check.bytes : await readBundleChecked(from, item, key, reencrypt, label, signal);
      if (item.check.kind === 'bundle') checked(item.check.members.reduce((a, mb) => a + mb.size, 0));
      counted.n = body.length;
      ctx.onBytes?.(body.length);
    } else {
      const stages =
        item.check.kind === 'object' ? stagesFor(item.key, { sha256: item.check.sha256, size: item.check.size, label }, item.check.backupFile === true)
        : item.check.kind === 'manifest' ? [createManifestTap(item.check.read, label)]
        : [];
      body = sourceStream(from, item.key, stages, counted, ctx.onBytes, signal);
    }
    try {
      await to.write(item.key, body, { ifAbsent: true, durable: false, signal });
    } catch (err) {
      // Another copy wrote it first (the lease makes that a stale one's
      // leftover at most): the same key holds what its manifest says.
      if (!(err instanceof WriteConflictError)) throw err;
    }
    if (counted.n !== item.storedSize) {
      throw new CairnError('CHECKSUM_MISMATCH', `object ${label} has ${counted.n} bytes, ${item.storedSize} recorded`, { hint: 'run cairn-verify on the source repository' });
    }
    result.copied.bytes += counted.n;
    return 'copied';
  };

  /** Copies `items`, makes them durable, then writes `last` (a manifest). */
  const copyGroup = async (items: Item[], last: Item | undefined, prefix: string): Promise<void> => {
    const listed = await listSizes(to, prefix, signal);
    const present: Presence = (k) => listed.get(k);
    ctx.onPlanned?.(items.reduce((a, i) => a + (listed.has(i.key) ? 0 : i.storedSize), 0));
    const written: string[] = [];
    await forEachLimit(items, opts.jobs, async (item) => {
      if ((await copyOne(item, present)) === 'copied') written.push(item.key);
    }, signal);
    if (last === undefined) return;
    if (!dryRun && written.length > 0) await to.syncKeys?.(written, signal);
    await copyOne(last, present);
  };

  // 2. repo.json and the systems: small JSON records, copied byte for byte.
  // Only objects named as cairn names them: whatever else a source holds
  // under these prefixes is no record of cairn's and is not carried over.
  const plainItems = async (prefix: string, name: RegExp): Promise<Item[]> => {
    const out: Item[] = [];
    for await (const o of from.list(prefix, signal)) if (name.test(o.key.slice(prefix.length))) out.push({ key: o.key, storedSize: o.size, check: { kind: 'plain' } });
    return out;
  };
  if (dstCfg === undefined) {
    // The wrapped data key first, then repo.json, as a first writer stores
    // them: the target opens with the operator's key that opens the source.
    await copyGroup(await plainItems(dataKeysPrefix(cluster), /^datakey-\d{6,}\.json$/), undefined, dataKeysPrefix(cluster));
    const st = await from.stat(repoConfigKey(cluster), signal);
    await copyGroup([], { key: repoConfigKey(cluster), storedSize: st?.size ?? 0, check: { kind: 'plain' } }, repoConfigKey(cluster));
  }
  await copyGroup(await plainItems(systemsPrefix(cluster), /^\d+\.json$/), undefined, systemsPrefix(cluster));

  // 3. WAL and history files, before the backups that need them, so a backup
  // that appears in the target is restorable at once. Through the WAL
  // archive's own protocol (storeWal): a name stored with other content is
  // never overwritten, the same content is "already there".
  const srcWal = opts.sourceWal ?? (await listWalArchive(from, cluster, signal));
  const dstWal = dryRun || (await hasAny(to, `${cluster}/wal/`, signal)) ? await listWalArchive(to, cluster, signal) : new Map<string, WalListing>();
  for (const [systemId, listing] of srcWal) {
    const theirs = new Map<string, StoredWal[]>();
    for (const w of dstWal.get(systemId)?.all ?? []) theirs.set(w.walName, [...(theirs.get(w.walName) ?? []), w]);
    const todo: StoredWal[] = [];
    const seen = new Set<string>();
    for (const w of listing.all) {
      if (seen.has(w.walName)) continue; // another encoding of the same file: one copy is enough
      seen.add(w.walName);
      const stored = theirs.get(w.walName) ?? [];
      if (stored.some((s) => s.sha256 === w.sha256)) {
        result.wal.present++;
        result.skipped.objects++;
        result.skipped.bytes += w.size;
      } else if (stored.length > 0) {
        result.problems.push(`WAL file ${quote(w.walName)} of system ${systemId} is in repository ${quote(to.url)} with other content (sha256 ${stored[0]!.sha256}, the source's ${w.sha256}); left as it is`);
      } else todo.push(w);
    }
    ctx.onPlanned?.(todo.reduce((a, w) => a + w.size, 0));
    await forEachLimit(todo, opts.jobs, async (w) => {
      result.wal.copied++;
      result.copied.objects++;
      if (dryRun) {
        result.copied.bytes += w.size;
        return;
      }
      const counted = { n: 0 };
      const label = `WAL file ${quote(w.walName)} in repository ${quote(from.url)}`;
      try {
        await storeWal(to, {
          cluster, systemId, walName: w.walName, sha256: w.sha256, ext: w.ext, signal,
          body: () => sourceStream(from, w.key, stagesFor(w.key, { sha256: w.sha256, size: -1, label }), counted, ctx.onBytes, signal),
        });
      } catch (err) {
        if (err instanceof CairnError && err.code === 'WAL_DUPLICATE') {
          result.problems.push(err.message);
          return;
        }
        throw err;
      }
      result.copied.bytes += counted.n;
    }, signal);
  }

  // 4. Backups, oldest first: a backup's parents are older, so by the time
  // its manifest is written every object its chain names is in the target.
  // A manifest is never held (issue 19): a first pass over its records
  // checks it as restore does (the objects it names are its own or its
  // chain's, every path stays inside the data directory, its end line) and
  // that what it borrows from older backups is what the target holds; a
  // second pass copies its own objects as the records come, `jobs` at once;
  // a third read copies the manifest, its bytes hashed on the way and the
  // write failed unless they are the bytes the passes checked. A source
  // that is damaged or hostile cannot make the copy write outside a
  // backup's own prefix, nor a manifest other than the one checked.
  const dstBackups = new Set(await listBackupIds(to, cluster, signal));
  for (const id of await listBackupIds(from, cluster, signal)) {
    if (dstBackups.has(id)) {
      result.backups.present.push(id);
      continue;
    }
    const mKey = manifestKey(cluster, id);
    const where = `${quote(mKey)} in repository ${quote(from.url)}`;
    const reads = hashedReads(from, mKey);
    let opened: OpenedManifest | undefined;
    let plan: BackupPlan;
    try {
      opened = await openManifestFrom(reads.open, id, where, signal);
      if (opened === undefined) continue; // expired since it was listed
      // Backups this run copied hold the source's very bytes (and with --dry-run are not there yet).
      plan = await planBackupCopy(opened, { from, to, cluster, where, copied: new Set(result.backups.copied), present: dstBackups, signal });
    } catch (err) {
      if (!(err instanceof CairnError) || err.code !== 'FORMAT_INVALID') throw err;
      result.problems.push(`backup ${quote(id)} not copied: ${err.message}; run cairn-verify on the source`);
      continue;
    }
    if (plan.missing.length > 0) {
      result.problems.push(`backup ${quote(id)} not copied: its chain needs ${plan.missing.map(quote).join(', ')}, which the target lacks`);
      continue;
    }
    if (plan.differs !== undefined) {
      result.problems.push(
        `backup ${quote(id)} not copied: it references ${plan.differs}, which repository ${quote(to.url)} holds with other content ` +
          '(each repository stored its own copy of that backup); take a new full backup there, or copy into an empty repository',
      );
      continue;
    }
    const checkedRead = reads.last();
    if (checkedRead === undefined) throw new CairnError('INTERNAL', `${where}: a pass over its records ended without reading it whole`);
    ctx.onPlanned?.(plan.storedBytes);
    // A first copy finds the prefix empty and asks nothing; a rerun asks the
    // target about each object (a listing of it would be one entry per file).
    const prefix = backupPrefix(cluster, id);
    const fresh = !(await hasAny(to, prefix, signal));
    const present: Presence = fresh ? () => undefined : async (k) => (await to.stat(k, signal))?.size;
    const unsynced: string[] = [];
    const copyObject = async (x: OwnObject): Promise<void> => {
      if ('late' in x) {
        if (!dryRun) await checkMember(from, x.late, x.bundle, key, signal).then(checked);
        return;
      }
      if ((await copyOne(x, present)) !== 'copied' || dryRun) return;
      unsynced.push(x.key);
      if (unsynced.length >= SYNC_BATCH) await to.syncKeys?.(unsynced.splice(0), signal);
    };
    // Bundles whose members are spread wider than a pass holds wait for another pass.
    const done = new Set<string>();
    for (let pass = 0; ; pass++) {
      const deferred = new Set<string>();
      await forEachLimit(ownObjects(opened, { id, cluster, where, bundleSizes: plan.bundleSizes, singles: pass === 0, done, deferred, signal }), opts.jobs, copyObject, signal);
      const again = reads.last();
      if (again?.sha256 !== checkedRead.sha256 || again.bytes !== checkedRead.bytes) throw manifestChanged(where);
      if (deferred.size === 0) break;
    }
    if (!dryRun && unsynced.length > 0) await to.syncKeys?.(unsynced.splice(0), signal);
    await copyOne({ key: mKey, storedSize: checkedRead.bytes, check: { kind: 'manifest', read: checkedRead } }, () => undefined);
    dstBackups.add(id);
    result.backups.copied.push(id);
  }

  // 5. Dumps: their objects, then the manifest.
  const dstDumps = new Set((await listDumps(to, cluster, signal)).map((d) => `${d.dir}/${d.id}`));
  for (const ref of await listDumps(from, cluster, signal)) {
    const name = `${ref.dir}/${ref.id}`;
    if (dstDumps.has(name)) {
      result.dumps.present.push(name);
      continue;
    }
    const mKey = dumpManifestKey(cluster, ref.dir, ref.id);
    const read = await readJsonBytes<unknown>(from, mKey, signal);
    if (read === undefined) continue; // expired since it was listed
    let m: DumpManifest;
    try {
      m = checkDumpManifestAt(read.value, cluster, ref.dir, ref.id, `${quote(mKey)} in repository ${quote(from.url)}`);
    } catch (err) {
      if (!(err instanceof CairnError) || err.code !== 'FORMAT_INVALID') throw err;
      result.problems.push(`dump ${quote(name)} not copied: ${err.message}; run cairn-verify on the source`);
      continue;
    }
    const items: Item[] = m.objects.map((o) => ({ key: o.key, storedSize: o.storedSize, check: { kind: 'object', sha256: o.sha256, size: o.size } }));
    await copyGroup(items, { key: mKey, storedSize: read.bytes.length, check: { kind: 'read', bytes: read.bytes } }, dumpPrefix(cluster, ref.dir, ref.id));
    result.dumps.copied.push(name);
  }

  // 6. Verify and drill results: one object per run, never rewritten.
  for (const prefix of [verifyResultsPrefix(cluster), drillResultsPrefix(cluster)]) {
    const listed = await listSizes(to, prefix, signal);
    for (const item of await plainItems(prefix, /^\d{8}-\d{6}(?:-\d+)?\.json$/)) {
      if ((await copyOne(item, (k) => listed.get(k))) === 'copied') result.results.copied++;
      else result.results.present++;
    }
  }

  result.seconds = (Date.now() - t0) / 1000;
  return result;
}

async function hasAny(driver: StorageDriver, prefix: string, signal: AbortSignal): Promise<boolean> {
  for await (const _ of driver.list(prefix, signal)) return true;
  return false;
}

/** Where an object entry's bytes are: its key, or its bundle and offset. */
function objectId(e: ManifestFile): string {
  return e.bundle ? `${e.bundle.key}@${e.bundle.offset}` : e.key;
}

/** What must match for a reference to read the same bytes. */
function objectFacts(e: ManifestFile): string {
  return `${e.sha256}:${e.size}:${e.storedSize}`;
}

/** Keys written and not yet made durable, at most: a batch of syncs each time. */
const SYNC_BATCH = 1024;
/** Bundles whose members a pass gathers at once, and members held in all (then a bundle waits for the next pass). */
const OPEN_BUNDLES_MAX = 8;
const MEMBERS_HELD_MAX = 100_000;
const TAR_BLOCK = 512;

/** Whether the target has `key` (its size), or undefined. */
type Presence = (key: string) => number | undefined | Promise<number | undefined>;

/**
 * Reads of one manifest object, each hashed whole on the way: after a pass
 * over its records ends, last() is what that pass read, to be compared with
 * what the pass before read (the object must not change in between).
 */
function hashedReads(from: StorageDriver, key: string): { open: (signal?: AbortSignal) => Promise<Readable | undefined>; last: () => ManifestRead | undefined } {
  let last: ManifestRead | undefined;
  return {
    last: () => last,
    async open(signal) {
      let body: Readable;
      try {
        body = await from.read(key, signal);
      } catch (err) {
        if (err instanceof ObjectNotFoundError) return undefined;
        throw err;
      }
      return Readable.from((async function* () {
        const hash = createHash('sha256');
        let bytes = 0;
        for await (const chunk of body as AsyncIterable<Buffer>) {
          hash.update(chunk);
          bytes += chunk.length;
          yield chunk;
        }
        last = { sha256: hash.digest('hex'), bytes };
      })(), { objectMode: false });
    },
  };
}

function manifestChanged(where: string): CairnError {
  return new CairnError('FORMAT_INVALID', `backup manifest ${where} changed while it was being copied`, {
    hint: 'nothing was written under its name; run cairn-verify on the source, then cairn-copy again',
  });
}

/** A pass-through stage that fails at its end unless the bytes that went through hash and count as `read` did. */
function createManifestTap(read: ManifestRead, label: string): Transform {
  const hash = createHash('sha256');
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb: TransformCallback) {
      hash.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      cb(hash.digest('hex') === read.sha256 && bytes === read.bytes ? null : manifestChanged(label));
    },
  });
}

/**
 * The manifest rules (as restore keeps them) for records given one at a
 * time: throws FORMAT_INVALID at the first that makes the manifest unsafe,
 * the head's own at once. Mode findings are verify's to report: not kept.
 */
function createRulesCheck(head: ManifestHead, cluster: string, where: string): (f: ManifestFile) => void {
  const check = createManifestChecker(head, cluster);
  const refuse = () => {
    const unsafe = check.findings.find((f) => f.kind === 'refuse');
    if (unsafe) throw new CairnError('FORMAT_INVALID', `${where}: ${unsafe.message}`);
    check.findings.length = 0;
  };
  refuse();
  return (f) => {
    check.file(f);
    refuse();
  };
}

/** What the first pass over a backup's manifest found. */
interface BackupPlan {
  /** Backups its chain names that the target lacks. */
  missing: string[];
  /** The first object it borrows that the target's copy of that backup holds otherwise, described for people. */
  differs: string | undefined;
  /** Stored bytes of its own objects (its bundles whole). */
  storedBytes: number;
  /** Sizes of its bundles in the source (the manifest does not record them: tar headers and padding). */
  bundleSizes: Map<string, number>;
}

/**
 * The first pass over backup `opened`'s records: checked as restore checks
 * them, and each object it borrows from an older backup compared with the
 * target's copy of that backup, whose manifest is read beside it by path (a
 * backup borrows a file's objects from its parent's record of that path).
 * Throws FORMAT_INVALID when the manifest is unsafe or damaged. A backup the
 * target holds already may have been written there on its own (basebackup
 * to each repository): its objects then lie elsewhere, and an incr copied
 * over it would not restore.
 */
async function planBackupCopy(
  opened: OpenedManifest,
  o: { from: StorageDriver; to: StorageDriver; cluster: string; where: string; copied: ReadonlySet<string>; present: ReadonlySet<string>; signal: AbortSignal },
): Promise<BackupPlan> {
  const { head } = opened;
  const id = head.id;
  const checkRecord = createRulesCheck(head, o.cluster, o.where);
  const missing = head.references.filter((r) => !o.present.has(r));
  const theirs = new Map<string, { cursor: RecordCursor | undefined; firstUse?: string }>();
  let differs: string | undefined;
  let storedBytes = 0;
  let bundled = false;
  try {
    if (missing.length === 0) {
      for (const r of head.references) {
        if (r === id || o.copied.has(r) || theirs.has(r)) continue;
        const m = await openManifest(o.to, o.cluster, r, o.signal).catch(() => undefined);
        theirs.set(r, { cursor: m && createRecordCursor(recordsInPathOrder(m, o.signal)) });
      }
    }
    const borrowed = async (f: ManifestFile, e: ManifestFile): Promise<string | undefined> => {
      const what = `object ${quote(objectId(e))} of backup ${quote(e.ref)}`;
      const t = theirs.get(e.ref);
      if (t?.cursor === undefined) return what;
      t.firstUse ??= what;
      const rec = await t.cursor.at(f.path).catch(() => undefined);
      const same = rec !== undefined && objectEntries(rec).some((x) => x.ref === e.ref && objectId(x) === objectId(e) && objectFacts(x) === objectFacts(e));
      return same ? undefined : what;
    };
    for (const c of head.config ?? []) storedBytes += c.storedSize;
    for await (const f of recordsInPathOrder(opened, o.signal)) {
      checkRecord(f);
      for (const e of objectEntries(f)) {
        if (e.ref === id) {
          if (e.bundle) bundled = true;
          else storedBytes += e.storedSize;
        } else if (missing.length === 0 && differs === undefined && !o.copied.has(e.ref)) {
          differs = await borrowed(f, e);
        }
      }
    }
    // A target manifest is trusted once read to its end.
    for (const t of theirs.values()) {
      if (differs !== undefined || t.cursor === undefined || t.firstUse === undefined) continue;
      await t.cursor.finish().catch(() => {
        differs = t.firstUse;
      });
    }
  } finally {
    for (const t of theirs.values()) await t.cursor?.close().catch(() => {});
  }
  const bundleSizes = bundled ? await listSizes(o.from, bundlePrefix(o.cluster, id), o.signal) : new Map<string, number>();
  for (const size of bundleSizes.values()) storedBytes += size;
  return { missing, differs, storedBytes, bundleSizes };
}

/** A bundle member listed after its bundle was gathered whole and copied: checked in the source on its own. */
interface LateMember {
  late: BundleMember;
  bundle: string;
}

type OwnObject = Item | LateMember;

/**
 * The objects backup `opened` stored itself (its own files, page layers and
 * configuration files; those its entries borrow are the parents'), as its
 * records come: standalone objects at once, checked by decoding as they
 * copy; bundles once their members are gathered, checked member by member.
 * A bundle is whole when its members tile it (a tar member is a header
 * block, the bytes and their padding; two zero blocks end it), or at the end
 * of the pass. Members of bundles being gathered are all that is held: at
 * most OPEN_BUNDLES_MAX bundles and MEMBERS_HELD_MAX members; a bundle that
 * does not fit (a tar stream's backup has them in tar order, not path order)
 * goes into `deferred` for another pass. `done`: bundles already given.
 */
async function* ownObjects(
  opened: OpenedManifest,
  o: { id: string; cluster: string; where: string; bundleSizes: ReadonlyMap<string, number>; singles: boolean; done: Set<string>; deferred: Set<string>; signal: AbortSignal },
): AsyncGenerator<OwnObject> {
  const { id, done, deferred } = o;
  // This read is checked as the first was: a record is acted on only if it keeps the rules.
  const checkRecord = createRulesCheck(opened.head, o.cluster, o.where);
  const doneBefore = new Set(done);
  const open = new Map<string, { members: BundleMember[]; covered: number; size: number }>();
  let held = 0;
  const whole = (key: string): Item => {
    const g = open.get(key)!;
    open.delete(key);
    held -= g.members.length;
    done.add(key);
    g.members.sort((a, b) => a.offset - b.offset);
    return { key, storedSize: g.size, check: { kind: 'bundle', members: g.members } };
  };
  const entries = async function* (): AsyncGenerator<ManifestFile> {
    if (o.singles) for (const c of opened.head.config ?? []) yield c;
    for await (const f of recordsInPathOrder(opened, o.signal)) {
      checkRecord(f);
      yield f;
    }
  };
  for await (const f of entries()) {
    for (const e of objectEntries(f)) {
      if (e.ref !== id) continue;
      if (!e.bundle) {
        if (o.singles) yield { key: e.key, storedSize: e.storedSize, check: { kind: 'object', sha256: e.sha256, size: e.size, backupFile: true } };
        continue;
      }
      const bkey = e.bundle.key;
      const member: BundleMember = { name: e.key, offset: e.bundle.offset, storedSize: e.storedSize, sha256: e.sha256, size: e.size };
      if (doneBefore.has(bkey) || deferred.has(bkey)) continue;
      if (done.has(bkey)) {
        yield { late: member, bundle: bkey };
        continue;
      }
      let g = open.get(bkey);
      if (g === undefined) {
        if (open.size >= OPEN_BUNDLES_MAX || held >= MEMBERS_HELD_MAX) {
          deferred.add(bkey);
          continue;
        }
        const size = o.bundleSizes.get(bkey);
        if (size === undefined) throw new CairnError('OBJECT_MISSING', `object ${quote(bkey)} not found in repository`, { hint: 'the source repository is damaged: run cairn-verify there' });
        g = { members: [], covered: 2 * TAR_BLOCK, size };
        open.set(bkey, g);
      } else if (held >= MEMBERS_HELD_MAX && open.keys().next().value !== bkey) {
        // Too many held: the oldest bundle keeps gathering, this one waits for another pass.
        held -= g.members.length;
        open.delete(bkey);
        deferred.add(bkey);
        continue;
      }
      g.members.push(member);
      held++;
      g.covered += TAR_BLOCK + member.storedSize + ((TAR_BLOCK - (member.storedSize % TAR_BLOCK)) % TAR_BLOCK);
      if (g.covered >= g.size) yield whole(bkey);
    }
  }
  for (const bkey of [...open.keys()]) yield whole(bkey);
}

/** Checks one bundle member in the source: its span decoded, its SHA-256 and size. Returns its plaintext size. */
async function checkMember(from: StorageDriver, mb: BundleMember, bundle: string, key: EncryptionKey | undefined, signal: AbortSignal): Promise<number> {
  const span = await readRange(from, bundle, mb.offset, mb.storedSize, signal);
  await decodeWhole(span, mb.name, key, { sha256: mb.sha256, size: mb.size, label: `${quote(mb.name)} in bundle ${quote(bundle)} in repository ${quote(from.url)}` });
  return mb.size;
}

/**
 * Reads a bundle whole and checks every member the manifest names in it; with
 * `reencrypt`, each encrypted member is encrypted again in place (same size:
 * the tar headers and offsets stay) and checked under the target's key.
 */
async function readBundleChecked(from: StorageDriver, item: Item, key: EncryptionKey | undefined, reencrypt: Reencrypt | undefined, label: string, signal: AbortSignal): Promise<Buffer> {
  if (item.check.kind !== 'bundle') throw new Error('not a bundle');
  const st = await from.stat(item.key, signal);
  if (st !== undefined && st.size > BUNDLE_MAX) {
    throw new CairnError('FORMAT_INVALID', `bundle ${label} has ${st.size} bytes, more than a bundle holds`, { hint: 'run cairn-verify on the source repository' });
  }
  const buf = from.readSmall ? await from.readSmall(item.key, signal) : await buffer(await from.read(item.key, signal));
  for (const mb of item.check.members) {
    if (mb.offset + mb.storedSize > buf.length) {
      throw new CairnError('FORMAT_INVALID', `bundle ${label} has ${buf.length} bytes, too few for member ${quote(mb.name)}`, { hint: 'run cairn-verify on the source repository' });
    }
    const expect = { sha256: mb.sha256, size: mb.size, label: `${quote(mb.name)} in bundle ${label}` };
    const span = buf.subarray(mb.offset, mb.offset + mb.storedSize);
    if (reencrypt === undefined || !storedEncoding(mb.name).encrypted) {
      await decodeWhole(span, mb.name, key, expect);
      continue;
    }
    const again = await reencryptBuffer(reencrypt, span, expect.label);
    if (again.length !== span.length) throw new CairnError('INTERNAL', `re-encrypting ${expect.label} changed its size (${span.length} to ${again.length} bytes)`);
    await decodeWhole(again, mb.name, reencrypt.to, expect);
    again.copy(span);
  }
  return buf;
}

/** One line: what was copied, from where to where, how fast. */
export function formatSummary(r: CopyResult): string {
  const mb = r.copied.bytes / 1e6;
  const rate = r.seconds > 0 ? ` (${(mb / r.seconds).toFixed(1)} MB/s)` : '';
  const verb = r.dryRun ? 'would copy' : 'copied';
  return (
    `cairn-copy: ${verb} ${r.copied.objects} object(s), ${mb.toFixed(1)} MB in ${r.seconds.toFixed(1)} s${r.dryRun ? '' : rate}: ` +
    `${r.backups.copied.length} backup(s), ${r.dumps.copied.length} dump(s), ${r.wal.copied} WAL file(s), ${r.results.copied} result(s); ` +
    `${r.skipped.objects} object(s) already there${r.reencrypted ? '; encrypted again under the target\'s data key' : ''}${r.problems.length > 0 ? `; ${r.problems.length} problem(s)` : ''}\n`
  );
}
