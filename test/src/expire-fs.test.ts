// cairn-expire on a real repository (fs): a cluster under pgbench archives
// through cairn-wal-push; full → incr → full → incr; --keep-full 1 is
// planned (--dry-run), applied, and the newest chain still restores to the
// source's last rows. After a promotion (timeline 2, its history archived),
// a second expire keeps the history file and what timeline 2 restores from;
// --keep-dumps 1 removes the older of two dumps and nothing else. A restore
// of the older chain holds a reader lease: expire keeps that chain and its
// WAL, and says why, until the lease lapses; then the chain and the lease go.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { runCleanups } from '@cairn/testkit/cleanup';
import { readerLeaseKey, readReaderLease } from '@cairn/core/repo/reader-lease';
import { openStorage } from '@cairn/core/storage/open';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { chownToPgUser } from '@cairn/testkit/tmp';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import {
  assertRestoredEquals,
  cairnOk,
  readStoredManifest,
  restoreAndStart,
  segmentNo,
  sleep,
  SNAPSHOT_SQL,
  switchAndWaitArchived,
  takeBackup,
  walPushCommand,
} from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

interface PlanJson {
  format: string;
  backups: { id: string; action: 'keep' | 'remove'; reasons: string[] }[];
  wal: { timeline: number; keepFrom: string | null; removed: { from: string; to: string; segments: number } | null }[];
  debris: unknown[];
  readers: { id: string; live: boolean; action: 'keep' | 'remove'; reason: string; backup: string | null; pgdata: string | null; host: string | null }[];
  totals: { backupsRemoved: number; walSegmentsRemoved: number; bytes: number; readersLive: number; backupsKeptForReaders: number };
}

interface State {
  repo: RepoFixture;
  ids: { full1: string; incr1: string; full2: string; incr2: string };
  /** `postgres/ID` of the dumps taken after full1 and after full2. */
  dumps: string[];
  snapshot: string;
  restored?: Cluster;
}
let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

/** WAL segment names (24 hex) stored in the repository, with their keys. */
async function storedWal(repo: RepoFixture): Promise<{ name: string; key: string }[]> {
  return (await repo.keys('main/wal/'))
    .map((key) => ({ key, name: key.slice(key.lastIndexOf('/') + 1).split('-')[0]! }))
    .filter((w) => /^[0-9A-F]{24}$/.test(w.name));
}

describe('cairn-expire (fs repository)', { timeout: 600_000 }, () => {
  it('takes full, incr, full, incr under pgbench traffic', async () => {
    const repo = await makeRepo('fs', false);
    const src = await createCluster({ name: 'expire-src', archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env });
    await src.start();
    await src.psql("create table marker(v text); insert into marker values ('a')");
    await src.pgbench(['-i', '-s', '1', '-q']);
    const full1 = await takeBackup(src, repo, 'full');
    const dump1 = (await cairnOk('dump', ['--dbname', 'postgres'], { ...src.env, ...repo.env })).stdout.trim();
    await src.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
    const incr1 = await takeBackup(src, repo, 'incr');
    await src.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
    const full2 = await takeBackup(src, repo, 'full');
    const dump2 = (await cairnOk('dump', ['--dbname', 'postgres'], { ...src.env, ...repo.env })).stdout.trim();
    await src.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
    const incr2 = await takeBackup(src, repo, 'incr');
    await src.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
    await src.psql("insert into marker values ('b: after the last backup')");
    const snapshot = await src.psql(SNAPSHOT_SQL);
    await switchAndWaitArchived(src);
    await src.stop();
    st = { repo, ids: { full1, incr1, full2, incr2 }, dumps: [dump1, dump2], snapshot };
  });

  it('a restore of the older chain holds a reader lease: expire keeps that chain and says why; once lapsed, it protects nothing', async () => {
    const { repo, ids } = state();
    // Laid down, not started: a recovery that has not fetched its WAL yet (or is paused).
    const target = await createCluster({ name: 'expire-leased', initdb: false, env: repo.env, conf: { archive_mode: 'off' } });
    const restored = await cairnOk('restore', ['--pgdata', target.pgdata, '--json', '--set', ids.incr1, '--target', 'immediate', '--lease-lifetime', '1h'], repo.env);
    const leaseId = (JSON.parse(restored.stdout) as { lease?: string }).lease;
    assert.ok(leaseId !== undefined, restored.stdout);
    assert.ok((await repo.keys('main/readers/')).includes(readerLeaseKey('main', leaseId)));

    const m1 = await readStoredManifest(repo, ids.full1);
    const dry = await cairnOk('expire', ['--keep-full', '1', '--dry-run'], repo.env);
    const plan = JSON.parse(dry.stdout) as PlanJson;
    assert.deepEqual(plan.backups.map((b) => [b.id, b.action]), [[ids.full1, 'keep'], [ids.incr1, 'keep'], [ids.full2, 'keep'], [ids.incr2, 'keep']]);
    const why = new RegExp(`^needed by the restore of backup ${ids.incr1} into "${target.pgdata}" on host "${hostname()}" \\(lease ${leaseId}, renewed at \\d{4}-.*Z\\)$`);
    for (const b of plan.backups.slice(0, 2)) assert.ok(b.reasons.some((r) => why.test(r)), `${b.id}: ${JSON.stringify(b.reasons)}`);
    assert.equal(plan.wal[0]!.keepFrom, m1.start.wal, 'WAL from the leased chain\'s start stays');
    assert.deepEqual(plan.readers.map((r) => [r.id, r.live, r.action, r.backup]), [[leaseId, true, 'keep', ids.incr1]]);
    assert.match(dry.stderr, /: would remove 0 backups \(4 kept\), .*; 1 live reader lease kept 2 backups and \d+ WAL segments\n$/);
    // cairn-info shows it.
    const info = await cairnOk('info', [], repo.env);
    assert.match(info.stdout, new RegExp(`\\nreader leases .*\\n {2}the restore of backup ${ids.incr1} into "${target.pgdata}" on host .*\\(lease ${leaseId}, .*\\), expires `));

    // Nobody renewed it (the server never started): written as lapsed 7 h ago, past the 6 h debris grace.
    const d = await openStorage(repo.url, { env: process.env });
    try {
      const key = readerLeaseKey('main', leaseId);
      const lease = (await readReaderLease(d, 'main', leaseId))!;
      const lapsed = new Date(Date.now() - 7 * 3600_000);
      await d.write(key, Buffer.from(JSON.stringify({ ...lease, renewedAt: new Date(lapsed.getTime() - 3600_000).toISOString(), expiresAt: lapsed.toISOString() })));
      await chownToPgUser(join(repo.url, key)); // written as root here; the tools run as postgres
    } finally {
      await d.close();
    }
    const after = JSON.parse((await cairnOk('expire', ['--keep-full', '1', '--dry-run'], repo.env)).stdout) as PlanJson;
    assert.deepEqual(after.backups.map((b) => [b.id, b.action]), [[ids.full1, 'remove'], [ids.incr1, 'remove'], [ids.full2, 'keep'], [ids.incr2, 'keep']]);
    assert.ok(after.backups.every((b) => b.reasons.every((r) => !r.includes(leaseId))), 'a lapsed lease is nobody\'s reason');
    assert.deepEqual(after.readers.map((r) => [r.id, r.live, r.action]), [[leaseId, false, 'remove']]);
    assert.equal(after.totals.readersLive, 0);
  });

  it('--dry-run prints the plan and deletes nothing', async () => {
    const { repo, ids } = state();
    const before = await repo.keys();
    const r = await cairnOk('expire', ['--keep-full', '1', '--dry-run'], repo.env);
    const plan = JSON.parse(r.stdout) as PlanJson;
    assert.equal(plan.format, 'cairn.expire-plan/1');
    assert.deepEqual(plan.backups.map((b) => [b.id, b.action]), [
      [ids.full1, 'remove'],
      [ids.incr1, 'remove'],
      [ids.full2, 'keep'],
      [ids.incr2, 'keep'],
    ]);
    assert.deepEqual(plan.backups[2]!.reasons, ['keep-full 1', `needed by ${ids.incr2}`]);
    const m2 = await readStoredManifest(repo, ids.full2);
    assert.equal(plan.wal.length, 1);
    assert.equal(plan.wal[0]!.keepFrom, m2.start.wal);
    assert.ok(plan.wal[0]!.removed && plan.wal[0]!.removed.segments > 0, JSON.stringify(plan.wal));
    assert.equal(segmentNo(plan.wal[0]!.removed.to), segmentNo(m2.start.wal) - 1);
    assert.match(r.stderr, /^cairn-expire: repository ".*": would remove 2 backups \(2 kept\), 0 dumps \(2 kept\), \d+ WAL segments \(\d+ files\), 0 debris objects, 1 lapsed reader lease; would free [\d.]+ [kM]?B\n$/);
    assert.deepEqual(await repo.keys(), before, 'a dry run deletes nothing');
  });

  it('--keep-full 1 removes the old chain and the WAL below the kept full; the newest chain restores', async () => {
    const { repo, ids, snapshot } = state();
    const walBefore = await storedWal(repo);
    const m2 = await readStoredManifest(repo, ids.full2);
    const r = await cairnOk('expire', ['--keep-full', '1'], repo.env);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /: removed 2 backups \(2 kept\), .*; freed [\d.]+ [kMG]?B\n$/);

    const keys = await repo.keys('main/backups/');
    for (const id of [ids.full1, ids.incr1]) assert.ok(!keys.some((k) => k.startsWith(`main/backups/${id}/`)), `${id} is gone`);
    for (const id of [ids.full2, ids.incr2]) assert.ok(keys.includes(`main/backups/${id}/manifest.json`), `${id} stays`);
    const walAfter = await storedWal(repo);
    const start = segmentNo(m2.start.wal);
    assert.ok(walBefore.some((w) => segmentNo(w.name) < start), 'there was WAL below the kept full');
    assert.deepEqual(walAfter.filter((w) => segmentNo(w.name) < start), [], 'WAL below the kept full\'s start is gone');
    assert.deepEqual(walAfter, walBefore.filter((w) => segmentNo(w.name) >= start), 'WAL from the kept full on stays');
    assert.ok(!(await repo.keys('main/')).some((k) => k.startsWith('main/locks/')), 'the lease is released');
    assert.deepEqual(await repo.keys('main/readers/'), [], 'the lapsed reader lease is gone');

    // Restored with archiving on: promotion makes timeline 2 and archives its history.
    const { cluster, result } = await restoreAndStart(repo, 'expire-restored', ['--target', 'latest', '--target-action', 'promote'], { archive: true });
    state().restored = cluster;
    assert.equal(result.backup, ids.incr2);
    assert.deepEqual(result.plan?.chain, [ids.full2, ids.incr2]);
    await assertRestoredEquals(cluster, snapshot, 'restore after expire');
  });

  it('after a promotion, expire keeps the history file and what timeline 2 restores from', async () => {
    const { repo, ids } = state();
    const c = state().restored!;
    await c.psql("insert into marker values ('c: on timeline 2')");
    const last = await switchAndWaitArchived(c);
    assert.equal(last.slice(0, 8), '00000002');
    await c.stop();
    let history: string[] = [];
    for (let i = 0; i < 100 && history.length === 0; i++) {
      history = (await repo.keys('main/wal/')).filter((k) => k.includes('00000002.history-'));
      if (history.length === 0) await sleep(100);
    }
    assert.equal(history.length, 1, 'the promotion archived 00000002.history');
    const walBefore = await storedWal(repo);

    const r = await cairnOk('expire', ['--keep-full', '1', '--json'], repo.env);
    const plan = JSON.parse(r.stdout) as PlanJson;
    assert.equal(plan.totals.backupsRemoved, 0);
    assert.equal(plan.totals.walSegmentsRemoved, 0, JSON.stringify(plan.wal));
    assert.deepEqual(await storedWal(repo), walBefore);
    assert.ok((await repo.keys('main/wal/')).includes(history[0]!), 'the history file stays');

    const p = await cairnOk('restore-plan', ['--target', 'latest'], repo.env);
    const rp = JSON.parse(p.stdout) as { backup: { id: string }; targetTimeline: number; timelines: number[] };
    assert.equal(rp.backup.id, ids.incr2);
    assert.equal(rp.targetTimeline, 2);
    assert.deepEqual(rp.timelines, [1, 2]);

    // Dumps have their own policy; backups and WAL are not touched by it.
    const { dumps } = state();
    const keysBefore = (await repo.keys()).filter((k) => !k.startsWith('main/dumps/'));
    await cairnOk('expire', ['--keep-dumps', '1'], repo.env);
    const dumpKeys = await repo.keys('main/dumps/');
    const [, oldId] = dumps[0]!.split('/');
    const [, newId] = dumps[1]!.split('/');
    assert.ok(!dumpKeys.some((k) => k.includes(`/${oldId}/`)), `${dumps[0]} is gone`);
    assert.ok(dumpKeys.includes(`main/dumps/postgres/${newId}/manifest.json`), `${dumps[1]} stays`);
    assert.deepEqual((await repo.keys()).filter((k) => !k.startsWith('main/dumps/') && !k.startsWith('main/verify/')), keysBefore);
    const toc = await cairnOk('restore', ['--dump', dumps[1]!, '--list'], repo.env);
    assert.match(toc.stdout, /TABLE DATA public pgbench_accounts/);

    // No policy is a usage error, told before the repository is touched.
    const bad = await runCairn('expire', [], { env: repo.env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^cairn-expire: error: no retention policy given; give at least one of --keep-full/);
  });
});
