// The drill's role (issue 14 item 3): a cluster whose bootstrap superuser is
// not the OS user that backs it up and drills it (a packaged cluster's is
// postgres). basebackup records the superuser in the manifest; a drill with
// no PGUSER connects as it and passes; PGUSER, then --db-user, win over it.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { makeTempDir } from '@cairn/testkit/tmp';
import { pgUser } from '@cairn/testkit/run-as';
import type { DrillResult } from '@cairn/core/drill/result-format';
import { makeRepo } from './repo-fixture.js';
import { readStoredManifest, switchAndWaitArchived, takeBackup, walPushCommand } from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

describe('cairn-drill: the role it connects as', { timeout: 300_000 }, () => {
  it('the manifest\'s superuser when PGUSER is unset; PGUSER and --db-user win over it', async () => {
    const repo = await makeRepo('fs', false);
    const superuser = 'pgadmin';
    assert.notEqual(pgUser().name, superuser, 'the OS user is not the superuser');
    const src = await createCluster({ name: 'drill-role', superuser, archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env });
    await src.start();
    await src.psql('create table t as select g from generate_series(1, 10) g');
    const id = await takeBackup(src, repo);
    assert.equal((await readStoredManifest(repo, id) as unknown as { superuser?: string }).superuser, superuser, 'basebackup recorded the role with oid 10');
    await switchAndWaitArchived(src);
    const scratch = await makeTempDir('drill-role-scratch');
    const drill = async (env: Record<string, string>, extra: string[] = []) => {
      const r = await runCairn('drill', ['--json', '--log-level', 'info', '--scratch-dir', scratch, '--no-amcheck', ...extra], { env: { ...repo.env, ...env }, timeoutMs: 240_000 });
      assert.ok(r.stdout.trim() !== '', `cairn-drill printed a result (exit ${r.code}):\n${r.stderr}`);
      return { code: r.code, result: JSON.parse(r.stdout) as DrillResult, stderr: r.stderr };
    };

    // No PGUSER: the OS user is no role in the restored cluster; the manifest's is.
    const ok = await drill({});
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.result.ok, true, ok.stderr);
    assert.match(ok.stderr, /the checks connect as role \\?"pgadmin\\?" \(from the backup manifest\)/);

    // PGUSER is read (here a role that does not exist: a configuration error, exit 3).
    const bad = await drill({ PGUSER: 'nosuchrole' });
    assert.equal(bad.code, 3, bad.stderr);
    assert.match(bad.stderr, /the checks connect as role \\?"nosuchrole\\?" \(from PGUSER\)/);
    assert.match(bad.stderr, /nosuchrole/);

    // --db-user wins over PGUSER.
    const flag = await drill({ PGUSER: 'nosuchrole' }, ['--db-user', superuser]);
    assert.equal(flag.code, 0, flag.stderr);
    assert.match(flag.stderr, /the checks connect as role \\?"pgadmin\\?" \(from --db-user\)/);
  });
});
