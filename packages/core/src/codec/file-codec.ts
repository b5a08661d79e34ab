// Encoding and decoding backup files in parallel. A file is cut into 4 MiB
// pieces; each piece becomes its own zstd frame (or gzip member), compressed
// on the libuv threadpool, so one 1 GiB relation segment uses every core
// instead of serialising the backup (pgBackRest parallelises per file only).
// The concatenation is a plain .zst/.gz stream: `zstd -d` restores the file.
// Order of stages as everywhere (docs/style.md §Streams): plaintext → sha256 → compress →
// encrypt → count → sink, and the reverse on read with the hash re-checked.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { CairnError } from '../cli/errors.js';
import { createCountStage, createDecompressStages, createEncryptStage, decryptStages, storedEncoding, zstdParams, type EncodeSpec, type EncryptionKey } from './index.js';
import { checksumMismatch as mismatch, corruptDataFrom } from './errors.js';
import { createZstdFrameSplitter, type FrameSplitter } from './zstd-frames.js';
import { nativeZstd } from './zstd-native.js';
import { fanOut, type Outcome } from '../util/fan-out.js';
import { garbageMeter } from '../util/garbage.js';

// This thread's compressed pieces: fresh Buffers, dropped once written (util/garbage.ts).
const noteCompressed = garbageMeter();

/** Input bytes per frame. */
export const PIECE_SIZE = 4 * 1024 * 1024;

/** zlib's output buffer size for one-shot calls: a piece rarely needs more than one. */
const OUT_CHUNK = 1024 * 1024;

const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);
const gzip = promisify(zlib.gzip);

/**
 * A counting semaphore shared by every file of a backup: it bounds the pieces
 * in flight (being compressed or waiting to be written), hence memory.
 */
export interface Slots {
  acquire(): Promise<void>;
  release(): void;
}

export function createSlots(n: number): Slots {
  let free = n;
  const waiting: (() => void)[] = [];
  return {
    acquire() {
      if (free > 0) {
        free--;
        return Promise.resolve();
      }
      return new Promise<void>((r) => waiting.push(r));
    },
    release() {
      const next = waiting.shift();
      if (next) next();
      else free++;
    },
  };
}

function compressPiece(piece: Buffer, spec: EncodeSpec): Promise<Buffer> {
  switch (spec.compress.alg) {
    case 'zstd':
      return zstdCompress(piece, {
        // One output buffer for the whole piece: zlib's default 16 KiB pieces
        // cost a main-thread callback each.
        chunkSize: OUT_CHUNK,
        params: zstdParams(spec.compress.level),
      });
    case 'gzip':
      return gzip(piece, { level: spec.compress.level, chunkSize: OUT_CHUNK });
    default:
      return Promise.resolve(piece);
  }
}

/** Below this, compressing on the main thread costs less than a trip to the threadpool. */
const SYNC_LIMIT = 256 * 1024;

function compressWhole(buf: Buffer, spec: EncodeSpec): Promise<Buffer> | Buffer {
  if (buf.length > SYNC_LIMIT) return compressPiece(buf, spec);
  switch (spec.compress.alg) {
    case 'zstd': {
      // One reused context (zstd-native.ts): node:zlib builds a new one per
      // call, 1.5 s of a 20,000-table backup's 22 s (issue 19); and its
      // output is a view of a larger chunk, where this is the frame alone.
      const native = nativeZstd();
      if (native) return native.encodeFrame(buf, spec.compress.level);
      return zlib.zstdCompressSync(buf, { params: zstdParams(spec.compress.level) });
    }
    case 'gzip':
      return zlib.gzipSync(buf, { level: spec.compress.level });
    default:
      return buf;
  }
}

/**
 * A file of at most one piece, encoded in memory: the same bytes encodeFile
 * would store, without a stream per file (most files of a cluster are a few
 * kB, and per-file stream machinery dominated their cost).
 */
export async function encodeWhole(buf: Buffer, spec: EncodeSpec): Promise<{ stored: Buffer; size: number; sha256: string }> {
  const e = await encodeWholeMany(buf, [spec]);
  return { stored: e.stored[0]!, size: e.size, sha256: e.sha256 };
}

/** encodeWhole for several specs that differ only in their keys: hashed and compressed once, encrypted for each. */
export async function encodeWholeMany(buf: Buffer, specs: readonly EncodeSpec[]): Promise<{ stored: Buffer[]; size: number; sha256: string }> {
  const sha256 = createHash('sha256').update(buf).digest('hex');
  const compressed = await compressWhole(buf, sameCompression(specs));
  const stored = await Promise.all(specs.map(async (spec) => {
    if (spec.key === undefined) return compressed;
    const parts: Buffer[] = [];
    const enc = createEncryptStage(spec.key);
    enc.on('data', (c: Buffer) => parts.push(c));
    await pipeline(Readable.from(compressed.length > 0 ? [compressed] : []), enc, new Writable({ write(_c, _e, cb) { cb(); } }));
    return Buffer.concat(parts);
  }));
  return { stored, size: buf.length, sha256 };
}

/**
 * Reused piece buffers. Every page a process touches for the first time
 * costs a fault (in a VM, a costly one: measured here, writing 512 MB from
 * fresh 4 MiB buffers took 2.6 s of system time, from one reused buffer
 * 0.15 s), so readers take pieces from here and encodeFile gives them back
 * once compressed.
 */
export interface PiecePool {
  take(): Buffer;
  give(piece: Buffer): void;
}

export function createPiecePool(max = 8): PiecePool {
  const free: Buffer[] = [];
  return {
    take: () => free.pop() ?? Buffer.allocUnsafe(PIECE_SIZE),
    give(piece) {
      if (free.length >= max || piece.byteOffset !== 0 || piece.buffer.byteLength !== PIECE_SIZE) return;
      free.push(Buffer.from(piece.buffer, 0, PIECE_SIZE));
    },
  };
}

/** Files up to this size are read in one synchronous call (see readFilePieces). */
export const SMALL_FILE = 1024 * 1024;

/**
 * A file's bytes in pieces of at most PIECE_SIZE, to EOF (a file may grow or
 * shrink while a backup reads it). `size` is what stat said: a small file is
 * one synchronous read (for the thousand small files of a cluster, the
 * promise API's trips through the threadpool cost more than the reads), and
 * buffers are sized to what is left. Whole pieces come from `pool` if given.
 */
export async function* readFilePieces(path: string, size: number, pool?: PiecePool): AsyncGenerator<Buffer> {
  if (size <= SMALL_FILE) {
    yield readFileSync(path);
    return;
  }
  const fh = await open(path, 'r');
  try {
    let left = size;
    for (;;) {
      const want = left > 0 ? Math.min(PIECE_SIZE, left) : PIECE_SIZE;
      const buf = want === PIECE_SIZE && pool ? pool.take() : Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, null);
      if (bytesRead === 0) break;
      left -= bytesRead;
      yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
      if (bytesRead < want) break;
    }
  } finally {
    await fh.close();
  }
}

export interface EncodedFile {
  /** Plaintext bytes and their SHA-256. */
  size: number;
  sha256: string;
  /** Bytes handed to the sink (stored size). */
  storedSize: number;
}

/**
 * Encodes `pieces` (plaintext, each at most PIECE_SIZE; the caller re-chunks)
 * and hands the stored bytes to `write` as one stream. `inspect` sees every
 * plaintext piece in order on the main thread (page checksums). Resolves
 * when `write` has stored the whole object.
 */
export async function encodeFile(
  pieces: AsyncIterable<Buffer>,
  spec: EncodeSpec,
  slots: Slots,
  write: (body: Readable) => Promise<void>,
  opts: EncodeFileOptions = {},
): Promise<EncodedFile> {
  const r = await encodeFileMany(pieces, [spec], slots, [write], opts);
  const one = r.stored[0]!;
  if (!one.ok) throw one.error;
  return { size: r.size, sha256: r.sha256, storedSize: one.value };
}

export interface EncodeFileOptions {
  inspect?: (piece: Buffer, offset: number) => void;
  signal?: AbortSignal;
  pool?: PiecePool;
  /** Compresses a piece on this thread instead of the threadpool (a worker that owns the file: codec/zstd-native.ts). */
  compressHere?: (piece: Buffer) => Buffer;
}

/**
 * encodeFile to several sinks at once (the repositories of a backup, issue
 * 18 item 1): the file is read, hashed and compressed once, then each sink
 * gets it encrypted under its own spec's key (the compression of `specs`
 * must be the same). A sink that fails drops out and the others go on: the
 * stored size or the error of each, in order. Throws only when the input
 * fails (every sink then fails with it).
 */
export async function encodeFileMany(
  pieces: AsyncIterable<Buffer>,
  specs: readonly EncodeSpec[],
  slots: Slots,
  writes: readonly ((body: Readable) => Promise<void>)[],
  opts: EncodeFileOptions = {},
): Promise<{ size: number; sha256: string; stored: Outcome<number>[] }> {
  const spec = sameCompression(specs);
  const hash = createHash('sha256');
  let size = 0;
  // Compressed pieces in file order; each holds a slot until written out.
  const queue: Promise<Buffer>[] = [];
  let wake: (() => void) | undefined;
  let inputDone = false;
  let inputError: unknown;
  // Once no sink takes more (every write failed), reading stops: without
  // this the reader waited for a slot that nobody would free, for ever.
  let stopReading!: () => void;
  const stopped = new Promise<false>((r) => (stopReading = () => r(false)));
  const acquire = async (): Promise<boolean> => {
    const a = slots.acquire();
    if (await Promise.race([a.then(() => true), stopped])) return true;
    // Given up: the slot, once it comes, goes back.
    a.then(() => slots.release(), () => {});
    return false;
  };

  const feed = (async () => {
    try {
      for await (const piece of pieces) {
        if (piece.length === 0) continue;
        opts.inspect?.(piece, size);
        hash.update(piece);
        size += piece.length;
        if (!(await acquire())) break;
        const p = opts.compressHere ? Promise.resolve(opts.compressHere(piece)) : compressPiece(piece, spec);
        p.catch(() => {}); // observed by the reader below
        // Compressed, the piece is free again (uncompressed, it is the output).
        if (spec.compress.alg !== 'none') {
          p.then((c) => {
            opts.pool?.give(piece);
            noteCompressed(c.length);
          }, () => {});
        }
        queue.push(p);
        wake?.();
      }
      if (size === 0 && (await acquire())) {
        // An empty file is still one frame, so `zstd -d` of the object works.
        const empty = Buffer.alloc(0);
        const p = opts.compressHere ? Promise.resolve(opts.compressHere(empty)) : compressPiece(empty, spec);
        p.catch(() => {});
        queue.push(p);
      }
    } catch (err) {
      inputError = err;
    } finally {
      inputDone = true;
      wake?.();
    }
  })();

  async function* ordered(): AsyncGenerator<Buffer> {
    for (;;) {
      if (queue.length === 0) {
        if (inputDone) break;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      const p = queue.shift()!;
      try {
        yield await p;
      } finally {
        slots.release();
      }
    }
    if (inputError !== undefined) throw inputError;
  }

  // Each sink: [encrypt under its key] → count → its write.
  const sinks = specs.map((s, i) => async (body: Readable): Promise<number> => {
    const count = createCountStage();
    const stages: Transform[] = s.key !== undefined ? [createEncryptStage(s.key)] : [];
    await Promise.all([
      pipeline([body, ...stages, count.stage], opts.signal ? { signal: opts.signal } : {}).catch((err) => {
        count.stage.destroy(err as Error);
        throw err;
      }),
      writes[i]!(count.stage),
    ]);
    return count.bytes();
  });
  let stored: Outcome<number>[];
  try {
    stored = await fanOut(ordered(), sinks);
  } finally {
    stopReading();
    await feed;
    // Pieces compressed but never written (a failed write): give their slots back.
    while (queue.length > 0) {
      queue.shift();
      slots.release();
    }
  }
  if (inputError !== undefined) throw inputError;
  return { size, sha256: hash.digest('hex'), stored };
}

/** The one compression of `specs` (encodeFileMany, encodeWholeMany): they differ only in their keys. */
export function sameCompression(specs: readonly EncodeSpec[]): EncodeSpec {
  const first = specs[0];
  if (first === undefined) throw new CairnError('INTERNAL', 'nothing to encode for');
  for (const s of specs) {
    if (s.compress.alg !== first.compress.alg || s.compress.level !== first.compress.level) throw new CairnError('INTERNAL', 'one file encoded with two compressions');
  }
  return { compress: first.compress };
}

/**
 * Cuts a stream of arbitrary chunks into pieces of exactly `size` bytes (the
 * last may be shorter). `expected` (the file's size, when known) keeps small
 * files from allocating whole pieces: allocation, not copying, dominated a
 * backup of a thousand small files.
 */
export async function* rechunk(source: AsyncIterable<Buffer>, size = PIECE_SIZE, expected?: number): AsyncGenerator<Buffer> {
  let remaining = expected ?? size;
  const alloc = () => Buffer.allocUnsafe(Math.max(1, Math.min(size, remaining > 0 ? remaining : size)));
  let buf: Buffer | undefined;
  let len = 0;
  for await (const chunk of source) {
    let pos = 0;
    // Whole pieces that arrive as they are need no copy.
    if (len === 0 && chunk.length === size) {
      remaining -= size;
      yield chunk;
      continue;
    }
    while (pos < chunk.length) {
      buf ??= alloc();
      const n = Math.min(buf.length - len, chunk.length - pos);
      chunk.copy(buf, len, pos, pos + n);
      len += n;
      pos += n;
      if (len === buf.length) {
        remaining -= len;
        if (len === size || remaining <= 0) {
          yield buf;
          buf = undefined;
          len = 0;
        } else {
          // The file is bigger than it said: grow to a whole piece.
          const bigger = Buffer.allocUnsafe(size);
          buf.copy(bigger, 0, 0, len);
          remaining += len;
          buf = bigger;
        }
      }
    }
  }
  if (buf && len > 0) yield buf.subarray(0, len);
}

/**
 * Decodes zstd frames in parallel (up to `window` at once on the threadpool),
 * in order. Each frame carries its XXH64, which zstd checks.
 */
function createParallelZstdDecode(label: string, window: number): Transform {
  const pending: Promise<Buffer>[] = [];
  const start = (frame: Buffer) => {
    const p = zstdDecompress(frame, { chunkSize: OUT_CHUNK, maxOutputLength: 2 * 1024 * 1024 * 1024 - 1 }).catch((err: unknown) => {
      throw corruptDataFrom('zstd', label, err);
    });
    p.catch(() => {});
    pending.push(p);
  };
  return new Transform({
    writableObjectMode: true,
    transform(frame: Buffer, _enc, cb: TransformCallback) {
      start(frame);
      if (pending.length < window) return cb();
      pending
        .shift()!
        .then((out) => {
          this.push(out);
          cb();
        }, cb);
    },
    flush(cb: TransformCallback) {
      (async () => {
        while (pending.length > 0) this.push(await pending.shift()!);
      })().then(() => cb(), cb);
    },
  });
}

/**
 * Decodes one zstd frame on the calling thread. The output buffer is one
 * piece, so a whole piece comes out in one allocation, with no concatenation.
 */
export function decodeZstdFrameSync(frame: Buffer, label: string): Buffer {
  try {
    return zlib.zstdDecompressSync(frame, { chunkSize: PIECE_SIZE, maxOutputLength: 2 * 1024 * 1024 * 1024 - 1 });
  } catch (err) {
    throw corruptDataFrom('zstd', label, err);
  }
}

/**
 * Stages that turn a stored backup object back into plaintext, chosen from
 * its key: the codec's decrypt stage, then zstd frames split and decoded in
 * parallel, or the codec's decompress stages (gzip: concatenated members
 * decode as one stream, as with `gzip -d`).
 */
export function decodeFileStages(storedKey: string, key: EncryptionKey | undefined, label: string, window = 4): Transform[] {
  const enc = storedEncoding(storedKey);
  const stages = decryptStages(enc, key, label);
  if (enc.alg === 'zstd') stages.push(createZstdFrameSplitter(label), createParallelZstdDecode(label, window));
  else stages.push(...createDecompressStages(enc.alg, label));
  return stages;
}

/**
 * For a zstd object: stages that turn it into its frames, still compressed
 * (decrypted first when it is encrypted), for a caller that decodes each
 * frame itself with decodeZstdFrameSync. Undefined for any other encoding.
 */
export function zstdFrameStages(storedKey: string, key: EncryptionKey | undefined, label: string): { stages: Transform[]; splitter: FrameSplitter } | undefined {
  const enc = storedEncoding(storedKey);
  if (enc.alg !== 'zstd') return undefined;
  const splitter = createZstdFrameSplitter(label);
  return { stages: [...decryptStages(enc, key, label), splitter], splitter };
}

/** The error for plaintext that is not what the manifest says (codec/errors.ts words it). */
export function checksumMismatch(expect: { sha256: string; size: number; label: string }, got: string, size: number): CairnError {
  return mismatch('backup', `backup file ${expect.label}`, expect, { sha256: got, size });
}

/**
 * Decodes a small stored object (a file of at most one piece, hence one
 * frame) in memory and checks it like decodeFileInto. For the thousands of
 * few-kB files of a cluster, streams per file cost more than the data.
 */
export async function decodeWhole(stored: Buffer, storedKey: string, key: EncryptionKey | undefined, expect: { sha256: string; size: number; label: string }): Promise<Buffer> {
  const enc = storedEncoding(storedKey);
  let data = stored;
  try {
    if (enc.encrypted) {
      const parts: Buffer[] = [];
      await pipeline([Readable.from([stored]), ...decryptStages(enc, key, expect.label), new Writable({ write(c: Buffer, _e, cb) { parts.push(c); cb(); } })]);
      data = Buffer.concat(parts);
    }
    if (enc.alg === 'zstd') {
      // zstd-napi's context, reused, where it is installed: node:zlib makes a
      // context per call, ~6 µs each, and a restore of 20,000 tables decodes
      // 120,000 small files on one thread. A frame it cannot decode into the
      // manifest's size goes to node:zlib, which names what is wrong.
      const native = nativeZstd();
      const into = native ? Buffer.allocUnsafe(expect.size) : undefined;
      const n = native && into ? native.decodeFrameInto(data, into) : undefined;
      data = n !== undefined ? into!.subarray(0, n) : zlib.zstdDecompressSync(data, { maxOutputLength: Math.max(expect.size, 1) + 1 });
    }
    else if (enc.alg === 'gzip') data = zlib.gunzipSync(data, { maxOutputLength: Math.max(expect.size, 1) + 1 });
  } catch (err) {
    if (err instanceof CairnError) throw err;
    throw corruptDataFrom(enc.alg, expect.label, err);
  }
  const got = createHash('sha256').update(data).digest('hex');
  if (got !== expect.sha256 || data.length !== expect.size) throw checksumMismatch(expect, got, data.length);
  return data;
}

/**
 * Streams a stored object through `stages` into `sink` and checks the
 * plaintext's size and SHA-256 against the manifest. The caller must not use
 * what the sink received unless this resolves.
 */
export async function decodeFileInto(
  source: Readable,
  stages: Transform[],
  sink: Writable,
  expect: { sha256: string; size: number; label: string },
  signal?: AbortSignal,
): Promise<void> {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  await pipeline([source, ...stages, tap, sink], signal ? { signal } : {});
  const got = hash.digest('hex');
  if (got !== expect.sha256 || size !== expect.size) throw checksumMismatch(expect, got, size);
}
