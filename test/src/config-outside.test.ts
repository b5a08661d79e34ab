// Configuration outside PGDATA (issue 14 item 2): a cluster in the packaged
// layout (postgresql.conf, pg_hba.conf and pg_ident.conf in another
// directory, conf.d, an include by absolute path; the server started with
// -c config_file=, as NixOS does, and with data_directory set in it, as
// Debian does). A local backup keeps those files; cairn-restore writes them
// with --config-dir (never over existing files without --force) and says
// where they were without it; cairn-drill starts its scratch server on them
// and passes a check of a setting only they hold; a drill whose server cannot
// start prints the server's FATAL line.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import type { DrillResult } from '@cairn/core/drill/result-format';
import { makeRepo } from './repo-fixture.js';
import { parseStoredManifest, switchAndWaitArchived, takeBackup, walPushCommand } from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

interface StoredConfig {
  setting: string;
  source: string;
  path: string;
  key: string;
}

describe('configuration outside the data directory', { timeout: 400_000 }, () => {
  it('is backed up, restored with --config-dir (not over existing files), reported without it, and drilled', async () => {
    const repo = await makeRepo('fs', false);
    const src = await createCluster({ name: 'conf-outside', archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env, externalConfig: { confD: { work_mem: '7MB' } } });
    const etc = src.configDir!;
    // An include by absolute path, outside the configuration directory.
    const extraDir = await makeTempDir('conf-outside-extra', { owner: 'pg' });
    const extra = join(extraDir, 'extra.conf');
    await writeFile(extra, "maintenance_work_mem = '77MB'\n");
    await writeFile(join(etc, 'conf.d', 'zz-extra.conf'), `include '${extra}'\n`);
    await chownToPgUser(extraDir);
    await chownToPgUser(etc);
    assert.ok(!existsSync(join(src.pgdata, 'postgresql.conf')), 'PGDATA holds no postgresql.conf');
    await src.start();
    assert.equal(await src.psql("select current_setting('work_mem') || ' ' || current_setting('maintenance_work_mem')"), '7MB 77MB');
    await src.psql('create table t as select g from generate_series(1, 100) g');
    const id = await takeBackup(src, repo);
    await switchAndWaitArchived(src);

    // The manifest lists them, each at its place relative to postgresql.conf's directory.
    const manifest = parseStoredManifest((await repo.objects(`main/backups/${id}/manifest.json`)).get(`main/backups/${id}/manifest.json`)!.toString('utf8')) as { config?: StoredConfig[] };
    const stored = (manifest.config ?? []).map((c) => `${c.setting} ${c.path} ${c.source}`).sort();
    assert.deepEqual(stored, [
      `config_file postgresql.conf ${join(etc, 'postgresql.conf')}`,
      `hba_file pg_hba.conf ${join(etc, 'pg_hba.conf')}`,
      `ident_file pg_ident.conf ${join(etc, 'pg_ident.conf')}`,
      `include conf.d/cairn-test.conf ${join(etc, 'conf.d', 'cairn-test.conf')}`,
      `include conf.d/zz-extra.conf ${join(etc, 'conf.d', 'zz-extra.conf')}`,
      `include extra.conf ${extra}`,
    ].sort());
    const env = { ...src.env, ...repo.env };

    // Without --config-dir: restored, and a warning names where they were.
    const bare = await createCluster({ name: 'conf-bare', initdb: false });
    let r = await runCairn('restore', ['--pgdata', bare.pgdata, '--set', id, '--target', 'immediate'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /6 configuration files from outside the data directory, not written: .*pg_hba\.conf.*give --config-dir DIR/);

    // With --config-dir: the files as they were, and the server runs on them.
    const dst = await createCluster({ name: 'conf-dst', initdb: false, externalConfig: {} });
    r = await runCairn('restore', ['--pgdata', dst.pgdata, '--set', id, '--target', 'immediate', '--target-action', 'promote', '--config-dir', dst.configDir!], { env });
    assert.equal(r.code, 0, r.stderr);
    for (const f of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf', 'conf.d/cairn-test.conf', 'conf.d/zz-extra.conf']) {
      assert.deepEqual(await readFile(join(dst.configDir!, f)), await readFile(join(etc, f)), f);
    }
    assert.deepEqual(await readFile(join(dst.configDir!, 'extra.conf')), await readFile(extra));
    await dst.start();
    await dst.waitForRecoveryEnd(120_000);
    assert.equal(await dst.psql("select current_setting('work_mem') || ' ' || count(*) from t"), '7MB 100');
    await dst.stop();

    // A file already there is not overwritten, and nothing is written at all.
    const again = await createCluster({ name: 'conf-again', initdb: false });
    r = await runCairn('restore', ['--pgdata', again.pgdata, '--set', id, '--target', 'immediate', '--config-dir', dst.configDir!], { env });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /configuration file .*postgresql\.conf.* exists; cairn-restore does not overwrite it/);
    assert.ok(!existsSync(join(again.pgdata, 'PG_VERSION')), 'nothing was restored');

    // The drill's scratch server reads the backup's own settings.
    const scratch = await makeTempDir('conf-outside-scratch');
    const checks = join(scratch, 'checks.sql');
    await writeFile(checks, "select current_setting('work_mem') = '7MB';\n");
    const drill = async () => {
      const d = await runCairn('drill', ['--json', '--log-level', 'info', '--scratch-dir', scratch, '--no-amcheck', '--check-sql', checks], { env, timeoutMs: 240_000 });
      assert.ok(d.stdout.trim() !== '', `cairn-drill printed a result (exit ${d.code}):\n${d.stderr}`);
      return { code: d.code, result: JSON.parse(d.stdout) as DrillResult, stderr: d.stderr };
    };
    const ok = await drill();
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.result.ok, true, ok.stderr);
    assert.match(ok.stderr, /the scratch server reads the backup's settings from .*config\/postgresql\.conf/);

    // The include by absolute path is gone from this host: the scratch
    // server cannot start, and the drill says why in the server's words.
    await rm(extra);
    const failed = await drill();
    assert.equal(failed.code, 1, failed.stderr);
    assert.equal(failed.result.ok, false);
    assert.match(failed.stderr, /PostgreSQL did not start on the restored data: .*FATAL: .*configuration file .*contains errors/);
    assert.match(failed.stderr, /extra\.conf/);

    // cairn-verify reads the kept files back like the data files.
    r = await runCairn('verify', ['--set', id], { env });
    assert.equal(r.code, 0, r.stderr);
    const hba = manifest.config!.find((c) => c.path === 'pg_hba.conf')!;
    const object = join(repo.url, hba.key);
    const body = await readFile(object);
    body[body.length - 1]! ^= 0xff;
    await writeFile(object, body);
    r = await runCairn('verify', ['--set', id], { env });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout + r.stderr, /pg_hba\.conf/);
  });
});
