// repo.json: the cluster's format version and cipher, and a key check (never
// the key) so a wrong key is told apart from corrupted data. Written once by
// the first tool that stores anything in the cluster.
//
// Format 2 (issue 18): an encrypted cluster created by this cairn has a data
// key (repo/data-key.ts) and repo.json's key check is the data key's, so an
// older cairn refuses it ("newer format") instead of using the operator key
// on it. Format 1 clusters are encrypted under the operator key itself (until
// a cairn-rekey gives them a data key object).

import { CairnError } from '../cli/errors.js';
import { keyCheck, keyMatches, type EncryptionKey } from '../codec/index.js';
import type { StorageDriver } from '../storage/driver.js';
import { CAIRN_VERSION } from '../version.js';
import { clusterKey, createDataKey } from './data-key.js';
import { createJsonObject, readJsonObject } from './json-object.js';
import { dataKeysPrefix, repoConfigKey } from './layout.js';

export const REPO_FORMAT = 2;
/** Format of clusters without envelope encryption (no key, or created before issue 18). */
const REPO_FORMAT_DIRECT = 1;
export const CIPHER = 'aes-256-gcm-stream-v1';

export interface RepoConfig {
  format: number;
  cipher: 'none' | typeof CIPHER;
  /** HMAC of a constant under the key: lets a tool say "wrong key". */
  keyCheck?: string;
  created: string;
  createdBy: string;
}

/**
 * repo.json as a tool opened it, with the key the cluster's objects are
 * encrypted and decrypted with (`dataKey`, not enumerable: never serialised):
 * the data key when the cluster has one, else the operator's key; undefined
 * for an unencrypted cluster.
 */
export type OpenedRepoConfig = RepoConfig & { readonly dataKey: EncryptionKey | undefined };

function opened(cfg: RepoConfig, dataKey: EncryptionKey | undefined): OpenedRepoConfig {
  return Object.defineProperty({ ...cfg }, 'dataKey', { value: dataKey, enumerable: false }) as OpenedRepoConfig;
}

/**
 * The key the cluster's objects use (clusterKey), looked up alongside the
 * read of repo.json rather than after it: on an object store that is one
 * round trip fewer in line, and wal-push opens the cluster once per segment.
 * Its failure counts only where repo.json says the cluster is encrypted.
 */
function lookUpClusterKey(driver: StorageDriver, cluster: string, key: EncryptionKey | undefined, signal?: AbortSignal): Promise<EncryptionKey | undefined> {
  if (key === undefined) return Promise.resolve(undefined);
  const p = clusterKey(driver, cluster, key, signal);
  p.catch(() => {});
  return p;
}

export async function readRepoConfig(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<RepoConfig | undefined> {
  const cfg = await readJsonObject<RepoConfig>(driver, repoConfigKey(cluster), signal);
  if (cfg !== undefined && (typeof cfg.format !== 'number' || cfg.format > REPO_FORMAT)) {
    throw new CairnError('FORMAT_INVALID', `repository "${driver.url}" cluster "${cluster}" has format ${String(cfg.format)}, newer than this cairn understands (${REPO_FORMAT})`, {
      hint: 'upgrade cairn on this host',
    });
  }
  return cfg;
}

/** Checks the configured key (or its absence) against repo.json. */
function checkKeyAgainst(cfg: RepoConfig, key: EncryptionKey | undefined, url: string, cluster: string): void {
  if (cfg.cipher === 'none') {
    if (key !== undefined) {
      throw new CairnError('KEY_MISMATCH', `repository "${url}" cluster "${cluster}" is not encrypted, but an encryption key is configured`, {
        hint: 'drop --encryption-key-file / CAIRN_ENCRYPTION_KEY_FILE for this repository, or use a new cluster name for encrypted backups',
      });
    }
    return;
  }
  if (key === undefined) {
    throw new CairnError('KEY_INVALID', `repository "${url}" cluster "${cluster}" is encrypted and no encryption key is configured`, {
      hint: 'set --encryption-key-file or CAIRN_ENCRYPTION_KEY_FILE to the key file used when the repository was created',
    });
  }
  if (cfg.keyCheck === undefined || !keyMatches(key, cfg.keyCheck)) {
    throw new CairnError('KEY_MISMATCH', `the encryption key does not match repository "${url}" cluster "${cluster}"`, {
      hint: 'use the key file the repository was created with',
    });
  }
}

/**
 * Opens a cluster to read it: reads repo.json and, when there is one, checks
 * the configured key against it, so a wrong or missing key is told before
 * anything fails to decode. A cluster without repo.json gives undefined.
 */
export async function openCluster(driver: StorageDriver, cluster: string, key: EncryptionKey | undefined, signal?: AbortSignal): Promise<OpenedRepoConfig | undefined> {
  const clusterKeyP = lookUpClusterKey(driver, cluster, key, signal);
  const cfg = await readRepoConfig(driver, cluster, signal);
  if (cfg === undefined) return undefined;
  const dataKey = cfg.cipher === 'none' ? key : await clusterKeyP;
  checkKeyAgainst(cfg, dataKey, driver.url, cluster);
  return opened(cfg, dataKey);
}

/** Reads repo.json, creating it on first use; then checks the key. */
export async function ensureRepoConfig(
  driver: StorageDriver,
  cluster: string,
  key: EncryptionKey | undefined,
  now: Date,
  signal?: AbortSignal,
  /** How long racing first writers settle on a store that may not be atomic (createDataKey); for tests. */
  settleMs?: number,
): Promise<OpenedRepoConfig> {
  const clusterKeyP = lookUpClusterKey(driver, cluster, key, signal);
  let cfg = await readRepoConfig(driver, cluster, signal);
  if (cfg === undefined) {
    try {
      await refuseOrphanedCluster(driver, cluster, signal);
    } catch (err) {
      // Every writer creates repo.json before its first object, so objects
      // beside a repo.json that is there now come from a first use that ran
      // alongside ours (a basebackup while the first WAL push stored
      // repo.json and its system between our read and our listing).
      cfg = await readRepoConfig(driver, cluster, signal);
      if (cfg === undefined) throw err;
    }
  }
  let dataKey = cfg?.cipher === 'none' ? key : await clusterKeyP;
  if (cfg === undefined) {
    // A new encrypted cluster gets a data key first (a first writer that
    // died between the two left the data key: it is used, not replaced).
    // Also when a data key object is there already: another first writer may
    // be storing its own this moment (createDataKey settles which stands).
    if (key !== undefined) dataKey = (await createDataKey(driver, cluster, key, now, signal, settleMs)).key;
    const fresh: RepoConfig = {
      format: dataKey === undefined ? REPO_FORMAT_DIRECT : REPO_FORMAT,
      cipher: dataKey === undefined ? 'none' : CIPHER,
      ...(dataKey === undefined ? {} : { keyCheck: keyCheck(dataKey) }),
      created: now.toISOString(),
      createdBy: `cairn ${CAIRN_VERSION}`,
    };
    cfg = await createJsonObject(driver, repoConfigKey(cluster), fresh, signal);
  }
  checkKeyAgainst(cfg, dataKey, driver.url, cluster);
  return opened(cfg, dataKey);
}

/**
 * The repository, not the presence of a key, decides whether a cluster is
 * encrypted (issue 11): a cluster that lost repo.json but holds objects gets
 * no fresh repo.json, or a push without a key would store plaintext WAL
 * beside encrypted backups (and a push with one the reverse).
 */
async function refuseOrphanedCluster(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<void> {
  const mine = new Set([repoConfigKey(cluster)]);
  for await (const o of driver.list(`${cluster}/`, signal)) {
    // Leases are taken before the first backup writes repo.json.
    // A data key is stored before repo.json (a first writer that died between them leaves it).
    if (mine.has(o.key) || o.key.startsWith(`${cluster}/locks/`) || o.key.startsWith(dataKeysPrefix(cluster))) continue;
    const encrypted = o.key.endsWith('.enc');
    throw new CairnError('FORMAT_INVALID', `repository "${driver.url}" cluster "${cluster}" holds objects (e.g. "${o.key}") but no repo.json`, {
      hint: `restore ${repoConfigKey(cluster)} from a copy of the repository; cairn will not start it afresh over existing${encrypted ? ' encrypted' : ''} data`,
    });
  }
}
