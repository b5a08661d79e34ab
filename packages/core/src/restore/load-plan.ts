// The I/O half of restore planning: read one repository's catalog (backup
// manifests, the WAL listing, the decoded history files) and hand it to the
// pure planner; over several repositories, the first that can make a plan.

import { CairnError, toCairnError } from '../cli/errors.js';
import type { EncryptionKey } from '../codec/index.js';
import { listWalArchive, readBackupSummaries, readHistories } from '../repo/catalog.js';
import { openCluster } from '../repo/repo-config.js';
import type { StorageDriver } from '../storage/driver.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { quote } from '../wal/quote.js';
import type { RecoveryTarget, RestorePlan } from './plan-format.js';
import { planRestore } from './planner.js';

export interface MakePlanArgs {
  /** The configured repositories, in the order to try them. */
  drivers: StorageDriver[];
  cluster: string;
  key: EncryptionKey | undefined;
  target: RecoveryTarget;
  set?: string;
  now: Date;
  signal?: AbortSignal;
}

/**
 * Plans the restore from the first repository that can: each is read and
 * planned alone (a plan never mixes repositories). When none can, throws the
 * first repository's error. A plan from a later repository says in its
 * warnings why the earlier ones could not make it.
 */
export async function makePlanFromRepositories(args: MakePlanArgs): Promise<RestorePlan> {
  if (args.drivers.length === 0) {
    throw new CairnError('CONFIG_INVALID', 'no repository configured', {
      hint: 'give --repo URL, set CAIRN_REPO, or add "repo = URL" to the config file (/etc/cairn/cairn.conf)',
    });
  }
  const failures: { url: string; err: CairnError }[] = [];
  for (const driver of args.drivers) {
    try {
      const plan = await planFromRepository(driver, args);
      plan.warnings.unshift(...failures.map((f) => `repository ${quote(f.url)} could not make a plan: ${f.err.message}`));
      return plan;
    } catch (err) {
      args.signal?.throwIfAborted();
      failures.push({ url: driver.url, err: toCairnError(err) });
    }
  }
  throw failures[0]!.err;
}

/** Reads one repository's catalog and plans from it. */
export async function planFromRepository(driver: StorageDriver, args: Omit<MakePlanArgs, 'drivers'>): Promise<RestorePlan> {
  const { cluster, signal } = args;
  // A wrong or missing key is told before any history file fails to decode.
  const key = (await openCluster(driver, cluster, args.key, signal))?.dataKey ?? args.key;

  const backups = await readBackupSummaries(driver, cluster, signal ? { signal } : {});

  const wal = new Map<string, Map<string, { mtime: Date }>>();
  const histories = new Map<string, Map<number, TimelineHistoryEntry[]>>();
  const archive = await listWalArchive(driver, cluster, signal);
  for (const systemId of new Set(backups.map((b) => b.systemId))) {
    const listing = archive.get(systemId);
    wal.set(systemId, new Map([...(listing?.segments ?? [])].map(([name, s]) => [name, { mtime: s.mtime }])));
    histories.set(systemId, listing ? await readHistories(driver, listing, key, signal) : new Map());
  }

  return planRestore({
    cluster,
    repo: driver.url,
    backups,
    wal,
    histories,
    target: args.target,
    ...(args.set === undefined ? {} : { set: args.set }),
    now: args.now,
  });
}
