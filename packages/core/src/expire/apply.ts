// The I/O half of expire: read what the planner needs from one repository,
// and delete exactly the keys a plan lists, in its order.

import type { EncryptionKey } from '../codec/index.js';
import { backupsPrefix } from '../backup/manifest.js';
import { dumpsPrefix } from '../dump/manifest.js';
import { readHistories, readRepoCatalog } from '../repo/catalog.js';
import { listRepoDebris } from '../repo/debris.js';
import { listReaderLeases } from '../repo/reader-lease.js';
import { isCairnError } from '../cli/errors.js';
import type { StorageDriver } from '../storage/driver.js';
import { createObjectGrouper, type ExpireCatalog, type ExpireStep, type ExpireWal } from './plan.js';

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
  // Counted per backup or dump, not held: a backup of a million files is a
  // few numbers here (issue 19); applyExpire lists what it deletes.
  const grouper = createObjectGrouper(cluster, false);
  for (const p of [backupsPrefix(cluster), dumpsPrefix(cluster)]) {
    for await (const obj of driver.list(p, signal)) grouper.add(obj);
  }
  const leftovers = await listRepoDebris(driver, cluster, signal);
  const readers = await listReaderLeases(driver, cluster, signal);
  return { cluster, repo: driver.url, backups: cat.backups, dumps: cat.dumps, wal, objects: [], objectGroups: grouper.result(), leftovers, readers: readers.leases, unreadableReaders: readers.unreadable };
}

export interface ApplyProgress {
  stepsDone: number;
  keysRemoved: number;
  bytesFreed: number;
  /**
   * Objects the storage would not delete yet (S3 Object Lock retention,
   * a bucket policy: STORAGE_DENIED on delete), kept with the reason; the
   * rest of their step is kept too (issue 18 item 5).
   */
  kept: { step: ExpireStep['kind']; name: string; key: string; reason: string }[];
}

/**
 * A step's keys, then (a step with a prefix) every object listed under its
 * prefix, read as they are deleted: each store's listing reads ahead of
 * what is removed behind it.
 */
async function* stepKeys(driver: StorageDriver, step: ExpireStep, signal?: AbortSignal): AsyncGenerator<string> {
  yield* step.keys;
  if (step.prefix === undefined) return;
  for await (const obj of driver.list(step.prefix, signal)) yield obj.key;
}

/**
 * Deletes the keys of each step, in order, one at a time: a backup's
 * manifest goes first and the backup stops existing with it, so an
 * interruption leaves only debris (which a later run removes), never a
 * backup with a manifest and missing objects. An object the storage
 * refuses to delete (STORAGE_DENIED) is not an error: it and the rest of its
 * step are kept and reported (a refused manifest keeps the whole backup, a
 * refused object after it leaves debris a later run removes); the next step
 * goes on. Any other error stops it.
 */
export async function applyExpire(driver: StorageDriver, steps: readonly ExpireStep[], signal?: AbortSignal, progress?: (p: ApplyProgress) => void): Promise<ApplyProgress> {
  const done: ApplyProgress = { stepsDone: 0, keysRemoved: 0, bytesFreed: 0, kept: [] };
  for (const step of steps) {
    let whole = true;
    for await (const key of stepKeys(driver, step, signal)) {
      signal?.throwIfAborted();
      try {
        if (step.kind === 'leftover') await driver.removeDebris?.(key, signal);
        else await driver.remove(key, signal);
      } catch (err) {
        if (!isCairnError(err, 'STORAGE_DENIED')) throw err;
        // Write-once storage keeps an object until its retention ends: not
        // deletable *yet* is expire's "kept", not a failure of the run.
        done.kept.push({ step: step.kind, name: step.name, key, reason: err.message });
        whole = false;
        break;
      }
      done.keysRemoved++;
    }
    done.stepsDone++;
    if (whole) done.bytesFreed += step.bytes;
    progress?.(done);
  }
  return done;
}
