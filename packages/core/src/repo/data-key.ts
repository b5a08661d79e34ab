// A cluster's data key (envelope encryption, issue 18 item 4): objects are
// encrypted under a random data key, kept in `<cluster>/keys/datakey-NNNNNN.json`
// wrapped by the operator's key. Rotation (cairn-rekey) wraps the same data key
// with a new operator key in a NEW object with the next version: one small
// object, no re-backup, nothing rewritten (docs/design.md §4.11). The highest
// version is the only one that counts: a superseded wrap is no way in, even
// while it is still stored (rekey removes it where the storage lets it).
//
// Clusters written before this change have no data key object: their objects
// are encrypted under the operator's key itself, and keep working as before.
// cairn-rekey on such a cluster stores the old key's master as the data key,
// wrapped by the new one (everything old still reads); the old key then no
// longer opens the cluster through cairn, but a copy of the old key file still
// derives that data key (docs/threat-model.md "Keys").

import { CairnError } from '../cli/errors.js';
import {
  keyCheck,
  keyMatches,
  randomEncryptionKey,
  unwrapEncryptionKey,
  wrapEncryptionKey,
  type EncryptionKey,
  type WrappedKey,
} from '../codec/index.js';
import { WriteConflictError, type StorageDriver } from '../storage/driver.js';
import { CAIRN_VERSION } from '../version.js';
import { sleep } from '../util/limit.js';
import { readJsonObject } from './json-object.js';
import { dataKeyKey, dataKeysPrefix, parseDataKeyKey } from './layout.js';

export const DATA_KEY_FORMAT = 'cairn.datakey/1';

export interface DataKeyObject {
  format: typeof DATA_KEY_FORMAT;
  cluster: string;
  version: number;
  /** How `wrapped` was made (codec/encrypt.ts wrapEncryptionKey). */
  wrap: 'aes-256-gcm-hkdf-sha256-v1';
  /** Fingerprint and key check of the operator key that wraps it: "wrong key" is told apart from damage. */
  wrappedById: string;
  wrappedByCheck: string;
  /** keyCheck of the data key: the one repo.json holds. */
  dataKeyCheck: string;
  wrapped: WrappedKey;
  created: string;
  createdBy: string;
}

export interface ClusterDataKey {
  version: number;
  key: EncryptionKey;
}

/** The wrap binds the format, the cluster, the version and the data key's check: an object copied under another name fails to open. */
function aadOf(cluster: string, version: number, dataKeyCheck: string): Buffer {
  return Buffer.from(`${DATA_KEY_FORMAT}\0${cluster}\0${version}\0${dataKeyCheck}`, 'utf8');
}

function damaged(driver: StorageDriver, objectKey: string, why: string): CairnError {
  return new CairnError('FORMAT_INVALID', `data key object "${objectKey}" in repository "${driver.url}" ${why}`, {
    hint: 'the repository is damaged: restore the object from a copy of the repository (a changed or swapped key object is refused, never used)',
  });
}

/** The versions of the cluster's data key objects, lowest first. */
export async function listDataKeyVersions(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<number[]> {
  const versions: number[] = [];
  for await (const o of driver.list(dataKeysPrefix(cluster), signal)) {
    const v = parseDataKeyKey(cluster, o.key);
    if (v !== undefined) versions.push(v);
  }
  return versions.sort((a, b) => a - b);
}

function wrapObject(data: EncryptionKey, wrapping: EncryptionKey, cluster: string, version: number, now: Date): DataKeyObject {
  const dataKeyCheck = keyCheck(data);
  return {
    format: DATA_KEY_FORMAT,
    cluster,
    version,
    wrap: 'aes-256-gcm-hkdf-sha256-v1',
    wrappedById: wrapping.id,
    wrappedByCheck: keyCheck(wrapping),
    dataKeyCheck,
    wrapped: wrapEncryptionKey(data, wrapping, aadOf(cluster, version, dataKeyCheck)),
    created: now.toISOString(),
    createdBy: `cairn ${CAIRN_VERSION}`,
  };
}

/**
 * Opens the cluster's current data key (the highest version) with the
 * operator's key. undefined: the cluster has no data key object (written
 * before envelope encryption, or new). KEY_MISMATCH when the operator key is
 * not the one that wraps the current version (also a key cairn-rekey has
 * replaced); FORMAT_INVALID when the object is damaged.
 */
export async function openDataKey(driver: StorageDriver, cluster: string, operator: EncryptionKey, signal?: AbortSignal): Promise<ClusterDataKey | undefined> {
  const versions = await listDataKeyVersions(driver, cluster, signal);
  const version = versions.at(-1);
  if (version === undefined) return undefined;
  const objectKey = dataKeyKey(cluster, version);
  const obj = await readJsonObject<DataKeyObject>(driver, objectKey, signal);
  if (obj === undefined) throw damaged(driver, objectKey, 'vanished while it was read (a cairn-rekey running?); run again');
  if (obj.format !== DATA_KEY_FORMAT) {
    throw new CairnError('FORMAT_INVALID', `data key object "${objectKey}" in repository "${driver.url}" has format ${JSON.stringify(obj.format)}, which this cairn cannot read`, { hint: 'upgrade cairn on this host' });
  }
  if (obj.version !== version || obj.cluster !== cluster || typeof obj.dataKeyCheck !== 'string' || typeof obj.wrapped !== 'object' || obj.wrapped === null) {
    throw damaged(driver, objectKey, 'does not describe itself');
  }
  if (typeof obj.wrappedByCheck !== 'string' || !keyMatches(operator, obj.wrappedByCheck)) {
    throw new CairnError('KEY_MISMATCH', `the encryption key (id ${operator.id}) does not open repository "${driver.url}" cluster "${cluster}": its data key (version ${version}) is wrapped by key ${String(obj.wrappedById)}`, {
      hint: 'use the current key (a key replaced by cairn-rekey no longer opens the repository); check --encryption-key-file / --encryption-key-command',
    });
  }
  const data = unwrapEncryptionKey(obj.wrapped, operator, aadOf(cluster, version, obj.dataKeyCheck));
  if (data === undefined || !keyMatches(data, obj.dataKeyCheck)) throw damaged(driver, objectKey, 'does not open with the key that wrapped it');
  return { version, key: data };
}

/**
 * How long first writers of a cluster on a store that may not honour "only
 * if absent" let a racing writer's data key land before they read back the
 * one that stands (as a lease is confirmed: repo/lease.ts).
 */
export const DATA_KEY_SETTLE_MS = 1000;

/**
 * Makes a new cluster's data key (version 1) wrapped by the operator key,
 * write-once, or takes the one a first writer racing this one stored. Every
 * first writer ends with the key that stands: the loser of an atomic create
 * reads the winner's back. On a store that may ignore the condition (s3rver
 * and some older S3-compatible servers ignore If-None-Match), a racing
 * writer's key can land over ours after we looked, and a writer that found
 * one may see it replaced: every first writer then waits DATA_KEY_SETTLE_MS
 * before it reads back the key that stands, so all of them name the same one
 * in repo.json and encrypt under it (seen under load: wal-push and its
 * push-ahead worker creating a cluster at once, one key object left paired
 * with the other writer's repo.json, and the cluster no longer opened). A
 * store that refuses the probe's second conditional write is atomic: no wait.
 */
export async function createDataKey(driver: StorageDriver, cluster: string, operator: EncryptionKey, now: Date, signal?: AbortSignal, settleMs = DATA_KEY_SETTLE_MS): Promise<ClusterDataKey> {
  const obj = wrapObject(randomEncryptionKey(), operator, cluster, 1, now);
  const key = dataKeyKey(cluster, 1);
  const body = Buffer.from(JSON.stringify(obj, null, 2) + '\n');
  let wrote = true;
  try {
    await driver.write(key, body, { ifAbsent: true, ...(signal ? { signal } : {}) });
  } catch (err) {
    if (!(err instanceof WriteConflictError)) throw err;
    wrote = false;
  }
  if (!driver.features.atomicIfAbsent && !(wrote && (await driver.probeConditionalWrite?.(key, body, signal)))) await sleep(settleMs, signal);
  const opened = await openDataKey(driver, cluster, operator, signal);
  if (opened === undefined) throw damaged(driver, dataKeyKey(cluster, 1), 'is not there after it was written');
  return opened;
}

export interface RekeyResult {
  cluster: string;
  repo: string;
  /** The version replaced; 0 for a cluster that had no data key object (encrypted under the old key itself). */
  fromVersion: number;
  version: number;
  /** Fingerprints: the data key (unchanged), the old and the new operator key. */
  dataKeyId: string;
  oldKeyId: string;
  newKeyId: string;
  /** Superseded data key objects removed. */
  removed: string[];
  /** Superseded objects the storage would not remove (Object Lock retention): they cannot open the cluster through cairn, but hold the data key under the old key. */
  kept: { key: string; reason: string }[];
}

/**
 * Wraps the cluster's data key with `newKey` in a new object (the next
 * version), checks that it opens, then removes the superseded objects.
 * `repoKeyCheck` is repo.json's key check: for a cluster without a data key
 * object it proves `oldKey` is the key its objects are encrypted under.
 */
export async function rekeyDataKey(
  driver: StorageDriver,
  cluster: string,
  repoKeyCheck: string,
  oldKey: EncryptionKey,
  newKey: EncryptionKey,
  now: Date,
  signal?: AbortSignal,
): Promise<RekeyResult> {
  if (keyMatches(newKey, keyCheck(oldKey))) {
    throw new CairnError('USAGE', 'the new encryption key is the old one', { hint: 'give the key to replace as the old key and a different key as the new one' });
  }
  const current = await openDataKey(driver, cluster, oldKey, signal);
  let data: EncryptionKey;
  if (current === undefined) {
    // Written before envelope encryption: the data key is the old key's own master.
    if (!keyMatches(oldKey, repoKeyCheck)) {
      throw new CairnError('KEY_MISMATCH', `the old encryption key (id ${oldKey.id}) does not match repository "${driver.url}" cluster "${cluster}"`, {
        hint: 'give the key the repository is encrypted with as the old key',
      });
    }
    data = oldKey;
  } else {
    data = current.key;
  }
  if (!keyMatches(data, repoKeyCheck)) {
    throw new CairnError('FORMAT_INVALID', `the data key of repository "${driver.url}" cluster "${cluster}" does not match its repo.json`, {
      hint: 'the repository is damaged: restore repo.json and keys/ from a copy; nothing was changed',
    });
  }
  const version = (current?.version ?? 0) + 1;
  const objectKey = dataKeyKey(cluster, version);
  try {
    await driver.write(objectKey, Buffer.from(JSON.stringify(wrapObject(data, newKey, cluster, version, now), null, 2) + '\n'), { ifAbsent: true, ...(signal ? { signal } : {}) });
  } catch (err) {
    if (!(err instanceof WriteConflictError)) throw err;
    throw new CairnError('WRITE_CONFLICT', `another cairn-rekey stored data key version ${version} of repository "${driver.url}" cluster "${cluster}" first`, {
      hint: 'find out who rotated the key; then run cairn-rekey again with the key that one set as the old key',
    });
  }
  // Read back with the new key before the old wraps go: a rotation that
  // would lock everyone out stops here with the old key still working.
  const opened = await openDataKey(driver, cluster, newKey, signal);
  if (opened === undefined || opened.version !== version || !keyMatches(opened.key, repoKeyCheck)) {
    throw new CairnError('FORMAT_INVALID', `data key version ${version} of repository "${driver.url}" cluster "${cluster}" does not read back`, {
      hint: 'the storage did not keep what was written; check it, then run cairn-rekey again',
    });
  }
  const removed: string[] = [];
  const kept: RekeyResult['kept'] = [];
  for (const v of await listDataKeyVersions(driver, cluster, signal)) {
    if (v >= version) continue;
    const k = dataKeyKey(cluster, v);
    try {
      await driver.remove(k, signal);
      removed.push(k);
    } catch (err) {
      kept.push({ key: k, reason: (err as Error).message });
    }
  }
  return { cluster, repo: driver.url, fromVersion: current?.version ?? 0, version, dataKeyId: data.id, oldKeyId: oldKey.id, newKeyId: newKey.id, removed, kept };
}

/** The key a cluster's objects use: its data key when it has one, else the operator's key itself (clusters from before data keys). */
export async function clusterKey(driver: StorageDriver, cluster: string, operator: EncryptionKey, signal?: AbortSignal): Promise<EncryptionKey> {
  return (await openDataKey(driver, cluster, operator, signal))?.key ?? operator;
}

/**
 * The key each repository's objects decrypt with, looked up once per driver:
 * for readers that go straight to an object without opening repo.json
 * (wal-get starts once per segment). An unencrypted setup costs nothing.
 */
export function dataKeyResolver(cluster: string, operator: EncryptionKey | undefined): (driver: StorageDriver, signal?: AbortSignal) => Promise<EncryptionKey | undefined> {
  const cache = new WeakMap<StorageDriver, Promise<EncryptionKey | undefined>>();
  return (driver, signal) => {
    if (operator === undefined) return Promise.resolve(undefined);
    let p = cache.get(driver);
    if (p === undefined) {
      p = clusterKey(driver, cluster, operator, signal);
      // A failed lookup (storage blip) is tried again next time.
      p.catch(() => cache.delete(driver));
      cache.set(driver, p);
    }
    return p;
  };
}
