// Finding PostgreSQL's client programs (pg_dump, pg_dumpall, pg_restore,
// psql) for a server: pg_dump refuses a server newer than itself, and one
// older than the server would write a dump that misses what it cannot see.
// Order: --pg-bin / CAIRN_PG_BIN, /usr/lib/postgresql/<major>/bin (Debian's
// side-by-side installs), `pg_config --bindir`, then PATH.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CairnError } from '../cli/errors.js';
import type { SettingDef } from '../config/settings.js';

const run = promisify(execFile);

// Server-side programs too (cairn-drill starts a scratch server): pg_ctl,
// initdb, and pg_amcheck for its checks.
export type PgProgram = 'pg_dump' | 'pg_dumpall' | 'pg_restore' | 'psql' | 'pg_ctl' | 'initdb' | 'pg_amcheck';

export const PG_BIN_SETTING: SettingDef = {
  name: 'pg-bin',
  type: 'string',
  description: "directory of pg_dump, pg_restore and psql (default: the server's major version in /usr/lib/postgresql/N/bin, pg_config --bindir, then PATH)",
  valueHint: 'DIR',
};

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
  try {
    const { stdout } = await run('pg_config', ['--bindir'], { env, timeout: 10_000 });
    const dir = stdout.trim();
    if (dir && existsSync(join(dir, name))) out.push(join(dir, name));
  } catch {
    // No pg_config on PATH: fall through to PATH itself.
  }
  out.push(name);
  return out;
}

/**
 * The `name` program to use against a server of `serverMajor`: the first
 * candidate that runs, refused (CONFIG_INVALID, exit 3) when none runs or
 * its major is older than the server's.
 */
export async function findPgProgram(name: PgProgram, serverMajor: number, o: { pgBin?: string | undefined; env: NodeJS.ProcessEnv }): Promise<PgBinary> {
  const tried: string[] = [];
  for (const path of await candidates(name, serverMajor, o.pgBin, o.env)) {
    let version: string;
    try {
      version = (await run(path, ['--version'], { env: o.env, timeout: 10_000 })).stdout.trim();
    } catch {
      tried.push(path);
      continue;
    }
    const major = parseProgramMajor(version);
    if (major === undefined) throw new CairnError('CONFIG_INVALID', `cannot tell the version of ${JSON.stringify(path)} from ${JSON.stringify(version)}`, { hint: 'point --pg-bin at the bin directory of a PostgreSQL installation' });
    if (major < serverMajor) {
      throw new CairnError('CONFIG_INVALID', `${name} ${JSON.stringify(path)} is version ${major}, older than the server (${serverMajor})`, {
        hint: `install the PostgreSQL ${serverMajor} client programs and point --pg-bin / CAIRN_PG_BIN at their bin directory (e.g. /usr/lib/postgresql/${serverMajor}/bin)`,
      });
    }
    return { path, version, major };
  }
  throw new CairnError('CONFIG_INVALID', `${name} not found (tried ${tried.map((t) => JSON.stringify(t)).join(', ')})`, {
    hint: `install the PostgreSQL ${serverMajor} client programs, or point --pg-bin / CAIRN_PG_BIN at their bin directory`,
  });
}

export interface ProgramRun {
  child: ChildProcess;
  /** Settles when the program has exited and its pipes are closed; never rejects. */
  exited: Promise<ProgramExit>;
}

export interface ProgramExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last 64 KiB of its stderr. */
  stderr: string;
  /** spawn's own error (ENOENT, EACCES), if the program never ran. */
  error?: Error;
}

const STDERR_TAIL = 64 * 1024;

/**
 * Runs a PostgreSQL program with the libpq environment in `env` (never a
 * password in argv: `ps` shows argv to every user). stdout is a pipe unless
 * `stdout: 'ignore'`; stdin is a pipe when `stdin: 'pipe'`. The program is
 * killed when `signal` aborts.
 */
export function spawnPgProgram(
  path: string,
  args: string[],
  o: { env: NodeJS.ProcessEnv; stdin?: 'pipe' | 'ignore'; stdout?: 'pipe' | 'ignore'; signal?: AbortSignal; cwd?: string },
): ProgramRun {
  const child = spawn(path, args, { env: o.env, stdio: [o.stdin ?? 'ignore', o.stdout ?? 'pipe', 'pipe'], ...(o.cwd ? { cwd: o.cwd } : {}) });
  let tail = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    tail = (tail + s).slice(-STDERR_TAIL);
  });
  const onAbort = () => child.kill('SIGTERM');
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const exited = new Promise<ProgramExit>((resolve) => {
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });
    child.once('close', (code, sig) => {
      o.signal?.removeEventListener('abort', onAbort);
      resolve({ code, signal: sig, stderr: tail, ...(spawnError ? { error: spawnError } : {}) });
    });
  });
  // A child that dies early closes its stdin: writing to it then raises
  // EPIPE, which the exit status reports better.
  child.stdin?.on('error', () => {});
  return { child, exited };
}

/** The line of a program's stderr that says what went wrong: its first "error:"/"FATAL:" line, else its last line. */
export function programErrorLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.find((l) => /\b(error|fatal|FATAL|ERROR):/.test(l)) ?? lines.at(-1) ?? '(no message)';
}

/** How a program ended, for messages: "exit status 1" or "signal SIGKILL". */
export function describeExit(e: ProgramExit): string {
  if (e.error) return e.error.message;
  return e.signal ? `signal ${e.signal}` : `exit status ${e.code}`;
}

/**
 * The major a dump's reader must have: that of the pg_dump that wrote it
 * (pg_restore cannot read archives of a newer pg_dump), else the server's.
 */
export function dumpReaderMajor(m: { pgDumpVersion: string; pgMajor: string }): number {
  return Math.floor(parseProgramMajor(m.pgDumpVersion) ?? Number(m.pgMajor));
}
