// Leases (docs/design.md §4.5): keep basebackup, dump and expire of one cluster from
// colliding. A lease is a small JSON object `<cluster>/locks/<name>` naming
// its holder (tool, host, pid) and when it expires; the holder renews it
// while it works and removes it when done. The only objects cairn rewrites
// (docs/design.md §4.11: "only leases are short-lived").
//
// Which tool takes which lease, and why:
//   basebackup → backup   two backups would pick the same parent and id
//   dump       → dump     two runs would share dump ids
//   expire     → backup + dump
//                          expire would delete the parent a running backup
//                          references, or a running backup's or dump's
//                          objects (they look like debris until the
//                          manifest lands)
//   copy       → backup + dump (of the target repository)
//                          a copied backup's or dump's objects are debris
//                          to expire until its manifest lands, and a backup
//                          into the target would pick a parent being copied
// A backup and a dump do not collide, so they run side by side.
//
// Taking over: a lease whose expiry has passed, or whose holder is a process
// on this host (same boot, same pid namespace) that no longer exists, is removed (only if it still holds the
// very record judged stale) and taken with a create-if-absent. Where the
// storage cannot create-if-absent atomically (S3 servers without
// If-None-Match), the winner is confirmed by reading the lease back after a
// pause: of two racing writers the later overwrote the earlier, which sees
// the other's record and backs off.

import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { CairnError } from '../cli/errors.js';
import type { SettingDef } from '../config/settings.js';
import { isAlive } from '../spool/pid-lock.js';
import { WriteConflictError, type StorageDriver } from '../storage/driver.js';
import { sleep } from '../util/limit.js';
import { quote } from '../wal/quote.js';
import { readJsonObject } from './json-object.js';

export const LEASE_FORMAT = 'cairn.lease/1';

export type LeaseTool = 'basebackup' | 'dump' | 'expire' | 'copy';

const LEASES_OF: Record<LeaseTool, string[]> = {
  basebackup: ['backup'],
  dump: ['dump'],
  expire: ['backup', 'dump'],
  copy: ['backup', 'dump'],
};

export interface LeaseRecord {
  format: typeof LEASE_FORMAT;
  name: string;
  /** cairn-<tool> holding it. */
  tool: string;
  /** Random per acquisition: tells our record from a successor's. */
  holder: string;
  host: string;
  pid: number;
  /**
   * The kernel boot and pid namespace of the holder (Linux), so that a pid
   * is only judged on the host, boot and namespace it belongs to: containers
   * sharing a host name have pid namespaces of their own.
   */
  bootId?: string;
  pidNamespace?: string;
  acquiredAt: string;
  renewedAt: string;
  expiresAt: string;
}

/** `--lock-wait`: how long a tool waits for a lease another run holds. */
export const LOCK_WAIT_SETTING = {
  name: 'lock-wait',
  type: 'integer',
  description: 'seconds to wait for another basebackup/dump/expire of the cluster to finish (0: exit 5 at once)',
  default: 0,
  valueHint: 'SECONDS',
} as const satisfies SettingDef;

export interface LeaseOptions {
  tool: LeaseTool;
  /** Wait up to this long for a live holder (default 0: fail at once with LOCK_HELD). */
  waitMs?: number;
  /** Lifetime of a record without renewal (default 60 s); renewed every ttl/3. */
  ttlMs?: number;
  /** Pause before reading a non-atomic create back (default 1 s). */
  confirmMs?: number;
  signal?: AbortSignal;
  now?: () => Date;
  /** Told when a stale lease is taken over. */
  onTakeover?: (stale: LeaseRecord) => void;
}

export interface HeldLeases {
  /** Aborted (reason: a LOCK_HELD CairnError) when a lease is lost: renewal found another holder. */
  readonly signal: AbortSignal;
  /** The records as written. */
  readonly records: readonly LeaseRecord[];
  /** Stops renewing and removes the leases that are still ours. Safe to call twice. */
  release(): Promise<void>;
}

/**
 * The lease options of a tool run: how long to wait (`--lock-wait`), its
 * signal, and a warning on its log when a stale lease is taken over.
 */
export function leaseOptionsFor(tool: LeaseTool, waitMs: number, ctx: { signal: AbortSignal; log: { warn: (line: string) => void } }): LeaseOptions {
  return { tool, waitMs, signal: ctx.signal, onTakeover: (r) => ctx.log.warn(`took over the stale lease of ${describeHolder(r)}`) };
}

export function leaseKey(cluster: string, name: string): string {
  return `${cluster}/locks/${name}`;
}

/**
 * Takes the leases `opts.tool` needs on `driver`, waiting up to `waitMs` for
 * a live holder. Throws LOCK_HELD naming the holder when it cannot.
 */
export async function acquireLeases(driver: StorageDriver, cluster: string, opts: LeaseOptions): Promise<HeldLeases> {
  const names = [...LEASES_OF[opts.tool]].sort(); // one order for every tool: no two wait on each other crosswise
  const held: LeaseRecord[] = [];
  try {
    for (const name of names) held.push(await acquireOne(driver, cluster, name, opts));
  } catch (err) {
    await Promise.allSettled(held.map((r) => removeIfOurs(driver, cluster, r)));
    throw err;
  }
  return holdLeases(driver, cluster, held, opts);
}

function holdLeases(driver: StorageDriver, cluster: string, records: LeaseRecord[], opts: LeaseOptions): HeldLeases {
  const ttl = opts.ttlMs ?? 60_000;
  const now = opts.now ?? (() => new Date());
  const lost = new AbortController();
  let current = records;
  let released = false;
  let renewing: Promise<void> = Promise.resolve();
  const renew = async () => {
    const next: LeaseRecord[] = [];
    for (const r of current) {
      const stored = await readLease(driver, cluster, r.name).catch(() => undefined);
      if (released) return;
      if (stored !== undefined && stored.holder !== r.holder) {
        lost.abort(new CairnError('LOCK_HELD', `lease ${quote(r.name)} of cluster ${quote(cluster)} was taken over by ${describeHolder(stored)}`, {
          hint: 'this run was stalled longer than the lease lasts; run it again',
        }));
        return;
      }
      const t = now();
      const rec = { ...r, renewedAt: t.toISOString(), expiresAt: new Date(t.getTime() + ttl).toISOString() };
      // A failed renewal is retried at the next tick while the record is
      // still valid; once it is about to run out another run may take it
      // over, so this one must stop.
      const renewed = await driver.write(leaseKey(cluster, r.name), encode(rec)).then(() => true, () => false);
      if (renewed) next.push(rec);
      else if (now().getTime() >= Date.parse(r.expiresAt) - ttl / 3) {
        lost.abort(new CairnError('LOCK_HELD', `lease ${quote(r.name)} of cluster ${quote(cluster)} could not be renewed before it ran out (the repository did not answer)`, {
          hint: 'another run may hold it now; check the repository and run this again',
        }));
        return;
      } else next.push(r);
    }
    current = next;
  };
  const timer = setInterval(() => {
    renewing = renewing.then(renew, renew);
  }, Math.max(10, Math.floor(ttl / 3)));
  timer.unref();
  return {
    signal: lost.signal,
    get records() {
      return current;
    },
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await renewing.catch(() => {});
      await Promise.allSettled(current.map((r) => removeIfOurs(driver, cluster, r)));
    },
  };
}

async function acquireOne(driver: StorageDriver, cluster: string, name: string, opts: LeaseOptions): Promise<LeaseRecord> {
  const now = opts.now ?? (() => new Date());
  const ttl = opts.ttlMs ?? 60_000;
  const deadline = Date.now() + (opts.waitMs ?? 0);
  const key = leaseKey(cluster, name);
  let tookOver = false;
  for (;;) {
    opts.signal?.throwIfAborted();
    const t = now();
    const rec: LeaseRecord = {
      format: LEASE_FORMAT,
      name,
      tool: `cairn-${opts.tool}`,
      holder: randomBytes(12).toString('hex'),
      host: hostname(),
      pid: process.pid,
      ...processIdentity(),
      acquiredAt: t.toISOString(),
      renewedAt: t.toISOString(),
      expiresAt: new Date(t.getTime() + ttl).toISOString(),
    };
    let conflict = false;
    try {
      await driver.write(key, encode(rec), { ifAbsent: true, ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (err) {
      if (!(err instanceof WriteConflictError)) throw err;
      conflict = true;
    }
    if (!conflict) {
      // After a takeover the old holder may yet renew over us (it read its
      // record just before we removed it): confirm as on non-atomic storage.
      if (driver.features.atomicIfAbsent && !tookOver) return rec;
      // A store that refuses a second conditional write of the record made
      // the first one atomic: no need to wait and read it back (one round
      // trip instead of a second on AWS S3, R2 or MinIO; s3rver ignores it).
      if (!tookOver && (await driver.probeConditionalWrite?.(key, encode(rec), opts.signal))) return rec;
      await sleep(opts.confirmMs ?? 1000, opts.signal);
      const stored = await readLease(driver, cluster, name);
      if (stored?.holder === rec.holder) return rec;
    }
    const holder = await readLease(driver, cluster, name);
    if (holder === undefined) continue; // released meanwhile: try again at once
    if (isStale(holder, now())) {
      // Remove only the record judged stale: a successor that took it over in
      // the meantime has another holder id and is left alone.
      const again = await readLease(driver, cluster, name);
      if (again?.holder === holder.holder && again.renewedAt === holder.renewedAt) {
        await driver.remove(key, opts.signal);
        opts.onTakeover?.(holder);
        tookOver = true;
      }
      continue;
    }
    if (Date.now() >= deadline) {
      throw new CairnError('LOCK_HELD', `lease ${quote(name)} of cluster ${quote(cluster)} in repository ${quote(driver.url)} is held by ${describeHolder(holder)}`, {
        hint: `wait for it to finish (--lock-wait SECONDS waits for it); a holder that died is taken over after ${holder.expiresAt}`,
      });
    }
    await sleep(Math.min(1000, Math.max(50, deadline - Date.now())), opts.signal);
  }
}

/** Expired, or held by a process of this host that no longer exists. */
export function isStale(rec: LeaseRecord, now: Date): boolean {
  const expires = Date.parse(rec.expiresAt);
  if (!Number.isFinite(expires) || now.getTime() > expires) return true;
  if (rec.host !== hostname() || !Number.isInteger(rec.pid) || rec.pid <= 0) return false;
  const me = processIdentity();
  // Only where the pid means the same process table as ours.
  if (rec.bootId !== me.bootId || rec.pidNamespace !== me.pidNamespace) return false;
  return !isAlive(rec.pid);
}

let identity: { bootId?: string; pidNamespace?: string } | undefined;

/** This process's boot id and pid namespace (absent where /proc does not tell). */
export function processIdentity(): { bootId?: string; pidNamespace?: string } {
  if (identity === undefined) {
    identity = {};
    try {
      identity.bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      // not Linux: the host name and expiry decide
    }
    try {
      identity.pidNamespace = readlinkSync('/proc/self/ns/pid');
    } catch {
      // likewise
    }
  }
  return identity;
}

export function describeHolder(rec: LeaseRecord): string {
  return `${rec.tool} (pid ${rec.pid} on host ${quote(rec.host)}, since ${rec.acquiredAt})`;
}

/** The record of writer lease `name` (backup, dump), undefined when nobody holds it. */
export async function readLease(driver: StorageDriver, cluster: string, name: string, signal?: AbortSignal): Promise<LeaseRecord | undefined> {
  const rec = await readJsonObject<LeaseRecord>(driver, leaseKey(cluster, name), signal).catch((err: unknown) => {
    // A damaged lease (half-written by a foreign tool, emptied) counts as expired.
    if (err instanceof CairnError && err.code === 'FORMAT_INVALID') return { format: LEASE_FORMAT, name, tool: 'unknown', holder: '', host: '', pid: 0, acquiredAt: '', renewedAt: '', expiresAt: '' } as LeaseRecord;
    throw err;
  });
  return rec;
}

async function removeIfOurs(driver: StorageDriver, cluster: string, rec: LeaseRecord): Promise<void> {
  const stored = await readLease(driver, cluster, rec.name);
  if (stored?.holder === rec.holder) await driver.remove(leaseKey(cluster, rec.name));
}

function encode(rec: LeaseRecord): Buffer {
  return Buffer.from(JSON.stringify(rec, null, 2) + '\n');
}

/** A lease set on one of several repositories (acquireLeasesEach). */
export type LeaseOutcome = { ok: true; leases: HeldLeases } | { ok: false; error: unknown };

/**
 * Takes the leases of `opts.tool` on each repository at once, for a run that
 * writes to all of them (issue 18 item 1): one that cannot be taken (held,
 * or the repository down) fails that repository only. Throws the first
 * failure when none could be taken.
 */
export async function acquireLeasesEach(drivers: readonly StorageDriver[], cluster: string, opts: LeaseOptions): Promise<LeaseOutcome[]> {
  const out = await Promise.all(drivers.map((d) => acquireLeases(d, cluster, opts).then(
    (leases): LeaseOutcome => ({ ok: true, leases }),
    (error: unknown): LeaseOutcome => ({ ok: false, error }),
  )));
  const firstFailure = out.find((x) => !x.ok);
  if (out.every((x) => !x.ok)) throw (firstFailure as { error: unknown }).error;
  return out;
}

/** Releases what acquireLeasesEach took. */
export async function releaseLeasesEach(held: readonly LeaseOutcome[]): Promise<void> {
  await Promise.allSettled(held.map((x) => (x.ok ? x.leases.release() : undefined)));
}

/**
 * Runs `work` holding the leases of `opts.tool` on `driver`. `work` gets a
 * signal that aborts when the caller's does or when a lease is lost; the
 * leases are released however `work` ends.
 */
export async function withLeases<T>(
  driver: StorageDriver,
  cluster: string,
  opts: LeaseOptions,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const leases = await acquireLeases(driver, cluster, opts);
  try {
    const signal = opts.signal ? AbortSignal.any([opts.signal, leases.signal]) : leases.signal;
    return await work(signal);
  } finally {
    await leases.release();
  }
}
