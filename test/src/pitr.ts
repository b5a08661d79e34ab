// Point-in-time recovery (docs/design.md §6) on one repository kind: targets captured
// under pgbench load restore to exactly the rows held at them; a promoted
// restore forks timeline 2 and later restores follow either timeline.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import {
  assertRestoredEquals,
  cairnOk,
  captureUnderLock,
  currentTimeline,
  NOW_UTC_SQL,
  readStoredManifest,
  restoreAndStart,
  scalar,
  segmentNo,
  sleep,
  SNAPSHOT_SQL,
  switchAndWaitArchived,
  takeBackup,
  walPushCommand,
  type Capture,
  type StoredManifest,
} from './pitr-harness.js';

interface RestorePlanJson {
  format: string;
  backup: { id: string; type: string; timeline: number; startWal: string; stopWal: string };
  chain: string[];
  target: { kind: string; value?: string; timeline: string; action: string; inclusive: boolean };
  targetTimeline: number;
  timelines: number[];
  wal: { timeline: number; from: string; to: string; segments: number }[];
  walEnd: string;
  recoverySettings: Record<string, string>;
  warnings: string[];
}

/** What the suite learns on the way; later steps need earlier ones. */
interface State {
  repo: RepoFixture;
  src: Cluster;
  b1: string;
  b1Manifest: StoredManifest;
  b2?: string;
  time?: Capture<{ time: string; wal: string }>;
  xid?: Capture<string>;
  lsn?: Capture<string>;
  name?: Capture<void>;
  immediate?: Capture<string>;
  latest?: string;
  tl2?: Capture<void>;
}

export function describePitr(kind: 'fs' | 's3', encrypted: boolean, opts: { timelines: boolean; exclusiveXid: boolean }): void {
  const label = `${kind}${encrypted ? '-enc' : ''}`;
  let st: State | undefined;
  const state = (): State => {
    assert.ok(st, 'the setup step failed; see the first failure');
    return st;
  };
  const need = <T>(v: T | undefined, what: string): T => {
    assert.ok(v !== undefined, `${what} was not captured; see the earlier failure`);
    return v;
  };
  /** Restore into a fresh cluster, check it, destroy it. */
  const restoreCheck = async (what: string, args: string[], expected: string, backup: string): Promise<void> => {
    const { cluster, result } = await restoreAndStart(state().repo, `${what}-${label}`.slice(0, 16), args);
    assert.equal(result.backup, backup, `${what}: restored backup`);
    await assertRestoredEquals(cluster, expected, what);
    await cluster.destroy();
  };

  describe(`point-in-time recovery, ${kind} repository${encrypted ? ', encrypted' : ''}`, { timeout: 900_000 }, () => {
    it('captures time, xid, lsn, name and immediate targets under pgbench load', async () => {
      const repo = await makeRepo(kind, encrypted);
      const src = await createCluster({ name: `pitr-${label}`, archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env });
      await src.start();
      await src.psql("create table marker(v text); insert into marker values ('a: before')");
      await src.pgbench(['-i', '-s', '2', '-q']);
      const b1 = await takeBackup(src, repo, 'full');
      st = { repo, src, b1, b1Manifest: await readStoredManifest(repo, b1) };
      assert.equal(st.b1Manifest.id, b1);

      let loadError: unknown;
      const load = src.pgbench(['-c', '2', '-j', '2', '-T', '22', '-n']).catch((err: unknown) => {
        loadError = err;
      });
      await sleep(2500);
      st.time = await captureUnderLock(src, async (c) => ({
        time: await scalar(c, NOW_UTC_SQL),
        wal: await scalar(c, 'select pg_walfile_name(pg_current_wal_insert_lsn())'),
      }));
      await sleep(2500);
      st.xid = await captureUnderLock(src, (c) => scalar(c, "insert into marker values ('b: xid') returning txid_current()"));
      await sleep(2500);
      st.lsn = await captureUnderLock(src, (c) => scalar(c, 'select pg_current_wal_insert_lsn()'));
      await sleep(2500);
      st.name = await captureUnderLock(src, async (c) => {
        await scalar(c, "select pg_create_restore_point('cairn_rp')");
      });
      await sleep(2500);
      // A backup taken while nothing can commit: its consistent point is the capture.
      st.immediate = await captureUnderLock(src, () => takeBackup(src, repo, 'incr'));
      st.b2 = st.immediate.value;
      await load;
      assert.equal(loadError, undefined, `pgbench under the captures: ${String(loadError)}`);

      // Every capture saw pgbench progress since the one before.
      const counts = [st.time, st.xid, st.lsn, st.name, st.immediate].map((c) => (JSON.parse(c.snapshot) as { history: { n: number } }).history.n);
      for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! > counts[i - 1]!, `history grows between captures: ${counts.join(', ')}`);

      // latest: the end of the archive.
      await src.psql("insert into marker values ('c: latest')");
      await switchAndWaitArchived(src);
      st.latest = await src.psql(SNAPSHOT_SQL);
      await src.stop();
    });

    it('restore-plan for the time target names the full backup and the WAL it needs', async () => {
      const { repo, b1, b1Manifest } = state();
      const time = need(state().time, 'the time target');
      const r = await cairnOk('restore-plan', ['--target-time', time.value.time, '--target-action', 'promote'], repo.env);
      const plan = JSON.parse(r.stdout) as RestorePlanJson;
      assert.equal(plan.format, 'cairn.restore-plan/1');
      assert.equal(plan.backup.id, b1, 'B2 ends after the target: the plan takes B1');
      assert.deepEqual(plan.chain, [b1]);
      assert.equal(plan.target.kind, 'time');
      assert.equal(plan.target.value, time.value.time);
      assert.equal(plan.targetTimeline, 1);
      assert.deepEqual(plan.timelines, [1]);
      assert.equal(plan.wal.length, 1, JSON.stringify(plan.wal));
      const [w] = plan.wal;
      assert.equal(w!.timeline, 1);
      assert.equal(w!.from, b1Manifest.start.wal, 'WAL starts at the backup start segment');
      assert.equal(plan.backup.startWal, b1Manifest.start.wal);
      // The planner ends a time target's check at the first segment archived
      // after the target time: near the segment being written at the target
      // (with archive lag an earlier one, as planner.ts says; a later one
      // where the store keeps whole seconds, as S3's LastModified does, and
      // archive_timeout 1s makes a segment a second), not at the end of the
      // archive (~10 segments later).
      assert.ok(segmentNo(w!.to) <= segmentNo(time.value.wal) + 3, `WAL check ends near the target's segment ${time.value.wal}: ${w!.to}`);
      assert.ok(segmentNo(w!.to) >= segmentNo(b1Manifest.stop.wal), `WAL check covers the backup up to ${b1Manifest.stop.wal}: ${w!.to}`);
      assert.equal(w!.segments, segmentNo(w!.to) - segmentNo(w!.from) + 1);
      assert.equal(plan.walEnd, w!.to);
      assert.equal(plan.recoverySettings['recovery_target_time'], time.value.time);
      assert.equal(plan.recoverySettings['recovery_target_action'], 'promote');
    });

    it('restores to the time target', async () => {
      const time = need(state().time, 'the time target');
      await restoreCheck('time', ['--target-time', time.value.time, '--target-action', 'promote'], time.snapshot, state().b1);
    });

    it('restores to the xid target (inclusive)', async () => {
      const xid = need(state().xid, 'the xid target');
      await restoreCheck('xid', ['--target-xid', xid.value, '--target-action', 'promote', '--set', state().b1], xid.snapshot, state().b1);
    });

    // Only where asked (the fs suite): it tests PostgreSQL and the planner, not the repository.
    if (opts.exclusiveXid) it('restores to just before the xid with --target-exclusive', async () => {
      const xid = need(state().xid, 'the xid target');
      // Nothing else committed under the lock: the state before the xid is the capture without its marker row.
      const expected = JSON.parse(xid.snapshot) as Record<string, unknown>;
      assert.equal(expected['marker'], 'b: xid');
      expected['marker'] = 'a: before';
      await restoreCheck('xid-excl', ['--target-xid', xid.value, '--target-exclusive', '--target-action', 'promote', '--set', state().b1], JSON.stringify(expected), state().b1);
    });

    it('restores to the lsn target', async () => {
      const lsn = need(state().lsn, 'the lsn target');
      await restoreCheck('lsn', ['--target-lsn', lsn.value, '--target-action', 'promote'], lsn.snapshot, state().b1);
    });

    it('restores to the named restore point', async () => {
      const name = need(state().name, 'the restore point');
      await restoreCheck('name', ['--target-name', 'cairn_rp', '--target-action', 'promote', '--set', state().b1], name.snapshot, state().b1);
    });

    it('restores the incremental backup taken under the lock with --target immediate', async () => {
      const imm = need(state().immediate, 'the immediate target');
      const b2 = need(state().b2, 'B2');
      const m = await readStoredManifest(state().repo, b2);
      assert.equal(m.type, 'incr');
      assert.equal(m.parent, state().b1);
      await restoreCheck('immediate', ['--target', 'immediate', '--set', b2, '--target-action', 'promote'], imm.snapshot, b2);
    });

    it('restores to the end of the archive (latest, newest backup)', async () => {
      const latest = need(state().latest, 'the latest state');
      await restoreCheck('latest', ['--target', 'latest', '--target-action', 'promote'], latest, need(state().b2, 'B2'));
    });

    if (!opts.timelines) return;

    it('forks timeline 2: a restore to the time target promoted with archiving on', async () => {
      const { repo, b1 } = state();
      const time = need(state().time, 'the time target');
      const { cluster: tl2, result } = await restoreAndStart(repo, `tl2-${label}`, ['--target-time', time.value.time, '--target-action', 'promote'], { archive: true });
      assert.equal(result.backup, b1);
      assert.equal(await currentTimeline(tl2), 2, 'promotion starts timeline 2');
      assert.deepEqual(JSON.parse(await tl2.psql(SNAPSHOT_SQL)), JSON.parse(time.snapshot), 'timeline 2 starts from the time target');
      await tl2.psql("insert into marker values ('d: tl2')");
      await tl2.pgbench(['-c', '2', '-j', '2', '-T', '3', '-n']);
      state().tl2 = await captureUnderLock(tl2, async (c) => {
        await scalar(c, "select pg_create_restore_point('tl2_point')");
      });
      await switchAndWaitArchived(tl2);
      await tl2.stop();
      await tl2.destroy();
      const keys = await repo.keys('main/wal/');
      assert.ok(keys.some((k) => /\/00000002\.history/.test(k)), `timeline 2's history is archived:\n${keys.filter((k) => k.includes('history')).join('\n')}`);
    });

    it('restores a restore point on timeline 2 from B1 (B2 is on timeline 1 after the fork)', async () => {
      const { repo, b1 } = state();
      const tl2 = need(state().tl2, 'the timeline 2 capture');
      const r = await cairnOk('restore-plan', ['--target-name', 'tl2_point', '--target-action', 'promote'], repo.env);
      const plan = JSON.parse(r.stdout) as RestorePlanJson;
      assert.equal(plan.backup.id, b1, 'the planner skips B2, which timeline 2 never saw');
      assert.equal(plan.targetTimeline, 2);
      assert.deepEqual(plan.timelines, [1, 2]);
      assert.deepEqual(plan.wal.map((w) => w.timeline), [1, 2]);
      await restoreCheck('tl2', ['--target-name', 'tl2_point', '--target-action', 'promote'], tl2.snapshot, b1);
    });

    it('restores a timeline 1 restore point after the fork with --target-timeline 1', async () => {
      const name = need(state().name, 'the restore point');
      await restoreCheck('tl1-after-fork', ['--target-name', 'cairn_rp', '--target-timeline', '1', '--set', state().b1, '--target-action', 'promote'], name.snapshot, state().b1);
    });
  });
}
