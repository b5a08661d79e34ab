// Reading what an info report needs from one repository: the catalog (its
// WAL from the one listing of the cluster that also gives sizes), the
// history files, the newest verify and drill results, the reader leases;
// then describing it (report.ts, pure). Shared by cairn-info and
// cairn-prom-export.

import { ERROR_CODES, EXIT, isCairnError, toCairnError, type ErrorCode } from '../cli/errors.js';
import type { EncryptionKey } from '../codec/index.js';
import { createWalArchiveCollector, readHistories, readRepoCatalog } from '../repo/catalog.js';
import { compareDrillIds } from '../drill/result-format.js';
import { readJsonObject } from '../repo/json-object.js';
import { openCluster } from '../repo/repo-config.js';
import { closeRepositories, loadKey, openRepositories, type KeySource } from '../repo/repositories.js';
import { listReaderLeases } from '../repo/reader-lease.js';
import { readSystem, type SystemRecord } from '../repo/systems.js';
import type { StorageDriver } from '../storage/driver.js';
import { readLatestVerifyResult } from '../verify/result-format.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { describeRepository, emptyUsage, INFO_FORMAT, tallyObject, type InfoDamaged, type InfoDocument, type InfoReport } from './report.js';

const DRILL_KEY_RE = /\/drills\/(\d{8}-\d{6}(?:-\d+)?)\.json$/;

/** Reads what the report needs from one repository and describes it. */
export async function readInfoReport(
  driver: StorageDriver,
  cluster: string,
  operatorKey: EncryptionKey | undefined,
  now: Date,
  signal?: AbortSignal,
  warn: (line: string) => void = () => {},
): Promise<InfoReport> {
  // A wrong or missing key is told before any history file fails to decode.
  const cfg = await openCluster(driver, cluster, operatorKey, signal);
  const key = cfg?.dataKey ?? operatorKey;
  // A damaged manifest leaves its backup or dump out of the report, listed
  // in `damaged` and told on stderr, rather than hiding the whole repository;
  // the exit status is still 4.
  const damaged: InfoDamaged[] = [];
  // One listing of the whole cluster gives its size, the newest drill result
  // (drill ids sort by time, like verify's) and the WAL archive.
  const usage = emptyUsage();
  let drillKey: string | undefined;
  const listWal = async () => {
    const wal = createWalArchiveCollector(cluster);
    for await (const obj of driver.list(`${cluster}/`, signal)) {
      tallyObject(usage, cluster, obj.key, obj.size);
      wal.add(obj);
      if (obj.key.startsWith(`${cluster}/drills/`) && DRILL_KEY_RE.test(obj.key) && (drillKey === undefined || compareDrillIds(DRILL_KEY_RE.exec(obj.key)![1]!, DRILL_KEY_RE.exec(drillKey)![1]!) > 0)) drillKey = obj.key;
    }
    return wal.result();
  };
  const catalog = await readRepoCatalog(driver, cluster, {
    ...(signal ? { signal } : {}),
    onInvalid: (bad) => {
      damaged.push({ kind: bad.kind, id: bad.id, key: bad.key, message: bad.error.message });
      warn(`${bad.kind} ${bad.id} left out: its manifest ${JSON.stringify(bad.key)} is damaged (${bad.error.message}); run cairn-verify`);
    },
    listWal,
  });

  const histories = new Map<string, Map<number, TimelineHistoryEntry[]>>();
  for (const [systemId, listing] of catalog.wal) histories.set(systemId, await readHistories(driver, listing, key, signal));
  const systems: SystemRecord[] = [];
  for (const id of catalog.systems) {
    const r = await readSystem(driver, cluster, id, signal);
    if (r) systems.push(r);
  }

  let lastDrill: { id: string; body: unknown } | undefined;
  if (drillKey !== undefined) {
    let body: unknown;
    try {
      body = await readJsonObject<unknown>(driver, drillKey, signal);
    } catch (err) {
      // A damaged drill result must not hide the rest of the report.
      if (!isCairnError(err, 'FORMAT_INVALID')) throw err;
      body = null;
    }
    lastDrill = { id: DRILL_KEY_RE.exec(drillKey)![1]!, body };
  }

  const report = describeRepository(
    catalog,
    {
      usage,
      encrypted: cfg === undefined ? undefined : cfg.cipher !== 'none',
      systems,
      histories,
      lastVerify: await readLatestVerifyResult(driver, cluster, signal).catch((err: unknown) => {
        // A damaged verify result must not hide the rest of the report either.
        if (!isCairnError(err, 'FORMAT_INVALID')) throw err;
        return undefined;
      }),
      lastDrill,
      readers: await listReaderLeases(driver, cluster, signal),
    },
    now,
  );
  return damaged.length > 0 ? { ...report, damaged } : report;
}

export interface InfoOptions extends KeySource {
  repos: string[];
  cluster: string;
}

export type InfoReadError = InfoDocument['errors'][number];

/**
 * Opens one repository and reads its report. A repository that cannot be
 * read (unreachable, wrong key, damaged) gives its error instead; an internal
 * error or an abort is thrown.
 */
export async function readRepositoryReport(
  url: string,
  cluster: string,
  key: EncryptionKey | undefined,
  now: Date,
  signal: AbortSignal,
  warn: (line: string) => void,
  env: NodeJS.ProcessEnv,
): Promise<{ report: InfoReport } | { error: InfoReadError }> {
  let drivers: StorageDriver[] = [];
  try {
    drivers = await openRepositories([url], env);
    return { report: await readInfoReport(drivers[0]!, cluster, key, now, signal, warn) };
  } catch (thrown) {
    signal.throwIfAborted();
    const err = toCairnError(thrown);
    if (err.code === 'INTERNAL') throw err;
    return { error: { repo: drivers[0]?.url ?? url, code: err.code, message: err.message, hint: err.hint ?? null } };
  } finally {
    await closeRepositories(drivers);
  }
}

/**
 * One report per repository, in the order given. A repository that cannot
 * be read (unreachable, wrong key, damaged) is listed in `errors` and the
 * others are still reported; an internal error stops everything.
 */
export async function readInfoDocument(opts: InfoOptions, ctx: { now: () => Date; signal: AbortSignal; env: NodeJS.ProcessEnv; log: { warn: (line: string) => void } }): Promise<InfoDocument> {
  const key = await loadKey(opts, ctx.env, ctx.signal);
  const now = ctx.now();
  const doc: InfoDocument = { format: INFO_FORMAT, createdAt: now.toISOString(), repositories: [], errors: [] };
  for (const url of opts.repos) {
    const r = await readRepositoryReport(url, opts.cluster, key, now, ctx.signal, (l) => ctx.log.warn(l), ctx.env);
    if ('report' in r) doc.repositories.push(r.report);
    else doc.errors.push(r.error);
  }
  return doc;
}

/** The exit status for a document: 0, or the first unreadable repository's. */
export function infoExitStatus(doc: InfoDocument): number {
  const first = doc.errors[0];
  if (first === undefined) return doc.repositories.some((r) => (r.damaged?.length ?? 0) > 0) ? EXIT.DATA : EXIT.OK;
  return first.code in ERROR_CODES ? ERROR_CODES[first.code as ErrorCode] : EXIT.CONFIG;
}
