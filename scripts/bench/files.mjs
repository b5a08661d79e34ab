#!/usr/bin/env node
// `BENCH_ONLY=files npm run bench` (or `scripts/node scripts/bench/files.mjs`):
// the files simulation of issue 19. For each size in BENCH_FILES_SIZES
// (default 100000,300000,1000000) a repository with one full backup of that
// many files is generated (lib/files-gen.mjs) and each planner runs on it in
// a child process of its own (files-sim.mjs), so each peak RSS is that
// planner's alone: restore-plan, verify's planning, expire's planning, info,
// and cairn-restore's restore() with a stub writer (plain and --delta). Each
// child runs with the Node flags and environment of its tool's wrapper
// (tools/<tool>/bin/cairn-<tool>). Prints time and peak RSS
// per planner and size beside the 300 MB target, and time per million files
// (linear time: the same figure at every size), wall and CPU (user + system:
// on a shared machine the wall time follows the load). No PostgreSQL, no root.

import { spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { finishBench, gitCommit, NODE, problem, problems, ROOT, say } from './lib/common.mjs';
import { generateRepo } from './lib/files-gen.mjs';
import { round, table } from './lib/stats.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const PLANNERS = ['restore-plan', 'verify-plan', 'expire-plan', 'info', 'restore-scheduler', 'restore-delta'];
/** The tool whose wrapper's settings each planner runs with. */
const TOOL = { 'restore-plan': 'restore-plan', 'verify-plan': 'verify', 'expire-plan': 'expire', info: 'info', 'restore-scheduler': 'restore', 'restore-delta': 'restore' };
const TARGET_MB = 300;

const opt = {
  sizes: (process.env.BENCH_FILES_SIZES || '100000,300000,1000000').split(',').map(Number),
  planners: (process.env.BENCH_FILES_PLANNERS || PLANNERS.join(',')).split(','),
  timeoutS: Number(process.env.BENCH_TIMEOUT_S || 1800),
  outDir: process.env.BENCH_OUT || join(ROOT, 'bench-results'),
};

/** The product's streamed manifest writer (cairn.backup/3), when this build has one: its bytes go to a file. */
async function manifestWriter() {
  let m;
  try {
    m = await import('@cairn/core/backup/manifest-stream');
  } catch {
    return undefined;
  }
  return async (path, header, files) => {
    const { format: _f, ...head } = header;
    mkdirSync(dirname(path), { recursive: true });
    await pipeline(Readable.from(m.manifestLines({ ...head, fileCount: header.totals.filesStored + header.totals.filesReferenced }, files)), createWriteStream(path));
  };
}

/**
 * The Node flags and environment the wrapper tools/<tool>/bin/cairn-<tool>
 * runs its tool with: its `exec "$node" FLAGS "$here/../bundle/cli.js"` line
 * and its `export NAME=${NAME:-DEFAULT}` lines.
 */
function wrapperSettings(tool) {
  const text = readFileSync(join(ROOT, 'tools', tool, 'bin', `cairn-${tool}`), 'utf8');
  const exec = /^exec "\$node" (.*?)"\$here\/\.\.\/bundle\/cli\.js"/m.exec(text);
  if (!exec) throw new Error(`no exec line in the wrapper of cairn-${tool}`);
  const flags = exec[1].trim().split(/\s+/).filter(Boolean);
  const env = {};
  // The default as sh expands it (UV_THREADPOOL_SIZE's is the cores + 4).
  for (const m of text.matchAll(/^export (\w+)=\$\{\1:-(.*)\}$/gm)) env[m[1]] = process.env[m[1]] ?? spawnSync('sh', ['-c', `printf %s "${m[2]}"`], { encoding: 'utf8' }).stdout;
  return { flags, env };
}

async function main() {
  const date = new Date();
  // The machine may be shared: the 1-minute load average is printed beside the times.
  const loadStart = loadavg()[0];
  const res = { date: date.toISOString(), kind: 'files', options: opt, commit: gitCommit(), runs: [], problems };
  const base = mkdtempSync(join(process.env.BENCH_TMPDIR || tmpdir(), 'cairn-files-'));
  const write = await manifestWriter();
  say(`temp dir ${base}; manifest written ${write ? 'as cairn.backup/3 by the streamed writer' : 'as cairn.backup/2 (one JSON document)'}`);
  res.manifestFormat = write ? 'cairn.backup/3' : 'cairn.backup/2';
  try {
    for (const n of opt.sizes) {
      const dir = join(base, `repo-${n}`);
      const t0 = performance.now();
      await generateRepo(dir, n, write);
      say(`${n} files: repository generated in ${round((performance.now() - t0) / 1000, 1)} s`);
      for (const p of opt.planners) {
        // The heap settings and malloc tuning the tool runs with.
        const w = wrapperSettings(TOOL[p] ?? 'restore');
        const r = spawnSync(NODE, [...w.flags, join(HERE, 'files-sim.mjs'), p, dir, String(n)], { encoding: 'utf8', env: { ...process.env, ...w.env }, timeout: opt.timeoutS * 1000, maxBuffer: 1 << 24 });
        const line = r.stdout.trim().split('\n').pop();
        if (r.status !== 0 || !line) {
          const why = (r.stderr || r.error?.message || '').trim().split('\n').filter(Boolean).slice(-3).join(' / ');
          problem(`${p} at ${n} files failed (exit ${r.status ?? r.signal}): ${why}`);
          res.runs.push({ planner: p, files: n, failed: why });
          continue;
        }
        const run = JSON.parse(line);
        run.node = w;
        res.runs.push(run);
        say(`${p} at ${n} files: ${round(run.seconds, 2)} s (CPU ${round(run.cpuSeconds, 2)} s), peak RSS ${round(run.maxRssMB, 0)} MB`);
      }
      rmSync(dir, { recursive: true, force: true });
      rmSync(`${dir}.plan.json`, { force: true });
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
  res.loadAvg = [loadStart, loadavg()[0]];
  finishBench('files', res, date, opt.outDir, report);
}

function report(res) {
  const rows = [['planner', 'files', 'time s', 's per 1M files', 'CPU s', 'CPU s per 1M files', 'peak RSS MB', `≤ ${TARGET_MB} MB`]];
  const per1M = (s, files) => round((s * 1e6) / files, 2).toString();
  for (const r of res.runs) {
    if (r.failed) rows.push([r.planner, String(r.files), 'failed', '', '', '', '', 'NOT MET']);
    else rows.push([r.planner, String(r.files), round(r.seconds, 2).toString(), per1M(r.seconds, r.files), round(r.cpuSeconds, 2).toString(), per1M(r.cpuSeconds, r.files), round(r.maxRssMB, 0).toString(), r.maxRssMB <= TARGET_MB ? 'MET' : 'NOT MET']);
  }
  const lines = [`files simulation (issue 19), commit ${res.commit ?? '?'}, manifests ${res.manifestFormat}, load average ${res.loadAvg?.map((l) => round(l, 1)).join(' / ') ?? '?'} (start / end)`, table(rows)];
  if (res.problems.length) lines.push('', 'problems:', ...res.problems.map((p) => `- ${p}`));
  return lines.join('\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
