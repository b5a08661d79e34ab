// Leases between basebackup, dump and expire of one cluster (docs/design.md §4.5):
// the loser exits 5 naming the holder, --lock-wait waits, a lease whose
// holder is gone (expired, or a dead process of this host) is taken over, and
// an expire that runs beside a backup deletes nothing the backup needs.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { chownToPgUser } from '@cairn/testkit/tmp';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { processIdentity } from '@cairn/core/repo/lease';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { assertRestoredEquals, cairnOk, restoreAndStart, SNAPSHOT_SQL, takeBackup, walPushCommand } from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

let repo: RepoFixture;
let src: Cluster;
const env = () => ({ ...src.env, ...repo.env });

/** Plants a lease record as another holder would have written it. */
async function plantLease(name: string, over: Record<string, unknown>): Promise<void> {
  const t = Date.now();
  const rec = {
    format: 'cairn.lease/1',
    name,
    tool: 'cairn-basebackup',
    holder: 'planted',
    host: 'db-2',
    pid: 1234,
    acquiredAt: new Date(t).toISOString(),
    renewedAt: new Date(t).toISOString(),
    expiresAt: new Date(t + 60_000).toISOString(),
    ...over,
  };
  const dir = join(repo.url, 'main', 'locks');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, name), JSON.stringify(rec));
  await chownToPgUser(join(repo.url, 'main'), { recursive: true });
}

function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

async function backupIds(): Promise<string[]> {
  return [...new Set((await repo.keys('main/backups/')).filter((k) => k.endsWith('/manifest.json')).map((k) => k.split('/')[2]!))];
}

describe('leases', { timeout: 600_000 }, () => {
  before(async () => {
    repo = await makeRepo('fs', false);
    src = await createCluster({ name: 'lease-src', archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env });
    await src.start();
    await src.psql("create table marker(v text); insert into marker values ('leases')");
    await src.pgbench(['-i', '-s', '5', '-q']);
  });

  it('a backup while another holds the lease exits 5 naming the holder, and stores nothing', async () => {
    await plantLease('backup', {});
    const r = await runCairn('basebackup', ['--pgdata', src.pgdata], { env: env() });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.lines[0]!, /^cairn-basebackup: error: lease "backup" of cluster "main" in repository ".*" is held by cairn-basebackup \(pid 1234 on host "db-2", since [^)]*\); wait for it to finish \(--lock-wait SECONDS waits for it\)/);
    assert.deepEqual(await repo.keys('main/backups/'), []);
  });

  it('--lock-wait waits until the holder\'s lease runs out, then takes it over', async () => {
    await plantLease('backup', { expiresAt: new Date(Date.now() + 2000).toISOString() });
    const r = await cairnOk('basebackup', ['--pgdata', src.pgdata, '--lock-wait', '60'], env());
    assert.match(r.stderr, /took over the stale lease of cairn-basebackup \(pid 1234 on host "db-2"/);
    assert.equal((await backupIds()).length, 1);
    assert.deepEqual(await repo.keys('main/locks/'), [], 'the lease is released');
  });

  it('the lease of a killed run on this host is taken over at once', async () => {
    await plantLease('backup', { host: hostname(), pid: deadPid(), ...processIdentity() });
    const r = await cairnOk('basebackup', ['--pgdata', src.pgdata, '--type', 'incr'], env());
    assert.match(r.stderr, /took over the stale lease/);
  });

  it('of two backups started together one exits 5; a dump lease does not stop a backup', async () => {
    await plantLease('dump', { tool: 'cairn-dump' });
    const runs = await Promise.all([0, 1].map(() => runCairn('basebackup', ['--pgdata', src.pgdata], { env: env(), timeoutMs: 300_000 })));
    assert.deepEqual(runs.map((r) => r.code).sort(), [0, 5], runs.map((r) => r.stderr).join('\n'));
    assert.match(runs.find((r) => r.code === 5)!.stderr, /lease "backup" of cluster "main" .* is held by cairn-basebackup \(pid \d+/);
    await plantLease('dump', { expiresAt: new Date(0).toISOString() });
  });

  it('expire beside a running backup: one of them exits 5 or waits, and nothing the backup needs goes', async () => {
    await src.pgbench(['-c', '2', '-t', '500', '-n']);
    const before = await backupIds();
    // Deterministically first: a backup running on another host keeps expire out.
    await plantLease('backup', {});
    const held = await runCairn('expire', ['--keep-full', '1'], { env: env() });
    assert.equal(held.code, 5, held.stderr);
    assert.match(held.lines[0]!, /^cairn-expire: error: lease "backup" of cluster "main" in repository ".*" is held by cairn-basebackup \(pid 1234 on host "db-2"/);
    assert.deepEqual(await backupIds(), before, 'nothing was deleted');
    await plantLease('backup', { expiresAt: new Date(0).toISOString() });
    // The expire starts while the backup runs; whichever holds the lease, the
    // other exits 5 (or, with --lock-wait, runs after it).
    const backup = runCairn('basebackup', ['--pgdata', src.pgdata, '--type', 'incr'], { env: env(), timeoutMs: 300_000 });
    await new Promise((r) => setTimeout(r, 300));
    const expire = await runCairn('expire', ['--keep-full', '1'], { env: env() });
    const b = await backup;
    const codes = `backup ${b.code}, expire ${expire.code}`;
    assert.ok(['backup 0, expire 5', 'backup 5, expire 0', 'backup 0, expire 0'].includes(codes), `${codes}:\n${b.stderr}\n${expire.stderr}`);
    if (expire.code === 5) assert.match(expire.stderr, /lease "backup" of cluster "main" .* is held by cairn-basebackup/);
    if (b.code === 5) assert.match(b.stderr, /lease "backup" of cluster "main" .* is held by cairn-expire/);
    const ids = await backupIds();
    if (b.code === 0) assert.ok(ids.includes(b.stdout.trim()), `${b.stdout.trim()} is kept`);
    assert.ok(ids.length <= before.length + 1);
    const snapshot = await src.psql(SNAPSHOT_SQL);
    // Two expires at once with --lock-wait: both finish, one after the other.
    const both = await Promise.all([0, 1].map(() => runCairn('expire', ['--keep-full', '1', '--lock-wait', '60'], { env: env() })));
    assert.deepEqual(both.map((r) => r.code), [0, 0], both.map((r) => r.stderr).join('\n'));
    await takeBackup(src, repo, 'incr');
    const restored = await restoreAndStart(repo, 'lease-restore', ['--target', 'immediate', '--target-action', 'promote']);
    await assertRestoredEquals(restored.cluster, snapshot, 'after expire');
    await restored.cluster.destroy();
  });
});

describe('leases on S3 without conditional writes (s3rver)', { timeout: 300_000 }, () => {
  let s3: RepoFixture;
  const plant = async (over: Record<string, unknown>) => {
    const t = Date.now();
    const rec = { format: 'cairn.lease/1', name: 'backup', tool: 'cairn-basebackup', holder: 'planted', host: 'db-2', pid: 1234, acquiredAt: new Date(t).toISOString(), renewedAt: new Date(t).toISOString(), expiresAt: new Date(t + 60_000).toISOString(), ...over };
    await s3.tamper('main/locks/backup', Buffer.from(JSON.stringify(rec)));
  };

  it('expire exits 5 while a backup elsewhere holds the lease, takes an expired one over; racing expires exit 0 or 5, and with --lock-wait all finish', async () => {
    s3 = await makeRepo('s3', false);
    await plant({});
    const held = await runCairn('expire', ['--keep-full', '1'], { env: s3.env });
    assert.equal(held.code, 5, held.stderr);
    assert.match(held.lines[0]!, /^cairn-expire: error: lease "backup" of cluster "main" in repository "s3:\/\/.*" is held by cairn-basebackup \(pid 1234 on host "db-2"/);
    await plant({ expiresAt: new Date(Date.now() - 1000).toISOString() });
    const took = await runCairn('expire', ['--keep-full', '1'], { env: s3.env });
    assert.equal(took.code, 0, took.stderr);
    assert.match(took.stderr, /took over the stale lease of cairn-basebackup \(pid 1234 on host "db-2"/);
    // Creating a lease here is check-then-write; the read-back after a
    // second decides. Racing without --lock-wait: never two at once.
    const race = await Promise.all([0, 1, 2].map(() => runCairn('expire', ['--keep-full', '1'], { env: s3.env })));
    const codes = race.map((r) => r.code).sort();
    assert.ok(codes.every((c) => c === 0 || c === 5) && codes.includes(0), `${codes}: ${race.map((r) => r.stderr).join('\n')}`);
    const waited = await Promise.all([0, 1].map(() => runCairn('expire', ['--keep-full', '1', '--lock-wait', '60'], { env: s3.env })));
    assert.deepEqual(waited.map((r) => r.code), [0, 0], waited.map((r) => r.stderr).join('\n'));
    assert.deepEqual(await s3.keys('main/locks/'), [], 'every lease was released');
  });
});
