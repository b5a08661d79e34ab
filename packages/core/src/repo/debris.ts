// Leftovers of unfinished writes in a repository (temp files of a killed
// writer, empty directories): found through the driver, judged abandoned by
// their writer (gone, on this host) or their age, reported by verify and
// removed by expire and by a rerun of the tool that left them (issue 11).

import type { DebrisInfo, StorageDriver } from '../storage/driver.js';
import { isWriterGone } from '../util/debris.js';

/** Every leftover under `<cluster>/`; none for drivers that have none (S3). */
export async function listRepoDebris(driver: StorageDriver, cluster: string, signal?: AbortSignal, sub = ''): Promise<DebrisInfo[]> {
  if (driver.listDebris === undefined) return [];
  const out: DebrisInfo[] = [];
  for await (const d of driver.listDebris(`${cluster}/${sub}`, signal)) out.push(d);
  return out;
}

/**
 * The leftovers that are abandoned at `now`: their writer is gone, or
 * (whoever wrote them) nothing touched them for `graceMs`; a writer on
 * another host may be slow, never beyond the grace period.
 */
export function abandonedDebris(items: readonly DebrisInfo[], now: Date, graceMs: number): DebrisInfo[] {
  const before = now.getTime() - graceMs;
  return items.filter((d) => isWriterGone(d.writer) || d.mtime.getTime() <= before);
}

/**
 * What a rerun of a tool does first: removes the leftovers under
 * `<cluster>/<sub>` whose writer is gone or older than `graceMs`; best effort
 * (the next run, or expire, tries again). Returns what it removed.
 */
export async function sweepRepoDebris(driver: StorageDriver, cluster: string, sub: string, now: Date, graceMs: number, signal?: AbortSignal): Promise<DebrisInfo[]> {
  if (driver.removeDebris === undefined) return [];
  const gone: DebrisInfo[] = [];
  for (const d of abandonedDebris(await listRepoDebris(driver, cluster, signal, sub), now, graceMs)) {
    try {
      await driver.removeDebris(d.path, signal);
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
export function describeRepoDebris(items: readonly DebrisInfo[]): string[] {
  if (items.length === 0) return [];
  const temps = items.filter((d) => !d.path.endsWith('/'));
  const dirs = items.length - temps.length;
  const bytes = temps.reduce((n, d) => n + d.size, 0);
  const parts = [
    ...(temps.length ? [`${temps.length} temp file${temps.length === 1 ? '' : 's'} (${bytes} bytes) of unfinished writes`] : []),
    ...(dirs ? [`${dirs} empty director${dirs === 1 ? 'y' : 'ies'}`] : []),
  ];
  const oldest = items.reduce((a, d) => (d.mtime < a.mtime ? d : a)).path;
  return [`${parts.join(' and ')}, e.g. "${oldest}" (a killed run or a full disk; the next run on this host or cairn-expire after --debris-grace removes them)`];
}
