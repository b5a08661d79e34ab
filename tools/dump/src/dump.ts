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
import { writeDumpObject } from '@cairn/core/dump/objects';
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

export interface DumpOptions {
  driver: StorageDriver;
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
  /** Called as each dump's manifest lands, so a later failure still reports the finished ones. */
  onDump?: (m: DumpManifest) => void;
}

export interface DumpResult {
  manifests: DumpManifest[];
}

/** A run's context: what every database's dump shares. */
interface Run {
  o: DumpOptions;
  ctx: ToolContext;
  spec: EncodeSpec;
  id: string;
  server: ServerInfo;
  pgDump: PgBinary;
}

/** The libpq environment for pg_dump & co: the caller's, with our database and application name. */
function pgEnv(env: NodeJS.ProcessEnv, database: string | undefined): NodeJS.ProcessEnv {
  return { ...env, PGAPPNAME: 'cairn-dump', ...(database !== undefined ? { PGDATABASE: database } : {}) };
}

/** The first second from `start` on whose id no dump of `dirs` uses (debris of an interrupted run included). */
async function freeId(driver: StorageDriver, cluster: string, dirs: string[], start: Date, signal: AbortSignal): Promise<string> {
  for (let i = 0; ; i++) {
    const id = dumpId(new Date(start.getTime() + i * 1000));
    let used = false;
    for (const dir of dirs) {
      for await (const _ of driver.list(dumpPrefix(cluster, dir, id), signal)) {
        used = true;
        break;
      }
      if (used) break;
    }
    if (!used) return id;
  }
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

/** Streams a program's stdout into one object; removes it again unless the program exits 0. */
async function storeProgramOutput(
  run: Run,
  what: string,
  program: PgBinary,
  args: string[],
  env: NodeJS.ProcessEnv,
  key: string,
  name: string,
): Promise<DumpObject> {
  const { o, ctx } = run;
  const p = startProgram(program.path, args, { env, stdout: 'pipe', signal: ctx.signal });
  try {
    // The stream errors unless pg_dump exits 0: one killed half-way also
    // closes its pipe, and what it wrote must not pass for a whole dump.
    const w = await writeDumpObject(o.driver, key, p.stdout(), run.spec, ctx.signal);
    logWarnings(ctx, (await p.exited).stderr);
    return { name, key, size: w.size, sha256: w.sha256, storedSize: w.storedSize };
  } catch (err) {
    p.kill();
    const e = await p.exited;
    await o.driver.remove(key).catch(() => {});
    throw whyStopped(ctx.signal, isProgramFailure(err) ? pgDumpFailed(what, program.path.split('/').pop()!, e) : err);
  }
}

function logWarnings(ctx: ToolContext, stderr: string): void {
  for (const line of stderr.split('\n')) if (line.trim() !== '') ctx.log.info(line.trim());
}

function manifestFor(run: Run, database: string | null, dir: string, dumpFormat: DumpFormat, version: string, objects: DumpObject[], start: Date, stop: Date): DumpManifest {
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
    compress: formatCompress(run.spec.compress),
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

/** Writes the manifest, which makes the dump exist; if that fails, its objects go (they would be debris). */
async function commit(run: Run, m: DumpManifest): Promise<DumpManifest> {
  const key = dumpManifestKey(run.o.cluster, m.dir, m.id);
  try {
    await run.o.driver.write(key, Buffer.from(JSON.stringify(m, null, 2) + '\n'), { ifAbsent: true, signal: run.ctx.signal });
  } catch (err) {
    // A write whose answer was lost may have landed (an S3 PUT): a manifest
    // that exists keeps its objects; only without one are they debris.
    const landed = await run.o.driver.stat(key).then((st) => st !== undefined, () => true);
    if (!landed) await Promise.allSettled(m.objects.map((x) => run.o.driver.remove(x.key)));
    throw err;
  }
  run.o.onDump?.(m);
  return m;
}

/** One database in pg_dump's custom format, streamed into one object. */
async function dumpCustom(run: Run, database: string): Promise<DumpManifest> {
  const { o, ctx } = run;
  const start = ctx.now();
  const dir = databaseDir(database);
  const name = dumpObjectName('custom');
  const key = dumpObjectKey(o.cluster, dir, run.id, 'custom', name, encodedExtension(run.spec));
  // -Z 0: cairn compresses (zstd by default, faster and smaller than pg_dump's gzip).
  const args = ['--format=custom', '--compress=0', '--no-password', ...filterArgs(o.filters)];
  const obj = await storeProgramOutput(run, `database ${JSON.stringify(database)}`, run.pgDump, args, pgEnv(ctx.env, database), key, name);
  return await commit(run, manifestFor(run, database, dir, 'custom', run.pgDump.version, [obj], start, ctx.now()));
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
    const ext = encodedExtension(run.spec);
    const limit = createLimiter(Math.min(o.jobs, 8));
    const objects = await Promise.all(files.map((file) => limit(async (): Promise<DumpObject> => {
      const name = dumpObjectName('directory', file);
      const key = dumpObjectKey(o.cluster, dir, run.id, 'directory', name, ext);
      written.push(key);
      const w = await writeDumpObject(o.driver, key, createReadStream(join(out, file), { highWaterMark: 1024 * 1024 }), run.spec, ctx.signal);
      return { name, key, ...w };
    })));
    return await commit(run, manifestFor(run, database, dir, 'directory', run.pgDump.version, objects, start, ctx.now()));
  } catch (err) {
    await Promise.allSettled(written.map((k) => o.driver.remove(k)));
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
  const key = dumpObjectKey(o.cluster, GLOBALS_DIR, run.id, 'globals', name, encodedExtension(run.spec));
  const args = ['--globals-only', '--no-password', `--database=${maintenanceDb}`];
  const obj = await storeProgramOutput(run, 'the globals (roles, tablespaces)', pgDumpall, args, pgEnv(ctx.env, undefined), key, name);
  return await commit(run, manifestFor(run, null, GLOBALS_DIR, 'globals', pgDumpall.version, [obj], start, ctx.now()));
}

export async function dump(o: DumpOptions, toolCtx: ToolContext): Promise<DumpResult> {
  // node-postgres and pg_dump reach the server libpq would (docs/gotchas.md §Real hosts).
  const ctx: ToolContext = { ...toolCtx, env: libpqEnv(toolCtx.env) };
  // Objects are encrypted with the cluster's data key (or, in a cluster made before data keys, the operator's key).
  const dataKey = (await ensureRepoConfig(o.driver, o.cluster, o.key, ctx.now(), ctx.signal)).dataKey;
  const spec: EncodeSpec = { compress: parseCompress(o.compress), ...(dataKey ? { key: dataKey } : {}) };
  // What a killed dump left: pg_dump's local directory (table data) and temp objects.
  for (const dir of await removeDeadWorkDirs(o.tmpDir, 'cairn-dump')) ctx.log.info(`removed "${dir}", left by a cairn-dump that was killed`);
  await sweepLeftovers(o.driver, o.cluster, 'dumps/', ctx);
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
  const id = await freeId(o.driver, o.cluster, dirs, ctx.now(), ctx.signal);
  const run: Run = { o, ctx, spec, id, server, pgDump };
  ctx.log.info(`dump ${id} of ${databases.length} database(s) with ${pgDump.version} (server ${server.versionNum}, system ${server.systemId})`);

  const manifests: DumpManifest[] = [];
  if (pgDumpall) manifests.push(await dumpGlobals(run, pgDumpall, maintenanceDb));
  for (const database of databases) {
    manifests.push(o.jobs > 1 ? await dumpDirectory(run, database) : await dumpCustom(run, database));
  }
  return { manifests };
}
