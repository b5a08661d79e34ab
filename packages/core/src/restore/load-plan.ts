// The I/O half of restore planning: read one repository's catalog (backup
// manifests, the WAL listing, the decoded history files) and hand it to the
// pure planner; over several repositories, the first that can make a plan —
// alone, else with WAL the others hold (issue 18 item 3).

import { CairnError, toCairnError } from '../cli/errors.js';
import type { EncryptionKey } from '../codec/index.js';
import { listWalArchive, readBackupSummaries, readHistories, type WalListing } from '../repo/catalog.js';
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
 * planned alone first (a plan's backup comes from one repository). When none
 * can, each is tried again with the WAL and history files the other
 * repositories hold for the same system (a segment lost from the one
 * repository that has the backup, taken by cairn-wal-get from another), and
 * the plan says which it needs from them. When that fails too, throws the
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
  if (args.drivers.length > 1) {
    for (const driver of args.drivers) {
      try {
        const plan = await planFromRepository(driver, args, args.drivers.filter((d) => d !== driver));
        plan.warnings.unshift(...failures.filter((f) => f.url !== driver.url).map((f) => `repository ${quote(f.url)} could not make a plan: ${f.err.message}`));
        return plan;
      } catch {
        args.signal?.throwIfAborted();
      }
    }
  }
  throw failures[0]!.err;
}

/**
 * Reads one repository's catalog and plans from it; with `others`, WAL and
 * history files only they hold count as there (cairn-restore's
 * restore_command lists them after this one), and a warning says so.
 */
export async function planFromRepository(driver: StorageDriver, args: Omit<MakePlanArgs, 'drivers'>, others: readonly StorageDriver[] = []): Promise<RestorePlan> {
  const { cluster, signal } = args;
  // A wrong or missing key is told before any history file fails to decode.
  const key = (await openCluster(driver, cluster, args.key, signal))?.dataKey ?? args.key;

  const backups = await readBackupSummaries(driver, cluster, signal ? { signal } : {});

  const wal = new Map<string, Map<string, { mtime: Date }>>();
  const histories = new Map<string, Map<number, TimelineHistoryEntry[]>>();
  const archive = await listWalArchive(driver, cluster, signal);
  // The others' archives, each decoded with its own data key; one that cannot be read lends nothing.
  const lenders: { driver: StorageDriver; key: EncryptionKey | undefined; archive: Map<string, WalListing> }[] = [];
  for (const o of others) {
    try {
      const k = (await openCluster(o, cluster, args.key, signal))?.dataKey ?? args.key;
      lenders.push({ driver: o, key: k, archive: await listWalArchive(o, cluster, signal) });
    } catch {
      signal?.throwIfAborted();
    }
  }
  /** Per system: segment name → the repository it is lent by. */
  const lent = new Map<string, Map<string, string>>();
  for (const systemId of new Set(backups.map((b) => b.systemId))) {
    const listing = archive.get(systemId);
    const segments = new Map([...(listing?.segments ?? [])].map(([name, s]) => [name, { mtime: s.mtime }]));
    const hist = listing ? await readHistories(driver, listing, key, signal) : new Map<number, TimelineHistoryEntry[]>();
    const mine = new Map<string, string>();
    for (const l of lenders) {
      const theirs = l.archive.get(systemId);
      if (theirs === undefined) continue;
      for (const [name, s] of theirs.segments) {
        if (segments.has(name)) continue;
        segments.set(name, { mtime: s.mtime });
        mine.set(name, l.driver.url);
      }
      const lacking = new Map([...theirs.histories].filter(([tli]) => !hist.has(tli)));
      if (lacking.size > 0) for (const [tli, h] of await readHistories(l.driver, { ...theirs, histories: lacking }, l.key, signal)) hist.set(tli, h);
    }
    wal.set(systemId, segments);
    histories.set(systemId, hist);
    lent.set(systemId, mine);
  }

  const plan = planRestore({
    cluster,
    repo: driver.url,
    backups,
    wal,
    histories,
    target: args.target,
    ...(args.set === undefined ? {} : { set: args.set }),
    now: args.now,
  });
  // Which of the segments the plan needs only the others hold.
  const needed = [...(lent.get(plan.systemId) ?? [])].filter(([name]) => plan.wal.some((r) => name.slice(0, 8) === r.from.slice(0, 8) && name >= r.from && name <= r.to));
  if (needed.length > 0) {
    const from = [...new Set(needed.map(([, url]) => url))].map((u) => quote(u)).join(', ');
    const names = needed.map(([name]) => name).sort();
    plan.warnings.push(`${names.length} WAL segment${names.length === 1 ? '' : 's'} the plan needs ${names.length === 1 ? 'is' : 'are'} not in repository ${quote(driver.url)} (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''}): cairn-wal-get takes ${names.length === 1 ? 'it' : 'them'} from ${from}; run cairn-verify on ${quote(driver.url)}`);
  }
  return plan;
}
