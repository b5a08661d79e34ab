// cairn-expire as a function: per repository, read the catalog, plan
// (core/expire/plan, pure), and unless it is a dry run apply the plan under
// the expire lease (which keeps basebackup and dump out meanwhile).

import { CairnError } from '@cairn/core/cli/errors';
import { formatBytes } from '@cairn/core/cli/format';
import type { Settings } from '@cairn/core/config/settings';
import type { EncryptionKey } from '@cairn/core/codec/index';
import { applyExpire, readExpireCatalog, type ApplyProgress } from '@cairn/core/expire/apply';
import { hasBackupPolicy, hasDumpPolicy, planExpire, type ExpirePlan, type ExpirePolicy, type ExpireResult } from '@cairn/core/expire/plan';
import { leaseOptionsFor, withLeases } from '@cairn/core/repo/lease';
import { openCluster } from '@cairn/core/repo/repo-config';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { parseDuration } from '@cairn/core/util/duration';
import type { Logger } from '@cairn/core/cli/log';

/** Count flags (name → policy field); each takes N ≥ 1. */
export const COUNT_FLAGS = [
  ['keep-full', 'keepFull', 'the newest N full backups, with every backup that depends on them'],
  ['keep-diff', 'keepDiff', 'the newest N differential backups, with their chains and the incremental backups on them (fulls are left to the other policies)'],
  ['keep-daily', 'keepDaily', 'the newest backup of each of the last N UTC days that have one'],
  ['keep-weekly', 'keepWeekly', 'the newest backup of each of the last N ISO weeks that have one'],
  ['keep-monthly', 'keepMonthly', 'the newest backup of each of the last N months that have one'],
  ['keep-yearly', 'keepYearly', 'the newest backup of each of the last N years that have one'],
  ['keep-dumps', 'keepDumps', 'per database: the newest N dumps'],
  ['keep-dumps-daily', 'keepDumpsDaily', 'per database: the newest dump of each of the last N days that have one'],
  ['keep-dumps-weekly', 'keepDumpsWeekly', 'per database: the newest dump of each of the last N ISO weeks that have one'],
  ['keep-dumps-monthly', 'keepDumpsMonthly', 'per database: the newest dump of each of the last N months that have one'],
  ['keep-dumps-yearly', 'keepDumpsYearly', 'per database: the newest dump of each of the last N years that have one'],
] as const satisfies readonly (readonly [string, keyof ExpirePolicy, string])[];

export const WINDOW_FLAGS = [
  ['keep-within', 'keepWithin', 'a recovery window: every backup and WAL needed to restore to any point of the last DURATION (e.g. 14d)'],
  ['keep-dumps-within', 'keepDumpsWithin', 'per database: every dump of the last DURATION, and the one before it'],
] as const satisfies readonly (readonly [string, keyof ExpirePolicy, string])[];

export const DEFAULT_DEBRIS_GRACE = '6h';

/**
 * The policy from settings; USAGE (exit 2) for no policy at all, a count
 * below 1 or a bad duration.
 */
export function policyFrom(s: Settings): ExpirePolicy {
  const policy: ExpirePolicy = { debrisGrace: parseDuration(String(s['debris-grace'] ?? DEFAULT_DEBRIS_GRACE), '--debris-grace') };
  const p = policy as unknown as Record<string, unknown>;
  for (const [flag, field] of COUNT_FLAGS) {
    const raw = s[flag];
    if (raw === undefined) continue;
    const text = String(raw).trim();
    if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
      throw new CairnError('USAGE', `invalid --${flag} ${JSON.stringify(String(raw))}: expected a whole number of at least 1`, {
        hint: `--${flag} N keeps N; to keep nothing by this rule leave the flag out`,
      });
    }
    p[field] = Number(text);
  }
  for (const [flag, field] of WINDOW_FLAGS) {
    const raw = s[flag];
    if (raw !== undefined) p[field] = parseDuration(String(raw), `--${flag}`);
  }
  if (!hasBackupPolicy(policy) && !hasDumpPolicy(policy)) {
    throw new CairnError('USAGE', 'no retention policy given', {
      hint: 'give at least one of --keep-full, --keep-diff, --keep-within, --keep-daily/-weekly/-monthly/-yearly, --keep-dumps, --keep-dumps-within, --keep-dumps-daily/-weekly/-monthly/-yearly',
    });
  }
  return policy;
}

export interface ExpireOptions {
  drivers: StorageDriver[];
  cluster: string;
  key: EncryptionKey | undefined;
  policy: ExpirePolicy;
  dryRun: boolean;
  lockWaitMs: number;
  /** Told as each repository is done, so its output is not lost when a later one fails. */
  onRepository?: (o: RepositoryOutcome) => void;
}

export interface RepositoryOutcome {
  plan: ExpirePlan;
  /** Keys deleted (0 for a dry run). */
  keysRemoved: number;
  /** Objects the storage would not delete yet (Object Lock retention), with the rest of their backup, dump or WAL range. */
  kept?: ApplyProgress['kept'];
}

/** Plans (and applies) expiry in each repository in turn; the first error stops it. */
export async function expire(opts: ExpireOptions, ctx: { now: () => Date; signal: AbortSignal; log: Logger }): Promise<RepositoryOutcome[]> {
  const out: RepositoryOutcome[] = [];
  for (const driver of opts.drivers) {
    if (opts.dryRun) {
      const { plan } = await planRepository(driver, opts, ctx.now(), ctx.signal);
      out.push({ plan, keysRemoved: 0 });
      opts.onRepository?.(out.at(-1)!);
      continue;
    }
    const leaseOpts = leaseOptionsFor('expire', opts.lockWaitMs, ctx);
    // The catalog is read under the lease: no backup or dump can start or
    // finish between planning and deleting.
    out.push(await withLeases(driver, opts.cluster, leaseOpts, async (signal) => {
      const { plan, steps } = await planRepository(driver, opts, ctx.now(), signal);
      const done = await applyExpire(driver, steps, signal);
      for (const k of done.kept) ctx.log.warn(`kept ${k.step} ${JSON.stringify(k.name)}: the storage would not delete ${JSON.stringify(k.key)} yet (${k.reason}); a later run removes it once its retention ends`);
      return { plan, keysRemoved: done.keysRemoved, ...(done.kept.length > 0 ? { kept: done.kept } : {}) };
    }));
    opts.onRepository?.(out.at(-1)!);
  }
  return out;
}

async function planRepository(driver: StorageDriver, opts: ExpireOptions, now: Date, signal: AbortSignal): Promise<ExpireResult> {
  // A wrong key is told before any history file fails to decode.
  const key = (await openCluster(driver, opts.cluster, opts.key, signal))?.dataKey ?? opts.key;
  const catalog = await readExpireCatalog(driver, opts.cluster, key, signal);
  return planExpire(catalog, opts.policy, now);
}

function count(k: number, one: string, many = `${one}s`): string {
  return `${k} ${k === 1 ? one : many}`;
}

/** The one-line summary for stderr. */
export function formatSummary(o: RepositoryOutcome, dryRun: boolean): string {
  const t = o.plan.totals;
  return (
    `cairn-expire: repository "${o.plan.repo}": ${dryRun ? 'would remove' : 'removed'} ` +
    `${count(t.backupsRemoved, 'backup')} (${t.backupsKept} kept), ${count(t.dumpsRemoved, 'dump')} (${t.dumpsKept} kept), ` +
    `${count(t.walSegmentsRemoved, 'WAL segment')} (${count(t.walFilesRemoved, 'file')}), ${count(t.debrisObjectsRemoved, 'debris object')}` +
    `${t.readersRemoved > 0 ? `, ${count(t.readersRemoved, 'lapsed reader lease')}` : ''}; ` +
    `${dryRun ? 'would free' : 'freed'} ${formatBytes(t.bytes)}${readersKept(t)}` +
    `${o.kept && o.kept.length > 0 ? `; ${count(o.kept.length, 'object')} kept: not deletable yet (retention)` : ''}\n`
  );
}

/** "; 1 live reader lease kept 2 backups and 40 WAL segments": what stays only for restores and drills in progress. */
function readersKept(t: ExpirePlan['totals']): string {
  if (t.readersLive === 0) return '';
  const what = [
    ...(t.backupsKeptForReaders > 0 ? [count(t.backupsKeptForReaders, 'backup')] : []),
    ...(t.dumpsKeptForReaders > 0 ? [count(t.dumpsKeptForReaders, 'dump')] : []),
    ...(t.walSegmentsKeptForReaders > 0 ? [count(t.walSegmentsKeptForReaders, 'WAL segment')] : []),
  ];
  const kept = what.length === 0 ? 'kept nothing the policies would remove' : `kept ${what.length === 1 ? what[0] : `${what.slice(0, -1).join(', ')} and ${what.at(-1)}`}`;
  return `; ${count(t.readersLive, 'live reader lease')} ${kept}`;
}
