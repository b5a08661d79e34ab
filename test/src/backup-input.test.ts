// Bad input to cairn-basebackup: one stderr line, a documented status, and no
// backup recorded (a truncated pg_basebackup stream must never look whole).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { makeTempDir } from '@cairn/testkit/tmp';
import { commandLine, runCairn } from './tools.js';
import { makeRepo } from './repo-fixture.js';
import { parseStoredManifest } from './pitr-harness.js';

after(runCleanups);

test('basebackup: truncated stream, no source, bad type, wrong PGDATA, unreachable server', { timeout: 180_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const src = await createCluster({ name: 'bad-bb', archiveCommand: commandLine('wal-push', '%p %f'), archiveTimeout: '1s', env: repo.env });
  await src.start();
  const env = { ...src.env, ...repo.env };
  const dir = await makeTempDir('tar');
  const tarPath = join(dir, 'base.tar');
  // The client tool may run as root (only the server refuses to).
  const pgbb = spawnSync(join(src.clientBindir, 'pg_basebackup'), ['-D', '-', '-Ft', '-X', 'none', '-c', 'fast'], { env: { ...process.env, ...src.env }, maxBuffer: 1 << 30 });
  assert.equal(pgbb.status, 0, pgbb.stderr?.toString());
  const tar = pgbb.stdout;
  assert.ok(Buffer.isBuffer(tar) && tar.length > 1_000_000, 'pg_basebackup wrote a tar stream');

  const oneLine = (r: { lines: string[]; stderr: string }) => assert.equal(r.lines.length, 1, r.stderr);
  const noBackups = async () => assert.deepEqual((await readdir(join(repo.url, 'main/backups')).catch(() => [])).filter((id) => spawnSync('test', ['-e', join(repo.url, 'main/backups', id, 'manifest.json')]).status === 0), []);

  for (const cut of [700, tar.length >> 1, tar.length - 1024]) {
    await writeFile(tarPath, tar.subarray(0, cut));
    const r = await runCairn('basebackup', ['--from-tar', tarPath], { env });
    assert.equal(r.code, 4, `cut at ${cut}: ${r.stderr}`);
    oneLine(r);
    assert.match(r.lines[0]!, /cairn-basebackup: error: .*tar stream/);
    await noBackups();
  }

  const none = await runCairn('basebackup', [], { env: { ...env, PGDATA: '' } });
  assert.equal(none.code, 2, none.stderr);
  oneLine(none);
  assert.match(none.lines[0]!, /no source: give --pgdata DIR/);

  const type = await runCairn('basebackup', ['--pgdata', src.pgdata, '--type', 'weekly'], { env });
  assert.equal(type.code, 2);
  oneLine(type);

  const other = await makeTempDir('not-pgdata');
  const wrong = await runCairn('basebackup', ['--pgdata', other], { env });
  assert.equal(wrong.code, 3, wrong.stderr);
  oneLine(wrong);
  assert.match(wrong.lines[0]!, /is not the data directory of the server/);

  const down = await runCairn('basebackup', ['--pgdata', src.pgdata], { env: { ...env, PGPORT: '1' } });
  assert.equal(down.code, 3, down.stderr);
  oneLine(down);
  assert.match(down.lines[0]!, /cannot connect to PostgreSQL/);
  await noBackups();

  // --remote: pg_basebackup fails before its stream starts; its own failure is
  // reported (its message above ours), not a truncated tar stream.
  const remoteDown = await runCairn('basebackup', ['--remote', '--pg-bin', src.clientBindir], { env: { ...env, PGPORT: '1' } });
  assert.equal(remoteDown.code, 3, remoteDown.stderr);
  assert.match(remoteDown.stderr, /^pg_basebackup: error: /m);
  assert.match(remoteDown.stderr, /^cairn-basebackup: error: pg_basebackup failed \(exit 1\); the backup was not recorded/m);
  await noBackups();

  // The whole stream is a backup.
  await writeFile(tarPath, tar);
  const ok = await runCairn('basebackup', ['--from-tar', tarPath], { env });
  assert.equal(ok.code, 0, ok.stderr);
  const id = ok.stdout.trim();
  const manifest = parseStoredManifest(await readFile(join(repo.url, 'main/backups', id, 'manifest.json'), 'utf8')) as unknown as { source: string };
  assert.equal(manifest.source, 'stream');
});
