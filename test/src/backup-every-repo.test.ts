// Every repository, one read (issue 18 item 1): with a file and an S3
// repository configured, one cairn-basebackup run stores a full and then an
// incr in both, and one cairn-dump run a dump in both, each repository under
// its own data key; the S3 copy restores to the source's rows. With the S3
// side failing mid-backup (the fault proxy), the file side still holds the
// whole backup, S3 holds no manifest of it, and the exit status names S3.
// --repo-only picks one repository.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { startFaultProxy, type FaultProxy } from '@cairn/testkit/fault-proxy';
import type { InfoDocument } from '@cairn/core/info/report';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { assertRestoredEquals, cairnOk, restoreAndStart, SNAPSHOT_SQL, switchAndWaitArchived, walPushCommand } from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

/** The repository URL through the proxy, failing fast (no SDK retries, short timeouts). */
function viaProxy(url: string, proxyEndpoint: string): string {
  const u = new URL(url.replace(/^s3:/, 'http:'));
  u.searchParams.set('endpoint', proxyEndpoint);
  u.searchParams.set('connect-timeout-ms', '1000');
  u.searchParams.set('request-timeout-ms', '4000');
  u.searchParams.set('max-attempts', '1');
  return u.toString().replace(/^http:/, 's3:');
}

interface State {
  fs: RepoFixture;
  s3: RepoFixture;
  s3Url: string;
  proxy: FaultProxy;
  /** Both repositories, one key (each repository wraps its own data key with it). */
  env: Record<string, string>;
  src: Cluster;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

/** A lease of another run on another host, live for ten minutes, as it would have written it; when. */
async function plantLease(repo: RepoFixture, name: string, tool: string): Promise<number> {
  const t = Date.now();
  await repo.tamper(`main/locks/${name}`, Buffer.from(JSON.stringify({
    format: 'cairn.lease/1', name, tool, holder: 'planted', host: 'db-2', pid: 1234,
    acquiredAt: new Date(t).toISOString(), renewedAt: new Date(t).toISOString(), expiresAt: new Date(t + 600_000).toISOString(),
  })));
  return t;
}

async function info(env: Record<string, string>): Promise<InfoDocument> {
  return JSON.parse((await cairnOk('info', ['--json'], env)).stdout) as InfoDocument;
}

/** The backups and dumps each repository lists: the file one, then S3. */
async function listings(s: State): Promise<{ repo: string; backups: { id: string; type: string; parent: string | null }[]; dumps: { id: string }[] }[]> {
  const doc = await info(s.env);
  assert.deepEqual(doc.errors, [], 'info reads both repositories');
  assert.equal(doc.repositories.length, 2);
  return doc.repositories.map((r) => ({ repo: r.repo, backups: r.backups, dumps: r.dumps }));
}

describe('basebackup and dump to every repository (file + S3)', { timeout: 900_000 }, () => {
  it('sets up a file and an S3 repository behind a fault proxy, one key, and a source archiving to both', async () => {
    const fs = await makeRepo('fs', true);
    const s3 = await makeRepo('s3', false);
    const target = new URL(s3.endpoint!);
    const proxy = await startFaultProxy({ host: target.hostname, port: Number(target.port) });
    // As AWS S3, R2 and MinIO do. Behind s3rver alone, which ignores
    // If-None-Match, two first writers of the encrypted cluster (wal-push and
    // its push-ahead worker) can race on its data key: see the stop-30 note.
    proxy.honourIfNoneMatch(true);
    const s3Url = viaProxy(s3.url, proxy.endpoint);
    const env = { ...s3.env, ...fs.env, CAIRN_REPO: `${fs.url},${s3Url}` };
    const src = await createCluster({ name: 'every-repo', archiveCommand: walPushCommand(), archiveTimeout: '1s', env });
    await src.start();
    await src.psql('create table marker(v text); insert into marker values (1)');
    await src.pgbench(['-i', '-s', '2', '-q']);
    await src.psql('create database app');
    await src.pgbench(['-i', '-s', '1', '-q', 'app']);
    await switchAndWaitArchived(src);
    st = { fs, s3, s3Url, proxy, env, src };
  });

  it('a full and an incr land in both repositories from one run each, each under its own data key', async () => {
    const s = state();
    const full = (await cairnOk('basebackup', ['--pgdata', s.src.pgdata, '--type', 'full'], { ...s.src.env, ...s.env })).stdout.trim();
    await s.src.pgbench(['-t', '300', '-c', '2']);
    await s.src.psql("update marker set v = '2'");
    const snapshot = await s.src.psql(SNAPSHOT_SQL);
    const run = await cairnOk('basebackup', ['--pgdata', s.src.pgdata, '--type', 'incr'], { ...s.src.env, ...s.env });
    const incr = run.stdout.trim();
    assert.match(incr, /I$/);
    assert.doesNotMatch(run.stderr, /first repository|run once per repository/, 'no warning about the first repository only');

    for (const l of await listings(s)) {
      assert.deepEqual(l.backups.map((b) => [b.id, b.type, b.parent]), [[full, 'full', null], [incr, 'incr', full]], `backups in "${l.repo}"`);
    }
    // Each repository has a data key of its own (wrapped by the one operator
    // key), and the same file is stored under each: different bytes.
    const dataKeyCheck = async (repo: RepoFixture) => {
      const objs = await repo.objects('main/keys/');
      assert.equal(objs.size, 1, `one data key object in "${repo.url}"`);
      return (JSON.parse([...objs.values()][0]!.toString('utf8')) as { dataKeyCheck: string }).dataKeyCheck;
    };
    assert.notEqual(await dataKeyCheck(s.fs), await dataKeyCheck(s.s3), 'two data keys');
    const bundle = `main/backups/${incr}/bundles/000001.tar`;
    const [fsBundle, s3Bundle] = [(await s.fs.objects(bundle)).get(bundle), (await s.s3.objects(bundle)).get(bundle)];
    assert.ok(fsBundle && s3Bundle, `"${bundle}" is stored in both`);
    assert.notDeepEqual(fsBundle, s3Bundle, 'encrypted under different data keys');
    // Whole in both: verify reads every object back, in each repository.
    await cairnOk('verify', [], { ...s.env, CAIRN_REPO: s.fs.url });
    await cairnOk('verify', [], { ...s.env, CAIRN_REPO: s.s3Url });
    // The S3 copy of the chain restores to the source's rows at the incr.
    const { cluster } = await restoreAndStart({ ...s.s3, env: { ...s.s3.env, ...s.fs.env, CAIRN_REPO: s.s3Url } }, 'every-repo-from-s3', ['--set', incr, '--target', 'immediate', '--target-action', 'promote']);
    await assertRestoredEquals(cluster, snapshot, 'restore of the incr from the S3 repository');
    await cluster.stop();
  });

  it('a dump lands in both repositories from one run; --repo-only picks one', async () => {
    const s = state();
    const both = (await cairnOk('dump', ['--dbname', 'app'], { ...s.src.env, ...s.env })).stdout.trim();
    const [, id] = both.split('/');
    // The next second: dump ids are per second.
    await new Promise((r) => setTimeout(r, 1100));
    const one = (await cairnOk('dump', ['--dbname', 'app', '--repo-only', '1'], { ...s.src.env, ...s.env })).stdout.trim();
    const [, oneId] = one.split('/');
    const [fsList, s3List] = await listings(s);
    assert.deepEqual(fsList!.dumps.map((d) => d.id), [id, oneId], 'both dumps in the file repository');
    assert.deepEqual(s3List!.dumps.map((d) => d.id), [id], 'only the first dump in S3');
    for (const repo of [s.fs.url, s.s3Url]) await cairnOk('verify', ['--dump', both], { ...s.env, CAIRN_REPO: repo });

    const bad = await runCairn('basebackup', ['--pgdata', s.src.pgdata, '--repo-only', '3'], { env: { ...s.src.env, ...s.env } });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--repo-only "3" is none of the 2 configured repositories/);
  });

  it('a dump lease held in S3 keeps S3 out: the file repository holds the dump and the run exits 5 naming S3', async () => {
    const s = state();
    await plantLease(s.s3, 'dump', 'cairn-dump');
    try {
      const r = await runCairn('dump', ['--dbname', 'app'], { env: { ...s.src.env, ...s.env } });
      assert.equal(r.code, 5, r.stderr);
      const name = r.stdout.trim();
      assert.match(name, /^app\/\d{8}-\d{6}L$/, `the dump the file repository holds, on stdout: ${r.stderr}`);
      const s3Name = new URL(s.s3Url.replace(/^s3:/, 'http:')).hostname;
      assert.match(r.stderr, new RegExp(`dump ${name} is not in repository "s3://${s3Name}/[^"]*" \\(lease "dump" of cluster "main" in repository "s3://${s3Name}/[^"]*" is held by cairn-dump \\(pid 1234 on host "db-2"`));
      const [fsList, s3List] = await listings(s);
      const id = name.split('/')[1];
      assert.ok(fsList!.dumps.some((d) => d.id === id), 'the file repository holds the dump');
      assert.ok(!s3List!.dumps.some((d) => d.id === id), 'S3 does not');
      assert.deepEqual(await s.s3.keys(`main/dumps/app/${id}/`), [], 'and stores nothing of it');
      await cairnOk('verify', ['--dump', name], { ...s.env, CAIRN_REPO: s.fs.url });
    } finally {
      await s.s3.remove('main/locks/dump');
    }
  });

  it('a backup lease held in S3 keeps S3 out, and what the holder may be writing there under the same id is left alone', async () => {
    const s = state();
    const t = await plantLease(s.s3, 'backup', 'cairn-basebackup');
    // The holder's objects, not yet with a manifest, under every id this run may take.
    const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
    const decoys = Array.from({ length: 90 }, (_, i) => `main/backups/${stamp(new Date(t + i * 1000))}F/data/PG_VERSION.zst`);
    await Promise.all(decoys.map((k) => s.s3.tamper(k, Buffer.from('the other run\'s object'))));
    try {
      const r = await runCairn('basebackup', ['--pgdata', s.src.pgdata, '--type', 'full'], { env: { ...s.src.env, ...s.env } });
      assert.equal(r.code, 5, r.stderr);
      const id = r.stdout.trim();
      assert.ok(decoys.some((k) => k.includes(`/${id}/`)), `the run took an id (${id}) the holder's objects are under`);
      const s3Name = new URL(s.s3Url.replace(/^s3:/, 'http:')).hostname;
      assert.match(r.stderr, new RegExp(`backup ${id} is not in repository "s3://${s3Name}/[^"]*" \\(lease "backup" of cluster "main"`));
      const left = new Set(await s.s3.keys('main/backups/'));
      assert.deepEqual(decoys.filter((k) => !left.has(k)), [], 'every object of the holder is still there');
      await cairnOk('verify', ['--set', id], { ...s.env, CAIRN_REPO: s.fs.url });
    } finally {
      await Promise.all([s.s3.remove('main/locks/backup'), ...decoys.map((k) => s.s3.remove(k))]);
    }
  });

  it('with S3 failing mid-backup, the file repository keeps the whole backup and the exit status names S3', async () => {
    const s = state();
    s.proxy.trace(true);
    const run = runCairn('basebackup', ['--pgdata', s.src.pgdata, '--type', 'full', '--archive-timeout', '20'], { env: { ...s.src.env, ...s.env }, timeoutMs: 300_000 });
    // Fail S3 once the backup writes its first object there.
    const deadline = Date.now() + 120_000;
    while (!s.proxy.traced.some((t) => t.method === 'PUT' && /\/main\/backups\/[^/]+\//.test(t.url))) {
      assert.ok(Date.now() < deadline, 'the backup wrote to S3');
      await new Promise((r) => setTimeout(r, 10));
    }
    s.proxy.setMode('error500');
    const r = await run;
    s.proxy.setMode('pass');
    s.proxy.trace(false);
    assert.notEqual(r.code, 0, `exit status: ${r.stderr}`);
    assert.ok([3, 4, 1].includes(r.code), `a documented status (${r.code})`);
    const id = r.stdout.trim();
    assert.match(id, /^\d{8}-\d{6}F$/, `the id of the backup the file repository holds, on stdout: ${r.stderr}`);
    const s3Name = new URL(s.s3Url.replace(/^s3:/, 'http:')).hostname;
    const last = r.lines.filter((l) => /is not in repository/.test(l));
    assert.equal(last.length, 1, r.stderr);
    assert.match(last[0]!, new RegExp(`backup ${id} is not in repository "s3://${s3Name}/`), 'the error names the S3 repository');
    assert.doesNotMatch(last[0]!, new RegExp(`not in repository "(file://)?${s.fs.url}"`), 'and not the file one');

    // The file repository: the backup is listed and verifies whole.
    const [fsList, s3List] = await listings(s);
    assert.ok(fsList!.backups.some((b) => b.id === id), 'the file repository lists the backup');
    assert.ok(!s3List!.backups.some((b) => b.id === id), 'S3 does not');
    await cairnOk('verify', ['--set', id], { ...s.env, CAIRN_REPO: s.fs.url });
    // S3: no manifest of it, so nothing that names missing objects; what it
    // had stored of it is debris, which cairn-expire takes (here after a second).
    assert.deepEqual(await s.s3.keys(`main/backups/${id}/manifest.json`), []);
    await new Promise((r) => setTimeout(r, 2000));
    await cairnOk('expire', ['--keep-full', '100', '--keep-dumps-within', '100d', '--debris-grace', '1s'], { ...s.env, CAIRN_REPO: s.s3Url });
    assert.deepEqual(await s.s3.keys(`main/backups/${id}/`), [], 'no debris of it left in S3');
    assert.equal((await listings(s))[1]!.backups.length, 2, 'S3 keeps its full and incr');
  });

  it('when the repositories\' parents differ, an incr becomes a full in every repository, and the log says why', async () => {
    const s = state();
    // The file repository's newest backup is the full of the step above; S3's is still the incr.
    const r = await cairnOk('basebackup', ['--pgdata', s.src.pgdata, '--type', 'incr'], { ...s.src.env, ...s.env });
    const id = r.stdout.trim();
    assert.match(id, /F$/, 'a full');
    assert.match(r.stderr, /the repositories' parents for a incr backup differ \(.*: \d{8}-\d{6}F, .*: \d{8}-\d{6}I\): taking a full backup in every repository/);
    for (const l of await listings(s)) {
      const b = l.backups.find((x) => x.id === id);
      assert.ok(b, `"${l.repo}" holds ${id}`);
      assert.equal(b.parent, null);
    }
  });

  it('stream mode (--remote, a pg_basebackup tar) lands in both repositories from one stream', async () => {
    const s = state();
    const r = await cairnOk('basebackup', ['--remote', '--pg-bin', s.src.clientBindir, '--type', 'full'], { ...s.src.env, ...s.env });
    const id = r.stdout.trim();
    assert.match(id, /F$/);
    for (const l of await listings(s)) assert.ok(l.backups.some((b) => b.id === id), `"${l.repo}" holds ${id}`);
    for (const repo of [s.fs.url, s.s3Url]) await cairnOk('verify', ['--set', id], { ...s.env, CAIRN_REPO: repo });
  });
});
