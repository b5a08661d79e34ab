// cairn-check: is this server's archiving into cairn working, end to end?
// (pgBackRest's `check`.) Each repository takes a probe object and gives it
// back; the server's archiving settings are judged; a WAL switch is followed
// until the switched segment is in every repository; pg_stat_archiver's
// failures are reported. Every problem is one line naming what to change.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { buffer } from 'node:stream/consumers';
import { CairnError, toCairnError } from '@cairn/core/cli/errors';
import type { ToolContext } from '@cairn/core/cli/run';
import { connectPg, type PgClient } from '@cairn/core/pg/connect';
import { libpqEnv } from '@cairn/core/pg/server-address';
import { probeKey, probesPrefix } from '@cairn/core/repo/layout';
import { closeRepositories, openRepositories } from '@cairn/core/repo/repositories';
import { findWal } from '@cairn/core/repo/wal-archive';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { sleep } from '@cairn/core/util/limit';
import { judgeArchiveSettings, type ArchiveSettings } from './archive-settings.js';

export interface CheckOptions {
  repos: string[];
  cluster: string;
  /** The local server's data directory: its postmaster.pid says where the server listens. */
  pgdata: string | undefined;
  /** How long the switched segment may take to reach every repository. */
  timeoutMs: number;
  /** false: no WAL switch (a frequent probe would fill the archive with near-empty segments). */
  switchWal: boolean;
}

export interface CheckItem {
  check: 'repository' | 'connection' | 'settings' | 'archive' | 'archiver';
  ok: boolean;
  message: string;
}

export interface CheckResult {
  format: 'cairn.check/1';
  cluster: string;
  systemId: string | null;
  /** The segment the switch completed; null without a switch. */
  segment: string | null;
  /** Seconds until it was in every repository; null when it never was or no switch was made. */
  archiveSeconds: number | null;
  items: CheckItem[];
  problems: string[];
}

/** Probe objects older than this were left by a check that was killed; the next check removes them. */
const STALE_PROBE_MS = 60 * 60 * 1000;

export async function check(o: CheckOptions, ctx: ToolContext): Promise<CheckResult> {
  const items: CheckItem[] = [];
  const ok = (c: CheckItem['check'], message: string) => items.push({ check: c, ok: true, message });
  const problem = (c: CheckItem['check'], message: string) => items.push({ check: c, ok: false, message });
  const result = (systemId: string | null, segment: string | null, archiveSeconds: number | null): CheckResult => ({
    format: 'cairn.check/1', cluster: o.cluster, systemId, segment, archiveSeconds, items, problems: items.filter((i) => !i.ok).map((i) => i.message),
  });

  const drivers = await openRepositories(o.repos, ctx.env);
  let client: PgClient | undefined;
  try {
    const writable: StorageDriver[] = [];
    for (const d of drivers) {
      const why = await probeRepository(d, o.cluster, ctx);
      if (why === undefined) {
        ok('repository', `repository "${d.url}" is reachable and writable`);
        writable.push(d);
      } else {
        problem('repository', `repository "${d.url}" is not writable: ${why}; check the URL, the credentials and that this user may write there`);
      }
    }

    try {
      client = await connectPg({ env: libpqEnv(ctx.env, o.pgdata !== undefined ? { pgdata: o.pgdata } : {}), application: 'cairn-check', needs: 'a superuser, or a role that may read the settings and run pg_switch_wal()' });
    } catch (err) {
      const e = toCairnError(err);
      if (e.code === 'INTERNAL') throw e;
      problem('connection', `${e.message}${e.hint ? `; ${e.hint}` : ''}`);
      return result(null, null, null);
    }
    ok('connection', 'connected to PostgreSQL');

    const s = await readSettings(client);
    const bad = judgeArchiveSettings(s);
    for (const p of bad) problem('settings', p.message);
    if (bad.length === 0) ok('settings', `archive_mode = ${s.archive_mode}, wal_level = ${s.wal_level}, archive_command runs cairn-wal-push`);

    let segment: string | null = null;
    let archiveSeconds: number | null = null;
    if (!o.switchWal) {
      ok('archive', 'no WAL switch (--no-switch-wal)');
    } else if (s.inRecovery) {
      ok('archive', 'the server is a standby: no WAL switch (run cairn-check on the primary to follow one)');
    } else if (bad.length > 0) {
      problem('archive', 'no WAL switch while the settings above are wrong: the segment could not reach the repository');
    } else if (writable.length > 0) {
      segment = await switchWal(client, problem);
      if (segment !== null) {
        const t0 = performance.now();
        const missing = await waitForSegment(writable, o.cluster, s.systemId, segment, o.timeoutMs, ctx.signal);
        for (const d of missing) {
          problem('archive', `WAL segment ${segment} did not reach repository "${d.url}" within ${o.timeoutMs / 1000} s; see pg_stat_archiver and the PostgreSQL log for cairn-wal-push's error, and that archive_command uses this repository and --cluster ${o.cluster}`);
        }
        if (missing.length === 0) {
          archiveSeconds = Math.round(performance.now() - t0) / 1000;
          ok('archive', `WAL segment ${segment} reached every repository in ${archiveSeconds} s`);
        }
      }
    }

    // After the switch: a failure that archiving has since got past is history.
    const failing = await archiverFailure(client);
    if (failing === undefined) ok('archiver', 'pg_stat_archiver reports no failure since the last success');
    else problem('archiver', failing);
    return result(s.systemId, segment, archiveSeconds);
  } finally {
    await client?.end().catch(() => {});
    await closeRepositories(drivers);
  }
}

/** Writes, reads back and removes a probe object; the reason it failed, or undefined. */
async function probeRepository(d: StorageDriver, cluster: string, ctx: ToolContext): Promise<string | undefined> {
  const at = ctx.now();
  const id = `${at.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}-${randomBytes(4).toString('hex')}`;
  const key = probeKey(cluster, id);
  const body = Buffer.from(JSON.stringify({ format: 'cairn.check-probe/1', host: hostname(), pid: process.pid, at: at.toISOString() }) + '\n');
  try {
    await removeStaleProbes(d, cluster, at, ctx.signal);
    await d.write(key, body, { ifAbsent: true, signal: ctx.signal });
    const back = d.readSmall ? await d.readSmall(key, ctx.signal) : await buffer(await d.read(key, ctx.signal));
    if (!back.equals(body)) return `the probe object "${key}" read back different from what was written`;
    await d.remove(key, ctx.signal);
    if ((await d.stat(key, ctx.signal)) !== undefined) return `the probe object "${key}" is still there after its removal`;
    return undefined;
  } catch (err) {
    const e = toCairnError(err);
    if (e.code === 'INTERNAL' && !(err instanceof Error && 'code' in err)) throw e;
    return e.message;
  }
}

async function removeStaleProbes(d: StorageDriver, cluster: string, now: Date, signal: AbortSignal): Promise<void> {
  for await (const obj of d.list(probesPrefix(cluster), signal)) {
    if (now.getTime() - obj.mtime.getTime() > STALE_PROBE_MS) await d.remove(obj.key, signal).catch(() => {});
  }
}

async function readSettings(client: PgClient): Promise<ArchiveSettings & { systemId: string }> {
  try {
    const r = await client.query<{ am: string; wl: string; ac: string; al: string; rec: boolean; sys: string }>(
      `select current_setting('archive_mode') am, current_setting('wal_level') wl, current_setting('archive_command') ac,
              coalesce(current_setting('archive_library', true), '') al, pg_is_in_recovery() rec,
              (select system_identifier::text from pg_control_system()) sys`,
    );
    const row = r.rows[0]!;
    return { archive_mode: row.am, wal_level: row.wl, archive_command: row.ac, archive_library: row.al, inRecovery: row.rec, systemId: row.sys };
  } catch (err) {
    throw new CairnError('PG_CONNECT', `cannot read the archiving settings: ${(err as Error).message}`, {
      hint: 'run cairn-check as a superuser or as a role with pg_read_all_settings',
      cause: err,
    });
  }
}

/** pg_switch_wal(): the name of the segment it completed, or null (the problem is recorded). */
async function switchWal(client: PgClient, problem: (c: 'archive', m: string) => void): Promise<string | null> {
  // A restore point first, so there is WAL to switch even on an idle server
  // (pg_switch_wal() does nothing at the start of a segment). Best effort: it
  // needs superuser, the switch alone usually suffices.
  await client.query(`select pg_create_restore_point('cairn-check')`).catch(() => {});
  try {
    // With nothing to switch, pg_switch_wal() returns the start of the
    // segment in use: a segment boundary. pg_walfile_name() named the
    // segment before it (the last one finished) up to PostgreSQL 16, and
    // names the one starting there (unfinished: archived only after more
    // WAL) from 17; the byte before the boundary names the finished one on
    // every version (docs/gotchas.md §Real hosts).
    const r = await client.query<{ w: string }>(
      `select pg_walfile_name(case when (l - '0/0'::pg_lsn) % s = 0 and l > '0/0'::pg_lsn then l - 1 else l end) w
         from (select pg_switch_wal() l, (select setting::numeric from pg_settings where name = 'wal_segment_size') s) x`,
    );
    return r.rows[0]!.w;
  } catch (err) {
    problem('archive', `cannot switch WAL: ${(err as Error).message}; run cairn-check as a superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() to its role`);
    return null;
  }
}

/** The repositories the segment did not reach in time ([] when it reached all). */
async function waitForSegment(drivers: StorageDriver[], cluster: string, systemId: string, segment: string, timeoutMs: number, signal: AbortSignal): Promise<StorageDriver[]> {
  const end = performance.now() + timeoutMs;
  let missing = drivers;
  for (;;) {
    const still: StorageDriver[] = [];
    for (const d of missing) if ((await findWal(d, cluster, systemId, segment, signal)).length === 0) still.push(d);
    missing = still;
    if (missing.length === 0 || performance.now() >= end) return missing;
    await sleep(Math.min(250, Math.max(0, end - performance.now())), signal);
  }
}

/** A line when the archiver's last attempt failed (its newest failure is after its newest success). */
async function archiverFailure(client: PgClient): Promise<string | undefined> {
  const r = await client.query<{ failed_count: string; last_failed_wal: string | null; last_failed_time: Date | null; last_archived_time: Date | null }>(
    'select failed_count, last_failed_wal, last_failed_time, last_archived_time from pg_stat_archiver',
  );
  const a = r.rows[0];
  if (!a || a.last_failed_time === null) return undefined;
  if (a.last_archived_time !== null && a.last_archived_time >= a.last_failed_time) return undefined;
  return `archiving is failing: the last attempt, for ${a.last_failed_wal ?? 'a WAL file'} at ${a.last_failed_time.toISOString()}, failed (${a.failed_count} failures since the statistics were reset); see the PostgreSQL log for cairn-wal-push's error`;
}
