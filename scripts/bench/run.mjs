#!/usr/bin/env node
// `npm run bench`: the figures of issue 2 — wal-push latency, draining a
// backlog of .ready segments, recovery replaying archived WAL, and peak RSS —
// for cairn beside cp and pgBackRest, on real pgbench WAL. Every contender
// gets the same WAL: one pgbench run is archived by nobody (archive_command =
// /bin/false) until BENCH_SEGMENTS segments wait as .ready, then the stopped
// data dir is the snapshot each drain contender starts from. See README.md.

import { copyFileSync, cpSync, existsSync, linkSync, mkdirSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Server } from './lib/cluster.mjs';
import { aptInstall, checkBuiltAndPostgres, flag, gitCommit, hostVersions, int, NODE, problem, problems, ROOT, say, T0, TIME, toolBin } from './lib/common.mjs';
import { ensurePgbackrest, PGBACKREST, STANZA, writePgbrConf } from './lib/pgbackrest.mjs';
import {
  chownPg,
  cleanupSync,
  duBytes,
  installCleanupHooks,
  findStragglers,
  killStragglersSync,
  makeDir,
  onExit,
  PG_BIN,
  pgUser,
  removeDir,
  run,
  sleep,
  start,
  syncDisks,
  tempBase,
  timeSync,
} from './lib/proc.mjs';
import { mb, median, reportTail, round, summarize, table } from './lib/stats.mjs';

const WAL_PUSH = toolBin('cairn-wal-push');
const WAL_GET = toolBin('cairn-wal-get');
const S3_HARNESS = join(ROOT, 'packages', 'testkit', 'dist', 's3-server.js');
const SEG_SIZE = 16 * 1024 * 1024;

// ---- options ---------------------------------------------------------------

const env = process.env;

const ALL_PHASES = ['latency', 'drain', 'recovery', 'rss'];
const opt = {
  segments: int('BENCH_SEGMENTS', 200),
  scale: int('BENCH_SCALE', 20),
  runs: Math.max(1, int('BENCH_RUNS', 10)),
  drainRuns: Math.max(1, int('BENCH_DRAIN_RUNS', 5)),
  recoveryRuns: Math.max(1, int('BENCH_RECOVERY_RUNS', 3)),
  level: int('BENCH_COMPRESS_LEVEL', 1),
  extraLevel: env.BENCH_EXTRA_LEVEL === undefined ? 3 : int('BENCH_EXTRA_LEVEL', 0),
  skipPgbr: flag('BENCH_SKIP_PGBACKREST'),
  skipS3: flag('BENCH_SKIP_S3'),
  phases: new Set((env.BENCH_PHASES || ALL_PHASES.join(',')).split(',').map((s) => s.trim()).filter(Boolean)),
  timeoutS: int('BENCH_TIMEOUT_S', 300),
  checkpointS: int('BENCH_CHECKPOINT_S', 4),
  clients: Math.max(1, int('BENCH_CLIENTS', 4)),
  pgbrProcessMax: Math.max(1, int('BENCH_PGBR_PROCESS_MAX', 2)),
  pgbrGetQueueMax: env.BENCH_PGBR_GET_QUEUE_MAX || '128MiB',
  outDir: env.BENCH_OUT || join(ROOT, 'bench-results'),
};
for (const p of opt.phases) if (!ALL_PHASES.includes(p)) throw new Error(`BENCH_PHASES: unknown phase "${p}" (use ${ALL_PHASES.join(',')})`);
const Z = `zstd:${opt.level}`;

// ---- prerequisites ---------------------------------------------------------

async function prerequisites() {
  await checkBuiltAndPostgres([WAL_PUSH, WAL_GET]);
  if (opt.phases.has('rss') && !existsSync(TIME)) await aptInstall('time');
  if (!opt.skipPgbr && (opt.phases.has('drain') || opt.phases.has('recovery')) && !(await ensurePgbackrest())) opt.skipPgbr = true;
  if (!opt.skipS3 && !existsSync(S3_HARNESS)) {
    problem(`${S3_HARNESS} is missing (build the testkit): the S3 contenders are skipped`);
    opt.skipS3 = true;
  }
}

async function versions() {
  const v = await hostVersions();
  v.cairn = (await run(WAL_PUSH, ['--version'])).stdout.trim();
  // The defaults the drain runs with (they are the product's, not the bench's).
  const help = (await run(WAL_PUSH, ['--help'], { allowFail: true })).stdout;
  v.walPushDefaults = {
    pushAhead: Number(/--push-ahead N.*\(default: (\d+)\)/.exec(help)?.[1]) || undefined,
    concurrency: Number(/--concurrency N.*\(default: (\d+)\)/.exec(help)?.[1]) || undefined,
  };
  const getHelp = (await run(WAL_GET, ['--help'], { allowFail: true })).stdout;
  v.walGetDefaults = {
    prefetch: Number(/--prefetch N.*\(default: (\d+)\)/.exec(getHelp)?.[1]) || undefined,
    prefetchConcurrency: Number(/--prefetch-concurrency N.*\(default: (\d+)\)/.exec(getHelp)?.[1]) || undefined,
  };
  if (!opt.skipPgbr) v.pgbackrest = (await run(PGBACKREST, ['version'], { allowFail: true })).stdout.trim();
  v.commit = gitCommit();
  return v;
}

// ---- helpers ---------------------------------------------------------------

const isSegment = (n) => /^[0-9A-F]{24}$/.test(n);
/** Segment number of a WAL file name (16 MiB segments: 256 per log id). */
const segNo = (name) => parseInt(name.slice(8, 16), 16) * 256 + parseInt(name.slice(16, 24), 16);
const lsnSegNo = (lsn) => {
  const [hi, lo] = lsn.split('/').map((x) => parseInt(x, 16));
  return hi * 256 + Math.floor(lo / SEG_SIZE);
};

function readyFiles(pgdata) {
  const dir = join(pgdata, 'pg_wal', 'archive_status');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ready'))
    .map((f) => f.slice(0, -6))
    .filter(isSegment)
    .sort();
}

function countFiles(dir, re) {
  let n = 0;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (re.test(e.name)) n++;
    }
  };
  try {
    walk(dir);
  } catch {
    return undefined;
  }
  return n;
}

/** Log lines worth reporting: failures of archive/restore commands and anything the tools printed. */
function logProblems(log) {
  return log
    .split('\n')
    .filter((l) => /archive command failed|restore_command|could not|error|FATAL|PANIC|WARNING|cairn|pgbackrest|P00/i.test(l))
    .filter((l) => !/^\s*$/.test(l))
    // PostgreSQL's normal end-of-archive chatter during recovery:
    .filter((l) => !/restored log file|LOG: {2}(redo|archive recovery|selected new timeline|database system|starting|listening|consistent recovery|last completed|checkpoint|redo starts|redo done|shutting down|received)/.test(l))
    // our own polling while the server starts, and cp's normal misses at the end of the archive:
    .filter((l) => !/the database system is (starting up|not yet accepting connections|shutting down)/.test(l))
    .filter((l) => !/^cp: cannot stat '.*': No such file or directory$/.test(l));
}

// ---- pgBackRest ------------------------------------------------------------

const pgbrCmd = (conf, verb, args) => `${PGBACKREST} --config=${conf} --stanza=${STANZA} ${verb} ${args}`;

// ---- phase 0: the WAL everyone works on --------------------------------------

/**
 * One cluster: pgbench -i archived by cp + cairn + pgBackRest (sync), a base
 * backup, then archive_command = /bin/false and pgbench until enough
 * segments wait as .ready; stopped, its data dir is the drain snapshot.
 */
async function prepareWal(ctx) {
  const cpArchive = makeDir('archive-cp');
  const cairnRepo = makeDir('repo-cairn');
  const cairnSpool = makeDir('spool-primary');
  const pgbrRepo = opt.skipPgbr ? undefined : makeDir('repo-pgbackrest');
  const srv = new Server('primary', { env: { CAIRN_REPO: cairnRepo, CAIRN_COMPRESS: Z, CAIRN_SPOOL_DIR: cairnSpool } });
  ctx.primary = srv;
  say(`initdb; pgbench -i -s ${opt.scale} archived by cp, cairn-wal-push${opt.skipPgbr ? '' : ' and pgBackRest'}`);
  await srv.initdb();
  let pgbrConf;
  const parts = [`(test -f ${cpArchive}/%f || cp %p ${cpArchive}/%f)`, `${WAL_PUSH} %p %f`];
  await srv.configure();
  if (!opt.skipPgbr) {
    pgbrConf = writePgbrConf(makeDir('pgbr-primary'), { repo: pgbrRepo, level: opt.level, pgdata: srv.pgdata, server: srv });
    parts.push(pgbrCmd(pgbrConf, 'archive-push', '%p'));
  }
  srv.setConf({
    archive_mode: 'on',
    archive_command: parts.join(' && '),
    wal_level: 'replica',
    fsync: 'on',
    shared_buffers: '128MB',
    max_wal_size: '8GB',
    min_wal_size: '256MB',
    checkpoint_timeout: '30min',
    max_connections: '40',
    log_min_messages: 'warning',
    log_checkpoints: 'off',
  });
  await srv.start();
  if (!opt.skipPgbr) await run(PGBACKREST, ['--config=' + pgbrConf, '--stanza=' + STANZA, 'stanza-create'], { asPg: true });
  await run(join(PG_BIN, 'pgbench'), ['-i', '-s', String(opt.scale), '-q'], { asPg: true, env: srv.clientEnv() });

  say('base backup (pg_basebackup -X none, waits until its WAL is archived)');
  const bbParent = makeDir('basebackup');
  const bb = join(bbParent, 'data');
  await run(join(PG_BIN, 'pg_basebackup'), ['-D', bb, '-X', 'none', '-c', 'fast', '--no-sync'], { asPg: true, env: srv.clientEnv() });
  // The base backup carries the primary's settings; recovery contenders override them.

  srv.setConf({ archive_command: '/bin/false' });
  await srv.reload();
  await sleep(500);

  say(`pgbench (tpcb-like + bulk updates, ${opt.clients} clients, CHECKPOINT every ${opt.checkpointS} s) until ${opt.segments} segments are .ready`);
  const script = join(srv.dir, 'bulk.sql');
  // A tenth of the transactions touch 1000 rows: real pgbench WAL (heap updates,
  // full-page images after each checkpoint), written fast enough that the
  // backlog builds in about a minute on 2 cores.
  writeFileSync(
    script,
    '\\set aid random(1, 100000 * :scale - 1000)\n\\set delta random(-5000, 5000)\n' +
      'UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid BETWEEN :aid AND :aid + 999;\n',
  );
  chownPg(script);
  const t0 = performance.now();
  const bench = start(
    join(PG_BIN, 'pgbench'),
    ['-n', '-M', 'prepared', '-c', String(opt.clients), '-j', '2', '-T', '1800', '-b', 'tpcb-like@3', '-f', `${script}@1`],
    { asPg: true, env: { ...srv.clientEnv(), PGOPTIONS: '-c synchronous_commit=off' } },
  );
  let benchErr = '';
  bench.stderr.on('data', (b) => (benchErr = (benchErr + b).slice(-4000)));
  bench.stdout.resume();
  const benchExit = new Promise((r) => bench.once('exit', (code, sig) => r(sig ?? code)));
  const ckptClient = await srv.connect();
  let lastCkpt = performance.now();
  let lastSay = performance.now();
  let ready = 0;
  let exited;
  benchExit.then((c) => (exited = c));
  try {
    while ((ready = readyFiles(srv.pgdata).length) < opt.segments) {
      if (exited !== undefined) throw new Error(`pgbench exited (${exited}) before ${opt.segments} segments were ready:\n${benchErr}`);
      if (performance.now() - t0 > 900_000) throw new Error('the load did not produce enough WAL in 15 minutes');
      if (performance.now() - lastCkpt > opt.checkpointS * 1000) {
        await ckptClient.query('CHECKPOINT');
        lastCkpt = performance.now();
      }
      if (performance.now() - lastSay > 10_000) {
        say(`  ${ready} .ready`);
        lastSay = performance.now();
      }
      await sleep(200);
    }
  } finally {
    await ckptClient.end().catch(() => {});
    if (exited === undefined) bench.kill('SIGTERM');
    await benchExit;
  }
  const loadS = (performance.now() - t0) / 1000;
  await srv.stop('fast');
  const ready1 = readyFiles(srv.pgdata);
  say(`  ${ready1.length} segments .ready after ${loadS.toFixed(0)} s of pgbench; snapshot = the stopped data dir`);
  const ctrl = (await run(join(PG_BIN, 'pg_controldata'), ['-D', srv.pgdata], { asPg: true })).stdout;
  const redoFile = /Latest checkpoint's REDO WAL file:\s+(\S+)/.exec(ctrl)?.[1];
  say('sync (flushing the load before measuring)');
  syncDisks();
  Object.assign(ctx, {
    snapshot: srv.pgdata,
    ready: ready1,
    lastReady: ready1.at(-1),
    redoFile,
    basebackup: bb,
    cpArchive,
    cairnRepo,
    pgbrRepo,
    loadSeconds: round(loadS, 1),
  });
  if (ready1.length === 0) throw new Error('no .ready segments: nothing to measure');
}

/**
 * A drain contender's data dir: a copy of the snapshot in which the .ready
 * segments are hard links (PostgreSQL never writes a finished segment again,
 * and nothing checkpoints or recycles during a drain: checkpoint_timeout is
 * 1h and the server is stopped with -m immediate), so each restore costs
 * seconds, not 3 GB of writes whose writeback would skew the next contender.
 */
async function restoreSnapshot(ctx, dest) {
  const snap = ctx.snapshot;
  mkdirSync(dest, { mode: 0o700 });
  chownPg(dest);
  const top = readdirSync(snap).filter((e) => e !== 'pg_wal' && e !== 'postmaster.pid');
  await run('cp', ['-a', ...top.map((e) => join(snap, e)), dest + '/']);
  mkdirSync(join(dest, 'pg_wal'), { mode: 0o700 });
  chownPg(join(dest, 'pg_wal'));
  await run('cp', ['-a', join(snap, 'pg_wal', 'archive_status'), join(dest, 'pg_wal') + '/']);
  const ready = new Set(ctx.ready);
  const current = ctx.redoFile ? [ctx.redoFile, nextSegment(ctx.redoFile)] : [];
  for (const f of readdirSync(join(snap, 'pg_wal'))) {
    const src = join(snap, 'pg_wal', f);
    if (ready.has(f)) linkSync(src, join(dest, 'pg_wal', f));
    else if (current.includes(f) || !isSegment(f)) {
      if (statSync(src).isFile()) await run('cp', ['-a', src, join(dest, 'pg_wal', f)]);
    }
    // other segments: already archived (.done) or recycled for reuse; not needed
  }
}

function nextSegment(name) {
  const n = segNo(name) + 1;
  return name.slice(0, 8) + Math.floor(n / 256).toString(16).toUpperCase().padStart(8, '0') + (n % 256).toString(16).toUpperCase().padStart(8, '0');
}

// ---- S3 --------------------------------------------------------------------

async function startS3(ctx) {
  const { startS3Server, s3TestEnv } = await import(pathToFileURL(S3_HARNESS).href);
  const server = await startS3Server({ buckets: ['cairn-bench'] });
  ctx.s3 = server;
  ctx.s3Env = s3TestEnv();
  // On an early exit the harness's own exit hook kills its child; its data
  // dir goes here too (server.stop() would unregister that hook, and its
  // async tail never runs during 'exit').
  onExit(() => rmSync(server.dir, { recursive: true, force: true }));
  ctx.s3Url = (prefix) => `s3://cairn-bench/${prefix}?endpoint=${server.endpoint}&region=us-east-1&force-path-style=true`;
  say(`s3rver at ${server.endpoint} (data in ${server.dir})`);
}

// ---- 1. wal-push latency ------------------------------------------------------

async function benchLatency(ctx) {
  say(`1. wal-push latency: ${opt.runs} runs each (interleaved) on one 16 MiB segment`);
  const dir = makeDir('latency', 'me');
  const walDir = join(dir, 'pg_wal');
  mkdirSync(walDir);
  const seg = ctx.ready[0];
  const other = ctx.ready[1] ?? ctx.ready[0];
  copyFileSync(join(ctx.snapshot, 'pg_wal', seg), join(walDir, seg));
  if (other !== seg) copyFileSync(join(ctx.snapshot, 'pg_wal', other), join(walDir, other));
  const segPath = join(walDir, seg);
  mkdirSync(join(walDir, 'archive_status'));
  writeFileSync(join(walDir, 'archive_status', `${other}.ready`), '');
  const spool = join(dir, 'spool');
  mkdirSync(spool);
  let k = 0;
  const fresh = (name) => {
    const d = join(dir, `${name}-${k++}`);
    mkdirSync(d);
    return d;
  };

  const pushEnv = (repo, level) => ({ CAIRN_REPO: repo, CAIRN_COMPRESS: `zstd:${level}`, CAIRN_SPOOL_DIR: spool, ...(repo.startsWith('s3:') ? ctx.s3Env : {}) });
  /** A fresh repository holding another segment (system registered), then the timed push. */
  const cairnRun = (level, s3) => (rec) => {
    const repo = s3 ? ctx.s3Url(`latency-${k++}`) : fresh('repo');
    const first = timeSync(WAL_PUSH, [join(walDir, other), other, '--push-ahead', '0'], { env: pushEnv(repo, level), cwd: dir });
    rec.first.push(first.ms);
    return timeSync(WAL_PUSH, [segPath, seg, '--push-ahead', '0'], { env: pushEnv(repo, level), cwd: dir }).ms;
  };
  const contenders = [
    {
      key: 'cp_fsync',
      label: 'cp + fsync (cp seg dest && sync dest)',
      fn: () => {
        const d = fresh('cp');
        return timeSync('/bin/sh', ['-c', 'cp "$1" "$2" && sync "$2"', 'sh', segPath, join(d, seg)]).ms;
      },
    },
    {
      key: 'dd_fsync',
      label: 'dd conv=fsync',
      fn: () => {
        const d = fresh('dd');
        return timeSync('dd', [`if=${segPath}`, `of=${join(d, seg)}`, 'bs=1M', 'conv=fsync', 'status=none']).ms;
      },
    },
    { key: `cairn_file_z${opt.level}`, label: `cairn-wal-push file repo ${Z}`, fn: cairnRun(opt.level, false), first: [] },
  ];
  if (opt.extraLevel && opt.extraLevel !== opt.level) {
    contenders.push({ key: `cairn_file_z${opt.extraLevel}`, label: `cairn-wal-push file repo zstd:${opt.extraLevel}`, fn: cairnRun(opt.extraLevel, false), first: [] });
  }
  if (!opt.skipS3) contenders.push({ key: `cairn_s3_z${opt.level}`, label: `cairn-wal-push S3 (s3rver) ${Z}`, fn: cairnRun(opt.level, true), first: [] });
  contenders.push({
    key: 'cairn_spooled',
    label: `cairn-wal-push of a segment pushed ahead before (spool check)`,
    fn: () => {
      // PostgreSQL's call for a segment an earlier call archived ahead: the
      // per-segment cost while a backlog drains.
      // Both calls alike, as archive_command's are: records are kept per call context.
      const e = pushEnv(fresh('repo'), opt.level);
      timeSync(WAL_PUSH, ['--push-ahead', '1', segPath, seg], { env: e, cwd: dir });
      return timeSync(WAL_PUSH, ['--push-ahead', '1', join(walDir, other), other], { env: e, cwd: dir }).ms;
    },
  });
  contenders.push({ key: 'cairn_version', label: 'cairn-wal-push --version (startup floor)', fn: () => timeSync(WAL_PUSH, ['--version']).ms });
  contenders.push({ key: 'node_e0', label: `node -e 0 (${NODE === process.execPath ? 'this node' : 'repo Node'})`, fn: () => timeSync(NODE, ['-e', '0']).ms });

  // One untimed round warms the compile cache and the page cache.
  for (const c of contenders) {
    const rec = { first: [] };
    (c.first ? c.fn(rec) : c.fn());
  }
  for (const c of contenders) c.ms = [];
  for (let i = 0; i < opt.runs; i++) {
    for (const c of contenders) c.ms.push(c.first ? c.fn(c) : c.fn());
  }
  const out = {};
  for (const c of contenders) {
    out[c.key] = { label: c.label, ...summarize(c.ms) };
    if (c.first) out[c.key].firstPushIntoEmptyRepo = summarize(c.first);
  }
  const cairnZ = out[`cairn_file_z${opt.level}`];
  say(`   cp+fsync median ${out.cp_fsync.median} ms; cairn ${Z} median ${cairnZ.median} ms; --version ${out.cairn_version.median} ms`);
  removeDir(dir);
  return out;
}

/**
 * restore_command latency on one segment: cp, cairn-wal-get straight from the
 * repository, and cairn-wal-get served from the spool its prefetch filled.
 */
async function benchGetLatency(ctx) {
  say(`1b. wal-get latency: ${opt.runs} runs each`);
  const dir = makeDir('latency-get', 'me');
  const repo = join(dir, 'repo');
  mkdirSync(repo);
  const [seg0, seg1] = ctx.ready;
  if (!seg1) return undefined;
  const pushEnv = { CAIRN_REPO: repo, CAIRN_COMPRESS: Z, CAIRN_SPOOL_DIR: join(dir, 'push-spool') };
  // seg0 and seg1 into the repository (push-ahead works in the background now: push both).
  for (const s of [seg0, seg1]) await run(WAL_PUSH, [`pg_wal/${s}`, s, '--push-ahead', '0'], { env: pushEnv, cwd: ctx.snapshot });
  const dest = join(dir, 'RECOVERYXLOG');
  let k = 0;
  const waitForWorker = async () => {
    for (let i = 0; i < 200 && findStragglers().length > 0; i++) await sleep(50);
  };
  const contenders = [
    { key: 'cp', label: 'cp archive/seg %p', fn: () => timeSync('cp', [join(ctx.snapshot, 'pg_wal', seg1), dest]).ms },
    {
      key: 'cairn_repo',
      label: 'cairn-wal-get from the file repo (--prefetch 0)',
      fn: () => timeSync(WAL_GET, [seg1, dest, '--prefetch', '0'], { env: { CAIRN_REPO: repo, CAIRN_SPOOL_DIR: join(dir, 'spool-np') }, cwd: ctx.snapshot }).ms,
    },
    {
      key: 'cairn_spool',
      label: 'cairn-wal-get served from its prefetch spool',
      fn: async () => {
        const spoolDir = join(dir, `spool-${k++}`);
        const e = { CAIRN_REPO: repo, CAIRN_SPOOL_DIR: spoolDir };
        timeSync(WAL_GET, [seg0, dest], { env: e, cwd: ctx.snapshot }); // starts the prefetch worker
        // The worker keeps the next segments in <spool>/get/<context>/; wait for seg1 there.
        const entry = () => readdirSync(join(spoolDir, 'get'), { withFileTypes: true }).some((d) => d.isDirectory() && existsSync(join(spoolDir, 'get', d.name, seg1)));
        for (let i = 0; i < 200 && !(existsSync(join(spoolDir, 'get')) && entry()); i++) await sleep(50);
        const ms = timeSync(WAL_GET, [seg1, dest], { env: e, cwd: ctx.snapshot }).ms;
        killStragglersSync(); // the worker lingers until recovery stops moving: keep the next run quiet
        await waitForWorker();
        return ms;
      },
    },
  ];
  for (const c of contenders) await c.fn(); // warm-up
  for (const c of contenders) c.ms = [];
  for (let i = 0; i < opt.runs; i++) for (const c of contenders) c.ms.push(await c.fn());
  killStragglersSync();
  const out = {};
  for (const c of contenders) out[c.key] = { label: c.label, ...summarize(c.ms) };
  say(`   cp median ${out.cp.median} ms; wal-get from repo ${out.cairn_repo.median} ms; from spool ${out.cairn_spool.median} ms`);
  removeDir(dir);
  return out;
}

// ---- 2. draining the backlog ------------------------------------------------

/**
 * The drain contenders of round `round`. Round 0 drains into the archives the
 * recovery phase reads (ctx.cpArchive, ctx.cairnRepo, ctx.pgbrRepo); later
 * rounds (BENCH_DRAIN_RUNS) each get fresh ones, so no contender finds its
 * segments already stored. S3 runs in round 0 only.
 */
function drainContenders(ctx, round = 0) {
  const list = [];
  const need = (key) => opt.phases.has('drain') || (round === 0 && ['cp', 'cairn_file', 'pgbr_async'].includes(key));
  const fresh = (name, shared) => {
    if (round === 0) return { dir: shared, dispose: undefined };
    const dir = makeDir(`${name}-r${round}`);
    return { dir, dispose: () => removeDir(dir) };
  };
  if (need('cp')) {
    list.push({
      key: 'cp',
      label: 'cp (test ! -f && cp, no fsync)',
      prepare: () => {
        const a = fresh('archive-cp', ctx.cpArchive);
        return { command: `test ! -f ${a.dir}/%f && cp %p ${a.dir}/%f`, repo: a.dir, count: /^[0-9A-F]{24}$/, dispose: a.dispose };
      },
    });
  }
  if (need('cairn_file')) {
    list.push({
      key: 'cairn_file',
      label: `cairn-wal-push file repo ${Z}`,
      prepare: (srvName) => {
        const r = fresh('repo-cairn', ctx.cairnRepo);
        return {
          command: `${WAL_PUSH} %p %f`,
          env: { CAIRN_REPO: r.dir, CAIRN_COMPRESS: Z, CAIRN_SPOOL_DIR: makeDir(`spool-${srvName}`) },
          repo: r.dir,
          count: /^[0-9A-F]{24}-[0-9a-f]{64}\.zst$/,
          dispose: r.dispose,
        };
      },
    });
  }
  if (opt.phases.has('drain') && opt.extraLevel && opt.extraLevel !== opt.level) {
    list.push({
      key: `cairn_file_z${opt.extraLevel}`,
      label: `cairn-wal-push file repo zstd:${opt.extraLevel}`,
      prepare: (srvName) => {
        const repo = makeDir(`repo-cairn-z${opt.extraLevel}`);
        return {
          command: `${WAL_PUSH} %p %f`,
          env: { CAIRN_REPO: repo, CAIRN_COMPRESS: `zstd:${opt.extraLevel}`, CAIRN_SPOOL_DIR: makeDir(`spool-${srvName}`) },
          repo,
          count: /^[0-9A-F]{24}-[0-9a-f]{64}\.zst$/,
          dispose: () => removeDir(repo),
        };
      },
    });
  }
  if (round === 0 && opt.phases.has('drain') && !opt.skipS3) {
    list.push({
      key: 'cairn_s3',
      label: `cairn-wal-push S3 (s3rver) ${Z}`,
      prepare: (srvName) => ({
        command: `${WAL_PUSH} %p %f`,
        env: { CAIRN_REPO: ctx.s3Url('drain'), CAIRN_COMPRESS: Z, CAIRN_SPOOL_DIR: makeDir(`spool-${srvName}`), ...ctx.s3Env },
        repo: ctx.s3.dir,
        count: /^[0-9A-F]{24}-[0-9a-f]{64}\.zst\._S3rver_object$/,
      }),
    });
  }
  // A copy of pgBackRest's repository as the load left it (stanza made, none of the backlog archived).
  const pgbrCopy = () => {
    const repo = makeDir(`repo-pgbackrest-copy-${Math.random().toString(16).slice(2, 10)}`);
    cpSync(ctx.pgbrPristine, repo, { recursive: true, preserveTimestamps: true });
    execFileSync('chown', ['-R', `${pgUser.uid}:${pgUser.gid}`, repo]);
    return { dir: repo, dispose: () => removeDir(repo) };
  };
  if (!opt.skipPgbr && opt.phases.has('drain')) {
    list.push({
      key: 'pgbr_sync',
      label: `pgBackRest archive-push sync zst:${opt.level}`,
      prepare: (srvName, pgdata) => {
        const r = pgbrCopy();
        const conf = writePgbrConf(makeDir(`pgbr-${srvName}`), { repo: r.dir, level: opt.level, pgdata });
        return { command: pgbrCmd(conf, 'archive-push', '%p'), repo: r.dir, count: /^[0-9A-F]{24}-[0-9a-f]{40}\.zst$/, dispose: r.dispose };
      },
    });
  }
  if (!opt.skipPgbr && need('pgbr_async')) {
    list.push({
      key: 'pgbr_async',
      label: `pgBackRest archive-push async zst:${opt.level}, process-max=${opt.pgbrProcessMax}`,
      prepare: (srvName, pgdata) => {
        const r = round === 0 ? { dir: ctx.pgbrRepo, dispose: undefined } : pgbrCopy();
        const conf = writePgbrConf(makeDir(`pgbr-${srvName}`), {
          repo: r.dir,
          level: opt.level,
          pgdata,
          extra: { 'archive-async': 'y', 'process-max': String(opt.pgbrProcessMax) },
        });
        return { command: pgbrCmd(conf, 'archive-push', '%p'), repo: r.dir, count: /^[0-9A-F]{24}-[0-9a-f]{40}\.zst$/, dispose: r.dispose };
      },
    });
  }
  return list;
}

async function drainOne(ctx, c) {
  const name = `drain-${c.key}`;
  const srv = new Server(name);
  const pgdata = srv.pgdata;
  const p = c.prepare(name, pgdata);
  srv.env = p.env ?? {};
  const before = p.repo ? countFiles(p.repo, p.count) : undefined;
  const bytesBefore = p.repo ? duBytes(p.repo) : undefined;
  await restoreSnapshot(ctx, pgdata);
  await srv.configure({ archive_mode: 'on', archive_command: p.command, checkpoint_timeout: '1h', log_min_messages: 'warning' });
  syncDisks();
  const total = ctx.ready.length;
  const result = { label: c.label, segments: total, archiveCommand: p.command };
  const t0 = performance.now();
  try {
    await srv.start({ wait: false });
    let last;
    const ms = await srv.pollUntil(
      'select last_archived_wal, failed_count::int from pg_stat_archiver',
      (r) => (last = r) && isSegment(r.last_archived_wal ?? '') && r.last_archived_wal >= ctx.lastReady,
      { t0, timeoutMs: opt.timeoutS * 1000 },
    );
    result.seconds = round(ms / 1000, 2);
    result.segPerSec = round(total / (ms / 1000), 1);
    result.failedCountTotal = last.failed_count; // includes the load's /bin/false failures
  } catch (err) {
    const done = readdirSync(join(pgdata, 'pg_wal', 'archive_status')).filter((f) => f.endsWith('.done') && ctx.ready.includes(f.slice(0, -5))).length;
    result.error = err.message.split('\n')[0];
    result.progress = `${done}/${total}`;
    problem(`drain ${c.label}: ${err.message}\n(${done} of ${total} segments archived)`);
  } finally {
    await srv.stop('immediate');
    killStragglersSync();
  }
  const drainLog = srv.log();
  result.failedCount = (drainLog.match(/archive command failed/g) ?? []).length;
  const lines = logProblems(drainLog);
  if (lines.length > 0) {
    result.logLines = lines.length;
    problem(`drain ${c.label}: ${lines.length} log line(s) worth a look, e.g.:\n${lines.slice(0, 8).join('\n')}`);
  }
  if (result.failedCount > 0) problem(`drain ${c.label}: archive_command failed ${result.failedCount} time(s)`);
  if (p.repo) {
    const after = countFiles(p.repo, p.count);
    result.stored = after - before;
    result.storedMB = mb(duBytes(p.repo) - bytesBefore);
    if (!result.error && result.stored < total) {
      problem(`drain ${c.label}: ${total} segments archived per PostgreSQL but ${result.stored} new objects in the repository`);
    }
  }
  removeDir(srv.dir);
  p.dispose?.();
  syncDisks();
  say(`   ${c.label}: ${result.seconds !== undefined ? `${result.seconds} s, ${result.segPerSec} seg/s` : `FAILED (${result.progress})`}${result.storedMB !== undefined ? `, ${result.storedMB} MB stored` : ''}`);
  return result;
}

/**
 * BENCH_DRAIN_RUNS rounds, the order reversed every other round; the figure
 * of each contender is the median of its rounds (segments/s from the median
 * time). Round 0 fills the archives the recovery phase reads.
 */
async function benchDrain(ctx) {
  if (!opt.skipPgbr) {
    ctx.pgbrPristine = join(tempBase(), 'repo-pgbackrest-pristine');
    cpSync(ctx.pgbrRepo, ctx.pgbrPristine, { recursive: true, preserveTimestamps: true });
  }
  const rounds = opt.phases.has('drain') ? opt.drainRuns : 1;
  const all = {};
  for (let round = 0; round < rounds; round++) {
    const list = drainContenders(ctx, round);
    if (round % 2 === 1) list.reverse();
    say(`2. draining ${ctx.ready.length} .ready segments, round ${round + 1} of ${rounds}: ${list.map((c) => c.key).join(', ')}`);
    for (const c of list) (all[c.key] ??= []).push(await drainOne(ctx, c));
  }
  const out = mediansOf(all, (r) => r.segments);
  for (const [key, runs] of Object.entries(all)) if (out[key].runs) out[key].failedCount = runs.reduce((n, r) => n + (r.failedCount ?? 0), 0);
  return out;
}

/**
 * Each contender's rounds as one result: its first successful run with the
 * median time, segments/s from that median (`files`: how many the run
 * counted) and every round's time; a contender that never finished keeps
 * its first run.
 */
function mediansOf(all, files) {
  const out = {};
  for (const [key, runs] of Object.entries(all)) {
    const ok = runs.filter((r) => r.seconds !== undefined);
    const first = ok[0] ?? runs[0];
    if (ok.length === 0) {
      out[key] = first;
      continue;
    }
    const seconds = round(median(ok.map((r) => r.seconds)), 2);
    out[key] = { ...first, seconds, segPerSec: round(files(first) / seconds, 1), runs: runs.map((r) => r.seconds ?? null) };
  }
  return out;
}

// ---- 3. recovery --------------------------------------------------------------

async function recoverOne(ctx, c) {
  const name = `recover-${c.key}`;
  const srv = new Server(name);
  const pgdata = srv.pgdata;
  await run('cp', ['-a', ctx.basebackup, pgdata]);
  const p = c.prepare(name, pgdata);
  srv.env = p.env ?? {};
  await srv.configure({ archive_mode: 'off', restore_command: p.command, log_min_messages: 'warning' });
  srv.writeFile('recovery.signal', '');
  syncDisks();
  const result = { label: c.label, restoreCommand: p.command };
  const t0 = performance.now();
  try {
    await srv.start({ wait: false });
    const ms = await srv.pollUntil('select pg_is_in_recovery() as r', (r) => r && r.r === false, { t0, timeoutMs: opt.timeoutS * 1000 });
    result.seconds = round(ms / 1000, 2);
    const log = srv.log();
    result.restoredFiles = (log.match(/restored log file "[0-9A-F]{24}"/g) ?? []).length;
    result.segPerSec = round(result.restoredFiles / (ms / 1000), 1);
    const redo = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)?.[1];
    result.redoDoneAt = redo;
    if (!redo || lsnSegNo(redo) < segNo(ctx.lastReady)) {
      problem(`recovery ${c.label}: redo ended at ${redo ?? '?'}, before the last archived segment ${ctx.lastReady} (WAL missing or recovery ended early)`);
    }
    result.check = await srv.psql('select (select count(*) from pgbench_history) || \'/\' || (select sum(abalance) from pgbench_accounts)');
  } catch (err) {
    result.error = err.message.split('\n')[0];
    problem(`recovery ${c.label}: ${err.message}`);
  } finally {
    await srv.stop('immediate');
    killStragglersSync();
  }
  const lines = logProblems(srv.log());
  if (lines.length > 0) {
    result.logLines = lines.length;
    problem(`recovery ${c.label}: ${lines.length} log line(s) worth a look, e.g.:\n${lines.slice(0, 8).join('\n')}`);
  }
  removeDir(srv.dir);
  syncDisks();
  say(`   ${c.label}: ${result.seconds !== undefined ? `${result.seconds} s (${result.restoredFiles} files restored), data ${result.check}` : 'FAILED'}`);
  return result;
}

async function benchRecovery(ctx) {
  const list = [
    { key: 'cp', label: 'cp', prepare: () => ({ command: `cp ${ctx.cpArchive}/%f %p` }) },
    {
      key: 'cairn',
      label: 'cairn-wal-get (file repo, default prefetch)',
      prepare: (n) => ({ command: `${WAL_GET} %f %p`, env: { CAIRN_REPO: ctx.cairnRepo, CAIRN_SPOOL_DIR: makeDir(`spool-${n}`) } }),
    },
  ];
  if (!opt.skipPgbr) {
    list.push({
      key: 'pgbr_async',
      label: `pgBackRest archive-get async, process-max=${opt.pgbrProcessMax}, queue ${opt.pgbrGetQueueMax}`,
      prepare: (n, pgdata) => {
        const conf = writePgbrConf(makeDir(`pgbr-${n}`), {
          repo: ctx.pgbrRepo,
          level: opt.level,
          pgdata,
          extra: { 'archive-async': 'y', 'process-max': String(opt.pgbrProcessMax), 'archive-get-queue-max': opt.pgbrGetQueueMax },
        });
        return { command: pgbrCmd(conf, 'archive-get', '%f "%p"') };
      },
    });
  }
  // BENCH_RECOVERY_RUNS rounds, the order reversed every other round; each
  // figure is the median of its rounds (recovery is one run of PostgreSQL's
  // redo, whose speed here drifts by several per cent between runs).
  const all = {};
  for (let round = 0; round < opt.recoveryRuns; round++) {
    const order = round % 2 === 1 ? [...list].reverse() : list;
    say(`3. recovery from a base backup through ${ctx.ready.length}+ archived segments, round ${round + 1} of ${opt.recoveryRuns}: ${order.map((c) => c.key).join(', ')}`);
    for (const c of order) (all[c.key] ??= []).push(await recoverOne(ctx, c));
  }
  const out = mediansOf(all, (r) => r.restoredFiles);
  const checks = new Set(Object.values(all).flat().filter((r) => r.check).map((r) => r.check));
  if (checks.size > 1) problem(`recovery: contenders recovered different data (history rows/sum of balances): ${[...checks].join(' vs ')}`);
  return out;
}

// ---- 4. peak RSS ------------------------------------------------------------------

async function timeV(cmd, args, { env: e = {}, cwd = '/' } = {}) {
  const r = await run(TIME, ['-v', cmd, ...args], { env: e, cwd, allowFail: true });
  const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1]);
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)/.exec(r.stderr)?.[1];
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}):\n${r.stderr.split('\n').filter((l) => !/^\t/.test(l)).join('\n').trim()}`);
  return { rssMB: round(kb / 1024, 1), wall, stdout: r.stdout };
}

async function benchRss(ctx) {
  say('4. peak RSS (/usr/bin/time -v)');
  const dir = makeDir('rss', 'me');
  const out = {};
  const measure = async (key, label, fn) => {
    try {
      const { stdout: _stdout, ...figures } = await fn();
      out[key] = { label, ...figures };
      say(`   ${label}: ${out[key].rssMB} MB`);
    } catch (err) {
      out[key] = { label, error: err.message.split('\n')[0] };
      problem(`rss ${label}: ${err.message}`);
    }
  };
  const seg = ctx.ready[0];
  const other = ctx.ready[1] ?? seg;
  const spool = join(dir, 'spool');
  mkdirSync(spool);

  await measure('push_one', `wal-push one segment, --push-ahead 0, ${Z}`, async () => {
    const repo = join(dir, 'repo-one');
    mkdirSync(repo);
    const e = { CAIRN_REPO: repo, CAIRN_COMPRESS: Z, CAIRN_SPOOL_DIR: spool };
    await run(WAL_PUSH, [`pg_wal/${other}`, other, '--push-ahead', '0'], { env: e, cwd: ctx.snapshot });
    return timeV(WAL_PUSH, [`pg_wal/${seg}`, seg, '--push-ahead', '0'], { env: e, cwd: ctx.snapshot });
  });
  const aheadRepo = join(dir, 'repo-ahead');
  mkdirSync(aheadRepo);
  const d = ctx.env.walPushDefaults;
  await measure('push_ahead', `wal-push's push-ahead worker over the backlog, concurrency ${d.concurrency ?? '(default)'}, ${ctx.ready.length} .ready, ${Z}`, async () => {
    // The worker is detached from PostgreSQL's call: run its entry directly.
    const pushWorker = join(ROOT, 'tools', 'wal-push', 'bundle', 'push-worker-main.js');
    const pushSpool = join(dir, 'push-worker-spool');
    mkdirSync(pushSpool);
    const level = Number(Z.split(':')[1] ?? 1);
    const job = {
      cluster: 'main', compress: { alg: 'zstd', level }, pgdata: ctx.snapshot, systemId: undefined, registerSystem: true,
      concurrency: d.concurrency ?? 4, repos: [aheadRepo], keyFile: undefined, walDir: join(ctx.snapshot, 'pg_wal'), spoolDir: pushSpool, batch: d.pushAhead ?? 32,
    };
    const r = await timeV(NODE, ['--expose-gc', pushWorker], { env: { CAIRN_PUSH_AHEAD_JOB: JSON.stringify(job) } });
    const aheadArchived = readdirSync(pushSpool).filter((f) => f.endsWith('.ok')).length;
    if (aheadArchived === 0) throw new Error('the push-ahead worker archived nothing (its job format may have changed)');
    return { rssMB: r.rssMB, wall: r.wall, aheadArchived };
  });
  const dest = join(dir, 'out');
  mkdirSync(dest);
  await measure('get_one', 'wal-get one segment (prefetch on: main process)', async () => {
    const r = await timeV(WAL_GET, [seg, join(dest, 'RECOVERYXLOG')], { env: { CAIRN_REPO: aheadRepo, CAIRN_SPOOL_DIR: spool }, cwd: ctx.snapshot });
    await sleep(3000); // let the detached prefetch worker finish before it is cleaned up
    return r;
  });
  killStragglersSync();
  await measure('get_noprefetch', 'wal-get one segment, --prefetch 0', () =>
    timeV(WAL_GET, [seg, join(dest, 'RECOVERYXLOG2'), '--prefetch', '0'], { env: { CAIRN_REPO: aheadRepo, CAIRN_SPOOL_DIR: spool }, cwd: ctx.snapshot }),
  );
  // The worker cairn-wal-get starts: the bundled one if the tool is bundled.
  const worker = [join(ROOT, 'tools', 'wal-get', 'bundle', 'prefetch-main.js'), join(ROOT, 'tools', 'wal-get', 'dist', 'prefetch-main.js')].find((f) => existsSync(f));
  const systems = join(aheadRepo, 'main', 'systems');
  const g = ctx.env.walGetDefaults;
  if (worker && existsSync(systems)) {
    // The worker cairn-wal-get detaches; run in the foreground with the job it would get.
    await measure('get_prefetch_worker', `wal-get prefetch worker (${g.prefetch ?? 8} segments, concurrency ${g.prefetchConcurrency ?? 2})`, async () => {
      const systemId = readdirSync(systems)[0].replace(/\.json$/, '');
      const workerSpool = join(dir, 'prefetch-spool');
      mkdirSync(workerSpool);
      const job = { repos: [aheadRepo], cluster: 'main', systemId, segmentSize: SEG_SIZE, count: g.prefetch ?? 8, concurrency: g.prefetchConcurrency ?? 4, spoolDir: workerSpool };
      // The worker starts from the segment PostgreSQL last asked for, fills its
      // window, and exits (emptying the spool) once nobody takes anything.
      writeFileSync(join(workerSpool, 'want'), seg);
      const r = await timeV(NODE, [worker], { env: { CAIRN_PREFETCH_JOB: JSON.stringify(job) } });
      return { ...r };
    });
  }
  removeDir(dir);
  return out;
}

// ---- report ---------------------------------------------------------------------

function report(res) {
  const L = [];
  const v = res.env;
  L.push('');
  L.push(`cairn bench ${res.date} — ${v.cairn}${v.commit ? ` @ ${v.commit}` : ''}; Node ${v.node}; ${v.postgres}${v.pgbackrest ? `; ${v.pgbackrest}` : ''}; ${v.cpus} CPUs, ${v.memGB} GB`);
  if (res.wal) L.push(`WAL: ${res.wal.segments} segments of pgbench WAL (scale ${opt.scale}, ${res.wal.loadSeconds} s of load), compression ${Z}`);
  if (res.latency) {
    const l = res.latency;
    L.push('');
    L.push(`1. wal-push latency, one 16 MiB segment (${opt.runs} runs each)`);
    const rows = [['', 'median', 'p90', 'min']];
    for (const r of Object.values(l)) rows.push([r.label, `${r.median} ms`, `${r.p90} ms`, `${r.min} ms`]);
    for (const r of Object.values(l)) if (r.firstPushIntoEmptyRepo) rows.push([`  first push into an empty repo (${r.label.replace('cairn-wal-push ', '')})`, `${r.firstPushIntoEmptyRepo.median} ms`, `${r.firstPushIntoEmptyRepo.p90} ms`, `${r.firstPushIntoEmptyRepo.min} ms`]);
    L.push(table(rows));
  }
  if (res.latencyGet) {
    L.push('');
    L.push(`1b. wal-get (restore_command) latency, one 16 MiB segment (${opt.runs} runs each)`);
    const rows = [['', 'median', 'p90', 'min']];
    for (const r of Object.values(res.latencyGet)) rows.push([r.label, `${r.median} ms`, `${r.p90} ms`, `${r.min} ms`]);
    L.push(table(rows));
  }
  if (res.drain) {
    L.push('');
    L.push(`2. draining ${res.wal.segments} .ready segments (time from pg_ctl start until pg_stat_archiver reaches the last one)`);
    const rows = [['', 'time', 'seg/s', 'stored', 'failures']];
    for (const r of Object.values(res.drain)) {
      rows.push([r.label, r.seconds !== undefined ? `${r.seconds} s` : `FAILED ${r.progress ?? ''}`, r.segPerSec ?? '—', r.storedMB !== undefined ? `${r.storedMB} MB` : '—', r.failedCount ?? '—']);
    }
    L.push(table(rows));
    const cairn = res.drain.cairn_file?.segPerSec;
    const pgbr = res.drain.pgbr_async?.segPerSec;
    // Issue 16: at least 1.25× pgBackRest async's segments/s on the same backlog.
    if (cairn !== undefined && pgbr !== undefined) {
      const ratio = round(cairn / pgbr, 2);
      L.push(`  target: cairn (file) ≥ 1.25× pgBackRest async: ${cairn} vs ${pgbr} seg/s = ${ratio}× → ${ratio >= 1.25 ? 'MET' : 'NOT MET'}`);
    }
  }
  if (res.recovery) {
    L.push('');
    L.push('3. recovery from a base backup taken before the load (time from pg_ctl start until pg_is_in_recovery() is false)');
    const rows = [['', 'time', 'files', 'seg/s', 'redo done at', 'data check']];
    for (const r of Object.values(res.recovery)) {
      rows.push([r.label, r.seconds !== undefined ? `${r.seconds} s` : 'FAILED', r.restoredFiles ?? '—', r.segPerSec ?? '—', r.redoDoneAt ?? '—', r.check ?? '—']);
    }
    L.push(table(rows));
    // Issue 16: replay through cairn-wal-get stays at least as fast as pgBackRest async archive-get and as cp.
    const cairn = res.recovery.cairn?.seconds;
    for (const [key, name] of [['pgbr_async', 'pgBackRest async'], ['cp', 'cp']]) {
      const other = res.recovery[key]?.seconds;
      if (cairn !== undefined && other !== undefined) L.push(`  target: cairn at least as fast as ${name}: ${cairn} vs ${other} s → ${cairn <= other ? 'MET' : 'NOT MET'}`);
    }
  }
  if (res.rss) {
    L.push('');
    L.push('4. peak RSS (Maximum resident set size, /usr/bin/time -v)');
    const rows = [['', 'RSS', 'wall']];
    for (const r of Object.values(res.rss)) rows.push([r.label, r.rssMB !== undefined ? `${r.rssMB} MB` : 'FAILED', r.wall ?? '—']);
    L.push(table(rows));
    const max = Math.max(...Object.values(res.rss).filter((r) => r.rssMB !== undefined).map((r) => r.rssMB));
    if (Number.isFinite(max)) L.push(`  target ≤ 150 MB: max ${max} MB → ${max <= 150 ? 'MET' : 'NOT MET'}`);
  }
  L.push(...reportTail(res));
  return L.join('\n');
}

// ---- main -----------------------------------------------------------------------

async function main() {
  installCleanupHooks();
  const date = new Date();
  const res = { date: date.toISOString(), options: { ...opt, phases: [...opt.phases] }, problems };
  await prerequisites();
  res.env = await versions();
  say(`temp dir ${tempBase()}; options: segments=${opt.segments} scale=${opt.scale} runs=${opt.runs} ${Z} phases=${[...opt.phases]}${opt.skipPgbr ? ' no-pgbackrest' : ''}${opt.skipS3 ? ' no-s3' : ''}`);
  const ctx = { env: res.env };
  try {
    if (!opt.skipS3 && (opt.phases.has('latency') || opt.phases.has('drain'))) await startS3(ctx);
    await prepareWal(ctx);
    res.wal = { segments: ctx.ready.length, first: ctx.ready[0], last: ctx.lastReady, loadSeconds: ctx.loadSeconds };
    if (opt.phases.has('latency')) {
      res.latency = await benchLatency(ctx);
      res.latencyGet = await benchGetLatency(ctx);
    }
    if (opt.phases.has('drain') || opt.phases.has('recovery')) res.drain = await benchDrain(ctx);
    if (opt.phases.has('recovery')) res.recovery = await benchRecovery(ctx);
    if (opt.phases.has('rss')) res.rss = await benchRss(ctx);
  } finally {
    await ctx.s3?.stop().catch(() => {});
    say('cleaning up');
    cleanupSync();
  }
  res.totalSeconds = round((performance.now() - T0) / 1000, 0);
  process.stdout.write(report(res) + '\n');
  const json = JSON.stringify(res);
  process.stdout.write(json + '\n');
  mkdirSync(opt.outDir, { recursive: true });
  const file = join(opt.outDir, `${date.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
  writeFileSync(file, json + '\n');
  say(`results written to ${file}`);
}

// BENCH_ONLY=wal|backup|dump|verify|drill|remote|fanout|copy|copy-files|files runs one
// part alone (default: all, this WAL part first); the others are backup.mjs,
// dump.mjs, verify.mjs, drill.mjs, remote.mjs, fanout.mjs, copy.mjs,
// copy-files.mjs and files.mjs, each in its own process.
const only = env.BENCH_ONLY || 'all';
const PARTS = ['wal', 'backup', 'dump', 'verify', 'drill', 'remote', 'fanout', 'copy', 'copy-files', 'files'];
if (only !== 'all' && !PARTS.includes(only)) throw new Error(`BENCH_ONLY=${only}: use ${PARTS.join(', ')} (or leave it unset for all)`);
(only === 'all' || only === 'wal' ? main() : Promise.resolve()).catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
}).then(() => {
  for (const part of PARTS.slice(1)) {
    if (only !== 'all' && only !== part) continue;
    if (spawnSync(NODE, [join(dirname(fileURLToPath(import.meta.url)), `${part}.mjs`)], { stdio: 'inherit' }).status !== 0) process.exitCode = 1;
  }
});
