#!/usr/bin/env node
// `node scripts/bench/dump.mjs` (Node 24): a logical dump of pgbench data
// (BENCH_DUMP_SCALE, default 100) with `pg_dump -Fc > file` (its default
// gzip) beside `cairn-dump --dbname` into a fresh file repository (pg_dump
// -Fc -Z 0 streamed through zstd), in one run on one cluster with warm
// caches: wall time, stored size and cairn-dump's peak RSS. The cairn dump is
// then restored into a new database and checked against the source.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Server } from './lib/cluster.mjs';
import { aptInstall, checkBuiltAndPostgres, gitCommit, hostVersions, int, problem, problems, ROOT, say, TIME, toolBin, finishBench, runGuarded } from './lib/common.mjs';
import { installCleanupHooks, makeDir, PG_BIN, run, shellQuote, syncDisks, tempBase } from './lib/proc.mjs';
import { mb, median, reportTail, round, table } from './lib/stats.mjs';

const DUMP = toolBin('cairn-dump');
const RESTORE = toolBin('cairn-restore');

const opt = {
  scale: Math.max(1, int('BENCH_DUMP_SCALE', 100)),
  runs: Math.max(1, int('BENCH_DUMP_RUNS', 1)),
  timeoutS: int('BENCH_TIMEOUT_S', 1800),
  outDir: process.env.BENCH_OUT || join(ROOT, 'bench-results'),
};
const CHECK = "select count(*) || '/' || sum(abalance) || '/' || sum(hashtext(filler)) from pgbench_accounts";

let seq = 0;
/** Runs a shell command line as the pg user under /usr/bin/time: wall seconds, peak RSS (MB), CPU seconds. */
async function timedShell(line, env) {
  const out = join(makeDir('time'), `t${++seq}`);
  const r = await run(TIME, ['-o', out, '-f', '%M %U %S', 'sh', '-c', line], { asPg: true, env, allowFail: true, timeoutMs: opt.timeoutS * 1000 });
  if (r.code !== 0) throw new Error(`failed (exit ${r.code}): ${line}\n${r.stderr.trimEnd().split('\n').slice(-10).join('\n')}`);
  const [kb, u, s] = readFileSync(out, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  return { seconds: round(r.ms / 1000, 2), rssMB: round(kb / 1024, 1), cpuS: round(u + s, 2), stdout: r.stdout, stderr: r.stderr };
}

async function pgDumpFc(srv) {
  const file = join(makeDir(`pgdump-${++seq}`), 'bench.dump');
  const r = await timedShell(`${shellQuote(join(PG_BIN, 'pg_dump'))} -Fc -f ${shellQuote(file)} bench`, srv.clientEnv());
  return { ...r, stored: statSync(file).size };
}

async function cairnDump(srv) {
  const repo = makeDir(`repo-cairn-${++seq}`);
  const r = await timedShell(`${shellQuote(DUMP)} --dbname bench --json`, { ...srv.clientEnv(), CAIRN_REPO: repo });
  const [m] = JSON.parse(r.stdout);
  return { ...r, stored: m.totals.storedSize, plain: m.totals.size, id: m.id, repo, compress: m.compress };
}

async function main() {
  installCleanupHooks();
  const date = new Date();
  const res = { date: date.toISOString(), kind: 'dump', options: opt, problems };
  await checkBuiltAndPostgres([DUMP, RESTORE]);
  if (!existsSync(TIME)) await aptInstall('time');
  res.env = { ...(await hostVersions()), cairn: (await run(DUMP, ['--version'])).stdout.trim(), pgDump: (await run(join(PG_BIN, 'pg_dump'), ['--version'])).stdout.trim(), commit: gitCommit() };
  say(`temp dir ${tempBase()}; scale ${opt.scale}, ${opt.runs} run(s)`);
  const srv = new Server('dump-source');
  await runGuarded(async () => {
    await srv.initdb();
    await srv.configure();
    srv.setConf({ shared_buffers: '256MB', max_wal_size: '8GB', checkpoint_timeout: '30min', autovacuum: 'off', fsync: 'on', log_min_messages: 'warning' });
    await srv.start();
    await srv.psql('create database bench');
    say(`pgbench -i -s ${opt.scale}`);
    const t0 = performance.now();
    await run(join(PG_BIN, 'pgbench'), ['-i', '-s', String(opt.scale), '-q', 'bench'], { asPg: true, env: srv.clientEnv(), timeoutMs: 3600_000 });
    res.loadSeconds = round((performance.now() - t0) / 1000, 0);
    await srv.psql('checkpoint');
    res.databaseBytes = Number(await srv.psql("select pg_database_size('bench')"));
    const expected = await run(join(PG_BIN, 'psql'), ['-XAtq', '-d', 'bench', '-c', CHECK], { asPg: true, env: srv.clientEnv() });
    say(`database: ${mb(res.databaseBytes)} MB; warm-up pg_dump (untimed)`);
    await run('sh', ['-c', `${shellQuote(join(PG_BIN, 'pg_dump'))} -Fc -Z 0 bench > /dev/null`], { asPg: true, env: srv.clientEnv(), timeoutMs: opt.timeoutS * 1000 });

    res.pgDump = [];
    res.cairn = [];
    for (let i = 0; i < opt.runs; i++) {
      // Alternate who goes first.
      const order = i % 2 === 0 ? ['pgDump', 'cairn'] : ['cairn', 'pgDump'];
      for (const k of order) {
        syncDisks();
        try {
          const r = k === 'pgDump' ? await pgDumpFc(srv) : await cairnDump(srv);
          res[k].push(r);
          say(`  ${k === 'pgDump' ? 'pg_dump -Fc > file' : 'cairn-dump'}: ${r.seconds} s, stored ${mb(r.stored)} MB, RSS ${r.rssMB} MB, CPU ${r.cpuS} s`);
        } catch (err) {
          problem(`${k}: ${err.message}`);
        }
      }
    }
    const last = res.cairn.at(-1);
    if (last) {
      // The dump is only worth its size if it restores: same rows as the source.
      say('restoring the cairn dump into a new database (untimed check)');
      await run(RESTORE, ['--dump', `bench/${last.id}`, '--dbname', 'bench_restored', '--create'], { asPg: true, env: { ...srv.clientEnv(), CAIRN_REPO: last.repo }, timeoutMs: opt.timeoutS * 1000 });
      const got = await run(join(PG_BIN, 'psql'), ['-XAtq', '-d', 'bench_restored', '-c', CHECK], { asPg: true, env: srv.clientEnv() });
      res.restoreVerified = got.stdout === expected.stdout;
      if (!res.restoreVerified) problem(`the restored database differs: ${got.stdout.trim()} vs ${expected.stdout.trim()}`);
    }
  });
  finishBench('dump', res, date, opt.outDir, report);
}

function report(res) {
  const L = [`dump of pgbench scale ${opt.scale} (database ${mb(res.databaseBytes ?? 0)} MB), median of ${opt.runs} run(s)`, ''];
  const row = (label, rs) => {
    if (!rs?.length) return [label, '–', '–', '–', '–'];
    const secs = round(median(rs.map((r) => r.seconds)), 2);
    const stored = median(rs.map((r) => r.stored));
    return [label, `${secs} s`, `${mb(stored)} MB`, `${mb((res.databaseBytes ?? 0) / secs)} MB/s`, `${round(median(rs.map((r) => r.rssMB)), 1)} MB`];
  };
  L.push(table([
    ['', 'time', 'stored', 'rate (db size / time)', 'peak RSS'],
    row('pg_dump -Fc > file (gzip -6)', res.pgDump),
    row(`cairn-dump (${res.cairn?.[0]?.compress ?? 'zstd'})`, res.cairn),
  ]));
  if (res.restoreVerified !== undefined) L.push('', `restore of the cairn dump: ${res.restoreVerified ? 'rows equal the source' : 'DIFFERS from the source'}`);
  L.push(...reportTail(res));
  return L.join('\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
