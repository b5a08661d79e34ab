// cairn-drill as a function: restore a backup (or a logical dump) into a
// scratch directory with the cairn-restore executable (a tool never imports
// another tool), start PostgreSQL there on its own socket, wait until
// recovery reaches the target and promotes, run the checks, measure RTO and
// data age, store the result in the repository, and always clean up.

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CairnError, EXIT, isCairnError, toCairnError } from '@cairn/core/cli/errors';
import type { ToolContext } from '@cairn/core/cli/run';
import { findPgProgram } from '@cairn/core/pg/binaries';
import { describeExit, programErrorLine, runProgram } from '@cairn/core/util/program';
import { closeRepositories, keySourceArgs, loadKey, openRepositories } from '@cairn/core/repo/repositories';
import { readRepoConfig } from '@cairn/core/repo/repo-config';
import { makePlanFromRepositories } from '@cairn/core/restore/load-plan';
import { DRILL_LEASE_LIFETIME_MS, holdReaderLease, leaseFieldsFromPlan, type HeldReaderLease, type ReaderLeaseFields } from '@cairn/core/repo/reader-lease';
import { parsePlan } from '@cairn/core/restore/parse-plan';
import type { RecoveryTarget, RestorePlan } from '@cairn/core/restore/plan-format';
import { databaseDir, listDumps, readDumpManifest, resolveDumpRef, type DumpManifest } from '@cairn/core/dump/manifest';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { utcStamp } from '@cairn/core/util/time-id';
import { quote } from '@cairn/core/wal/quote';
import { DRILL_RESULT_FORMAT, storeDrillResult, type DrillCheck, type DrillResult } from '@cairn/core/drill/result-format';
import { judgeCheck, type CheckStatement } from '@cairn/core/drill/check-sql';
import { dataAgeSeconds, judgeRecoveryTarget } from '@cairn/core/drill/judge';
import { connectScratch } from '@cairn/core/drill/scratch-client';
import { drillRole } from '@cairn/core/drill/role';
import { readManifestSummary } from '@cairn/core/backup/manifest-stream';
import { DrillFailure, freePort, Scratch, waitForPromotion, type OsUser } from './scratch-server.js';

export type DrillSource =
  | { kind: 'target'; target: RecoveryTarget; set?: string }
  | { kind: 'plan'; text: string; from: string }
  | { kind: 'dump'; ref: string };

export interface DrillOptions {
  repos: string[];
  cluster: string;
  keyFile: string | undefined;
  keyCommand?: string | undefined;
  /** --config, passed on to cairn-restore (and so to cairn-wal-get). */
  configFile: string | undefined;
  source: DrillSource;
  checks: CheckStatement[];
  /** Where the scratch directory `cairn-drill-<id>-XXXXXX` is made. */
  scratchParent: string;
  keep: boolean;
  /** How long to wait from starting PostgreSQL until it has promoted. */
  timeoutMs: number;
  /** The OS user the server runs as when cairn-drill runs as root. */
  runAs: OsUser | undefined;
  /** The role to connect as (default: the OS user the server runs as). */
  dbUser: string | undefined;
  /** The database the checks run in (a backup); a dump's checks run in its database. */
  checkDb: string;
  amcheck: boolean;
  pgBin: string | undefined;
}

export interface DrillOutcome {
  result: DrillResult;
  /** 0 passed, 1 a check failed (or recovery failed / timed out), else the failing step's status. */
  status: number;
  /** Where the result was stored, or why it could not be. */
  stored: { key: string; repo: string } | { error: string };
  /** With --keep: where the scratch server is. */
  kept?: { dir: string; pgdata: string; socketDir: string; port: number };
}

/**
 * The installed executable `name` beside this tool (node_modules/.bin in a
 * checkout, bin/ in a package: scripts/package.mjs), else the one on PATH.
 */
export function siblingTool(name: string): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    for (const sub of ['node_modules/.bin', 'bin']) {
      const candidate = join(dir, sub, name);
      if (existsSync(candidate)) return candidate;
    }
  }
  return name;
}

/** uid and gid of an OS user (getent), USAGE when there is none. */
export async function lookupOsUser(name: string, env: NodeJS.ProcessEnv): Promise<OsUser> {
  // getent exits 2 for an unknown user.
  const r = await runProgram('getent', ['passwd', name], { env, stdout: 'collect' });
  const [, , uid, gid] = r.stdout.trim().split(':');
  if (r.code === 0 && uid !== undefined && gid !== undefined) return { name, uid: Number(uid), gid: Number(gid) };
  throw new CairnError('USAGE', `no OS user ${quote(name)} to run PostgreSQL as`, { hint: 'give --run-as with the user that owns PostgreSQL here (PostgreSQL refuses to run as root)' });
}

interface Timing {
  restoreSeconds: number | null;
  replaySeconds: number | null;
  rtoSeconds: number | null;
}

/** Runs cairn-restore with `args` (stdin: `input`), returning its status and stderr. */
async function runRestore(args: string[], input: string | undefined, env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<{ code: number; stderr: string }> {
  const e = await runProgram(siblingTool('cairn-restore'), args, { env, signal, ...(input === undefined ? {} : { stdin: { input } }) });
  if (e.error) return { code: 127, stderr: `cannot run cairn-restore: ${e.error.message}` };
  return { code: e.code ?? EXIT.INTERNAL, stderr: e.stderr };
}

/** A child's warnings (`PROGRAM: warn: …` lines), told again on the drill's stderr. */
function forwardWarnings(text: string, program: string, ctx: ToolContext): void {
  const prefix = `${program}: warn: `;
  for (const line of text.split('\n')) if (line.startsWith(prefix)) ctx.log.warn(`${program}: ${line.slice(prefix.length)}`);
}

/** The line of cairn-restore's stderr that says what failed. */
function restoreError(stderr: string): string {
  return programErrorLine(stderr, { program: 'cairn-restore' });
}

export async function drill(o: DrillOptions, ctx: ToolContext): Promise<DrillOutcome> {
  const start = ctx.now();
  const t0 = performance.now();
  const elapsed = () => Math.round(performance.now() - t0) / 1000;
  const key = await loadKey(o, ctx.env, ctx.signal);
  const drivers = await openRepositories(o.repos, ctx.env);
  const timing: Timing = { restoreSeconds: null, replaySeconds: null, rtoSeconds: null };
  const checks: DrillCheck[] = [];
  let resultDriver: StorageDriver = drivers[0]!;
  let plan: RestorePlan | undefined;
  let dump: DumpManifest | undefined;
  let newestCommit: Date | null = null;
  let error: string | undefined;
  let status: number = EXIT.OK;
  let scratch: Scratch | undefined;
  let pgCtl: string | undefined;
  let kept: DrillOutcome['kept'];
  // The drill's reader lease (issue 12): expire keeps what it restores while it runs.
  let lease: HeldReaderLease | undefined;
  const takeLease = async (driver: StorageDriver, fields: ReaderLeaseFields): Promise<string[]> => {
    try {
      lease = await holdReaderLease(driver, o.cluster, fields, {
        lifetimeMs: DRILL_LEASE_LIFETIME_MS, now: ctx.now, tool: 'cairn-drill', signal: ctx.signal,
        onRenewError: (err) => ctx.log.warn(`reader lease not renewed: ${(err as Error).message}`),
      });
      return ['--lease', lease.lease.id];
    } catch (err) {
      ctx.signal.throwIfAborted();
      // A drill of a read-only copy still proves it restores.
      ctx.log.warn(`no reader lease taken in repository ${quote(driver.url)} (${(err as Error).message}): a cairn-expire run during the drill may fail it`);
      return [];
    }
  };
  // Settled once the backup is known: its manifest names the superuser.
  let dbUser = '';
  const restoreArgs = (repo: string) => {
    // The repository chosen first, then the other configured ones: a file or
    // WAL segment missing or damaged in it is taken from the next that holds
    // the same one (issue 18 item 3).
    const a = ['--repo', repo, ...drivers.filter((d) => d.url !== repo).flatMap((d) => ['--repo', d.url]), '--cluster', o.cluster];
    a.push(...keySourceArgs(o));
    if (o.configFile) a.push('--config', o.configFile);
    return a;
  };
  // Interrupted (SIGTERM/SIGINT): stop the server at once, which also ends a
  // check query in progress; the bin exits 2 s after the signal.
  const onAbort = () => void scratch?.stop(pgCtl);
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    try {
      // 1. What to restore.
      if (o.source.kind === 'dump') {
        const found = await findDump(drivers, o.cluster, o.source.ref, ctx.signal);
        resultDriver = found.driver;
        dump = found.manifest;
        await takeLease(resultDriver, {
          purpose: 'drill', pgdata: null, systemId: null, walSegmentSize: null, backup: null, chain: [], wal: [], target: null,
          dumps: [`${databaseDir(dump.database!)}/${dump.id}`],
        });
      } else {
        if (o.source.kind === 'plan') {
          plan = parsePlan(o.source.text, o.source.from);
          if (plan.cluster !== o.cluster) {
            throw new CairnError('CONFIG_INVALID', `the plan is for cluster ${quote(plan.cluster)}, not ${quote(o.cluster)}`, { hint: `give --cluster ${plan.cluster}` });
          }
        } else {
          plan = await makePlanFromRepositories({
            drivers, cluster: o.cluster, key, target: o.source.target, ...(o.source.set ? { set: o.source.set } : {}), now: start, signal: ctx.signal,
          });
        }
        const d = drivers.find((x) => x.url === plan!.repo);
        if (!d) throw new CairnError('CONFIG_INVALID', `the plan's repository ${quote(plan.repo)} is not configured`, { hint: 'give the same --repo the plan was made with' });
        resultDriver = d;
        // A drill checks a promoted server, whatever action the plan says.
        plan.target.action = 'promote';
        if (plan.target.kind !== 'latest') plan.recoverySettings['recovery_target_action'] = 'promote';
        for (const w of plan.warnings) ctx.log.warn(w);
      }
      // Its summary is enough (one line of a streamed manifest, issue 19).
      const superuser = plan ? (await readManifestSummary(resultDriver, o.cluster, plan.backup.id, ctx.signal))?.superuser : undefined;
      const role = drillRole({ flag: o.dbUser, env: ctx.env, superuser, osUser: o.runAs?.name ?? (await currentUserName()) });
      dbUser = role.name;
      ctx.log.info(`the checks connect as role ${quote(dbUser)} (from ${role.from})`);
      const major = Number(plan?.pgMajor ?? dump!.pgMajor);
      pgCtl = (await findPgProgram('pg_ctl', major, { pgBin: o.pgBin, env: ctx.env })).path;

      // 2. The scratch directory, the server's user's.
      await mkdir(o.scratchParent, { recursive: true });
      const dir = await mkdtemp(join(o.scratchParent, `cairn-drill-${utcStamp(start)}-`));
      scratch = new Scratch(dir, o.runAs, ctx.env, ctx.signal);
      await scratch.give(dir);
      const port = await freePort();

      if (plan) {
        // 3. Lay the backup down; its timing is the restore's.
        await mkdir(scratch.pgdata, { mode: 0o700 });
        await scratch.give(scratch.pgdata);
        const leaseArgs = await takeLease(resultDriver, leaseFieldsFromPlan(plan, scratch.pgdata, 'drill'));
        const r0 = performance.now();
        const r = await runRestore(['--plan', '-', '--pgdata', scratch.pgdata, '--config-dir', scratch.keptConfigDir, ...leaseArgs, ...restoreArgs(plan.repo)], JSON.stringify(plan), ctx.env, ctx.signal);
        ctx.signal.throwIfAborted();
        if (r.code !== 0) throw new DrillFailure(`cairn-restore of backup ${plan.backup.id} failed (exit status ${r.code}): ${restoreError(r.stderr)}`, r.code);
        forwardWarnings(r.stderr, 'cairn-restore', ctx);
        timing.restoreSeconds = Math.round(performance.now() - r0) / 1000;
        ctx.log.info(`backup ${plan.backup.id} restored into ${quote(scratch.pgdata)} in ${timing.restoreSeconds} s`);

        // 4. Start it and wait for recovery to reach the target and promote.
        const own = await scratch.configure(port, major);
        if (own === undefined) ctx.log.warn(`backup ${plan.backup.id} holds no postgresql.conf (a stream backup of a server whose configuration lives outside its data directory): the scratch server runs on PostgreSQL's defaults, without the source's shared_preload_libraries`);
        else ctx.log.info(`the scratch server reads the backup's settings from ${quote(own)}`);
        const s0 = performance.now();
        const deadline = Date.now() + o.timeoutMs;
        await scratch.start(pgCtl, o.timeoutMs);
        newestCommit = await waitForPromotion(scratch, dbUser, o.checkDb, deadline, o.timeoutMs, ctx.signal);
        timing.replaySeconds = Math.round(performance.now() - s0) / 1000;
        timing.rtoSeconds = elapsed();
        // restore_command's warnings (a segment taken from another repository) are in the server's log.
        forwardWarnings(await scratch.readLog(), 'cairn-wal-get', ctx);
      } else {
        // 3'. A fresh cluster, then the dump restored into it.
        const initdb = (await findPgProgram('initdb', major, { pgBin: o.pgBin, env: ctx.env })).path;
        await scratch.initdb(initdb, dbUser);
        await scratch.configure(port, major);
        await scratch.start(pgCtl, o.timeoutMs);
        const r0 = performance.now();
        const ref = `${dump!.database}/${dump!.id}`;
        const env: NodeJS.ProcessEnv = { ...ctx.env, PGHOST: scratch.dir, PGPORT: String(port), PGUSER: dbUser, PGDATABASE: 'postgres' };
        delete env['PGPASSWORD'];
        delete env['PGSERVICE'];
        // --no-owner: the scratch cluster has none of the source's roles; the
        // drill proves the data restores, not its grants.
        // initdb made postgres and template1, empty: a dump of one of them is
        // restored into it, any other database is created.
        const create = dump!.database !== 'postgres' && dump!.database !== 'template1' ? ['--create'] : [];
        const r = await runRestore(['--dump', ref, '--dbname', dump!.database!, ...create, '--no-owner', ...restoreArgs(resultDriver.url)], undefined, env, ctx.signal);
        ctx.signal.throwIfAborted();
        if (r.code !== 0) throw new DrillFailure(`cairn-restore of dump ${ref} failed (exit status ${r.code}): ${restoreError(r.stderr)}`, r.code);
        timing.restoreSeconds = Math.round(performance.now() - r0) / 1000;
        timing.rtoSeconds = elapsed();
      }

      // 5. Checks.
      const db = dump ? dump.database! : o.checkDb;
      await runChecks(scratch, dbUser, db, o, plan, newestCommit, major, checks, ctx);
      // A check cut short by the interruption is no finding.
      ctx.signal.throwIfAborted();
      if (checks.some((c) => !c.ok)) status = EXIT.CHECK_FAILED;
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason ?? err;
      if (err instanceof DrillFailure) {
        error = err.message;
        status = err.status;
      } else {
        const e = toCairnError(err);
        // Usage and configuration mistakes are not drill results.
        if (e.code === 'USAGE' || (e.exitCode === EXIT.CONFIG && plan === undefined && dump === undefined)) throw e;
        error = e.message;
        status = e.exitCode;
      }
    } finally {
      if (scratch) {
        if (o.keep && !ctx.signal.aborted) {
          kept = { dir: scratch.dir, pgdata: scratch.pgdata, socketDir: scratch.dir, port: scratch.port };
        } else {
          await scratch.stop(pgCtl);
        }
      }
    }

    // 6. The result, stored whatever happened.
    const result: DrillResult = {
      format: DRILL_RESULT_FORMAT,
      id: utcStamp(start),
      cluster: o.cluster,
      repo: resultDriver.url,
      kind: o.source.kind === 'dump' ? 'dump' : 'backup',
      backup: plan?.backup.id ?? null,
      dump: dump ? `${dump.database}/${dump.id}` : null,
      target: plan ? { kind: plan.target.kind, value: plan.target.value ?? null, timeline: plan.targetTimeline } : null,
      ok: status === EXIT.OK && error === undefined,
      checks,
      ...timing,
      dataAgeSeconds: dump ? Math.round(start.getTime() - Date.parse(dump.start.time)) / 1000 : dataAgeSeconds(plan?.target ?? null, start, newestCommit),
      newestCommit: newestCommit?.toISOString() ?? null,
      start: { time: start.toISOString() },
      stop: { time: ctx.now().toISOString() },
      ...(error === undefined ? {} : { error }),
    };
    if (o.source.kind !== 'dump' && plan === undefined) result.target = o.source.kind === 'target' ? { kind: o.source.target.kind, value: o.source.target.value ?? null, timeline: null } : null;
    if (!result.ok && status === EXIT.OK) status = EXIT.CHECK_FAILED;
    let stored: DrillOutcome['stored'];
    try {
      // Only into a repository that holds the cluster: a mistyped --repo or
      // --cluster must not create one just to hold a failed drill.
      if ((await readRepoConfig(resultDriver, o.cluster, ctx.signal)) === undefined) {
        stored = { error: `repository ${quote(resultDriver.url)} holds no cluster ${quote(o.cluster)} (no repo.json): the result was not stored` };
      } else {
        stored = { key: await storeDrillResult(resultDriver, result, ctx.signal), repo: resultDriver.url };
      }
    } catch (err) {
      stored = { error: `could not store the result in repository ${quote(resultDriver.url)}: ${(err as Error).message}` };
    }
    return { result, status, stored, ...(kept ? { kept } : {}) };
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    await (lease as HeldReaderLease | undefined)?.release();
    if (scratch && !kept) await rm(scratch.dir, { recursive: true, force: true });
    await closeRepositories(drivers);
  }
}

async function currentUserName(): Promise<string> {
  const { userInfo } = await import('node:os');
  return userInfo().username;
}

/** The first repository holding the dump `ref`, and its manifest. */
async function findDump(drivers: StorageDriver[], cluster: string, ref: string, signal: AbortSignal): Promise<{ driver: StorageDriver; manifest: DumpManifest }> {
  let first: unknown;
  for (const driver of drivers) {
    try {
      const r = resolveDumpRef(await listDumps(driver, cluster, signal), ref);
      const m = await readDumpManifest(driver, cluster, r.dir, r.id, signal);
      if (!m) throw new CairnError('NOT_FOUND', `no dump ${quote(ref)} in the repository`, { hint: 'cairn-info lists the dumps' });
      if (m.database === null) throw new CairnError('USAGE', `${quote(ref)} is the globals dump (roles and tablespaces)`, { hint: 'drill a database\'s dump: --dump DATABASE/ID' });
      return { driver, manifest: m };
    } catch (err) {
      if (!isCairnError(err, 'NOT_FOUND')) throw err;
      first ??= err;
    }
  }
  throw first ?? new CairnError('NOT_FOUND', `no dump ${quote(ref)} in the repository`, { hint: 'cairn-info lists the dumps' });
}

async function runChecks(
  scratch: Scratch, user: string, db: string, o: DrillOptions, plan: RestorePlan | undefined, newestCommit: Date | null, major: number,
  checks: DrillCheck[], ctx: ToolContext,
): Promise<void> {
  let client: Awaited<ReturnType<typeof connectScratch>> | undefined;
  try {
    try {
      client = await connectScratch(scratch.address(user), db);
      const r = await client.query<{ v: string }>('select version() v');
      checks.push({ name: 'connect', ok: true, message: `database ${quote(db)} accepts connections (${r.rows[0]!.v.split(' ').slice(0, 2).join(' ')})` });
    } catch (err) {
      checks.push({ name: 'connect', ok: false, message: toCairnError(err).message });
      return;
    }
    if (plan) checks.push({ name: 'recovery-target', ...judgeRecoveryTarget(plan.target, await scratch.readLog(), newestCommit) });
    if (o.amcheck) checks.push(await amcheck(scratch, user, o.source.kind === 'dump' ? db : undefined, major, o.pgBin, ctx));
    for (const stmt of o.checks) {
      try {
        const r = await client.query({ text: stmt.sql, rowMode: 'array' });
        // A multi-statement line returns one result per statement: the last one is judged.
        const last = Array.isArray(r) ? (r as { rows: unknown[][] }[]).at(-1)! : r;
        checks.push({ name: `sql:${stmt.line}`, ...judgeCheck(stmt, last.rows as unknown[][]) });
      } catch (err) {
        checks.push({ name: `sql:${stmt.line}`, ok: false, message: `line ${stmt.line}: ${(err as Error).message}` });
      }
    }
  } finally {
    await client?.end().catch(() => {});
  }
}

/** pg_amcheck of every database (a backup) or of the dump's: skipped, not failed, when it is not installed. */
async function amcheck(scratch: Scratch, user: string, db: string | undefined, major: number, pgBin: string | undefined, ctx: ToolContext): Promise<DrillCheck> {
  let path: string;
  try {
    path = (await findPgProgram('pg_amcheck', major, { pgBin, env: ctx.env })).path;
  } catch {
    return { name: 'amcheck', ok: true, skipped: true, message: 'pg_amcheck is not installed: skipped' };
  }
  const args = ['--install-missing', '-h', scratch.dir, '-p', String(scratch.port), '-U', user, ...(db === undefined ? ['--all'] : ['-d', db])];
  const env = { ...ctx.env };
  for (const k of ['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGPASSWORD', 'PGSERVICE', 'PGSSLMODE']) delete env[k];
  const r = await runProgram(path, args, { env, stdout: 'collect', signal: ctx.signal });
  if (r.code === 0) return { name: 'amcheck', ok: true, message: `pg_amcheck ${db === undefined ? '--all' : `of ${quote(db)}`} found no corruption` };
  // Its findings are on stdout, one per line: the first is the message.
  const first = `${r.stdout}${r.stderr}`.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? describeExit(r);
  return { name: 'amcheck', ok: false, message: `pg_amcheck ${describeExit(r)}: ${first}` };
}
