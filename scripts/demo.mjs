#!/usr/bin/env node
// The embedded default, end to end: a throwaway PostgreSQL cluster archives
// its WAL through cairn-wal-push into a local repository, is backed up with
// cairn-basebackup, makes a mistake (DROP TABLE), and is restored to the
// second before the mistake: cairn-restore-plan checks the WAL is there,
// cairn-restore lays the backup down, PostgreSQL replays through cairn-wal-get;
// then cairn-verify checks the repository and cairn-info shows it. Everything it makes is removed
// at the end (pass --keep to look around first).

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
  const cairn = async (tool, args) => {
    const r = await runAsPg(binPath(tool), args, { env: { ...src.env, ...env }, allowFail: true, timeoutMs: 300_000 });
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
  const plan = JSON.parse(await cairn('restore-plan', ['--target-time', target, '--target-action', 'promote']));
  console.log(`         plan: backup ${plan.backup.id}${plan.backup.id === backup ? ' (the one just taken)' : ''}, WAL ${plan.wal.map((w) => `${w.from}…${w.to}`).join(', ')} present`);
  step('cairn-restore --target-time … into an empty data directory');
  const dst = await createCluster({ name: 'demo-restore', initdb: false, env, conf: { archive_mode: 'off' } });
  await cairn('restore', ['--pgdata', dst.pgdata, '--target-time', target, '--target-action', 'promote']);
  step('starting PostgreSQL: it replays the archive through cairn-wal-get up to the target');
  const r0 = Date.now();
  await dst.start({ timeoutSec: 300 });
  await dst.waitForRecoveryEnd(300_000);
  const after = await dst.psql('select count(*) from important');
  step(`recovered in ${((Date.now() - r0) / 1000).toFixed(1)} s: table "important" is back with ${after} rows`);
  if (after !== before) throw new Error(`expected ${before} rows, got ${after}`);
  const invariant = await dst.psql('select (select sum(abalance) from pgbench_accounts) = (select sum(delta) from pgbench_history)');
  step(`pgbench invariant (sum of balances = sum of history) holds: ${invariant === 't' ? 'yes' : 'NO'}`);
  step('cairn-verify: every backup and dump object and every WAL segment read back and checked');
  await cairn('verify', []);
  step('cairn-info');
  for (const line of (await cairn('info', [])).trimEnd().split('\n')) console.log(`         ${line}`);
  if (keep) {
    console.log(`\nkept: repository ${repo}, restored cluster ${dst.pgdata} on port ${dst.port}. Ctrl-C to remove.`);
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
