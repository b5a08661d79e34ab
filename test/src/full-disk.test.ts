// A full file system is the host's problem, said as one: restore into a full
// data directory exits 3 and wal-get into a full pg_wal 126, each naming the
// file it could not write, never "a bug in cairn" (exit 70; issue 11).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { onCleanup, runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { pgUser } from '@cairn/testkit/run-as';
import { makeTempDir } from '@cairn/testkit/tmp';
import { takeBackup } from './pitr-harness.js';
import { makeRepo } from './repo-fixture.js';
import { commandLine, runCairn } from './tools.js';
import { makeWalMaterial } from './wal-material.js';

after(runCleanups);

/** A 1 MiB tmpfs owned by the pg user (we are root). */
async function tinyFs(name: string): Promise<string> {
  const dir = join(await makeTempDir(name), 'mnt');
  await mkdir(dir);
  const u = pgUser();
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=1m,mode=0700,uid=${u.uid},gid=${u.gid}`, 'tmpfs', dir]);
  onCleanup(() => {
    execFileSync('umount', ['-l', dir]);
  });
  return dir;
}

test('wal-get into a full pg_wal: 126 naming the file', { timeout: 120_000 }, async () => {
  const m = await makeWalMaterial('full-get', 1);
  const repo = await makeRepo('fs', false);
  const seg = m.segments[0]!;
  let r = await runCairn('wal-push', [`pg_wal/${seg}`, seg], { env: repo.env, cwd: m.pgdata });
  assert.equal(r.code, 0, r.stderr);
  const full = await tinyFs('full-get');
  const dest = join(full, 'RECOVERYXLOG');
  r = await runCairn('wal-get', [seg, dest, '--prefetch', '0'], { env: repo.env, cwd: m.pgdata });
  assert.equal(r.code, 126, r.stderr);
  assert.ok(!/bug in cairn|internal error/.test(r.stderr), r.stderr);
  assert.ok(r.stderr.includes(`cannot write "${dest}": no space left on device (ENOSPC)`), r.stderr);
});

test('restore into a full file system: exit 3 naming the file', { timeout: 300_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const src = await createCluster({ name: 'full-src', archiveCommand: commandLine('wal-push', '%p %f'), archiveTimeout: '1s', env: repo.env });
  await src.start();
  await src.pgbench(['-i', '-s', '1', '-q']);
  const id = await takeBackup(src, repo, 'full');
  await src.destroy();
  const full = await tinyFs('full-restore');
  const r = await runCairn('restore', ['--pgdata', full, '--set', id, '--target', 'immediate'], { env: repo.env });
  assert.equal(r.code, 3, r.stderr);
  assert.ok(!/bug in cairn|internal error/.test(r.stderr), r.stderr);
  assert.match(r.stderr, new RegExp(`cannot write "${full}/[^"]+": no space left on device \\(ENOSPC\\)`));
});

test('basebackup into a full repository: exit 3 naming the file, and it takes its objects back', { timeout: 300_000 }, async () => {
  const dir = await tinyFs('full-repo');
  const env = { CAIRN_REPO: dir, CAIRN_SPOOL_DIR: await makeTempDir('full-repo-spool') };
  const src = await createCluster({ name: 'full-bb', archiveCommand: 'true', env });
  await src.start();
  await src.pgbench(['-i', '-s', '1', '-q']);
  const r = await runCairn('basebackup', ['--pgdata', src.pgdata], { env: { ...src.env, ...env } });
  await src.destroy();
  assert.equal(r.code, 3, r.stderr);
  assert.ok(!/bug in cairn|internal error/.test(r.stderr), r.stderr);
  assert.match(r.stderr, /no space left on device/);
  const left = execFileSync('find', [join(dir, 'main'), '-path', '*/backups/*', '-type', 'f'], { encoding: 'utf8' }).trim();
  assert.equal(left, '', 'the failed backup removed what it had stored');
});
