// Running server-side commands as the non-root OS user PostgreSQL insists on
// ("postgres" if present, else one we create), with an environment we control.
import { execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { constants, tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onCleanup } from './cleanup.js';
import { nodeBin, pgBinDir } from './paths.js';

/** packages/testkit/empty.conf (readable by the pg user, as the checkout is). */
const EMPTY_CONFIG = join(dirname(fileURLToPath(import.meta.url)), '..', 'empty.conf');

export interface PgUser {
  name: string;
  uid: number;
  gid: number;
}

export interface RunOptions {
  /** Added to (and overriding) `baseEnv()`; nothing else of this process's env leaks in. */
  env?: Record<string, string | undefined>;
  /** Working directory; default `/` so a cwd the pg user cannot enter never matters. */
  cwd?: string;
  /** Written to the child's stdin, which is otherwise /dev/null. */
  input?: string | Buffer;
  /** SIGKILL the child after this long and fail; default 120 s. */
  timeoutMs?: number;
  /** Resolve with the exit code instead of throwing on a non-zero one. */
  allowFail?: boolean;
}

export interface RunResult {
  /** Exit status; 128 + signal number if the child died by a signal. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Default: stdin ignored, stdout and stderr piped. */
  stdio?: StdioOptions;
}

const CREATED_USER = 'cairntest';
let userCache: PgUser | undefined;

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

function lookupUser(name: string): PgUser | undefined {
  try {
    const line = execFileSync('getent', ['passwd', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const [, , uid, gid] = line.split(':');
    if (uid === undefined || gid === undefined) return undefined;
    return { name, uid: Number(uid), gid: Number(gid) };
  } catch {
    return undefined; // getent exits 2 when the user does not exist
  }
}

/**
 * The OS user that owns clusters and runs server-side commands. As root:
 * `postgres` if it exists, else `cairntest` (created as a system user on first
 * use). Not root: the current user.
 */
export function pgUser(): PgUser {
  if (userCache !== undefined) return userCache;
  if (!isRoot()) {
    const me = userInfo();
    return (userCache = { name: me.username, uid: me.uid, gid: me.gid });
  }
  let user = lookupUser('postgres') ?? lookupUser(CREATED_USER);
  if (user === undefined) {
    try {
      execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', CREATED_USER], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    } catch (err) {
      // Another test process may have created it at the same moment: look again before failing.
      if (lookupUser(CREATED_USER) === undefined) {
        throw new Error(`could not create the test user "${CREATED_USER}": ${(err as Error).message}`);
      }
    }
    user = lookupUser(CREATED_USER);
    if (user === undefined) throw new Error(`test user "${CREATED_USER}" missing right after useradd`);
  }
  return (userCache = user);
}

/**
 * The whole environment children start from: PATH with the repo's Node first
 * (so `#!/usr/bin/env node` tools run on Node 24, also from archive_command),
 * then the PostgreSQL bindir; a neutral HOME; a C.UTF-8 locale; TZ and TMPDIR
 * passed through. No PG*, AWS_* or CAIRN_* from the test runner leaks in.
 * CAIRN_CONFIG names an empty file: no tool under test reads the machine's
 * /etc/cairn/cairn.conf (the host story in package.test.ts writes one while
 * other suites run; a test of that file passes CAIRN_CONFIG: undefined).
 */
export function baseEnv(extra?: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {
    PATH: [dirname(nodeBin()), pgBinDir(), '/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'].join(':'),
    HOME: tmpdir(),
    LANG: 'C.UTF-8',
    CAIRN_CONFIG: EMPTY_CONFIG,
  };
  for (const key of ['TZ', 'TMPDIR']) {
    const v = process.env[key];
    if (v !== undefined) env[key] = v;
  }
  for (const [k, v] of Object.entries(extra ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** argv[0] and the rest that run `cmd args` as the pg user (setpriv as root, directly otherwise). */
function asPgArgv(cmd: string, args: string[]): [string, string[]] {
  if (!isRoot()) return [cmd, args];
  const u = pgUser();
  // setpriv execs the command itself (runuser forks and stays the parent), so the
  // pid we hold is the command's and signals reach it; --pdeathsig makes the
  // command die with the test runner instead of outliving it. Forked daemons
  // (the postmaster under pg_ctl) do not inherit the death signal.
  return [
    'setpriv',
    [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', '--pdeathsig', 'SIGTERM', '--', cmd, ...args],
  ];
}

function describe(cmd: string, args: string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ');
}

function exitCode(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

/**
 * Run a command as the pg user and collect its output. Throws (with the
 * command line and its stderr) on a non-zero exit unless `allowFail`, and on
 * timeout always. stdin is /dev/null unless `input` is given.
 */
export function runAsPg(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const [argv0, argv] = asPgArgv(cmd, args);
  return runCollect(argv0, argv, describe(cmd, args), opts);
}

/** Like runAsPg, but as this process's own user (clients such as psql need no uid switch). */
export function runAsMe(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runCollect(cmd, args, describe(cmd, args), opts);
}

function runCollect(argv0: string, argv: string[], shown: string, opts: RunOptions): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn(argv0, argv, {
      env: baseEnv(opts.env),
      cwd: opts.cwd ?? '/',
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const unregister = onCleanup(() => killAndWait(child));
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    if (opts.input !== undefined && child.stdin) {
      // A child that exits without reading all of stdin is its own error, reported by its exit code.
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input);
    }
    child.once('error', (e) => {
      clearTimeout(timer);
      unregister();
      reject(new Error(`could not run "${shown}": ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      unregister();
      const result: RunResult = {
        code: exitCode(code, signal),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (timedOut) {
        reject(new Error(`"${shown}" timed out after ${timeoutMs} ms\n${result.stderr.trimEnd()}`));
      } else if (result.code !== 0 && !opts.allowFail) {
        reject(new Error(`"${shown}" failed with exit ${result.code}\n${result.stderr.trimEnd()}`));
      } else {
        resolve(result);
      }
    });
  });
}

/**
 * Start a long-running command as the pg user and hand back the process. It is
 * registered for cleanup (SIGTERM, SIGKILL 5 s later) and unregistered when it
 * exits. stdin is ignored unless `stdio` says otherwise.
 */
export function spawnAsPg(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  const [argv0, argv] = asPgArgv(cmd, args);
  const child = spawn(argv0, argv, {
    env: baseEnv(opts.env),
    cwd: opts.cwd ?? '/',
    stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
  });
  const unregister = onCleanup(() => killAndWait(child));
  child.once('exit', () => unregister());
  child.once('error', () => unregister());
  return child;
}

/** SIGTERM, then SIGKILL if the process is still there after `graceMs`; resolves once it has exited. */
export function killAndWait(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const hard = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(hard);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
