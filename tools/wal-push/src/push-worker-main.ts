// Entry of the detached push-ahead worker (started by cairn-wal-push). It
// starts the encoder threads before loading the rest of the worker: each
// thread takes ~50 ms to boot, which then runs beside this thread's module
// loading and set-up instead of after it (the first segments of a backlog
// were stored ~80 ms later that way). Compiled code is cached as in cli.ts.
import { enableCompileCache } from 'node:module';
import { tmpdir } from 'node:os';

const { privateCompileCacheDir } = await import('@cairn/core/spool/compile-cache');
const cacheDir = privateCompileCacheDir(tmpdir());
if (cacheDir) enableCompileCache?.(cacheDir);
const { PUSH_AHEAD_JOB_ENV } = await import('@cairn/core/spool/contract');
const raw = process.env[PUSH_AHEAD_JOB_ENV];
if (raw) {
  try {
    const job = JSON.parse(raw) as import('./push-worker.js').PushWorkerJob;
    const { startEncoder } = await import('./encoder.js');
    const encoder = await startEncoder(job.compress, job.concurrency, import.meta.url);
    const { runPushWorker } = await import('./push-worker.js');
    await runPushWorker(job, process.env, encoder);
  } catch {
    // Nothing to report to: PostgreSQL's next call archives what is missing.
  }
}
