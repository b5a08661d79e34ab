// Shared steps of the pitr, backup-chain and backup-rules suites: capture the
// rows at an exact moment under load, restore into a fresh cluster with
// cairn-restore, prove it holds those rows (pgbench invariant, pg_amcheck).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { runAsMe } from '@cairn/testkit/run-as';
import { assertPgbenchInvariant, SNAPSHOT_SQL } from './archive-restore.js';
import type { RepoFixture } from './repo-fixture.js';
import { commandLine, runCairn, type ToolRun } from './tools.js';

export { SNAPSHOT_SQL };

type PgClient = Awaited<ReturnType<Cluster['connect']>>;

/**
 * Writers wait while a session holds this (pgbench's UPDATE/INSERT take ROW
 * EXCLUSIVE, which conflicts with EXCLUSIVE), so no change to these tables
 * commits while it is held; accounts first, as pgbench's transactions take
 * it first, so no deadlock. Readers and the backup machinery are not blocked.
 */
export const LOCK_SQL = 'lock table pgbench_accounts, pgbench_tellers, pgbench_branches, pgbench_history, marker in exclusive mode';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Capture<T> {
  /** SNAPSHOT_SQL's text, taken while the tables could not change. */
  snapshot: string;
  value: T;
}

/**
 * In one transaction holding LOCK_SQL: run `body` (which names the target:
 * a time, an xid, a restore point, a backup…), take the snapshot, wait
 * `holdMs` so any later commit is clearly after the target, commit.
 */
export async function captureUnderLock<T>(c: Cluster, body: (client: PgClient) => Promise<T>, holdMs = 300): Promise<Capture<T>> {
  const client = await c.connect();
  try {
    await client.query('begin');
    await client.query(LOCK_SQL);
    const value = await body(client);
    const snapshot = await scalar(client, SNAPSHOT_SQL);
    await sleep(holdMs);
    await client.query('commit');
    return { snapshot, value };
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
}

/** One text value of one statement, on a client inside a capture. */
export async function scalar(client: PgClient, sql: string): Promise<string> {
  const res = await client.query(sql);
  const row = res.rows[0] as Record<string, unknown> | undefined;
  assert.ok(row, `no row from ${sql}`);
  return String(Object.values(row)[0]);
}

/** clock_timestamp() as PostgreSQL reads recovery_target_time: UTC, microseconds, "+00". */
export const NOW_UTC_SQL = `select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' as t`;

/** Run a tool and fail the test with its stderr unless it exits 0. */
export async function cairnOk(tool: string, args: string[], env: Record<string, string>, timeoutMs = 300_000): Promise<ToolRun> {
  const r = await runCairn(tool, args, { env, timeoutMs });
  assert.equal(r.code, 0, `cairn-${tool} ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return r;
}

/** cairn-basebackup --pgdata of a running cluster; its id. */
export async function takeBackup(src: Cluster, repo: RepoFixture, type: 'full' | 'diff' | 'incr' = 'full'): Promise<string> {
  const r = await cairnOk('basebackup', ['--pgdata', src.pgdata, '--type', type], { ...src.env, ...repo.env });
  const id = r.stdout.trim();
  assert.match(id, /^\d{8}-\d{6}[FDI]$/, `backup id on stdout: ${JSON.stringify(r.stdout)}`);
  assert.equal(id.slice(-1), type[0]!.toUpperCase(), `${type} backup id ${id}`);
  return id;
}

/** An archive_command through cairn-wal-push (the repository comes from the server's env). */
export function walPushCommand(): string {
  return commandLine('wal-push', '%p %f');
}

export interface RestoreJson {
  backup: string;
  files: number;
  filesFetched: number;
  filesKept: number;
  bytesWritten: number;
  bytesKept: number;
  removed: number;
  seconds: number;
  plan?: { backup: { id: string }; chain: string[]; targetTimeline: number };
}

export interface Restored {
  cluster: Cluster;
  result: RestoreJson;
}

/**
 * cairn-restore --json into a fresh empty cluster (archive_mode off unless
 * `archive` is given), start it and wait until recovery has ended.
 */
export async function restoreAndStart(
  repo: RepoFixture,
  name: string,
  args: string[],
  opts: { archive?: boolean; cluster?: Cluster } = {},
): Promise<Restored> {
  const cluster =
    opts.cluster ??
    (await createCluster({
      name,
      initdb: false,
      env: repo.env,
      ...(opts.archive ? { archiveCommand: walPushCommand(), archiveTimeout: '1s' } : { conf: { archive_mode: 'off' } }),
    }));
  const r = await cairnOk('restore', ['--pgdata', cluster.pgdata, '--json', ...args], repo.env);
  const result = JSON.parse(r.stdout) as RestoreJson;
  await cluster.start({ timeoutSec: 300 });
  await cluster.waitForRecoveryEnd(300_000);
  return { cluster, result };
}

/** pg_amcheck --install-missing --all against a running cluster: must exit 0. */
export async function assertAmcheck(c: Cluster): Promise<void> {
  const r = await runAsMe(join(c.clientBindir, 'pg_amcheck'), ['--install-missing', '--all', '-h', c.host, '-p', String(c.port), '-U', c.superuser], {
    env: c.env,
    allowFail: true,
    timeoutMs: 300_000,
  });
  assert.equal(r.code, 0, `pg_amcheck on "${c.name}" exited ${r.code}:\n${r.stdout}${r.stderr}`);
}

/** The restored cluster holds exactly `expected`, keeps pgbench's invariant and passes pg_amcheck. */
export async function assertRestoredEquals(c: Cluster, expected: string, what: string): Promise<void> {
  const got = await c.psql(SNAPSHOT_SQL);
  assert.deepEqual(JSON.parse(got), JSON.parse(expected), `${what}: restored rows equal the capture`);
  await assertPgbenchInvariant(c);
  await assertAmcheck(c);
}

/** The timeline a running primary writes on. */
export async function currentTimeline(c: Cluster): Promise<number> {
  const wal = await c.psql('select pg_walfile_name(pg_current_wal_insert_lsn())');
  return parseInt(wal.slice(0, 8), 16);
}

/**
 * Switch to a new segment and wait until the one just finished is in the
 * archive. On a segment nothing was written to since the last switch,
 * pg_switch_wal() returns the segment boundary, which PostgreSQL 17+'s
 * pg_walfile_name names as the unfinished segment starting there (up to 16:
 * the one before): the byte before a boundary names the finished one on every
 * version, as cairn-check does (docs/gotchas.md §Real hosts).
 */
export async function switchAndWaitArchived(c: Cluster): Promise<string> {
  const last = await c.psql(
    "select pg_walfile_name(case when (l - '0/0'::pg_lsn) % s = 0 and l > '0/0'::pg_lsn then l - 1 else l end) " +
      "from (select pg_switch_wal() l, (select setting::numeric from pg_settings where name = 'wal_segment_size') s) x",
  );
  await c.waitForArchived(last, 120_000);
  return last;
}

/** A manifest as stored (unencrypted repositories store it as plain JSON). */
export interface StoredManifest {
  id: string;
  type: 'full' | 'diff' | 'incr';
  parent: string | null;
  references: string[];
  timeline: number;
  start: { lsn: string; wal: string; time: string };
  stop: { lsn: string; wal: string; time: string };
  files: { path: string; size: number; sha256: string; ref: string; key: string; storedSize: number; bundle?: { key: string; offset: number } }[];
  totals: { size: number; storedSize: number; filesStored: number; filesReferenced: number };
}

export async function readStoredManifest(repo: RepoFixture, id: string): Promise<StoredManifest> {
  const key = `main/backups/${id}/manifest.json`;
  const objects = await repo.objects(key);
  const body = objects.get(key);
  assert.ok(body, `manifest "${key}" is stored`);
  return parseStoredManifest(body.toString('utf8')) as unknown as StoredManifest;
}

/**
 * A stored manifest's text as one object: cairn.backup/3 is JSON Lines (a
 * header, a record per file, an end line: core backup/manifest-stream.ts),
 * older ones one JSON document.
 */
export function parseStoredManifest(text: string): Record<string, unknown> {
  const lines = text.split('\n');
  if (!lines[0]!.includes('"format":"cairn.backup/3"')) return JSON.parse(text) as Record<string, unknown>;
  const { fileCount, ...head } = JSON.parse(lines[0]!) as Record<string, unknown>;
  const files = lines.slice(1, -2).map((l) => JSON.parse(l) as unknown);
  assert.equal(files.length, fileCount, 'the manifest holds as many records as its header says');
  assert.ok(lines.at(-2)!.startsWith('{"end":'), 'the manifest ends with its end line');
  return { ...head, files };
}

/** Segment number of a WAL file name within its timeline (16 MB segments). */
export function segmentNo(name: string): number {
  return parseInt(name.slice(8, 16), 16) * 0x100 + parseInt(name.slice(16, 24), 16);
}
