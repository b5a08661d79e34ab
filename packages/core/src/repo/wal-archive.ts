// Storing and fetching WAL files in one repository. The rules (docs/design.md §4.2,
// §4.3): a WAL file is never overwritten with different content; an identical
// re-push succeeds; every byte read back is checked against its SHA-256.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CairnError } from '../cli/errors.js';
import { createHashStage, decodeStagesFor, type EncryptionKey } from '../codec/index.js';
import { checksumMismatch } from '../codec/errors.js';
import { WriteConflictError, type StorageDriver } from '../storage/driver.js';
import { parseWalIntentKey, parseWalObjectName, walFilePrefix, walIntentKey, walIntentPrefix, walObjectKey, type WalObjectName } from './layout.js';
import { sleep } from '../util/limit.js';
import { quote } from '../wal/quote.js';

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
 * How long an intent counts: one older than this (by the store's clock) is
 * taken for the debris of a push that died, and ignored. A live push that
 * stalls longer than this between announcing itself and finishing is the
 * one case the protocol does not order (docs/storage-consistency.md).
 */
export const WAL_INTENT_STALE_MS = 60_000;

/** Hooks for the model test (storage-race.test.ts); production uses the defaults. */
export interface WalRaceOptions {
  /** Names this push's intent: 16 hex digits, random by default. Smaller ones go first. */
  nonce?: string;
  /** Waits between looks at the store; `round` counts from 0. */
  pause?: (round: number, signal?: AbortSignal) => Promise<void>;
  staleMs?: number;
}

export interface StoreWalArgs {
  cluster: string;
  systemId: string;
  walName: string;
  sha256: string;
  ext: string;
  body: () => Buffer | NodeJS.ReadableStream;
  signal?: AbortSignal;
  race?: WalRaceOptions;
  /**
   * The caller's checks of the repository (its configuration and key, the
   * system): the first look for a stored copy runs alongside them, nothing
   * is written before they pass, and their failure is the one reported.
   */
  ready?: Promise<unknown>;
}

interface Intent {
  key: string;
  nonce: string;
  sha256: string;
  mtime: number;
}

/**
 * Intents are written and removed without fsyncs: one lost or back after a
 * crash is as good as a stale one. Their directory stays (on a file
 * repository): the next segment's push writes there at once, and making and
 * removing it for each one cost more than the intent itself (debris.ts does
 * not count it as a leftover).
 */
const INTENT_REMOVE = { durable: false, keepDirs: true } as const;

/** The first looks come quickly (a racing push of 16 MiB takes tens of ms), later ones once a second. */
function defaultPause(round: number, signal?: AbortSignal): Promise<void> {
  return sleep(Math.min(1000, 20 * 2 ** Math.min(round, 6)), signal);
}

/**
 * Stores one WAL file whose plaintext SHA-256 is `sha256` and whose encoded
 * bytes are `encoded` (or a factory for a stream of them), safely against
 * other pushes of the same name running at the same time, on every store
 * (docs/storage-consistency.md has the protocol and why it is safe):
 *
 * 1. a stored copy decides at once: the same checksum is 'identical', another
 *    one WAL_DUPLICATE;
 * 2. otherwise the push announces itself with an intent object of its own
 *    (locks/wal/…, never a key another push writes) and looks at the others;
 * 3. it stores only while the listing shows no other live intent (so two
 *    pushes never store at once: each looks after announcing, and the later
 *    look sees the earlier intent); of several, the smallest nonce goes first
 *    and the rest step back until it is done;
 * 4. the one storing looks again for a stored copy, writes its object
 *    (create-if-absent: atomic where the store honours it), and reports
 *    success only once the listing shows it;
 * 5. it removes its own intent, and nothing else.
 */
export async function storeWal(driver: StorageDriver, args: StoreWalArgs): Promise<StoreOutcome> {
  const { cluster, systemId, walName, sha256, ext, signal } = args;
  const decide = async (): Promise<StoreOutcome | undefined> => {
    const existing = await findWal(driver, cluster, systemId, walName, signal);
    if (existing.some((e) => e.sha256 === sha256)) return 'identical';
    if (existing.length > 0) throw duplicateError(walName, driver.url, existing[0]!.sha256, sha256);
    return undefined;
  };
  const [ready, first] = await Promise.allSettled([args.ready, decide()]);
  if (ready.status === 'rejected') throw ready.reason;
  if (first.status === 'rejected') throw first.reason;
  const before = first.value;
  if (before) return before;

  const nonce = args.race?.nonce ?? randomBytes(8).toString('hex');
  const pause = args.race?.pause ?? defaultPause;
  const staleMs = args.race?.staleMs ?? WAL_INTENT_STALE_MS;
  const prefix = walIntentPrefix(cluster, systemId, walName);
  const mine = walIntentKey(cluster, systemId, walName, nonce, sha256);
  const note = Buffer.from(JSON.stringify({ format: 'cairn.wal-intent/1', walName, sha256, host: hostname(), pid: process.pid, at: new Date().toISOString() }) + '\n');
  let raised = false;
  // The store's clock, read off our own intent: staleness is judged on one
  // clock whatever the hosts' clocks say.
  let anchor: { store: number; local: number; raisedAt: number } | undefined;
  let raisedAt = 0;
  const storeNow = () => (anchor ? anchor.store + (Date.now() - anchor.local) : undefined);

  const raise = async () => {
    raisedAt = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        // Not durable: an intent lost in a crash is as good as a stale one.
        await driver.write(mine, note, { durable: false, ...(signal ? { signal } : {}) });
        break;
      } catch (err) {
        // On a file repository a racing push's remove() prunes the empty
        // directory between our mkdir and our create: try again.
        if (signal?.aborted || attempt >= 3) throw err;
        await pause(attempt - 1, signal);
      }
    }
    raised = true;
  };
  const withdraw = async () => {
    raised = false;
    await driver.remove(mine, signal, INTENT_REMOVE);
  };
  const listIntents = async (): Promise<Intent[]> => {
    const out: Intent[] = [];
    for await (const obj of driver.list(prefix, signal)) {
      // The prefix also matches longer names (….partial, ….backup): exact names only.
      const parsed = obj.key.length === prefix.length + 81 ? parseWalIntentKey(obj.key) : undefined;
      if (parsed) out.push({ key: obj.key, ...parsed, mtime: obj.mtime.getTime() });
    }
    return out;
  };

  // Step 4: alone among live intents.
  const store = async (): Promise<StoreOutcome> => {
    const now = await decide();
    if (now) return now;
    let wrote = false;
    try {
      await driver.write(walObjectKey(cluster, systemId, walName, sha256, ext), args.body() as Buffer, { ifAbsent: true, lookedFirst: true, ...(signal ? { signal } : {}) });
      wrote = true;
    } catch (err) {
      // The same key holds the same content (checksum and codec in the name).
      if (!(err instanceof WriteConflictError)) throw err;
    }
    for (let round = 0; ; round++) {
      const existing = await findWal(driver, cluster, systemId, walName, signal);
      const other = existing.find((e) => e.sha256 !== sha256);
      if (other) {
        // Only when a push stalled past WAL_INTENT_STALE_MS broke the order:
        // step back with our own object (never the other's); at worst both
        // fail and PostgreSQL retries, nothing reported archived is lost.
        if (wrote) await driver.remove(walObjectKey(cluster, systemId, walName, sha256, ext), signal);
        throw duplicateError(walName, driver.url, other.sha256, sha256);
      }
      if (existing.some((e) => e.sha256 === sha256)) return wrote ? 'stored' : 'identical';
      if (round >= 5) {
        throw new CairnError('STORAGE_UNAVAILABLE', `WAL file "${walName}" was written to repository "${driver.url}" but its listing does not show it`, {
          hint: 'the store does not list what it has just stored; PostgreSQL will retry',
          transient: true,
        });
      }
      await pause(round, signal);
    }
  };

  const started = Date.now();
  try {
    await raise();
    for (let round = 0; ; round++) {
      const intents = await listIntents();
      const own = intents.find((i) => i.key === mine);
      if (own && raised && (anchor === undefined || anchor.raisedAt !== raisedAt)) anchor = { store: own.mtime, local: Date.now(), raisedAt };
      const t = storeNow();
      const others = intents.filter((i) => i.key !== mine && (t === undefined || t - i.mtime <= staleMs));
      const first = others.every((o) => mine < o.key);
      if (raised && own && others.length === 0) return await store();
      // Someone may have finished while we looked.
      const done = await decide();
      if (done) return done;
      if (Date.now() - started > 2 * staleMs) {
        throw new CairnError('LOCK_HELD', `another push of WAL file "${walName}" into repository "${driver.url}" is still deciding after ${Math.round((Date.now() - started) / 1000)} s`, {
          hint: 'PostgreSQL will retry; if this repeats, look for pushes that hang (objects under locks/wal/ name them)',
          transient: true,
        });
      }
      if (raised && own && !first) await withdraw();
      else if (!raised && first) {
        await raise();
        continue;
      }
      await pause(round, signal);
    }
  } finally {
    if (raised) await driver.remove(mine, signal, INTENT_REMOVE).catch(() => {});
  }
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
  const label = `WAL file ${quote(stored.walName)} in repository ${quote(driver.url)}`;
  const source = await driver.read(stored.key, signal);
  const hash = createHashStage();
  await pipeline([source, ...decodeStagesFor(stored.key, key, label), hash.stage, sink], signal ? { signal } : {});
  if (hash.digest() !== stored.sha256) {
    throw checksumMismatch('wal', label, { sha256: stored.sha256 }, { sha256: hash.digest(), size: hash.bytes() });
  }
  return { bytes: hash.bytes() };
}
