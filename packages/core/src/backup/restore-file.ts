// Writing one backup file back to disk from its stored object, streaming and
// checked: the path for files bigger than one piece, shared by cairn-restore
// and its worker threads.

import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, chown, open, unlink, utimes } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { EncryptionKey } from '../codec/index.js';
import type { ObjectReader, StorageDriver } from '../storage/driver.js';
import { nativeZstd } from '../codec/zstd-native.js';
import { storedEncoding } from '../codec/codec.js';
import { createFramePool, createZstdFrameWalker, type FramePool } from '../codec/zstd-frames.js';
import { checksumMismatch, decodeFileInto, decodeFileStages, decodeZstdFrameSync, PIECE_SIZE, zstdFrameStages } from '../codec/file-codec.js';
import { localWriteError } from '../util/local-file.js';
import { openFileSink, type FileSink } from '../util/direct-write.js';

export interface FileToRestore {
  /** The stored object. */
  key: string;
  /** Absolute path to write. */
  path: string;
  sha256: string;
  size: number;
  mode: number;
  mtime: number;
  /** Names the file in errors. */
  label: string;
  owner?: { uid: number; gid: number };
}

/**
 * open(2) flags of every file a restore writes: a symbolic link in its place
 * is never followed (ELOOP), so a link left in the target cannot carry the
 * bytes out of the data directory (issue 11).
 */
export const RESTORE_WRITE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;

/** Mode, mtime and owner of a file written back, as the manifest has them. */
async function setAttributes(f: FileToRestore): Promise<void> {
  await chmod(f.path, f.mode);
  await utimes(f.path, f.mtime, f.mtime);
  if (f.owner) await chown(f.path, f.owner.uid, f.owner.gid).catch(() => {});
}

/**
 * Streams the object through its decoders (up to `window` frames decoded at
 * once) into `f.path`, checks size and SHA-256, then sets mode, mtime and
 * owner. A file that fails its check is removed: bytes that failed never stay
 * where PostgreSQL could read them.
 */
export async function restoreFile(driver: StorageDriver, key: EncryptionKey | undefined, f: FileToRestore, window: number, signal?: AbortSignal): Promise<void> {
  const source = await driver.read(f.key, signal);
  let sink;
  try {
    sink = (await open(f.path, RESTORE_WRITE_FLAGS, f.mode)).createWriteStream({ highWaterMark: 1024 * 1024 });
  } catch (err) {
    source.destroy();
    throw err;
  }
  try {
    await decodeFileInto(source, decodeFileStages(f.key, key, f.label, window), sink, { sha256: f.sha256, size: f.size, label: f.label }, signal);
  } catch (err) {
    await unlink(f.path).catch(() => {});
    throw localWriteError(err, f.path);
  }
  await setAttributes(f);
}

/**
 * Decodes one frame of a file at a time. With zstd-napi, into one buffer
 * reused for every frame (a piece is used before the next frame is decoded):
 * three times faster here than node:zlib, which allocates each piece anew
 * (codec/zstd-native.ts). A frame bigger than a piece, or damaged, goes
 * through node:zlib (which names the damage).
 */
export function frameDecoder(label: string): (frame: Buffer) => Buffer {
  const decode = frameDecoderInto(label);
  // node:zlib (no zstd-napi) decodes into buffers of its own.
  const into = nativeZstd() === undefined ? Buffer.alloc(0) : Buffer.allocUnsafe(PIECE_SIZE);
  return (frame) => decode(frame, into);
}

/** frameDecoder with the buffer given per frame: a piece is decoded into `into` where it fits, else into a new Buffer. */
function frameDecoderInto(label: string): (frame: Buffer, into: Buffer) => Buffer {
  const native = nativeZstd();
  if (native === undefined) return (frame) => decodeZstdFrameSync(frame, label);
  return (frame, into) => {
    const n = native.decodeFrameInto(frame, into);
    return n === undefined ? decodeZstdFrameSync(frame, label) : into.subarray(0, n);
  };
}

/**
 * The sink of a decoded file, hashed and counted on the way: write() throws
 * as soon as the file is longer than the manifest says (damaged, and not
 * worth writing on); check() after the last piece throws unless size and
 * SHA-256 are the manifest's. A piece decoded into the sink's room()
 * (`inRoom`) is committed there, not copied.
 */
function checkedFile(f: FileToRestore, out: FileSink): { write(piece: Buffer, inRoom?: boolean): Promise<void> | undefined; check(): void } {
  const hash = createHash('sha256');
  let size = 0;
  return {
    write(piece, inRoom) {
      hash.update(piece);
      size += piece.length;
      if (size > f.size) throw checksumMismatch(f, hash.digest('hex'), size);
      return inRoom ? out.commit(piece.length) : out.write(piece);
    },
    check() {
      const got = hash.digest('hex');
      if (got !== f.sha256 || size !== f.size) throw checksumMismatch(f, got, size);
    },
  };
}

/**
 * restoreFile for a thread that owns the file (a file worker): each zstd
 * frame is decoded, hashed and written with synchronous calls on this
 * thread, so a piece's bytes stay on one CPU from the decompressor to the
 * disk. Through the threadpool (decode on one thread, hash on this one,
 * write on a third) a 1 GiB relation segment took 4.5 s instead of 2.9 s on
 * a 2-core VM, most of it in the kernel's copy of bytes another CPU had just
 * written. The file goes around the page cache where it can (util/
 * direct-write.ts): the restore syncs everything before pg_control anyway,
 * and PostgreSQL reads each page once. The stored object is read into this
 * thread's own buffers where the driver allows it (restoreFromReader), else
 * (and decrypted) as a stream. Other encodings go through restoreFile.
 */
export async function restoreFileHere(driver: StorageDriver, key: EncryptionKey | undefined, f: FileToRestore, signal?: AbortSignal): Promise<void> {
  const enc = storedEncoding(f.key);
  if (enc.alg === 'zstd' && !enc.encrypted && driver.openReader && here === undefined) {
    // Taken before the first await, so a second call meanwhile streams.
    const mem = (here = memory ??= {
      reads: [Buffer.allocUnsafeSlow(READ_SIZE), Buffer.allocUnsafeSlow(READ_SIZE)],
      pool: createFramePool(),
      decoded: Buffer.allocUnsafeSlow(PIECE_SIZE),
    });
    let reader: ObjectReader;
    try {
      reader = await driver.openReader(f.key, signal);
    } catch (err) {
      here = undefined;
      throw err;
    }
    return restoreFromReader(mem, reader, f, signal);
  }
  const frames = zstdFrameStages(f.key, key, f.label);
  if (frames === undefined) return restoreFile(driver, key, f, 2, signal);
  const source = await driver.read(f.key, signal);
  const decode = frameDecoder(f.label);
  let out: FileSink | undefined;
  try {
    out = openFileSink(f.path, RESTORE_WRITE_FLAGS, f.mode, true);
    const file = checkedFile(f, out);
    const sink = new Writable({
      objectMode: true,
      write(frame: Buffer, _enc, cb) {
        try {
          const piece = decode(frame);
          frames.splitter.release(frame);
          const wait = file.write(piece);
          if (wait) wait.then(() => cb(), cb);
          else cb();
        } catch (err) {
          cb(err as Error);
        }
      },
    });
    await pipeline([source, ...frames.stages, sink], signal ? { signal } : {});
    await out.finish();
    out = undefined;
    file.check();
  } catch (err) {
    await out?.close();
    source.destroy();
    await unlink(f.path).catch(() => {});
    throw localWriteError(err, f.path);
  }
  await setAttributes(f);
}

/** Bytes per read of a stored object (restoreFromReader). */
const READ_SIZE = 1024 * 1024;
/** Where a spanning frame's buffer starts: a piece's compressed size, at most a piece and a few kB. */
const FRAME_HINT = PIECE_SIZE + 1024 * 1024;

/** This thread's memory for restoreFromReader, made at its first file and used for every later one. */
interface HereMemory {
  reads: [Buffer, Buffer];
  pool: FramePool;
  /** Where a piece is decoded when the file sink has no room() for it. */
  decoded: Buffer;
}
let memory: HereMemory | undefined;
/** `memory` while a file is being restored with it (one file at a time per thread; another call meanwhile streams). */
let here: HereMemory | undefined;

/**
 * restoreFileHere for a plain zstd object the driver can read into our own
 * memory (the fs driver): no fresh Buffer per read, per frame or per file.
 * The object is read in 1 MiB reads into two buffers, one read ahead while
 * the other's frames are decoded, hashed and written; frames that span reads
 * are gathered in the frame pool's buffers. A stream makes a fresh 1 MiB
 * Buffer per read, and V8 collects them only once 64 MB of them have
 * piled up: each of a restore's two worker threads then held a glibc arena
 * of 64 MB, all resident (random data set, 1.5 GB: peak RSS 323 MB).
 */
async function restoreFromReader(mem: HereMemory, reader: ObjectReader, f: FileToRestore, signal?: AbortSignal): Promise<void> {
  const decode = frameDecoderInto(f.label);
  const frames: Buffer[] = [];
  const walker = createZstdFrameWalker(f.label, (frame) => frames.push(frame), { pool: mem.pool, frameHint: FRAME_HINT });
  let out: FileSink | undefined;
  let next: Promise<number> | undefined;
  try {
    out = openFileSink(f.path, RESTORE_WRITE_FLAGS, f.mode, true);
    const file = checkedFile(f, out);
    let cur = 0;
    next = reader.read(mem.reads[0]);
    for (;;) {
      const n = await next;
      next = undefined;
      if (n === 0) break;
      walker.feed(mem.reads[cur]!.subarray(0, n));
      // The next read goes into the other buffer, whose frames are all done.
      cur ^= 1;
      next = reader.read(mem.reads[cur]!);
      for (const frame of frames) {
        // Straight into the file's staging buffer where it has room (a 1 GiB
        // segment's copy into it was 0.1 s of this thread's CPU).
        const room = out.room();
        const piece = decode(frame, room ?? mem.decoded);
        walker.release(frame);
        const wait = file.write(piece, room !== undefined && piece.buffer === room.buffer && piece.byteOffset === room.byteOffset);
        if (wait) await wait;
      }
      frames.length = 0;
    }
    walker.end();
    await out.finish();
    out = undefined;
    file.check();
  } catch (err) {
    await next?.catch(() => {});
    await out?.close();
    await unlink(f.path).catch(() => {});
    throw localWriteError(err, f.path);
  } finally {
    await reader.close();
    here = undefined;
  }
  await setAttributes(f);
}
