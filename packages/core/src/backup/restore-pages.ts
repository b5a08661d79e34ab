// Restoring a page-level file (backup/pages.ts) in one pass: decide for
// every page which object holds its newest version (the base, or the last
// layer that wrote it since the file was last cut shorter), read each object
// that holds a needed page once, write only those pages at their offsets,
// cut the file to its size, then read it back and check its SHA-256 against
// the manifest. A file that fails is removed, like any restored file.
//
// --delta: when the file on disk is the file as an earlier link of the chain
// left it (its SHA-256 is the base's or a layer's fileSha256), only the pages
// newer than that state are fetched and written over it.

import { createHash } from 'node:crypto';
import { closeSync, constants, fchmodSync, fchownSync, ftruncateSync, futimesSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import { CairnError } from '../cli/errors.js';
import type { EncryptionKey } from '../codec/index.js';
import { checksumMismatch, decodeFileInto, decodeFileStages, decodeWhole, PIECE_SIZE } from '../codec/file-codec.js';
import { BLCKSZ } from '../pg/page-checksum.js';
import { readRange, type StorageDriver } from '../storage/driver.js';
import { localWriteError } from '../util/local-file.js';
import { quote } from '../wal/quote.js';
import type { ManifestFile } from './manifest.js';
import { decodeBlocks, type StoredPiece } from './pages.js';
import { RESTORE_WRITE_FLAGS } from './restore-file.js';

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
 * Writes the pages of one object that the restored file takes from it:
 * page k of the object's plaintext goes to block `blockOf(k)` when
 * `wanted(block)`. Runs of neighbouring pages are one write.
 */
function pageWriter(fd: number, blockOf: (k: number) => number, wanted: (block: number) => boolean): { put(chunk: Buffer): void; end(): void } {
  let k = 0;
  let carry = Buffer.alloc(0);
  const pages = (buf: Buffer) => {
    const count = Math.floor(buf.length / BLCKSZ);
    for (let i = 0; i < count; ) {
      const block = blockOf(k + i);
      if (!wanted(block)) {
        i++;
        continue;
      }
      let j = i + 1;
      while (j < count && blockOf(k + j) === block + (j - i) && wanted(block + (j - i))) j++;
      const from = i * BLCKSZ;
      const len = (j - i) * BLCKSZ;
      for (let done = 0; done < len; ) done += writeSync(fd, buf, from + done, len - done, block * BLCKSZ + done);
      i = j;
    }
    k += count;
    return buf.subarray(count * BLCKSZ);
  };
  return {
    put(chunk) {
      let buf = chunk;
      if (carry.length > 0) {
        const need = BLCKSZ - carry.length;
        carry = Buffer.concat([carry, buf.subarray(0, need)]);
        buf = buf.subarray(need);
        if (carry.length < BLCKSZ) return;
        pages(carry);
        carry = Buffer.alloc(0);
      }
      const rest = pages(buf);
      if (rest.length > 0) carry = Buffer.from(rest);
    },
    end() {
      if (carry.length > 0) throw new CairnError('FORMAT_INVALID', 'a page object is not whole pages');
    },
  };
}

/** Reads one stored object and hands its plaintext to `put`, checked against its size and SHA-256. */
async function readPiece(driver: StorageDriver, key: EncryptionKey | undefined, p: StoredPiece, label: string, put: (chunk: Buffer) => void, signal?: AbortSignal): Promise<void> {
  const expect = { sha256: p.sha256, size: p.size, label: `${label} (${quote(p.key)} of backup ${p.ref})` };
  if (p.bundle || p.storedSize <= PIECE_SIZE) {
    const stored = p.bundle ? await readRange(driver, p.bundle.key, p.bundle.offset, p.storedSize, signal) : driver.readSmall ? await driver.readSmall(p.key, signal) : await readRange(driver, p.key, 0, p.storedSize, signal);
    put(await decodeWhole(stored, p.key, key, expect));
    return;
  }
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      try {
        put(chunk);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
  await decodeFileInto(await driver.read(p.key, signal), decodeFileStages(p.key, key, expect.label, 2), sink, expect, signal);
}

/**
 * Restores page-level file `f` to `t.path`. `keep` (--delta): the chain
 * state the file on disk is in (chainStateOf); its pages up to that state
 * stay. Returns the bytes of pages written.
 */
export async function restorePagedFile(driver: StorageDriver, key: EncryptionKey | undefined, f: ManifestFile, t: PagedTarget, keep = -1, signal?: AbortSignal): Promise<number> {
  const { src, order } = pageSources(f, t.label);
  const pieces = [f.pages!.base, ...f.pages!.layers];
  let fd: number | undefined;
  let written = 0;
  try {
    // Read back below, so opened for reading too; an existing file kept (--delta) is not cut first.
    const flags = (RESTORE_WRITE_FLAGS & ~constants.O_WRONLY & ~(keep >= 0 ? constants.O_TRUNC : 0)) | constants.O_RDWR;
    fd = openSync(t.path, flags, t.mode);
    const out = fd;
    for (let i = 0; i < pieces.length; i++) {
      if (i <= keep || !src.includes(i)) continue;
      const w = pageWriter(out, i === 0 ? (k) => k : (k) => order[i - 1]![k]!, (block) => block < src.length && src[block] === i);
      await readPiece(driver, key, pieces[i]!, t.label, (chunk) => w.put(chunk), signal);
      w.end();
    }
    for (const s of src) if (s > keep) written += BLCKSZ;
    ftruncateSync(out, f.size);
    // The whole file, as PostgreSQL will read it.
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.min(PIECE_SIZE, Math.max(f.size, 1)));
    let size = 0;
    for (let n; (n = readSync(out, buf, 0, buf.length, size)) > 0; size += n) hash.update(buf.subarray(0, n));
    const got = hash.digest('hex');
    if (got !== f.sha256 || size !== f.size) throw checksumMismatch({ sha256: f.sha256, size: f.size, label: t.label }, got, size);
    futimesSync(out, t.mtime, t.mtime);
    fchmodSync(out, t.mode);
    if (t.owner) {
      try {
        fchownSync(out, t.owner.uid, t.owner.gid);
      } catch {
        /* as restoreFile: ownership is best effort */
      }
    }
  } catch (err) {
    if (fd !== undefined) {
      closeSync(fd);
      fd = undefined;
      try {
        unlinkSync(t.path);
      } catch {
        /* gone already */
      }
    }
    throw localWriteError(err, t.path);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return written;
}
