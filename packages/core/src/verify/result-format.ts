// What cairn-verify stores in the repository after each run, for cairn-info
// and cairn-prom-export: one new object per run (never rewritten, docs/design.md
// §4.11), `<cluster>/verify/<run id>.json`, the newest id being the last run.
// Versioned; fields are only ever added.

import type { StorageDriver } from '../storage/driver.js';
import { readJsonObject } from '../repo/json-object.js';

export const VERIFY_RESULT_FORMAT = 'cairn.verify/1';

export type VerifyProblemKind =
  | 'object-missing'
  | 'object-corrupt'
  | 'manifest-invalid'
  | 'backup-wal-missing'
  | 'wal-gap'
  | 'wal-corrupt'
  | 'history-missing'
  | 'history-mismatch'
  /** A history file says a timeline branched off where its parent has no WAL (no segment or .partial at the switch point). */
  | 'timeline-break'
  | 'dump-toc-invalid'
  | 'parent-missing'
  /** A WAL file whose page header names another system, timeline or segment than where it is stored. */
  | 'wal-mismatch';

export interface VerifyProblem {
  kind: VerifyProblemKind;
  /** The backup id, `DATABASE/ID` of a dump, a WAL file name or a timeline ("timeline 3"). */
  subject: string;
  /** The stored key concerned, when there is one. */
  key?: string;
  /** One line: what is wrong. */
  message: string;
  /** One line: what to do. */
  hint: string;
  /** A backup file's path and recorded SHA-256 (object-missing, object-corrupt): what another repository must hold to stand in. */
  path?: string;
  sha256?: string;
  /** Another repository verified in the same run that holds a good copy (same backup or segment, same SHA-256): issue 18 item 3. */
  goodCopy?: string;
}

export interface VerifyResult {
  format: typeof VERIFY_RESULT_FORMAT;
  /** `20261121-020000` (UTC start): also the object's name. */
  id: string;
  cluster: string;
  repo: string;
  /** all | set:<backup id> | dump:<DATABASE/ID>. */
  scope: string;
  start: { time: string };
  stop: { time: string };
  durationSeconds: number;
  ok: boolean;
  checked: {
    backups: number;
    dumps: number;
    /** Objects decoded and hashed. */
    objects: number;
    /** Plaintext bytes hashed. */
    bytes: number;
    /** Stored bytes read. */
    storedBytes: number;
    walSegments: number;
    historyFiles: number;
  };
  problems: VerifyProblem[];
  /** Things worth knowing that are no problem (foreign files under wal/). */
  notes?: string[];
}

export function verifyResultsPrefix(cluster: string): string {
  return `${cluster}/verify/`;
}

export function verifyResultKey(cluster: string, id: string): string {
  return `${verifyResultsPrefix(cluster)}${id}.json`;
}

/** The newest stored verify result, or undefined when verify never ran. */
export async function readLatestVerifyResult(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<VerifyResult | undefined> {
  let newest: string | undefined;
  for await (const obj of driver.list(verifyResultsPrefix(cluster), signal)) {
    if (/\/\d{8}-\d{6}\.json$/.test(obj.key) && (newest === undefined || obj.key > newest)) newest = obj.key;
  }
  if (newest === undefined) return undefined;
  const r = await readJsonObject<VerifyResult>(driver, newest, signal);
  return r?.format === VERIFY_RESULT_FORMAT ? r : undefined;
}
