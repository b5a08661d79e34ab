// wal-get's answers PostgreSQL bets the recovery on (docs/design.md §4.4, §4.12):
// "not found" (exit 1, which ends recovery and promotes) only from
// repositories that are there and hold the cluster and system; a missing,
// empty or wrong repository is 126, and a recovery through it stops instead
// of promoting early; a whole segment stored under a wrong name (another
// cluster's, or the next one renamed) is refused by wal-get and reported by
// verify; pg_rewind's call from outside the data directory finds its system.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { binPath } from '@cairn/testkit/paths';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { encodeBuffer, sha256Hex } from '@cairn/core/codec/index';
import { walObjectKey } from '@cairn/core/repo/layout';
import { sleep, switchAndWaitArchived, walPushCommand } from './pitr-harness.js';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { runCairn } from './tools.js';
import { makeWalMaterial, type WalMaterial } from './wal-material.js';

after(runCleanups);

let m: WalMaterial;
let other: WalMaterial;
before(async () => {
  m = await makeWalMaterial('trust', 3);
  other = await makeWalMaterial('trust-other', 1);
});

const getIn = (pgdata: string, env: Record<string, string>, args: string[]) =>
  runCairn('wal-get', [...args, '--prefetch', '0', '--retries', '0'], { env, cwd: pgdata });

/** Stores `data` as WAL file `walName` of `systemId`, the way wal-push lays it out: its own SHA-256 in the key, zstd. */
async function plant(repo: RepoFixture, systemId: string, walName: string, data: Buffer): Promise<string> {
  const key = walObjectKey('main', systemId, walName, sha256Hex(data), '.zst');
  const path = join(repo.url, key);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, await encodeBuffer(data, { compress: { alg: 'zstd', level: 1 } }), { mode: 0o600 });
  await chownToPgUser(repo.url, { recursive: true });
  return key;
}

const wal = (w: WalMaterial, name: string) => readFile(join(w.pgdata, 'pg_wal', name));

describe('wal-get: "not found" only from a repository that is there', { timeout: 600_000 }, () => {
  test('missing, empty, a file, a wrong --cluster or --system-id: 126 naming the repository; a valid one without the file: 1', async () => {
    const repo = await makeRepo('fs', false);
    const [seg1, seg2] = m.segments as [string, string];
    const r0 = await runCairn('wal-push', [`pg_wal/${seg1}`, seg1], { env: repo.env, cwd: m.pgdata });
    assert.equal(r0.code, 0, r0.stderr);

    const scratch = await makeTempDir('not-a-repo');
    const empty = join(scratch, 'empty');
    await mkdir(empty);
    const file = join(scratch, 'file');
    await writeFile(file, 'not a repository\n');
    await chownToPgUser(scratch, { recursive: true });
    const wrong: [string, Record<string, string>, string[], RegExp][] = [
      ['a missing directory (an unmounted NAS)', { CAIRN_REPO: join(scratch, 'nas') }, [], /^cairn-wal-get: error: repository ".*\/nas" holds no cluster "main" .*not mounted/],
      ['an empty directory', { CAIRN_REPO: empty }, [], /^cairn-wal-get: error: repository ".*\/empty" holds no cluster "main"/],
      ['a regular file', { CAIRN_REPO: file }, [], /^cairn-wal-get: error: repository ".*\/file" (holds no cluster "main" .*not a directory|is a regular file, not a directory)/],
      ['a wrong --cluster', {}, ['--cluster', 'other'], /^cairn-wal-get: error: repository ".*" holds no cluster "other" .*--cluster is wrong/],
      ['a wrong --system-id', {}, ['--system-id', '1234'], new RegExp(`^cairn-wal-get: error: database system 1234 is not registered in repository ".*" cluster "main" \\(it holds ${m.systemId}\\)`)],
    ];
    for (const [what, env, flags, message] of wrong) {
      for (const name of [seg2, '00000002.history']) {
        const dest = `pg_wal/RECOVERY.${name}`;
        const r = await getIn(m.pgdata, { ...repo.env, ...env }, [name, dest, ...flags]);
        assert.equal(r.code, 126, `${what}, ${name}: exit ${r.code} ${r.stderr}`);
        assert.equal(r.lines.length, 1, `${what}: one line\n${r.stderr}`);
        assert.match(r.stderr, message, what);
        assert.ok(!existsSync(join(m.pgdata, dest)), `${what}: nothing at %p`);
      }
    }
    // On S3: a prefix (or bucket) with nothing in it.
    const s3 = await makeRepo('s3', false);
    const bare = await getIn(m.pgdata, { ...s3.env, CAIRN_REPO: s3.url.replace('/pg?', '/nothing-here?') }, [seg2, 'pg_wal/RECOVERYXLOG.s3']);
    assert.equal(bare.code, 126, bare.stderr);
    assert.equal(bare.lines.length, 1, bare.stderr);
    assert.match(bare.stderr, /error: repository "s3:\/\/[^"]*nothing-here[^"]*" holds no cluster "main"/);

    // --errors-as-not-found keeps its meaning (standbys that fall back to streaming).
    const lax = await getIn(m.pgdata, { ...repo.env, CAIRN_REPO: join(scratch, 'nas') }, [seg2, 'pg_wal/RECOVERYXLOG', '--errors-as-not-found']);
    assert.equal(lax.code, 1, lax.stderr);

    // A valid repository: an absent segment and the history probes of a fresh recovery are "not found".
    for (const name of [seg2, '00000002.history', '00000003.history']) {
      const r = await getIn(m.pgdata, repo.env, [name, 'pg_wal/RECOVERYXLOG']);
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.equal(r.stderr, '');
    }
    const r = await getIn(m.pgdata, repo.env, [seg1, 'pg_wal/RECOVERYXLOG']);
    assert.equal(r.code, 0, r.stderr);

    // Two repositories: the valid one serves what it has, with a warning for the missing one;
    // what it lacks is not "not found", since the missing one might hold it.
    const two = { ...repo.env, CAIRN_REPO: `${join(scratch, 'nas')},${repo.url}` };
    const both = await getIn(m.pgdata, two, [seg1, 'pg_wal/RECOVERYXLOG.two']);
    assert.equal(both.code, 0, both.stderr);
    assert.match(both.stderr, /warn: .*repository ".*\/nas" holds no cluster "main"/);
    assert.ok((await readFile(join(m.pgdata, 'pg_wal', 'RECOVERYXLOG.two'))).equals(await wal(m, seg1)));
    const neither = await getIn(m.pgdata, two, [seg2, 'pg_wal/RECOVERYXLOG.none']);
    assert.equal(neither.code, 126, neither.stderr);
  });

  test('a recovery whose repository is moved away half-way stops, and finishes once it is back', { timeout: 600_000 }, async () => {
    const fixture = await makeRepo('fs', false);
    // The repository lies in a directory of the pg user, so the restore_command below can move it.
    const parent = await makeTempDir('moving');
    const repoDir = join(parent, 'repo');
    const env = { ...fixture.env, CAIRN_REPO: repoDir };
    const src = await createCluster({ name: 'vanish-src', archiveCommand: walPushCommand(), env });
    await src.start();
    await src.psql('create table t(i int)');
    const dst = await createCluster({ name: 'vanish-dst', initdb: false, env });
    await src.basebackup(dst.pgdata);
    for (let i = 0; i < 10; i++) await src.psql('insert into t select generate_series(1, 1000); select pg_switch_wal()');
    await switchAndWaitArchived(src);
    const expected = await src.psql('select count(*) from t');
    assert.equal(expected, '10000');
    await src.stop();

    // restore_command: cairn-wal-get; after it served the third segment the repository goes away (once).
    const served = join(parent, 'served');
    const moved = join(parent, 'moved');
    const hook = join(parent, 'restore.sh');
    await writeFile(hook, [
      '#!/bin/sh',
      `"${binPath('wal-get')}" "$1" "$2" --prefetch 0`,
      'rc=$?',
      `case "$1" in *.history) ;; *) [ $rc = 0 ] && echo "$1" >> "${served}" ;; esac`,
      `if [ ! -e "${moved}" ] && [ -f "${served}" ] && [ "$(wc -l < "${served}")" -ge 3 ]; then mv "${repoDir}" "${repoDir}.away" && touch "${moved}"; fi`,
      'exit $rc',
      '',
    ].join('\n'));
    await chmod(hook, 0o700);
    await chownToPgUser(hook);
    await dst.setConf({ restore_command: `${hook} %f %p`, archive_mode: 'off', recovery_target_timeline: 'latest' });
    await dst.writeFile('recovery.signal', '');
    await dst.start({ wait: false });

    const promoted = /archive recovery complete|selected new timeline ID/;
    const deadline = Date.now() + 180_000;
    let log = '';
    for (;;) {
      log = await dst.serverLog();
      if (promoted.test(log) || /(shutting down|aborting startup) due to startup process failure/.test(log)) break;
      assert.ok(Date.now() < deadline, `recovery neither stopped nor ended:\n${log}`);
      await sleep(200);
    }
    assert.ok(existsSync(`${repoDir}.away`), 'the repository was moved away during recovery');
    assert.doesNotMatch(log, promoted, `recovery must not end without the repository:\n${log}`);
    assert.match(log, /repository ".*\/repo" holds no cluster "main"/);
    assert.match(log, /could not restore file "[0-9A-F]{24}" from archive/);
    for (let i = 0; i < 100 && (await dst.isRunning()); i++) await sleep(100);
    assert.equal(await dst.isRunning(), false, 'the server stopped');

    // The mount is back: the same recovery goes on to the end, with every row.
    await rename(`${repoDir}.away`, repoDir);
    await dst.start({ timeoutSec: 300 });
    await dst.waitForRecoveryEnd(300_000);
    assert.equal(await dst.psql('select count(*) from t'), expected, 'all rows once the repository is back');
    await dst.destroy();
    await src.destroy();
  });
});

describe('wal-get and verify: every segment served is the one asked for', { timeout: 600_000 }, () => {
  test('another cluster\'s segment, and segment N+1 stored as N, each with its matching SHA-256', async () => {
    const repo = await makeRepo('fs', false);
    const [seg1, seg2, seg3] = m.segments as [string, string, string];
    assert.equal(other.segments[0], seg1, 'both clusters have a first segment of that name');
    const r0 = await runCairn('wal-push', [`pg_wal/${seg3}`, seg3], { env: repo.env, cwd: m.pgdata });
    assert.equal(r0.code, 0, r0.stderr);
    const foreignKey = await plant(repo, m.systemId, seg1, await wal(other, seg1));
    const renamedKey = await plant(repo, m.systemId, seg2, await wal(m, seg3));

    const start = (name: string) => `0/${Number.parseInt(name.slice(16), 16).toString(16).toUpperCase()}000000`;
    assert.equal(seg3.slice(0, 16), '0000000100000000', 'segments of the first 4 GiB');
    const cases: [string, string, RegExp][] = [
      ['foreign', seg1, new RegExp(`^cairn-wal-get: error: WAL file "${seg1}" in repository ".*" is not that segment: its page header says system ${other.systemId}, .*; the repository holds it for system ${m.systemId};`)],
      ['renamed', seg2, new RegExp(`^cairn-wal-get: error: WAL file "${seg2}" in repository ".*" is not that segment: its page header says .*start ${start(seg3)} \\(${seg3}\\); the name says start ${start(seg2)};`)],
    ];
    for (const [what, name, message] of cases) {
      const r = await getIn(m.pgdata, repo.env, [name, 'pg_wal/RECOVERYXLOG.bad']);
      assert.equal(r.code, 126, `${what}: exit ${r.code} ${r.stderr}`);
      assert.equal(r.lines.length, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.ok(!existsSync(join(m.pgdata, 'pg_wal', 'RECOVERYXLOG.bad')), `${what}: nothing at %p`);
      assert.deepEqual((await readdir(join(m.pgdata, 'pg_wal'))).filter((n) => n.includes('cairn-tmp')), [], 'no temp file left');
    }
    const good = await getIn(m.pgdata, repo.env, [seg3, 'pg_wal/RECOVERYXLOG']);
    assert.equal(good.code, 0, good.stderr);

    const v = await runCairn('verify', ['--json'], { env: repo.env });
    assert.equal(v.code, 1, v.stderr);
    const problems = (JSON.parse(v.stdout) as { problems: { kind: string; subject: string; key?: string }[] }).problems;
    const mismatches = problems.filter((p) => p.kind === 'wal-mismatch').map((p) => `${p.subject} ${p.key}`).sort();
    assert.deepEqual(mismatches, [`${seg1} ${foreignKey}`, `${seg2} ${renamedKey}`], JSON.stringify(problems, null, 2));
    const text = await runCairn('verify', [], { env: repo.env });
    assert.match(text.stdout + text.stderr, /is not that segment/);
    assert.match(text.stdout + text.stderr, /cairn-wal-get refuses this file/);
  });

  test('pg_rewind\'s call (cwd /, absolute %p in a data directory) picks that directory\'s system out of two', async () => {
    const repo = await makeRepo('fs', false);
    const seg1 = m.segments[0]!;
    let r = await runCairn('wal-push', [`pg_wal/${seg1}`, seg1], { env: repo.env, cwd: m.pgdata });
    assert.equal(r.code, 0, r.stderr);
    r = await runCairn('wal-push', [`pg_wal/${seg1}`, seg1, '--register-system'], { env: repo.env, cwd: other.pgdata });
    assert.equal(r.code, 0, r.stderr);
    for (const w of [m, other]) {
      const dest = join(w.pgdata, 'pg_wal', 'RECOVERYXLOG.rewind');
      r = await getIn('/', repo.env, [seg1, dest]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await readFile(dest)).equals(await wal(w, seg1)), `the segment of system ${w.systemId}`);
    }
    // Outside any data directory it still cannot tell, and says so (126, not "not found").
    r = await getIn('/', repo.env, [seg1, join(await makeTempDir('elsewhere'), 'x')]);
    assert.equal(r.code, 126, r.stderr);
    assert.match(r.stderr, /holds several database systems/);
  });
});
