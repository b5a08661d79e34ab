// Reader leases (issue 12): a recovery in progress says in the repository
// what it still needs — a backup chain, WAL from its start on the timelines it
// follows, or a dump — so that expire keeps it. cairn-restore takes one for
// the recovery it lays down, cairn-wal-get renews it while that recovery
// fetches WAL, cairn-drill holds one for its whole run. A lease nobody
// renews lapses after its lifetime and protects nothing any more; expire
// removes it some time later.
//
// Unlike the writer leases of lease.ts (one name each, one holder), reader
// leases are many at once, one object per reader: <cluster>/readers/<id>.json.
// They and writer leases are the only objects cairn rewrites (docs/design.md §4.11).

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { CairnError } from '../cli/errors.js';
import type { RestorePlan } from '../restore/plan-format.js';
import { WriteConflictError, type StorageDriver } from '../storage/driver.js';
import { sleep } from '../util/limit.js';
import { isSegmentName, sameTimeline } from '../wal/file-name.js';
import { quote } from '../wal/quote.js';
import { readJsonObject } from './json-object.js';
import { isStale, readLease } from './lease.js';

export const READER_LEASE_FORMAT = 'cairn.reader-lease/1';

/** Lifetime of a restore's lease without renewal: a recovery paused overnight, or started the morning after, stays protected. */
export const DEFAULT_RESTORE_LEASE_LIFETIME = '24h';
/** A drill renews its own lease while it runs: a short lifetime frees what a killed drill held soon. */
export const DRILL_LEASE_LIFETIME_MS = 10 * 60_000;

/** cairn-copy renews its lease on the source as a drill does, for as long as it runs. */
export const COPY_LEASE_LIFETIME_MS = DRILL_LEASE_LIFETIME_MS;

export type ReaderPurpose = 'restore' | 'drill' | 'copy';

/** A WAL range a recovery reads, proved present when it was planned (restore-plan's `wal`). */
export interface LeaseWalRange {
  timeline: number;
  from: string;
  to: string;
}

export interface ReaderLease {
  format: typeof READER_LEASE_FORMAT;
  id: string;
  purpose: ReaderPurpose;
  /** cairn-<tool> that took it. */
  tool: string;
  host: string;
  pid: number;
  /** The data directory being recovered (a drill's scratch one); null for a dump drill. */
  pgdata: string | null;
  systemId: string | null;
  walSegmentSize: number | null;
  /** The backup restored; null for a dump drill. */
  backup: string | null;
  /** Its chain, full backup first, the backup last. */
  chain: string[];
  /** Logical dumps read, as <dir>/<id>. */
  dumps: string[];
  /** Per timeline, oldest first: the WAL the plan proved present. Recovery to latest may read past `to`. */
  wal: LeaseWalRange[];
  /** What the recovery goes to, for people: "latest", "time 2026-…". */
  target: string | null;
  lifetimeSeconds: number;
  createdAt: string;
  renewedAt: string;
  expiresAt: string;
}

export type ReaderLeaseFields = Pick<ReaderLease, 'purpose' | 'pgdata' | 'systemId' | 'walSegmentSize' | 'backup' | 'chain' | 'dumps' | 'wal' | 'target'>;

/** What a recovery from `plan` into `pgdata` needs kept. */
export function leaseFieldsFromPlan(plan: RestorePlan, pgdata: string, purpose: ReaderPurpose): ReaderLeaseFields {
  return {
    purpose,
    pgdata,
    systemId: plan.systemId,
    walSegmentSize: plan.walSegmentSize,
    backup: plan.backup.id,
    chain: [...plan.chain],
    dumps: [],
    wal: plan.wal.map((w) => ({ timeline: w.timeline, from: w.from, to: w.to })),
    target: plan.target.kind === 'latest' || plan.target.kind === 'immediate' ? plan.target.kind : `${plan.target.kind} ${plan.target.value ?? ''}`.trim(),
  };
}

const ID_RE = /^\d{8}-\d{6}-[0-9a-f]{8}$/;

export function isReaderLeaseId(id: string): boolean {
  return ID_RE.test(id);
}

export function readerLeasesPrefix(cluster: string): string {
  return `${cluster}/readers/`;
}

export function readerLeaseKey(cluster: string, id: string): string {
  return `${readerLeasesPrefix(cluster)}${id}.json`;
}

function newId(now: Date): string {
  const t = now.toISOString();
  return `${t.slice(0, 10).replaceAll('-', '')}-${t.slice(11, 19).replaceAll(':', '')}-${randomBytes(4).toString('hex')}`;
}

function encode(rec: ReaderLease): Buffer {
  return Buffer.from(JSON.stringify(rec, null, 2) + '\n');
}

/** Renewals closer together than this are skipped: one write a minute at most, four per lifetime at least. */
export function renewInterval(lifetimeMs: number): number {
  return Math.max(100, Math.min(60_000, Math.floor(lifetimeMs / 4)));
}

/** Takes a new lease (create-if-absent under a fresh id). */
export async function createReaderLease(
  driver: StorageDriver,
  cluster: string,
  fields: ReaderLeaseFields,
  opts: { lifetimeMs: number; now: Date; tool: string; signal?: AbortSignal },
): Promise<ReaderLease> {
  const t = opts.now;
  const rec: ReaderLease = {
    format: READER_LEASE_FORMAT,
    id: newId(t),
    ...fields,
    tool: opts.tool,
    host: hostname(),
    pid: process.pid,
    lifetimeSeconds: opts.lifetimeMs / 1000,
    createdAt: t.toISOString(),
    renewedAt: t.toISOString(),
    expiresAt: new Date(t.getTime() + opts.lifetimeMs).toISOString(),
  };
  await driver.write(readerLeaseKey(cluster, rec.id), encode(rec), { ifAbsent: true, ...(opts.signal ? { signal: opts.signal } : {}) });
  return rec;
}

/** Why a stored object is not a reader lease cairn can judge; undefined when it is one. */
export function readerLeaseProblem(v: unknown, id: string): string | undefined {
  if (typeof v !== 'object' || v === null) return 'not a JSON object';
  const r = v as Partial<ReaderLease>;
  if (r.format !== READER_LEASE_FORMAT) return `format ${quote(String(r.format))} is not ${READER_LEASE_FORMAT}`;
  if (r.id !== id) return `its id ${quote(String(r.id))} is not its name`;
  if (r.purpose !== 'restore' && r.purpose !== 'drill' && r.purpose !== 'copy') return 'no purpose';
  for (const k of ['createdAt', 'renewedAt', 'expiresAt'] as const) if (typeof r[k] !== 'string' || Number.isNaN(Date.parse(r[k]))) return `no readable ${k}`;
  if (!Array.isArray(r.chain) || !r.chain.every((x) => typeof x === 'string')) return 'no chain';
  if (!Array.isArray(r.dumps) || !r.dumps.every((x) => typeof x === 'string')) return 'no dumps';
  if (!Array.isArray(r.wal) || !r.wal.every((w) => Number.isInteger(w?.timeline) && isSegmentName(String(w?.from)) && isSegmentName(String(w?.to)))) return 'no readable WAL ranges';
  if (r.backup !== null && typeof r.backup !== 'string') return 'no backup';
  if (r.systemId !== null && typeof r.systemId !== 'string') return 'no system id';
  return undefined;
}

export async function readReaderLease(driver: StorageDriver, cluster: string, id: string, signal?: AbortSignal): Promise<ReaderLease | undefined> {
  const v = await readJsonObject<unknown>(driver, readerLeaseKey(cluster, id), signal);
  if (v === undefined) return undefined;
  const problem = readerLeaseProblem(v, id);
  if (problem !== undefined) {
    throw new CairnError('FORMAT_INVALID', `reader lease ${quote(readerLeaseKey(cluster, id))} in repository ${quote(driver.url)} is damaged: ${problem}`, {
      hint: 'remove it by hand once no restore uses it (cairn-info lists reader leases)',
    });
  }
  return v as ReaderLease;
}

export interface ReaderLeaseListing {
  leases: ReaderLease[];
  /** Objects under readers/ that are not leases cairn can judge: never counted as protecting, never removed. */
  unreadable: { key: string; problem: string }[];
}

/** Every reader lease of the cluster, live or not, oldest first. */
export async function listReaderLeases(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<ReaderLeaseListing> {
  const out: ReaderLeaseListing = { leases: [], unreadable: [] };
  const prefix = readerLeasesPrefix(cluster);
  const keys: string[] = [];
  for await (const o of driver.list(prefix, signal)) keys.push(o.key);
  for (const key of keys.sort()) {
    const name = key.slice(prefix.length);
    const id = name.endsWith('.json') ? name.slice(0, -5) : '';
    if (!isReaderLeaseId(id)) {
      out.unreadable.push({ key, problem: 'not a reader lease name' });
      continue;
    }
    try {
      const rec = await readReaderLease(driver, cluster, id, signal);
      if (rec) out.leases.push(rec);
    } catch (err) {
      if (!(err instanceof CairnError) || err.code !== 'FORMAT_INVALID') throw err;
      out.unreadable.push({ key, problem: err.message });
    }
  }
  return out;
}

export function isLiveReader(rec: ReaderLease, now: Date): boolean {
  return Date.parse(rec.expiresAt) > now.getTime();
}

/** "the restore of backup X into "/srv/pg" on host "h" (lease ID, renewed at T)" */
export function describeReader(rec: ReaderLease): string {
  const what = rec.purpose === 'drill'
    ? `the drill of ${rec.backup !== null ? `backup ${rec.backup}` : `dump ${rec.dumps.join(', ')}`}`
    : rec.purpose === 'copy'
      ? `a cairn-copy from this repository (${rec.chain.length} backup(s), ${rec.dumps.length} dump(s))`
      : `the restore of backup ${rec.backup}${rec.pgdata !== null ? ` into ${quote(rec.pgdata)}` : ''}`;
  return `${what} on host ${quote(rec.host)} (lease ${rec.id}, renewed at ${rec.renewedAt})`;
}

export type RenewOutcome = 'renewed' | 'fresh' | 'absent';

/**
 * Renews lease `id` unless it was renewed within renewInterval. A lease that
 * is gone (removed by hand, or by expire long after it lapsed) is not made
 * again: what it protected may be gone too, and wal-get's expectation says so.
 */
export async function renewReaderLease(driver: StorageDriver, cluster: string, id: string, now: Date, signal?: AbortSignal): Promise<RenewOutcome> {
  const rec = await readReaderLease(driver, cluster, id, signal);
  if (rec === undefined) return 'absent';
  const lifetimeMs = rec.lifetimeSeconds * 1000;
  if (now.getTime() - Date.parse(rec.renewedAt) < renewInterval(lifetimeMs)) return 'fresh';
  const next = { ...rec, renewedAt: now.toISOString(), expiresAt: new Date(now.getTime() + lifetimeMs).toISOString() };
  await driver.write(readerLeaseKey(cluster, id), encode(next), signal ? { signal } : {});
  return 'renewed';
}

export async function removeReaderLease(driver: StorageDriver, cluster: string, id: string): Promise<void> {
  await driver.remove(readerLeaseKey(cluster, id));
}

export interface HeldReaderLease {
  readonly lease: ReaderLease;
  /** Stops renewing and removes the lease. Safe to call twice. */
  release(): Promise<void>;
}

/** Takes a lease and renews it on a timer until released (cairn-drill: the whole run). */
export async function holdReaderLease(
  driver: StorageDriver,
  cluster: string,
  fields: ReaderLeaseFields,
  opts: { lifetimeMs: number; now: () => Date; tool: string; signal?: AbortSignal; onRenewError?: (err: unknown) => void },
): Promise<HeldReaderLease> {
  const lease = await createReaderLease(driver, cluster, fields, { lifetimeMs: opts.lifetimeMs, now: opts.now(), tool: opts.tool, ...(opts.signal ? { signal: opts.signal } : {}) });
  let released = false;
  let renewing: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    renewing = renewing.then(() => (released ? undefined : renewReaderLease(driver, cluster, lease.id, opts.now()).catch((err) => opts.onRenewError?.(err))));
  }, renewInterval(opts.lifetimeMs));
  timer.unref();
  return {
    lease,
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await renewing.catch(() => {});
      await removeReaderLease(driver, cluster, lease.id).catch(() => {});
    },
  };
}

/**
 * Waits while a live cairn-expire holds the cluster's backup lease. A lease
 * written before an expire takes its own is seen by that expire; one that
 * started earlier planned without it: the caller waits for it to finish and
 * then checks that what it planned on is still there.
 */
export async function waitForRunningExpire(driver: StorageDriver, cluster: string, opts: { signal?: AbortSignal; maxWaitMs: number; onWait?: (holder: string) => void }): Promise<boolean> {
  const deadline = Date.now() + opts.maxWaitMs;
  let told = false;
  let waited = false;
  for (;;) {
    const holder = await readLease(driver, cluster, 'backup', opts.signal);
    if (holder === undefined || holder.tool !== 'cairn-expire' || isStale(holder, new Date())) return waited;
    if (!told) opts.onWait?.(`cairn-expire (pid ${holder.pid} on host ${quote(holder.host)})`);
    told = true;
    waited = true;
    if (Date.now() >= deadline) {
      throw new CairnError('LOCK_HELD', `cairn-expire (pid ${holder.pid} on host ${quote(holder.host)}) is still running on cluster ${quote(cluster)} of repository ${quote(driver.url)}`, {
        hint: 'it may be deleting what this restore planned on: run the restore again once it is done',
      });
    }
    await sleep(500, opts.signal);
  }
}

// ---- what a recovery expects to find: --expect-through ----------------------

/** FROM-TO: two segment names of one timeline, FROM ≤ TO. */
export function formatExpectation(r: LeaseWalRange): string {
  return `${r.from}-${r.to}`;
}

/** Parses `FROM-TO` (or a lone `TO`: everything on its timeline up to it). */
export function parseExpectation(text: string): { from: string; to: string } {
  const m = /^(?:([0-9A-F]{24})-)?([0-9A-F]{24})$/.exec(text.trim());
  const from = m?.[1] ?? (m ? `${m[2]!.slice(0, 8)}${'0'.repeat(16)}` : undefined);
  if (!m || from === undefined || !sameTimeline(from, m[2]!) || from > m[2]!) {
    throw new CairnError('USAGE', `invalid --expect-through ${quote(text)}`, {
      hint: 'give FROM-TO, two WAL segment names of one timeline (cairn-restore writes it into restore_command)',
    });
  }
  return { from, to: m[2]! };
}

/** Whether `walName` is a segment inside one of the ranges (same timeline, FROM ≤ name ≤ TO). */
export function isExpected(walName: string, ranges: readonly { from: string; to: string }[]): boolean {
  if (!isSegmentName(walName)) return false;
  // Fixed-width upper-case hex of one timeline: text order is segment order.
  return ranges.some((r) => sameTimeline(r.from, walName) && r.from <= walName && walName <= r.to);
}
