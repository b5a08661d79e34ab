// The main WAL scenario (issue 2): a cluster under pgbench load archives
// through cairn-wal-push; every unencrypted stored segment decodes with the
// stock `zstd -d` to the original bytes; a cluster restored from an
// independent `pg_basebackup -X none` replays through cairn-wal-get to the end
// of the archive and holds exactly the rows the source held.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { makeTempDir } from '@cairn/testkit/tmp';
import { commandLine } from './tools.js';
import { makeRepo, type RepoFixture } from './repo-fixture.js';

/** What the restored cluster must hold: pgbench's tables, compared exactly. */
export const SNAPSHOT_SQL = `
select json_build_object(
  'accounts', (select json_build_object('n', count(*), 'sum', sum(abalance), 'md5', md5(string_agg(aid || ':' || abalance, ',' order by aid))) from pgbench_accounts),
  'tellers', (select json_build_object('n', count(*), 'sum', sum(tbalance)) from pgbench_tellers),
  'branches', (select json_build_object('n', count(*), 'sum', sum(bbalance)) from pgbench_branches),
  'history', (select json_build_object('n', count(*), 'sum', sum(delta)) from pgbench_history),
  'marker', (select coalesce(max(v), 'none') from marker)
)::text`;

/** pgbench's invariant: every balance sum equals the sum of history deltas. */
export async function assertPgbenchInvariant(c: Cluster): Promise<void> {
  const [row] = await c.query<{ a: string; t: string; b: string; h: string }>(
    `select (select coalesce(sum(abalance),0) from pgbench_accounts)::text a, (select coalesce(sum(tbalance),0) from pgbench_tellers)::text t,
            (select coalesce(sum(bbalance),0) from pgbench_branches)::text b, (select coalesce(sum(delta),0) from pgbench_history)::text h`,
  );
  assert.ok(row);
  assert.equal(row.a, row.h, 'sum(abalance) = sum(delta)');
  assert.equal(row.t, row.h, 'sum(tbalance) = sum(delta)');
  assert.equal(row.b, row.h, 'sum(bbalance) = sum(delta)');
}

export async function runArchiveRestore(kind: 'fs' | 's3', encrypted: boolean): Promise<void> {
  const repo: RepoFixture = await makeRepo(kind, encrypted);
  const copies = await makeTempDir('wal-copies');
  // Keep a copy of each file PostgreSQL hands over, to compare with what the
  // repository holds after PostgreSQL has recycled its own.
  const archiveCommand = `cp %p ${copies}/%f && ${commandLine('wal-push', '%p %f')}`;
  const src = await createCluster({ name: `src-${kind}${encrypted ? '-enc' : ''}`, archiveCommand, archiveTimeout: '1s', env: repo.env });
  await src.start();
  await src.psql('create table marker(v text); insert into marker values (\'before\')');
  await src.pgbench(['-i', '-s', '2', '-q']);

  // An independent base backup: PostgreSQL's own tool, WAL left to the archive.
  const dst = await createCluster({ name: `dst-${kind}${encrypted ? '-enc' : ''}`, initdb: false, env: repo.env });
  await src.basebackup(dst.pgdata);

  await src.pgbench(['-c', '2', '-j', '2', '-T', '6', '-n']);
  await src.psql("insert into marker values ('after load')");
  const last = await src.psql('select pg_walfile_name(pg_switch_wal())');
  await src.waitForArchived(last, 120_000);
  const expected = await src.psql(SNAPSHOT_SQL);
  await assertPgbenchInvariant(src);
  const [arch] = await src.query<{ archived_count: string; failed_count: string }>('select archived_count::text, failed_count::text from pg_stat_archiver');
  assert.equal(arch?.failed_count, '0', `pg_stat_archiver.failed_count; server log:\n${await src.serverLogTail(40)}`);
  assert.ok(Number(arch?.archived_count) >= 5, `archived ${arch?.archived_count} files`);
  await src.stop();

  // Every segment PostgreSQL archived is stored, and (unencrypted) decodes
  // with the stock zstd to the same bytes.
  const copied = (await readdir(copies)).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  assert.ok(copied.length >= 5);
  const stored = await repo.objects();
  const walObjects = [...stored.keys()].filter((k) => k.includes('/wal/'));
  for (const name of copied) {
    const key = walObjects.find((k) => k.slice(k.lastIndexOf('/') + 1).startsWith(name + '-'));
    assert.ok(key, `segment ${name} is in the repository`);
    if (!encrypted) {
      assert.ok(key.endsWith('.zst'), key);
      const z = spawnSync('zstd', ['-d', '-c', '-q'], { input: stored.get(key)!, maxBuffer: 64 << 20 });
      assert.equal(z.status, 0, `zstd -d ${key}: ${z.stderr.toString()}`);
      assert.ok(z.stdout.equals(await readFile(join(copies, name))), `zstd -d of ${key} equals the original`);
    } else {
      assert.ok(key.endsWith('.zst.enc'), key);
      const raw = stored.get(key)!;
      assert.notEqual(raw.subarray(0, 4).readUInt32LE(0), 0xfd2fb528, 'encrypted object is not a plain zstd frame');
    }
  }

  // Restore: replay the archive through cairn-wal-get to its end.
  await dst.setConf({
    restore_command: commandLine('wal-get', '%f %p --log-level info'),
    archive_mode: 'off',
    recovery_target_timeline: 'latest',
  });
  await dst.writeFile('recovery.signal', '');
  await dst.start({ timeoutSec: 300 });
  await dst.waitForRecoveryEnd(300_000);
  const got = await dst.psql(SNAPSHOT_SQL);
  assert.deepEqual(JSON.parse(got), JSON.parse(expected), 'restored rows equal the source');
  await assertPgbenchInvariant(dst);
  // Prefetch served most segments: PostgreSQL restored more files than
  // cairn-wal-get fetched from the repository itself.
  const log = await dst.serverLog();
  const restored = (log.match(/restored log file "[0-9A-F]{24}" from archive/g) ?? []).length;
  const fetched = (log.match(/cairn-wal-get: "[0-9A-F]{24}" from repository/g) ?? []).length;
  assert.ok(restored >= 5, `restored ${restored} segments`);
  assert.ok(restored - fetched >= 2, `wal-get fetched ${fetched} of ${restored} segments itself; the rest should come from the prefetch spool`);
  await dst.destroy();
  await src.destroy();
}
