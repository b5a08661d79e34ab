// Reading, hashing and zstd-compressing whole WAL segments on worker threads,
// for the push-ahead worker that drains a backlog.
//
// Measured here on a 214-segment backlog (16 MiB each, zstd level 1): on the
// main thread with node:zlib on the threadpool, the worker spent ~57 ms of CPU
// per segment and kept 1.4 of 2 cores busy (SHA-256 10 ms on the main thread,
// which then idled waiting for zstd; Buffer.concat of the output, and a fresh
// 2-3 MB output per segment that the VM faults in page by page and V8
// collects late). Here each thread reads the file 1 MiB at a time into a
// buffer of its own, hashing each piece as it comes in, then compresses the
// whole file in one zstd-napi call into an output buffer the main thread
// lends it and takes back once the frame is stored: both cores busy and
// nothing allocated per segment. One call rather than a stream of pieces:
// zstd then reads the input where it lies instead of copying it into its
// 512 KiB window and taking the slower external-dictionary path at each wrap
// (19 ms against 23 per segment; 16 MiB held per thread instead of 1 MiB).
// Files bigger than a default segment are still streamed (WHOLE_LIMIT).
//
// The frame is what codec/compress.ts writes for a buffer of known size: one
// zstd frame with its content size and XXH64 (zstdParams). Without zstd-napi
// createSegmentEncoder returns undefined and callers keep node:zlib.

import { closeSync, openSync, readSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { parentPort, Worker, workerData } from 'node:worker_threads';
import { CairnError } from '../cli/errors.js';
import { nativeZstd } from './zstd-native.js';

/** The first bytes of each file handed back, for header checks (WAL pages are at most 64 KiB). */
export const SEGMENT_HEAD_BYTES = 65536;

export interface EncodedSegment {
  sha256: string;
  /** A copy of the file's first SEGMENT_HEAD_BYTES bytes (fewer when it is shorter). */
  head: Buffer;
  /** One zstd frame of the whole file, in a lent buffer: valid until release(). */
  frame: Buffer;
  /** Gives the frame's buffer back for another file. Call it once, after the frame is stored or dropped. */
  release(): void;
}

export interface SegmentEncoder {
  /**
   * Reads `size` bytes of `path` on a free thread and encodes them. Rejects
   * with the read's error (its `code`: ENOENT, EACCES, …, or ESHRUNK when
   * the file ended early).
   */
  encode(path: string, size: number): Promise<EncodedSegment>;
  /** Bytes of output buffers this encoder holds (lent or free): memory that is not garbage. */
  readonly heldBytes: number;
  close(): Promise<void>;
}

interface Setup {
  level: number;
  /** The map-file addon (native/map-file.c): whole files are mapped instead of read. */
  mapper?: string;
}

/** native/map-file.c's exports. */
interface Mapper {
  map(path: string, size: number): ArrayBuffer;
  unmap(buffer: ArrayBuffer): void;
}

interface Job {
  id: number;
  path: string;
  size: number;
  out: SharedArrayBuffer;
}

interface Reply {
  id: number;
  sha256?: string;
  head?: Uint8Array;
  length?: number;
  error?: { message: string; code?: string };
  /** The thread itself failed (not the file): the encoder is unusable. */
  fatal?: boolean;
}

/**
 * `threads` encoder threads started from `entry` (a module that calls
 * runSegmentEncoderThread), compressing at zstd `level`; undefined when
 * zstd-napi cannot be loaded here. `mapper`: the path of the map-file addon,
 * when there is one: files up to a default segment's size are then mapped
 * rather than read (a thread that cannot load it reads them).
 */
export function createSegmentEncoder(entry: URL, threads: number, level: number, mapper?: string): SegmentEncoder | undefined {
  const z = nativeZstd();
  if (!z) return undefined;
  const all: Worker[] = [];
  const idle: Worker[] = [];
  const waiting: { job: Omit<Job, 'id'>; settle: (r: Reply) => void }[] = [];
  const pending = new Map<number, (r: Reply) => void>();
  const free: SharedArrayBuffer[] = [];
  let failure: Error | undefined;
  let nextId = 1;
  let held = 0;

  const dispatch = () => {
    while (idle.length > 0 && waiting.length > 0) {
      const w = idle.pop()!;
      const { job, settle } = waiting.shift()!;
      const id = nextId++;
      pending.set(id, settle);
      w.postMessage({ id, ...job } satisfies Job);
    }
  };
  for (let i = 0; i < Math.max(1, threads); i++) {
    const w = new Worker(entry, { workerData: { level, ...(mapper ? { mapper } : {}) } satisfies Setup });
    w.on('message', (r: Reply) => {
      const settle = pending.get(r.id);
      pending.delete(r.id);
      idle.push(w);
      settle?.(r);
      dispatch();
    });
    w.on('error', (err) => {
      failure = err;
      // Files queued for any thread fail too: the encoder is not used again.
      const fatal: Reply = { id: 0, fatal: true, error: { message: `an encoder thread failed: ${err.message}` } };
      for (const settle of [...pending.values(), ...waiting.splice(0).map((q) => q.settle)]) settle(fatal);
      pending.clear();
    });
    all.push(w);
    idle.push(w);
  }
  // Output buffers go round: at most one per file being encoded or stored.
  const take = (bound: number) => {
    const i = free.findIndex((b) => b.byteLength >= bound);
    if (i >= 0) return free.splice(i, 1)[0]!;
    held += bound;
    return new SharedArrayBuffer(bound);
  };

  return {
    async encode(path, size) {
      if (failure) throw new CairnError('INTERNAL', `an encoder thread failed: ${failure.message}`);
      const out = take(z.bound(size));
      const r = await new Promise<Reply>((settle) => {
        waiting.push({ job: { path, size, out }, settle });
        dispatch();
      });
      if (r.error) {
        free.push(out);
        if (r.fatal) throw new CairnError('INTERNAL', r.error.message);
        throw Object.assign(new Error(r.error.message), r.error.code ? { code: r.error.code } : {});
      }
      let released = false;
      return {
        sha256: r.sha256!,
        head: Buffer.from(r.head!.buffer, r.head!.byteOffset, r.head!.byteLength),
        frame: Buffer.from(out, 0, r.length!),
        release: () => {
          if (!released) free.push(out);
          released = true;
        },
      };
    },
    get heldBytes() {
      return held;
    },
    async close() {
      await Promise.allSettled(all.map((w) => w.terminate()));
    },
  };
}

/** Bytes read and hashed at a time: hashed while they are still in the core's cache. */
const PIECE = 1024 * 1024;
/**
 * Files up to this size (a default WAL segment) are compressed whole, from a
 * buffer the thread keeps; bigger ones (--wal-segsize up to 64 MiB takes this
 * path, see the archiver's IN_MEMORY_LIMIT) are streamed into zstd piece by
 * piece, so the memory held stays that of a 16 MiB segment.
 */
const WHOLE_LIMIT = 16 * 1024 * 1024;

/** The addon at `path`, or undefined when it cannot be loaded here (another libc, another Node). */
function loadMapper(path: string | undefined): Mapper | undefined {
  if (path === undefined) return undefined;
  try {
    const m = createRequire(import.meta.url)(path) as Partial<Mapper>;
    return typeof m.map === 'function' && typeof m.unmap === 'function' ? (m as Mapper) : undefined;
  } catch {
    return undefined;
  }
}

/** The body of an encoder thread: one job at a time, synchronously (the thread owns its buffers). */
export function runSegmentEncoderThread(): void {
  const { level, mapper: mapperPath } = workerData as Setup;
  const z = nativeZstd();
  let mapper = loadMapper(mapperPath);
  /** Whole files up to WHOLE_LIMIT, or the piece being streamed of a bigger one; kept for the next job. */
  let buf: Buffer | undefined;
  parentPort!.on('message', (job: Job) => {
    try {
      if (!z) throw new Error('zstd-napi is not loaded on this thread');
      const hash = createHash('sha256');
      const out = new Uint8Array(job.out);
      const head = new Uint8Array(Math.min(SEGMENT_HEAD_BYTES, job.size));
      const inWhole = job.size <= WHOLE_LIMIT;
      let length: number | undefined;
      if (inWhole && mapper !== undefined) {
        // The page cache's pages in place: hashed and compressed without a copy.
        let mapped: ArrayBuffer | undefined;
        try {
          mapped = mapper.map(job.path, job.size);
        } catch (err) {
          // Mapping is not possible here (no mmap on this file system, …): read from now on.
          if ((err as NodeJS.ErrnoException).code !== 'ERR_MAP_UNAVAILABLE') throw err;
          mapper = undefined;
        }
        if (mapped !== undefined) {
          try {
            const data = Buffer.from(mapped);
            head.set(data.subarray(0, head.length));
            hash.update(data);
            length = z.encodeInto(data, level, out);
          } finally {
            mapper!.unmap(mapped);
          }
        }
      }
      if (length === undefined) {
        buf ??= Buffer.allocUnsafe(WHOLE_LIMIT);
        const frame = inWhole ? undefined : z.frameWriter(job.size, level, out);
        const fd = openSync(job.path, 'r');
        try {
          for (let off = 0; off < job.size; ) {
            const want = Math.min(PIECE, job.size - off);
            // Straight into place in the whole file, or into the buffer's start to stream.
            const at = inWhole ? off : 0;
            const into = buf.subarray(at, at + want);
            let got = 0;
            while (got < want) {
              const n = readSync(fd, into, got, want - got, off + got);
              if (n === 0) throw Object.assign(new Error(`file shrank while being read (${off + got} of ${job.size} bytes)`), { code: 'ESHRUNK' });
              got += n;
            }
            if (off < head.length) head.set(into.subarray(0, head.length - off), off);
            hash.update(into);
            frame?.push(into);
            off += want;
          }
        } finally {
          closeSync(fd);
        }
        length = frame ? frame.end() : z.encodeInto(buf.subarray(0, job.size), level, out);
      }
      parentPort!.postMessage({ id: job.id, sha256: hash.digest('hex'), head, length } satisfies Reply, [head.buffer]);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      parentPort!.postMessage({ id: job.id, error: { message: e.message, ...(e.code ? { code: e.code } : {}) } } satisfies Reply);
    }
  });
}
