// Leftovers of unfinished writes in a repository (temp files of a killed
// writer, empty directories, intents of killed WAL pushes): found through the
// driver, judged abandoned by their writer (gone, on this host) or their age,
// reported by verify and removed by expire and by a rerun of the tool that
// left them (issue 11).

import type { DebrisInfo, StorageDriver } from '../storage/driver.js';
import { isWriterGone } from '../util/debris.js';
import { isWalIntentKey, walIntentsRoot } from './layout.js';
import { WAL_INTENT_STALE_MS } from './wal-archive.js';

export interface RepoDebris extends DebrisInfo {
  /**
   * An intent of a WAL push (locks/wal/…, wal-archive.ts) that a killed push
   * left: a stored object on every store, so `path` is its key and remove()
   * (not removeDebris) takes it away.
   */
  intent?: true;
}

/** Every leftover under `<cluster>/<sub>`: the driver's (fs only), then intents (every store). */
export async function listRepoDebris(driver: StorageDriver, cluster: string, signal?: AbortSignal, sub = ''): Promise<RepoDebris[]> {
  const out: RepoDebris[] = [];
  const intents = walIntentsRoot(cluster);
  if (driver.listDebris !== undefined) {
    for await (const d of driver.listDebris(`${cluster}/${sub}`, signal)) {
      // The intents' directories (and those holding them) are kept empty on
      // purpose (wal-archive.ts INTENT_REMOVE): not a leftover.
      if (d.path.endsWith('/') && (intents.startsWith(d.path) || d.path.startsWith(intents))) continue;
      out.push(d);
    }
  }
  if (intents.startsWith(`${cluster}/${sub}`)) {
    for await (const obj of driver.list(intents, signal)) {
      if (isWalIntentKey(cluster, obj.key)) out.push({ path: obj.key, size: obj.size, mtime: obj.mtime, intent: true });
    }
  }
  return out;
}

/** Removes one leftover listRepoDebris yielded; succeeds if it is gone. */
export async function removeRepoDebris(driver: StorageDriver, d: RepoDebris, signal?: AbortSignal): Promise<void> {
  if (d.intent) await driver.remove(d.path, signal);
  else await driver.removeDebris?.(d.path, signal);
}

/**
 * The leftovers that are abandoned at `now`: their writer is gone, or
 * (whoever wrote them) nothing touched them for `graceMs`; a writer on
 * another host may be slow, never beyond the grace period. An intent counts
 * as live for at least WAL_INTENT_STALE_MS whatever the grace period, as the
 * pushes themselves judge it: removing a live one would let a racing push
 * store at the same time.
 */
export function abandonedDebris<T extends RepoDebris>(items: readonly T[], now: Date, graceMs: number): T[] {
  const before = now.getTime() - graceMs;
  const intentsBefore = now.getTime() - Math.max(graceMs, WAL_INTENT_STALE_MS);
  return items.filter((d) => (d.intent ? d.mtime.getTime() <= intentsBefore : isWriterGone(d.writer) || d.mtime.getTime() <= before));
}

/**
 * What a rerun of a tool does first: removes the leftovers under
 * `<cluster>/<sub>` whose writer is gone or older than `graceMs`; best effort
 * (the next run, or expire, tries again). Returns what it removed.
 */
export async function sweepRepoDebris(driver: StorageDriver, cluster: string, sub: string, now: Date, graceMs: number, signal?: AbortSignal): Promise<RepoDebris[]> {
  const gone: RepoDebris[] = [];
  for (const d of abandonedDebris(await listRepoDebris(driver, cluster, signal, sub), now, graceMs)) {
    try {
      await removeRepoDebris(driver, d, signal);
      gone.push(d);
    } catch {
      if (signal?.aborted) throw signal.reason;
    }
  }
  return gone;
}

/** sweepRepoDebris at the start of a tool: only what a killed writer on this host left, said in the log. */
export async function sweepLeftovers(driver: StorageDriver, cluster: string, sub: string, ctx: { now: () => Date; signal: AbortSignal; log: { info(msg: string): void } }): Promise<void> {
  const gone = await sweepRepoDebris(driver, cluster, sub, ctx.now(), Infinity, ctx.signal);
  if (gone.length > 0) ctx.log.info(`removed ${gone.length} temp file(s) under "${cluster}/${sub}" left by a run that was killed`);
}

/** verify's note: how many leftovers, how big, and who removes them. */
export function describeRepoDebris(items: readonly RepoDebris[]): string[] {
  if (items.length === 0) return [];
  const intents = items.filter((d) => d.intent).length;
  const temps = items.filter((d) => !d.intent && !d.path.endsWith('/'));
  const dirs = items.length - temps.length - intents;
  const bytes = temps.reduce((n, d) => n + d.size, 0);
  const parts = [
    ...(temps.length ? [`${temps.length} temp file${temps.length === 1 ? '' : 's'} (${bytes} bytes) of unfinished writes`] : []),
    ...(dirs ? [`${dirs} empty director${dirs === 1 ? 'y' : 'ies'}`] : []),
    ...(intents ? [`${intents} intent${intents === 1 ? '' : 's'} of WAL pushes`] : []),
  ];
  const oldest = items.reduce((a, d) => (d.mtime < a.mtime ? d : a)).path;
  // Only expire removes intents: a rerun of a push leaves the others' alone.
  const who = intents === items.length ? 'cairn-expire after --debris-grace removes them' : 'the next run on this host or cairn-expire after --debris-grace removes them';
  return [`${parts.join(' and ')}, e.g. "${oldest}" (a killed run or a full disk; ${who})`];
}
