#!/usr/bin/env node
// `BENCH_ONLY=remote npm run bench` (or `scripts/node scripts/bench/remote.mjs`):
// issue 17's far-away object store. A full backup and a restore of pgbench
// scale BENCH_REMOTE_SCALE (10) with cairn, into a file repository and into
// S3 (s3rver on 127.0.0.1) behind a proxy that holds every request back
// BENCH_REMOTE_DELAY_MS (20 ms: a store in another region, or R2), runs
// interleaved, medians. Target: S3 within 1.5× of the file repository, for
// both. BENCH_REMOTE_REQUESTS sets the S3 URL's `requests` (default: the
// driver's own) to compare with fewer in flight. The proxy honours
// If-None-Match: * as AWS S3, R2 and MinIO do (BENCH_REMOTE_IF_NONE_MATCH=0:
// as s3rver, which ignores it). See README.md.

import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Server, startPgbenchSource } from './lib/cluster.mjs';
import { checkBuiltAndPostgres, finishBench, gitCommit, hostVersions, int, problem, problems, ROOT, runGuarded, say, sharedOptions, timedRun, toolBin } from './lib/common.mjs';
import { installCleanupHooks, makeDir, removeDir, run, syncDisks, tempBase } from './lib/proc.mjs';
import { median, reportTail, round, table } from './lib/stats.mjs';

const BASEBACKUP = toolBin('cairn-basebackup');
const RESTORE = toolBin('cairn-restore');
const WAL_PUSH = toolBin('cairn-wal-push');
const TESTKIT = join(ROOT, 'packages', 'testkit', 'dist');

const env = process.env;
const opt = {
  scale: Math.max(1, int('BENCH_REMOTE_SCALE', 10)),
  delayMs: int('BENCH_REMOTE_DELAY_MS', 20),
  runs: Math.max(1, int('BENCH_REMOTE_RUNS', 3)),
  requests: int('BENCH_REMOTE_REQUESTS', 0),
  // A file to write the S3 backups' requests to (start, end ms, method, path, status), to see where the time goes.
  trace: env.BENCH_REMOTE_TRACE || '',
  // The store honours If-None-Match: * as AWS S3, R2 and MinIO do (s3rver alone does not); 0: as s3rver.
  ifNoneMatch: env.BENCH_REMOTE_IF_NONE_MATCH !== '0',
  ...sharedOptions(),
};
const Z = `zstd:${opt.level}`;
/** Issue 17: S3 behind the delay within this factor of the file repository. */
const TARGET = 1.5;
const CHECK = "select count(*) || '/' || sum(abalance) from pgbench_accounts";

function timed(cmd, args, e) {
  return timedRun(cmd, args, e, opt.timeoutS);
}

/** Appends the proxy's trace (ms from the first request) and the tool's stderr to opt.trace, and stops tracing. */
function writeTrace(proxy, title, stderr, base) {
  const t = proxy.traced;
  const lines = t.map((e) => `${round(e.start - base, 0)}\t${round((e.end ?? NaN) - base, 0)}\t${e.method}\t${e.status ?? ''}\t${e.url}`);
  // The tool's log lines with their times in the same ms, so the two read side by side.
  const log = stderr.split('\n').map((l) => {
    const m = /^\{"time":"([^"]+)".*"msg":"(.*)"\}$/.exec(l);
    return m ? `${Date.parse(m[1]) - base}\tlog\t${m[2]}` : l;
  });
  appendFileSync(opt.trace, `# ${title} (ms from the command's start), ${t.length} requests\n${lines.join('\n')}\n${log.join('\n')}\n`);
  proxy.trace(false);
}

/** cairn-basebackup --log-level debug: "... after N ms" since its start, per phase. */
function phasesOf(stderr) {
  const at = (re) => round(Number(re.exec(stderr)?.[1]) / 1000, 2);
  return { started: at(/backup started at \S+ after (\d+) ms/), copied: at(/files copied after (\d+) ms/), stopped: at(/backup stopped at \S+ after (\d+) ms/), walInRepo: at(/is in the repository after (\d+) ms/) };
}

async function main() {
  installCleanupHooks();
  const date = new Date();
  const res = { date: date.toISOString(), kind: 'remote', options: opt, problems, runs: [] };
  await checkBuiltAndPostgres([BASEBACKUP, RESTORE, WAL_PUSH]);
  if (!existsSync(join(TESTKIT, 's3-server.js'))) throw new Error('packages/testkit is not built: run npm run build');
  res.env = { ...(await hostVersions()), cairn: (await run(BASEBACKUP, ['--version'])).stdout.trim(), commit: gitCommit() };
  say(`temp dir ${tempBase()}; options: scale=${opt.scale} delay=${opt.delayMs} ms runs=${opt.runs} ${Z} jobs=${opt.jobs}${opt.requests ? ` requests=${opt.requests}` : ''}`);
  const { startS3Server, s3TestEnv } = await import(pathToFileURL(join(TESTKIT, 's3-server.js')).href);
  const { startFaultProxy } = await import(pathToFileURL(join(TESTKIT, 'fault-proxy.js')).href);
  const s3 = await startS3Server({ buckets: ['cairn-bench'] });
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: s3.port });
  const s3Env = s3TestEnv();
  await runGuarded(async () => {
    const fileRepo = makeDir('repo-file');
    const q = new URLSearchParams({ endpoint: proxy.endpoint, region: 'us-east-1', 'force-path-style': 'true' });
    if (opt.requests > 0) q.set('requests', String(opt.requests));
    const s3Repo = `s3://cairn-bench/remote?${q}`;
    const repoEnv = { ...s3Env, CAIRN_COMPRESS: Z };
    // The archive_command pushes every segment to both repositories.
    const srv = await startPgbenchSource('remote', { ...repoEnv, CAIRN_REPO: `${fileRepo},${s3Repo}` }, WAL_PUSH, opt.scale, say);
    const expected = await srv.psql(CHECK);
    proxy.delay(opt.delayMs);
    proxy.honourIfNoneMatch(opt.ifNoneMatch);
    for (let i = 0; i < opt.runs; i++) {
      const order = i % 2 === 0 ? ['file', 's3'] : ['s3', 'file'];
      for (const where of order) {
        const repo = where === 'file' ? fileRepo : s3Repo;
        syncDisks();
        const requestsBefore = proxy.requests;
        if (where === 's3' && opt.trace) proxy.trace(true);
        const bStart = Date.now();
        const b = await timed(BASEBACKUP, ['--pgdata', srv.pgdata, '--repo', repo, '--compress', Z, '--jobs', String(opt.jobs), '--json', '--log-level', 'debug'], { ...repoEnv, ...srv.clientEnv() });
        const phases = phasesOf(b.stderr);
        if (where === 's3' && opt.trace) writeTrace(proxy, `run ${i + 1}: backup ${b.seconds} s`, b.stderr, bStart);
        const id = JSON.parse(b.stdout.trim().split('\n').pop()).id;
        const dest = join(makeDir(`restore-${where}-${i}`), 'pgdata');
        syncDisks();
        if (where === 's3' && opt.trace) proxy.trace(true);
        const rStart = Date.now();
        const r = await timed(RESTORE, ['--repo', repo, '--pgdata', dest, '--set', id, '--target', 'immediate', '--jobs', String(opt.jobs), '--log-level', 'debug'], repoEnv);
        if (where === 's3' && opt.trace) writeTrace(proxy, `run ${i + 1}: restore ${r.seconds} s`, r.stderr, rStart);
        const requests = where === 's3' ? proxy.requests - requestsBefore : undefined;
        say(`  ${i + 1}/${opt.runs} ${where}: backup ${b.seconds} s (started ${phases.started}, copied ${phases.copied}, stopped ${phases.stopped}, WAL in repo ${phases.walInRepo} s), restore ${r.seconds} s${requests !== undefined ? `, ${requests} requests` : ''}`);
        res.runs.push({ where, backup: b.seconds, restore: r.seconds, requests, phases });
        if (i === opt.runs - 1) {
          // cairn-restore wrote the restore_command; S3 credentials come from the env.
          const v = new Server(`check-${where}`, { pgdata: dest, env: repoEnv });
          try {
            await v.configure({ archive_mode: 'off', log_min_messages: 'warning' });
            await v.start({ timeoutSec: opt.timeoutS });
            const got = await v.psql(CHECK);
            if (got !== expected) problem(`${where}: the restored data differ: ${got} (source: ${expected})`);
          } catch (err) {
            problem(`${where}: the restored data dir did not start or answer: ${err.message}`);
          } finally {
            await v.stop('immediate');
            removeDir(v.dir);
          }
        }
        removeDir(dest);
      }
    }
    proxy.delay(0);
    await srv.stop('fast');
  });
  await proxy.stop();
  await s3.stop().catch(() => {});
  const of = (where, k) => median(res.runs.filter((r) => r.where === where).map((r) => r[k]));
  res.summary = {};
  for (const k of ['backup', 'restore']) res.summary[k] = { file: of('file', k), s3: of('s3', k) };
  finishBench('remote', res, date, opt.outDir, report);
}

function report(res) {
  const L = [];
  L.push('');
  L.push(`cairn far-away object store bench ${res.date} — ${res.env.cairn ?? ''} @ ${res.env.commit}; ${res.env.node ?? ''}`);
  L.push(`pgbench scale ${opt.scale}; S3 = s3rver on 127.0.0.1 behind a proxy adding ${opt.delayMs} ms to every request${opt.ifNoneMatch ? ' and honouring If-None-Match: * (as AWS S3, R2, MinIO)' : ' (If-None-Match ignored, as s3rver)'}; ${Z}, --jobs ${opt.jobs}${opt.requests ? `, requests=${opt.requests}` : ', requests: the driver default'}; median of ${opt.runs}`);
  const rows = [['', 'file repository', `S3 (+${opt.delayMs} ms)`, 'S3 / file', `target ≤ ${TARGET}×`]];
  for (const k of ['backup', 'restore']) {
    const s = res.summary?.[k];
    if (!s?.file || !s?.s3) continue;
    const ratio = s.s3 / s.file;
    rows.push([k === 'backup' ? 'full backup' : 'restore', `${s.file} s`, `${s.s3} s`, `${round(ratio, 2)}×`, ratio <= TARGET ? 'MET' : 'NOT MET']);
  }
  L.push(table(rows));
  const reqs = res.runs.filter((r) => r.requests !== undefined).map((r) => r.requests);
  if (reqs.length) L.push(`  requests to S3 per backup + restore: ${median(reqs)}`);
  for (const where of ['file', 's3']) {
    const ph = res.runs.filter((r) => r.where === where && r.phases).map((r) => r.phases);
    if (ph.length) L.push(`  ${where} backup phases (median, s from its start): started ${median(ph.map((p) => p.started))}, files copied ${median(ph.map((p) => p.copied))}, stopped ${median(ph.map((p) => p.stopped))}, last WAL in the repository ${median(ph.map((p) => p.walInRepo))}`);
  }
  L.push(...reportTail(res));
  return L.join('\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
