// kill -9 of wal-push in the middle of a write leaves no partial object that
// wal-get or a listing could see: after every kill the segment is either
// absent (wal-get exits 1) or whole (wal-get returns the original bytes).
// And what killed runs leave is bounded (issue 11): after kill -9 of
// wal-push, basebackup and dump at several points, a rerun of each plus
// expire leaves no temp file, empty directory or local work directory; and
// expire removes the intent a killed push leaves once it is stale.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { watch } from 'node:fs';
import { mkdir, readdir, readFile, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { runCleanups } from '@cairn/testkit/cleanup';
import { binPath } from '@cairn/testkit/paths';
import { baseEnv, spawnAsPg, killAndWait } from '@cairn/testkit/run-as';
import { startFaultProxy } from '@cairn/testkit/fault-proxy';
import { openStorage } from '@cairn/core/storage/open';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { walIntentKey } from '@cairn/core/repo/layout';
import { makeRepo } from './repo-fixture.js';
import { commandLine, runCairn } from './tools.js';
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

/** Runs `fn` with a driver for the repository at `url`, opened under the tools' environment `env`. */
async function withDriver<T>(url: string, env: Record<string, string>, fn: (d: StorageDriver) => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const d = await openStorage(url, { env: process.env });
    try {
      return await fn(d);
    } finally {
      await d.close();
    }
  } finally {
    process.env = saved;
  }
}

async function listedWal(url: string, env: Record<string, string>): Promise<string[]> {
  return withDriver(url, env, async (d) => {
    const keys: string[] = [];
    for await (const o of d.list('main/wal/')) keys.push(o.key);
    return keys;
  });
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

/** Every temp file, empty directory (but the WAL intents'), and backup or dump directory without a manifest under `root`. */
async function leftoversIn(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<boolean> => {
    // A directory a running tool removes while this walks (the lock directory
    // of a backup that just ended) is gone, not debris.
    const entries = await readdir(dir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null;
      throw e;
    });
    if (entries === null) return false;
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        // The WAL intents' directory is kept empty on purpose (wal-archive.ts INTENT_REMOVE).
        if ((await walk(join(dir, e.name), r)) && !/^[^/]+\/locks\/wal\/[^/]+$/.test(r)) out.push(`${r}/ (empty)`);
        const inBackups = /^[^/]+\/backups\/[^/]+$/.test(r) || /^[^/]+\/dumps\/[^/]+\/[^/]+$/.test(r);
        if (inBackups && !(await readdir(join(dir, e.name)).catch(() => [] as string[])).includes('manifest.json')) out.push(`${r}/ (no manifest)`);
      } else if (e.name.startsWith('.tmp.')) {
        out.push(r);
      }
    }
    return entries.length === 0;
  };
  await walk(root, '');
  return out;
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('fs repository: kill -9 of wal-push, basebackup and dump, then a rerun of each and expire leave no debris', { timeout: 600_000 }, async () => {
  // (A repository of its own: the material is another system than the cluster's.)
  const walRepo = await makeRepo('fs', false);
  // wal-push: killed the moment its temp file appears (a segment is written
  // from memory in milliseconds; inotify sees it sooner).
  const m = await makeWalMaterial('kill9-debris-wal', 1);
  const seg = m.segments[0]!;
  const walDir = join(walRepo.url, 'main', 'wal', m.systemId, seg.slice(0, 16));
  await mkdir(walDir, { recursive: true });
  await chownToPgUser(join(walRepo.url, 'main'), { recursive: true });
  for (let i = 0; !(await leftoversIn(walRepo.url)).some((l) => l.includes('/.tmp.')); i++) {
    assert.ok(i < 10, 'no kill of wal-push left a temp file');
    const child = spawnAsPg(binPath('wal-push'), [`pg_wal/${seg}`, seg, '--push-ahead', '0'], { env: baseEnv(walRepo.env), cwd: m.pgdata });
    const watcher = watch(walDir, (_event, name) => {
      if (name?.startsWith('.tmp.')) child.kill('SIGKILL');
    });
    await new Promise((res) => child.once('exit', res));
    watcher.close();
    for (const n of await readdir(walDir)) if (n.startsWith(seg)) await rm(join(walDir, n));
  }
  let r = await runCairn('wal-push', [`pg_wal/${seg}`, seg, '--push-ahead', '0'], { env: walRepo.env, cwd: m.pgdata });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await leftoversIn(walRepo.url), [], 'the rerun of wal-push removed the temp file of the killed one');

  const repo = await makeRepo('fs', false);
  const tmp = await makeTempDir('kill9-dump-tmp');
  const src = await createCluster({ name: 'kill9-debris', archiveCommand: commandLine('wal-push', '%p %f'), archiveTimeout: '1s', env: repo.env });
  await src.start();
  await src.pgbench(['-i', '-s', '8', '-q']);
  const env = baseEnv({ ...src.env, ...repo.env });
  const temps = async () => (await leftoversIn(repo.url)).filter((l) => /\/\.tmp\.[^/]+$/.test(l));

  // basebackup: killed later on, then as soon as a file is being written.
  const backupTemps = async () => (await temps()).filter((t) => t.includes('/backups/'));
  // First kills later on (1500, 750, 375, 187 ms after the first file):
  // mid-copy, or (a fast machine, or a loaded one whose polling lags) after
  // the copy, in the wait for the last WAL, with nothing to leave; CI failed
  // twice demanding debris from them. They are exercised, not judged: the
  // rerun below must cope with whatever they left. Then a kill as soon as a
  // file is being written, which must leave one (its run swept the earlier
  // runs' temp files at start, so this is the debris the rerun removes).
  const killBackup = async (delayMs: number) => {
    const before = new Set(await backupTemps());
    const child = spawnAsPg(binPath('basebackup'), ['--pgdata', src.pgdata], { env });
    await waitUntil('a backup file being written', async () => (await backupTemps()).some((t) => !before.has(t)));
    await new Promise((res) => setTimeout(res, delayMs));
    child.kill('SIGKILL');
    await killAndWait(child);
    return (await backupTemps()).some((t) => !before.has(t));
  };
  for (let attempt = 0; attempt < 4 && !(await killBackup(1500 >> attempt)); attempt++);
  for (let attempt = 1; !(await killBackup(0)); attempt++) {
    assert.ok(attempt < 6, 'no kill of basebackup as its first file was written left a temp file in 6 tries');
  }
  assert.ok((await backupTemps()).length > 0, 'the killed backups left temp files');
  r = await runCairn('basebackup', ['--pgdata', src.pgdata], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await temps()).filter((t) => t.includes('/backups/')), [], 'the rerun of basebackup removed the temp files');

  // dump --jobs: killed while pg_dump fills its local directory.
  const workDirs = async () => (await readdir(tmp)).filter((n) => n.startsWith('cairn-dump-'));
  const child = spawnAsPg(binPath('dump'), ['--dbname', 'postgres', '--jobs', '2', '--tmp-dir', tmp], { env });
  await waitUntil('the dump\'s work directory', async () => (await workDirs()).length > 0);
  await new Promise((res) => setTimeout(res, 300));
  child.kill('SIGKILL');
  await killAndWait(child);
  // pg_dump itself outlives cairn-dump; let it finish writing its directory.
  await waitUntil('pg_dump to end', async () => (await src.psql("select count(*) from pg_stat_activity where application_name ilike '%dump%'")) === '0');
  assert.equal((await workDirs()).length, 1, 'the killed dump left its local directory');
  r = await runCairn('dump', ['--dbname', 'postgres', '--jobs', '2', '--tmp-dir', tmp], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await workDirs(), [], 'the rerun of dump removed the local directory of the killed one');

  // No archive_command runs beside the checks below: a push in flight has a
  // temp file and an intent of its own, which are no debris (one made this
  // test fail in a full CI run).
  await src.stop();
  await new Promise((res) => setTimeout(res, 1100));
  r = await runCairn('expire', ['--keep-full', '1', '--debris-grace', '1s'], { env: repo.env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await leftoversIn(repo.url), [], 'no debris after the reruns and expire');
  const v = await runCairn('verify', ['--json'], { env });
  assert.ok(!/temp file|empty director/.test(v.stdout), v.stdout);
  await src.destroy();
});

test('fs repository: the intent of a killed wal-push goes with expire once stale; a live one stays', { timeout: 120_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const sys = '7300000000000000001';
  const seg = '000000010000000000000009';
  const sha = 'cd'.repeat(32);
  const stale = walIntentKey('main', sys, seg, '00000000000000aa', sha);
  const live = walIntentKey('main', sys, seg, '00000000000000bb', sha);
  // Written as storeWal writes them; a kill -9 leaves the first behind, and
  // the store's clock has moved on 2 minutes since (the protocol's 60 s: dead).
  await withDriver(repo.url, repo.env, async (d) => {
    for (const k of [stale, live]) await d.write(k, Buffer.from('{"format":"cairn.wal-intent/1"}\n'), { durable: false });
  });
  const old = new Date(Date.now() - 120_000);
  await utimes(join(repo.url, stale), old, old);
  await chownToPgUser(join(repo.url, 'main'), { recursive: true });
  const intents = async () => (await repo.keys('main/locks/')).sort();
  assert.deepEqual(await intents(), [stale, live].sort());

  let r = await runCairn('expire', ['--keep-full', '1', '--debris-grace', '1s', '--dry-run'], { env: repo.env });
  assert.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as { debris: { prefix: string }[] };
  assert.deepEqual(plan.debris.map((d) => d.prefix), [stale], 'the dry run lists the stale intent only');
  assert.deepEqual(await intents(), [stale, live].sort(), 'the dry run removed nothing');

  r = await runCairn('expire', ['--keep-full', '1', '--debris-grace', '1s'], { env: repo.env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /1 debris object;/);
  assert.deepEqual(await intents(), [live], 'the stale intent went; the live one (younger than 60 s) stayed');
});
