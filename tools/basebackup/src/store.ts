// Storing the files of one backup, from either source (PGDATA or a tar
// stream): decide per file whether the parent already holds it, encode and
// store it, and collect the manifest entries. One code path for both sources
// keeps restore a single code path too. Every repository of the run is a
// target fed from the one read of each file (issue 18 item 1).

import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CairnError } from '@cairn/core/cli/errors';
import type { Logger } from '@cairn/core/cli/log';
import { encodedExtension, type EncodeSpec } from '@cairn/core/codec/index';
import { encodeFileMany, encodeWholeMany, PIECE_SIZE, readFilePieces, rechunk, SMALL_FILE, type Slots } from '@cairn/core/codec/file-codec';
import { deserializeError, type EncodeJob, type FileWorkers } from '@cairn/core/backup/file-worker';
import { BUNDLE_FILE_MAX, type Bundler, type BundleRef } from '@cairn/core/backup/bundle';
import { backupFileKey, backupPrefix, type ManifestDir, type ManifestFile } from '@cairn/core/backup/manifest';
import type { ManifestHead, OpenedManifest } from '@cairn/core/backup/manifest-stream';
import { BLCKSZ, createPageCheck, firstBlockOf, isChecksummedRelationFile } from '@cairn/core/pg/page-checksum';
import { encodeBlocks, isMainForkFile, MAX_LAYERS, NotWholePages, pieceOf, storeChangedPages, type ChangedPages, type PageLayer } from '@cairn/core/backup/pages';
import type { StorageDriver } from '@cairn/core/storage/driver';

export interface FileInfo {
  /** Relative to PGDATA, '/'-separated. */
  path: string;
  size: number;
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Inode number (local backups). */
  ino?: number;
}

/**
 * One repository a backup goes to (issue 18 item 1): its own storage, data
 * key, parent (its own chain), bundles and manifest entries. Every target is
 * fed from one read of each file.
 */
export interface StoreTarget {
  /** Its index in the file workers' list of repositories (WorkerSetup.repoUrls). */
  index: number;
  driver: StorageDriver;
  /** This repository's encoding: the run's compression, its own data key. */
  spec: EncodeSpec;
  /** This repository's parent; the caller made sure every target's parent is the same backup. */
  parent: ManifestHead | undefined;
  /** The parent's manifest, its records read as a stream (issue 19). */
  parentManifest?: OpenedManifest;
  /** Packs small files into bundles (local mode; @cairn/core/backup/bundle). */
  bundler?: Bundler;
  /** Aborts this repository's writes (its lease lost); the run's signal is in it. */
  signal: AbortSignal;
  /** Why this repository dropped out of the backup: from then on it gets nothing. */
  failed?: unknown;
}

/** The targets still going; throws the first one's failure when none is. */
export function liveTargets(targets: readonly StoreTarget[]): StoreTarget[] {
  const live = targets.filter((t) => t.failed === undefined);
  if (live.length === 0) throw targets[0]?.failed ?? new CairnError('INTERNAL', 'a backup to no repository');
  return live;
}

/** Drops `t` from the backup for `err`, said once on the log when there are others. */
export function dropTarget(targets: readonly StoreTarget[], t: StoreTarget, err: unknown, log: Logger): void {
  if (t.failed !== undefined) return;
  // A lost lease (or SIGTERM) says why better than the AbortError it caused.
  t.failed = (t.signal.aborted && t.signal.reason instanceof CairnError ? t.signal.reason : err) ?? new Error('failed');
  if (targets.length > 1) log.warn(`repository "${t.driver.url}" drops out of this backup: ${(t.failed as Error)?.message ?? String(t.failed)}`);
}

/** Runs `job` for each target still going, at once; a failure drops that target only. Throws when none is left. */
export async function eachTarget(targets: readonly StoreTarget[], log: Logger, job: (t: StoreTarget) => Promise<void>): Promise<void> {
  await Promise.all(liveTargets(targets).map((t) => job(t).catch((err: unknown) => dropTarget(targets, t, err, log))));
  liveTargets(targets);
}

export interface StoreOptions {
  targets: StoreTarget[];
  cluster: string;
  id: string;
  slots: Slots;
  /** Compare content (SHA-256) with the parent's, not just size and mtime. */
  checksumDelta: boolean;
  /** Verify data-page checksums with this start LSN (undefined: don't). */
  pageCheckLsn: bigint | undefined;
  log: Logger;
  signal: AbortSignal;
  onBytes?: (n: number) => void;
  /** Worker threads for big files read from PGDATA (local mode). */
  workers?: FileWorkers;
  /** Page-level: main forks store the pages changed since the parent began at this LSN (@cairn/core/backup/pages). */
  pages?: { parentStartLsn: bigint };
}

/** SHA-256 of no bytes. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** Page-level main forks from this size on are stored by a worker thread (other files: any bigger than SMALL_FILE). */
export const BIG_FILE = 32 * 1024 * 1024;

/** The bytes of a file, in order; may be called twice (checksum delta reads before storing). */
export type OpenFile = () => AsyncIterable<Buffer>;

/** Each target's parent record of one file (none: not in that parent). */
export type ParentRecords = ReadonlyMap<StoreTarget, ManifestFile>;

export interface BackupStore {
  /**
   * Decides reference or store for one file against its parent records, and
   * stores it in every repository still going: the file's manifest entry in
   * each repository that holds it. The caller keeps the entries (the store
   * keeps none: issue 19).
   */
  addFile(info: FileInfo, open: OpenFile, opts?: { once?: boolean; source?: string; parents?: ParentRecords }): Promise<Map<StoreTarget, ManifestFile>>;
  addDir(dir: ManifestDir): void;
  dirs(): ManifestDir[];
  /** Writes the last bundles and waits for all of them: per target, the bundle keys (none without a bundler). */
  finishBundles(): Promise<Map<StoreTarget, string[]>>;
  /** The targets still going; throws the first failure when none is. */
  live(): StoreTarget[];
  /** Drops `t` from the backup for `err` (said once, on the log). */
  fail(t: StoreTarget, err: unknown): void;
}

/** Where one repository put a file's stored bytes. */
interface Put {
  storedSize: number;
  bundle?: BundleRef;
}

/** What the file is, and where each repository put it. */
interface Stored {
  size: number;
  sha256: string;
  puts: Map<StoreTarget, Put>;
}

export function createBackupStore(o: StoreOptions): BackupStore {
  const first = o.targets[0];
  if (first === undefined) throw new CairnError('INTERNAL', 'a backup to no repository');
  const ext = encodedExtension(first.spec);
  // Decisions (reference, store whole, page-level) are made once, against
  // the first repository's parent: the caller checked that every target's
  // parent is the same backup, so each decides the same.
  // A file whose mtime is not clearly before the parent began may have
  // changed in the same second after the parent copied it: always copy it.
  const parentStart = first.parent ? Date.parse(first.parent.start.time) / 1000 : 0;
  // The entries of the files being added, by path, until addFile hands them over.
  const made = new Map<string, Map<StoreTarget, ManifestFile>>();
  const keep = (t: StoreTarget, f: ManifestFile) => made.get(f.path)!.set(t, f);
  const noParents: ParentRecords = new Map();
  const dirs: ManifestDir[] = [];

  const fail = (t: StoreTarget, err: unknown) => dropTarget(o.targets, t, err, o.log);
  const live = () => liveTargets(o.targets);
  const eachLive = (job: (t: StoreTarget) => Promise<void>) => eachTarget(o.targets, o.log, job);
  const settle = (targets: StoreTarget[], outcomes: readonly ({ ok: true; value: number } | { ok: false; error: unknown })[]): Map<StoreTarget, Put> => {
    const puts = new Map<StoreTarget, Put>();
    targets.forEach((t, i) => {
      const r = outcomes[i]!;
      if (r.ok) puts.set(t, { storedSize: r.value });
      else fail(t, r.error);
    });
    live();
    return puts;
  };

  const reference = (info: FileInfo, parents: ParentRecords): void => {
    for (const t of live()) {
      const p = parents.get(t)!;
      const f: ManifestFile = { path: info.path, size: info.size, mode: info.mode, mtime: info.mtime, sha256: p.sha256, ref: p.ref, key: p.key, storedSize: p.storedSize };
      if (p.bundle) f.bundle = p.bundle;
      if (p.badPages) f.badPages = p.badPages;
      if (info.ino !== undefined) f.ino = info.ino;
      if (p.pages) f.pages = p.pages;
      keep(t, f);
    }
  };

  async function* prepend(head: Buffer[], rest: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    yield* head;
    yield* rest;
  }
  const memberPrefix = backupPrefix(o.cluster, o.id);
  /**
   * Stores each target's encoded bytes of a whole file (`stored`, in the
   * order of `targets`; undefined: that target has none), in a bundle when
   * small enough (not `alone`).
   */
  const place = async (key: string, targets: StoreTarget[], stored: readonly (Buffer | undefined)[], size: number, mtime: number, alone: boolean): Promise<Map<StoreTarget, Put>> => {
    const puts = new Map<StoreTarget, Put>();
    await eachLive(async (t) => {
      const bytes = stored[targets.indexOf(t)];
      if (bytes === undefined) return;
      if (t.bundler && !alone && size <= BUNDLE_FILE_MAX) {
        const bundle = await t.bundler.add(key.slice(memberPrefix.length), bytes, mtime);
        if (bundle) {
          puts.set(t, { storedSize: bytes.length, bundle });
          return;
        }
      }
      await t.driver.write(key, bytes, { signal: t.signal, durable: false });
      puts.set(t, { storedSize: bytes.length });
    });
    return puts;
  };

  /** Encodes a buffer (once; encrypted per repository) and stores it in each, in a bundle when small enough (not `alone`). */
  const storeBuffer = async (key: string, buf: Buffer, mtime: number, alone = false): Promise<Stored> => {
    const targets = live();
    const e = await encodeWholeMany(buf, targets.map((t) => t.spec));
    return { size: e.size, sha256: e.sha256, puts: await place(key, targets, e.stored, buf.length, mtime, alone) };
  };

  /**
   * A small file read, checked and encoded in a worker (FileWorkers.small),
   * stored from here; undefined when it has grown past one piece since the
   * walk.
   */
  const storeSmallInWorker = async (key: string, info: FileInfo, source: string, pageCheck: EncodeJob['pageCheck']): Promise<{ r: Stored; bad: number[] } | undefined> => {
    const targets = live();
    const w = await o.workers!.small({ kind: 'small', path: source, size: info.size, targets: targets.map((t) => t.index), ...(pageCheck ? { pageCheck } : {}) });
    if (w.grown) return undefined;
    o.onBytes?.(w.size);
    w.stored.forEach((s, i) => {
      if (!s.ok) fail(targets[i]!, deserializeError(s.error));
    });
    live();
    const puts = await place(key, targets, w.stored.map((s) => (s.ok ? s.bytes : undefined)), w.size, info.mtime, false);
    return { r: { size: w.size, sha256: w.sha256, puts }, bad: w.badPages };
  };

  /** Streams pieces to every repository still going: read and compressed once, backpressure to the slowest. */
  const storeStream = async (key: string, pieces: AsyncIterable<Buffer>, inspect?: (p: Buffer, off: number) => void): Promise<Stored> => {
    const targets = live();
    const r = await encodeFileMany(pieces, targets.map((t) => t.spec), o.slots, targets.map((t) => (body: Readable) => t.driver.write(key, body, { signal: t.signal, durable: false })), {
      signal: o.signal,
      ...(inspect ? { inspect } : {}),
    });
    return { size: r.size, sha256: r.sha256, puts: settle(targets, r.stored) };
  };

  /** A big file in a worker thread, written to every repository still going. */
  const storeInWorker = async (job: Omit<EncodeJob, 'targets'>) => {
    const targets = live();
    const r = await o.workers!.encode({ ...job, targets: targets.map((t) => t.index) });
    const puts = settle(targets, r.stored.map((x) => (x.ok ? x : { ok: false as const, error: deserializeError(x.error) })));
    return { r, puts };
  };

  /**
   * The small-file path: the whole file in memory, one buffer write. When the
   * file turns out to have grown past one piece, the pieces read so far come
   * back for the streaming path.
   */
  const storeSmall = async (key: string, pieces: AsyncGenerator<Buffer>, inspect: ((p: Buffer, off: number) => void) | undefined, mtime: number, alone: boolean) => {
    const one = await pieces.next();
    const buf = one.done ? Buffer.alloc(0) : one.value;
    const second = one.done ? one : await pieces.next();
    if (!second.done) return { leftover: [buf, second.value] };
    inspect?.(buf, 0);
    return { result: await storeBuffer(key, buf, mtime, alone) };
  };

  /** The manifest entries of a file this backup stored, one per repository that holds it; bad pages are reported here. */
  const storedEntries = (info: FileInfo, key: string, r: Stored, bad: number[], extra?: (t: StoreTarget, f: ManifestFile, put: Put) => void): void => {
    if (bad.length > 0) {
      o.log.warn(`page checksum failures in "${info.path}": block${bad.length > 1 ? 's' : ''} ${bad.slice(0, 10).join(', ')}${bad.length > 10 ? ', …' : ''}`);
    }
    for (const t of live()) {
      const put = r.puts.get(t);
      if (put === undefined) continue;
      const f: ManifestFile = { path: info.path, size: r.size, mode: info.mode, mtime: info.mtime, sha256: r.sha256, ref: o.id, key, storedSize: put.storedSize };
      if (put.bundle) f.bundle = put.bundle;
      if (bad.length > 0) f.badPages = bad;
      if (info.ino !== undefined) f.ino = info.ino;
      extra?.(t, f, put);
      keep(t, f);
    }
  };

  /**
   * Whether a main fork may be stored page-level over the parent's copy `p`
   * (@cairn/core/backup/pages says why each condition): the same inode,
   * whole pages, and a chain of layers that is not yet too long or, in sum,
   * bigger than the file.
   */
  const pageLevelOver = (info: FileInfo, p: ManifestFile): boolean => {
    if (info.ino === undefined || p.ino !== info.ino) return false;
    if (info.size === 0 || info.size % BLCKSZ !== 0 || p.size % BLCKSZ !== 0) return false;
    const layers = p.pages?.layers ?? [];
    return layers.length < MAX_LAYERS && layers.reduce((s, l) => s + l.size, 0) < Math.max(info.size, p.size);
  };

  /**
   * A main fork stored page-level: the pages changed since the parent began
   * as one layer over the parent's chain; nothing when none changed.
   * False when the file must be stored whole after all.
   */
  const storePaged = async (info: FileInfo, p: ManifestFile, parents: ParentRecords, source: string, parentStartLsn: bigint): Promise<boolean> => {
    const key = backupFileKey(o.cluster, o.id, info.path, ext);
    const firstBlock = firstBlockOf(info.path);
    const parentBlocks = p.size / BLCKSZ;
    let r: ChangedPages;
    let puts = new Map<StoreTarget, Put>();
    // Page-level needs data checksums (pageLevelBlocker), so pageCheckLsn is this backup's start.
    const startLsn = o.pageCheckLsn ?? 0n;
    try {
      if (o.workers && info.size >= BIG_FILE) {
        const w = await storeInWorker({
          kind: 'encode', path: source, key, size: info.size,
          pages: { parentStartLsn: parentStartLsn.toString(), startLsn: startLsn.toString(), parentBlocks, firstBlock },
        });
        if (w.r.pages === undefined) return false;
        r = w.r.pages;
        puts = w.puts;
        o.onBytes?.(r.fileSize);
      } else {
        r = await storeChangedPages(readFilePieces(source, info.size), {
          firstBlock, parentStartLsn, startLsn, parentBlocks, pieceSize: PIECE_SIZE,
          inspect: (piece) => o.onBytes?.(piece.length),
        }, {
          small: async (buf) => {
            const s = await storeBuffer(key, buf, info.mtime);
            puts = s.puts;
            return { size: s.size, sha256: s.sha256, storedSize: 0 };
          },
          stream: async (pieces) => {
            const s = await storeStream(key, pieces);
            puts = s.puts;
            return { size: s.size, sha256: s.sha256, storedSize: 0 };
          },
        });
      }
    } catch (err) {
      if (err instanceof NotWholePages) return false;
      throw err;
    }
    const bad = r.badPages;
    if (r.layer === undefined) {
      if (r.fileSize === p.size && r.fileSha256 === p.sha256) {
        reference({ ...info, size: r.fileSize }, parents);
        return true;
      }
      // No page changed, yet the bytes differ from the parent's: the rule's
      // premise does not hold for this file. Stored whole, never guessed.
      if (r.fileSize >= p.size) {
        o.log.debug(`"${info.path}": no page changed since the parent but its content did; stored whole`);
        return false;
      }
      // Only cut short (VACUUM truncated it): a layer without pages.
      const empty = await storeBuffer(key, Buffer.alloc(0), info.mtime);
      puts = empty.puts;
      r.layer = { size: empty.size, sha256: empty.sha256, storedSize: 0 };
    }
    const l = r.layer;
    storedEntries({ ...info, size: r.fileSize }, key, { size: r.fileSize, sha256: r.fileSha256, puts }, bad, (t, f, put) => {
      const tp = parents.get(t)!;
      const layer: PageLayer = {
        ref: o.id, key, storedSize: put.storedSize, ...(put.bundle ? { bundle: put.bundle } : {}), size: l.size, sha256: l.sha256,
        blocks: encodeBlocks(r.blocks), fileSize: r.fileSize, fileSha256: r.fileSha256, mtime: info.mtime,
      };
      f.pages = { base: tp.pages?.base ?? pieceOf(tp), layers: [...(tp.pages?.layers ?? []), layer] };
    });
    return true;
  };

  /** `once`: the caller may remove the object again (stream mode), so it is stored alone. */
  const store = async (info: FileInfo, open: OpenFile, source?: string, once = false): Promise<Stored> => {
    const key = backupFileKey(o.cluster, o.id, info.path, ext);
    const checkLsn = isChecksummedRelationFile(info.path) ? o.pageCheckLsn : undefined;
    // Every file bigger than a small one is read, hashed and stored by a
    // worker, from its own reused pieces: on this thread, eight catalog
    // files of a few MB at once churned ~100 MB of buffers that waited for
    // the collector (issue 19).
    if (o.workers && source !== undefined) {
      const pageCheck = checkLsn !== undefined ? { firstBlock: firstBlockOf(info.path), startLsn: checkLsn.toString() } : undefined;
      if (info.size > SMALL_FILE) {
        const w = await storeInWorker({ kind: 'encode', path: source, key, size: info.size, ...(pageCheck ? { pageCheck } : {}) });
        o.onBytes?.(w.r.size);
        const r = { size: w.r.size, sha256: w.r.sha256, puts: w.puts };
        storedEntries(info, key, r, w.r.badPages);
        return r;
      }
      if (!once) {
        const w = await storeSmallInWorker(key, info, source, pageCheck);
        if (w) {
          storedEntries(info, key, w.r, w.bad);
          return w.r;
        }
      }
    }
    const check = checkLsn !== undefined ? createPageCheck(firstBlockOf(info.path), checkLsn) : undefined;
    const counted = async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        o.onBytes?.(c.length);
        yield c;
      }
    };
    const pieces = rechunk(counted(open()), undefined, info.size);
    const small = info.size <= PIECE_SIZE ? await storeSmall(key, pieces, check?.inspect, info.mtime, once) : { leftover: [] };
    const r = small.result ?? await storeStream(key, prepend(small.leftover ?? [], pieces), check?.inspect);
    storedEntries(info, key, r, check?.bad ?? []);
    return r;
  };

  const decide = async (info: FileInfo, open: OpenFile, opts: { once?: boolean; source?: string }, parents: ParentRecords): Promise<void> => {
    const p = parents.get(first);
    // Page-level: a main fork is read whole every time and its pages
    // decide, never its mtime; one the rule cannot cover is stored whole.
    if (o.pages && opts.source !== undefined && isMainForkFile(info.path)) {
      // Empty then and now (a table never written, most TOAST tables): nothing to read or store.
      if (p && info.size === 0 && p.size === 0 && p.pages === undefined && p.sha256 === EMPTY_SHA256) {
        reference(info, parents);
        return;
      }
      if (p && pageLevelOver(info, p) && (await storePaged(info, p, parents, opts.source, o.pages.parentStartLsn))) return;
      await store(info, open, opts.source);
      return;
    }
    const unchanged = p !== undefined && p.size === info.size && Math.floor(p.mtime) === Math.floor(info.mtime) && info.mtime < parentStart - 1;
    if (p && unchanged && !o.checksumDelta) {
      o.onBytes?.(info.size);
      reference(info, parents);
      return;
    }
    if (p && o.checksumDelta && p.size === info.size) {
      if (opts.once) {
        // A stream can be read only once: store it, and drop the copies
        // when the content turns out to be the parent's (the reference
        // replaces the entries made).
        const r = await store(info, open, undefined, true);
        if (r.sha256 === p.sha256) {
          await eachLive(async (t) => {
            if (r.puts.has(t)) await t.driver.remove(backupFileKey(o.cluster, o.id, info.path, ext), t.signal);
          });
          reference(info, parents);
        }
        return;
      }
      const h = createHash('sha256');
      let n = 0;
      for await (const c of open()) {
        h.update(c);
        n += c.length;
      }
      if (n === p.size && h.digest('hex') === p.sha256) {
        o.onBytes?.(info.size);
        reference({ ...info, size: n }, parents);
        return;
      }
    }
    await store(info, open, opts.source);
  };

  return {
    async addFile(info, open, opts = {}) {
      const entries = new Map<StoreTarget, ManifestFile>();
      made.set(info.path, entries);
      try {
        await decide(info, open, opts, opts.parents ?? noParents);
      } finally {
        made.delete(info.path);
      }
      // Only the repositories still going hold the file.
      for (const t of entries.keys()) if (t.failed !== undefined) entries.delete(t);
      return entries;
    },
    addDir(dir) {
      dirs.push(dir);
    },
    dirs: () => dirs,
    async finishBundles() {
      const out = new Map<StoreTarget, string[]>();
      await eachLive(async (t) => {
        out.set(t, t.bundler ? await t.bundler.finish() : []);
      });
      return out;
    },
    live,
    fail,
  };
}

/** The chain of backups a new one references: the parent's references plus the parent. */
export function referencesOf(parent: ManifestHead | undefined): string[] {
  return parent ? [...parent.references, parent.id] : [];
}

export function noParentError(type: string): CairnError {
  return new CairnError('NOT_FOUND', `no backup to base a ${type} backup on`, { hint: 'take a full backup first' });
}
