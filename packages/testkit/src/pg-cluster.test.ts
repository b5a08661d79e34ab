// The PostgreSQL harness end to end without any cairn tool: archive with cp,
// base backup, restore from the archive, same rows; and nothing left behind.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCleanups } from './cleanup.js';
import { createCluster, processesMentioning, type Cluster } from './pg-cluster.js';
import { makeTempDir } from './tmp.js';

after(runCleanups);

/** Row counts and pgbench's balances: what a restore must reproduce exactly. */
function snapshot(c: Cluster): Promise<string> {
  return c.psql(`select (select count(*) from t),
                        (select count(*) from pgbench_history),
                        (select sum(abalance) from pgbench_accounts),
                        (select sum(tbalance) from pgbench_tellers),
                        (select sum(bbalance) from pgbench_branches),
                        (select sum(delta) from pgbench_history)`);
}

async function switchAndWait(c: Cluster): Promise<string> {
  const seg = await c.psql('select pg_walfile_name(pg_current_wal_lsn())');
  await c.psql('select pg_switch_wal()');
  await c.waitForArchived(seg, 30_000);
  return seg;
}

test('archive, base backup and archive recovery reproduce the data; destroy leaves nothing', { timeout: 120_000 }, async () => {
  const archive = await makeTempDir('archive', { owner: 'pg' });
  const src = await createCluster({
    name: 'src',
    archiveCommand: `test ! -f ${archive}/%f && cp %p ${archive}/%f`,
  });
  await src.start();
  assert.equal(await src.isRunning(), true);
  assert.equal(await src.psql('show data_checksums'), 'on');
  assert.equal(await src.psql('show archive_mode'), 'on');

  await src.psql(`create table t (id int primary key, v text);
                  insert into t select g, md5(g::text) from generate_series(1, 1000) g;`);
  const first = await switchAndWait(src);
  assert.ok(existsSync(join(archive, first)), `${first} in the archive`);

  await src.pgbench(['-i', '-s', '1', '-q']);
  await src.pgbench(['-n', '-T', '2', '-c', '2']);

  const dst = await createCluster({ name: 'dst', initdb: false, restoreCommand: `cp ${archive}/%f %p` });
  await src.basebackup(dst.pgdata);

  // Changes after the backup reach dst only by replaying archived WAL.
  await src.psql(`insert into t select g, 'after backup' from generate_series(1001, 1500) g`);
  await src.pgbench(['-n', '-T', '1', '-c', '2']);
  const expected = await snapshot(src);
  await switchAndWait(src);

  await dst.writeFile('recovery.signal', '');
  await dst.start();
  await dst.waitForRecoveryEnd(60_000);
  const restored = await snapshot(dst);
  assert.equal(restored, expected);
  const [rows, , abal, tbal, bbal, delta] = restored.split('|');
  assert.equal(rows, '1500');
  assert.ok(abal === tbal && tbal === bbal && bbal === delta, `pgbench invariant holds: ${restored}`);
  assert.equal(await dst.psql('show archive_mode'), 'off');
  assert.notEqual(dst.port, src.port);

  await src.destroy();
  await dst.destroy();
  await src.destroy(); // twice is fine
  for (const c of [src, dst]) {
    assert.deepEqual(processesMentioning(c.pgdata), [], `no process left on ${c.pgdata}`);
    assert.equal(existsSync(c.pgdata), false);
    assert.equal(existsSync(c.socketDir), false);
  }
  await runCleanups();
  assert.equal(existsSync(archive), false);
});

test('a server that cannot start fails with its log', { timeout: 60_000 }, async () => {
  const c = await createCluster({ name: 'bad', conf: { shared_buffers: 'plenty' } });
  await assert.rejects(c.start({ timeoutSec: 20 }), (err: Error) => {
    assert.match(err.message, /cluster "bad" did not start/);
    assert.match(err.message, /invalid value for parameter "shared_buffers"/);
    return true;
  });
  await c.destroy();
});

test('start moves to another port when its own was taken', { timeout: 60_000 }, async () => {
  const c = await createCluster({ name: 'busy' });
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(c.port, '127.0.0.1', resolve));
  const taken = c.port;
  try {
    await c.start();
  } finally {
    squatter.close();
  }
  assert.notEqual(c.port, taken);
  assert.equal(c.env['PGPORT'], String(c.port));
  assert.equal(await c.psql('select 1'), '1');
  const rows = await c.query<{ n: string }>('select count(*) as n from pg_database where datname = $1', ['postgres']);
  assert.deepEqual(rows, [{ n: '1' }]);
  await c.destroy();
});
