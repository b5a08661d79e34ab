// Write-once, proven (issue 18 item 6): an encrypted S3 repository behind the
// fault proxy in write-once mode — every write over an object that exists and
// every delete is refused (403) and recorded, except leases (renewed and
// released) and, while cairn-expire runs, what it deletes. Every tool then
// does its work there as an operator would run it: WAL archiving (and a
// segment pushed twice, as after a crash before PostgreSQL saw the success),
// full and incr backups, a dump, verify, info, prom-export, check, a drill, a
// restore with recovery through wal-get, cairn-copy out of it and into a
// second write-once bucket (twice: the rerun rewrites nothing), and expire.
// After each, the double has refused nothing.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { startFaultProxy, type FaultProxy } from '@cairn/testkit/fault-proxy';
import { makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { cairnOk, restoreAndStart, sleep, switchAndWaitArchived, takeBackup, walPushCommand } from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

/** Leases (backup/dump leases, reader leases) and check's probes change and go by design. */
const mutable = (key: string): boolean => /(^|\/)main\/(locks|readers|probes)\//.test(key);

/** `fixture` with its S3 endpoint replaced by the proxy's. */
function throughProxy(fixture: RepoFixture, proxy: FaultProxy, keyFile: string): RepoFixture {
  const u = new URL(fixture.url.replace(/^s3:/, 'http:'));
  u.searchParams.set('endpoint', proxy.endpoint);
  const url = u.toString().replace(/^http:/, 's3:');
  return { ...fixture, url, encrypted: true, keyFile, env: { ...fixture.env, CAIRN_REPO: url, CAIRN_ENCRYPTION_KEY_FILE: keyFile } };
}

interface State {
  repo: RepoFixture;
  proxy: FaultProxy;
  cluster: Cluster;
  full: string;
  incr: string;
}

describe('write-once storage: no tool rewrites or deletes an object it stored', { timeout: 900_000 }, () => {
  let st: State | undefined;
  const state = (): State => {
    assert.ok(st, 'the setup step failed; see the first failure');
    return st;
  };
  /** Fails naming `step` when the double refused anything since the last check. */
  let seen = 0;
  const nothingRefused = (step: string) => {
    const refused = state().proxy.refused.slice(seen);
    seen = state().proxy.refused.length;
    assert.deepEqual(refused, [], `${step}: the write-once store refused ${refused.map((r) => `${r.why} of ${r.key}`).join(', ')}`);
  };

  it('archives WAL and takes a full and an incr backup and a dump', async () => {
    const s3 = await makeRepo('s3', true);
    const target = new URL(s3.endpoint!);
    const proxy = await startFaultProxy({ host: target.hostname, port: Number(target.port) });
    proxy.writeOnce({ mutable });
    const repo = throughProxy(s3, proxy, s3.keyFile!);
    const cluster = await createCluster({ name: 'worm-src', archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env });
    st = { repo, proxy, cluster, full: '', incr: '' };
    await cluster.start();
    await cluster.psql("create table marker(v text); insert into marker values ('a')");
    await cluster.pgbench(['-i', '-s', '1', '-q']);
    st.full = await takeBackup(cluster, repo, 'full');
    await cluster.pgbench(['-c', '2', '-j', '2', '-t', '200', '-n']);
    st.incr = await takeBackup(cluster, repo, 'incr');
    await cairnOk('dump', ['--dbname', 'postgres'], { ...cluster.env, ...repo.env });
    await cluster.psql("insert into marker values ('b')");
    await switchAndWaitArchived(cluster);
    nothingRefused('archiving, basebackup and dump');
    assert.ok(proxy.requests > 0);
  });

  it('a segment pushed again (a retried archive_command) is "already there", not rewritten', async () => {
    const { cluster, repo } = state();
    const status = join(cluster.pgdata, 'pg_wal', 'archive_status');
    const done = (await readdir(status)).filter((n) => /^[0-9A-F]{24}\.done$/.test(n)).map((n) => n.slice(0, 24)).sort();
    const seg = done.at(-1);
    assert.ok(seg !== undefined, 'an archived segment still in pg_wal');
    await cairnOk('wal-push', [join(cluster.pgdata, 'pg_wal', seg), seg], { ...cluster.env, ...repo.env });
    nothingRefused('wal-push of an archived segment');
  });

  it('verify, info, prom-export and check read, and store only new objects', async () => {
    const { repo, cluster } = state();
    await cairnOk('verify', [], repo.env);
    await cairnOk('info', ['--json'], repo.env);
    await cairnOk('prom-export', [], repo.env);
    await cairnOk('check', [], { ...cluster.env, ...repo.env });
    nothingRefused('verify, info, prom-export and check');
  });

  it('a drill and a restore with recovery through wal-get', async () => {
    const { repo, cluster } = state();
    await cluster.stop();
    const scratch = await makeTempDir('worm-drill');
    const d = await runCairn('drill', ['--json', '--scratch-dir', scratch], { env: repo.env, timeoutMs: 300_000 });
    assert.equal(d.code, 0, d.stderr);
    nothingRefused('drill');
    const { cluster: restored } = await restoreAndStart(repo, 'worm-restored', []);
    assert.equal(await restored.psql('select count(*) from marker'), '2');
    await restored.destroy();
    nothingRefused('restore and wal-get');
  });

  it('cairn-copy out of it, and into a second write-once bucket twice', async () => {
    const { repo, proxy } = state();
    const fs = await makeRepo('fs', false);
    const env = { ...repo.env, CAIRN_REPO: '' };
    await cairnOk('copy', ['--from', repo.url, '--to', fs.url], env);
    const other = throughProxy(await makeRepo('s3', false), proxy, repo.keyFile!);
    await cairnOk('copy', ['--from', fs.url, '--to', other.url], env);
    const again = await cairnOk('copy', ['--from', fs.url, '--to', other.url, '--json'], env);
    assert.equal((JSON.parse(again.stdout) as { copied: { objects: number } }).copied.objects, 0);
    nothingRefused('copy');
    await cairnOk('verify', [], other.env);
    nothingRefused('verify of the copy');
  });

  it('expire deletes only while it is allowed to, and rewrites nothing', async () => {
    const { repo, proxy, full, incr } = state();
    // --keep-full 1 keeps the one chain and removes the WAL from before it.
    // Where the store refuses the deletes (retention not over), nothing is
    // lost and nothing fails: expire reports those objects as kept.
    const before = proxy.refused.length;
    const denied = await runCairn('expire', ['--keep-full', '1', '--json'], { env: repo.env });
    assert.equal(denied.code, 0, denied.stderr);
    const refused = proxy.refused.slice(before);
    seen = proxy.refused.length;
    assert.ok(refused.length > 0 && refused.every((r) => r.why === 'delete' && r.key.includes('/main/wal/')), `expire tried to delete only old WAL: ${JSON.stringify(refused)}`);
    assert.match(denied.stdout + denied.stderr, /kept/);
    proxy.writeOnce({ mutable, deletable: () => true });
    try {
      await cairnOk('expire', ['--keep-full', '1'], repo.env);
    } finally {
      proxy.writeOnce({ mutable });
    }
    nothingRefused('expire');
    const manifests = (await repo.keys('main/backups/')).filter((k) => k.endsWith('/manifest.json'));
    assert.deepEqual(manifests, [`main/backups/${full}/manifest.json`, `main/backups/${incr}/manifest.json`], 'the chain is kept');
    await cairnOk('verify', [], repo.env);
    nothingRefused('verify after expire');
    await proxy.stop();
  });
});
