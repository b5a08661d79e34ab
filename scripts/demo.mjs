#!/usr/bin/env node
// The embedded default, end to end: a throwaway PostgreSQL cluster archives
// its WAL through cairn-wal-push into a local repository, is backed up with
// cairn-basebackup, makes a mistake (DROP TABLE), and is restored to the
// second before the mistake: cairn-restore-plan checks the WAL is there,
// cairn-drill restores into a scratch directory, replays through cairn-wal-get
// and proves the table is back; then cairn-verify checks the repository,
// cairn-info shows it and cairn-prom-export prints its metrics. Everything it makes is removed
// at the end (pass --keep to look around first).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCluster } from '../packages/testkit/dist/pg-cluster.js';
import { makeTempDir } from '../packages/testkit/dist/tmp.js';
import { runCleanups } from '../packages/testkit/dist/cleanup.js';
import { binPath } from '../packages/testkit/dist/paths.js';
import { runAsPg } from '../packages/testkit/dist/run-as.js';

const keep = process.argv.includes('--keep');
const t0 = Date.now();
const step = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const repo = await makeTempDir('demo-repo');
  const spool = await makeTempDir('demo-spool');
  const env = { CAIRN_REPO: repo, CAIRN_SPOOL_DIR: spool };

  step(`creating a throwaway cluster; archive_command = 'cairn-wal-push %p %f' into ${repo}`);
  const src = await createCluster({ name: 'demo-src', archiveCommand: `${binPath('wal-push')} %p %f`, archiveTimeout: '2s', env });
  await src.start();
  await src.psql("create table important(id int primary key, note text); insert into important select g, 'row ' || g from generate_series(1, 1000) g");
  await src.pgbench(['-i', '-s', '1', '-q']);

  step('cairn-basebackup --pgdata … (full)');
  const cairn = async (tool, args, input) => {
    const r = await runAsPg(binPath(tool), args, { env: { ...src.env, ...env }, allowFail: true, timeoutMs: 300_000, ...(input === undefined ? {} : { input }) });
    for (const line of r.stderr.trim().split('\n').filter(Boolean)) console.log(`         ${line}`);
    if (r.code !== 0) throw new Error(`cairn-${tool} exited ${r.code}`);
    return r.stdout;
  };
  const backup = (await cairn('basebackup', ['--pgdata', src.pgdata])).trim();
  step('cairn-dump --dbname postgres (a logical dump in the same repository)');
  await cairn('dump', ['--dbname', 'postgres']);

  step('traffic: pgbench for 4 s');
  await src.pgbench(['-c', '2', '-T', '4', '-n']);
  const before = await src.psql('select count(*) from important');
  await sleep(1100);
  const target = await src.psql("select to_char(now(), 'YYYY-MM-DD HH24:MI:SS.US TZH:TZM')");
  await sleep(1100);
  step(`the mistake at ${target} + 1 s: DROP TABLE important (it had ${before} rows)`);
  await src.psql('drop table important');
  await src.pgbench(['-c', '2', '-T', '2', '-n']);
  const last = await src.psql('select pg_walfile_name(pg_switch_wal())');
  await src.waitForArchived(last, 60_000);
  const [a] = await src.query('select archived_count::int, failed_count::int from pg_stat_archiver');
  step(`archived ${a.archived_count} WAL files, ${a.failed_count} failures; the repository holds:`);
  const files = await runAsPg('find', [`${repo}/main/wal`, '-type', 'f', '-name', '*.zst']);
  const du = await runAsPg('du', ['-sh', `${repo}/main/wal`, `${repo}/main/backups`]);
  const sizes = du.stdout.trim().split('\n').map((l) => l.split('\t')[0]);
  console.log(`         ${files.stdout.trim().split('\n').length} compressed WAL objects (${sizes[0]}), the base backup (${sizes[1]})`);
  await src.stop();

  step(`cairn-restore-plan --target-time '${target}'`);
  const planText = await cairn('restore-plan', ['--target-time', target]);
  const plan = JSON.parse(planText);
  console.log(`         plan: backup ${plan.backup.id}${plan.backup.id === backup ? ' (the one just taken)' : ''}, WAL ${plan.wal.map((w) => `${w.from}…${w.to}`).join(', ')} present`);

  step('cairn-drill --plan - --check-sql checks.sql: restore into a scratch directory, recover to the target, prove it');
  const checks = join(await makeTempDir('demo-checks'), 'checks.sql');
  writeFileSync(checks, [
    `-- the table dropped after the target is back, with every row`,
    `select count(*) = ${before} from important;`,
    `-- pgbench's invariant: the sum of balances equals the sum of history`,
    `select (select sum(abalance) from pgbench_accounts) = (select sum(delta) from pgbench_history);`,
    '',
  ].join('\n'));
  const drill = JSON.parse(await cairn('drill', ['--plan', '-', '--check-sql', checks, '--json'], planText));
  for (const c of drill.checks) console.log(`         check ${c.name}: ${c.ok ? 'ok' : 'FAILED'}${c.message ? ` (${c.message})` : ''}`);
  console.log(`         restore ${drill.restoreSeconds?.toFixed(1)} s + replay ${drill.replaySeconds?.toFixed(1)} s: RTO ${drill.rtoSeconds?.toFixed(1)} s; data age ${drill.dataAgeSeconds?.toFixed(1)} s (target minus the newest commit recovered)`);
  if (!drill.ok) throw new Error('the drill failed');
  step(`table "important" is back with ${before} rows: the drill passed and is recorded in the repository`);

  step('cairn-verify: every backup and dump object and every WAL segment read back and checked');
  await cairn('verify', []);
  step('cairn-info');
  for (const line of (await cairn('info', [])).trimEnd().split('\n')) console.log(`         ${line}`);
  step('cairn-prom-export (what Prometheus scrapes; the alert rules are in k8s/prometheus)');
  const metrics = (await cairn('prom-export', [])).trimEnd().split('\n').filter((l) => !l.startsWith('#'));
  for (const line of metrics.filter((l) => /^cairn_(backup_last_success|dump_last_success|drill_last|verify_last_success|recoverability|wal_last_archived)/.test(l))) console.log(`         ${line}`);
  console.log(`         … ${metrics.length} samples in all`);
  if (keep) {
    console.log(`\nkept: repository ${repo} (try: CAIRN_REPO=${repo} cairn-drill --target latest --keep). Ctrl-C to remove.`);
    await new Promise((r) => process.once('SIGINT', r));
  }
}

try {
  await main();
  step('done');
} catch (err) {
  console.error(`demo failed: ${err?.message ?? err}`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
