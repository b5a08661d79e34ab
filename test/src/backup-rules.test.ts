// What cairn-restore refuses (fs): a corrupted stored file (exit 4, no
// pg_control), a WAL gap (the segment named, nothing written), a non-empty
// PGDATA (exit 3, nothing touched); and --plan - from cairn-restore-plan.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { binPath } from '@cairn/testkit/paths';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { runAsPg } from '@cairn/testkit/run-as';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import {
  assertRestoredEquals,
  readStoredManifest,
  segmentNo,
  SNAPSHOT_SQL,
  switchAndWaitArchived,
  takeBackup,
  walPushCommand,
  type RestoreJson,
  type StoredManifest,
} from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

interface State {
  repo: RepoFixture;
  src: Cluster;
  backup: string;
  manifest: StoredManifest;
  /** The source's rows at the end of the archive. */
  latest: string;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

const SEGMENT_RE = /[0-9A-F]{24}/g;

/** The stock zstd CLI on a buffer. */
function zstd(args: string[], input: Buffer): Buffer {
  const r = spawnSync('zstd', args, { input, maxBuffer: 256 << 20 });
  assert.equal(r.status, 0, `zstd ${args.join(' ')}: ${r.stderr?.toString()}`);
  return r.stdout;
}

describe('restore refusals (fs repository)', { timeout: 600_000 }, () => {
  it('sets up a backup and an archive several segments past it', async () => {
    const repo = await makeRepo('fs', false);
    const src = await createCluster({ name: 'rules-src', archiveCommand: walPushCommand(), env: repo.env });
    await src.start();
    await src.psql("create table marker(v text); insert into marker values ('a: before')");
    await src.pgbench(['-i', '-s', '2', '-q']);
    const backup = await takeBackup(src, repo, 'full');
    for (let i = 0; i < 4; i++) {
      await src.pgbench(['-c', '2', '-j', '2', '-t', '200', '-n']);
      await switchAndWaitArchived(src);
    }
    await src.psql("insert into marker values ('b: latest')");
    await switchAndWaitArchived(src);
    const latest = await src.psql(SNAPSHOT_SQL);
    await src.stop();
    st = { repo, src, backup, manifest: await readStoredManifest(repo, backup), latest };
  });

  it('restores a plan piped from cairn-restore-plan (--plan -)', async () => {
    const { repo, backup, latest } = state();
    const dst = await createCluster({ name: 'rules-plan', initdb: false, env: repo.env, conf: { archive_mode: 'off' } });
    const pipeline = `${binPath('restore-plan')} --target latest --target-action promote | ${binPath('restore')} --pgdata ${dst.pgdata} --plan - --json`;
    const r = await runAsPg('/bin/sh', ['-c', pipeline], { env: repo.env, allowFail: true, timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${pipeline}:\n${r.stderr}`);
    const result = JSON.parse(r.stdout) as RestoreJson;
    assert.equal(result.backup, backup);
    assert.equal(result.plan?.backup.id, backup);
    await dst.start({ timeoutSec: 300 });
    await dst.waitForRecoveryEnd(300_000);
    await assertRestoredEquals(dst, latest, 'restore through --plan -');
    await dst.destroy();
  });

  it('refuses a non-empty PGDATA without --delta or --force and touches nothing', async () => {
    const { repo, backup } = state();
    const dir = await makeTempDir('rules-nonempty');
    const keep = join(dir, 'keep.txt');
    await writeFile(keep, 'operator data\n', { mode: 0o600 });
    await chownToPgUser(keep);
    const before = await stat(keep);
    const r = await runCairn('restore', ['--pgdata', dir, '--target', 'immediate', '--set', backup], { env: repo.env });
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.lines.length, 1, r.stderr);
    assert.match(r.lines[0]!, new RegExp(`^cairn-restore: error: .*"${dir}" is not empty`), r.stderr);
    assert.match(r.lines[0]!, /--delta/, 'the line says what to do');
    assert.deepEqual(await readdir(dir), ['keep.txt'], 'nothing else was written');
    assert.equal(await readFile(keep, 'utf8'), 'operator data\n');
    const afterStat = await stat(keep);
    assert.equal(afterStat.mtimeMs, before.mtimeMs);
    assert.equal(afterStat.mode, before.mode);
  });

  it('fails with exit 4 naming a corrupted stored file, and leaves no global/pg_control', async () => {
    const { repo, backup, manifest } = state();
    const victim = manifest.files.filter((f) => f.size > 100_000 && f.path.startsWith('base/')).sort((a, b) => b.size - a.size)[0];
    assert.ok(victim, 'a relation file over 100 kB');
    assert.equal(victim.ref, backup);
    assert.ok(victim.key.endsWith('.zst'), victim.key);
    const original = (await repo.objects(victim.key)).get(victim.key);
    assert.ok(original, `stored object ${victim.key}`);

    // Damage the zstd stream itself (its frame checksum fails), and store a
    // well-formed zstd stream of other bytes (only the SHA-256 can tell).
    const flipped = Buffer.from(original);
    for (let i = 0; i < 16; i++) {
      const at = Math.floor(flipped.length / 2) + i * 7;
      flipped[at] = flipped[at]! ^ 0x5a;
    }
    const plain = zstd(['-d', '-c', '-q'], original);
    assert.equal(plain.length, victim.size);
    plain[Math.floor(plain.length / 2)] = plain[Math.floor(plain.length / 2)]! ^ 0x01;
    const recompressed = zstd(['-c', '-q', '-3'], plain);

    for (const [what, bytes] of [['flipped bytes in the stored object', flipped], ['a valid zstd stream of different bytes', recompressed]] as const) {
      await repo.tamper(victim.key, bytes);
      try {
        const dir = await makeTempDir('rules-corrupt');
        const r = await runCairn('restore', ['--pgdata', dir, '--target', 'immediate', '--set', backup], { env: repo.env, timeoutMs: 300_000 });
        assert.equal(r.code, 4, `${what}: ${r.stderr}`);
        assert.equal(r.lines.length, 1, `${what}: ${r.stderr}`);
        assert.ok(r.lines[0]!.includes(`${victim.path}"`), `${what}: stderr names "${victim.path}": ${r.stderr}`);
        assert.equal(existsSync(join(dir, 'global', 'pg_control')), false, `${what}: no global/pg_control, the directory cannot start`);
        assert.equal(existsSync(join(dir, victim.path)), false, `${what}: the bytes that failed their check are not left in place`);
        const cd = await runAsPg(join(state().src.bindir, 'pg_controldata'), ['-D', dir], { allowFail: true });
        assert.notEqual(cd.code, 0, `${what}: pg_controldata finds no control file: ${cd.stdout}${cd.stderr}`);
      } finally {
        await repo.tamper(victim.key, original);
      }
    }
  });

  it('names exactly the WAL segment missing in the middle, and restore writes nothing', async () => {
    const { repo, manifest } = state();
    const walKeys = (await repo.keys('main/wal/')).filter((k) => /\/[0-9A-F]{24}[^/]*$/.test(k) && !k.includes('.partial') && !k.includes('.backup'));
    const seg = (k: string) => k.slice(k.lastIndexOf('/') + 1, k.lastIndexOf('/') + 25);
    const segs = walKeys.map(seg).filter((s) => s.startsWith('00000001')).sort();
    const stopNo = segmentNo(manifest.stop.wal);
    const after = segs.filter((s) => segmentNo(s) > stopNo);
    assert.ok(after.length >= 3, `archive reaches several segments past the backup (${manifest.stop.wal}): ${segs.join(' ')}`);
    const missing = after[Math.floor(after.length / 2) - 1]!;
    assert.ok(missing < segs.at(-1)!, 'a segment in the middle, not the end');
    const key = walKeys.find((k) => seg(k) === missing)!;
    const saved = await readFile(join(repo.url, key));
    await rm(join(repo.url, key));
    try {
      const plan = await runCairn('restore-plan', ['--target', 'latest'], { env: repo.env });
      assert.equal(plan.code, 1, plan.stderr);
      assert.equal(plan.stdout, '', 'no plan on stdout');
      assert.equal(plan.lines.length, 1, plan.stderr);
      assert.deepEqual([...new Set(plan.stderr.match(SEGMENT_RE))], [missing], `stderr names ${missing} and no other segment: ${plan.stderr}`);

      const dir = await makeTempDir('rules-nowal');
      const r = await runCairn('restore', ['--pgdata', dir, '--target', 'latest'], { env: repo.env });
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(missing), `restore names ${missing}: ${r.stderr}`);
      assert.deepEqual(await readdir(dir), [], 'the directory is left empty');
    } finally {
      await writeFile(join(repo.url, key), saved);
    }
  });
});
