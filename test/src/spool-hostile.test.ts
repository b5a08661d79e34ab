// The spool against another local user and against a shared spool (issue 11,
// "Why" 1 and 2): planting directories, records, segments or links where
// cairn used to look gets no forged segment served, no segment reported
// archived that is not stored, and never stops archiving; a spool that is not
// private is skipped with one warning; two archive commands to two
// repositories fill both; prefetched segments are still served by rename.
// Each case runs through the compiled fast path (bin/cairn-wal-*) and through
// its bash wrapper (bin/cairn-wal-*.sh), which is the fallback and the fast
// path where no C compiler built the program.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, readdir, readFile, realpath, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { runCleanups } from '@cairn/testkit/cleanup';
import { hostileShell, hostileUser } from '@cairn/testkit/hostile-user';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { pgUser } from '@cairn/testkit/run-as';
import { makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { commandLine, runCairn, VIAS } from './tools.js';

after(runCleanups);

const sh = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
const segNo = (n: number) => `0000000100000000${n.toString(16).toUpperCase().padStart(8, '0')}`;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Switches `count` segments with a little data in each; the name of the last one switched away from. */
async function makeSegments(c: Cluster, count: number): Promise<string> {
  await c.psql('create table if not exists t(i int)');
  let last = '';
  for (let i = 0; i < count; i++) last = await c.psql('insert into t select generate_series(1,100); select pg_walfile_name(pg_switch_wal())');
  return last;
}

/** Segment names the repository holds (any system, timeline 1). */
async function storedSegments(repo: RepoFixture): Promise<Set<string>> {
  const names = (await repo.keys('main/wal/')).map((k) => k.slice(k.lastIndexOf('/') + 1, k.lastIndexOf('/') + 25));
  return new Set(names.filter((n) => /^[0-9A-F]{24}$/.test(n)));
}

async function assertAllStored(repo: RepoFixture, last: string, what: string): Promise<void> {
  const stored = await storedSegments(repo);
  const lastNo = Number.parseInt(last.slice(16), 16);
  for (let n = 1; n <= lastNo; n++) assert.ok(stored.has(segNo(n)), `${what}: segment ${segNo(n)} is reported archived but not stored`);
}

async function archiverFailures(c: Cluster): Promise<number> {
  return Number(await c.psql('select failed_count from pg_stat_archiver'));
}

for (const via of VIAS) test(`another user who plants the old shared spool (1777 dirs, records, a forged segment) changes nothing (${via})`, { timeout: 300_000 }, async () => {
  hostileUser();
  // Stands for /tmp: world-writable with the sticky bit; TMPDIR points there.
  const shared = await makeTempDir('shared-tmp', { owner: 'me' });
  await chmod(shared, 0o1777);
  const repo = await makeRepo('fs', false);
  const env = { CAIRN_REPO: repo.url, TMPDIR: shared };
  const c = await createCluster({ name: `hostile-${via}`, archiveCommand: '/bin/false', env });
  await c.start();
  const backlogLast = await makeSegments(c, 6);
  const ready = (await c.psql("select name from pg_ls_archive_statusdir() where name like '%.ready' order by 1")).split('\n').map((n) => n.replace(/\.ready$/, ''));
  assert.ok(ready.length >= 5, `${ready.length} .ready files`);

  // What the old code used: $TMPDIR/cairn-spool-<uid>/pgdata<data dir>/{push,get}.
  const old = `${shared}/cairn-spool-${pgUser().uid}/pgdata${await realpath(c.pgdata)}`;
  // Push records that name each waiting file exactly (a user with read access
  // to pg_wal, initdb -g, can take these identities), and a forged segment.
  const records = ready.map((n) => `${n}=${execFileSync('stat', ['-c', '%d %i %s %.9Y %.9Z', '--', join(c.pgdata, 'pg_wal', n)], { encoding: 'utf8' }).trim()}`);
  await hostileShell('mkdir -p "$1/push" "$1/get"; chmod 777 "$1" "$1/push" "$1/get"', [old]);
  for (const r of records) {
    const i = r.indexOf('=');
    await hostileShell('printf "%s\\n" "$2" > "$1"', [`${old}/push/${r.slice(0, i)}.ok`, r.slice(i + 1)]);
  }
  const target = ready[0]!;
  await hostileShell('printf "forged WAL" > "$1"', [`${old}/get/${target}`]);

  await c.setConf({ archive_command: commandLine('wal-push', '%p %f', via) });
  await c.reload();
  await c.psql("select pg_stat_reset_shared('archiver')");
  const last = await c.psql('insert into t values (1); select pg_walfile_name(pg_switch_wal())');
  assert.ok(last > backlogLast);
  await c.waitForArchived(last, 120_000);
  assert.equal(await archiverFailures(c), 0, 'archiving never failed');
  await assertAllStored(repo, last, 'planted records');
  await c.stop();

  // The forged segment is not served: what wal-get writes is the stored segment.
  const out = await makeTempDir('hostile-out');
  const got = await runCairn('wal-get', [target, join(out, 'a')], { cwd: c.pgdata, env, via });
  assert.equal(got.code, 0, got.stderr);
  const plain = await runCairn('wal-get', ['--prefetch', '0', target, join(out, 'b')], { cwd: c.pgdata, env, via });
  assert.equal(plain.code, 0, plain.stderr);
  const a = await readFile(join(out, 'a'));
  assert.notEqual(a.toString('latin1', 0, 10), 'forged WAL');
  assert.equal(sha(a), sha(await readFile(join(out, 'b'))));
  await c.destroy();
});

for (const via of VIAS) test(`a CAIRN_SPOOL_DIR of mode 1777, or a symbolic link, is refused with one warning and archiving goes on (${via})`, { timeout: 300_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const open = await makeTempDir('spool-1777');
  await chmod(open, 0o1777);
  const real = await makeTempDir('spool-real');
  const links = await makeTempDir('spool-links');
  const link = join(links, 'spool');
  await symlink(real, link);
  const env = { CAIRN_REPO: repo.url };
  const c = await createCluster({ name: `badspool-${via}`, archiveCommand: '/bin/false', env });
  await c.start();
  let last = '';
  for (const spool of [open, link]) {
    await c.setConf({ archive_command: `CAIRN_SPOOL_DIR=${sh(spool)} ${commandLine('wal-push', '%p %f', via)}` });
    await c.reload();
    await c.psql("select pg_stat_reset_shared('archiver')");
    last = await makeSegments(c, 3);
    await c.waitForArchived(last, 120_000);
    assert.equal(await archiverFailures(c), 0, `archiving with ${spool}`);
  }
  await assertAllStored(repo, last, 'unsafe spool');
  const log = await c.serverLog();
  assert.match(log, /cairn-wal-push: warn: spool "[^"]*" is writable by group or others \(mode 1777\): archiving without push-ahead/);
  assert.match(log, /cairn-wal-push: warn: spool "[^"]*" is a symbolic link: archiving without push-ahead/);
  assert.equal(existsSync(join(open, 'push')), false, 'nothing written into the refused spool');
  assert.deepEqual(await readdir(real), []);
  await c.stop();

  // wal-get too: one warning line, and the segment.
  const out = await makeTempDir('badspool-out');
  for (const spool of [open, link]) {
    const r = await runCairn('wal-get', [segNo(1), join(out, `s${spool === open ? 1 : 2}`)], { cwd: c.pgdata, env: { ...env, CAIRN_SPOOL_DIR: spool }, via });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines.length, 1, r.stderr);
    assert.match(r.lines[0]!, /^cairn-wal-get: warn: spool ".*" (is writable by group or others \(mode 1777\)|is a symbolic link): fetching without prefetch; /);
  }
  await c.destroy();
});

for (const via of VIAS) test(`archive_command = 'wal-push --repo R1 %p && wal-push --repo R2 %p' fills both repositories (${via})`, { timeout: 300_000 }, async () => {
  const r1 = await makeRepo('fs', false);
  const r2 = await makeRepo('fs', false);
  const c = await createCluster({ name: `tworepos-${via}`, archiveCommand: '/bin/false', env: { CAIRN_PUSH_AHEAD: '8' } });
  await c.start();
  await makeSegments(c, 16);
  const push = commandLine('wal-push', '', via);
  await c.setConf({ archive_command: `${push} --repo ${sh(r1.url)} %p %f && ${push} --repo ${sh(r2.url)} %p %f` });
  await c.reload();
  await c.psql("select pg_stat_reset_shared('archiver')");
  const last = await c.psql('insert into t values (1); select pg_walfile_name(pg_switch_wal())');
  await c.waitForArchived(last, 180_000);
  assert.equal(await archiverFailures(c), 0);
  await assertAllStored(r1, last, 'R1');
  await assertAllStored(r2, last, 'R2');
  // The default spool is inside the data directory's pg_wal, one context each.
  const contexts = await readdir(join(c.pgdata, 'pg_wal', '.cairn-spool', 'push'));
  assert.equal(contexts.length, 2, contexts.join(' '));
  // PostgreSQL ignores it (checkpoints, a restart), and no base backup copies it.
  await c.psql('checkpoint');
  await c.restart();
  assert.ok(existsSync(join(c.pgdata, 'pg_wal', '.cairn-spool', 'push')));
  const bb = await runCairn('basebackup', ['--pgdata', c.pgdata, '--repo', r1.url], { env: c.env });
  assert.equal(bb.code, 0, bb.stderr);
  const manifests = (await r1.keys('main/backups/')).filter((k) => k.endsWith('/manifest.json'));
  assert.equal(manifests.length, 1);
  const manifest = await readFile(join(r1.url, manifests[0]!), 'utf8');
  assert.match(manifest, /pg_wal\/archive_status/, 'a plain JSON manifest that lists pg_wal');
  assert.doesNotMatch(manifest, /cairn-spool/);
  const copy = await makeTempDir('tworepos-pgbb');
  await c.basebackup(copy);
  assert.equal(existsSync(join(copy, 'pg_wal', '.cairn-spool')), false, 'pg_basebackup copies no pg_wal contents');
  await c.destroy();
});

for (const via of VIAS) test(`prefetched segments are served by rename (the same inode) from the default spool in pg_wal (${via})`, { timeout: 300_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const env = { CAIRN_REPO: repo.url };
  const c = await createCluster({ name: `prefetch-${via}`, archiveCommand: commandLine('wal-push', '%p %f', via), env });
  await c.start();
  const last = await makeSegments(c, 5);
  await c.waitForArchived(last, 120_000);
  await c.stop();
  const first = await runCairn('wal-get', [segNo(1), 'pg_wal/RECOVERYXLOG'], { cwd: c.pgdata, env, via });
  assert.equal(first.code, 0, first.stderr);
  const getRoot = join(c.pgdata, 'pg_wal', '.cairn-spool', 'get');
  let entry: string | undefined;
  for (const until = Date.now() + 60_000; entry === undefined && Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
    for (const d of await readdir(getRoot).catch(() => [] as string[])) {
      if (existsSync(join(getRoot, d, segNo(2)))) entry = join(getRoot, d, segNo(2));
    }
  }
  assert.ok(entry, 'the worker prefetched the next segment');
  const st = await stat(entry);
  assert.equal(st.uid, pgUser().uid);
  assert.equal(st.mode & 0o077, 0);
  const r = await runCairn('wal-get', [segNo(2), 'pg_wal/RECOVERYXLOG'], { cwd: c.pgdata, env, via });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await stat(join(c.pgdata, 'pg_wal', 'RECOVERYXLOG'))).ino, st.ino, 'moved, not copied');
  assert.equal(existsSync(entry), false);
  await c.destroy();
});

test("another user's directory at the compile cache path in a shared TMPDIR is not used", { timeout: 120_000 }, async () => {
  hostileUser();
  const shared = await makeTempDir('shared-cache', { owner: 'me' });
  await chmod(shared, 0o1777);
  const planted = `${shared}/cairn-compile-cache-${pgUser().uid}`;
  await hostileShell('mkdir "$1"; chmod 777 "$1"', [planted]);
  for (const tool of ['wal-push', 'wal-get', 'cairn']) {
    const r = await runCairn(tool, ['--version'], { env: { TMPDIR: shared } });
    assert.equal(r.code, 0, r.stderr);
  }
  assert.deepEqual(await readdir(planted), [], 'nothing compiled into (or read from) a directory another user controls');
  // Our own private one is used.
  const mine = await makeTempDir('own-cache');
  await runCairn('wal-push', ['--version'], { env: { TMPDIR: mine } });
  assert.ok((await readdir(join(mine, `cairn-compile-cache-${pgUser().uid}`))).length > 0, 'the cache works in a private place');
});
