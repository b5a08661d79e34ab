// Worker threads for the big files of a backup or restore. SHA-256 and page
// checksums are synchronous and run where the bytes are; on the main thread
// they made a 1 GiB relation segment a serial bottleneck (1.5 GB/s of SHA-256
// for the whole backup). Each worker owns one big file at a time, end to end:
// read, hash, check pages, (de)compress on the threadpool, store or write.

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
  close(): Promise<void>;
}


export function createFileWorkers(entry: URL, count: number, setup: WorkerSetup): FileWorkers {
  // Each job goes to its worker at once, to the one with the fewest bytes
  // queued, and the worker runs its jobs one after the other. Handed out as
  // workers came free, a job waited for the main thread to read the last
  // one's reply, and the main thread was busy with small files: a worker
  // idled 0.6 s between two files of a 1.6 GB restore here.
  const workers: { w: Worker; queued: number }[] = [];
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void; slot: { queued: number }; size: number }>();
  let nextId = 1;
  let failure: Error | undefined;

  for (let i = 0; i < count; i++) {
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
  }

  const run = async <T>(job: EncodeJob | DecodeJob | PagesJob | HashJob): Promise<T> => {
    if (failure) throw new CairnError('INTERNAL', `a file worker failed: ${failure.message}`);
    const slot = workers.reduce((a, b) => (b.queued < a.queued ? b : a));
    // A job counts at least 1 byte, so empty files spread too.
    const size = Math.max(1, job.size);
    slot.queued += size;
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject, slot, size });
      slot.w.postMessage({ id, job });
    });
  };

  return {
    encode: (job) => run<EncodeResult>(job),
    decode: (job) => run<void>(job),
    pages: (job) => run<{ written: number; kept: boolean }>(job),
    hash: (job) => run<{ size: number; sha256: string } | undefined>(job),
    async close() {
      await Promise.allSettled(workers.map((s) => s.w.terminate()));
    },
  };
}
