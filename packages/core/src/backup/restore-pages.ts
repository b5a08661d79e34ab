// Restoring a page-level file (backup/pages.ts) in one pass: decide for
// every page which object holds its newest version (the base, or the last
// layer that wrote it since the file was last cut shorter), then read those
// objects front to back all at once, each once, and write the file in
// order, hashing it as it goes; its SHA-256 is checked against the manifest
// when the last page is written. A file that fails is removed, like any
// restored file.
//
// --delta: when the file on disk is the file as an earlier link of the chain
// left it (its SHA-256 is the base's or a layer's fileSha256), only the pages
// newer than that state are fetched and written over it.

import { createHash } from 'node:crypto';
import { chmodSync, chownSync, closeSync, constants, fstatSync, lstatSync, ftruncateSync, openSync, readSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CairnError } from '../cli/errors.js';
import type { EncryptionKey } from '../codec/index.js';
import { checksumMismatch, decodeFileStages, decodeWhole, PIECE_SIZE, zstdFrameStages } from '../codec/file-codec.js';
import { BLCKSZ } from '../pg/page-checksum.js';
import { readRange, type StorageDriver } from '../storage/driver.js';
import { openFileSink, type FileSink } from '../util/direct-write.js';
import { localWriteError } from '../util/local-file.js';
import { quote } from '../wal/quote.js';
import type { ManifestFile } from './manifest.js';
import { decodeBlocks, type StoredPiece } from './pages.js';
import { frameDecoder, RESTORE_WRITE_FLAGS } from './restore-file.js';

const NONE = 255;

export interface PagedTarget {
  /** Absolute path to write. */
  path: string;
  mode: number;
  mtime: number;
  /** Names the file in errors. */
  label: string;
  owner?: { uid: number; gid: number };
}

/**
 * For each page of the restored file, the object holding its newest version:
 * 0 the base, i the i-th layer. Throws FORMAT_INVALID when a page has none.
 */
export function pageSources(f: ManifestFile, label: string): { src: Uint8Array; order: Uint32Array[] } {
  const pc = f.pages!;
  if (pc.layers.length >= NONE) throw new CairnError('FORMAT_INVALID', `${label}: ${pc.layers.length} page layers, more than cairn writes`);
  const n = f.size / BLCKSZ;
  const src = new Uint8Array(n).fill(NONE);
  src.fill(0, 0, Math.min(n, pc.base.size / BLCKSZ));
  const order: Uint32Array[] = [];
  pc.layers.forEach((l, i) => {
    const ranges = decodeBlocks(l.blocks, label);
    const cut = l.fileSize / BLCKSZ;
    if (cut < n) src.fill(NONE, cut);
    const blocks = new Uint32Array(l.size / BLCKSZ);
    let k = 0;
    for (const [a, b] of ranges) {
      for (let x = a; x <= b; x++) {
        if (k >= blocks.length) throw new CairnError('FORMAT_INVALID', `${label}: a page layer lists more blocks than it holds`);
        blocks[k++] = x;
        if (x < n) src[x] = i + 1;
      }
    }
    order.push(blocks);
  });
  const hole = src.indexOf(NONE);
  if (hole >= 0) throw new CairnError('FORMAT_INVALID', `${label}: page ${hole} is in none of its page layers`, { hint: 'the manifest is damaged: restore another backup and run cairn-verify' });
  return { src, order };
}

/** Which link of the chain a file on disk is (0 the base, i layer i), by size and SHA-256; -1 for none. */
export function chainStateOf(f: ManifestFile, local: { size: number; sha256: string }): number {
  const pc = f.pages!;
  for (let i = pc.layers.length; i >= 1; i--) {
    const l = pc.layers[i - 1]!;
    if (l.fileSize === local.size && l.fileSha256 === local.sha256) return i;
  }
  return pc.base.size === local.size && pc.base.sha256 === local.sha256 ? 0 : -1;
}

/**
 * The plaintext of one stored object, in order, in chunks, a few frames
 * ahead at most. Small and bundled objects are read and checked whole (decodeWhole); big zstd objects frame
 * by frame, decoded with zstd-napi into one buffer reused for every frame
 * (the caller is done with a chunk before it asks for the next); other
 * encodings through the stream stages. A big object's own SHA-256 is not
 * checked: only the pages the file takes from it matter, and the file's
 * SHA-256 is, once it is whole.
 */
async function* plaintextOf(driver: StorageDriver, key: EncryptionKey | undefined, p: StoredPiece, label: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const what = `${label} (${quote(p.key)} of backup ${p.ref})`;
  // Whole in memory only when small both stored and decoded (pgbench pages compress 20:1).
  if (p.bundle || (p.storedSize <= PIECE_SIZE && p.size <= PIECE_SIZE)) {
    const stored = p.bundle ? await readRange(driver, p.bundle.key, p.bundle.offset, p.storedSize, signal) : driver.readSmall ? await driver.readSmall(p.key, signal) : await readRange(driver, p.key, 0, p.storedSize, signal);
    yield await decodeWhole(stored, p.key, key, { sha256: p.sha256, size: p.size, label: what });
    return;
  }
  const source = await driver.read(p.key, signal);
  const frames = zstdFrameStages(p.key, key, what);
  // Object mode: each zstd frame stays one chunk.
  const out = new PassThrough({ objectMode: true, highWaterMark: 2 });
  pipeline([source, ...(frames?.stages ?? decodeFileStages(p.key, key, what, 2)), out]).catch((err: unknown) => out.destroy(err as Error));
  const toPiece = frames ? frameDecoder(what) : undefined;
  const decode = toPiece && frames
    ? (frame: Buffer) => {
        const piece = toPiece(frame);
        frames.splitter.release(frame);
        return piece;
      }
    : (b: Buffer) => b;
  try {
    for await (const chunk of out as AsyncIterable<Buffer>) yield decode(chunk);
  } finally {
    out.destroy();
    source.destroy();
  }
}

/** Reads the pages of one object forward: take(k, n) gives pages k..k+n-1, skipping what lies before. */
class PageCursor {
  private chunk: Buffer = Buffer.alloc(0);
  /** Page index of chunk[0]. */
  private first = 0;
  private carry: Buffer | undefined;

  constructor(private readonly it: AsyncGenerator<Buffer>, private readonly label: string) {}

  private async more(): Promise<void> {
    const next = await this.it.next();
    if (next.done) throw new CairnError('FORMAT_INVALID', `${this.label}: a page object ends before the pages its block list names`, { hint: 'the repository is damaged: run cairn-verify and restore another backup' });
    this.first += Math.floor(this.chunk.length / BLCKSZ);
    let c = next.value;
    if (this.carry) {
      c = Buffer.concat([this.carry, c]);
      this.carry = undefined;
    }
    const whole = c.length - (c.length % BLCKSZ);
    if (whole < c.length) this.carry = Buffer.from(c.subarray(whole));
    this.chunk = c.subarray(0, whole);
  }

  /** Pages k.. of the object, as many as lie in one chunk (at most n, at least 1). */
  async take(k: number, n: number): Promise<Buffer> {
    while (k >= this.first + this.chunk.length / BLCKSZ) await this.more();
    const from = (k - this.first) * BLCKSZ;
    return this.chunk.subarray(from, Math.min(this.chunk.length, from + n * BLCKSZ));
  }

  async close(): Promise<void> {
    await this.it.return(undefined);
  }
}

const OUT_BUFFER = 1024 * 1024;

/**
 * Restores page-level file `f` to `t.path` in one sequential pass: every
 * page is taken from the object holding its newest version (each object
 * read once, front to back, all at the same time), hashed and written in
 * file order, so the file's SHA-256 is known when the last page is
 * written. `keep` (--delta): the chain state the file on disk is in
 * (chainStateOf); its pages up to that state are read and hashed where they
 * are, not fetched or written. Returns the bytes of pages written.
 */
export async function restorePagedFile(driver: StorageDriver, key: EncryptionKey | undefined, f: ManifestFile, t: PagedTarget, keep = -1, signal?: AbortSignal): Promise<number> {
  const { src, order } = pageSources(f, t.label);
  const pieces = [f.pages!.base, ...f.pages!.layers];
  const cursors = new Map<number, PageCursor>();
  const cursor = (i: number) => {
    let c = cursors.get(i);
    if (!c) cursors.set(i, (c = new PageCursor(plaintextOf(driver, key, pieces[i]!, t.label, signal), t.label)));
    return c;
  };
  /** Per layer, the index in its object of the next page it gives. */
  const next = new Array<number>(pieces.length).fill(0);
  const hash = createHash('sha256');
  let fd: number | undefined;
  let sink: FileSink | undefined;
  let written = 0;
  try {
    // Every page written in order: around the page cache where it can, as a
    // whole file is (util/direct-write.ts). With pages kept (--delta): in
    // place, read as well, the existing file not cut first.
    if (keep < 0) sink = openFileSink(t.path, RESTORE_WRITE_FLAGS, t.mode, true);
    else fd = openSync(t.path, (RESTORE_WRITE_FLAGS & ~constants.O_WRONLY & ~constants.O_TRUNC) | constants.O_RDWR, t.mode);
    const file = fd ?? -1;
    const out = Buffer.allocUnsafe(sink ? BLCKSZ : Math.min(OUT_BUFFER, Math.max(BLCKSZ, f.size)));
    let used = 0;
    let outAt = 0; // file offset of out[0]
    const flush = () => {
      for (let done = 0; done < used; ) done += writeSync(file, out, done, used - done, outAt + done);
      written += used;
      outAt += used;
      used = 0;
    };
    for (let b = 0; b < src.length; ) {
      const s = src[b]!;
      let run = 1;
      while (b + run < src.length && src[b + run] === s) run++;
      if (s <= keep) {
        // Already on disk as the chain left it: hash it where it is.
        flush();
        for (let left = run * BLCKSZ, at = b * BLCKSZ; left > 0; ) {
          const n = readSync(file, out, 0, Math.min(out.length, left), at);
          if (n <= 0) throw new CairnError('FORMAT_INVALID', `${t.label}: the file on disk is shorter than the state it was taken for`);
          hash.update(out.subarray(0, n));
          at += n;
          left -= n;
        }
        outAt = (b + run) * BLCKSZ;
        b += run;
        continue;
      }
      // Pages b..b+run-1 from object s: the base by block number, a layer by its list.
      let k: number;
      if (s === 0) k = b;
      else {
        const list = order[s - 1]!;
        while (list[next[s]!]! < b) next[s]!++;
        k = next[s]!;
      }
      for (let got = 0; got < run; ) {
        const pages = await cursor(s).take(k + got, run - got);
        got += pages.length / BLCKSZ;
        hash.update(pages);
        if (sink) {
          // Written (or staged) before the cursor is asked again: its buffer is reused.
          const wait = sink.write(pages);
          if (wait) await wait;
          written += pages.length;
          continue;
        }
        for (let at = 0; at < pages.length; ) {
          if (used === out.length) flush();
          const n = Math.min(out.length - used, pages.length - at);
          pages.copy(out, used, at, at + n);
          used += n;
          at += n;
        }
      }
      if (s > 0) next[s]! += run;
      b += run;
    }
    if (sink) {
      await sink.finish();
      sink = undefined;
    } else {
      flush();
      ftruncateSync(file, f.size);
    }
    const got = hash.digest('hex');
    if (got !== f.sha256) throw checksumMismatch({ sha256: f.sha256, size: f.size, label: t.label }, got, f.size);
    utimesSync(t.path, t.mtime, t.mtime);
    chmodSync(t.path, t.mode);
    if (t.owner) {
      try {
        chownSync(t.path, t.owner.uid, t.owner.gid);
      } catch {
        /* as restoreFile: ownership is best effort */
      }
    }
  } catch (err) {
    await sink?.close();
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
    try {
      unlinkSync(t.path);
    } catch {
      /* gone already */
    }
    throw localWriteError(err, t.path);
  } finally {
    if (fd !== undefined) closeSync(fd);
    await Promise.allSettled([...cursors.values()].map((c) => c.close()));
  }
  return written;
}

/**
 * The newest earlier state of `f`'s chain (0 the base, i layer i, never the
 * file itself) whose size and mtime the file at `path` has, or -1.
 */
export function stateBySizeAndMtime(f: ManifestFile, path: string): number {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st?.isFile()) return -1;
  const same = (size: number, mtime: number | undefined) => size === st.size && mtime !== undefined && Math.abs(st.mtimeMs / 1000 - mtime) < 0.002;
  const pc = f.pages!;
  for (let i = pc.layers.length - 1; i >= 1; i--) if (same(pc.layers[i - 1]!.fileSize, pc.layers[i - 1]!.mtime)) return i;
  return same(pc.base.size, pc.base.mtime) ? 0 : -1;
}

/** Size and SHA-256 of a regular file (never through a link), or undefined when there is none. */
export function hashLocalFile(path: string): { size: number; sha256: string } | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    if (!fstatSync(fd).isFile()) return undefined;
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(PIECE_SIZE);
    let size = 0;
    for (let n; (n = readSync(fd, buf, 0, buf.length, size)) > 0; size += n) hash.update(buf.subarray(0, n));
    return { size, sha256: hash.digest('hex') };
  } finally {
    closeSync(fd);
  }
}

/**
 * A page-level file restored, or with --delta (`delta`) kept when the file
 * on disk is already it (mode and mtime set) or laid over an earlier state
 * of its chain (chainStateOf).
 */
export async function restorePaged(driver: StorageDriver, key: EncryptionKey | undefined, f: ManifestFile, t: PagedTarget, delta: boolean, signal?: AbortSignal): Promise<{ written: number; kept: boolean }> {
  let keep = -1;
  // An earlier state of the chain as a restore leaves it (its size and
  // mtime): build on it in one pass. The file's SHA-256 at the end proves
  // the guess; a wrong one costs a plain restore of the file after it.
  const guess = delta ? stateBySizeAndMtime(f, t.path) : -1;
  if (guess >= 0) {
    try {
      return { written: await restorePagedFile(driver, key, f, t, guess, signal), kept: false };
    } catch (err) {
      if (!(err instanceof CairnError) || (err.code !== 'CHECKSUM_MISMATCH' && err.code !== 'FORMAT_INVALID')) throw err;
      return { written: await restorePagedFile(driver, key, f, t, -1, signal), kept: false };
    }
  }
  if (delta) {
    const local = hashLocalFile(t.path);
    if (local !== undefined) {
      if (local.sha256 === f.sha256 && local.size === f.size) {
        chmodSync(t.path, t.mode);
        utimesSync(t.path, t.mtime, t.mtime);
        return { written: 0, kept: true };
      }
      keep = chainStateOf(f, local);
    }
  }
  return { written: await restorePagedFile(driver, key, f, t, keep, signal), kept: false };
}

