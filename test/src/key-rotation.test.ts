// Keys from where operators keep them (issue 18 item 4), end to end with a
// real cluster: a key command that fails or gives the wrong key is one line
// and exit 3 with nothing written; a backup and WAL archived under a key
// command restore after cairn-rekey with the new key, and the old key no
// longer opens the repository.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { SNAPSHOT_SQL } from './archive-restore.js';
import { assertRestoredEquals } from './pitr-harness.js';
import { makeKeyFile, makeRepo } from './repo-fixture.js';
import { commandLine, runCairn } from './tools.js';

after(runCleanups);

test('key command: a failing or wrong one is exit 3 and writes nothing; cairn-rekey rotates, the new key restores everything', { timeout: 300_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const key1 = await makeKeyFile();
  const key2 = await makeKeyFile();
  const key3 = await makeKeyFile();
  // The key comes from a program, as from Vault or `aws kms decrypt`; no shell runs it.
  const byCommand = { ...repo.env, CAIRN_ENCRYPTION_KEY_COMMAND: `cat ${key1}` };
  const src = await createCluster({ name: 'keys', archiveCommand: commandLine('wal-push', '%p %f'), archiveTimeout: '1s', env: byCommand });
  await src.start();
  await src.psql('create table marker(v text)');
  await src.pgbench(['-i', '-s', '1', '-q']);

  // A failing command: one line naming the program, its status and its stderr; exit 3; nothing stored.
  const failing = { ...src.env, ...repo.env, CAIRN_ENCRYPTION_KEY_COMMAND: `sh -c "echo 'vault: permission denied' >&2; exit 2"` };
  let r = await runCairn('basebackup', ['--pgdata', src.pgdata], { env: failing });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.lines[0]!, /^cairn-basebackup: error: encryption key command "sh" failed \(exit status 2\): vault: permission denied; run the command by hand as this user/);
  r = await runCairn('basebackup', ['--pgdata', src.pgdata], { env: { ...src.env, ...repo.env, CAIRN_ENCRYPTION_KEY_COMMAND: '/nonexistent/vault kv get secret/cairn' } });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.lines[0]!, /encryption key command "\/nonexistent\/vault" could not run/);
  // Both key sources at once is a configuration error too.
  r = await runCairn('basebackup', ['--pgdata', src.pgdata, '--encryption-key-file', key1], { env: { ...src.env, ...byCommand } });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /both an encryption key file and an encryption key command are configured/);
  // (The archiver runs with the working command meanwhile: only what it stores may be there.)
  assert.deepEqual((await repo.keys('main/backups/')), [], 'no backup object was written');

  // The working command: a backup, then more changes archived as WAL.
  const env1 = { ...src.env, ...byCommand };
  r = await runCairn('basebackup', ['--pgdata', src.pgdata], { env: env1 });
  assert.equal(r.code, 0, r.stderr);
  const backupId = r.stdout.trim();
  assert.ok(!r.stderr.includes((await import('node:fs')).readFileSync(key1, 'utf8').trim()), 'the key is never printed');
  const stored = await repo.keys('main/');
  assert.ok(stored.includes('main/keys/datakey-000001.json'), `a data key object: ${stored.filter((k) => !k.includes('/wal/') && !k.includes('/backups/')).join(', ')}`);
  await src.pgbench(['-t', '200', '-c', '2']);
  await src.psql("create table after_backup as select 'written under key 1'::text as v; insert into marker values ('after the backup')");
  const snapshot = await src.psql(SNAPSHOT_SQL);
  const last = (await src.psql('select pg_walfile_name(pg_switch_wal())')).trim();
  await src.waitForArchived(last);
  await src.stop();

  // A command printing another key: refused before anything is written.
  const before = (await repo.keys('main/')).length;
  r = await runCairn('basebackup', ['--pgdata', src.pgdata], { env: { ...src.env, ...repo.env, CAIRN_ENCRYPTION_KEY_COMMAND: `cat ${key3}` } });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.lines[0]!, /the encryption key \(id [0-9a-f]{16}\) does not open repository ".*" cluster "main"/);
  assert.equal((await repo.keys('main/')).length, before, 'nothing was written with the wrong key');

  // Rotation: one small object; the old key stops opening the repository.
  r = await runCairn('rekey', ['--old-key-command', `cat ${key1}`, '--new-key-file', key2], { env: repo.env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /data key [0-9a-f]{16} now wrapped by key [0-9a-f]{16} \(version 2; was key [0-9a-f]{16}, version 1\)/);
  const keysNow = (await repo.keys('main/keys/')).sort();
  assert.deepEqual(keysNow, ['main/keys/datakey-000002.json']);
  assert.equal((await repo.keys('main/')).length, before, 'nothing but the key object changed');

  const old = await runCairn('restore-plan', [], { env: { ...repo.env, CAIRN_ENCRYPTION_KEY_FILE: key1 } });
  assert.equal(old.code, 3, old.stderr);
  assert.match(old.lines[0]!, /does not open repository .* its data key \(version 2\) is wrapped by key/);
  r = await runCairn('rekey', ['--old-key-file', key1, '--new-key-file', key3], { env: repo.env });
  assert.equal(r.code, 3, 'the old key cannot rotate again');

  // The new key reads everything written before: verify, then a restore of
  // the backup and the WAL through the restore_command to the latest state.
  const env2 = { ...repo.env, CAIRN_ENCRYPTION_KEY_FILE: key2 };
  r = await runCairn('verify', [], { env: env2 });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const dst = await createCluster({ name: 'keys-dst', initdb: false, env: env2, conf: { archive_mode: 'off' } });
  r = await runCairn('restore', ['--pgdata', dst.pgdata, '--target', 'latest', '--target-action', 'promote'], { env: { ...dst.env, ...env2 } });
  assert.equal(r.code, 0, r.stderr);
  await dst.start({ timeoutSec: 120 });
  await dst.waitForRecoveryEnd(120_000);
  await assertRestoredEquals(dst, snapshot, `backup ${backupId} and WAL written before the rotation, restored with the new key`);
  assert.equal((await dst.psql('select v from after_backup')).trim(), 'written under key 1');
});
