// cairn-info against a real cluster archiving through cairn-wal-push into a
// file repository: the empty repository, then a full and an incremental
// backup (ids, parents, LSNs, WAL range, the recoverability window), then a
// WAL segment deleted after the newest backup (the gap, and a latest point
// before it); the errors an operator meets (wrong key, unknown flag).

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import type { InfoDocument, InfoReport } from '@cairn/core/info/report';
import { parseLsn } from '@cairn/core/wal/lsn';
import { makeKeyFile, makeRepo, type RepoFixture } from './repo-fixture.js';
import { cairnOk, readStoredManifest, switchAndWaitArchived, takeBackup, walPushCommand } from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

interface State {
  repo: RepoFixture;
  src: Cluster;
  full: string;
  incr: string;
  /** Segments archived after the incremental, oldest first. */
  after: string[];
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

async function infoJson(repo: RepoFixture, args: string[] = []): Promise<InfoReport> {
  const r = await cairnOk('info', ['--json', ...args], repo.env);
  const doc = JSON.parse(r.stdout) as InfoDocument;
  assert.equal(doc.format, 'cairn.info/1');
  assert.deepEqual(doc.errors, []);
  assert.equal(doc.repositories.length, 1);
  return doc.repositories[0]!;
}

describe('cairn-info (fs repository)', { timeout: 300_000 }, () => {
  it('reports an empty repository: nothing stored, nothing restorable, exit 0', async () => {
    const repo = await makeRepo('fs', false);
    const r = await infoJson(repo);
    assert.deepEqual([r.backups, r.dumps, r.wal], [[], [], []]);
    assert.equal(r.repository.objects, 0);
    assert.deepEqual(r.recoverability, { earliest: null, latest: null, latestAgeSeconds: null, systems: [] });
    const table = await cairnOk('info', [], repo.env);
    assert.match(table.stdout, /^backups\n {2}no backups$/m);
    assert.match(table.stdout, /nothing can be restored: no backups/);
    assert.match(table.stdout, /last verify {2}never/);

    const src = await createCluster({ name: 'info-src', archiveCommand: walPushCommand(), env: repo.env });
    await src.start();
    await src.psql("create table marker(v text); insert into marker values ('before full')");
    const full = await takeBackup(src, repo, 'full');
    await src.psql("insert into marker select 'between ' || g from generate_series(1, 1000) g");
    await switchAndWaitArchived(src);
    const incr = await takeBackup(src, repo, 'incr');
    const afterSegs: string[] = [];
    for (let i = 0; i < 3; i++) {
      await src.psql(`insert into marker values ('after ${i}')`);
      afterSegs.push(await switchAndWaitArchived(src));
    }
    st = { repo, src, full, incr, after: afterSegs };
  });

  it('lists the backups, the WAL range and the window after a full and an incremental', async () => {
    const { repo, full, incr, after: afterSegs } = state();
    const r = await infoJson(repo);
    const fullM = await readStoredManifest(repo, full);
    const incrM = await readStoredManifest(repo, incr);
    assert.deepEqual(
      r.backups.map((b) => [b.id, b.type, b.parent, b.timeline, b.start.lsn, b.stop.lsn, b.stop.time, b.size, b.restorable]),
      [
        [full, 'full', null, 1, fullM.start.lsn, fullM.stop.lsn, fullM.stop.time, fullM.totals.size, true],
        [incr, 'incr', full, 1, incrM.start.lsn, incrM.stop.lsn, incrM.stop.time, incrM.totals.size, true],
      ],
    );
    assert.equal(r.wal.length, 1);
    const sys = r.wal[0]!;
    assert.equal(sys.registered, true);
    assert.equal(sys.timelines.length, 1);
    const tl = sys.timelines[0]!;
    assert.equal(tl.timeline, 1);
    assert.ok(tl.first <= fullM.start.wal, `first archived ${tl.first} is at or before the full's start ${fullM.start.wal}`);
    assert.ok(tl.last >= afterSegs.at(-1)!, `last archived ${tl.last} reaches ${afterSegs.at(-1)}`);
    assert.equal(tl.gapCount, 0);
    assert.equal(tl.missingSegments, 0);
    assert.ok(r.repository.areas.wal.objects >= tl.segments);
    assert.ok(r.repository.areas.backups.bytes > 0);
    assert.equal(r.repository.encrypted, false);

    const rec = r.recoverability;
    assert.equal(rec.earliest?.backup, full);
    assert.equal(rec.earliest?.lsn, fullM.stop.lsn);
    assert.equal(rec.earliest?.time, fullM.stop.time);
    assert.ok(rec.latest, 'a latest point');
    assert.ok(parseLsn(rec.latest.lsn) >= parseLsn(incrM.stop.lsn), `latest ${rec.latest.lsn} is at or after the incremental's stop ${incrM.stop.lsn}`);
    assert.ok(rec.latest.wal >= afterSegs.at(-1)!, `latest segment ${rec.latest.wal} reaches ${afterSegs.at(-1)}`);
    assert.equal(rec.latest.wal, tl.last, 'continuous WAL: latest is the end of the archive');
    assert.ok(Date.parse(rec.latest.time) >= Date.parse(incrM.stop.time));
    assert.deepEqual(rec.systems[0]?.unreachable, []);

    const table = (await cairnOk('info', [], repo.env)).stdout;
    for (const id of [full, incr]) assert.match(table, new RegExp(`^ {2}${id} `, 'm'), `the table lists ${id}`);
    assert.match(table, new RegExp(`^ {2}${incr} +incr +${full} `, 'm'), 'the incremental names its parent');
    assert.match(table, new RegExp(`earliest {2}.*end of backup ${full}, LSN ${fullM.stop.lsn.replace('/', '\\/')}`));
    assert.match(table, new RegExp(`latest {4}at or before .*end of WAL segment ${tl.last}`));
  });

  it('shows a WAL gap after the newest backup and a latest point before it', async () => {
    const { repo, src, incr, after: afterSegs } = state();
    await src.stop(); // no more archiving: the archive's end stays put
    const victim = afterSegs[1]!;
    const keys = (await repo.keys('main/wal/')).filter((k) => k.includes(`/${victim}-`));
    assert.equal(keys.length, 1, `one stored object for ${victim}`);
    await rm(join(repo.url, keys[0]!));

    const r = await infoJson(repo);
    const tl = r.wal[0]!.timelines[0]!;
    assert.equal(tl.gapCount, 1);
    assert.equal(tl.missingSegments, 1);
    assert.deepEqual(tl.gaps, [{ from: victim, to: victim, segments: 1 }]);
    const rec = r.recoverability;
    assert.equal(rec.latest?.backup, incr);
    assert.equal(rec.latest?.wal, afterSegs[0], 'latest stops at the segment before the gap');
    assert.ok(rec.systems[0]!.notes.some((n) => n.includes(victim)), `a note names ${victim}: ${JSON.stringify(rec.systems[0]!.notes)}`);
    assert.ok(r.backups.every((b) => b.restorable), 'the backups themselves are whole');

    const table = (await cairnOk('info', [], repo.env)).stdout;
    assert.match(table, new RegExp(`timeline 1 of system \\d+: 1 segment missing: ${victim}`));
    assert.match(table, new RegExp(`latest {4}at or before .*end of WAL segment ${afterSegs[0]}`));
    assert.match(table, new RegExp(`WAL segment ${victim} is missing`));
  });

  it('refuses a key for an unencrypted repository (exit 3) and an unknown flag (exit 2)', async () => {
    const { repo } = state();
    const key = await makeKeyFile();
    const r = await runCairn('info', ['--encryption-key-file', key], { env: repo.env });
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^cairn-info: error: .*is not encrypted, but an encryption key is configured/m);
    const j = await runCairn('info', ['--json', '--encryption-key-file', key], { env: repo.env });
    assert.equal(j.code, 3, j.stderr);
    const doc = JSON.parse(j.stdout) as InfoDocument;
    assert.deepEqual(doc.repositories, []);
    assert.equal(doc.errors[0]?.code, 'KEY_MISMATCH');
    const u = await runCairn('info', ['--jsn'], { env: repo.env });
    assert.equal(u.code, 2, u.stderr);
    assert.match(u.stderr, /--jsn/);
  });

  it('reports every readable repository of several; an unreachable one is named and exits 3', async () => {
    const { repo, full } = state();
    const down = 's3://nobucket/pg?endpoint=http://127.0.0.1:1&region=us-east-1&force-path-style=true&max-attempts=1&connect-timeout-ms=500';
    const env = { ...repo.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
    const args = ['--repo', repo.url, '--repo', down];
    const j = await runCairn('info', ['--json', ...args], { env });
    assert.equal(j.code, 3, j.stderr);
    const doc = JSON.parse(j.stdout) as InfoDocument;
    assert.deepEqual(doc.repositories.map((r) => [r.repo, r.recoverability.earliest?.backup]), [[repo.url, full]]);
    assert.deepEqual(doc.errors.map((e) => [e.repo, e.code]), [[down, 'STORAGE_UNAVAILABLE']]);
    const t = await runCairn('info', args, { env });
    assert.equal(t.code, 3, t.stderr);
    assert.match(t.stdout, new RegExp(`^repository ${repo.url}, cluster "main"$`, 'm'));
    assert.match(t.stderr, /^cairn-info: error: repository "s3:\/\/nobucket\/pg\?.*ECONNREFUSED/m);
  });
});
