// What both bench scripts (run.mjs, backup.mjs) share: the repo's paths,
// options read from the environment, progress lines and the problems list,
// prerequisites (apt-get when root) and the versions a result records.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { cleanupSync, makeDir, PG_BIN, run } from './proc.mjs';
import { round } from './stats.mjs';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** A cairn tool as the build installs it (node_modules/.bin/<name>). */
export const toolBin = (name) => join(ROOT, 'node_modules', '.bin', name);
export const NODE = existsSync(join(ROOT, '.node', 'bin', 'node')) ? join(ROOT, '.node', 'bin', 'node') : process.execPath;
export const TIME = '/usr/bin/time';

// ---- options ---------------------------------------------------------------

/** A whole number ≥ 0 from the environment variable `name`, or dflt when unset or empty. */
export const int = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v}: not a number`);
  return n;
};
/** Is the environment variable `name` set to 1/true/yes/y/on? */
export const flag = (name) => ['1', 'true', 'yes', 'y', 'on'].includes(String(process.env[name] ?? '').toLowerCase());

// ---- progress --------------------------------------------------------------

export const T0 = performance.now();
export const say = (msg) => process.stderr.write(`[${((performance.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);
/** Everything worth a look in the report; the first line of each is said at once. */
export const problems = [];
export const problem = (msg) => {
  problems.push(msg);
  say(`PROBLEM: ${msg.split('\n')[0]}`);
};

// ---- prerequisites ---------------------------------------------------------

export async function aptInstall(pkg) {
  if (process.getuid?.() !== 0) throw new Error(`${pkg} is missing and we are not root to apt-get install it`);
  const aptEnv = { DEBIAN_FRONTEND: 'noninteractive' };
  say(`installing ${pkg} (apt-get)`);
  const first = await run('apt-get', ['install', '-y', '-qq', pkg], { env: aptEnv, allowFail: true, timeoutMs: 600_000 });
  if (first.code === 0) return;
  await run('apt-get', ['update', '-qq'], { env: aptEnv, timeoutMs: 600_000 });
  await run('apt-get', ['install', '-y', '-qq', pkg], { env: aptEnv, timeoutMs: 600_000 });
}

/** Throws unless each of the built tools `bins` answers --version and PostgreSQL's server binaries are in PG_BIN. */
export async function checkBuiltAndPostgres(bins) {
  for (const bin of bins) {
    const r = await run(bin, ['--version'], { allowFail: true }).catch((err) => ({ code: -1, stderr: err.message }));
    if (r.code !== 0) throw new Error(`"${bin} --version" fails: ${r.stderr.trim()}\nhint: build first: npx turbo run build (npm run bench does it)`);
  }
  if (!existsSync(join(PG_BIN, 'initdb'))) throw new Error(`no PostgreSQL server binaries in ${PG_BIN}\nhint: set BENCH_PG_BIN`);
}

// ---- versions --------------------------------------------------------------

/** Node, CPUs, memory, the load average at the start (a problem when busy) and PostgreSQL's version. */
export async function hostVersions() {
  const v = { node: (await run(NODE, ['--version'])).stdout.trim(), cpus: cpus().length, memGB: round(totalmem() / 2 ** 30, 1), loadAvgAtStart: loadavg()[0] };
  // On a 2-core machine anything else running skews every figure.
  if (v.loadAvgAtStart > 0.5) problem(`the machine was busy when the bench started (load average ${v.loadAvgAtStart.toFixed(2)}): figures may be skewed`);
  v.postgres = (await run(join(PG_BIN, 'postgres'), ['--version'])).stdout.trim();
  return v;
}

/** The checked-out commit (" (uncommitted changes)" appended when tracked files differ); undefined outside a git checkout. */
export function gitCommit() {
  let commit;
  try {
    commit = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (dirty) commit += ' (uncommitted changes)';
  } catch {
    // not a git checkout
  }
  return commit;
}

/**
 * The body of a bench part: a throw is the problem "bench aborted: …"; then,
 * whatever happened, every server and process the bench started is stopped
 * and the temp dir removed (cleanupSync).
 */
export async function runGuarded(body) {
  try {
    await body();
  } catch (err) {
    problem(`bench aborted: ${err.message}`);
  } finally {
    say('cleaning up');
    cleanupSync();
  }
}

/**
 * The end every bench part shares: total time, the report on stdout, the
 * results as JSON in `outDir/<name>-<time>.json`, exit 1 if it aborted.
 */
export function finishBench(name, res, date, outDir, report) {
  res.totalSeconds = Math.round((performance.now() - T0) / 1000);
  process.stdout.write(report(res) + '\n');
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${name}-${date.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
  writeFileSync(file, JSON.stringify(res) + '\n');
  say(`results written to ${file}`);
  if (problems.some((p) => p.startsWith('bench aborted'))) process.exitCode = 1;
}

/** Runs a tool as the pg user and times it; throws with its last lines of output unless it exits 0. */
let timedSeq = 0;
/** Runs a command as the pg user under /usr/bin/time: its exit code, wall seconds, peak RSS (MB), CPU seconds, stdout and stderr. */
export async function timedWithRss(cmd, args, env, timeoutS) {
  const out = join(makeDir('time'), `t${++timedSeq}`);
  const r = await run(TIME, ['-o', out, '-f', '%M %U %S', cmd, ...args], { asPg: true, env, allowFail: true, timeoutMs: timeoutS * 1000 });
  const [kb, u, s] = readFileSync(out, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  return { code: r.code, seconds: round(r.ms / 1000, 2), rssMB: round(kb / 1024, 1), cpuS: round(u + s, 2), stdout: r.stdout, stderr: r.stderr };
}

export async function timedRun(cmd, args, env, timeoutS) {
  const t0 = performance.now();
  const r = await run(cmd, args, { asPg: true, env, allowFail: true, timeoutMs: timeoutS * 1000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}):\n${(r.stderr || r.stdout).trimEnd().split('\n').slice(-10).join('\n')}`);
  return { seconds: round((performance.now() - t0) / 1000, 2), stdout: r.stdout, stderr: r.stderr ?? '' };
}

/** The options most bench parts share: zstd level, --jobs, a command's time limit, where results go. */
export function sharedOptions() {
  return {
    level: int('BENCH_COMPRESS_LEVEL', 1),
    jobs: Math.max(1, int('BENCH_JOBS', 2)),
    timeoutS: int('BENCH_TIMEOUT_S', 600),
    outDir: process.env.BENCH_OUT || join(ROOT, 'bench-results'),
  };
}
