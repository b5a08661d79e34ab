// Walking the frames of a zstd object (RFC 8878 §3.1) without decompressing:
// one header and block parser, used two ways.
//   createZstdFrameCheck: a pass-through stage in front of the streaming
//     decoder that lets through exactly one zstd frame (plus empty frames
//     after it), as cairn writes WAL, history files and dump objects.
//   createZstdFrameSplitter: one Buffer per frame, for backup files (one
//     frame per 4 MiB piece, decoded in parallel or on the caller's thread);
//     skippable frames are dropped, a frame over 64 MiB is refused.
//
// Why check at all: Node's zstd decoder (node:zlib, Node 24) ends its output
// at the end of the first frame and silently drops whatever follows in the
// same input chunk (appended garbage, a second frame), yet decodes a second
// frame that starts on a chunk boundary: the result would depend on how the
// bytes were chunked.

import { Transform, type TransformCallback } from 'node:stream';
import { CairnError } from '../cli/errors.js';
import { corruptData } from './errors.js';

const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50 … 0x184D2A5F, then a 4-byte size. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** Block_Maximum_Size (RFC 8878 §3.1.1.2.4). */
const MAX_BLOCK = 128 * 1024;
/** No frame cairn writes is near this; a bigger one is corruption, not data to buffer. */
const MAX_FRAME = 64 * 1024 * 1024;

type FrameKind = 'zstd' | 'skippable';

/** What a mode does at each event; a throw rejects the object. */
interface FrameHooks {
  /** A frame's magic number was read; `magic` is what it was (zstd, skippable or neither). */
  frameStart(magic: number, kind: FrameKind | undefined): void;
  /** A block header was read (blocks of skippable frames are not walked). */
  block(type: number, size: number): void;
  /** The frame ends at `end`, an offset in the chunk being fed. */
  frameEnd(kind: FrameKind, end: number): void;
}

type State = 'magic' | 'descriptor' | 'header-rest' | 'block-header' | 'body' | 'checksum' | 'skippable-size';

/** The parser both modes share: feed() it chunks, it calls the hooks. */
class FrameParser {
  #state: State = 'magic';
  // Small fields may straddle chunk boundaries: gathered here (≤ 13 bytes).
  #field = Buffer.alloc(16);
  #fieldLen = 0;
  /** Bytes still wanted for the current field or body. */
  #need = 4;
  #kind: FrameKind = 'zstd';
  #hasChecksum = false;
  #lastBlock = false;

  constructor(
    private readonly hooks: FrameHooks,
    private readonly corrupt: (why: string) => CairnError,
  ) {}

  /** Between frames, before any byte of the next: the end of input is clean here. */
  get atBoundary(): boolean {
    return this.#state === 'magic' && this.#fieldLen === 0;
  }

  feed(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const take = Math.min(this.#need, chunk.length - pos);
      if (this.#state !== 'body') chunk.copy(this.#field, this.#fieldLen, pos, pos + take);
      this.#fieldLen += take;
      this.#need -= take;
      pos += take;
      if (this.#need === 0) this.#complete(pos);
    }
  }

  #want(state: State, n: number): void {
    this.#state = state;
    this.#need = n;
    this.#fieldLen = 0;
  }

  #endFrame(end: number): void {
    this.#want('magic', 4);
    this.hooks.frameEnd(this.#kind, end);
  }

  #afterBlock(end: number): void {
    if (!this.#lastBlock) this.#want('block-header', 3);
    else if (this.#hasChecksum) this.#want('checksum', 4);
    else this.#endFrame(end);
  }

  /** The current field (or body) is complete; `end` is the offset after it in the chunk. */
  #complete(end: number): void {
    const f = this.#field;
    switch (this.#state) {
      case 'magic': {
        const magic = f.readUInt32LE(0);
        const kind = magic === ZSTD_MAGIC ? 'zstd' : (magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC ? 'skippable' : undefined;
        this.hooks.frameStart(magic, kind);
        if (kind === undefined) throw this.corrupt('not a zstd frame (bad magic number)');
        this.#kind = kind;
        if (kind === 'zstd') this.#want('descriptor', 1);
        else this.#want('skippable-size', 4);
        return;
      }
      case 'descriptor': {
        const fhd = f[0]!;
        const singleSegment = (fhd & 0x20) !== 0;
        if ((fhd & 0x08) !== 0) throw this.corrupt('reserved bit set in a frame header');
        this.#hasChecksum = (fhd & 0x04) !== 0;
        const didSize = [0, 1, 2, 4][fhd & 0x03]!;
        const fcsSize = [singleSegment ? 1 : 0, 2, 4, 8][fhd >> 6]!;
        const rest = (singleSegment ? 0 : 1) + didSize + fcsSize;
        if (rest > 0) this.#want('header-rest', rest);
        else this.#want('block-header', 3);
        return;
      }
      case 'header-rest':
        this.#want('block-header', 3);
        return;
      case 'block-header': {
        const bh = f[0]! | (f[1]! << 8) | (f[2]! << 16);
        this.#lastBlock = (bh & 1) === 1;
        const type = (bh >> 1) & 3;
        const size = bh >>> 3;
        if (type === 3) throw this.corrupt('reserved block type');
        if (size > MAX_BLOCK) throw this.corrupt('block larger than 128 KiB');
        this.hooks.block(type, size);
        // An RLE block stores one byte however many it stands for.
        const body = type === 1 ? 1 : size;
        if (body > 0) this.#want('body', body);
        else this.#afterBlock(end);
        return;
      }
      case 'body':
        if (this.#kind === 'skippable') this.#endFrame(end);
        else this.#afterBlock(end);
        return;
      case 'checksum':
        this.#endFrame(end);
        return;
      case 'skippable-size': {
        const size = f.readUInt32LE(0);
        if (size > 0) this.#want('body', size);
        else this.#endFrame(end);
        return;
      }
      default:
        throw new CairnError('INTERNAL', `zstd frame walker in impossible state ${this.#state}`);
    }
  }
}

/**
 * A pass-through stage that fails (FORMAT_INVALID, naming `label`) unless
 * the object is exactly one zstd frame. Empty frames after it are accepted:
 * Node's zstd stream (Node 24) ends the frame twice when end() comes while
 * the last chunk is still queued, and objects written so are whole (the
 * empty frame decodes to nothing however it is chunked); cairn's compress
 * stage no longer writes them (compress.ts).
 */
export function createZstdFrameCheck(label: string): Transform {
  const corrupt = (why: string) => corruptData('zstd', label, why);
  const AFTER = 'unexpected data after the end of the zstd frame';
  let frames = 0;
  const parser = new FrameParser(
    {
      frameStart(magic, kind) {
        if (frames > 0 && magic !== ZSTD_MAGIC) throw corrupt(AFTER);
        if (kind === 'skippable') throw corrupt('skippable frames are not supported');
      },
      block(type, size) {
        if (frames > 0 && (size > 0 || type !== 0)) throw corrupt(AFTER);
      },
      frameEnd() {
        frames++;
      },
    },
    corrupt,
  );
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      try {
        parser.feed(chunk);
      } catch (err) {
        cb(err as Error);
        return;
      }
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      if (parser.atBoundary && frames > 0) cb();
      else if (frames > 0) cb(corrupt(AFTER));
      else cb(corrupt(parser.atBoundary ? 'no zstd frame (empty object)' : 'truncated: the data ends inside a frame'));
    },
  });
}

/**
 * Buffers for frames that span input chunks, handed back by the consumer and
 * filled again. One pool may serve one walker after another (a thread that
 * restores file after file), never two walkers at once.
 */
export interface FramePool {
  spare: Buffer[];
  /** Buffers the pool made, by their memory: only those are taken back. */
  mine: WeakSet<ArrayBufferLike>;
}

/** Buffers kept for reuse (frames in flight between the splitter and its consumer are few). */
const SPARE_FRAMES = 4;
/** Frames assembled ahead of the consumer. */
const FRAMES_AHEAD = 2;
/** Buffers for frames are made in multiples of this. */
const SPARE_ROUND = 1024 * 1024;
const NO_BYTES = Buffer.alloc(0);

export function createFramePool(): FramePool {
  return { spare: [], mine: new WeakSet() };
}

/**
 * The frame walker without a stream around it: `feed` calls `onFrame` for
 * each complete zstd frame, in order, before it returns; skippable frames are
 * dropped; `end` throws unless the input ended between frames.
 *
 * A frame that lies whole in the chunk is handed over as a view of it (valid
 * as long as the chunk's bytes are). A frame that spans chunks is copied, as
 * it arrives, into a buffer of the pool's, so the walker holds no reference
 * to a chunk once `feed` returns: the caller may read the next bytes into the
 * same memory. A consumer done with a frame hands it back with `release`; a
 * fresh buffer of a few MiB costs the kernel a page fault per 4 KiB (the
 * tools fix glibc's mmap threshold, so each comes straight from mmap): on
 * incompressible data, whose frames are ~4 MiB, a 1 GiB file's frames took
 * 9 s of a restore's worker thread here, against well under 1 s refilled.
 *
 * `frameHint` is the size a spanning frame's buffer starts at (rounded up to
 * 1 MiB; it grows when a frame is bigger): a backup file's frames are at
 * most a piece's compressed size, so a restore passes that and each buffer
 * is made once. Only the pages a frame fills become resident.
 */
export interface FrameWalker {
  feed(chunk: Buffer): void;
  end(): void;
  release(frame: Buffer): void;
}

export function createZstdFrameWalker(label: string, onFrame: (frame: Buffer) => void, opts: { pool?: FramePool; frameHint?: number } = {}): FrameWalker {
  const corrupt = (why: string) => corruptData('zstd', label, why);
  const pool = opts.pool ?? createFramePool();
  const hint = opts.frameHint ?? 0;
  const round = (n: number) => Math.ceil(n / SPARE_ROUND) * SPARE_ROUND;
  /** The spanning frame being gathered (undefined: none), and its length so far. */
  let acc: Buffer | undefined;
  let frameLen = 0;
  let start = 0;
  let chunk: Buffer = NO_BYTES;
  const fresh = (n: number): Buffer => {
    const b = Buffer.allocUnsafeSlow(n);
    pool.mine.add(b.buffer);
    return b;
  };
  /** Appends bytes of a frame that spans chunks to its buffer, growing it when it is too small. */
  const gather = (bytes: Buffer) => {
    const need = frameLen + bytes.length;
    if (need > MAX_FRAME) throw corrupt('a frame larger than 64 MiB');
    if (acc === undefined) {
      // The biggest spare: the frame's size is not known until it ends.
      let best = -1;
      for (let i = 0; i < pool.spare.length; i++) if (best < 0 || pool.spare[i]!.length > pool.spare[best]!.length) best = i;
      acc = best >= 0 ? pool.spare.splice(best, 1)[0]! : fresh(Math.min(MAX_FRAME, round(Math.max(need, hint))));
    }
    if (acc.length < need) {
      const bigger = fresh(Math.min(MAX_FRAME, round(Math.max(need, acc.length * 2))));
      acc.copy(bigger, 0, 0, frameLen);
      acc = bigger; // the smaller one is left to the collector
    }
    bytes.copy(acc, frameLen);
    frameLen = need;
  };
  const parser = new FrameParser(
    {
      frameStart() {},
      block() {},
      frameEnd(kind, end) {
        const tail = chunk.subarray(start, end);
        start = end;
        if (acc === undefined) {
          if (tail.length > MAX_FRAME) throw corrupt('a frame larger than 64 MiB');
          if (kind === 'zstd') onFrame(tail);
          return;
        }
        gather(tail);
        const whole = acc.subarray(0, frameLen);
        const buf = acc;
        acc = undefined;
        frameLen = 0;
        if (kind === 'zstd') onFrame(whole);
        else walker.release(buf);
      },
    },
    corrupt,
  );
  const walker: FrameWalker = {
    feed(c) {
      chunk = c;
      start = 0;
      try {
        parser.feed(c);
        if (start < c.length) gather(c.subarray(start));
      } finally {
        chunk = NO_BYTES; // the caller's memory is not held
      }
    },
    end() {
      if (!parser.atBoundary || acc !== undefined) throw corrupt('truncated: the data ends inside a frame');
    },
    release(frame) {
      if (!pool.mine.has(frame.buffer) || frame.buffer === acc?.buffer) return;
      const whole = Buffer.from(frame.buffer, 0, frame.buffer.byteLength);
      if (pool.spare.length < SPARE_FRAMES && !pool.spare.some((b) => b.buffer === frame.buffer)) pool.spare.push(whole);
    },
  };
  return walker;
}

/**
 * A Transform around the frame walker: bytes in, one Buffer per complete
 * zstd frame out (objectMode readable side), still compressed. Skippable
 * frames are dropped; empty input gives no frame. Fails (FORMAT_INVALID,
 * naming `label`) on anything that is not a sequence of whole frames, or a
 * frame over 64 MiB. A consumer that is done with a frame may hand it back
 * with `release(frame)` (see createZstdFrameWalker).
 */
export interface FrameSplitter extends Transform {
  release(frame: Buffer): void;
}

export function createZstdFrameSplitter(label: string): FrameSplitter {
  let stream: FrameSplitter;
  const walker = createZstdFrameWalker(label, (frame) => stream.push(frame));
  stream = Object.assign(
    new Transform({
      readableObjectMode: true,
      // Frames waiting for the consumer: each is up to a piece of stored
      // bytes (4 MiB of incompressible data), and the default of 16 held
      // ~70 MB per file being restored.
      readableHighWaterMark: FRAMES_AHEAD,
      transform(c: Buffer, _enc, cb: TransformCallback) {
        try {
          walker.feed(c);
          cb();
        } catch (err) {
          cb(err as Error);
        }
      },
      flush(cb: TransformCallback) {
        try {
          walker.end();
          cb();
        } catch (err) {
          cb(err as Error);
        }
      },
    }),
    { release: (frame: Buffer) => walker.release(frame) },
  );
  return stream;
}
