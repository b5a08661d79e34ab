// Entry of the detached push-ahead worker (started by cairn-wal-push).
import { PUSH_WORKER_ENV, runPushWorker, type PushWorkerJob } from './push-worker.js';

const raw = process.env[PUSH_WORKER_ENV];
if (raw) {
  try {
    await runPushWorker(JSON.parse(raw) as PushWorkerJob, process.env);
  } catch {
    // Nothing to report to: PostgreSQL's next call archives what is missing.
  }
}
