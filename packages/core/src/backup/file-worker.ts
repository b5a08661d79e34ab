// Worker threads for the big files of a backup or restore. SHA-256 and page
// checksums are synchronous and run where the bytes are; on the main thread
// they made a 1 GiB relation segment a serial bottleneck (1.5 GB/s of SHA-256
// for the whole backup). Each worker owns one big file at a time, end to end:
// read, hash, check pages, (de)compress on the threadpool, store or write.
//
// A backup's small files go to the workers too, in batches (SmallJob): the
// worker reads, hashes, checks and encodes each one and sends the stored
// bytes back, and the main thread only walks, bundles and records. With
// every step on the main thread, a cluster of 20,000 tables (121k files)
// kept one core busy and the other idle (issue 19).

import { Worker } from 'node:worker_threads';
import { CairnError, type ErrorCode } from '../cli/errors.js';
import type { FileToRestore } from './restore-file.js';
import type { ChangedPages } from './pages.js';
import type { ManifestFile } from './manifest.js';
import type { PagedTarget } from './restore-pages.js';

export interface EncodeJob {
  kind: 'encode';
  /** Absolute path of the source file. */
  path: string;
  /** Repository key of the object to write. */
  key: string;
  size: number;
  /** Verify page checksums: first block number and the backup's start LSN (decimal). */
  pageCheck?: { firstBlock: number; startLsn: string };
  /**
   * Page-level (backup/pages.ts): store only the pages changed since the
   * parent began, over its copy of parentBlocks pages; bad pages are found
   * against startLsn (this backup's start) in the same pass. Decimal LSNs.
   */
  pages?: { parentStartLsn: string; startLsn: string; parentBlocks: number; firstBlock: number };
  /**
   * The repositories to write `key` to, as indexes into WorkerSetup.repoUrls
   * (default: the first): the file is read and compressed once for all of
   * them (issue 18 item 1), and one that fails does not fail the others.
   */
  targets?: number[];
}

export interface EncodeResult {
  size: number;
  sha256: string;
  storedSize: number;
  badPages: number[];
  /** Page-level jobs: what was stored; undefined when the file must be stored whole (not whole pages). */
  pages?: ChangedPages;
  /** Per entry of EncodeJob.targets: the stored size there, or why that repository failed. */
  stored: WorkerOutcome[];
}

/** One repository's end of an encode job; an error as a CairnError's parts, to cross the thread. */
export type WorkerOutcome = { ok: true; value: number } | { ok: false; error: SerializedError };

export interface SerializedError {
  code?: string;
  message: string;
  hint?: string;
  errno?: string;
}

export function serializeError(err: unknown): SerializedError {
  const e = err as Error & { code?: string; hint?: string };
  return err instanceof CairnError ? { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } : { message: e?.message ?? String(err), ...(typeof e?.code === 'string' ? { errno: e.code } : {}) };
}

export function deserializeError(e: SerializedError): Error {
  if (e.code) return new CairnError(e.code as ErrorCode, e.message, e.hint === undefined ? {} : { hint: e.hint });
  return Object.assign(new Error(e.message), e.errno ? { code: e.errno } : {});
}

/**
 * A small file of a backup (at most SMALL_FILE when walked): read, hashed,
 * page-checked and encoded in a worker, its stored bytes handed back for the
 * main thread to bundle or write (FileWorkers.small).
 */
export interface SmallJob {
  kind: 'small';
  path: string;
  size: number;
  pageCheck?: { firstBlock: number; startLsn: string };
  /** The repositories to encode for (WorkerSetup.repoUrls indexes): each its own data key. */
  targets: number[];
}

/**
 * What became of a SmallJob: `grown` when the file is now bigger than one
 * piece (the caller streams it instead); else its plaintext size and
 * SHA-256, the pages that failed their checksum, and per target the stored
 * bytes or why that repository could not encode it.
 */
export type SmallResult =
  | { grown: true }
  | { grown: false; size: number; sha256: string; badPages: number[]; stored: ({ ok: true; bytes: Buffer } | { ok: false; error: SerializedError })[] };

/** SmallJobs crossing to a worker together; the reply's bytes are in one transferred buffer. */
export interface BatchJob {
  kind: 'batch';
  jobs: SmallJob[];
  /** Their bytes, for choosing the worker. */
  size: number;
}

/** One file of a batch's reply: an error (the file vanished), or a SmallResult with its bytes as spans of BatchReply.buf. */
export type BatchFile =
  | { error: SerializedError }
  | { grown: true }
  | { grown: false; size: number; sha256: string; badPages: number[]; stored: ({ ok: true; off: number; len: number } | { ok: false; error: SerializedError })[] };

export interface BatchReply {
  files: BatchFile[];
  buf: ArrayBuffer;
}

/** Files per batch, and bytes: a message carries much more than its cost, and a batch is still a small part of a worker's queue. */
export const SMALL_BATCH_FILES = 64;
const BATCH_BYTES = 2 * 1024 * 1024;
/**
 * Bytes queued on a worker from which another one starts: a big file is
 * ahead, or many files of a few MB (a 60 MB file only delays the small
 * files behind it by a tenth of a second; each worker costs ~30 MB).
 */
const BUSY = 64 * 1024 * 1024;

export interface DecodeJob extends FileToRestore {
  kind: 'decode';
}

/** A page-level file laid down in a worker (restorePaged in backup/restore-pages.ts). */
export interface PagesJob {
  kind: 'pages';
  file: ManifestFile;
  target: PagedTarget;
  /** --delta: keep the file on disk, or build on the state of the chain it is in. */
  delta: boolean;
  size: number;
}

/** Size and SHA-256 of a file on disk (--delta), in a worker: undefined when it is not a regular file. */
export interface HashJob {
  kind: 'hash';
  path: string;
  size: number;
}

export interface WorkerSetup {
  repoUrl: string;
  /** Every repository encode jobs may write to (EncodeJob.targets); default [repoUrl]. */
  repoUrls?: string[];
  /** The tool context's environment (the S3 region); a thread does not read process.env (docs/style.md). */
  env: Record<string, string | undefined>;
  /** The key source: a thread loads the operator's key itself and opens `cluster`'s data key with it. */
  cluster: string;
  keyFile: string | undefined;
  keyCommand?: string | undefined;
  /** zstd:1, … (encode jobs). */
  compress: string;
}

interface Reply {
  id: number;
  result?: unknown;
  error?: SerializedError;
}

export interface FileWorkers {
  encode(job: EncodeJob): Promise<EncodeResult>;
  decode(job: DecodeJob): Promise<void>;
  pages(job: PagesJob): Promise<{ written: number; kept: boolean }>;
  hash(job: HashJob): Promise<{ size: number; sha256: string } | undefined>;
  /** A backup's small file, batched with others to one worker (SmallJob). */
  small(job: SmallJob): Promise<SmallResult>;
  /**
   * Starts workers now, up to `n` (and the count), so they are booted by the
   * time the first jobs come: a thread takes 0.1 s to start here, 0.25 s
   * beside a busy main thread.
   */
  warm(n: number): void;
  close(): Promise<void>;
}


export function createFileWorkers(entry: URL, count: number, setup: WorkerSetup): FileWorkers {
  // Each job goes to its worker at once, to the one with the fewest bytes
  // queued, and the worker runs its jobs one after the other. Handed out as
  // workers came free, a job waited for the main thread to read the last
  // one's reply, and the main thread was busy with small files: a worker
  // idled 0.6 s between two files of a 1.6 GB restore here.
  //
  // A worker starts at its first job (each is an isolate: ~30-40 MB), and
  // another only when every one started has BUSY bytes queued: a cluster of
  // small files starts one, which keeps pace with the main thread (issue
  // 19: 33 MB less at 20,000 tables); big files start the others.
  const workers: { w: Worker; queued: number }[] = [];
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void; slot: { queued: number }; size: number }>();
  let nextId = 1;
  let failure: Error | undefined;

  const start = () => {
    const w = new Worker(entry, { workerData: setup });
    const slot = { w, queued: 0 };
    w.on('message', (m: Reply) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (!p) return;
      p.slot.queued -= p.size;
      if (m.error) {
        p.reject(deserializeError(m.error));
      } else {
        p.resolve(m.result);
      }
    });
    w.on('error', (err) => {
      failure = err;
      for (const p of pending.values()) p.reject(new CairnError('INTERNAL', `a file worker failed: ${err.message}`, { cause: err }));
      pending.clear();
    });
    workers.push(slot);
    return slot;
  };

  const run = async <T>(job: EncodeJob | DecodeJob | PagesJob | HashJob | BatchJob): Promise<T> => {
    if (failure) throw new CairnError('INTERNAL', `a file worker failed: ${failure.message}`);
    const least = workers.reduce<{ w: Worker; queued: number } | undefined>((a, b) => (a === undefined || b.queued < a.queued ? b : a), undefined);
    // Another worker when every one started has a big file ahead (not just
    // batches of small files or a few MB).
    const slot = least === undefined || (least.queued >= BUSY && workers.length < Math.max(1, count)) ? start() : least;
    // A job counts at least 1 byte, so empty files spread too.
    const size = Math.max(1, job.size);
    slot.queued += size;
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject, slot, size });
      slot.w.postMessage({ id, job });
    });
  };

  // Small files gather into a batch until it is full or this turn of the
  // event loop ends.
  type Waiter = { resolve: (r: SmallResult) => void; reject: (e: unknown) => void };
  let batch: { jobs: SmallJob[]; waiters: Waiter[]; size: number } | undefined;
  const flush = (b: typeof batch) => {
    if (b === undefined || b !== batch) return;
    batch = undefined;
    run<BatchReply>({ kind: 'batch', jobs: b.jobs, size: b.size }).then(
      (reply) => {
        const buf = Buffer.from(reply.buf);
        reply.files.forEach((f, i) => {
          const w = b.waiters[i]!;
          if ('error' in f) w.reject(deserializeError(f.error));
          else if (f.grown) w.resolve(f);
          else w.resolve({ ...f, stored: f.stored.map((s) => (s.ok ? { ok: true as const, bytes: buf.subarray(s.off, s.off + s.len) } : s)) });
        });
      },
      (err: unknown) => {
        for (const w of b.waiters) w.reject(err);
      },
    );
  };

  return {
    small: (job) =>
      new Promise<SmallResult>((resolve, reject) => {
        if (batch === undefined) {
          const b = (batch = { jobs: [], waiters: [], size: 0 });
          setImmediate(() => flush(b));
        }
        const b = batch;
        b.jobs.push(job);
        b.waiters.push({ resolve, reject });
        b.size += Math.max(1, job.size);
        if (b.jobs.length >= SMALL_BATCH_FILES || b.size >= BATCH_BYTES) flush(b);
      }),
    encode: (job) => run<EncodeResult>(job),
    decode: (job) => run<void>(job),
    pages: (job) => run<{ written: number; kept: boolean }>(job),
    hash: (job) => run<{ size: number; sha256: string } | undefined>(job),
    warm(n) {
      while (workers.length < Math.min(n, Math.max(1, count))) start();
    },
    async close() {
      await Promise.allSettled(workers.map((s) => s.w.terminate()));
    },
  };
}
