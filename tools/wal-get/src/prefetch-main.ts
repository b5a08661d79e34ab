// Entry of the detached prefetch worker (started by cairn-wal-get).
import { PREFETCH_JOB_ENV } from '@cairn/core/spool/contract';
import { runPrefetch, type PrefetchJob } from './prefetch.js';

const raw = process.env[PREFETCH_JOB_ENV];
if (raw) {
  try {
    await runPrefetch(JSON.parse(raw) as PrefetchJob, process.env);
  } catch {
    // Nothing to report to: PostgreSQL's next call fetches what is missing.
  }
}
