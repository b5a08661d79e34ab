// The push-ahead worker: a detached process that archives the files waiting
// in archive_status/ while PostgreSQL goes on calling archive_command for them
// one by one; each call then finds a record and returns at once (in the bin
// wrapper, without starting Node). The model is pgBackRest's asynchronous
// archive-push. The worker exits when nothing is left to do.

import { silentLogger } from '@cairn/core/cli/log';
import { PUSH_AHEAD_JOB_ENV } from '@cairn/core/spool/contract';
import { isPrivate } from '@cairn/core/spool/spool-dir';
import { spawnWorker } from '@cairn/core/spool/worker';
import { closeRepositories, loadKey, openRepositories } from '@cairn/core/repo/repositories';
import { createLimiter, sleep } from '@cairn/core/util/limit';
import { collectGarbage, createArchiver, type ArchiverOptions } from './archiver.js';
import { PushSpool } from './push-spool.js';

export interface PushWorkerJob extends ArchiverOptions {
  repos: string[];
  keyFile: string | undefined;
  /** pg_wal/ of the server. */
  walDir: string;
  spoolDir: string;
  /** Files taken per scan of archive_status/. */
  batch: number;
}

/** Scans without work before the worker exits (new .ready files keep coming during a burst). */
const IDLE_SCANS = 5;
const IDLE_SCAN_MS = 200;
/** A worker never runs longer than this; the next archive_command starts another. */
const MAX_RUN_MS = 10 * 60_000;

export async function startPushWorker(job: PushWorkerJob, env: NodeJS.ProcessEnv): Promise<void> {
  if (await new PushSpool(job.spoolDir).workerRunning()) return;
  spawnWorker('push-worker-main.js', import.meta.url, { envName: PUSH_AHEAD_JOB_ENV, value: job }, env, ['--expose-gc']);
}

/** The worker's body. Failures are left for PostgreSQL's own call to report. */
/** `env`: the worker process's environment, given by its entry (push-worker-main.ts). */
export async function runPushWorker(job: PushWorkerJob, env: NodeJS.ProcessEnv): Promise<void> {
  const spool = new PushSpool(job.spoolDir);
  // The parent checked it; a worker checks again before trusting it.
  if (!(await isPrivate(job.spoolDir))) return;
  if (!(await spool.lockWorker())) return;
  const drivers = await openRepositories(job.repos, env).catch(() => undefined);
  try {
    if (!drivers) return;
    const key = await loadKey(job.keyFile);
    const signal = new AbortController().signal;
    const archiver = createArchiver(drivers, key, job, { log: silentLogger, signal, now: () => new Date() });
    const limit = createLimiter(Math.max(1, job.concurrency));
    const started = Date.now();
    let idle = 0;
    while (idle < IDLE_SCANS && Date.now() - started < MAX_RUN_MS) {
      const files = await spool.readyFiles(job.walDir, job.batch);
      if (files.length === 0) {
        idle++;
        await sleep(IDLE_SCAN_MS);
        continue;
      }
      idle = 0;
      await Promise.all(
        files.map((f) =>
          limit(async () => {
            if ((await spool.claimant(f.name.name)) !== undefined) return;
            await spool.claim(f.name.name);
            try {
              await archiver.archive(f.path, f.name);
              await spool.record(f.name.name, f.path);
              collectGarbage();
            } catch {
              // PostgreSQL's own call archives it and reports what is wrong.
            } finally {
              await spool.unclaim(f.name.name);
            }
          }),
        ),
      );
    }
  } finally {
    if (drivers) await closeRepositories(drivers);
    await spool.unlockWorker();
  }
}
