// PostgreSQL 16, 17 and 18 for real (issue 14 item 4): on each, the shortest
// run through every step of the physical path. Archiving through wal-push, a
// local full and an incremental backup, restore-plan and a restore to a time
// target holding exactly the rows of that time, promoted (timeline 2), a
// drill (that version's pg_ctl) restoring along timeline 2 to exactly its
// rows, verify; and cairn-check by a role that cannot write a restore point
// (pg_walfile_name changed in 17), cairn-dump refusing 15's pg_dump. About
// 40 s a version alone, 75-100 s for the three side by side on 2 cores.
// The servers come from the npm package the bootstrap installs
// (testkit paths.ts serverBinDir); psql, pgbench and pg_amcheck are 15's.
// PostgreSQL 15 runs the same steps in pitr-fs, backup-chain and drill-*.
// The versions run side by side: each has its own repository, clusters and ports.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { baseEnv } from '@cairn/testkit/run-as';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import type { DrillResult } from '@cairn/core/drill/result-format';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import {
  assertRestoredEquals,
  cairnOk,
  captureUnderLock,
  currentTimeline,
  NOW_UTC_SQL,
  SNAPSHOT_SQL,
  readStoredManifest,
  restoreAndStart,
  scalar,
  switchAndWaitArchived,
  takeBackup,
  walPushCommand,
} from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

interface PlanJson {
  backup: { id: string };
  chain: string[];
  targetTimeline: number;
  timelines: number[];
}

/** An empty cluster of `major` to restore into; archiving on (it will promote) or off. */
function emptyCluster(name: string, major: number, repo: RepoFixture, archive: boolean): Promise<Cluster> {
  return createCluster({
    name, major, initdb: false, env: repo.env,
    ...(archive ? { archiveCommand: walPushCommand(), archiveTimeout: '1s' } : { conf: { archive_mode: 'off' } }),
  });
}

async function physicalPath(major: number): Promise<void> {
  const repo = await makeRepo('fs', false);
  const src = await createCluster({ name: `v${major}`, major, archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env });
  assert.equal(src.major, major);
  await src.start();
  assert.equal(Math.floor(Number(await src.psql('show server_version_num')) / 10000), major, 'the server is the version asked for');
  await src.psql("create table marker(v text); insert into marker values ('a: before')");
  await src.pgbench(['-i', '-s', '1', '-q']);

  // A full backup, changes, the time target, more changes, an incremental backup.
  const full = await takeBackup(src, repo, 'full');
  const m = await readStoredManifest(repo, full) as unknown as { pgMajor: string };
  assert.equal(m.pgMajor, String(major), 'the manifest records the major');
  await src.pgbench(['-c', '2', '-j', '2', '-t', '50', '-n']);
  const time = await captureUnderLock(src, (c) => scalar(c, NOW_UTC_SQL));
  await src.pgbench(['-c', '2', '-j', '2', '-t', '50', '-n']);
  await src.psql("insert into marker values ('b: after the target')");
  const incr = await takeBackup(src, repo, 'incr');
  const im = await readStoredManifest(repo, incr);
  assert.equal(im.parent, full);
  assert.ok(im.totals.filesReferenced > 0, 'the incremental backup references files of the full one');
  // No pg_dump of 16+ here: cairn-dump says so (README "PostgreSQL versions").
  const dump = await runCairn('dump', ['--dbname', 'postgres'], { env: { ...src.env, ...repo.env } });
  assert.equal(dump.code, 3, dump.stderr);
  assert.match(dump.stderr, new RegExp(`pg_dump ".*/pg_dump" is version 15, older than the server \\(${major}\\)`));
  // cairn-check as a role that may switch WAL but not write a restore point,
  // right after a switch: its switch does nothing and returns the segment
  // boundary, which 17+'s pg_walfile_name names as the segment starting
  // there. The check must name the finished one (a record between the two
  // switches, e.g. the bgwriter's every 15 s, makes both name a later one).
  await src.psql('create role checker login in role pg_read_all_settings, pg_monitor; grant execute on function pg_switch_wal() to checker');
  const last = await switchAndWaitArchived(src);
  const chk = await runCairn('check', ['--json', '--archive-timeout', '10'], { env: { ...src.env, ...repo.env, PGUSER: 'checker' } });
  assert.equal(chk.code, 0, `${chk.stdout}\n${chk.stderr}`);
  const named = (JSON.parse(chk.stdout) as { segment: string }).segment;
  const [{ w: inUse }] = await src.query<{ w: string }>('select pg_walfile_name(pg_current_wal_insert_lsn()) w') as [{ w: string }];
  assert.ok(named === last || named < inUse, `cairn-check named ${named}, after ${last} was archived; ${inUse} is in use`);
  await src.stop();

  // restore-plan and a restore to the time target, promoted with archiving on: timeline 2.
  const targetArgs = ['--target-time', time.value, '--target-action', 'promote'];
  const plan = JSON.parse((await cairnOk('restore-plan', targetArgs, repo.env)).stdout) as PlanJson;
  assert.equal(plan.backup.id, full, 'the incremental backup ends after the target');
  assert.deepEqual(plan.chain, [full]);
  const tl2 = await emptyCluster(`v${major}-tl2`, major, repo, true);
  const r1 = await restoreAndStart(repo, '', targetArgs, { cluster: tl2 });
  assert.equal(r1.result.backup, full);
  await assertRestoredEquals(tl2, time.snapshot, `PostgreSQL ${major}, time target`);
  assert.equal(await currentTimeline(tl2), 2, 'promotion starts timeline 2');
  await tl2.psql("insert into marker values ('c: timeline 2')");
  await tl2.pgbench(['-c', '2', '-j', '2', '-t', '50', '-n']);
  const onTl2 = await captureUnderLock(tl2, async () => {});
  await switchAndWaitArchived(tl2);
  await tl2.stop();
  await tl2.destroy();

  // A restore along timeline 2: the drill's, of the end of the archive (from
  // the full backup: the incremental one is on timeline 1 past the fork), with
  // that version's pg_ctl, found on PATH past pg_config's 15; its check: the
  // rows of timeline 2's end. 15's pg_ctl with --pg-bin is refused.
  const plan2 = JSON.parse((await cairnOk('restore-plan', ['--target', 'latest'], repo.env)).stdout) as PlanJson;
  assert.equal(plan2.backup.id, full);
  assert.equal(plan2.targetTimeline, 2);
  assert.deepEqual(plan2.timelines, [1, 2]);
  const scratch = await makeTempDir(`v${major}-drill`);
  const checks = join(scratch, 'checks.sql');
  await writeFile(checks, `select (${SNAPSHOT_SQL.trim()}) = '${onTl2.snapshot.replaceAll("'", "''")}';\n`);
  await chownToPgUser(checks);
  const drillEnv = { ...repo.env, PATH: `${src.bindir}:${baseEnv()['PATH']}` };
  const d = await runCairn('drill', ['--json', '--log-level', 'info', '--scratch-dir', scratch, '--check-sql', checks], { env: drillEnv, timeoutMs: 240_000 });
  assert.equal(d.code, 0, d.stderr);
  const result = JSON.parse(d.stdout) as DrillResult;
  assert.equal(result.ok, true, d.stdout);
  const check = (name: string) => result.checks.find((c) => c.name === name);
  assert.match(check('connect')?.message ?? '', new RegExp(`\\(PostgreSQL ${major}\\.`), 'the scratch server is the backup\'s version');
  assert.equal(check('amcheck')?.ok, true, 'pg_amcheck (15\'s) checked it');
  assert.notEqual(check('amcheck')?.skipped, true);
  assert.equal(check('sql:1')?.ok, true, 'the drill restored exactly timeline 2\'s rows');
  const wrong = await runCairn('drill', ['--scratch-dir', scratch, '--pg-bin', src.clientBindir], { env: repo.env });
  assert.equal(wrong.code, 3, wrong.stderr);
  assert.match(wrong.stderr, new RegExp(`pg_ctl ".*/pg_ctl" is version 15, not the server's ${major}`));

  const v = await runCairn('verify', ['--json'], { env: repo.env, timeoutMs: 300_000 });
  assert.equal(v.code, 0, `${v.stdout}\n${v.stderr}`);
  assert.equal((JSON.parse(v.stdout) as { ok: boolean }).ok, true, v.stdout);
}

describe('PostgreSQL 16, 17 and 18: the physical path', { timeout: 600_000, concurrency: true }, () => {
  for (const major of [16, 17, 18]) it(`PostgreSQL ${major}`, () => physicalPath(major));
});
