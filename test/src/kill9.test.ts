// kill -9 of wal-push in the middle of a write leaves no partial object that
// wal-get or a listing could see: after every kill the segment is either
// absent (wal-get exits 1) or whole (wal-get returns the original bytes).

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runCleanups } from '@cairn/testkit/cleanup';
import { binPath } from '@cairn/testkit/paths';
import { baseEnv, spawnAsPg, killAndWait } from '@cairn/testkit/run-as';
import { startFaultProxy } from '@cairn/testkit/fault-proxy';
import { openStorage } from '@cairn/core/storage/open';
import { makeRepo } from './repo-fixture.js';
import { runCairn } from './tools.js';
import { makeWalMaterial, type WalMaterial } from './wal-material.js';

after(runCleanups);

async function waitForWrite(proxy: { stalledWrites: number }): Promise<void> {
  const end = Date.now() + 30_000;
  while (proxy.stalledWrites === 0) {
    if (Date.now() > end) throw new Error('no write reached the proxy');
    await new Promise((r) => setTimeout(r, 50));
  }
  // Let part of the body arrive.
  await new Promise((r) => setTimeout(r, 300));
}

async function listedWal(url: string, env: Record<string, string>): Promise<string[]> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const d = await openStorage(url);
    const keys: string[] = [];
    for await (const o of d.list('main/wal/')) keys.push(o.key);
    await d.close();
    return keys;
  } finally {
    process.env = saved;
  }
}

async function checkWholeOrAbsent(m: WalMaterial, seg: string, env: Record<string, string>, url: string, round: string): Promise<'absent' | 'whole'> {
  const dest = `RECOVERYXLOG.${round}`;
  const r = await runCairn('wal-get', [seg, `pg_wal/${dest}`, '--prefetch', '0', '--retries', '0'], { env, cwd: m.pgdata });
  const listed = (await listedWal(url, env)).filter((k) => k.includes(seg));
  // Killed before repo.json or the system was written: wal-get does not call that "not found" (126).
  if (r.code === 1 || (r.code === 126 && /holds no cluster|is not registered/.test(r.stderr))) {
    assert.deepEqual(listed, [], `${round}: absent for wal-get, absent in the listing`);
    return 'absent';
  }
  assert.equal(r.code, 0, `${round}: ${r.stderr}`);
  assert.equal(listed.length, 1, `${round}: one object listed`);
  assert.ok((await readFile(join(m.pgdata, 'pg_wal', dest))).equals(await readFile(join(m.pgdata, 'pg_wal', seg))), `${round}: whole`);
  await rm(join(m.pgdata, 'pg_wal', dest));
  return 'whole';
}

test('fs repository: kill -9 at many points of a push', { timeout: 300_000 }, async () => {
  const m = await makeWalMaterial('kill9', 1);
  const seg = m.segments[0]!;
  const outcomes = new Set<string>();
  for (let i = 0; i < 16; i++) {
    const repo = await makeRepo('fs', i % 2 === 1);
    // zstd at a high level makes the push long enough to be hit mid-way.
    const child = spawnAsPg(binPath('wal-push'), [`pg_wal/${seg}`, seg, '--compress', 'zstd:19', '--push-ahead', '0'], {
      env: baseEnv(repo.env),
      cwd: m.pgdata,
    });
    await new Promise((r) => setTimeout(r, 60 + i * 40));
    child.kill('SIGKILL');
    await killAndWait(child);
    outcomes.add(await checkWholeOrAbsent(m, seg, repo.env, repo.url, `fs-${i}`));
  }
  assert.ok(outcomes.has('absent'), 'some kills landed before the object was visible');
});

test('s3 repository: kill -9 during an upload', { timeout: 300_000 }, async () => {
  const m = await makeWalMaterial('kill9-s3', 1);
  const seg = m.segments[0]!;
  const repo = await makeRepo('s3', false);
  const target = new URL(repo.endpoint!);
  const proxy = await startFaultProxy({ host: target.hostname, port: Number(target.port) });
  const u = new URL(repo.url.replace(/^s3:/, 'http:'));
  u.searchParams.set('endpoint', proxy.endpoint);
  const url = u.toString().replace(/^http:/, 's3:');
  const env = { ...repo.env, CAIRN_REPO: url };
  // Reads pass, writes stall: the upload of the segment hangs mid-way.
  proxy.setMode('stall-writes');
  const child = spawnAsPg(binPath('wal-push'), [`pg_wal/${seg}`, seg, '--push-ahead', '0'], { env: baseEnv(env), cwd: m.pgdata });
  await waitForWrite(proxy);
  child.kill('SIGKILL');
  await killAndWait(child);
  proxy.setMode('pass');
  assert.equal(await checkWholeOrAbsent(m, seg, env, url, 's3'), 'absent');
  await proxy.stop();
});
