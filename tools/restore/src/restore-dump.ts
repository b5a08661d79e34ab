// cairn-restore --dump: a logical dump back into a database through
// pg_restore (or the globals through psql). Every byte is checked against
// the manifest's SHA-256 (docs/design.md §4.3): a custom-format dump streams into
// pg_restore --single-transaction with its last bytes held back until the
// checksum is known, and on a mismatch pg_restore is killed before it can
// read them, so its transaction never commits. Directory-format dumps and
// --jobs go through a local directory that is checked whole before
// pg_restore starts.

import { openCluster } from '@cairn/core/repo/repo-config';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CairnError, isCairnError } from '@cairn/core/cli/errors';
import type { ToolContext } from '@cairn/core/cli/run';
import type { EncryptionKey } from '@cairn/core/codec/index';
import {
  dumpObjectName,
  GLOBALS_DIR,
  listDumps,
  readDumpManifest,
  resolveDumpRef,
  type DumpManifest,
  type DumpObject,
} from '@cairn/core/dump/manifest';
import { dumpReadStages, readDumpObject } from '@cairn/core/dump/objects';
import { dumpReaderMajor, findPgProgram, type PgBinary } from '@cairn/core/pg/binaries';
import { describeExit, programErrorLine, runProgram, startProgram, stdinSink, type Program, type ProgramExit } from '@cairn/core/util/program';
import { connectPg, dbnameConninfo, quoteIdent } from '@cairn/core/pg/connect';
import { libpqEnv } from '@cairn/core/pg/server-address';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { quote } from '@cairn/core/wal/quote';

export interface DumpRestoreOptions {
  driver: StorageDriver;
  cluster: string;
  key: EncryptionKey | undefined;
  /** `ID` or `DATABASE/ID` (or `@globals/ID`). */
  ref: string;
  /** Restore the globals dump of that id (roles, tablespaces) through psql. */
  globals: boolean;
  /** Print pg_restore's table of contents instead of restoring. */
  list: boolean;
  /** The target database (not needed for --list; --globals connects to it, default postgres). */
  dbname: string | undefined;
  /** CREATE DATABASE the target first (from template0), and drop it again if the restore fails. */
  create: boolean;
  /** 1: stream into one transaction; more: pg_restore -j N from a checked local copy. */
  jobs: number;
  /** pg_restore --table (repeatable). */
  tables: string[];
  /** pg_restore --no-owner --no-privileges: for a cluster without the dump's roles. */
  noOwner: boolean;
  pgBin: string | undefined;
  /** Where --jobs and directory-format dumps are fetched to (needs about the dump's size). */
  tmpDir: string;
}

export interface DumpRestoreResult {
  /** `DATABASE/ID` or `@globals/ID`. */
  dump: string;
  /** What was done: toc listed, streamed into one transaction, restored from a local copy with -j, globals run through psql. */
  mode: 'list' | 'stream' | 'local' | 'globals';
  database: string | null;
  bytes: number;
  seconds: number;
  /** --globals: statements psql reported as errors (roles that exist already are normal). */
  sqlErrors?: number;
}

const CHUNK = 1024 * 1024;

function dumpName(m: DumpManifest): string {
  return `${m.database ?? m.dir}/${m.id}`;
}

function failed(program: string, what: string, e: ProgramExit, hint: string): CairnError {
  return new CairnError('CONFIG_INVALID', `${program} ${what} failed (${describeExit(e)}): ${programErrorLine(e.stderr)}`, { hint });
}

/** Streams one object, checked, into a program's stdin; kills it (SIGKILL) before its input ends if anything fails. */
async function streamInto(driver: StorageDriver, key: EncryptionKey | undefined, obj: DumpObject, label: string, p: Program, signal: AbortSignal, drain = false): Promise<void> {
  try {
    // With `drain`, bytes after the program closed its input (pg_restore
    // --list reads only the TOC) are discarded, so the checksum is still
    // checked to the end.
    const sink = stdinSink(p, { afterClose: drain ? 'discard' : 'fail', highWaterMark: CHUNK });
    await pipeline([await readDumpObject(driver, obj, signal), ...dumpReadStages(obj, key, label), sink], { signal });
  } catch (err) {
    // The program's own failure (it exited and closed stdin) reports better
    // than our EPIPE; a checksum mismatch or storage error kills it first.
    if (!isCairnError(err)) {
      const e = await Promise.race([p.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 2000))]);
      if (e && e.code !== 0) return;
    }
    p.kill('SIGKILL');
    await p.exited;
    throw err;
  }
}

/** Fetches every object of a dump into `dir`, each checked, before anything runs on them. */
async function fetchLocal(driver: StorageDriver, key: EncryptionKey | undefined, m: DumpManifest, dir: string, signal: AbortSignal): Promise<string> {
  if (m.dumpFormat === 'custom') {
    const path = join(dir, 'dump.pgdump');
    const obj = m.objects[0]!;
    await pipeline([await readDumpObject(driver, obj, signal), ...dumpReadStages(obj, key, objectLabel(m, obj), 0), createWriteStream(path, { mode: 0o600 })], { signal });
    return path;
  }
  const out = join(dir, 'dump');
  await mkdir(out, { mode: 0o700 });
  for (const obj of m.objects) {
    // The name comes from the manifest: only plain file names may become paths.
    const name = dumpObjectName('directory', obj.name);
    await pipeline([await readDumpObject(driver, obj, signal), ...dumpReadStages(obj, key, objectLabel(m, obj), 0), createWriteStream(join(out, name), { mode: 0o600 })], { signal });
  }
  return out;
}

function objectLabel(m: DumpManifest, obj: DumpObject): string {
  return `dump ${quote(dumpName(m))} object ${quote(obj.key)}`;
}

async function withTempDir<T>(base: string, work: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(base, `cairn-restore-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { mode: 0o700 });
  try {
    return await work(dir);
  } finally {
    // A local copy of a dump is table data: never leave it behind.
    await rm(dir, { recursive: true, force: true });
  }
}

function pgEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...env, PGAPPNAME: 'cairn-restore' };
}

/** The pg_restore that reads what this dump's pg_dump wrote (its archive version needs one at least as new). */
async function pgRestoreFor(m: DumpManifest, o: DumpRestoreOptions, ctx: ToolContext): Promise<PgBinary> {
  return findPgProgram('pg_restore', dumpReaderMajor(m), { pgBin: o.pgBin, env: ctx.env });
}

export async function restoreDump(o: DumpRestoreOptions, toolCtx: ToolContext): Promise<DumpRestoreResult> {
  // node-postgres, psql and pg_restore reach the server libpq would (docs/gotchas.md §Real hosts).
  const ctx: ToolContext = { ...toolCtx, env: libpqEnv(toolCtx.env) };
  const t0 = Date.now();
  // Objects decrypt with the cluster's data key (or the operator's key in a cluster made before data keys).
  o = { ...o, key: (await openCluster(o.driver, o.cluster, o.key, ctx.signal))?.dataKey ?? o.key };
  // `@globals/ID`, as cairn-dump printed it, names the globals dump too.
  const globals = o.globals || o.ref.startsWith(`${GLOBALS_DIR}/`);
  const ref = resolveDumpRef(await listDumps(o.driver, o.cluster, ctx.signal), globals ? o.ref.slice(o.ref.lastIndexOf('/') + 1) : o.ref, { globals });
  const m = await readDumpManifest(o.driver, o.cluster, ref.dir, ref.id, ctx.signal);
  if (!m) throw new CairnError('NOT_FOUND', `dump ${quote(o.ref)} vanished from repository "${o.driver.url}"`, { hint: 'cairn-info lists the dumps' });
  const done = (mode: DumpRestoreResult['mode'], database: string | null, extra: Partial<DumpRestoreResult> = {}): DumpRestoreResult => ({
    dump: dumpName(m), mode, database, bytes: m.totals.size, seconds: (Date.now() - t0) / 1000, ...extra,
  });
  if (m.dumpFormat === 'globals') return done('globals', o.dbname ?? 'postgres', { sqlErrors: await restoreGlobals(o, m, ctx) });
  if (o.list) {
    await listToc(o, m, ctx);
    return done('list', null);
  }
  const target = o.dbname!;
  if (o.create) await createDatabase(target, ctx);
  try {
    // --table: pg_restore stops reading (and commits) once the table is in,
    // before the end where the checksum is known; so it, like -j and the
    // directory format, reads a local copy checked whole beforehand.
    const local = o.jobs > 1 || m.dumpFormat === 'directory' || o.tables.length > 0;
    await restoreInto(o, m, target, local, ctx);
    return done(local ? 'local' : 'stream', target);
  } catch (err) {
    if (o.create) await dropDatabase(target, ctx);
    throw err;
  }
}

async function restoreInto(o: DumpRestoreOptions, m: DumpManifest, target: string, local: boolean, ctx: ToolContext): Promise<void> {
  const pgRestore = await pgRestoreFor(m, o, ctx);
  const args = [
    '--no-password',
    '--exit-on-error',
    `--dbname=${dbnameConninfo(target)}`,
    // One transaction: a failure (or our kill on a checksum mismatch) leaves
    // nothing behind. pg_restore cannot combine it with --jobs.
    ...(o.jobs > 1 ? [`--jobs=${o.jobs}`] : ['--single-transaction']),
    ...(o.noOwner ? ['--no-owner', '--no-privileges'] : []),
    ...o.tables.map((t) => `--table=${t}`),
  ];
  const hint = o.noOwner
    ? 'nothing was committed; check the target database and the role\'s rights'
    : 'nothing was committed; if a role is missing, restore the globals first (cairn-restore --dump ID --globals) or give --no-owner';
  const what = `into database ${quote(target)}`;
  if (!local) {
    const p = startProgram(pgRestore.path, args, { env: pgEnv(ctx.env), stdin: 'pipe', signal: ctx.signal });
    await streamInto(o.driver, o.key, m.objects[0]!, objectLabel(m, m.objects[0]!), p, ctx.signal);
    const e = await p.exited;
    if (e.code !== 0) throw failed('pg_restore', what, e, hint);
    return;
  }
  await withTempDir(o.tmpDir, async (dir) => {
    const path = await fetchLocal(o.driver, o.key, m, dir, ctx.signal);
    const e = await runProgram(pgRestore.path, [...args, `--format=${m.dumpFormat}`, path], { env: pgEnv(ctx.env), signal: ctx.signal });
    if (e.code !== 0) throw failed('pg_restore', what, e, hint.replace('nothing was committed; ', o.jobs > 1 ? 'with --jobs part of it may be committed; ' : ''));
  });
}

/** pg_restore --list of the dump on stdout. */
async function listToc(o: DumpRestoreOptions, m: DumpManifest, ctx: ToolContext): Promise<void> {
  const pgRestore = await pgRestoreFor(m, o, ctx);
  if (m.dumpFormat === 'custom') {
    const p = startProgram(pgRestore.path, ['--list'], { env: pgEnv(ctx.env), stdin: 'pipe', stdout: 'collect', signal: ctx.signal });
    await streamInto(o.driver, o.key, m.objects[0]!, objectLabel(m, m.objects[0]!), p, ctx.signal, true);
    const e = await p.exited;
    if (e.code !== 0) throw failed('pg_restore', `--list of dump ${quote(dumpName(m))}`, e, 'the dump may be damaged; run cairn-verify');
    // Printed once the whole dump passed its checksum, not before.
    ctx.stdout.write(e.stdout);
    return;
  }
  await withTempDir(o.tmpDir, async (dir) => {
    const path = await fetchLocal(o.driver, o.key, m, dir, ctx.signal);
    const e = await runProgram(pgRestore.path, ['--list', '--format=directory', path], { env: pgEnv(ctx.env), stdout: 'collect', signal: ctx.signal });
    ctx.stdout.write(e.stdout);
    if (e.code !== 0) throw failed('pg_restore', `--list of dump ${quote(dumpName(m))}`, e, 'the dump may be damaged; run cairn-verify');
  });
}

/** The globals SQL through psql, checked whole first; returns psql's error count. */
async function restoreGlobals(o: DumpRestoreOptions, m: DumpManifest, ctx: ToolContext): Promise<number> {
  const obj = m.objects[0]!;
  const parts: Buffer[] = [];
  // Roles and tablespaces are small; holding them lets psql run nothing of a damaged file.
  await pipeline([await readDumpObject(o.driver, obj, ctx.signal), ...dumpReadStages(obj, o.key, objectLabel(m, obj), 0), new Writable({
    write(c: Buffer, _e, cb) {
      parts.push(c);
      cb();
    },
  })], { signal: ctx.signal });
  const sql = Buffer.concat(parts);
  if (o.list) {
    ctx.stdout.write(sql);
    return 0;
  }
  const psql = await findPgProgram('psql', dumpReaderMajor(m), { pgBin: o.pgBin, env: ctx.env });
  const database = o.dbname ?? 'postgres';
  // ON_ERROR_STOP off: "role … already exists" for the bootstrap superuser
  // and any role made before is normal; the rest still runs.
  const e = await runProgram(psql.path, ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=0', `--dbname=${dbnameConninfo(database)}`, '-f', '-'], {
    env: pgEnv(ctx.env), stdin: { input: sql }, signal: ctx.signal,
  });
  if (e.code !== 0) throw failed('psql', `of the globals of ${quote(dumpName(m))}`, e, 'check PGHOST/PGPORT/PGUSER: the globals need a superuser');
  const errors = e.stderr.split('\n').filter((l) => /\bERROR:/.test(l));
  if (errors.length > 0) ctx.log.warn(`${errors.length} statement(s) of the globals failed (first: ${errors[0]!.trim()}); roles that exist already are expected`);
  return errors.length;
}

async function createDatabase(name: string, ctx: ToolContext): Promise<void> {
  const client = await connectPg({ env: ctx.env, application: 'cairn-restore', database: 'postgres', needs: 'a role with CREATEDB' });
  try {
    // template0: template1 may hold objects the dump brings again.
    await client.query(`create database ${quoteIdent(name)} template template0`);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new CairnError('CONFIG_INVALID', `cannot create database ${quote(name)}: ${(err as Error).message}`, {
      hint: code === '42P04' ? 'drop it first, or restore into it without --create' : 'the role needs CREATEDB; check PGUSER',
      cause: err,
    });
  } finally {
    await client.end().catch(() => {});
  }
}

async function dropDatabase(name: string, ctx: ToolContext): Promise<void> {
  try {
    const client = await connectPg({ env: ctx.env, application: 'cairn-restore', database: 'postgres' });
    try {
      // FORCE: a killed pg_restore's backend may not have gone yet.
      await client.query(`drop database if exists ${quoteIdent(name)} with (force)`);
    } finally {
      await client.end().catch(() => {});
    }
  } catch (err) {
    ctx.log.warn(`could not drop database ${quote(name)} that --create made: ${(err as Error).message}`);
  }
}
