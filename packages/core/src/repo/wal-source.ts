// Can a repository's "I do not have this WAL file" be believed? Only when it
// is there and holds the cluster and system asked for (docs/design.md §4.4, §4.12):
// an unmounted NAS, an empty or mistyped path, a wrong --cluster or
// --system-id all list no WAL, and PostgreSQL reads "not found" as the end
// of the archive and promotes early.

import { CairnError } from '../cli/errors.js';
import type { EncryptionKey } from '../codec/index.js';
import type { StorageDriver } from '../storage/driver.js';
import { quote } from '../wal/quote.js';
import { repoConfigKey, systemKey } from './layout.js';
import { openCluster } from './repo-config.js';
import { listSystems } from './systems.js';

/**
 * Throws unless `driver` holds `cluster` (a readable repo.json that agrees
 * with `key`) and has `systemId` registered in it: CONFIG_INVALID naming the
 * repository and what to check, KEY_INVALID/KEY_MISMATCH, or the storage
 * error that kept it from answering. Two small reads, made only when a WAL
 * file was not found.
 */
export async function checkWalSource(driver: StorageDriver, cluster: string, systemId: string, key: EncryptionKey | undefined, signal?: AbortSignal): Promise<void> {
  const [cfg, system] = await Promise.all([openCluster(driver, cluster, key, signal), driver.stat(systemKey(cluster, systemId), signal)]);
  if (cfg === undefined) {
    throw new CairnError(
      'CONFIG_INVALID',
      `repository ${quote(driver.url)} holds no cluster ${quote(cluster)} (no ${quote(repoConfigKey(cluster))}): it is not mounted, empty, not a directory, or --cluster is wrong`,
      { hint: 'mount the repository or correct --repo / --cluster; a repository that cannot be seen is never taken as "not in the archive"' },
    );
  }
  if (system === undefined) {
    const known = await listSystems(driver, cluster, signal).catch(() => []);
    throw new CairnError(
      'CONFIG_INVALID',
      `database system ${systemId} is not registered in repository ${quote(driver.url)} cluster ${quote(cluster)} (${known.length === 0 ? 'it holds none' : `it holds ${known.join(', ')}`})`,
      { hint: 'check --system-id, --cluster and --repo: this repository does not archive the server being recovered' },
    );
  }
}
