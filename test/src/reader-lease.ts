// Reader leases (issue 12) on one repository kind: a recovery in progress
// holds what it needs against cairn-expire (paused half-way to latest, or to
// a time target), a lease nobody renews stops protecting after its lifetime,
// cairn-wal-get renews it only during archive recovery, and a segment the
// restore's plan proved present that the repository lost anyway stops
// recovery (wal-get exit 126) instead of ending it early with fewer rows.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { runAsPg, type RunResult } from '@cairn/testkit/run-as';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import {
  cairnOk,
  currentTimeline,
  NOW_UTC_SQL,
  segmentNo,
  sleep,
  switchAndWaitArchived,
  takeBackup,
  walPushCommand,
  type RestoreJson,
} from './pitr-harness.js';

/** The marker table's rows: 1..n, so count and sum name the state exactly. */
interface Rows {
  count: number;
  sum: number;
}
const rowsUpTo = (n: number): Rows => ({ count: n, sum: (n * (n + 1)) / 2 });
const ROWS_SQL = "select count(*) || ' ' || coalesce(sum(n), 0) from marker";

async function rowsOf(c: Cluster): Promise<Rows> {
  const [count, sum] = (await c.psql(ROWS_SQL)).split(' ').map(Number);
  return { count: count!, sum: sum! };
}

/** A source's archive in one repository: backup A, WAL, backup B, more WAL; the source is gone. */
interface History {
  repo: RepoFixture;
  a: { id: string; startWal: string; stopWal: string };
  b: { id: string; startWal: string };
  /** An LSN between A and B: rows 1..20 are committed before it, 21.. after. */
  midLsn: string;
  /** A time between A and B: rows 1..30 before it, 31.. after. */
  time: string;
  /** Rows at midLsn, at time, and at the end of the archive. */
  rows: { mid: Rows; time: Rows; latest: Rows };
}

interface PlanJson {
  backup: { id: string; startWal: string; stopWal: string };
  wal: { timeline: number; from: string; to: string }[];
}

async function planOf(repo: RepoFixture, args: string[]): Promise<PlanJson> {
  return JSON.parse((await cairnOk('restore-plan', args, repo.env)).stdout) as PlanJson;
}

/**
 * 1..10, backup A, 11..20, the mid LSN, a switch, 21..30, the time, 31..40,
 * a switch, backup B, 41..50, a switch. No archive_timeout: segments change
 * only where this says, so WAL between A and B is a few known segments.
 */
export async function makeHistory(kind: 'fs' | 's3', label: string): Promise<History> {
  const repo = await makeRepo(kind, kind === 's3');
  const src = await createCluster({ name: `rl-${label}`.slice(0, 20), archiveCommand: walPushCommand(), env: repo.env });
  await src.start();
  await src.psql('create table marker(n int); insert into marker select generate_series(1, 10)');
  const a = await takeBackup(src, repo, 'full');
  await src.psql('insert into marker select generate_series(11, 20)');
  const midLsn = await src.psql('select pg_current_wal_insert_lsn()');
  await switchAndWaitArchived(src);
  await src.psql('insert into marker select generate_series(21, 30)');
  // Commits a clear second away on both sides: the time target is not a race.
  await sleep(1000);
  const time = await src.psql(NOW_UTC_SQL);
  await sleep(1000);
  await src.psql('insert into marker select generate_series(31, 40)');
  await switchAndWaitArchived(src);
  const b = await takeBackup(src, repo, 'full');
  await src.psql('insert into marker select generate_series(41, 50)');
  assert.deepEqual(await rowsOf(src), rowsUpTo(50));
  await switchAndWaitArchived(src);
  await src.destroy();

  const pa = await planOf(repo, ['--set', a, '--target', 'latest']);
  const pb = await planOf(repo, ['--set', b, '--target', 'latest']);
  assert.ok(segmentNo(pb.backup.startWal) - segmentNo(pa.backup.stopWal) >= 2, `WAL between A (stops in ${pa.backup.stopWal}) and B (starts in ${pb.backup.startWal})`);
  return {
    repo,
    a: { id: a, startWal: pa.backup.startWal, stopWal: pa.backup.stopWal },
    b: { id: b, startWal: pb.backup.startWal },
    midLsn,
    time,
    rows: { mid: rowsUpTo(20), time: rowsUpTo(30), latest: rowsUpTo(50) },
  };
}

/** WAL segment names stored in the repository (each stored copy), sorted. */
export async function storedSegments(repo: RepoFixture): Promise<{ name: string; key: string }[]> {
  return (await repo.keys('main/wal/'))
    .map((key) => ({ key, name: key.slice(key.lastIndexOf('/') + 1).split('-')[0]! }))
    .filter((w) => /^[0-9A-F]{24}$/.test(w.name))
    .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
}

const leaseKey = (id: string): string => `main/readers/${id}.json`;

interface LeaseJson {
  id: string;
  backup: string | null;
  chain: string[];
  wal: { timeline: number; from: string; to: string }[];
  renewedAt: string;
  expiresAt: string;
}

export async function readLease(repo: RepoFixture, id: string): Promise<LeaseJson | undefined> {
  const body = (await repo.objects(leaseKey(id))).get(leaseKey(id));
  return body === undefined ? undefined : (JSON.parse(body.toString('utf8')) as LeaseJson);
}

/** cairn-restore reads its clock twice for the expiry: a millisecond apart is the same lifetime. */
function assertLifetime(rec: LeaseJson, ms: number): void {
  const got = Date.parse(rec.expiresAt) - Date.parse(rec.renewedAt);
  assert.ok(Math.abs(got - ms) <= 50, `lease ${rec.id} lives ${ms} ms from ${rec.renewedAt}: expires ${rec.expiresAt}`);
}

interface Restore {
  cluster: Cluster;
  result: RestoreJson & { lease?: unknown };
  lease: string;
}

/** cairn-restore --json into a fresh empty data directory (archive_mode off); not started. */
async function restoreInto(h: History, name: string, args: string[]): Promise<Restore> {
  const cluster = await createCluster({ name, initdb: false, env: h.repo.env, conf: { archive_mode: 'off' } });
  const r = await cairnOk('restore', ['--pgdata', cluster.pgdata, '--json', ...args], h.repo.env);
  const result = JSON.parse(r.stdout) as Restore['result'];
  assert.equal(typeof result.lease, 'string', `cairn-restore --json names its reader lease: ${r.stdout}`);
  const lease = result.lease as string;
  const rec = await readLease(h.repo, lease);
  assert.ok(rec, `the lease ${leaseKey(lease)} is stored`);
  assert.equal(rec.backup, result.backup);
  return { cluster, result, lease };
}

/** The restore_command cairn-restore wrote (the last one in postgresql.auto.conf). */
export async function restoreCommandOf(c: Cluster): Promise<string> {
  const text = await readFile(join(c.pgdata, 'postgresql.auto.conf'), 'utf8');
  const found = [...text.matchAll(/^\s*restore_command\s*=\s*'((?:[^']|'')*)'\s*$/gm)];
  assert.ok(found.length > 0, `no restore_command in postgresql.auto.conf:\n${text}`);
  return found.at(-1)![1]!.replaceAll("''", "'");
}

/** Runs the restore_command for `walName` as PostgreSQL would: through sh, in the data directory, as its user. */
export async function runRestoreCommand(c: Cluster, repo: RepoFixture, walName: string): Promise<RunResult> {
  const cmd = (await restoreCommandOf(c)).replace(/%[fp%]/g, (m) => (m === '%f' ? walName : m === '%p' ? 'pg_wal/RECOVERYXLOG' : '%'));
  return runAsPg('/bin/sh', ['-c', cmd], { cwd: c.pgdata, env: { ...repo.env, PGDATA: c.pgdata }, allowFail: true, timeoutMs: 120_000 });
}

/** Until replay has stopped at its target and waits (recovery_target_action = pause). */
async function waitForReplayPaused(c: Cluster, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let state = '';
  while (Date.now() < deadline) {
    state = await c.psql('select pg_is_in_recovery() || \' \' || pg_get_wal_replay_pause_state()');
    if (state === 'true paused') return;
    await sleep(200);
  }
  assert.fail(`replay of "${c.name}" did not pause (${state})\n${await c.serverLogTail(30)}`);
}

/** Whether a server started without waiting ends recovery (promoted) or stops (its postmaster exits). */
async function recoveryOutcome(c: Cluster, timeoutMs = 120_000): Promise<'promoted' | 'stopped'> {
  const deadline = Date.now() + timeoutMs;
  let seenRunning = false;
  while (Date.now() < deadline) {
    if (await c.isRunning()) {
      seenRunning = true;
      const inRecovery = await c.psql('select pg_is_in_recovery()').catch(() => 'unknown');
      if (inRecovery === 'f') return 'promoted';
    } else if (seenRunning || /database system is shut down|aborting startup/.test(await c.serverLog())) {
      return 'stopped';
    }
    await sleep(200);
  }
  assert.fail(`"${c.name}" neither stopped nor ended recovery within ${timeoutMs} ms\n${await c.serverLogTail(30)}`);
}

interface ExpirePlanJson {
  backups: { id: string; action: 'keep' | 'remove'; reasons: string[] }[];
  wal: { timeline: number; removed: { from: string; to: string } | null; reason: string }[];
  totals: { backupsRemoved: number; walSegmentsRemoved: number };
}

async function expire(repo: RepoFixture, args: string[]): Promise<ExpirePlanJson> {
  const r = await cairnOk('expire', ['--keep-full', '1', ...args], repo.env);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one plan for one repository:\n${r.stdout}`);
  return JSON.parse(lines[0]!) as ExpirePlanJson;
}

/**
 * The plan keeps backup A because of lease `lease`, B by the policy, and
 * the WAL from A's start on (what lies below A, from before it, may go).
 */
function assertKeptByLease(plan: ExpirePlanJson, h: History, lease: string): void {
  const a = plan.backups.find((b) => b.id === h.a.id);
  assert.ok(a, `backup A ${h.a.id} is in the plan: ${JSON.stringify(plan.backups)}`);
  assert.equal(a.action, 'keep', `backup A stays: ${a.reasons.join('; ')}`);
  assert.ok(a.reasons.some((r) => r.includes(lease)), `backup A stays because of lease ${lease}: ${a.reasons.join('; ')}`);
  assert.equal(plan.backups.find((b) => b.id === h.b.id)?.action, 'keep');
  for (const w of plan.wal) assert.ok(w.removed === null || w.removed.to < h.a.startWal, `WAL from A's start ${h.a.startWal} on stays: ${JSON.stringify(w)}`);
}

/**
 * While a recovery from A is paused at the mid LSN (rows 1..20 replayed, the
 * WAL of 21.. still to read), expire --keep-full 1 keeps A and all of the
 * WAL; then the recovery goes on to `resume`'s target and promotes.
 */
async function expireDuringPause(h: History, name: string, restoreArgs: string[], pauseConf: Record<string, string>, resumeConf: Record<string, string>, expected: Rows): Promise<void> {
  const { cluster, result, lease } = await restoreInto(h, name, restoreArgs);
  assert.equal(result.backup, h.a.id, 'the restore is of backup A');
  // Setting the pause target after cairn-restore's lines: the last one wins.
  await cluster.setConf({ ...pauseConf, recovery_target_lsn: h.midLsn, recovery_target_action: 'pause' });
  await cluster.start({ timeoutSec: 120 });
  await waitForReplayPaused(cluster);
  assert.deepEqual(await rowsOf(cluster), h.rows.mid, 'paused half-way: rows up to the mid LSN');

  const walBefore = await storedSegments(h.repo);
  assert.ok(walBefore.some((w) => w.name < h.b.startWal), 'there is WAL below B that --keep-full 1 alone would remove');
  const plan = await expire(h.repo, ['--json']);
  assertKeptByLease(plan, h, lease);
  assert.equal(plan.totals.backupsRemoved, 0);
  assert.ok((await h.repo.keys(`main/backups/${h.a.id}/`)).includes(`main/backups/${h.a.id}/manifest.json`), 'A is still stored');
  const fromA = (w: { name: string }[]) => w.filter((x) => x.name >= h.a.startWal);
  assert.deepEqual(fromA(await storedSegments(h.repo)), fromA(walBefore), 'every WAL segment from A\'s start on is still stored');

  // Resume with the real target: a restart reads the recovery settings again.
  await cluster.stop();
  await cluster.setConf({ recovery_target_lsn: '', ...resumeConf });
  await cluster.start({ timeoutSec: 120 });
  await cluster.waitForRecoveryEnd(120_000);
  assert.equal(await currentTimeline(cluster), 2, 'promoted: timeline 2');
  assert.deepEqual(await rowsOf(cluster), expected, 'the recovery reached its target with exactly its rows');
  await cluster.destroy();
}

export function describeReaderLeases(kind: 'fs' | 's3'): void {
  describe(`reader leases, ${kind} repository${kind === 's3' ? ', encrypted' : ''}`, { timeout: 600_000 }, () => {
    it('expire during a recovery paused half-way to latest keeps backup A and its WAL; the recovery ends with every row', async () => {
      const h = await makeHistory(kind, `latest-${kind}`);
      await expireDuringPause(h, `rl-latest-r-${kind}`, ['--set', h.a.id, '--target', 'latest'], {}, { recovery_target_action: 'promote' }, h.rows.latest);
    });

    it('expire during a recovery paused half-way to a time target keeps what it needs; the recovery stops at the time with its rows', async () => {
      const h = await makeHistory(kind, `time-${kind}`);
      // The time goes away while paused at the mid LSN (PostgreSQL takes one
      // target); the empty value is read first, so only one is ever set.
      await expireDuringPause(
        h,
        `rl-time-r-${kind}`,
        ['--target-time', h.time, '--target-action', 'promote'],
        { recovery_target_time: '' },
        { recovery_target_time: h.time, recovery_target_action: 'promote' },
        h.rows.time,
      );
    });

    it('a lease removed by hand and WAL lost anyway: wal-get exits 126 for a proved segment and PostgreSQL stops instead of promoting', async () => {
      const h = await makeHistory(kind, `lost-${kind}`);
      const { cluster, lease } = await restoreInto(h, `rl-lost-r-${kind}`, ['--set', h.a.id, '--target', 'latest']);
      const rec = (await readLease(h.repo, lease))!;
      await h.repo.remove(leaseKey(lease));
      assert.equal(await readLease(h.repo, lease), undefined, 'the lease is gone');
      // The segments after A's end and before B's start, all inside the plan's range.
      const lost = (await storedSegments(h.repo)).filter((w) => w.name > h.a.stopWal && w.name < h.b.startWal);
      assert.ok(lost.length > 0, 'WAL between A and B');
      assert.ok(lost.every((w) => rec.wal.some((r) => r.from <= w.name && w.name <= r.to)), `the lost segments are inside the lease's ranges ${JSON.stringify(rec.wal)}`);
      for (const w of lost) await h.repo.remove(w.key);
      const first = lost[0]!.name;

      const r = await runRestoreCommand(cluster, h.repo, first);
      assert.equal(r.code, 126, `restore_command for lost ${first}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${first}.*present when the restore was planned`));
      assert.ok(!existsSync(join(cluster.pgdata, 'pg_wal', 'RECOVERYXLOG')), 'nothing left at %p');

      // PostgreSQL takes an exit status above 125 as fatal: recovery stops there.
      await cluster.start({ wait: false });
      const outcome = await recoveryOutcome(cluster);
      const log = await cluster.serverLog();
      const promoted = outcome === 'promoted' ? `promoted with rows ${JSON.stringify(await rowsOf(cluster))} where the archive held ${JSON.stringify(h.rows.latest)}` : '';
      assert.equal(outcome, 'stopped', `the server stops recovery ${promoted}:\n${log.slice(-3000)}`);
      // PostgreSQL words exit status 126 as "command not executable".
      assert.match(log, new RegExp(`FATAL: +could not restore file "${first}" from archive: (command not executable|.*exit code 126)`));
      assert.match(log, /present when the restore was planned/);
      assert.doesNotMatch(log, /selected new timeline ID|archive recovery complete|database system is ready to accept connections/, 'never promoted');
      assert.ok(!existsSync(join(cluster.pgdata, 'pg_wal', '00000002.history')), 'no timeline 2');
      await cluster.destroy();
    });

    it('wal-get renews the lease during archive recovery (recovery.signal), not after it', async () => {
      const h = await makeHistory(kind, `renew-${kind}`);
      // A renewal is due a quarter of the lifetime after the last one (at most a minute).
      const lifetimeMs = 8_000;
      const { cluster, lease } = await restoreInto(h, `rl-renew-r-${kind}`, ['--set', h.a.id, '--target', 'latest', '--lease-lifetime', '8s']);
      const rec0 = (await readLease(h.repo, lease))!;
      assertLifetime(rec0, lifetimeMs);
      // Without recovery.signal (recovery over) wal-get serves but does not renew.
      await rm(join(cluster.pgdata, 'recovery.signal'));
      await sleep(lifetimeMs / 4 + 500);
      let r = await runRestoreCommand(cluster, h.repo, h.a.startWal);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await readLease(h.repo, lease))!.renewedAt, rec0.renewedAt, 'not renewed outside archive recovery');
      // With it, the call renews: a new renewedAt, and the lifetime from there.
      await cluster.writeFile('recovery.signal', '');
      r = await runRestoreCommand(cluster, h.repo, h.a.startWal);
      assert.equal(r.code, 0, r.stderr);
      const rec1 = (await readLease(h.repo, lease))!;
      assert.ok(Date.parse(rec1.renewedAt) > Date.parse(rec0.renewedAt), `renewed during archive recovery: ${rec0.renewedAt} → ${rec1.renewedAt}`);
      assertLifetime(rec1, lifetimeMs);
      await cluster.destroy();
    });

    it('a lease nobody renews lapses, and expire then removes what it alone kept', async () => {
      const h = await makeHistory(kind, `lapse-${kind}`);
      // Long enough for the rest of the restore and a dry run on a loaded
      // machine (10 s was not, on S3 with both suites running), short for the test.
      const { lease } = await restoreInto(h, `rl-lapse-r-${kind}`, ['--set', h.a.id, '--target', 'latest', '--lease-lifetime', '30s']);
      const rec = (await readLease(h.repo, lease))!;
      assertLifetime(rec, 30_000);

      // No PostgreSQL runs, nothing renews; right away the lease protects A.
      const keysBefore = await h.repo.keys();
      const dry = await expire(h.repo, ['--dry-run']);
      assert.ok(Date.now() < Date.parse(rec.expiresAt), 'the dry run ended while the lease was live (a slow machine makes this test inconclusive)');
      assertKeptByLease(dry, h, lease);
      assert.deepEqual(await h.repo.keys(), keysBefore, 'a dry run deletes nothing');

      await sleep(Date.parse(rec.expiresAt) + 1000 - Date.now());
      assert.equal((await readLease(h.repo, lease))?.renewedAt, rec.renewedAt, 'nobody renewed it');
      const walBefore = await storedSegments(h.repo);
      const plan = await expire(h.repo, ['--json']);
      assert.equal(plan.backups.find((b) => b.id === h.a.id)?.action, 'remove', `A goes once its lease lapsed: ${JSON.stringify(plan.backups)}`);
      assert.equal(plan.backups.find((b) => b.id === h.b.id)?.action, 'keep');
      const backups = await h.repo.keys('main/backups/');
      assert.ok(!backups.some((k) => k.startsWith(`main/backups/${h.a.id}/`)), 'A is gone');
      assert.ok(backups.includes(`main/backups/${h.b.id}/manifest.json`), 'B stays');
      assert.deepEqual(await storedSegments(h.repo), walBefore.filter((w) => w.name >= h.b.startWal), 'the WAL below B (only the lease kept it) is gone, the rest stays');
    });
  });
}
