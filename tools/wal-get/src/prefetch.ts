// Prefetch: a detached worker keeps the next K segments after PostgreSQL's
// position in the spool, verified, so restore_command is served by a rename
// (in the bin wrapper, without starting Node) instead of a fetch.
//
// PostgreSQL's position is the later of `want` (written by every wal-get that
// ran in Node) and the newest segment this worker delivered that has since
// left the spool (taken by the wrapper's fast path). The worker follows that
// position's timeline only; history files and other timelines are fetched by
// wal-get itself. It exits, emptying the spool, once the position has not
// moved for IDLE_MS (recovery over, or a standby waiting for new WAL).

import { existsSync } from 'node:fs';
import { silentLogger } from '@cairn/core/cli/log';
import { PREFETCH_JOB_ENV } from '@cairn/core/spool/contract';
import { isPrivate } from '@cairn/core/spool/spool-dir';
import { spawnWorker } from '@cairn/core/spool/worker';
import { closeRepositories, loadKey, openRepositories } from '@cairn/core/repo/repositories';
import { sleep } from '@cairn/core/util/limit';
import { nextSegmentName, sameTimeline } from '@cairn/core/wal/index';
import { fetchWal } from './fetch.js';
import { GetSpool } from './get-spool.js';
import { renewLease } from './lease-renewal.js';

export interface PrefetchJob {
  repos: string[];
  cluster: string;
  keyFile: string | undefined;
  keyCommand?: string | undefined;
  systemId: string;
  segmentSize: number;
  /** Segments kept ahead. */
  count: number;
  concurrency: number;
  spoolDir: string;
  /** A restore's reader lease, renewed while PostgreSQL's position moves. */
  lease?: string;
}

const IDLE_MS = 15_000;
const POLL_MS = 20;
/** After "not in the archive", ask again only after this long (a standby's next segment). */
const MISS_RETRY_MS = 1_000;
/** Reads of the lease while recovery moves, at most this often (the lease itself says when a write is due). */
const LEASE_CHECK_MS = 1_000;

/** Starts a worker unless one is running. */
export async function startPrefetch(job: PrefetchJob, env: NodeJS.ProcessEnv): Promise<void> {
  if (await new GetSpool(job.spoolDir).isLocked()) return;
  spawnWorker('prefetch-main.js', import.meta.url, { envName: PREFETCH_JOB_ENV, value: job }, env);
}


/** The worker's body. Errors are swallowed: PostgreSQL's own call decides. */
/** `env`: the worker process's environment, given by its entry (prefetch-main.ts). */
export async function runPrefetch(job: PrefetchJob, env: NodeJS.ProcessEnv): Promise<void> {
  const spool = new GetSpool(job.spoolDir);
  if (!(await isPrivate(job.spoolDir))) return;
  if (!(await spool.lock())) return;
  const drivers = await openRepositories(job.repos, env).catch(() => undefined);
  try {
    if (!drivers) return;
    const key = await loadKey(job, env);
    const signal = new AbortController().signal;
    const delivered = new Set<string>();
    const inflight = new Set<string>();
    const missUntil = new Map<string, number>();
    let position: string | undefined;
    let movedAt = Date.now();
    let lease = job.lease;
    let leaseCheckedAt = 0;
    let renewing = false;

    const fetchOne = async (walName: string) => {
      inflight.add(walName);
      try {
        const r = await fetchWal(drivers, { cluster: job.cluster, systemId: job.systemId, walName, key }, spool.entryPath(walName), {
          retry: { attempts: 1, baseDelayMs: 0 },
          durable: false,
          signal,
          log: silentLogger,
          // A segment another repository must make up for is fetched by
          // wal-get itself, which says so in the server log.
          heal: false,
        });
        if (r.found) delivered.add(walName);
        else missUntil.set(walName, Date.now() + MISS_RETRY_MS);
      } catch {
        missUntil.set(walName, Date.now() + MISS_RETRY_MS);
      } finally {
        inflight.delete(walName);
      }
    };

    while (Date.now() - movedAt < IDLE_MS) {
      // Where is PostgreSQL?
      const present = new Set(await spool.entries());
      let pos = await spool.want();
      for (const d of delivered) {
        // Look again: a fetch may have finished after `present` was listed.
        if (present.has(d) || inflight.has(d) || existsSync(spool.entryPath(d))) continue;
        delivered.delete(d); // taken by PostgreSQL
        if (pos === undefined || (sameTimeline(d, pos) && d > pos)) pos = d;
      }
      if (pos !== undefined && pos !== position && (position === undefined || !sameTimeline(pos, position) || pos > position)) {
        position = pos;
        movedAt = Date.now();
        if (lease !== undefined && !renewing && movedAt - leaseCheckedAt >= LEASE_CHECK_MS) {
          leaseCheckedAt = movedAt;
          renewing = true;
          void renewLease(drivers, job.cluster, lease, new Date(), () => {}).then((r) => {
            if (r === 'absent') lease = undefined; // removed: nothing to renew
          }).finally(() => {
            renewing = false;
          });
        }
      }
      if (position === undefined) {
        await sleep(POLL_MS);
        continue;
      }
      const window = Array.from({ length: job.count }, (_, i) => nextSegmentName(position!, job.segmentSize, i + 1));
      const wanted = new Set(window);
      // Drop what PostgreSQL has moved past or another timeline's segments.
      for (const n of present) {
        if (!wanted.has(n) && !inflight.has(n)) {
          await spool.remove(n);
          delivered.delete(n);
        }
      }
      const now = Date.now();
      for (const n of window) {
        if (inflight.size >= job.concurrency) break;
        // `present` was listed before this pass's awaits, so a fetch that
        // finished since is in neither `present` nor `inflight`: without
        // `delivered` it was fetched again (under load, most passes), and the
        // second copy replaced the ready entry under a new inode, or came back
        // after PostgreSQL had taken the first. A delivered name still here
        // was in the spool after the listing (the loop above drops the others):
        // it is there, or taken since, which the next pass reads as the position.
        if (present.has(n) || inflight.has(n) || delivered.has(n) || (missUntil.get(n) ?? 0) > now) continue;
        void fetchOne(n);
      }
      await sleep(POLL_MS);
    }
    while (inflight.size > 0) await sleep(POLL_MS);
  } finally {
    await spool.clear();
    if (drivers) await closeRepositories(drivers);
    await spool.unlock();
  }
}
