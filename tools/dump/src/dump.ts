// cairn-dump: logical dumps into the repository. pg_dump writes its custom
// format uncompressed to a pipe (-Fc -Z 0) and cairn compresses, encrypts and
// checksums it on the way to storage: no local copy of the whole dump and
// memory that stays flat however large the database. With --jobs, pg_dump
// -Fd -j N writes to a local directory whose files are then stored one object
// each. The manifest is written last, after pg_dump exited 0: no manifest, no
// dump.

import { createReadStream } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sweepLeftovers } from '@cairn/core/repo/debris';
import { localWorkDirName, removeDeadWorkDirs } from '@cairn/core/util/debris';
import { CairnError } from '@cairn/core/cli/errors';
import type { ToolContext } from '@cairn/core/cli/run';
import { encodedExtension, formatCompress, parseCompress, type EncodeSpec, type EncryptionKey } from '@cairn/core/codec/index';
import {
  databaseDir,
  dumpId,
  dumpManifestKey,
  dumpObjectKey,
  dumpObjectName,
  dumpPrefix,
  DUMP_MANIFEST_FORMAT,
  GLOBALS_DIR,
  type DumpFormat,
  type DumpManifest,
  type DumpObject,
} from '@cairn/core/dump/manifest';
import { writeDumpObjectMany, type WrittenObject } from '@cairn/core/dump/objects';
import { findPgProgram, type PgBinary } from '@cairn/core/pg/binaries';
import { describeExit, isProgramFailure, programErrorLine, runProgram, startProgram, type ProgramExit } from '@cairn/core/util/program';
import { connectPg, readServerInfo, type ServerInfo } from '@cairn/core/pg/connect';
import { libpqEnv } from '@cairn/core/pg/server-address';
import { ensureRepoConfig } from '@cairn/core/repo/repo-config';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { createLimiter } from '@cairn/core/util/limit';
import { CAIRN_VERSION } from '@cairn/core/version';

export interface DumpFilters {
  schemas: string[];
  tables: string[];
  excludeTables: string[];
}

/** A repository the dumps go to; `failed` when it is out before the start (its lease could not be taken). */
export interface DumpRepo {
  driver: StorageDriver;
  /** Aborts when this repository's lease is lost (the run's signal is in it). */
  signal?: AbortSignal;
  failed?: unknown;
}

export interface DumpOptions {
  /** Every repository the dumps go to, from one run of pg_dump each (issue 18 item 1). */
  repos: DumpRepo[];
  cluster: string;
  key: EncryptionKey | undefined;
  compress: string;
  /** Databases to dump, or 'all' (every connectable non-template database, and the globals). */
  databases: string[] | 'all';
  /** 1: custom format streamed; more: directory format with pg_dump -j, through `tmpDir`. */
  jobs: number;
  filters: DumpFilters;
  pgBin: string | undefined;
  /** Where --jobs puts pg_dump's directory (needs about the database's size). */
  tmpDir: string;
  /** Called as each dump's manifest lands (in the first repository that holds it), so a later failure still reports the finished ones. */
  onDump?: (m: DumpManifest) => void;
}

export interface DumpResult {
  /** Of the first repository that holds each dump. */
  manifests: DumpManifest[];
  /** The repositories that dropped out, and why (the run then fails, naming them). */
  failed: { url: string; error: unknown }[];
  /** The repositories that hold every dump of the run. */
  stored: string[];
}

/** One repository of the run: its own data key and signal; `failed` once it dropped out. */
interface Target {
  driver: StorageDriver;
  spec: EncodeSpec;
  signal: AbortSignal;
  failed?: unknown;
  /**
   * This run holds the repository's lease: what it stored there may be taken
   * back. Where another run holds it, objects under our id may be that run's.
   */
  leased: boolean;
}

/** A run's context: what every database's dump shares. */
interface Run {
  o: DumpOptions;
  ctx: ToolContext;
  targets: Target[];
  /** The encoding's extension (the same in every repository: one compression, encrypted or not). */
  ext: string;
  id: string;
  server: ServerInfo;
  pgDump: PgBinary;
}

/** The libpq environment for pg_dump & co: the caller's, with our database and application name. */
function pgEnv(env: NodeJS.ProcessEnv, database: string | undefined): NodeJS.ProcessEnv {
  return { ...env, PGAPPNAME: 'cairn-dump', ...(database !== undefined ? { PGDATABASE: database } : {}) };
}

/** The targets still going; throws the first one's failure when none is. */
function liveTargets(targets: readonly Target[]): Target[] {
  const live = targets.filter((t) => t.failed === undefined);
  if (live.length === 0) throw targets[0]!.failed;
  return live;
}

/** Runs `job` for each repository still going, at once; one that fails drops out (said on the log), the others go on. */
async function eachTarget(targets: readonly Target[], ctx: ToolContext, job: (t: Target) => Promise<void>): Promise<void> {
  await Promise.all(liveTargets(targets).map((t) => job(t).catch((err: unknown) => drop(targets, t, err, ctx))));
  liveTargets(targets);
}

function drop(targets: readonly Target[], t: Target, err: unknown, ctx: ToolContext): void {
  if (t.failed !== undefined) return;
  t.failed = whyStopped(t.signal, err) ?? new Error('failed');
  if (targets.length > 1) ctx.log.warn(`repository "${t.driver.url}" drops out of this dump: ${(t.failed as Error)?.message ?? String(t.failed)}`);
}

/** The first second from `start` on whose id no dump of `dirs` uses in any repository (debris of an interrupted run included). */
async function freeId(targets: Target[], cluster: string, dirs: string[], start: Date, ctx: ToolContext): Promise<string> {
  for (let i = 0; ; i++) {
    const id = dumpId(new Date(start.getTime() + i * 1000));
    let used = false;
    await eachTarget(targets, ctx, async (t) => {
      for (const dir of dirs) {
        for await (const _ of t.driver.list(dumpPrefix(cluster, dir, id), t.signal)) {
          used = true;
          break;
        }
        if (used) break;
      }
    });
    if (!used) return id;
  }
}

/**
 * Streams `source` once into `key` in every repository still going,
 * compressed once and encrypted under each one's own key, at the pace of
 * the slowest; one that fails drops out. Per repository, what it stored.
 */
async function writeEverywhere(run: Run, key: string, source: AsyncIterable<Buffer>): Promise<Map<Target, WrittenObject>> {
  const targets = liveTargets(run.targets);
  const outcomes = await writeDumpObjectMany(key, source, targets, run.ctx.signal);
  const out = new Map<Target, WrittenObject>();
  targets.forEach((t, i) => {
    const r = outcomes[i]!;
    if (r.ok) out.set(t, r.value);
    else drop(run.targets, t, r.error, run.ctx);
  });
  liveTargets(run.targets);
  return out;
}

/** An abort (SIGTERM, a lost lease) says why it stopped better than the AbortError it caused. */
function whyStopped(signal: AbortSignal, err: unknown): unknown {
  return signal.aborted && signal.reason instanceof CairnError ? signal.reason : err;
}

function pgDumpFailed(what: string, program: string, e: ProgramExit): CairnError {
  return new CairnError('CONFIG_INVALID', `${program} of ${what} failed (${describeExit(e)}): ${programErrorLine(e.stderr)}`, {
    hint: 'nothing was kept of this dump; check the role\'s rights (it must read every table dumped) and the server log',
  });
}

function filterArgs(f: DumpFilters): string[] {
  // --opt=VALUE: a value starting with '-' must not be read as an option.
  return [...f.schemas.map((s) => `--schema=${s}`), ...f.tables.map((t) => `--table=${t}`), ...f.excludeTables.map((t) => `--exclude-table=${t}`)];
}

/** Streams a program's stdout into one object in every repository; removes them again unless the program exits 0. */
async function storeProgramOutput(
  run: Run,
  what: string,
  program: PgBinary,
  args: string[],
  env: NodeJS.ProcessEnv,
  key: string,
  name: string,
): Promise<Map<Target, DumpObject>> {
  const { ctx } = run;
  const p = startProgram(program.path, args, { env, stdout: 'pipe', signal: ctx.signal });
  try {
    // The stream errors unless pg_dump exits 0: one killed half-way also
    // closes its pipe, and what it wrote must not pass for a whole dump.
    const written = await writeEverywhere(run, key, p.stdout());
    logWarnings(ctx, (await p.exited).stderr);
    return new Map([...written].map(([t, w]) => [t, { name, key, size: w.size, sha256: w.sha256, storedSize: w.storedSize }]));
  } catch (err) {
    p.kill();
    const e = await p.exited;
    await Promise.allSettled(run.targets.filter((t) => t.leased).map((t) => t.driver.remove(key)));
    throw whyStopped(ctx.signal, isProgramFailure(err) ? pgDumpFailed(what, program.path.split('/').pop()!, e) : err);
  }
}

function logWarnings(ctx: ToolContext, stderr: string): void {
  for (const line of stderr.split('\n')) if (line.trim() !== '') ctx.log.info(line.trim());
}

function manifestFor(run: Run, t: Target, database: string | null, dir: string, dumpFormat: DumpFormat, version: string, objects: DumpObject[], start: Date, stop: Date): DumpManifest {
  const { o } = run;
  return {
    format: DUMP_MANIFEST_FORMAT,
    cairnVersion: CAIRN_VERSION,
    id: run.id,
    database,
    dir,
    dumpFormat,
    systemId: run.server.systemId,
    serverVersionNum: run.server.versionNum,
    pgMajor: run.server.major,
    pgDumpVersion: version,
    filters: dumpFormat === 'globals' ? { schemas: [], tables: [], excludeTables: [] } : o.filters,
    compress: formatCompress(t.spec.compress),
    encrypted: o.key !== undefined,
    start: { time: start.toISOString() },
    stop: { time: stop.toISOString() },
    durationSeconds: (stop.getTime() - start.getTime()) / 1000,
    objects,
    totals: {
      size: objects.reduce((s, x) => s + x.size, 0),
      storedSize: objects.reduce((s, x) => s + x.storedSize, 0),
    },
  };
}

/**
 * Writes the manifest in every repository still going, which makes the dump
 * exist there; where that fails, its objects go (they would be debris) and
 * the repository drops out. The first repository's manifest.
 */
async function commit(run: Run, manifestOf: (t: Target) => DumpManifest): Promise<DumpManifest> {
  const done = new Map<Target, DumpManifest>();
  await eachTarget(run.targets, run.ctx, async (t) => {
    const m = manifestOf(t);
    const key = dumpManifestKey(run.o.cluster, m.dir, m.id);
    try {
      await t.driver.write(key, Buffer.from(JSON.stringify(m, null, 2) + '\n'), { ifAbsent: true, signal: t.signal });
    } catch (err) {
      // A write whose answer was lost may have landed (an S3 PUT): a manifest
      // that exists keeps its objects; only without one are they debris.
      const landed = await t.driver.stat(key).then((st) => st !== undefined, () => true);
      if (!landed) await Promise.allSettled(m.objects.map((x) => t.driver.remove(x.key)));
      throw err;
    }
    done.set(t, m);
  });
  const m = done.get(liveTargets(run.targets)[0]!)!;
  run.o.onDump?.(m);
  return m;
}

/** One database in pg_dump's custom format, streamed into one object. */
async function dumpCustom(run: Run, database: string): Promise<DumpManifest> {
  const { o, ctx } = run;
  const start = ctx.now();
  const dir = databaseDir(database);
  const name = dumpObjectName('custom');
  const key = dumpObjectKey(o.cluster, dir, run.id, 'custom', name, run.ext);
  // -Z 0: cairn compresses (zstd by default, faster and smaller than pg_dump's gzip).
  const args = ['--format=custom', '--compress=0', '--no-password', ...filterArgs(o.filters)];
  const objs = await storeProgramOutput(run, `database ${JSON.stringify(database)}`, run.pgDump, args, pgEnv(ctx.env, database), key, name);
  const stop = ctx.now();
  return await commit(run, (t) => manifestFor(run, t, database, dir, 'custom', run.pgDump.version, [objs.get(t)!], start, stop));
}

/** One database with pg_dump -Fd -j N into a local directory, then each file as an object. */
async function dumpDirectory(run: Run, database: string): Promise<DumpManifest> {
  const { o, ctx } = run;
  const start = ctx.now();
  const dir = databaseDir(database);
  // Named for this process, so a later dump can tell it was left by a killed one.
  const work = join(o.tmpDir, localWorkDirName('cairn-dump'));
  const out = join(work, 'dump');
  const written: string[] = [];
  try {
    await mkdir(work, { mode: 0o700 });
    const args = ['--format=directory', `--jobs=${o.jobs}`, '--compress=0', '--no-password', `--file=${out}`, ...filterArgs(o.filters)];
    const e = await runProgram(run.pgDump.path, args, { env: pgEnv(ctx.env, database), signal: ctx.signal });
    if (e.code !== 0) throw pgDumpFailed(`database ${JSON.stringify(database)}`, 'pg_dump', e);
    logWarnings(ctx, e.stderr);
    const files = (await readdir(out)).sort();
    const limit = createLimiter(Math.min(o.jobs, 8));
    // Each file read once, into every repository.
    const objects = await Promise.all(files.map((file) => limit(async () => {
      const name = dumpObjectName('directory', file);
      const key = dumpObjectKey(o.cluster, dir, run.id, 'directory', name, run.ext);
      written.push(key);
      const w = await writeEverywhere(run, key, createReadStream(join(out, file), { highWaterMark: 1024 * 1024 }));
      return (t: Target): DumpObject => ({ name, key, ...w.get(t)! });
    })));
    const stop = ctx.now();
    return await commit(run, (t) => manifestFor(run, t, database, dir, 'directory', run.pgDump.version, objects.map((x) => x(t)), start, stop));
  } catch (err) {
    await Promise.allSettled(run.targets.filter((t) => t.leased).flatMap((t) => written.map((k) => t.driver.remove(k))));
    throw whyStopped(ctx.signal, err);
  } finally {
    // pg_dump's directory holds table data: never leave it behind.
    await rm(work, { recursive: true, force: true });
  }
}

/** Roles and tablespaces (pg_dumpall --globals-only), the globals dump of an --all run. */
async function dumpGlobals(run: Run, pgDumpall: PgBinary, maintenanceDb: string): Promise<DumpManifest> {
  const { o, ctx } = run;
  const start = ctx.now();
  const name = dumpObjectName('globals');
  const key = dumpObjectKey(o.cluster, GLOBALS_DIR, run.id, 'globals', name, run.ext);
  const args = ['--globals-only', '--no-password', `--database=${maintenanceDb}`];
  const objs = await storeProgramOutput(run, 'the globals (roles, tablespaces)', pgDumpall, args, pgEnv(ctx.env, undefined), key, name);
  const stop = ctx.now();
  return await commit(run, (t) => manifestFor(run, t, null, GLOBALS_DIR, 'globals', pgDumpall.version, [objs.get(t)!], start, stop));
}

export async function dump(o: DumpOptions, toolCtx: ToolContext): Promise<DumpResult> {
  // node-postgres and pg_dump reach the server libpq would (docs/gotchas.md §Real hosts).
  const ctx: ToolContext = { ...toolCtx, env: libpqEnv(toolCtx.env) };
  const compress = parseCompress(o.compress);
  const targets: Target[] = o.repos.map((r) => ({ driver: r.driver, spec: { compress }, signal: r.signal ?? ctx.signal, leased: r.failed === undefined, ...(r.failed !== undefined ? { failed: r.failed } : {}) }));
  await eachTarget(targets, ctx, async (t) => {
    // Objects are encrypted with each repository's own data key (or, in a
    // cluster made before data keys, the operator's key).
    const dataKey = (await ensureRepoConfig(t.driver, o.cluster, o.key, ctx.now(), t.signal)).dataKey;
    t.spec = { compress, ...(dataKey ? { key: dataKey } : {}) };
    await sweepLeftovers(t.driver, o.cluster, 'dumps/', { ...ctx, signal: t.signal });
  });
  // What a killed dump left: pg_dump's local directory (table data).
  for (const dir of await removeDeadWorkDirs(o.tmpDir, 'cairn-dump')) ctx.log.info(`removed "${dir}", left by a cairn-dump that was killed`);
  // --all connects to PGDATABASE (else postgres) to list the databases; a
  // named database is connected to itself, which proves it exists.
  const maintenanceDb = o.databases === 'all' ? ctx.env['PGDATABASE'] || 'postgres' : o.databases[0]!;
  const client = await connectPg({ env: ctx.env, application: 'cairn-dump', database: maintenanceDb, needs: 'a role that may read every table dumped' });
  let server: ServerInfo;
  let databases: string[];
  try {
    server = await readServerInfo(client);
    const rows = (await client.query<{ datname: string; datallowconn: boolean }>(
      'select datname, datallowconn from pg_database where not datistemplate order by datname',
    )).rows;
    if (o.databases === 'all') {
      databases = rows.filter((r) => r.datallowconn).map((r) => r.datname);
    } else {
      const known = new Set(rows.map((r) => r.datname));
      const missing = o.databases.filter((d) => !known.has(d));
      if (missing.length > 0) {
        throw new CairnError('CONFIG_INVALID', `no database ${missing.map((d) => JSON.stringify(d)).join(', ')} on the server`, { hint: 'psql -l lists the databases; names are case-sensitive' });
      }
      databases = [...new Set(o.databases)];
    }
  } finally {
    await client.end().catch(() => {});
  }
  const major = Number(server.major);
  const pgDump = await findPgProgram('pg_dump', major, { pgBin: o.pgBin, env: ctx.env });
  const pgDumpall = o.databases === 'all' ? await findPgProgram('pg_dumpall', major, { pgBin: o.pgBin, env: ctx.env }) : undefined;
  const dirs = [...databases.map(databaseDir), ...(pgDumpall ? [GLOBALS_DIR] : [])];
  const id = await freeId(targets, o.cluster, dirs, ctx.now(), ctx);
  const run: Run = { o, ctx, targets, ext: encodedExtension(liveTargets(targets)[0]!.spec), id, server, pgDump };
  ctx.log.info(`dump ${id} of ${databases.length} database(s) with ${pgDump.version} (server ${server.versionNum}, system ${server.systemId})`);

  const manifests: DumpManifest[] = [];
  if (pgDumpall) manifests.push(await dumpGlobals(run, pgDumpall, maintenanceDb));
  for (const database of databases) {
    manifests.push(o.jobs > 1 ? await dumpDirectory(run, database) : await dumpCustom(run, database));
  }
  const failed = targets.filter((t) => t.failed !== undefined).map((t) => ({ url: t.driver.url, error: t.failed }));
  // A repository that dropped out keeps no manifest of this run's later
  // dumps, only objects: they go now, or stay as debris for expire.
  for (const t of targets.filter((x) => x.failed !== undefined && x.leased)) {
    for (const dir of dirs) {
      try {
        if ((await t.driver.stat(dumpManifestKey(o.cluster, dir, id))) !== undefined) continue;
        for await (const obj of t.driver.list(dumpPrefix(o.cluster, dir, id))) await t.driver.remove(obj.key);
      } catch {
        /* expire removes them after --debris-grace */
      }
    }
  }
  return { manifests, failed, stored: liveTargets(targets).map((t) => t.driver.url) };
}
