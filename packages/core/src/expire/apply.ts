// The I/O half of expire: read what the planner needs from one repository,
// and delete exactly the keys a plan lists, in its order.

import type { EncryptionKey } from '../codec/index.js';
import { backupsPrefix } from '../backup/manifest.js';
import { dumpsPrefix } from '../dump/manifest.js';
import { readHistories, readRepoCatalog } from '../repo/catalog.js';
import { listRepoDebris } from '../repo/debris.js';
import { listReaderLeases } from '../repo/reader-lease.js';
import type { ObjectInfo, StorageDriver } from '../storage/driver.js';
import type { ExpireCatalog, ExpireStep, ExpireWal } from './plan.js';

/**
 * Reads the catalog of one cluster for planExpire: backup and dump
 * summaries, every WAL object (every stored copy, so duplicates in other
 * encodings go too), decoded history files, and every object under backups/
 * and dumps/ with its mtime (for the keys to delete and for debris), the
 * leftovers of unfinished writes, and the reader leases of restores and
 * drills (what they need stays).
 */
export async function readExpireCatalog(driver: StorageDriver, cluster: string, key: EncryptionKey | undefined, signal?: AbortSignal): Promise<ExpireCatalog> {
  const cat = await readRepoCatalog(driver, cluster, signal);
  const wal = new Map<string, ExpireWal>();
  for (const [systemId, listing] of cat.wal) {
    wal.set(systemId, { files: listing.all, histories: await readHistories(driver, listing, key, signal) });
  }
  const objects: ObjectInfo[] = [];
  for (const p of [backupsPrefix(cluster), dumpsPrefix(cluster)]) {
    for await (const obj of driver.list(p, signal)) objects.push(obj);
  }
  const leftovers = await listRepoDebris(driver, cluster, signal);
  const readers = await listReaderLeases(driver, cluster, signal);
  return { cluster, repo: driver.url, backups: cat.backups, dumps: cat.dumps, wal, objects, leftovers, readers: readers.leases, unreadableReaders: readers.unreadable };
}

export interface ApplyProgress {
  stepsDone: number;
  keysRemoved: number;
  bytesFreed: number;
}

/**
 * Deletes the keys of each step, in order, one at a time: a backup's
 * manifest goes first and the backup stops existing with it, so an
 * interruption leaves only debris (which a later run removes), never a
 * backup with a manifest and missing objects. Stops at the first error.
 */
export async function applyExpire(driver: StorageDriver, steps: readonly ExpireStep[], signal?: AbortSignal, progress?: (p: ApplyProgress) => void): Promise<ApplyProgress> {
  const done: ApplyProgress = { stepsDone: 0, keysRemoved: 0, bytesFreed: 0 };
  for (const step of steps) {
    for (const key of step.keys) {
      signal?.throwIfAborted();
      if (step.kind === 'leftover') await driver.removeDebris?.(key, signal);
      else await driver.remove(key, signal);
      done.keysRemoved++;
    }
    done.stepsDone++;
    done.bytesFreed += step.bytes;
    progress?.(done);
  }
  return done;
}
