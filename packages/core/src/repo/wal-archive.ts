// Storing and fetching WAL files in one repository. The rules (DESIGN §4.2,
// §4.3): a WAL file is never overwritten with different content; an identical
// re-push succeeds; every byte read back is checked against its SHA-256.

import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CairnError } from '../cli/errors.js';
import { createHashStage, decodeStagesFor, type EncryptionKey } from '../codec/index.js';
import { WriteConflictError, type StorageDriver } from '../storage/driver.js';
import { parseWalObjectName, walFilePrefix, walObjectKey, type WalObjectName } from './layout.js';

export interface StoredWal extends WalObjectName {
  key: string;
  size: number;
  mtime: Date;
}

/** Every stored copy of `walName` (normally zero or one). */
export async function findWal(driver: StorageDriver, cluster: string, systemId: string, walName: string, signal?: AbortSignal): Promise<StoredWal[]> {
  const found: StoredWal[] = [];
  for await (const obj of driver.list(walFilePrefix(cluster, systemId, walName), signal)) {
    const parsed = parseWalObjectName(obj.key);
    // The prefix ends in '-', so only exact names match; skip foreign debris.
    if (parsed && parsed.walName === walName) found.push({ ...parsed, key: obj.key, size: obj.size, mtime: obj.mtime });
  }
  return found;
}

export type StoreOutcome = 'stored' | 'identical';

function duplicateError(walName: string, url: string, stored: string, ours: string): CairnError {
  return new CairnError(
    'WAL_DUPLICATE',
    `WAL file "${walName}" is already archived in repository "${url}" with different content (stored sha256 ${stored.slice(0, 12)}…, this one ${ours.slice(0, 12)}…)`,
    {
      hint: 'the stored copy is kept; check that no two servers archive into the same --cluster, and compare the files before removing anything',
    },
  );
}

/**
 * Stores one WAL file whose plaintext SHA-256 is `sha256` and whose encoded
 * bytes are `encoded` (or a factory for a stream of them).
 */
export async function storeWal(
  driver: StorageDriver,
  args: {
    cluster: string;
    systemId: string;
    walName: string;
    sha256: string;
    ext: string;
    body: () => Buffer | NodeJS.ReadableStream;
    signal?: AbortSignal;
  },
): Promise<StoreOutcome> {
  const { cluster, systemId, walName, sha256, ext, signal } = args;
  const check = async (): Promise<StoreOutcome | undefined> => {
    const existing = await findWal(driver, cluster, systemId, walName, signal);
    if (existing.some((e) => e.sha256 === sha256)) return 'identical';
    if (existing.length > 0) throw duplicateError(walName, driver.url, existing[0]!.sha256, sha256);
    return undefined;
  };
  const before = await check();
  if (before) return before;
  try {
    const body = args.body();
    await driver.write(walObjectKey(cluster, systemId, walName, sha256, ext), body as Buffer, { ifAbsent: true, ...(signal ? { signal } : {}) });
  } catch (err) {
    // Same content under the same key won a race (same sha, same ext): fine.
    if (err instanceof WriteConflictError) return 'identical';
    throw err;
  }
  // Without an atomic create, a racing writer with other content may have
  // stored a different key at the same time: look again, and report it.
  if (!driver.features.atomicIfAbsent) {
    const existing = await findWal(driver, cluster, systemId, walName, signal);
    const other = existing.find((e) => e.sha256 !== sha256);
    if (other) throw duplicateError(walName, driver.url, other.sha256, sha256);
  }
  return 'stored';
}

/**
 * Streams a stored WAL object, decoded, into `sink`, verifying its SHA-256 at
 * the end. The caller must not use what the sink received unless this
 * resolves.
 */
export async function readWalInto(
  driver: StorageDriver,
  stored: StoredWal,
  key: EncryptionKey | undefined,
  sink: Writable,
  signal?: AbortSignal,
): Promise<{ bytes: number }> {
  const label = `${stored.walName} in repository "${driver.url}"`;
  const source = await driver.read(stored.key, signal);
  const hash = createHashStage();
  await pipeline([source, ...decodeStagesFor(stored.key, key, label), hash.stage, sink], signal ? { signal } : {});
  if (hash.digest() !== stored.sha256) {
    throw new CairnError('CHECKSUM_MISMATCH', `WAL file ${label} fails its checksum (expected sha256 ${stored.sha256.slice(0, 12)}…, got ${hash.digest().slice(0, 12)}…)`, {
      hint: 'the stored object is corrupted; run cairn-verify, and restore from another repository if you have one',
    });
  }
  return { bytes: hash.bytes() };
}
