// Processes for the bench: running commands (as the PostgreSQL OS user when
// we are root), timing them, and undoing everything the bench started — on
// success, on failure and on Ctrl-C.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export const PG_BIN = process.env.BENCH_PG_BIN || '/usr/lib/postgresql/15/bin';
const isRoot = process.getuid?.() === 0;

/** The OS user PostgreSQL runs as: `postgres` when we are root, else ourselves. */
export const pgUser = (() => {
  if (!isRoot) return { name: process.env.USER || 'me', uid: process.getuid(), gid: process.getgid() };
  const name = process.env.BENCH_PG_USER || 'postgres';
  const line = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim();
  const [, , uid, gid] = line.split(':');
  return { name, uid: Number(uid), gid: Number(gid) };
})();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sab = new Int32Array(new SharedArrayBuffer(4));
const sleepSync = (ms) => Atomics.wait(sab, 0, 0, ms);

// ---- temp dirs -------------------------------------------------------------

let base;
/** The bench's one temp base (mode 0711: the pg user reaches dirs inside it). */
export function tempBase() {
  if (base) return base;
  base = mkdtempSync(join(process.env.BENCH_TMPDIR || tmpdir(), 'cairn-bench-'));
  chmodSync(base, 0o711);
  return base;
}

/** A fresh dir under the base, owned by the pg user unless owner = 'me'. */
export function makeDir(name, owner = 'pg') {
  const dir = join(tempBase(), name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  if (owner === 'pg' && isRoot) chownSync(dir, pgUser.uid, pgUser.gid);
  return dir;
}

export function chownPg(path) {
  if (isRoot) chownSync(path, pgUser.uid, pgUser.gid);
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

// ---- environment -----------------------------------------------------------

/** What every child starts from: nothing of our own env (no stray PG*, AWS_*, CAIRN_*). */
export function baseEnv(extra = {}) {
  const env = {
    PATH: [PG_BIN, '/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'].join(':'),
    LANG: 'C.UTF-8',
    HOME: process.env.BENCH_HOME || '/tmp',
  };
  if (process.env.TZ) env.TZ = process.env.TZ;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = String(v);
  return env;
}

function argvFor(cmd, args, asPg) {
  if (!asPg || !isRoot) return [cmd, args];
  // setpriv execs the command (no extra process in between), so the pid we
  // hold is the command's own and signals reach it.
  return ['setpriv', [`--reuid=${pgUser.uid}`, `--regid=${pgUser.gid}`, '--init-groups', '--', cmd, ...args]];
}

export function shellQuote(s) {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${String(s).replaceAll("'", "'\\''")}'`;
}

const describe = (cmd, args) => [cmd, ...args].map(shellQuote).join(' ');

// ---- running ---------------------------------------------------------------

const liveChildren = new Set();

/**
 * Runs a command and collects its output. Rejects with the command line and
 * stderr on a non-zero exit (unless allowFail) and on timeout.
 */
export function run(cmd, args = [], opts = {}) {
  const { env = {}, cwd = '/', asPg = false, timeoutMs = 600_000, allowFail = false, input } = opts;
  const [a0, av] = argvFor(cmd, args, asPg);
  const shown = describe(cmd, args);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(a0, av, { env: baseEnv(env), cwd, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    liveChildren.add(child);
    const out = [];
    const err = [];
    child.stdout.on('data', (b) => out.push(b));
    child.stderr.on('data', (b) => err.push(b));
    if (input !== undefined) child.stdin.end(input);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      reject(new Error(`could not run "${shown}": ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      const res = {
        code: code ?? 128,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: performance.now() - t0,
      };
      if (timedOut) reject(new Error(`"${shown}" timed out after ${timeoutMs} ms\n${res.stderr.trimEnd()}`));
      else if (res.code !== 0 && !allowFail) reject(new Error(`"${shown}" failed with exit ${signal ?? res.code}\n${res.stderr.trimEnd()}`));
      else resolve(res);
    });
  });
}

/** Starts a long-running command; killed at cleanup if still alive. */
export function start(cmd, args = [], opts = {}) {
  const { env = {}, cwd = '/', asPg = false } = opts;
  const [a0, av] = argvFor(cmd, args, asPg);
  const child = spawn(a0, av, { env: baseEnv(env), cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  child.once('error', () => liveChildren.delete(child));
  return child;
}

/**
 * Runs a command synchronously and returns its wall-clock time in ms. The
 * latency figures use this: nothing else runs on our event loop meanwhile.
 */
export function timeSync(cmd, args, opts = {}) {
  const { env = {}, cwd = '/' } = opts;
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env: baseEnv(env), cwd, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  const ms = performance.now() - t0;
  if (r.error) throw new Error(`could not run "${describe(cmd, args)}": ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(`"${describe(cmd, args)}" failed with exit ${r.signal ?? r.status}\n${String(r.stderr).trimEnd()}`);
  }
  return { ms, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Disk usage of `path` in bytes (du -sb, leaving out entries named `exclude`); undefined if du fails. */
export function duBytes(path, exclude) {
  try {
    const args = ['-sb', ...(exclude ? [`--exclude=${exclude}`] : []), path];
    return Number(execFileSync('du', args, { encoding: 'utf8' }).split('\t')[0]);
  } catch {
    return undefined;
  }
}

/** sync(1): writeback of one contender is not paid by the next. */
export function syncDisks() {
  execFileSync('sync');
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
const handedOut = new Set();
export async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
        const p = srv.address().port;
        srv.close(() => resolve(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

// ---- cleanup ---------------------------------------------------------------

/** Data dirs of servers we started: stopped (SIGQUIT = immediate shutdown) at cleanup. */
export const liveServers = new Set();

function postmasterPid(pgdata) {
  try {
    const pid = Number(readFileSync(join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(pgdata) ? pid : undefined;
  } catch {
    return undefined;
  }
}

const alive = (pid) => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(safeRead(`/proc/${pid}/status`));
function safeRead(p) {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

/** Immediate shutdown of a server by its postmaster pid, synchronously (also usable on 'exit'). */
export function killServerSync(pgdata) {
  const pid = postmasterPid(pgdata);
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGQUIT');
  } catch {
    return;
  }
  for (let i = 0; i < 100 && alive(pid); i++) sleepSync(50);
  if (alive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/**
 * Processes left over by a contender (pgBackRest's async workers, cairn's
 * detached prefetch worker): those whose command line or environment names
 * our temp base. Only ever processes the bench started, found by that unique
 * path and ended by pid.
 */
export function findStragglers() {
  if (!base) return [];
  const found = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    const text = safeRead(`/proc/${pid}/cmdline`) + '\0' + safeRead(`/proc/${pid}/environ`);
    if (text.includes(base)) found.push(pid);
  }
  return found;
}

export function killStragglersSync(graceMs = 3000) {
  const pids = findStragglers();
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  const until = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < until) sleepSync(50);
  for (const pid of pids.filter(alive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  return pids.length;
}

/**
 * Ends (SIGTERM) the processes whose command line or environment names `path`
 * (a restored data dir: what its restore_command left running, e.g.
 * cairn-wal-get's detached prefetch worker). Never a server whose paths
 * differ; found and ended by pid.
 */
export function killProcessesNaming(path) {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const cmdline = safeRead(`/proc/${e}/cmdline`);
    if ((cmdline + '\0' + safeRead(`/proc/${e}/environ`)).includes(path + '/') || cmdline.includes(path + '\0')) {
      try {
        process.kill(Number(e), 'SIGTERM');
      } catch {
        // gone
      }
    }
  }
}

let cleanedUp = false;
/** Stops everything we started and removes the temp base (unless BENCH_KEEP). Synchronous, idempotent. */
export function cleanupSync() {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  for (const pgdata of liveServers) killServerSync(pgdata);
  liveServers.clear();
  killStragglersSync();
  if (base && !process.env.BENCH_KEEP) {
    try {
      rmSync(base, { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      process.stderr.write(`bench: could not remove ${base}: ${err.message}\n`);
    }
  } else if (base) {
    process.stderr.write(`bench: kept ${base} (BENCH_KEEP)\n`);
  }
}

let extraCleanup = [];
/** Runs at exit, before the temp base goes (e.g. stopping the S3 server). */
export function onExit(fn) {
  extraCleanup.push(fn);
}

export function installCleanupHooks() {
  process.once('exit', () => {
    for (const fn of extraCleanup) {
      try {
        fn();
      } catch {
        // best effort
      }
    }
    cleanupSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping servers and removing temp files\n`);
      // 'exit' runs the synchronous cleanup above.
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}
