#!/usr/bin/env node
// `BENCH_ONLY=fanout npm run bench` (or `scripts/node scripts/bench/fanout.mjs`):
// issue 18 item 1, every repository from one read. A full backup of pgbench
// scale BENCH_FANOUT_SCALE (10) into two file repositories by one
// cairn-basebackup run, beside two separate runs (--repo-only 1, then
// --repo-only 2), interleaved, medians. Target: the one run takes at most
// 0.6× the time of the two. See README.md.

import { startPgbenchSource } from './lib/cluster.mjs';
import { checkBuiltAndPostgres, finishBench, gitCommit, hostVersions, int, problem, problems, runGuarded, say, sharedOptions, timedRun, toolBin } from './lib/common.mjs';
import { installCleanupHooks, makeDir, run, syncDisks, tempBase } from './lib/proc.mjs';
import { median, reportTail, round, table } from './lib/stats.mjs';

const BASEBACKUP = toolBin('cairn-basebackup');
const VERIFY = toolBin('cairn-verify');
const WAL_PUSH = toolBin('cairn-wal-push');

const opt = {
  scale: Math.max(1, int('BENCH_FANOUT_SCALE', 10)),
  runs: Math.max(1, int('BENCH_FANOUT_RUNS', 3)),
  ...sharedOptions(),
};
const Z = `zstd:${opt.level}`;
/** Issue 18: one run to both repositories within this factor of two separate runs. */
const TARGET = 0.6;

async function timedBackup(args, e) {
  const r = await timedRun(BASEBACKUP, args, e, opt.timeoutS);
  return { seconds: r.seconds, id: r.stdout.trim() };
}

async function main() {
  installCleanupHooks();
  const date = new Date();
  const res = { date: date.toISOString(), kind: 'fanout', options: opt, problems, runs: [] };
  await checkBuiltAndPostgres([BASEBACKUP, VERIFY, WAL_PUSH]);
  res.env = { ...(await hostVersions()), cairn: (await run(BASEBACKUP, ['--version'])).stdout.trim(), commit: gitCommit() };
  say(`temp dir ${tempBase()}; options: scale=${opt.scale} runs=${opt.runs} ${Z} jobs=${opt.jobs}`);
  await runGuarded(async () => {
    const repos = [makeDir('repo-a'), makeDir('repo-b')];
    const repoEnv = { CAIRN_REPO: repos.join(','), CAIRN_COMPRESS: Z };
    // The archive_command pushes every segment to both repositories.
    const srv = await startPgbenchSource('fanout', repoEnv, WAL_PUSH, opt.scale, say);
    const e = { ...repoEnv, ...srv.clientEnv() };
    const base = ['--pgdata', srv.pgdata, '--type', 'full', '--jobs', String(opt.jobs)];
    let lastBoth;
    for (let i = 0; i < opt.runs; i++) {
      // Interleaved, each order in turn: the page cache favours whichever runs second.
      const order = i % 2 === 0 ? ['both', 'separate'] : ['separate', 'both'];
      const r = { both: 0, separate: 0, first: 0, second: 0 };
      for (const how of order) {
        syncDisks();
        if (how === 'both') {
          const b = await timedBackup(base, e);
          r.both = b.seconds;
          lastBoth = b.id;
        } else {
          const a = await timedBackup([...base, '--repo-only', '1'], e);
          syncDisks();
          const b = await timedBackup([...base, '--repo-only', '2'], e);
          r.first = a.seconds;
          r.second = b.seconds;
          r.separate = round(a.seconds + b.seconds, 2);
        }
      }
      say(`  ${i + 1}/${opt.runs}: one run to both ${r.both} s; two runs ${r.separate} s (${r.first} + ${r.second}); ratio ${round(r.both / r.separate, 2)}`);
      res.runs.push(r);
    }
    // The one run's backup is whole in each repository.
    for (const repo of repos) {
      const v = await run(VERIFY, ['--set', lastBoth], { asPg: true, env: { ...e, CAIRN_REPO: repo }, allowFail: true, timeoutMs: opt.timeoutS * 1000 });
      if (v.code !== 0) problem(`cairn-verify --set ${lastBoth} of ${repo} exited ${v.code}: ${(v.stderr || v.stdout).trim().split('\n').pop()}`);
    }
    await srv.stop('fast');
  });
  res.summary = { both: median(res.runs.map((r) => r.both)), separate: median(res.runs.map((r) => r.separate)), ratio: median(res.runs.map((r) => r.both / r.separate)) };
  finishBench('fanout', res, date, opt.outDir, report);
}

function report(res) {
  const L = [];
  L.push('');
  L.push(`cairn every-repository bench ${res.date} — ${res.env.cairn ?? ''} @ ${res.env.commit}; ${res.env.node ?? ''}`);
  L.push(`pgbench scale ${opt.scale}; two file repositories; full backups, ${Z}, --jobs ${opt.jobs}; median of ${opt.runs}`);
  const s = res.summary;
  const rows = [['', 'one run to both', 'two runs (--repo-only 1, 2)', 'ratio', `target ≤ ${TARGET}×`]];
  if (s?.both && s?.separate) rows.push(['full backup', `${s.both} s`, `${s.separate} s`, `${round(s.ratio, 2)}×`, s.ratio <= TARGET ? 'MET' : 'NOT MET']);
  L.push(table(rows));
  L.push(...reportTail(res));
  return L.join('\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
