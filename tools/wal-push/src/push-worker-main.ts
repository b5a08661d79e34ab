// Entry of the detached push-ahead worker (started by cairn-wal-push).
import { PUSH_AHEAD_JOB_ENV } from '@cairn/core/spool/contract';
import { runPushWorker, type PushWorkerJob } from './push-worker.js';

const raw = process.env[PUSH_AHEAD_JOB_ENV];
if (raw) {
  try {
    await runPushWorker(JSON.parse(raw) as PushWorkerJob, process.env);
  } catch {
    // Nothing to report to: PostgreSQL's next call archives what is missing.
  }
}
