#!/usr/bin/env node
// `BENCH_ONLY=drill npm run bench` (or `scripts/node scripts/bench/drill.mjs`):
// the recovery time of a point-in-time restore. A cluster with pgbench data
// (BENCH_DRILL_SCALE, default 100) archiving every segment to a cairn
// repository and to a plain directory (`cp`), one full backup with
// cairn-basebackup and one with pgBackRest, then BENCH_DRILL_TRAFFIC_S
// (default 600) seconds of pgbench traffic; the target is the time at its end.
// Then, alternating, `cairn-drill --target-time T` (restore + replay through
// cairn-wal-get, as a drill measures them) beside `pgbackrest restore
// --type=time` with `restore_command = 'cp ARCHIVE/%f %p'`, started the same
// way (pg_ctl -w with hot_standby off: it returns at promotion): restore
// seconds, replay seconds and their total. Both recovered servers must hold
// the same data. See README.md.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Server } from './lib/cluster.mjs';
import { checkBuiltAndPostgres, finishBench, flag, gitCommit, hostVersions, int, problem, problems, ROOT, say, toolBin, runGuarded } from './lib/common.mjs';
import { ensurePgbackrest, PGBACKREST, STANZA, writePgbrConf } from './lib/pgbackrest.mjs';
import { installCleanupHooks, killProcessesNaming, makeDir, PG_BIN, pgUser, removeDir, run, shellQuote, sleep, start, syncDisks, tempBase } from './lib/proc.mjs';
import { mb, median, reportTail, round, table } from './lib/stats.mjs';

const BASEBACKUP = toolBin('cairn-basebackup');
const DRILL = toolBin('cairn-drill');
const WAL_PUSH = toolBin('cairn-wal-push');
const WAL_GET = toolBin('cairn-wal-get');

const opt = {
  scale: Math.max(1, int('BENCH_DRILL_SCALE', 100)),
  trafficS: Math.max(5, int('BENCH_DRILL_TRAFFIC_S', 600)),
  runs: Math.max(1, int('BENCH_DRILL_RUNS', 2)),
  clients: Math.max(1, int('BENCH_CLIENTS', 4)),
  level: int('BENCH_COMPRESS_LEVEL', 1),
  jobs: Math.max(1, int('BENCH_JOBS', 2)),
  skipPgbr: flag('BENCH_SKIP_PGBACKREST'),
  amcheck: !flag('BENCH_DRILL_NO_AMCHECK'),
  timeoutS: int('BENCH_TIMEOUT_S', 3600),
  outDir: process.env.BENCH_OUT || join(ROOT, 'bench-results'),
};
const Z = `zstd:${opt.level}`;
// What a recovered server must agree on with the other contender's.
const CHECK =
  "select (select count(*) || '/' || coalesce(sum(delta), 0) from pgbench_history) || '/' || (select sum(abalance) from pgbench_accounts)";

const tail = (s, n = 12) => s.trimEnd().split('\n').slice(-n).join('\n');
/** Milliseconds of a timestamptz as PostgreSQL prints it (`2026-11-21 22:36:04.117+00`). */
const pgTime = (text) => Date.parse(text.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));
const secsSince = (t0) => round((performance.now() - t0) / 1000, 2);

class Bench {
  async setup() {
    this.repo = makeDir('repo-cairn');
    this.archive = makeDir('archive-cp');
    this.scratchParent = makeDir('drill-scratch');
    const srv = new Server('drill-source', { env: { CAIRN_REPO: this.repo, CAIRN_COMPRESS: Z, CAIRN_SPOOL_DIR: makeDir('spool-source') } });
    this.srv = srv;
    await srv.initdb();
    await srv.configure();
    if (!opt.skipPgbr) {
      this.pgbrRepo = makeDir('repo-pgbackrest');
      // archive-check=n: its WAL comes from the cp archive, so pgBackRest's own
      // archive is not filled (one push less per segment on the source).
      this.pgbrConf = writePgbrConf(makeDir('pgbr'), {
        repo: this.pgbrRepo, level: opt.level, server: srv,
        extra: { 'repo1-retention-full': '9999', 'process-max': String(opt.jobs), 'start-fast': 'y', 'archive-check': 'n' },
      });
    }
    // Every segment goes to both archives; the server is set up as a busy
    // production one would be (default checkpoint_timeout and max_wal_size:
    // full-page images after each checkpoint, as replay meets them in life).
    const cp = `test ! -f ${shellQuote(this.archive)}/%f && cp %p ${shellQuote(this.archive)}/%f`;
    srv.setConf({
      archive_mode: 'on',
      archive_command: `${WAL_PUSH} %p %f && ${cp}`,
      wal_level: 'replica',
      shared_buffers: '256MB',
      autovacuum: 'off',
      log_min_messages: 'warning',
      log_checkpoints: 'off',
    });
    await srv.start();
    if (!opt.skipPgbr) await run(PGBACKREST, this.pgbrArgs('stanza-create'), { asPg: true });
  }

  pgbrArgs(...rest) {
    return [`--config=${this.pgbrConf}`, `--stanza=${STANZA}`, ...rest];
  }

  /** pg_switch_wal, then waits until the archiver has every segment up to it. */
  async archiveAll() {
    const seg = await this.srv.psql('select pg_walfile_name(pg_switch_wal())');
    const t0 = performance.now();
    for (;;) {
      const last = await this.srv.psql("select coalesce(last_archived_wal, '') from pg_stat_archiver");
      if (last.slice(8) >= seg.slice(8)) return;
      if (performance.now() - t0 > opt.timeoutS * 1000) throw new Error(`the archiver did not reach ${seg} in ${opt.timeoutS} s (at ${last})\n${this.srv.logTail(20)}`);
      await sleep(200);
    }
  }

  async backups() {
    await this.srv.psql('checkpoint');
    await this.archiveAll();
    let t0 = performance.now();
    const r = await run(BASEBACKUP, ['--pgdata', this.srv.pgdata, '--repo', this.repo, '--compress', Z, '--type', 'full', '--jobs', String(opt.jobs), '--json'], {
      asPg: true, env: this.srv.clientEnv(), timeoutMs: opt.timeoutS * 1000,
    });
    const s = JSON.parse(r.stdout.trim().split('\n').pop());
    this.backup = { cairn: { id: s.id, seconds: secsSince(t0) } };
    say(`cairn-basebackup: ${s.id} in ${this.backup.cairn.seconds} s`);
    if (!opt.skipPgbr) {
      t0 = performance.now();
      await run(PGBACKREST, this.pgbrArgs('backup', '--type=full', '--log-level-console=warn'), { asPg: true, timeoutMs: opt.timeoutS * 1000 });
      const info = JSON.parse((await run(PGBACKREST, this.pgbrArgs('info', '--output=json'), { asPg: true })).stdout)[0].backup.pop();
      this.backup.pgbr = { id: info.label, seconds: secsSince(t0) };
      say(`pgbackrest backup: ${info.label} in ${this.backup.pgbr.seconds} s`);
    }
  }

  /**
   * pgbench for trafficS seconds after the backups, the target taken then
   * (the server's clock), and a few more seconds of traffic after it, so a
   * commit past the target exists for recovery to stop at.
   */
  async traffic() {
    const lsn0 = await this.srv.psql('select pg_current_wal_lsn()');
    const after = 10;
    say(`pgbench: ${opt.clients} clients for ${opt.trafficS} s (+${after} s after the target)`);
    const t0 = performance.now();
    const child = start(join(PG_BIN, 'pgbench'), ['-n', '-c', String(opt.clients), '-j', String(Math.min(opt.clients, 2)), '-T', String(opt.trafficS + after), '-P', '60'], {
      asPg: true, env: this.srv.clientEnv(),
    });
    const output = [];
    child.stdout.on('data', (b) => output.push(b));
    child.stderr.on('data', (b) => {
      output.push(b);
      for (const l of b.toString().split('\n')) if (/^progress:/.test(l)) say(`  ${l.trim()}`);
    });
    const done = new Promise((resolve) => child.once('close', (code) => resolve(code)));
    const targetAt = t0 + opt.trafficS * 1000;
    while (performance.now() < targetAt) await sleep(Math.min(1000, targetAt - performance.now()));
    const [target, lsn1] = (await this.srv.psql("select clock_timestamp()::text || '|' || pg_current_wal_lsn()")).split('|');
    const code = await done;
    const text = Buffer.concat(output).toString();
    if (code !== 0) throw new Error(`pgbench failed (exit ${code})\n${tail(text)}`);
    this.target = target;
    this.walBytes = Number(await this.srv.psql(`select pg_wal_lsn_diff('${lsn1}', '${lsn0}')`));
    this.tps = Math.round(Number(/tps = ([\d.]+)/.exec(text)?.[1])) || undefined;
    say(`target ${target}: ${mb(this.walBytes)} MB of WAL since the backups, ${this.tps ?? '?'} tps; archiving the rest`);
    await this.archiveAll();
  }

  /** The data of a recovered server (the socket and port of its postmaster.pid). */
  async recovered(pgdata) {
    const lines = readFileSync(join(pgdata, 'postmaster.pid'), 'utf8').split('\n');
    const env = { PGHOST: lines[4], PGPORT: lines[3], PGUSER: pgUser.name, PGDATABASE: 'postgres' };
    const q = async (sql) => (await run(join(PG_BIN, 'psql'), ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql], { asPg: true, env })).stdout.trim();
    return { data: await q(CHECK), newestCommit: await q('select pg_last_xact_replay_timestamp()::text') };
  }

  async stopAndRemove(pgdata, dir) {
    if (existsSync(join(pgdata, 'postmaster.pid'))) {
      await run(join(PG_BIN, 'pg_ctl'), ['stop', '-D', pgdata, '-m', 'immediate', '-w'], { asPg: true, allowFail: true });
    }
    killProcessesNaming(dir);
    removeDir(dir);
    syncDisks();
  }

  // ---- cairn-drill ----

  async cairn() {
    const args = ['--repo', this.repo, '--target-time', this.target, '--scratch-dir', this.scratchParent, '--keep', '--json'];
    if (!opt.amcheck) args.push('--no-amcheck');
    const t0 = performance.now();
    const r = await run(DRILL, args, { asPg: true, allowFail: true, timeoutMs: opt.timeoutS * 1000 });
    const wall = secsSince(t0);
    const dir = readdirSync(this.scratchParent).map((d) => join(this.scratchParent, d)).find((d) => d.includes('cairn-drill-'));
    try {
      if (r.code !== 0) throw new Error(`cairn-drill failed (exit ${r.code})\n${tail(r.stderr)}`);
      const j = JSON.parse(r.stdout);
      const got = await this.recovered(join(dir, 'data'));
      return {
        tool: 'cairn', restoreSeconds: j.restoreSeconds, replaySeconds: j.replaySeconds, totalSeconds: round(j.restoreSeconds + j.replaySeconds, 2),
        rtoSeconds: j.rtoSeconds, drillSeconds: wall, dataAgeSeconds: j.dataAgeSeconds, checks: j.checks.map((c) => `${c.name}:${c.skipped ? 'skipped' : c.ok ? 'ok' : 'FAILED'}`),
        ...got, summary: r.stderr.trim().split('\n').slice(0, 3).join(' | '),
      };
    } finally {
      if (dir) await this.stopAndRemove(join(dir, 'data'), dir);
    }
  }

  // ---- pgBackRest + cp ----

  async pgbr() {
    const dir = makeDir('pgbr-restore');
    const pgdata = join(dir, 'data');
    try {
      const t0 = performance.now();
      const r = await run(PGBACKREST, this.pgbrArgs('restore', `--pg1-path=${pgdata}`, `--set=${this.backup.pgbr.id}`, '--type=time', `--target=${this.target}`,
        '--target-action=promote', `--recovery-option=restore_command=cp ${this.archive}/%f %p`, '--log-level-console=warn'), { asPg: true, allowFail: true, timeoutMs: opt.timeoutS * 1000 });
      const restoreSeconds = secsSince(t0);
      if (r.code !== 0) throw new Error(`pgbackrest restore failed (exit ${r.code})\n${tail(r.stderr || r.stdout)}`);
      // Set up as cairn-drill sets up its scratch server: no archiving, no hot
      // standby (pg_ctl -w returns once it has promoted), its own port and socket.
      const v = new Server('pgbr-recovered', { pgdata });
      await v.configure({ archive_mode: 'off', hot_standby: 'off', log_min_messages: 'warning', primary_conninfo: '' });
      const s0 = performance.now();
      await v.start({ wait: true, timeoutSec: opt.timeoutS });
      await v.pollUntil('select pg_is_in_recovery() rec', (row) => row.rec === false, { t0: s0, everyMs: 250, timeoutMs: opt.timeoutS * 1000 });
      const replaySeconds = secsSince(s0);
      const got = await this.recovered(pgdata);
      const newest = pgTime(got.newestCommit);
      return {
        tool: 'pgbr', restoreSeconds, replaySeconds, totalSeconds: round(restoreSeconds + replaySeconds, 2),
        dataAgeSeconds: Number.isFinite(newest) ? round((pgTime(this.target) - newest) / 1000, 3) : undefined, ...got,
      };
    } finally {
      await this.stopAndRemove(pgdata, dir);
    }
  }
}

const NAMES = { cairn: 'cairn-drill (cairn-restore + cairn-wal-get)', pgbr: 'pgBackRest restore + cp restore_command' };

function report(res) {
  const L = [];
  const v = res.env ?? {};
  L.push('', `cairn drill bench ${res.date} — ${v.cairn ?? ''}${v.commit ? ` @ ${v.commit}` : ''}; Node ${v.node ?? '?'}; ${v.postgres ?? ''}${v.pgbackrest ? `; ${v.pgbackrest}` : ''}`);
  L.push(`pgbench scale ${opt.scale}, ${opt.trafficS} s of traffic after the backups (${opt.clients} clients${res.tps ? `, ${res.tps} tps` : ''}): ${mb(res.walBytes ?? 0)} MB of WAL to replay to ${res.target ?? '?'}`);
  L.push(`${Z} for both backups; median of ${opt.runs} run(s); replay = pg_ctl start until promoted (hot_standby off, polled every 250 ms)`, '');
  const rows = [['', 'restore', 'replay', 'total', 'data age', 'runs (total)']];
  for (const k of ['cairn', 'pgbr']) {
    const rs = res.runs?.[k] ?? [];
    if (!rs.length) continue;
    const m = (f) => round(median(rs.map(f)), 2);
    rows.push([NAMES[k], `${m((r) => r.restoreSeconds)} s`, `${m((r) => r.replaySeconds)} s`, `${m((r) => r.totalSeconds)} s`, `${rs.at(-1).dataAgeSeconds ?? '–'} s`, rs.map((r) => r.totalSeconds).join(' / ')]);
  }
  L.push(table(rows));
  const c = res.runs?.cairn?.at(-1);
  if (c) L.push('', `cairn-drill as a whole (with its checks: ${c.checks.join(', ')}): ${c.drillSeconds} s; its RTO figure (planning included): ${c.rtoSeconds} s`);
  if (res.sameData !== undefined) L.push(`recovered data (history rows / sum(delta) / sum(abalance)): ${res.sameData ? `the same for both (${res.runs.cairn.at(-1).data})` : 'DIFFER'}`);
  L.push(...reportTail(res));
  return L.join('\n');
}

async function main() {
  installCleanupHooks();
  const date = new Date();
  const res = { date: date.toISOString(), kind: 'drill', options: opt, problems, runs: { cairn: [], pgbr: [] } };
  await checkBuiltAndPostgres([BASEBACKUP, DRILL, WAL_PUSH, WAL_GET]);
  if (!opt.skipPgbr && !(await ensurePgbackrest())) opt.skipPgbr = true;
  res.env = { ...(await hostVersions()), cairn: (await run(DRILL, ['--version'])).stdout.trim(), commit: gitCommit() };
  if (!opt.skipPgbr) res.env.pgbackrest = (await run(PGBACKREST, ['version'], { allowFail: true })).stdout.trim();
  say(`temp dir ${tempBase()}; scale ${opt.scale}, ${opt.trafficS} s of traffic, ${opt.runs} run(s)${opt.skipPgbr ? ', no pgBackRest' : ''}`);
  const b = new Bench();
  await runGuarded(async () => {
    await b.setup();
    say(`pgbench -i -s ${opt.scale}`);
    await run(join(PG_BIN, 'pgbench'), ['-i', '-s', String(opt.scale), '-q'], { asPg: true, env: b.srv.clientEnv(), timeoutMs: 3600_000 });
    await b.backups();
    res.backups = b.backup;
    await b.traffic();
    Object.assign(res, { target: b.target, walBytes: b.walBytes, tps: b.tps });
    res.expected = await b.srv.psql(CHECK);
    await b.srv.stop('fast');
    syncDisks();
    const contenders = ['cairn', ...(opt.skipPgbr ? [] : ['pgbr'])];
    for (let i = 0; i < opt.runs; i++) {
      for (const k of i % 2 === 0 ? contenders : [...contenders].reverse()) {
        try {
          const r = k === 'cairn' ? await b.cairn() : await b.pgbr();
          res.runs[k].push(r);
          say(`  ${k}: restore ${r.restoreSeconds} s, replay ${r.replaySeconds} s, total ${r.totalSeconds} s, data age ${r.dataAgeSeconds} s (${r.data})`);
        } catch (err) {
          problem(`${k}: ${err.message}`);
        }
      }
    }
    const all = [...res.runs.cairn, ...res.runs.pgbr];
    if (all.length > 1) {
      res.sameData = all.every((r) => r.data === all[0].data);
      if (!res.sameData) problem(`the recovered servers differ: ${all.map((r) => `${r.tool} ${r.data}`).join(', ')}`);
    }
    for (const r of res.runs.cairn) if (r.checks.some((c) => c.endsWith('FAILED'))) problem(`a cairn-drill check failed: ${r.checks.join(', ')}`);
  });
  finishBench('drill', res, date, opt.outDir, report);
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
