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
import { sleep } from '@cairn/core/util/limit';
import type { SegmentEncoder } from '@cairn/core/codec/segment-encoder';
import { collectGarbage, createArchiver, type ArchiverOptions } from './archiver.js';
import { PushSpool, type ReadyFile } from './push-spool.js';

export interface PushWorkerJob extends ArchiverOptions {
  repos: string[];
  keyFile: string | undefined;
  keyCommand?: string | undefined;
  /** pg_wal/ of the server. */
  walDir: string;
  spoolDir: string;
  /** Files taken per scan of archive_status/. */
  batch: number;
}

/** Scans without work before the worker exits (new .ready files keep coming during a burst). */
const IDLE_SCANS = 5;
const IDLE_SCAN_MS = 200;
/** A rescan that found nothing new while other files are still being archived waits this long. */
const BUSY_SCAN_MS = 20;
/** A worker never runs longer than this; the next archive_command starts another. */
const MAX_RUN_MS = 10 * 60_000;

export async function startPushWorker(job: PushWorkerJob, env: NodeJS.ProcessEnv): Promise<void> {
  if (await new PushSpool(job.spoolDir).workerRunning()) return;
  spawnWorker('push-worker-main.js', import.meta.url, { envName: PUSH_AHEAD_JOB_ENV, value: job }, env, ['--expose-gc']);
}

/**
 * The worker's body. Failures are left for PostgreSQL's own call to report.
 * `env`: the worker process's environment, given by its entry
 * (push-worker-main.ts), which also starts `encoder` (encoder.ts); the
 * worker closes it when done, whether it ran or not.
 */
export async function runPushWorker(job: PushWorkerJob, env: NodeJS.ProcessEnv, encoder?: SegmentEncoder): Promise<void> {
  const spool = new PushSpool(job.spoolDir);
  let locked = false;
  let drivers: Awaited<ReturnType<typeof openRepositories>> | undefined;
  try {
    // The parent checked it; a worker checks again before trusting it.
    if (!(await isPrivate(job.spoolDir))) return;
    if (!(locked = await spool.lockWorker())) return;
    drivers = await openRepositories(job.repos, env).catch(() => undefined);
    if (!drivers) return;
    const key = await loadKey(job, env);
    const signal = new AbortController().signal;
    const archiver = createArchiver(drivers, key, job, { log: silentLogger, signal, now: () => new Date(), ...(encoder ? { encoder } : {}) });
    await drain(spool, job, async (f) => {
      if ((await spool.claimant(f.name.name)) !== undefined) return;
      await spool.claim(f.name.name, true);
      try {
        await archiver.archive(f.path, f.name);
        await spool.record(f.name.name, f.path);
        collectGarbage(encoder?.heldBytes);
      } catch {
        // PostgreSQL's own call archives it and reports what is wrong.
      } finally {
        await spool.unclaim(f.name.name);
      }
    });
  } finally {
    await encoder?.close();
    if (drivers) await closeRepositories(drivers);
    if (locked) await spool.unlockWorker();
  }
}

/**
 * `job.concurrency` lanes, each taking the next waiting file as soon as its
 * last one is done: no lane waits for a batch's slowest file, and a lane that
 * finds the queue empty rescans archive_status/ while the others go on
 * archiving (one scan at a time, shared). Files in flight are never queued
 * twice. The loop ends after IDLE_SCANS empty scans with nothing in flight,
 * or after MAX_RUN_MS.
 */
async function drain(spool: PushSpool, job: PushWorkerJob, archive: (f: ReadyFile) => Promise<void>): Promise<void> {
  const started = Date.now();
  const queue: ReadyFile[] = [];
  const inFlight = new Set<string>();
  let idle = 0;
  let scan: Promise<void> | undefined;
  let firstScan = true;
  const lanes = Math.max(1, job.concurrency);
  const refill = () =>
    (scan ??= (async () => {
      // The first scan takes only what the lanes start at once: its checks
      // (a few file system calls per file) come before the first claim, and
      // PostgreSQL's next call, which finds its file unclaimed, starts Node
      // to archive it itself (a drain's first scan of 32 took ~30 ms).
      const take = firstScan ? Math.min(job.batch, lanes) : job.batch;
      firstScan = false;
      // Only an empty queue is refilled, so what the scan finds is new unless it is in flight.
      const fresh = (await spool.readyFiles(job.walDir, take + inFlight.size)).filter((f) => !inFlight.has(f.name.name));
      queue.push(...fresh);
      if (fresh.length > 0) idle = 0;
      else if (inFlight.size === 0) {
        idle++;
        await sleep(IDLE_SCAN_MS);
      } else await sleep(BUSY_SCAN_MS);
    })().finally(() => (scan = undefined)));
  const lane = async () => {
    while (idle < IDLE_SCANS && Date.now() - started < MAX_RUN_MS) {
      const f = queue.shift();
      if (f === undefined) {
        await refill();
        continue;
      }
      inFlight.add(f.name.name);
      try {
        await archive(f);
      } finally {
        inFlight.delete(f.name.name);
      }
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
}
