// Base backups of what a plain pgbench cluster lacks: a damaged data page
// (reported, backup still completes), a tablespace (restored where
// --tablespace-map says), and stream mode through --remote.

import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { makeTempDir } from '@cairn/testkit/tmp';
import { commandLine, runCairn } from './tools.js';
import { makeRepo } from './repo-fixture.js';
import { assertAmcheck, parseStoredManifest } from './pitr-harness.js';

after(runCleanups);

test('a damaged data page is reported and the backup completes; a tablespace restores to its new place; --remote', { timeout: 300_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const src = await createCluster({ name: 'pages', archiveCommand: commandLine('wal-push', '%p %f'), archiveTimeout: '1s', env: repo.env });
  await src.start();
  const tsDir = await makeTempDir('ts-old');
  await src.psql(`create tablespace far location '${tsDir}'`);
  await src.psql("create table near(id int, pad text); insert into near select g, repeat('n', 200) from generate_series(1, 5000) g");
  await src.psql("create table away(id int, pad text) tablespace far; insert into away select g, repeat('a', 200) from generate_series(1, 3000) g");
  // Two tables past 32 MiB: backed up and restored by worker threads.
  await src.psql("create table big(id int, pad text); insert into big select g, md5(g::text) || repeat('b', 120) from generate_series(1, 260000) g");
  await src.psql("create table big2(id int, pad text); insert into big2 select g, md5(g::text) || repeat('c', 120) from generate_series(1, 260000) g");
  await src.psql('checkpoint');
  const nearPath = await src.psql("select pg_relation_filepath('near')");
  const bigPath = await src.psql("select pg_relation_filepath('big')");
  const big2Sum = await src.psql("select count(*) || ':' || md5(string_agg(pad, ',' order by id)) from big2");
  const oid = await src.psql("select oid from pg_tablespace where spcname = 'far'");

  // Damage page 2 of "near" on disk behind PostgreSQL's back (the server is
  // stopped, so nothing rewrites it), in the middle of the page.
  await src.stop();
  const fh = await open(join(src.pgdata, nearPath), 'r+');
  await fh.write(Buffer.from('cairn was here'), 0, 14, 2 * 8192 + 4000);
  await fh.close();
  const fh2 = await open(join(src.pgdata, bigPath), 'r+');
  assert.ok((await fh2.stat()).size > 32 * 1024 * 1024, 'big is past the worker threshold');
  await fh2.write(Buffer.from('and here'), 0, 8, 1000 * 8192 + 5000);
  await fh2.close();
  await src.start();

  const env = { ...src.env, ...repo.env };
  const r = await runCairn('basebackup', ['--pgdata', src.pgdata], { env });
  assert.equal(r.code, 0, r.stderr);
  const summary = { id: r.stdout.trim() };
  assert.ok(r.lines.some((l) => l.includes(`page checksum failures in "${nearPath}"`) && l.includes('block 2')), r.stderr);
  const manifest = parseStoredManifest(await readFile(join(repo.url, 'main/backups', summary.id, 'manifest.json'), 'utf8')) as unknown as {
    totals: { badPages: number };
    files: { path: string; badPages?: number[] }[];
    tablespaces: { oid: string; location: string }[];
  };
  assert.equal(manifest.totals.badPages, 2);
  assert.deepEqual(manifest.files.find((f) => f.path === nearPath)?.badPages, [2]);
  assert.deepEqual(manifest.files.find((f) => f.path === bigPath)?.badPages, [1000]);
  assert.ok(r.lines.some((l) => l.includes(`page checksum failures in "${bigPath}"`) && l.includes('block 1000')), r.stderr);
  assert.deepEqual(manifest.tablespaces, [{ oid, location: tsDir }]);
  assert.ok(manifest.files.some((f) => f.path.startsWith(`pg_tblspc/${oid}/PG_15_`)), 'tablespace files are in the backup');

  // Stream mode through --remote, same cluster. pg_basebackup -D - takes no
  // tablespaces, and the server verifies page checksums itself (a damaged
  // page fails pg_basebackup): drop both first.
  await src.psql("drop table away; drop tablespace far; drop table near; drop table big; create table near as select g id, repeat('m', 100) pad from generate_series(1, 4000) g");
  const stream = await runCairn('basebackup', ['--remote', '--pg-bin', src.clientBindir], { env });
  assert.equal(stream.code, 0, stream.stderr);
  assert.match(stream.stdout.trim(), /^\d{8}-\d{6}F$/);
  const count = await src.psql('select count(*) from near');
  await src.psql('select pg_switch_wal()');

  // Restore the first backup with the tablespace moved.
  const tsNew = await makeTempDir('ts-new');
  const dst = await createCluster({ name: 'pages-dst', initdb: false, env: repo.env, conf: { archive_mode: 'off' } });
  const rr = await runCairn('restore', ['--pgdata', dst.pgdata, '--set', summary.id, '--target', 'immediate', '--target-action', 'promote', '--tablespace-map', `${oid}=${tsNew}`], { env });
  assert.equal(rr.code, 0, rr.stderr);
  assert.equal(readlinkSync(join(dst.pgdata, 'pg_tblspc', oid)), tsNew);
  assert.equal((await readFile(join(dst.pgdata, 'tablespace_map'), 'utf8')).trim(), `${oid} ${tsNew}`);
  await dst.start({ timeoutSec: 120 });
  await dst.waitForRecoveryEnd(120_000);
  assert.equal(await dst.psql('select count(*) from away'), '3000');
  assert.equal(await dst.psql("select count(*) from away where pad = repeat('a', 200)"), '3000');
  assert.equal(await dst.psql("select count(*) || ':' || md5(string_agg(pad, ',' order by id)) from big2"), big2Sum, 'a file restored by a worker thread');
  await dst.destroy();

  // And the stream backup restores to the same rows.
  const dst2 = await createCluster({ name: 'pages-dst2', initdb: false, env: repo.env, conf: { archive_mode: 'off' } });
  const r2 = await runCairn('restore', ['--pgdata', dst2.pgdata, '--set', stream.stdout.trim(), '--target', 'immediate', '--target-action', 'promote'], { env });
  assert.equal(r2.code, 0, r2.stderr);
  await dst2.start({ timeoutSec: 120 });
  await dst2.waitForRecoveryEnd(120_000);
  assert.equal(await dst2.psql('select count(*) from near'), count);
  // (Not on the first restore: its damaged pages are the backup's, faithfully kept.)
  await assertAmcheck(dst2);
});
