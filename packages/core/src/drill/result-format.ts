// What cairn-drill stores in the repository after each drill, for cairn-info
// and cairn-prom-export: one new object per drill (never rewritten, docs/design.md
// §4.11), `<cluster>/drills/<drill id>.json`, the newest id being the last
// drill. Versioned; fields are only ever added. Documented in the README.

import { WriteConflictError, type StorageDriver } from '../storage/driver.js';
import { readJsonObject } from '../repo/json-object.js';

export const DRILL_RESULT_FORMAT = 'cairn.drill/1';

export interface DrillCheck {
  /** connect | recovery-target | amcheck | sql:<line> */
  name: string;
  ok: boolean;
  /** One line: what was found (the failure, or what passed). */
  message: string;
  /** The check could not run (pg_amcheck not installed); `ok` is then true. */
  skipped?: boolean;
}

export interface DrillResult {
  format: typeof DRILL_RESULT_FORMAT;
  /** `20261121-020000` (UTC start), with `-2`, `-3`… when a drill of the same second was stored: also the object's name. */
  id: string;
  cluster: string;
  repo: string;
  kind: 'backup' | 'dump';
  /** The backup restored (kind backup), else null. */
  backup: string | null;
  /** `DATABASE/ID` of the dump restored (kind dump), else null. */
  dump: string | null;
  /** The recovery target (kind backup): its kind and value as in the restore plan, the timeline it resolved to (null when no plan was made); null for a dump. */
  target: { kind: string; value: string | null; timeline: number | null } | null;
  ok: boolean;
  checks: DrillCheck[];
  /** Seconds cairn-restore took to lay the backup (or the dump) down; null when it did not finish. */
  restoreSeconds: number | null;
  /** Seconds from starting PostgreSQL until it was promoted (WAL replay); null for a dump or when it never promoted. */
  replaySeconds: number | null;
  /** Seconds from the drill's start (planning included) until the restored server accepted writes: the recovery time objective measured. */
  rtoSeconds: number | null;
  /** The target time (a time target), else the drill's start, minus the newest commit recovered, in seconds; null when unknown. */
  dataAgeSeconds: number | null;
  /** The newest commit recovered (pg_last_xact_replay_timestamp()), ISO 8601; null when unknown. */
  newestCommit: string | null;
  start: { time: string };
  stop: { time: string };
  /** Why the drill failed before its checks could run (restore failed, server did not start, timeout). */
  error?: string;
}

export function drillResultsPrefix(cluster: string): string {
  return `${cluster}/drills/`;
}

export function drillResultKey(cluster: string, id: string): string {
  return `${drillResultsPrefix(cluster)}${id}.json`;
}

const RESULT_KEY_RE = /\/(\d{8}-\d{6}(?:-\d+)?)\.json$/;

/** The newest stored drill result, or undefined when no drill ran. */
export async function readLatestDrillResult(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<DrillResult | undefined> {
  let newest: { key: string; id: string } | undefined;
  for await (const obj of driver.list(drillResultsPrefix(cluster), signal)) {
    const m = RESULT_KEY_RE.exec(obj.key);
    if (m && (newest === undefined || compareDrillIds(m[1]!, newest.id) > 0)) newest = { key: obj.key, id: m[1]! };
  }
  if (newest === undefined) return undefined;
  const r = await readJsonObject<DrillResult>(driver, newest.key, signal);
  return r?.format === DRILL_RESULT_FORMAT ? r : undefined;
}

/** Orders ids by time, then by their same-second suffix (`-10` after `-9`). */
export function compareDrillIds(a: string, b: string): number {
  const [as, an] = [a.slice(0, 15), Number(a.slice(16) || '1')];
  const [bs, bn] = [b.slice(0, 15), Number(b.slice(16) || '1')];
  return as < bs ? -1 : as > bs ? 1 : an - bn;
}

/**
 * Stores the result as a new object. Two drills of one cluster in the same
 * second get `-2`, `-3`… rather than one overwriting the other. Sets
 * `result.id` to the id stored under.
 */
export async function storeDrillResult(driver: StorageDriver, result: DrillResult, signal?: AbortSignal): Promise<string> {
  const base = result.id;
  for (let n = 1; n <= 20; n++) {
    result.id = n === 1 ? base : `${base}-${n}`;
    const key = drillResultKey(result.cluster, result.id);
    try {
      await driver.write(key, Buffer.from(JSON.stringify(result, null, 2) + '\n'), { ifAbsent: true, ...(signal ? { signal } : {}) });
      return key;
    } catch (err) {
      if (!(err instanceof WriteConflictError)) throw err;
    }
  }
  throw new WriteConflictError(drillResultKey(result.cluster, `${base}-20`), driver.url);
}
