// The I/O half of restore planning: read one repository's catalog (backup
// manifests, the WAL listing, the decoded history files) and hand it to the
// pure planner; over several repositories, the first that can make a plan.

import { Writable } from 'node:stream';
import { CairnError, toCairnError } from '../cli/errors.js';
import type { EncryptionKey } from '../codec/index.js';
import { listBackupIds, readManifest, summarize, type BackupSummary } from '../backup/manifest.js';
import { parseWalObjectName, walSystemPrefix } from '../repo/layout.js';
import { checkKeyAgainst, readRepoConfig } from '../repo/repo-config.js';
import { readWalInto, type StoredWal } from '../repo/wal-archive.js';
import type { StorageDriver } from '../storage/driver.js';
import { parseTimelineHistory, type TimelineHistoryEntry } from '../wal/history.js';
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
  const { cluster, key, signal } = args;
  const cfg = await readRepoConfig(driver, cluster, signal);
  // A wrong or missing key is told before any history file fails to decode.
  if (cfg !== undefined) checkKeyAgainst(cfg, key, driver.url, cluster);

  // One manifest at a time, kept as a summary: file lists can be large.
  const backups: BackupSummary[] = [];
  for (const id of await listBackupIds(driver, cluster, signal)) {
    const m = await readManifest(driver, cluster, id, signal);
    if (m) backups.push(summarize(m));
  }

  const wal = new Map<string, Map<string, { mtime: Date }>>();
  const histories = new Map<string, Map<number, TimelineHistoryEntry[]>>();
  for (const systemId of new Set(backups.map((b) => b.systemId))) {
    const segments = new Map<string, { mtime: Date }>();
    const historyFiles = new Map<string, StoredWal>();
    for await (const obj of driver.list(walSystemPrefix(cluster, systemId), signal)) {
      const parsed = parseWalObjectName(obj.key);
      if (!parsed) continue;
      const stored: StoredWal = { ...parsed, key: obj.key, size: obj.size, mtime: obj.mtime };
      if (/^[0-9A-F]{24}$/.test(parsed.walName)) {
        // Two copies of one segment only differ in encoding (wal-push never
        // stores different content under one name): the first will do.
        if (!segments.has(parsed.walName)) segments.set(parsed.walName, { mtime: obj.mtime });
      } else if (parsed.walName.endsWith('.history') && !historyFiles.has(parsed.walName)) {
        historyFiles.set(parsed.walName, stored);
      }
    }
    const byTimeline = new Map<number, TimelineHistoryEntry[]>();
    for (const [name, stored] of historyFiles) {
      const text = await readHistoryText(driver, stored, key, signal);
      byTimeline.set(parseInt(name.slice(0, 8), 16), parseTimelineHistory(text, `${name} in repository "${driver.url}"`));
    }
    wal.set(systemId, segments);
    histories.set(systemId, byTimeline);
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

/** History files hold a line per timeline; anything this large is not one. */
const MAX_HISTORY_BYTES = 16 * 1024 * 1024;

/** Decodes and verifies a stored history file into text. */
async function readHistoryText(driver: StorageDriver, stored: StoredWal, key: EncryptionKey | undefined, signal?: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      total += chunk.length;
      if (total > MAX_HISTORY_BYTES) {
        cb(new CairnError('FORMAT_INVALID', `timeline history ${quote(stored.walName)} in repository ${quote(driver.url)} is larger than ${MAX_HISTORY_BYTES} bytes`, {
          hint: 'this is not a history file PostgreSQL wrote; run cairn-verify',
        }));
        return;
      }
      chunks.push(chunk);
      cb();
    },
  });
  await readWalInto(driver, stored, key, sink, signal);
  return Buffer.concat(chunks).toString('utf8');
}
