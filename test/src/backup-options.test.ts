// The options the other suites do not reach: --checksum-delta (content, not
// mtime, decides what an incremental references) and restore --force (a
// non-empty directory is emptied first).

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { SNAPSHOT_SQL } from './archive-restore.js';
import { assertRestoredEquals, readStoredManifest } from './pitr-harness.js';
import { commandLine, runCairn } from './tools.js';
import { makeRepo } from './repo-fixture.js';

after(runCleanups);

test('incremental with --checksum-delta references unchanged content; restore --force replaces a directory', { timeout: 300_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const src = await createCluster({ name: 'opts', archiveCommand: commandLine('wal-push', '%p %f'), archiveTimeout: '1s', env: repo.env });
  await src.start();
  await src.psql('create table marker(v text)');
  await src.pgbench(['-i', '-s', '2', '-q']);
  const env = { ...src.env, ...repo.env };
  const bb = async (args: string[]) => {
    const r = await runCairn('basebackup', ['--pgdata', src.pgdata, ...args], { env });
    assert.equal(r.code, 0, r.stderr);
    return readStoredManifest(repo, r.stdout.trim());
  };
  const full = await bb([]);
  // At once, no changes: by mtime nearly everything was touched in the last
  // second (initdb, pgbench -i); by content nearly nothing changed.
  const byMtime = await bb(['--type', 'incr']);
  const byContent = await bb(['--type', 'incr', '--checksum-delta']);
  assert.equal(byContent.parent, byMtime.id);
  assert.ok(byContent.totals.filesReferenced > byContent.totals.filesStored, `checksum delta referenced ${byContent.totals.filesReferenced}, stored ${byContent.totals.filesStored}`);
  assert.ok(byContent.totals.filesStored <= byMtime.totals.filesStored, `${byContent.totals.filesStored} vs ${byMtime.totals.filesStored} stored`);
  assert.ok(full.totals.filesStored > 900);
  const snapshot = await src.psql(SNAPSHOT_SQL);

  // An old data directory (PG_VERSION) holding something else, restored over
  // with --force (one without PG_VERSION is refused: restore-safety).
  const dst = await createCluster({ name: 'opts-dst', initdb: false, env: repo.env, conf: { archive_mode: 'off' } });
  await writeFile(join(dst.pgdata, 'PG_VERSION'), '15\n');
  await writeFile(join(dst.pgdata, 'stale.txt'), 'old');
  const refused = await runCairn('restore', ['--pgdata', dst.pgdata, '--target', 'immediate', '--set', byContent.id], { env });
  assert.equal(refused.code, 3, refused.stderr);
  const r = await runCairn('restore', ['--pgdata', dst.pgdata, '--target', 'immediate', '--set', byContent.id, '--target-action', 'promote', '--force'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!existsSync(join(dst.pgdata, 'stale.txt')), '--force removed what was there');
  await dst.start({ timeoutSec: 120 });
  await dst.waitForRecoveryEnd(120_000);
  await assertRestoredEquals(dst, snapshot, 'incr by checksum delta, restored with --force');

  // The restored cluster keeps `recovery_target = 'immediate'` in its
  // postgresql.auto.conf after promotion. Back it up (into a repository of
  // its own) and restore that to latest: the old target must not come along
  // (PostgreSQL refuses two targets, and would stop at the wrong place).
  const repo2 = await makeRepo('fs', false);
  await dst.setConf({ archive_mode: 'on', archive_command: `CAIRN_REPO=${repo2.url} ${commandLine('wal-push', '%p %f')}` });
  await dst.restart();
  await dst.psql("insert into marker values ('on the restored cluster')");
  const env2 = { ...dst.env, ...repo2.env };
  const b2 = await runCairn('basebackup', ['--pgdata', dst.pgdata], { env: env2 });
  assert.equal(b2.code, 0, b2.stderr);
  const after2 = await dst.psql(SNAPSHOT_SQL);
  await dst.psql('select pg_switch_wal()');
  await dst.stop();
  const dst2 = await createCluster({ name: 'opts-dst2', initdb: false, env: repo2.env, conf: { archive_mode: 'off' } });
  const r2 = await runCairn('restore', ['--pgdata', dst2.pgdata, '--target', 'latest'], { env: env2 });
  assert.equal(r2.code, 0, r2.stderr);
  const auto = await readFile(join(dst2.pgdata, 'postgresql.auto.conf'), 'utf8');
  assert.match(auto, /^# recovery_target = 'immediate'.*disabled by cairn-restore$/m);
  await dst2.start({ timeoutSec: 120 });
  await dst2.waitForRecoveryEnd(120_000);
  await assertRestoredEquals(dst2, after2, 'a backup of a restored cluster, restored to latest');
});
