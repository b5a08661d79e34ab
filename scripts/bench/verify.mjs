#!/usr/bin/env node
// `node scripts/bench/verify.mjs` (Node 24): verify throughput. A cluster with
// pgbench data (BENCH_VERIFY_SCALE, default 50) archiving through
// cairn-wal-push, one cairn-basebackup into a fresh file repository, then
// `cairn-verify --set ID` (the backup's objects and its own WAL) and the
// whole-repository verify (every object, the whole archive), timed with warm
// caches: MB/s of plaintext verified (decoded and hashed) and of stored bytes
// read, peak RSS. Both runs must find no problems.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Server } from './lib/cluster.mjs';
import { aptInstall, checkBuiltAndPostgres, gitCommit, hostVersions, int, problem, problems, ROOT, say, TIME, timedWithRss, toolBin, finishBench, runGuarded } from './lib/common.mjs';
import { installCleanupHooks, makeDir, PG_BIN, run, shellQuote, syncDisks, tempBase } from './lib/proc.mjs';
import { mb, median, reportTail, round, table } from './lib/stats.mjs';

const VERIFY = toolBin('cairn-verify');
const BASEBACKUP = toolBin('cairn-basebackup');
const WAL_PUSH = toolBin('cairn-wal-push');

const opt = {
  scale: Math.max(1, int('BENCH_VERIFY_SCALE', 50)),
  runs: Math.max(1, int('BENCH_VERIFY_RUNS', 1)),
  jobs: Math.max(1, int('BENCH_JOBS', 2)),
  timeoutS: int('BENCH_TIMEOUT_S', 1800),
  outDir: process.env.BENCH_OUT || join(ROOT, 'bench-results'),
};

/** One cairn-verify run: its timing and what its JSON result says it checked. */
async function verifyRun(args, env) {
  const r = await timedWithRss(VERIFY, ['--json', '--jobs', String(opt.jobs), ...args], env, opt.timeoutS);
  let result;
  try {
    result = JSON.parse(r.stdout);
  } catch {
    throw new Error(`cairn-verify ${args.join(' ')} printed no JSON (exit ${r.code}):\n${r.stderr.trimEnd().split('\n').slice(-10).join('\n')}`);
  }
  if (r.code !== 0) problem(`cairn-verify ${args.join(' ')} exited ${r.code}: ${result.problems.map((p) => p.message).join('; ')}`);
  const c = result.checked;
  return { seconds: r.seconds, rssMB: r.rssMB, cpuS: r.cpuS, bytes: c.bytes, storedBytes: c.storedBytes, objects: c.objects, walSegments: c.walSegments, problems: result.problems.length };
}

async function main() {
  installCleanupHooks();
  const date = new Date();
  const res = { date: date.toISOString(), kind: 'verify', options: opt, problems };
  await checkBuiltAndPostgres([VERIFY, BASEBACKUP, WAL_PUSH]);
  if (!existsSync(TIME)) await aptInstall('time');
  res.env = { ...(await hostVersions()), cairn: (await run(VERIFY, ['--version'])).stdout.trim(), commit: gitCommit() };
  say(`temp dir ${tempBase()}; scale ${opt.scale}, --jobs ${opt.jobs}, ${opt.runs} run(s)`);
  const repo = makeDir('repo-verify');
  const repoEnv = { CAIRN_REPO: repo, CAIRN_COMPRESS: 'zstd:1' };
  const srv = new Server('verify-source', { env: repoEnv });
  await runGuarded(async () => {
    await srv.initdb();
    await srv.configure({ archive_mode: 'on', archive_command: `${shellQuote(WAL_PUSH)} %p %f`, archive_timeout: '60s' });
    srv.setConf({ shared_buffers: '256MB', max_wal_size: '8GB', checkpoint_timeout: '30min', autovacuum: 'off', log_min_messages: 'warning' });
    await srv.start();
    say(`pgbench -i -s ${opt.scale}`);
    const t0 = performance.now();
    await run(join(PG_BIN, 'pgbench'), ['-i', '-s', String(opt.scale), '-q', 'postgres'], { asPg: true, env: srv.clientEnv(), timeoutMs: 3600_000 });
    res.loadSeconds = round((performance.now() - t0) / 1000, 0);
    await srv.psql('checkpoint');
    say('cairn-basebackup (untimed)');
    const b = await run(BASEBACKUP, ['--pgdata', srv.pgdata, '--jobs', String(opt.jobs), '--json'], { asPg: true, env: { ...srv.clientEnv(), ...repoEnv }, timeoutMs: opt.timeoutS * 1000 });
    const backup = JSON.parse(b.stdout);
    res.backup = { id: backup.id, size: backup.totals.size, storedSize: backup.totals.storedSize };
    say(`backup ${backup.id}: ${mb(backup.totals.size)} MB, stored ${mb(backup.totals.storedSize)} MB`);
    await srv.stop('fast');

    res.set = [];
    res.all = [];
    for (let i = 0; i < opt.runs; i++) {
      for (const [k, args] of [['set', ['--set', backup.id]], ['all', []]]) {
        syncDisks();
        try {
          const r = await verifyRun(args, repoEnv);
          res[k].push(r);
          say(`  cairn-verify ${k === 'set' ? '--set' : '(whole repository)'}: ${r.seconds} s, ${mb(r.bytes)} MB plaintext (${round(r.bytes / 1e6 / r.seconds, 0)} MB/s), ${mb(r.storedBytes)} MB stored, ${r.objects} objects, ${r.walSegments} WAL files, RSS ${r.rssMB} MB, CPU ${r.cpuS} s`);
        } catch (err) {
          problem(`${k}: ${err.message}`);
        }
      }
    }
  });
  finishBench('verify', res, date, opt.outDir, report);
}

function report(res) {
  const L = [`verify of a pgbench scale ${opt.scale} backup (${mb(res.backup?.size ?? 0)} MB, stored ${mb(res.backup?.storedSize ?? 0)} MB), --jobs ${opt.jobs}, median of ${opt.runs} run(s)`, ''];
  const row = (label, rs) => {
    if (!rs?.length) return [label, '–', '–', '–', '–', '–'];
    const secs = median(rs.map((r) => r.seconds));
    const r = rs[0];
    return [label, `${secs} s`, `${mb(r.bytes)} MB`, `${round(r.bytes / 1e6 / secs, 0)} MB/s`, `${round(r.storedBytes / 1e6 / secs, 1)} MB/s`, `${median(rs.map((x) => x.rssMB))} MB`];
  };
  L.push(table([
    ['', 'time', 'plaintext verified', 'plaintext rate', 'stored rate', 'peak RSS'],
    row('cairn-verify --set ID', res.set),
    row('cairn-verify (whole repository)', res.all),
  ]));
  L.push(...reportTail(res));
  return L.join('\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
