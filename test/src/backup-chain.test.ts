// Backup chains (fs): full → diff → incr and a full right after restore to the
// same rows; a pg_basebackup tar stream (--from-tar) restores to them too;
// --delta into a used data dir keeps the files that still match.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { makeTempDir } from '@cairn/testkit/tmp';
import { binPath } from '@cairn/testkit/paths';
import { baseEnv, runAsPg } from '@cairn/testkit/run-as';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import {
  assertRestoredEquals,
  cairnOk,
  readStoredManifest,
  restoreAndStart,
  SNAPSHOT_SQL,
  walPushCommand,
  type RestoreJson,
  type StoredManifest,
} from './pitr-harness.js';

after(runCleanups);

interface BackupSummaryJson {
  id: string;
  type: 'full' | 'diff' | 'incr';
  parent: string | null;
  references: string[];
  source: 'local' | 'stream';
  totals: { size: number; storedSize: number; filesStored: number; filesReferenced: number };
}

interface State {
  repo: RepoFixture;
  src: Cluster;
  full: BackupSummaryJson;
  diff: BackupSummaryJson;
  incr: BackupSummaryJson;
  full2: BackupSummaryJson;
  /** The source's rows when incr and full2 were taken (nothing changed between). */
  snapshot: string;
  stream?: string;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

async function backupJson(src: Cluster, repo: RepoFixture, type: 'full' | 'diff' | 'incr'): Promise<BackupSummaryJson> {
  const r = await cairnOk('basebackup', ['--pgdata', src.pgdata, '--type', type, '--json'], { ...src.env, ...repo.env });
  const j = JSON.parse(r.stdout) as BackupSummaryJson;
  assert.equal(j.type, type);
  return j;
}

/** Stored files of a manifest that are this backup's own objects vs. its ancestors'. */
function ownAndReferenced(m: StoredManifest): { own: number; referenced: number } {
  const own = m.files.filter((f) => f.ref === m.id).length;
  return { own, referenced: m.files.length - own };
}

describe('backup chains (fs repository)', { timeout: 600_000 }, () => {
  it('takes full, diff, incr and a second full of an idle cluster', async () => {
    const repo = await makeRepo('fs', false);
    const src = await createCluster({ name: 'chain-src', archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env });
    await src.start();
    await src.psql("create table marker(v text); insert into marker values ('a: full')");
    await src.pgbench(['-i', '-s', '2', '-q']);
    const full = await backupJson(src, repo, 'full');
    // ~1% of the 200000 accounts rows change (pgbench keeps its invariant).
    await src.pgbench(['-c', '2', '-j', '2', '-t', '1000', '-n']);
    await src.psql("insert into marker values ('b: diff')");
    const diff = await backupJson(src, repo, 'diff');
    await src.pgbench(['-c', '2', '-j', '2', '-t', '2500', '-n']);
    await src.psql("insert into marker values ('c: incr')");
    const snapshot = await src.psql(SNAPSHOT_SQL);
    const incr = await backupJson(src, repo, 'incr');
    const full2 = await backupJson(src, repo, 'full');
    assert.equal(await src.psql(SNAPSHOT_SQL), snapshot, 'the source stayed idle');
    st = { repo, src, full, diff, incr, full2, snapshot };

    assert.equal(diff.parent, full.id);
    assert.deepEqual(diff.references, [full.id]);
    assert.equal(incr.parent, diff.id, 'incr builds on the newest backup');
    assert.deepEqual(incr.references, [full.id, diff.id]);
    assert.equal(full2.parent, null);
    assert.deepEqual(full2.references, []);
    assert.equal(full.totals.filesReferenced, 0);
    for (const b of [diff, incr]) {
      assert.ok(b.totals.filesStored < full.totals.filesStored, `${b.type} stored ${b.totals.filesStored} files, full ${full.totals.filesStored}`);
      assert.ok(b.totals.filesReferenced > 0, `${b.type} references its parents' files`);
      // Not bytes: pgbench's updates touch every page of its tables, and a
      // changed file is stored whole and may compress worse than before.
    }
    // The manifests agree with the summaries, file by file.
    for (const b of [full, diff, incr, full2]) {
      const m = await readStoredManifest(repo, b.id);
      const { own, referenced } = ownAndReferenced(m);
      assert.equal(own, b.totals.filesStored, `${b.id}: files stored`);
      assert.equal(referenced, b.totals.filesReferenced, `${b.id}: files referenced`);
      for (const f of m.files) {
        assert.ok(f.ref === b.id || b.references.includes(f.ref), `${b.id}: "${f.path}" refers to ${f.ref}, outside its chain`);
        assert.ok(f.key.startsWith(`main/backups/${f.ref}/`), `${b.id}: "${f.path}" key ${f.key} lies under its ref ${f.ref}`);
      }
    }
    const incrManifest = await readStoredManifest(repo, incr.id);
    assert.ok(incrManifest.files.some((f) => f.ref === diff.id), 'incr references files the diff stored');
  });

  it('packs the small files into a few tar bundles that tar and zstd read by hand (issue 17)', async () => {
    const { repo, full } = state();
    const objects = await repo.keys(`main/backups/${full.id}/`);
    const m = await readStoredManifest(repo, full.id);
    assert.ok(m.files.length > 900, `${m.files.length} files in the cluster`);
    assert.ok(objects.length < 50, `a fresh cluster's full backup is ${objects.length} objects: ${objects.join(', ')}`);
    const bundled = m.files.filter((f) => f.bundle !== undefined);
    assert.ok(bundled.length > m.files.length * 0.9, `${bundled.length} of ${m.files.length} files bundled`);
    for (const f of m.files) if (f.bundle === undefined) assert.ok(f.size > 1024 * 1024, `"${f.path}" (${f.size} bytes) is stored alone`);
    // By hand, as the README shows: tar -xf the bundle, zstd -d the member.
    const f = bundled.find((x) => x.path === 'PG_VERSION')!;
    const dir = await makeTempDir('bundle-by-hand');
    execFileSync('tar', ['-xf', join(repo.url, f.bundle!.key), '-C', dir, f.key.slice(`main/backups/${full.id}/`.length)]);
    const plain = execFileSync('zstd', ['-d', '-c', '-q', join(dir, f.key.slice(`main/backups/${full.id}/`.length))]);
    assert.equal(plain.toString(), readFileSync(join(state().src.pgdata, 'PG_VERSION'), 'utf8'));
    assert.equal(createHash('sha256').update(plain).digest('hex'), f.sha256);
  });

  it('restores the incremental and the second full to the same rows', async () => {
    const { repo, incr, full2, snapshot } = state();
    const a = await restoreAndStart(repo, 'chain-incr', ['--target', 'immediate', '--set', incr.id, '--target-action', 'promote']);
    assert.equal(a.result.backup, incr.id);
    assert.equal(a.result.files, a.result.filesFetched);
    assert.deepEqual(a.result.plan?.chain, [state().full.id, state().diff.id, incr.id]);
    await assertRestoredEquals(a.cluster, snapshot, 'incr');
    const b = await restoreAndStart(repo, 'chain-full2', ['--target', 'immediate', '--set', full2.id, '--target-action', 'promote']);
    assert.equal(b.result.backup, full2.id);
    assert.deepEqual(b.result.plan?.chain, [full2.id]);
    await assertRestoredEquals(b.cluster, snapshot, 'full2');
    assert.equal(await a.cluster.psql(SNAPSHOT_SQL), await b.cluster.psql(SNAPSHOT_SQL), 'incr and full2 restore to the same rows');
    await a.cluster.destroy();
    await b.cluster.destroy();
  });

  it('stores a pg_basebackup tar stream (--from-tar -) that restores to the same rows', async () => {
    const { repo, src, snapshot } = state();
    const pipeline = `pg_basebackup -D - -Ft -X none -c fast | ${binPath('basebackup')} --from-tar -`;
    const r = await runAsPg('/bin/sh', ['-c', pipeline], {
      env: { ...src.env, ...repo.env, PATH: `${src.clientBindir}:${baseEnv()['PATH']}` },
      allowFail: true,
      timeoutMs: 300_000,
    });
    assert.equal(r.code, 0, `${pipeline}:\n${r.stderr}`);
    const id = r.stdout.trim();
    assert.match(id, /^\d{8}-\d{6}F$/, `backup id on stdout: ${JSON.stringify(r.stdout)}`);
    state().stream = id;
    const m = await readStoredManifest(repo, id);
    assert.equal((m as unknown as { source: string }).source, 'stream');
    assert.equal(m.type, 'full');
    const s = await restoreAndStart(repo, 'chain-stream', ['--target', 'immediate', '--set', id, '--target-action', 'promote']);
    assert.equal(s.result.backup, id);
    await assertRestoredEquals(s.cluster, snapshot, 'stream');
    await s.cluster.destroy();
    await src.stop();
  });

  it('--delta into a used data dir keeps matching files and writes less', async () => {
    const { repo, full2, snapshot } = state();
    const args = ['--target', 'immediate', '--set', full2.id, '--target-action', 'promote'];
    const first = await restoreAndStart(repo, 'chain-delta', args);
    const x = first.cluster;
    assert.equal(first.result.filesKept, 0);
    await assertRestoredEquals(x, snapshot, 'first restore into X');
    // Promoted: a new timeline, then writes; files change.
    await x.pgbench(['-c', '2', '-j', '2', '-t', '500', '-n']);
    await x.psql("insert into marker values ('d: written in X'); checkpoint");
    assert.notEqual(await x.psql(SNAPSHOT_SQL), snapshot);
    await x.stop();

    const r = await cairnOk('restore', ['--pgdata', x.pgdata, '--delta', '--json', ...args], repo.env);
    const delta = JSON.parse(r.stdout) as RestoreJson;
    assert.equal(delta.backup, full2.id);
    assert.ok(delta.filesKept > 0, `files kept: ${delta.filesKept}`);
    assert.ok(delta.filesFetched > 0, `files fetched: ${delta.filesFetched}`);
    assert.equal(delta.filesKept + delta.filesFetched, delta.files);
    assert.ok(delta.bytesWritten < first.result.bytesWritten, `delta wrote ${delta.bytesWritten} bytes, the first restore ${first.result.bytesWritten}`);
    assert.ok(delta.bytesKept > 0);
    assert.ok(delta.removed > 0, `files the backup lacks (new WAL, pid files) are removed: ${delta.removed}`);
    // The restored data dir carries the source's archive settings again: keep it from archiving.
    await x.setConf({ archive_mode: 'off' });
    await x.start({ timeoutSec: 300 });
    await x.waitForRecoveryEnd(300_000);
    await assertRestoredEquals(x, snapshot, 'delta restore into X');
    await x.destroy();
  });
});
