// Storing the files of one backup, from either source (PGDATA or a tar
// stream): decide per file whether the parent already holds it, encode and
// store it, and collect the manifest entries. One code path for both sources
// keeps restore a single code path too.

import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CairnError } from '@cairn/core/cli/errors';
import type { Logger } from '@cairn/core/cli/log';
import { encodedExtension, type EncodeSpec } from '@cairn/core/codec/index';
import { encodeFile, encodeWhole, PIECE_SIZE, readFilePieces, rechunk, type Slots } from '@cairn/core/codec/file-codec';
import type { FileWorkers } from '@cairn/core/backup/file-worker';
import { BUNDLE_FILE_MAX, type Bundler, type BundleRef } from '@cairn/core/backup/bundle';
import { backupFileKey, backupPrefix, type BackupManifest, type ManifestDir, type ManifestFile } from '@cairn/core/backup/manifest';
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

export interface StoreOptions {
  driver: StorageDriver;
  cluster: string;
  id: string;
  spec: EncodeSpec;
  slots: Slots;
  parent: BackupManifest | undefined;
  /** Compare content (SHA-256) with the parent's, not just size and mtime. */
  checksumDelta: boolean;
  /** Verify data-page checksums with this start LSN (undefined: don't). */
  pageCheckLsn: bigint | undefined;
  log: Logger;
  signal: AbortSignal;
  onBytes?: (n: number) => void;
  /** Worker threads for big files read from PGDATA (local mode). */
  workers?: FileWorkers;
  /** Packs small files into bundles (local mode; @cairn/core/backup/bundle). */
  bundler?: Bundler;
  /** Page-level: main forks store the pages changed since the parent began at this LSN (@cairn/core/backup/pages). */
  pages?: { parentStartLsn: bigint };
}

/** Files from this size on go to a worker thread when there are workers. */
export const BIG_FILE = 32 * 1024 * 1024;

/** The bytes of a file, in order; may be called twice (checksum delta reads before storing). */
export type OpenFile = () => AsyncIterable<Buffer>;

export interface BackupStore {
  /** Decides reference or store for one file, and stores it. */
  addFile(info: FileInfo, open: OpenFile, opts?: { once?: boolean; source?: string }): Promise<ManifestFile>;
  addDir(dir: ManifestDir): void;
  files(): ManifestFile[];
  dirs(): ManifestDir[];
  /** Stored bytes so far. */
  storedSize(): number;
  /** Writes the last bundle and waits for all of them: the bundle keys (none without a bundler). */
  finishBundles(): Promise<string[]>;
}

export function createBackupStore(o: StoreOptions): BackupStore {
  const ext = encodedExtension(o.spec);
  const parentFiles = new Map((o.parent?.files ?? []).map((f) => [f.path, f]));
  // A file whose mtime is not clearly before the parent began may have
  // changed in the same second after the parent copied it: always copy it.
  const parentStart = o.parent ? Date.parse(o.parent.start.time) / 1000 : 0;
  const files: ManifestFile[] = [];
  const dirs: ManifestDir[] = [];
  let stored = 0;

  const reference = (info: FileInfo, p: ManifestFile): ManifestFile => {
    const f: ManifestFile = { path: info.path, size: info.size, mode: info.mode, mtime: info.mtime, sha256: p.sha256, ref: p.ref, key: p.key, storedSize: p.storedSize };
    if (p.bundle) f.bundle = p.bundle;
    if (p.badPages) f.badPages = p.badPages;
    if (info.ino !== undefined) f.ino = info.ino;
    if (p.pages) f.pages = p.pages;
    files.push(f);
    return f;
  };

  async function* prepend(first: Buffer[], rest: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    yield* first;
    yield* rest;
  }
  const memberPrefix = backupPrefix(o.cluster, o.id);
  /** Encodes a buffer and stores it, in a bundle when small enough (not `alone`). */
  const storeBuffer = async (key: string, buf: Buffer, mtime: number, alone = false): Promise<{ size: number; sha256: string; storedSize: number; bundle?: BundleRef }> => {
    const e = await encodeWhole(buf, o.spec);
    const result = { size: e.size, sha256: e.sha256, storedSize: e.stored.length };
    if (o.bundler && !alone && buf.length <= BUNDLE_FILE_MAX) {
      const bundle = await o.bundler.add(key.slice(memberPrefix.length), e.stored, mtime);
      if (bundle) return { ...result, bundle };
    }
    await o.driver.write(key, e.stored, { signal: o.signal, durable: false });
    return result;
  };

  /**
   * The small-file path: the whole file in memory, one buffer write. When the
   * file turns out to have grown past one piece, the pieces read so far come
   * back for the streaming path.
   */
  const storeSmall = async (key: string, pieces: AsyncGenerator<Buffer>, inspect: ((p: Buffer, off: number) => void) | undefined, mtime: number, alone: boolean) => {
    const first = await pieces.next();
    const buf = first.done ? Buffer.alloc(0) : first.value;
    const second = first.done ? first : await pieces.next();
    if (!second.done) return { leftover: [buf, second.value] };
    inspect?.(buf, 0);
    return { result: await storeBuffer(key, buf, mtime, alone) };
  };

  /** The manifest entry of a file this backup stored; bad pages are reported here. */
  const storedEntry = (info: FileInfo, key: string, r: { size: number; sha256: string; storedSize: number; bundle?: BundleRef }, bad: number[]): ManifestFile => {
    if (bad.length > 0) {
      o.log.warn(`page checksum failures in "${info.path}": block${bad.length > 1 ? 's' : ''} ${bad.slice(0, 10).join(', ')}${bad.length > 10 ? ', …' : ''}`);
    }
    stored += r.storedSize;
    const f: ManifestFile = { path: info.path, size: r.size, mode: info.mode, mtime: info.mtime, sha256: r.sha256, ref: o.id, key, storedSize: r.storedSize };
    if (r.bundle) f.bundle = r.bundle;
    if (bad.length > 0) f.badPages = bad;
    if (info.ino !== undefined) f.ino = info.ino;
    return f;
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
   * Undefined when the file must be stored whole after all.
   */
  const storePaged = async (info: FileInfo, p: ManifestFile, source: string, parentStartLsn: bigint): Promise<ManifestFile | undefined> => {
    const key = backupFileKey(o.cluster, o.id, info.path, ext);
    const firstBlock = firstBlockOf(info.path);
    const parentBlocks = p.size / BLCKSZ;
    let r: ChangedPages;
    // Page-level needs data checksums (pageLevelBlocker), so pageCheckLsn is this backup's start.
    const startLsn = o.pageCheckLsn ?? 0n;
    try {
      if (o.workers && info.size >= BIG_FILE) {
        const w = await o.workers.encode({
          kind: 'encode', path: source, key, size: info.size,
          pages: { parentStartLsn: parentStartLsn.toString(), startLsn: startLsn.toString(), parentBlocks, firstBlock },
        });
        if (w.pages === undefined) return undefined;
        r = w.pages;
        o.onBytes?.(r.fileSize);
      } else {
        r = await storeChangedPages(readFilePieces(source, info.size), {
          firstBlock, parentStartLsn, startLsn, parentBlocks, pieceSize: PIECE_SIZE,
          inspect: (piece) => o.onBytes?.(piece.length),
        }, {
          small: (buf) => storeBuffer(key, buf, info.mtime),
          stream: (pieces) => encodeFile(pieces, o.spec, o.slots, (body: Readable) => o.driver.write(key, body, { signal: o.signal, durable: false }), { signal: o.signal }),
        });
      }
    } catch (err) {
      if (err instanceof NotWholePages) return undefined;
      throw err;
    }
    const bad = r.badPages;
    if (r.layer === undefined) {
      if (r.fileSize === p.size && r.fileSha256 === p.sha256) return reference({ ...info, size: r.fileSize }, p);
      // No page changed, yet the bytes differ from the parent's: the rule's
      // premise does not hold for this file. Stored whole, never guessed.
      if (r.fileSize >= p.size) {
        o.log.debug(`"${info.path}": no page changed since the parent but its content did; stored whole`);
        return undefined;
      }
      // Only cut short (VACUUM truncated it): a layer without pages.
      r.layer = await storeBuffer(key, Buffer.alloc(0), info.mtime);
    }
    const l = r.layer;
    const layer: PageLayer = {
      ref: o.id, key, storedSize: l.storedSize, ...(l.bundle ? { bundle: l.bundle } : {}), size: l.size, sha256: l.sha256,
      blocks: encodeBlocks(r.blocks), fileSize: r.fileSize, fileSha256: r.fileSha256, mtime: info.mtime,
    };
    const f = storedEntry({ ...info, size: r.fileSize }, key, { size: r.fileSize, sha256: r.fileSha256, storedSize: l.storedSize, ...(l.bundle ? { bundle: l.bundle } : {}) }, bad);
    f.pages = { base: p.pages?.base ?? pieceOf(p), layers: [...(p.pages?.layers ?? []), layer] };
    files.push(f);
    return f;
  };

  /** `once`: the caller may remove the object again (stream mode), so it is stored alone. */
  const store = async (info: FileInfo, open: OpenFile, source?: string, once = false): Promise<ManifestFile> => {
    const key = backupFileKey(o.cluster, o.id, info.path, ext);
    const checkLsn = isChecksummedRelationFile(info.path) ? o.pageCheckLsn : undefined;
    if (o.workers && source !== undefined && info.size >= BIG_FILE) {
      const pageCheck = checkLsn !== undefined ? { firstBlock: firstBlockOf(info.path), startLsn: checkLsn.toString() } : undefined;
      const r = await o.workers.encode({ kind: 'encode', path: source, key, size: info.size, ...(pageCheck ? { pageCheck } : {}) });
      o.onBytes?.(r.size);
      return storedEntry(info, key, r, r.badPages);
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
    const r = small.result ?? await encodeFile(prepend(small.leftover ?? [], pieces), o.spec, o.slots, (body: Readable) => o.driver.write(key, body, { signal: o.signal, durable: false }), {
      signal: o.signal,
      ...(check ? { inspect: check.inspect } : {}),
    });
    return storedEntry(info, key, r, check?.bad ?? []);
  };

  return {
    async addFile(info, open, opts = {}) {
      const p = parentFiles.get(info.path);
      // Page-level: a main fork is read whole every time and its pages
      // decide, never its mtime; one the rule cannot cover is stored whole.
      if (o.pages && opts.source !== undefined && isMainForkFile(info.path)) {
        const paged = p && pageLevelOver(info, p) ? await storePaged(info, p, opts.source, o.pages.parentStartLsn) : undefined;
        if (paged) return paged;
        const f = await store(info, open, opts.source);
        files.push(f);
        return f;
      }
      const unchanged = p !== undefined && p.size === info.size && Math.floor(p.mtime) === Math.floor(info.mtime) && info.mtime < parentStart - 1;
      if (p && unchanged && !o.checksumDelta) {
        o.onBytes?.(info.size);
        return reference(info, p);
      }
      if (p && o.checksumDelta && p.size === info.size) {
        if (opts.once) {
          // A stream can be read only once: store it, and drop the copy when
          // the content turns out to be the parent's.
          const f = await store(info, open, undefined, true);
          if (f.sha256 === p.sha256) {
            await o.driver.remove(f.key, o.signal);
            stored -= f.storedSize;
            return reference(info, p);
          }
          files.push(f);
          return f;
        }
        const h = createHash('sha256');
        let n = 0;
        for await (const c of open()) {
          h.update(c);
          n += c.length;
        }
        if (n === p.size && h.digest('hex') === p.sha256) {
          o.onBytes?.(info.size);
          return reference({ ...info, size: n }, p);
        }
      }
      const f = await store(info, open, opts.source);
      files.push(f);
      return f;
    },
    addDir(dir) {
      dirs.push(dir);
    },
    files: () => files,
    dirs: () => dirs,
    storedSize: () => stored,
    finishBundles: async () => (o.bundler ? o.bundler.finish() : []),
  };
}

/** The chain of backups a new one references: the parent's references plus the parent. */
export function referencesOf(parent: BackupManifest | undefined): string[] {
  return parent ? [...parent.references, parent.id] : [];
}

export function noParentError(type: string): CairnError {
  return new CairnError('NOT_FOUND', `no backup to base a ${type} backup on`, { hint: 'take a full backup first' });
}
