#!/usr/bin/env node
// `node scripts/bench/copy.mjs` (Node 24), issue 18: cairn-copy throughput. A
// cluster with pgbench data (BENCH_COPY_SCALE, default 100) archiving through
// cairn-wal-push into a file repository, one cairn-basebackup, a WAL switch;
// then `cairn-copy --from SOURCE --to EMPTY` between two file repositories on
// the same disk, each run into a fresh target, timed: MB/s of stored bytes
// copied (every object decoded and its SHA-256 checked on the way), beside
// `cp -r` of the same repository (no checks: the disk's own rate here), and
// peak RSS. The copy must end with no problems and the same keys as the source.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Server } from './lib/cluster.mjs';
import { aptInstall, checkBuiltAndPostgres, finishBench, gitCommit, hostVersions, int, problem, problems, ROOT, runGuarded, say, TIME, timedWithRss, toolBin } from './lib/common.mjs';
import { installCleanupHooks, makeDir, PG_BIN, removeDir, run, shellQuote, syncDisks, tempBase } from './lib/proc.mjs';
import { mb, median, reportTail, round, table } from './lib/stats.mjs';

const COPY = toolBin('cairn-copy');
const BASEBACKUP = toolBin('cairn-basebackup');
const WAL_PUSH = toolBin('cairn-wal-push');

const opt = {
  scale: Math.max(1, int('BENCH_COPY_SCALE', 100)),
  runs: Math.max(1, int('BENCH_COPY_RUNS', 1)),
  jobs: Math.max(1, int('BENCH_COPY_JOBS', 4)),
  timeoutS: int('BENCH_TIMEOUT_S', 1800),
  outDir: process.env.BENCH_OUT || join(ROOT, 'bench-results'),
};

/** Relative paths of the files under `dir` (locks and reader leases left out: they are no data). */
function files(dir, rel = '', out = []) {
  for (const n of readdirSync(join(dir, rel))) {
    const r = rel ? `${rel}/${n}` : n;
    if (statSync(join(dir, r)).isDirectory()) files(dir, r, out);
    else if (!/\/(locks|readers)\//.test(`/${r}`)) out.push(r);
  }
  return out.sort();
}

async function main() {
  installCleanupHooks();
  const date = new Date();
  const res = { date: date.toISOString(), kind: 'copy', options: opt, problems, copy: [], cp: [] };
  await checkBuiltAndPostgres([COPY, BASEBACKUP, WAL_PUSH]);
  if (!existsSync(TIME)) await aptInstall('time');
  res.env = { ...(await hostVersions()), cairn: (await run(COPY, ['--version'])).stdout.trim(), commit: gitCommit() };
  say(`temp dir ${tempBase()}; scale ${opt.scale}, --jobs ${opt.jobs}, ${opt.runs} run(s)`);
  const repo = makeDir('repo-copy-src');
  const repoEnv = { CAIRN_REPO: repo, CAIRN_COMPRESS: 'zstd:1' };
  const srv = new Server('copy-source', { env: repoEnv });
  await runGuarded(async () => {
    await srv.initdb();
    await srv.configure({ archive_mode: 'on', archive_command: `${shellQuote(WAL_PUSH)} %p %f`, archive_timeout: '60s' });
    srv.setConf({ shared_buffers: '256MB', max_wal_size: '8GB', checkpoint_timeout: '30min', autovacuum: 'off', log_min_messages: 'warning' });
    await srv.start();
    say(`pgbench -i -s ${opt.scale}`);
    await run(join(PG_BIN, 'pgbench'), ['-i', '-s', String(opt.scale), '-q', 'postgres'], { asPg: true, env: srv.clientEnv(), timeoutMs: 3600_000 });
    await srv.psql('checkpoint');
    say('cairn-basebackup (untimed)');
    const b = await run(BASEBACKUP, ['--pgdata', srv.pgdata, '--json'], { asPg: true, env: { ...srv.clientEnv(), ...repoEnv }, timeoutMs: opt.timeoutS * 1000 });
    const backup = JSON.parse(b.stdout);
    res.backup = { id: backup.id, size: backup.totals.size, storedSize: backup.totals.storedSize };
    await srv.stop('fast');
    const srcFiles = files(repo);
    res.source = { objects: srcFiles.length, bytes: srcFiles.reduce((a, f) => a + statSync(join(repo, f)).size, 0) };
    say(`source: backup ${backup.id} (${mb(backup.totals.size)} MB, stored ${mb(backup.totals.storedSize)} MB) and its WAL: ${res.source.objects} objects, ${mb(res.source.bytes)} MB`);

    for (let i = 0; i < opt.runs; i++) {
      const dst = join(makeDir(`repo-copy-dst${i}`), 'r');
      syncDisks();
      const r = await timedWithRss(COPY, ['--from', repo, '--to', dst, '--json', '--jobs', String(opt.jobs)], {}, opt.timeoutS);
      if (r.code !== 0) {
        problem(`cairn-copy exited ${r.code}: ${r.stderr.trimEnd().split('\n').slice(-5).join('\n')}`);
        continue;
      }
      const j = JSON.parse(r.stdout);
      const same = JSON.stringify(files(dst)) === JSON.stringify(srcFiles);
      if (!same) problem('the copy does not hold the same keys as the source');
      res.copy.push({ seconds: r.seconds, rssMB: r.rssMB, cpuS: r.cpuS, bytes: j.copied.bytes, checkedBytes: j.checkedBytes, objects: j.copied.objects, problems: j.problems.length });
      say(`  cairn-copy: ${r.seconds} s, ${mb(j.copied.bytes)} MB in ${j.copied.objects} objects (${round(j.copied.bytes / 1e6 / r.seconds, 0)} MB/s), ${mb(j.checkedBytes)} MB plaintext checked (${round(j.checkedBytes / 1e6 / r.seconds, 0)} MB/s), RSS ${r.rssMB} MB, CPU ${r.cpuS} s`);
      removeDir(dst);

      const cpDst = join(makeDir(`repo-cp-dst${i}`), 'r');
      syncDisks();
      const t0 = performance.now();
      await run('cp', ['-r', repo, cpDst], { asPg: true, timeoutMs: opt.timeoutS * 1000 });
      const secs = round((performance.now() - t0) / 1000, 2);
      res.cp.push({ seconds: secs });
      say(`  cp -r: ${secs} s (${round(res.source.bytes / 1e6 / secs, 0)} MB/s)`);
      removeDir(cpDst);
    }
  });
  finishBench('copy', res, date, opt.outDir, report);
}

function report(res) {
  const L = [`cairn-copy of a pgbench scale ${opt.scale} backup and its WAL between two file repositories (${res.source?.objects ?? 0} objects, ${mb(res.source?.bytes ?? 0)} MB stored), --jobs ${opt.jobs}, median of ${opt.runs} run(s)`, ''];
  const copySecs = res.copy.length ? median(res.copy.map((r) => r.seconds)) : undefined;
  const cpSecs = res.cp.length ? median(res.cp.map((r) => r.seconds)) : undefined;
  const bytes = res.copy[0]?.bytes ?? res.source?.bytes ?? 0;
  L.push(table([
    ['', 'time', 'stored MB', 'MB/s stored', 'MB/s plaintext checked', 'peak RSS'],
    ['cairn-copy (every object decoded and checked)', copySecs === undefined ? '–' : `${copySecs} s`, mb(bytes), copySecs === undefined ? '–' : `${round(bytes / 1e6 / copySecs, 0)}`, copySecs === undefined ? '–' : `${round((res.copy[0]?.checkedBytes ?? 0) / 1e6 / copySecs, 0)}`, res.copy.length ? `${median(res.copy.map((r) => r.rssMB))} MB` : '–'],
    ['cp -r (reference: no checks)', cpSecs === undefined ? '–' : `${cpSecs} s`, mb(res.source?.bytes ?? 0), cpSecs === undefined ? '–' : `${round((res.source?.bytes ?? 0) / 1e6 / cpSecs, 0)}`, '–', '–'],
  ]));
  L.push(...reportTail(res));
  return L.join('\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
