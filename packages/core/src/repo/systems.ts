// The registry of PostgreSQL systems a cluster has been (docs/design.md §3): WAL names
// restart at timeline 1 after initdb or pg_upgrade, so WAL is namespaced by
// system identifier, and wal-push refuses a system nobody registered
// (the failure behind wal-g#636 and plugin-barman-cloud#263).

import { CairnError } from '../cli/errors.js';
import type { StorageDriver } from '../storage/driver.js';
import { createJsonObject, readJsonObject } from './json-object.js';
import { systemKey, systemsPrefix } from './layout.js';

export interface SystemRecord {
  systemId: string;
  firstSeen: string;
  registeredBy: string;
  walSegmentSize?: number;
  pgVersion?: string;
}

export async function listSystems(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<string[]> {
  const ids: string[] = [];
  for await (const obj of driver.list(systemsPrefix(cluster), signal)) {
    const m = /\/systems\/(\d+)\.json$/.exec(obj.key);
    if (m) ids.push(m[1]!);
  }
  return ids;
}

export async function readSystem(driver: StorageDriver, cluster: string, systemId: string, signal?: AbortSignal): Promise<SystemRecord | undefined> {
  return readJsonObject<SystemRecord>(driver, systemKey(cluster, systemId), signal);
}

/**
 * Makes sure `record.systemId` may store WAL in the cluster: registered
 * already, or the cluster has no system yet (first push), or `force`
 * (the operator's explicit registration).
 */
export async function ensureSystemRegistered(
  driver: StorageDriver,
  cluster: string,
  record: SystemRecord,
  opts: { force: boolean; signal?: AbortSignal },
): Promise<'registered' | 'known'> {
  if (await driver.stat(systemKey(cluster, record.systemId), opts.signal)) return 'known';
  const others = await listSystems(driver, cluster, opts.signal);
  if (others.length > 0 && !opts.force) {
    throw new CairnError(
      'SYSTEM_MISMATCH',
      `database system ${record.systemId} is not registered in repository "${driver.url}" cluster "${cluster}", which holds system ${others.join(', ')}`,
      {
        hint: 'after initdb or pg_upgrade register the new system with --register-system (or take a cairn basebackup of it); if this is another server, give it its own --cluster',
      },
    );
  }
  await createJsonObject(driver, systemKey(cluster, record.systemId), record, opts.signal);
  return 'registered';
}
