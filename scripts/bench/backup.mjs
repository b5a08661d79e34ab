#!/usr/bin/env node
// `BENCH_ONLY=backup npm run bench` (or `scripts/node scripts/bench/backup.mjs`):
// full backup, restore and incremental backup of a whole cluster with
// cairn-basebackup / cairn-restore beside pgBackRest (same zstd level, same
// parallelism) and `tar | zstd` for reference, on pgbench data and on a less
// compressible table of about the same size, in one run on one cluster with
// warm caches; plus the peak RSS of cairn's tools at two scales. See README.md.

import { existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Server } from './lib/cluster.mjs';
import { aptInstall, checkBuiltAndPostgres, flag, gitCommit, hostVersions, int, problem, problems, ROOT, say, TIME, toolBin, finishBench, runGuarded } from './lib/common.mjs';
import { ensurePgbackrest, PGBACKREST, STANZA, writePgbrConf } from './lib/pgbackrest.mjs';
import { duBytes, installCleanupHooks, killProcessesNaming, makeDir, PG_BIN, removeDir, run, shellQuote, sleep, syncDisks, tempBase } from './lib/proc.mjs';
import { median, mb, reportTail, round, table } from './lib/stats.mjs';

const BASEBACKUP = toolBin('cairn-basebackup');
const RESTORE = toolBin('cairn-restore');
const WAL_PUSH = toolBin('cairn-wal-push');

// ---- options ---------------------------------------------------------------

const env = process.env;
const opt = {
  scale: Math.max(1, int('BENCH_SCALE', 100)),
  rssScale: int('BENCH_RSS_SCALE', 10),
  runs: Math.max(1, int('BENCH_BACKUP_RUNS', 5)),
  level: int('BENCH_COMPRESS_LEVEL', 1),
  jobs: Math.max(1, int('BENCH_JOBS', 2)),
  skipRandom: flag('BENCH_SKIP_RANDOM'),
  randomMB: int('BENCH_RANDOM_MB', 0),
  skipPgbr: flag('BENCH_SKIP_PGBACKREST'),
  skipIncr: flag('BENCH_SKIP_INCR'),
  // Issue 19: a data set of this many small tables (about 4 files each), after the others (0: none).
  tables: int('BENCH_TABLES', 0),
  // pgBackRest's block incremental (2.45 beta: bundle + block), as issue 17 compares; BENCH_PGBR_BLOCK=0 for its defaults.
  pgbrBlock: env.BENCH_PGBR_BLOCK !== '0',
  verify: !flag('BENCH_SKIP_VERIFY'),
  debug: !flag('BENCH_NO_DEBUG_LOG'),
  timeoutS: int('BENCH_TIMEOUT_S', 600),
  outDir: env.BENCH_OUT || join(ROOT, 'bench-results'),
};
const Z = `zstd:${opt.level}`;
/** Issue 16: full backup and restore in at most this share of pgBackRest's time. */
const TIME_TARGET = 0.8;

// ---- prerequisites ---------------------------------------------------------

async function prerequisites() {
  await checkBuiltAndPostgres([BASEBACKUP, RESTORE, WAL_PUSH]);
  if (!existsSync(TIME)) await aptInstall('time');
  if (!existsSync('/usr/bin/zstd')) await aptInstall('zstd');
  if (!opt.skipPgbr && !(await ensurePgbackrest())) opt.skipPgbr = true;
}

async function versions() {
  const v = await hostVersions();
  v.cairn = (await run(BASEBACKUP, ['--version'])).stdout.trim();
  if (!opt.skipPgbr) v.pgbackrest = (await run(PGBACKREST, ['version'], { allowFail: true })).stdout.trim();
  v.zstd = (await run('zstd', ['--version'], { allowFail: true })).stdout.trim().split('\n')[0];
  v.commit = gitCommit();
  return v;
}

// ---- helpers ---------------------------------------------------------------

const tail = (s, n = 15) => s.trimEnd().split('\n').slice(-n).join('\n');

let timeSeq = 0;
const loads = [];
/**
 * Runs cmd as the pg user under /usr/bin/time and returns wall seconds (our
 * own clock, spawn to exit), peak RSS (MB, the largest process of the tree
 * that was waited for) and user+sys CPU seconds.
 */
async function timed(cmd, args, { env: e = {}, shell = false } = {}) {
  const dir = timed.dir ??= makeDir('time');
  const out = join(dir, `t${++timeSeq}`);
  const argv = shell ? ['sh', '-c', args] : [cmd, ...args];
  const load = round(loadavg()[0], 2);
  loads.push(load);
  const r = await run(TIME, ['-o', out, '-f', '%M %U %S', ...argv], { asPg: true, env: e, allowFail: true, timeoutMs: opt.timeoutS * 1000 });
  let rssMB;
  let cpuS;
  try {
    const last = readFileSync(out, 'utf8').trim().split('\n').pop();
    const [kb, u, s] = last.split(' ').map(Number);
    rssMB = round(kb / 1024, 1);
    cpuS = round(u + s, 2);
  } catch {
    // time did not get to write it
  }
  const shown = shell ? args : [cmd, ...args].map(shellQuote).join(' ');
  return { seconds: round(r.ms / 1000, 2), rssMB, cpuS, load, code: r.code, stdout: r.stdout, stderr: r.stderr, shown };
}

function failure(what, r) {
  return `${what} failed (exit ${r.code}): ${r.shown}\n${tail(r.stderr || r.stdout)}`;
}

// ---- the cluster and the contenders ----------------------------------------

/** pgBackRest's config: its own repo, zstd at our level, process-max = jobs, start-fast. */
function writeBackupPgbrConf(dir, { repo, server }) {
  return writePgbrConf(dir, {
    repo,
    level: opt.level,
    server,
    extra: {
      'repo1-retention-full': '9999',
      'process-max': String(opt.jobs),
      'start-fast': 'y',
      ...(opt.pgbrBlock ? { beta: 'y', 'repo1-bundle': 'y', 'repo1-block': 'y' } : {}),
      // info on the console, with timestamps: the phases of a backup.
      'log-level-console': 'info',
    },
  });
}

class Bench {
  async setup() {
    this.cairnRepo = makeDir('repo-cairn');
    this.pgbrRepo = opt.skipPgbr ? undefined : makeDir('repo-pgbackrest');
    const srv = new Server('source', { env: { CAIRN_REPO: this.cairnRepo, CAIRN_COMPRESS: Z, CAIRN_SPOOL_DIR: makeDir('spool-source') } });
    this.srv = srv;
    await srv.initdb();
    await srv.configure();
    if (!opt.skipPgbr) this.pgbrConf = writeBackupPgbrConf(makeDir('pgbr'), { repo: this.pgbrRepo, server: srv });
    srv.setConf({
      archive_mode: 'on',
      archive_command: this.archiveCommand('cairn'),
      wal_level: 'replica',
      fsync: 'on',
      shared_buffers: '256MB',
      max_wal_size: '8GB',
      min_wal_size: '256MB',
      checkpoint_timeout: '30min',
      autovacuum: 'off', // nothing changes the files between contenders
      // The many-tables check reads every table in one statement: a lock on each and on its index (issue 19).
      ...(opt.tables > 0 ? { max_locks_per_transaction: String(Math.max(64, Math.ceil((opt.tables * 3) / 100))) } : {}),
      log_min_messages: 'warning',
      log_checkpoints: 'off',
    });
    this.order = 'cairn';
    await srv.start();
    if (!opt.skipPgbr) await run(PGBACKREST, [`--config=${this.pgbrConf}`, `--stanza=${STANZA}`, 'stanza-create'], { asPg: true });
  }

  pgbrArgs(...rest) {
    return [`--config=${this.pgbrConf}`, `--stanza=${STANZA}`, ...rest];
  }

  /**
   * Both archives get every segment; the tool being timed goes first, so
   * the backup's wait for its last segment never includes the other's push.
   */
  archiveCommand(first) {
    const cairn = `${WAL_PUSH} %p %f`;
    if (opt.skipPgbr) return cairn;
    const pgbr = [PGBACKREST, ...this.pgbrArgs('archive-push', '%p')].join(' ');
    return first === 'cairn' ? `${cairn} && ${pgbr}` : `${pgbr} && ${cairn}`;
  }

  async archiveFirst(tool) {
    if (opt.skipPgbr || this.order === tool) return;
    this.srv.setConf({ archive_command: this.archiveCommand(tool) });
    await this.srv.reload();
    this.order = tool;
    await sleep(300);
  }

  /** Untimed: flush dirty buffers and let the archiver catch up, so no contender pays for the last one. */
  async quiesce() {
    await this.srv.psql('checkpoint');
    const dir = join(this.srv.pgdata, 'pg_wal', 'archive_status');
    const t0 = performance.now();
    for (;;) {
      const ready = execFileSync('ls', [dir], { encoding: 'utf8' }).split('\n').filter((f) => f.endsWith('.ready'));
      if (ready.length === 0) break;
      if (performance.now() - t0 > opt.timeoutS * 1000) throw new Error(`the archiver did not catch up in ${opt.timeoutS} s (${ready.length} .ready)\n${this.srv.logTail(20)}`);
      await sleep(100);
    }
    syncDisks();
  }

  // ---- cairn ----

  async cairnBackup(type) {
    await this.archiveFirst('cairn');
    const args = ['--pgdata', this.srv.pgdata, '--repo', this.cairnRepo, '--compress', Z, '--type', type, '--jobs', String(opt.jobs), '--json'];
    if (opt.debug) args.push('--log-level', 'debug');
    const r = await timed(BASEBACKUP, args, { env: this.srv.clientEnv() });
    if (r.code !== 0) throw new Error(failure('cairn-basebackup', r));
    const s = JSON.parse(r.stdout.trim().split('\n').pop());
    const dir = join(this.cairnRepo, 'main', 'backups', s.id);
    const summary = r.stderr.split('\n').find((l) => l.startsWith('cairn-basebackup: ') && / in [\d.]+ s /.test(l));
    // --log-level debug: "... after N ms" since the start of the run.
    const at = (re) => Number(re.exec(r.stderr)?.[1]) / 1000;
    const phases = {
      started: at(/backup started at \S+ after (\d+) ms/),
      copied: at(/files copied after (\d+) ms/),
      stopped: at(/backup stopped at \S+ after (\d+) ms/),
      walInRepo: at(/is in the repository after (\d+) ms/),
      total: s.durationSeconds,
    };
    return {
      tool: 'cairn', id: s.id, type: s.type, seconds: r.seconds, rssMB: r.rssMB, cpuS: r.cpuS, size: s.totals.size, stored: duBytes(dir),
      load: r.load, storedManifest: s.totals.storedSize, filesStored: s.totals.filesStored, filesReferenced: s.totals.filesReferenced, phases, summary,
      command: r.shown,
    };
  }

  async cairnRestore(id, dest, { delta = false } = {}) {
    const args = ['--pgdata', dest, '--repo', this.cairnRepo, '--target', 'immediate', '--set', id, '--jobs', String(opt.jobs), '--json', ...(delta ? ['--delta'] : [])];
    const r = await timed(RESTORE, args);
    if (r.code !== 0) throw new Error(failure('cairn-restore', r));
    const j = JSON.parse(r.stdout.trim().split('\n').pop());
    return { tool: 'cairn', seconds: r.seconds, rssMB: r.rssMB, cpuS: r.cpuS, load: r.load, bytesWritten: j.bytesWritten, ownSeconds: j.seconds, filesFetched: j.filesFetched, command: r.shown };
  }

  // ---- pgBackRest ----

  async pgbrInfo() {
    const r = await run(PGBACKREST, this.pgbrArgs('info', '--output=json'), { asPg: true });
    return JSON.parse(r.stdout)[0].backup;
  }

  async pgbrBackup(type) {
    await this.archiveFirst('pgbr');
    const r = await timed(PGBACKREST, this.pgbrArgs('backup', `--type=${type}`));
    if (r.code !== 0) throw new Error(failure('pgbackrest backup', r));
    const b = (await this.pgbrInfo()).pop();
    const dir = join(this.pgbrRepo, 'backup', STANZA, b.label);
    // Console lines "YYYY-MM-DD HH:MM:SS.mmm P00   INFO: ...": seconds since the first.
    const lines = r.stdout.split('\n');
    const ts = (l) => Date.parse(l.slice(0, 23).replace(' ', 'T') + 'Z');
    const t0 = ts(lines[0]);
    const at = (re) => {
      const l = lines.find((x) => re.test(x));
      return l ? round((ts(l) - t0) / 1000, 2) : undefined;
    };
    const phases = {
      started: at(/backup start archive =/),
      copied: at(/execute non-exclusive backup stop/),
      stopped: at(/backup stop archive =/),
      walInRepo: at(/new backup label =/),
      total: at(/backup command end/),
    };
    return {
      tool: 'pgbr', id: b.label, type: b.type, seconds: r.seconds, rssMB: r.rssMB, cpuS: r.cpuS, size: b.info.size, stored: duBytes(dir),
      load: r.load, storedInfo: b.info.repository.delta, phases, summary: lines.find((l) => /backup size =/.test(l))?.replace(/^.*INFO: /, ''), command: r.shown,
    };
  }

  async pgbrRestore(label, dest, { delta = false } = {}) {
    const r = await timed(PGBACKREST, this.pgbrArgs('restore', `--pg1-path=${dest}`, '--type=immediate', `--set=${label}`, '--log-level-console=warn', ...(delta ? ['--delta'] : [])));
    if (r.code !== 0) throw new Error(failure('pgbackrest restore', r));
    return { tool: 'pgbr', seconds: r.seconds, rssMB: r.rssMB, cpuS: r.cpuS, load: r.load, command: r.shown };
  }

  // ---- tar | zstd ----

  async tarZstd() {
    const cmd = `tar -cf - -C ${shellQuote(this.srv.pgdata)} --exclude=./pg_wal . | zstd -${opt.level} -T${opt.jobs} -q -c | wc -c`;
    const r = await timed(null, cmd, { shell: true });
    // tar exits 1 for "file changed as we read it" on a live data dir; the pipeline's status is wc's.
    if (r.code !== 0) throw new Error(failure('tar | zstd', r));
    return { tool: 'tar', seconds: r.seconds, cpuS: r.cpuS, load: r.load, stored: Number(r.stdout.trim()), command: cmd };
  }

  async verifyRestore(label, dest, check, expected) {
    const name = `verify-${label}`;
    const v = new Server(name, { pgdata: dest });
    try {
      await v.configure({ archive_mode: 'off', log_min_messages: 'warning', hot_standby: 'on' });
      await v.start({ timeoutSec: opt.timeoutS });
      const got = await v.psql(check);
      if (got !== expected) problem(`${label}: the restored data differ: ${got} (source: ${expected})`);
      return got === expected;
    } catch (err) {
      problem(`${label}: the restored data dir did not start or answer: ${err.message}`);
      return false;
    } finally {
      await v.stop('immediate');
      killProcessesNaming(dest); // e.g. cairn-wal-get's detached prefetch worker
      removeDir(v.dir);
    }
  }
}

// ---- data sets -----------------------------------------------------------------

const PGBENCH_CHECK = "select count(*) || '/' || sum(abalance) from pgbench_accounts";
const RND_CHECK = "select count(*) || '/' || sum(hashtext(t || b::text)::bigint) from rnd";
// 64 hex chars (compresses about 2:1) and 64 random bytes (does not compress) per row.
const RND_ROW = "md5(random()::text) || md5(random()::text), uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())";

// Issue 19: the table list and a checksum of every table's rows, in one value.
const TABLES_CHECK = "select count(*) || '/' || md5(string_agg(c.relname || ':' || (xpath('/row/h/text()', query_to_xml(format('select md5(string_agg(x::text, '','' order by x::text)) as h from %I x', c.relname), false, true, '')))[1]::text, ',' order by c.relname)) from pg_class c where c.relkind = 'r' and c.relname like 'tt\\_%'";

/** `n` small tables (20 rows, a primary key), vacuumed (visibility and free space maps): about 4 files each. */
async function loadTables(b, n) {
  say(`${n} tables`);
  const t0 = performance.now();
  // Batches of 500: one transaction locks every table it creates (max_locks_per_transaction).
  for (let off = 0; off < n; off += 500) {
    const to = Math.min(n, off + 500);
    await b.srv.psql(`do $$ begin for i in ${off + 1}..${to} loop execute format('create table tt_%s (id int primary key, v text); insert into tt_%s select g, md5(g::text) from generate_series(1, 20) g', i, i); end loop; end $$`);
  }
  await b.srv.psql('vacuum');
  return round((performance.now() - t0) / 1000, 0);
}

async function loadPgbench(b, scale) {
  say(`pgbench -i -s ${scale}`);
  const t0 = performance.now();
  await run(join(PG_BIN, 'pgbench'), ['-i', '-s', String(scale), '-q'], { asPg: true, env: b.srv.clientEnv(), timeoutMs: 3600_000 });
  return round((performance.now() - t0) / 1000, 0);
}

async function loadRandom(b, targetBytes) {
  await b.srv.psql('drop table if exists pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, rnd');
  await b.srv.psql('create table rnd (id bigint, t text, b bytea)');
  const t0 = performance.now();
  // A first chunk tells the bytes per row.
  const first = 100_000;
  await b.srv.psql(`insert into rnd select g, ${RND_ROW} from generate_series(1, ${first}) g`);
  const perRow = Number(await b.srv.psql("select pg_relation_size('rnd')")) / first;
  const rows = Math.max(first, Math.round(targetBytes / perRow));
  say(`random data set: ${rows} rows (${perRow.toFixed(0)} bytes per row) ≈ ${mb(rows * perRow)} MB`);
  const chunk = 1_000_000;
  let lastSay = performance.now();
  for (let from = first + 1; from <= rows; from += chunk) {
    const to = Math.min(rows, from + chunk - 1);
    await b.srv.psql(`insert into rnd select g, ${RND_ROW} from generate_series(${from}, ${to}) g`);
    if (performance.now() - lastSay > 15_000) {
      say(`  ${to} rows`);
      lastSay = performance.now();
    }
  }
  await b.srv.psql('vacuum (freeze, analyze) rnd');
  return round((performance.now() - t0) / 1000, 0);
}

// ---- one data set --------------------------------------------------------------

/**
 * Full backups (runs × cairn, pgBackRest, tar|zstd, interleaved), restores of
 * each tool's last full, then an incremental after `update` and its restore.
 */
async function benchDataset(b, ds) {
  const out = { name: ds.name, label: ds.label };
  await b.quiesce();
  out.dataBytes = duBytes(b.srv.pgdata, 'pg_wal');
  out.expected = await b.srv.psql(ds.check);
  say(`${ds.label}: ${mb(out.dataBytes)} MB in PGDATA (without pg_wal), check ${out.expected}`);
  // Warm-up, untimed: every file read once (page cache), archiver idle.
  await run('sh', ['-c', `tar -cf - -C ${shellQuote(b.srv.pgdata)} --exclude=./pg_wal . | cat > /dev/null`], { allowFail: true });

  const full = { cairn: [], pgbr: [], tar: [] };
  const contenders = [['cairn', () => b.cairnBackup('full')], ...(opt.skipPgbr ? [] : [['pgbr', () => b.pgbrBackup('full')]]), ['tar', () => b.tarZstd()]];
  for (let i = 0; i < ds.runs; i++) {
    // Alternate who goes first.
    const order = i % 2 === 0 ? contenders : [...contenders.slice(0, -1).reverse(), contenders.at(-1)];
    for (const [k, fn] of order) {
      await b.quiesce();
      try {
        const r = await fn();
        full[k].push(r);
        say(`  full ${i + 1}/${ds.runs} ${k}: ${r.seconds} s, stored ${mb(r.stored)} MB${r.rssMB !== undefined && k === 'cairn' ? `, RSS ${r.rssMB} MB` : ''} (load ${r.load})`);
      } catch (err) {
        problem(`${ds.label}: full backup ${k}: ${err.message}`);
      }
    }
  }
  out.full = full;

  // Restores of each tool's last full, alternating, runs times; the last one of each is started and checked.
  const restore = { cairn: [], pgbr: [] };
  const lastFull = { cairn: full.cairn.at(-1), pgbr: full.pgbr.at(-1) };
  const doRestore = async (k, bk, label, verifyWith) => {
    const dest = makeDir(`restore-${ds.name}-${label}-${k}`);
    await b.quiesce();
    try {
      const r = k === 'cairn' ? await b.cairnRestore(bk.id, dest) : await b.pgbrRestore(bk.id, dest);
      r.restoredBytes = duBytes(dest);
      if (verifyWith !== undefined) r.verified = await b.verifyRestore(`${ds.name}-${label}-${k}`, dest, ds.check, verifyWith);
      say(`  restore ${label} ${k}: ${r.seconds} s${r.rssMB !== undefined && k === 'cairn' ? `, RSS ${r.rssMB} MB` : ''}${r.verified !== undefined ? `, data ${r.verified ? 'OK' : 'DIFFER'}` : ''} (load ${r.load})`);
      return r;
    } catch (err) {
      problem(`${ds.label}: restore ${label} ${k}: ${err.message}`);
      return undefined;
    } finally {
      removeDir(dest);
      syncDisks();
    }
  };
  // The floor under any restore here: the same bytes written durably by dd
  // (O_DIRECT, then fsync), no reading, decoding or checking at all.
  const floor = [];
  const floorRun = async () => {
    const bytes = restore.cairn.at(-1)?.restoredBytes ?? restore.pgbr.at(-1)?.restoredBytes;
    if (!bytes) return;
    const dest = makeDir(`floor-${ds.name}`);
    await b.quiesce();
    try {
      const r = await timed('dd', ['if=/dev/zero', `of=${join(dest, 'floor')}`, 'bs=4M', `count=${Math.ceil(bytes / (4 * 1024 * 1024))}`, 'oflag=direct', 'conv=fsync', 'status=none']);
      if (r.code === 0) floor.push(r.seconds);
    } finally {
      removeDir(dest);
      syncDisks();
    }
  };
  const restorers = ['cairn', ...(opt.skipPgbr ? [] : ['pgbr'])].filter((k) => lastFull[k]);
  for (let i = 0; i < ds.runs; i++) {
    const order = i % 2 === 0 ? restorers : [...restorers].reverse();
    for (const k of order) {
      const last = i === ds.runs - 1;
      const r = await doRestore(k, lastFull[k], 'full', last && opt.verify && ds.verify ? out.expected : undefined);
      if (r) restore[k].push(r);
    }
    await floorRun();
  }
  if (floor.length) say(`  write floor (dd, same bytes, O_DIRECT + fsync): ${floor.join(' / ')} s`);
  out.restore = restore;
  out.restoreFloor = floor;

  if (ds.incr && !opt.skipIncr) {
    say(`  ${ds.updateLabel}`);
    if (typeof ds.update === 'function') await ds.update(b);
    else await b.srv.psql(ds.update);
    await b.quiesce();
    out.expectedAfterUpdate = await b.srv.psql(ds.check);
    const incr = {};
    for (const [k, fn] of [['cairn', () => b.cairnBackup('incr')], ...(opt.skipPgbr ? [] : [['pgbr', () => b.pgbrBackup('incr')]])]) {
      await b.quiesce();
      try {
        incr[k] = await fn();
        say(`  incr ${k}: ${incr[k].seconds} s, stored ${mb(incr[k].stored)} MB (load ${incr[k].load})`);
      } catch (err) {
        problem(`${ds.label}: incremental backup ${k}: ${err.message}`);
      }
    }
    out.incr = incr;
    out.incrRestore = {};
    for (const k of Object.keys(incr)) {
      const r = await doRestore(k, incr[k], 'incr', opt.verify && ds.verify ? out.expectedAfterUpdate : undefined);
      if (r) out.incrRestore[k] = r;
    }
    // Delta restore (issue 17): each tool's full restored first (untimed),
    // then its incremental with --delta over it (timed).
    out.deltaRestore = {};
    for (const k of Object.keys(incr)) {
      if (!lastFull[k]) continue;
      const dest = makeDir(`restore-${ds.name}-delta-${k}`);
      try {
        await b.quiesce();
        await (k === 'cairn' ? b.cairnRestore(lastFull[k].id, dest) : b.pgbrRestore(lastFull[k].id, dest));
        syncDisks();
        await b.quiesce();
        const r = await (k === 'cairn' ? b.cairnRestore(incr[k].id, dest, { delta: true }) : b.pgbrRestore(incr[k].id, dest, { delta: true }));
        out.deltaRestore[k] = r;
        say(`  delta restore full → incr ${k}: ${r.seconds} s${r.bytesWritten !== undefined ? `, ${mb(r.bytesWritten)} MB written` : ''} (load ${r.load})`);
      } catch (err) {
        problem(`${ds.label}: delta restore ${k}: ${err.message}`);
      } finally {
        removeDir(dest);
        syncDisks();
      }
    }
  }
  return out;
}

// ---- report ---------------------------------------------------------------------

function medianOf(rs, f) {
  const xs = rs.map(f).filter((x) => x !== undefined && !Number.isNaN(x));
  return xs.length ? median(xs) : undefined;
}

function summarizeDataset(d) {
  const s = { full: {}, restore: {} };
  for (const [k, rs] of Object.entries(d.full)) {
    if (!rs.length) continue;
    const secs = medianOf(rs, (r) => r.seconds);
    s.full[k] = {
      seconds: round(secs, 2), runs: rs.map((r) => r.seconds), mbps: round(d.dataBytes / 1e6 / secs, 0), storedMB: mb(rs.at(-1).stored),
      ratio: round(d.dataBytes / rs.at(-1).stored, 2), cpuS: round(medianOf(rs, (r) => r.cpuS), 1), rssMB: round(Math.max(...rs.map((r) => r.rssMB ?? 0)), 0) || undefined,
    };
    if (rs[0].phases) {
      const ph = {};
      for (const p of Object.keys(rs[0].phases)) ph[p] = round(medianOf(rs, (r) => r.phases[p]), 2);
      s.full[k].phases = ph;
    }
  }
  for (const [k, rs] of Object.entries(d.restore)) {
    if (!rs.length) continue;
    const secs = medianOf(rs, (r) => r.seconds);
    s.restore[k] = { seconds: round(secs, 2), runs: rs.map((r) => r.seconds), mbps: round(d.dataBytes / 1e6 / secs, 0), cpuS: round(medianOf(rs, (r) => r.cpuS), 1), rssMB: round(Math.max(...rs.map((r) => r.rssMB ?? 0)), 0) || undefined, verified: rs.at(-1).verified, restoredBytes: rs.at(-1).restoredBytes };
  }
  return s;
}

const NAMES = { cairn: 'cairn', pgbr: 'pgBackRest', tar: 'tar | zstd (reference)' };
const fmtS = (x) => (x === undefined ? '—' : `${x} s`);
const fmtPhases = (p) => {
  if (!p) return '';
  const d = (a, b) => (a !== undefined && b !== undefined ? round(b - a, 2) : '?');
  return `start ${round(p.started, 2) ?? '?'} s, copy ${d(p.started, p.copied)} s, stop ${d(p.copied, p.stopped)} s, WAL wait ${d(p.stopped, p.walInRepo)} s, finish ${d(p.walInRepo, p.total)} s`;
};

function report(res) {
  const L = [];
  const v = res.env;
  L.push('');
  L.push(`cairn backup bench ${res.date} — ${v.cairn}${v.commit ? ` @ ${v.commit}` : ''}; Node ${v.node}; ${v.postgres}${v.pgbackrest ? `; ${v.pgbackrest}` : ''}; ${v.cpus} CPUs, ${v.memGB} GB`);
  if (res.loadAverage) L.push(`1-min load average before the timed commands: median ${res.loadAverage.median}, max ${res.loadAverage.max}`);
  L.push(`${Z} for every tool; cairn --jobs ${opt.jobs}, pgBackRest process-max=${opt.jobs} start-fast=y${opt.pgbrBlock ? ' beta=y repo1-bundle=y repo1-block=y' : ''}, tar | zstd -${opt.level} -T${opt.jobs}; median of ${opt.runs} run(s); MB/s = data in PGDATA (without pg_wal) / wall time`);
  for (const d of res.datasets) {
    const s = d.summary;
    L.push('');
    L.push(`${d.label}: ${mb(d.dataBytes)} MB`);
    const rows = [['full backup', 'time', 'MB/s', 'stored', 'ratio', 'CPU', 'peak RSS', 'runs']];
    for (const [k, x] of Object.entries(s.full)) rows.push([NAMES[k], fmtS(x.seconds), x.mbps, `${x.storedMB} MB`, `${x.ratio}x`, fmtS(x.cpuS), x.rssMB ? `${x.rssMB} MB` : '—', x.runs.join(' / ')]);
    L.push(table(rows));
    if (s.full.cairn && s.full.pgbr) {
      const ratio = round(s.full.cairn.seconds / s.full.pgbr.seconds, 2);
      const met = ratio <= TIME_TARGET && s.full.cairn.storedMB <= s.full.pgbr.storedMB;
      L.push(`  target (issue 16): ≤ ${TIME_TARGET}× pgBackRest's time at ≤ its stored size: ${s.full.cairn.seconds} vs ${s.full.pgbr.seconds} s = ${ratio}×, ${s.full.cairn.storedMB} vs ${s.full.pgbr.storedMB} MB → ${met ? 'MET' : 'NOT MET'}`);
    }
    for (const k of ['cairn', 'pgbr']) if (s.full[k]?.phases) L.push(`  ${NAMES[k]} phases (median, s from its start): ${fmtPhases(s.full[k].phases)}`);
    if (Object.keys(s.restore).length) {
      const rr = [['restore (full)', 'time', 'MB/s', 'CPU', 'peak RSS', 'data check', 'runs']];
      for (const [k, x] of Object.entries(s.restore)) rr.push([NAMES[k], fmtS(x.seconds), x.mbps, fmtS(x.cpuS), x.rssMB ? `${x.rssMB} MB` : '—', x.verified === undefined ? '—' : x.verified ? 'OK' : 'DIFFER', x.runs.join(' / ')]);
      L.push(table(rr));
      if (s.restore.cairn && s.restore.pgbr) {
        const ratio = round(s.restore.cairn.seconds / s.restore.pgbr.seconds, 2);
        L.push(`  target (issue 16): restore ≤ ${TIME_TARGET}× pgBackRest's time: ${s.restore.cairn.seconds} vs ${s.restore.pgbr.seconds} s = ${ratio}× → ${ratio <= TIME_TARGET ? 'MET' : 'NOT MET'}`);
        if (d.restoreFloor?.length) {
          const fl = round(median(d.restoreFloor), 2);
          const goal = round(s.restore.pgbr.seconds * TIME_TARGET, 2);
          L.push(`  floor: the same ${mb(d.summary.restore.cairn.restoredBytes ?? 0)} MB written durably by dd (O_DIRECT + fsync, nothing read or checked) took ${fl} s here (median of ${d.restoreFloor.length}); the target is ${goal} s = ${round(goal / fl, 2)}× that floor, cairn took ${round(s.restore.cairn.seconds / fl, 2)}× it, pgBackRest ${round(s.restore.pgbr.seconds / fl, 2)}×`);
        }
      }
    }
    if (d.incr && Object.keys(d.incr).length) {
      L.push(`  after: ${d.updateLabel}`);
      const ir = [['incremental', 'time', 'stored', 'files stored', 'restore (full+incr)', 'data check']];
      for (const [k, x] of Object.entries(d.incr)) {
        const rr = d.incrRestore?.[k];
        ir.push([NAMES[k], fmtS(x.seconds), `${mb(x.stored)} MB`, x.filesStored ?? '—', rr ? fmtS(rr.seconds) : '—', rr?.verified === undefined ? '—' : rr.verified ? 'OK' : 'DIFFER']);
      }
      L.push(table(ir));
      for (const k of ['cairn', 'pgbr']) if (d.incr[k]?.phases) L.push(`  ${NAMES[k]} incr phases (s from its start): ${fmtPhases(d.incr[k].phases)}`);
      if (d.incr.cairn && d.incr.pgbr) {
        const c = d.incr.cairn;
        const p = d.incr.pgbr;
        // Issue 17: at most half of pgBackRest's block incremental on random data, no more on pgbench; no slower.
        const share = d.name === 'random' ? 0.5 : 1;
        const met = c.seconds <= p.seconds && c.stored <= p.stored * share;
        L.push(`  target (issue 17): incr no slower than pgBackRest${opt.pgbrBlock ? ' (block incremental)' : ''} at ≤ ${share === 1 ? 'its' : 'half its'} stored bytes: ${c.seconds} vs ${p.seconds} s, ${mb(c.stored)} vs ${mb(p.stored)} MB (${round(c.stored / p.stored, 2)}×) → ${met ? 'MET' : 'NOT MET'}`);
      }
      const dr = d.deltaRestore ?? {};
      if (dr.cairn || dr.pgbr) {
        L.push(`  delta restore onto the full's restore, to the incremental: cairn ${fmtS(dr.cairn?.seconds)}${dr.cairn?.bytesWritten !== undefined ? ` (${mb(dr.cairn.bytesWritten)} MB written)` : ''}, pgBackRest ${fmtS(dr.pgbr?.seconds)}`);
        if (dr.cairn && dr.pgbr) L.push(`  target (issue 17): delta restore no slower than pgBackRest's --delta: ${dr.cairn.seconds} vs ${dr.pgbr.seconds} s → ${dr.cairn.seconds <= dr.pgbr.seconds ? 'MET' : 'NOT MET'}`);
      }
    }
  }
  const rss = [];
  for (const d of res.datasets) {
    const b = d.summary.full.cairn?.rssMB;
    const r = Math.max(d.summary.restore.cairn?.rssMB ?? 0, d.incrRestore?.cairn?.rssMB ?? 0) || undefined;
    const bi = d.incr?.cairn?.rssMB;
    rss.push([d.label, b ? `${b} MB` : '—', bi ? `${round(bi, 0)} MB` : '—', r ? `${round(r, 0)} MB` : '—']);
  }
  L.push('');
  L.push('peak RSS of cairn (/usr/bin/time, max over runs)');
  L.push(table([['', 'basebackup full', 'basebackup incr', 'restore'], ...rss]));
  const all = res.datasets.flatMap((d) => [d.summary.full.cairn?.rssMB, d.incr?.cairn?.rssMB, d.summary.restore.cairn?.rssMB, d.incrRestore?.cairn?.rssMB]).filter((x) => x !== undefined);
  if (all.length) {
    const max = Math.max(...all);
    L.push(`  target ≤ 300 MB and flat across scales: max ${round(max, 0)} MB → ${max <= 300 ? 'MET' : 'NOT MET'}`);
  }
  L.push(...reportTail(res));
  return L.join('\n');
}

// ---- main -----------------------------------------------------------------------

async function main() {
  installCleanupHooks();
  const date = new Date();
  const res = { date: date.toISOString(), kind: 'backup', options: opt, problems, datasets: [] };
  await prerequisites();
  res.env = await versions();
  say(`temp dir ${tempBase()}; options: scale=${opt.scale} rss-scale=${opt.rssScale} runs=${opt.runs} ${Z} jobs=${opt.jobs}${opt.skipPgbr ? ' no-pgbackrest' : ''}${opt.skipRandom ? ' no-random' : ''}`);
  const b = new Bench();
  await runGuarded(async () => {
    await b.setup();
    // Issue 17: 2,000 pgbench TPC-B transactions (2 clients × 1,000).
    const pgbenchUpdate = (bench) => run(join(PG_BIN, 'pgbench'), ['-n', '-c', '2', '-j', '2', '-t', '1000'], { asPg: true, env: bench.srv.clientEnv(), timeoutMs: 3600_000 });
    if (opt.rssScale > 0 && opt.rssScale !== opt.scale) {
      const loadSeconds = await loadPgbench(b, opt.rssScale);
      const d = await benchDataset(b, { name: `pgbench-s${opt.rssScale}`, label: `pgbench scale ${opt.rssScale}`, check: PGBENCH_CHECK, runs: 1, incr: false, verify: false });
      res.datasets.push({ ...d, loadSeconds, summary: summarizeDataset(d) });
    }
    const loadSeconds = await loadPgbench(b, opt.scale);
    const pgbenchBytes = Number(await b.srv.psql("select sum(pg_total_relation_size(c.oid)) from pg_class c where c.relname like 'pgbench\\_%' and c.relkind = 'r'"));
    {
      const d = await benchDataset(b, {
        name: `pgbench-s${opt.scale}`, label: `pgbench scale ${opt.scale}`, check: PGBENCH_CHECK, runs: opt.runs, incr: true, verify: true,
        update: pgbenchUpdate, updateLabel: 'pgbench -n -c 2 -j 2 -t 1000 (2,000 TPC-B transactions)',
      });
      res.datasets.push({ ...d, updateLabel: '2,000 pgbench TPC-B transactions', loadSeconds, summary: summarizeDataset(d) });
    }
    if (opt.tables > 0) {
      const loadS = await loadTables(b, opt.tables);
      const d = await benchDataset(b, { name: `tables-${opt.tables}`, label: `${opt.tables} small tables`, check: TABLES_CHECK, runs: opt.runs, incr: false, verify: true });
      res.datasets.push({ ...d, loadSeconds: loadS, summary: summarizeDataset(d) });
    }
    if (!opt.skipRandom) {
      const target = opt.randomMB > 0 ? opt.randomMB * 1e6 : pgbenchBytes;
      say(`random data set (drops the pgbench tables), about ${mb(target)} MB`);
      const loadS = await loadRandom(b, target);
      const d = await benchDataset(b, {
        name: 'random', label: 'random text + bytea', check: RND_CHECK, runs: opt.runs, incr: true, verify: true,
        update: `update rnd set t = md5(random()::text) || md5(random()::text), b = uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) where random() < 0.01`,
        updateLabel: 'UPDATE rnd SET t = <new random>, b = <new random> WHERE random() < 0.01 (1% of rows, at random)',
      });
      res.datasets.push({ ...d, updateLabel: 'update of 1% of rnd rows, at random', loadSeconds: loadS, summary: summarizeDataset(d) });
    }
  });
  if (loads.length) {
    res.loadAverage = { min: round(Math.min(...loads), 2), median: round(median(loads), 2), max: round(Math.max(...loads), 2) };
    // Our own contenders keep about 2 cores busy; more than that is someone else.
    if (res.loadAverage.median > opt.jobs + 1) problem(`other work ran on the machine during the bench (1-min load average before the timed commands: median ${res.loadAverage.median}, max ${res.loadAverage.max}): figures are skewed`);
  }
  finishBench('backup', res, date, opt.outDir, report);
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
