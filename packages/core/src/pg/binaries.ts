// Finding PostgreSQL's client programs (pg_dump, pg_dumpall, pg_restore,
// psql) for a server: pg_dump refuses a server newer than itself, and one
// older than the server would write a dump that misses what it cannot see;
// and the server programs a drill runs (pg_ctl, initdb: the backup's major).
// Order: --pg-bin / CAIRN_PG_BIN, /usr/lib/postgresql/<major>/bin (Debian's
// side-by-side installs), `pg_config --bindir`, then PATH.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CairnError } from '../cli/errors.js';
import type { SettingDef } from '../config/settings.js';
import { runProgram } from '../util/program.js';

/** What a program printed on stdout when it ran and exited 0, else undefined. */
async function stdoutOf(path: string, args: string[], env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const e = await runProgram(path, args, { env, stdout: 'collect', timeoutMs: 10_000 });
  return e.code === 0 ? e.stdout : undefined;
}

// Server-side programs too (cairn-drill starts a scratch server): pg_ctl,
// initdb, and pg_amcheck for its checks.
export type PgProgram = 'pg_dump' | 'pg_dumpall' | 'pg_restore' | 'psql' | 'pg_ctl' | 'initdb' | 'pg_amcheck';

export const PG_BIN_SETTING = {
  name: 'pg-bin',
  type: 'string',
  description: "directory of pg_dump, pg_restore and psql (default: the server's major version in /usr/lib/postgresql/N/bin, pg_config --bindir, then PATH)",
  valueHint: 'DIR',
} as const satisfies SettingDef;

export interface PgBinary {
  path: string;
  /** As `--version` printed it, e.g. "pg_dump (PostgreSQL) 15.14". */
  version: string;
  major: number;
}

/** The major of a `--version` line: "pg_dump (PostgreSQL) 15.14 (Ubuntu …)" → 15, "9.6.24" → 9. */
export function parseProgramMajor(line: string): number | undefined {
  const m = /\)\s+(\d+)(?:\.(\d+))?/.exec(line) ?? /(\d+)(?:\.(\d+))?/.exec(line);
  if (!m) return undefined;
  const major = Number(m[1]);
  return major < 10 && m[2] !== undefined ? Number(`${m[1]}.${m[2]}`) : major;
}

/** Candidate paths of `name`, best first. */
async function candidates(name: PgProgram, serverMajor: number, pgBin: string | undefined, env: NodeJS.ProcessEnv): Promise<string[]> {
  if (pgBin !== undefined && pgBin !== '') return [join(pgBin, name)];
  const out: string[] = [];
  const debian = `/usr/lib/postgresql/${serverMajor}/bin`;
  if (existsSync(join(debian, name))) out.push(join(debian, name));
  // No pg_config on PATH: fall through to PATH itself.
  const dir = (await stdoutOf('pg_config', ['--bindir'], env))?.trim();
  if (dir && existsSync(join(dir, name))) out.push(join(dir, name));
  out.push(name);
  return out;
}

/**
 * Which majors of `name` serve a server of `serverMajor`. pg_ctl and initdb
 * run the postgres beside them, which refuses a data directory of another
 * major ("database files are incompatible with server"): the same major.
 * pg_dump refuses a newer server; pg_restore and psql read what a pg_dump of
 * that major wrote (psql 15 knows no `\restrict` of later dumps): that major
 * or newer. pg_amcheck of 14 or later checks newer servers (it calls the
 * server's amcheck extension): any.
 */
function fits(name: PgProgram, major: number, serverMajor: number): 'ok' | 'older' | 'other' {
  if (name === 'pg_ctl' || name === 'initdb') return major === serverMajor ? 'ok' : 'other';
  if (name === 'pg_amcheck') return major >= 14 ? 'ok' : 'older';
  return major >= serverMajor ? 'ok' : 'older';
}

/**
 * The `name` program to use against a server of `serverMajor`: the first
 * candidate that runs and whose major fits (fits() above), refused
 * (CONFIG_INVALID, exit 3) when none does. A candidate of the wrong major is
 * passed over for the next one (pg_config's bindir may be another major than
 * the one on PATH); --pg-bin is the only candidate when given.
 */
export async function findPgProgram(name: PgProgram, serverMajor: number, o: { pgBin?: string | undefined; env: NodeJS.ProcessEnv }): Promise<PgBinary> {
  const tried: string[] = [];
  let misfit: CairnError | undefined;
  for (const path of await candidates(name, serverMajor, o.pgBin, o.env)) {
    const version = (await stdoutOf(path, ['--version'], o.env))?.trim();
    if (version === undefined) {
      tried.push(path);
      continue;
    }
    const major = parseProgramMajor(version);
    if (major === undefined) throw new CairnError('CONFIG_INVALID', `cannot tell the version of ${JSON.stringify(path)} from ${JSON.stringify(version)}`, { hint: 'point --pg-bin at the bin directory of a PostgreSQL installation' });
    const fit = fits(name, major, serverMajor);
    if (fit === 'ok') return { path, version, major };
    // The first misfit is the one reported: the most likely one to have been meant.
    misfit ??= fit === 'older'
      ? new CairnError('CONFIG_INVALID', `${name} ${JSON.stringify(path)} is version ${major}, older than the server (${serverMajor})`, {
        hint: `install the PostgreSQL ${serverMajor} client programs and point --pg-bin / CAIRN_PG_BIN at their bin directory (e.g. /usr/lib/postgresql/${serverMajor}/bin)`,
      })
      : new CairnError('CONFIG_INVALID', `${name} ${JSON.stringify(path)} is version ${major}, not the server's ${serverMajor}`, {
        hint: `${name} must be PostgreSQL ${serverMajor}'s: install it and point --pg-bin / CAIRN_PG_BIN at its bin directory (e.g. /usr/lib/postgresql/${serverMajor}/bin)`,
      });
  }
  if (misfit) throw misfit;
  throw new CairnError('CONFIG_INVALID', `${name} not found (tried ${tried.map((t) => JSON.stringify(t)).join(', ')})`, {
    hint: `install the PostgreSQL ${serverMajor} client programs, or point --pg-bin / CAIRN_PG_BIN at their bin directory`,
  });
}

/**
 * The major a dump's reader must have: that of the pg_dump that wrote it
 * (pg_restore cannot read archives of a newer pg_dump), else the server's.
 */
export function dumpReaderMajor(m: { pgDumpVersion: string; pgMajor: string }): number {
  return Math.floor(parseProgramMajor(m.pgDumpVersion) ?? Number(m.pgMajor));
}
