// Prefetch: after PostgreSQL asks for segment N, a detached worker fetches
// N+1 … N+K of the same timeline into the spool, verified, so replay does not
// wait on the repository. PostgreSQL never waits for the worker.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '@cairn/core/cli/log';
import { closeRepositories, loadKey, openRepositories } from '@cairn/core/repo/repositories';
import { ensurePrivateDir } from '@cairn/core/spool/spool-dir';
import { createLimiter } from '@cairn/core/util/limit';
import { nextSegmentName } from '@cairn/core/wal/index';
import { fetchWal } from './fetch.js';
import { GetSpool } from './get-spool.js';

export interface PrefetchJob {
  repos: string[];
  cluster: string;
  keyFile: string | undefined;
  systemId: string;
  /** The segment PostgreSQL just received. */
  after: string;
  segmentSize: number;
  count: number;
  concurrency: number;
  spoolDir: string;
}

export const PREFETCH_ENV = 'CAIRN_PREFETCH_JOB';

/**
 * The worker's entry file sits beside the tool's entry: dist/prefetch-main.js
 * next to this module when unbundled, bundle/prefetch-main.js one level above
 * the chunk this code lands in when bundled.
 */
function workerPath(): string {
  for (const rel of ['./prefetch-main.js', '../prefetch-main.js']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error('prefetch-main.js not found beside the wal-get build');
}

/** Starts a worker unless one is running or the spool is already well ahead. */
export async function startPrefetch(job: PrefetchJob, env: NodeJS.ProcessEnv): Promise<void> {
  const spool = new GetSpool(job.spoolDir);
  if (await spool.isLocked()) return;
  const ahead = (await spool.entries()).filter((e) => e.walName.slice(8) > job.after.slice(8) && e.walName.slice(0, 8) === job.after.slice(0, 8)).length;
  if (ahead > job.count / 2) return;
  const worker = workerPath();
  const child = spawn(process.execPath, [worker], {
    detached: true,
    stdio: 'ignore',
    env: { ...env, [PREFETCH_ENV]: JSON.stringify(job) },
  });
  child.unref();
}

/** The worker's body. Errors are swallowed: PostgreSQL's own call decides. */
export async function runPrefetch(job: PrefetchJob): Promise<void> {
  await ensurePrivateDir(job.spoolDir);
  const spool = new GetSpool(job.spoolDir);
  if (!(await spool.lock())) return;
  const drivers = await openRepositories(job.repos).catch(() => undefined);
  if (!drivers) return spool.unlock();
  try {
    await spool.prune(job.after, 3600_000);
    const have = new Set((await spool.entries()).map((e) => e.walName));
    const key = await loadKey(job.keyFile);
    const limit = createLimiter(Math.max(1, job.concurrency));
    const signal = new AbortController().signal;
    let endReached = false;
    const names = Array.from({ length: job.count }, (_, i) => nextSegmentName(job.after, job.segmentSize, i + 1));
    await Promise.all(
      names.map((walName) =>
        limit(async () => {
          if (endReached || have.has(walName)) return;
          try {
            const dest = spool.entryPath(walName, '0'.repeat(64));
            const r = await fetchWal(drivers, { cluster: job.cluster, systemId: job.systemId, walName, key }, dest + '.part', {
              retry: { attempts: 1, baseDelayMs: 0 },
              durable: false,
              signal,
              log: silentLogger,
            });
            if (!r.found) {
              endReached = true; // the end of the archive on this timeline
              return;
            }
            const { rename } = await import('node:fs/promises');
            await rename(dest + '.part', spool.entryPath(walName, r.sha256));
          } catch {
            endReached = true;
          }
        }),
      ),
    );
  } finally {
    await closeRepositories(drivers);
    await spool.unlock();
  }
}
