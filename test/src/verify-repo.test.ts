// cairn-verify against a real archive (fs): a cluster archiving through
// cairn-wal-push, a full and an incremental backup, a restore promoted to
// timeline 2 (so the archive holds a history file). A clean repository
// verifies with exit 0; copies of it, each damaged one way, are each found
// with exit 1 and the problem named.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { zstdCompressSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { cairnOk, currentTimeline, readStoredManifest, restoreAndStart, sleep, switchAndWaitArchived, takeBackup, walPushCommand, type StoredManifest } from './pitr-harness.js';
import { runCairn, type ToolRun } from './tools.js';

after(runCleanups);

const run = promisify(execFile);

interface Problem {
  kind: string;
  subject: string;
  key?: string;
  message: string;
  hint: string;
}

interface VerifyJson {
  format: string;
  id: string;
  scope: string;
  ok: boolean;
  checked: { backups: number; dumps: number; objects: number; bytes: number; storedBytes: number; walSegments: number; historyFiles: number };
  problems: Problem[];
  notes?: string[];
}

interface State {
  repo: RepoFixture;
  full: StoredManifest;
  incr: StoredManifest;
  /** A TL1 segment after both backups with archived segments on either side. */
  middle: string;
  /** The key of 00000002.history. */
  history: string;
  /** cairn-dump of postgres (custom format) and of app (directory format). */
  dumps: ToolRun[];
  dumpRepo: RepoFixture;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

/** A copy of the repository (cp -a keeps the pg user's ownership) and the env pointing at it. */
async function copyRepo(label: string, repo = state().repo): Promise<{ dir: string; env: Record<string, string> }> {
  const dir = join(await makeTempDir(`verify-${label}`), 'repo');
  await run('cp', ['-a', repo.url, dir]);
  return { dir, env: { ...repo.env, CAIRN_REPO: dir } };
}

async function verifyJson(env: Record<string, string>, args: string[] = []): Promise<{ code: number; json: VerifyJson; stderr: string }> {
  const r = await runCairn('verify', ['--json', ...args], { env });
  let json: VerifyJson;
  try {
    json = JSON.parse(r.stdout) as VerifyJson;
  } catch {
    assert.fail(`cairn-verify --json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, json, stderr: r.stderr };
}

const kinds = (j: VerifyJson) => j.problems.map((p) => `${p.kind} ${p.subject}`);

describe('cairn-verify (fs repository with two timelines)', { timeout: 600_000 }, () => {
  it('builds a repository: archive, full + incr backups, a promotion to timeline 2', async () => {
    const repo = await makeRepo('fs', false);
    const src: Cluster = await createCluster({ name: 'verify-src', archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env });
    await src.start();
    await src.pgbench(['-i', '-s', '1', '-q']);
    // The incremental references a file only if its mtime is over a second
    // older than the full's start: give initdb's files (template1's
    // catalogs, which nothing changes) that second, or on a fast machine the
    // incremental stores them again and no file is shared.
    await sleep(1500);
    const fullId = await takeBackup(src, repo, 'full');
    await src.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
    const incrId = await takeBackup(src, repo, 'incr');
    // Segments after the backups, so one can go missing in the middle.
    await src.pgbench(['-c', '2', '-j', '2', '-t', '200', '-n']);
    await switchAndWaitArchived(src);
    const middle = await src.psql('select pg_walfile_name(pg_current_wal_lsn())');
    await src.psql('create table after_middle(a int); insert into after_middle values (1)');
    await switchAndWaitArchived(src);
    await src.psql('insert into after_middle values (2)');
    // Dumps: custom format (postgres) and directory format (app, --jobs 2).
    await src.psql('create database app');
    await src.pgbench(['-i', '-s', '1', '-q', 'app']);
    // In a repository of their own: the backup and WAL cases do not depend on cairn-dump.
    const dumpRepo = await makeRepo('fs', false);
    const dumps = [
      await runCairn('dump', ['--dbname', 'postgres'], { env: { ...src.env, ...dumpRepo.env } }),
      await runCairn('dump', ['--dbname', 'app', '--jobs', '2'], { env: { ...src.env, ...dumpRepo.env } }),
    ];
    await switchAndWaitArchived(src);
    await src.stop();

    // Restore to the end of the archive and promote with archiving on: timeline 2.
    const { cluster: tl2 } = await restoreAndStart(repo, 'verify-tl2', ['--target', 'latest', '--target-action', 'promote'], { archive: true });
    assert.equal(await currentTimeline(tl2), 2);
    await tl2.psql('insert into after_middle values (3)');
    await switchAndWaitArchived(tl2);
    await tl2.stop();
    await tl2.destroy();

    const keys = await repo.keys('main/wal/');
    const history = keys.find((k) => /\/00000002\.history-/.test(k));
    assert.ok(history, `00000002.history is archived:\n${keys.join('\n')}`);
    assert.ok(keys.some((k) => k.includes(`/${middle}-`)), `${middle} is archived`);
    st = { repo, full: await readStoredManifest(repo, fullId), incr: await readStoredManifest(repo, incrId), middle, history, dumpRepo, dumps };
  });

  it('exits 0 on the clean repository and stores its result there', async () => {
    const { repo, full, incr } = state();
    const { dir, env } = await copyRepo('clean');
    const { code, json, stderr } = await verifyJson(env);
    assert.equal(code, 0, `exit 0 on a clean repository:\n${JSON.stringify(json.problems, null, 2)}\n${stderr}`);
    assert.equal(json.format, 'cairn.verify/1');
    assert.equal(json.ok, true);
    assert.equal(json.scope, 'all');
    assert.equal(json.checked.backups, 2);
    const distinct = new Set([...full.files, ...incr.files].map((f) => f.key)).size;
    assert.equal(json.checked.objects, distinct, 'every stored backup object is read once');
    assert.ok(json.checked.walSegments >= 5, `WAL segments checked: ${json.checked.walSegments}`);
    assert.equal(json.checked.historyFiles, 1);
    const stored = JSON.parse(await readFile(join(dir, 'main', 'verify', `${json.id}.json`), 'utf8')) as VerifyJson;
    assert.deepEqual(stored, json, 'the stored result is what --json printed');
    // The human report: a summary line on stderr, nothing on stdout.
    const human = await runCairn('verify', [], { env: { ...repo.env } });
    assert.equal(human.code, 0, human.stderr);
    assert.equal(human.stdout, '');
    assert.match(human.stderr, /verify all of cluster "main" .*: 2 backups, 0 dumps, \d+ objects .* [kMG]?B\/s; no problems/);
  });

  it('finds a corrupted backup file (whole repository and --set of the incremental that references it)', async () => {
    const { full, incr } = state();
    // A file the full stored and the incremental references: one object, two backups.
    const f = incr.files.find((x) => x.ref === full.id && x.size > 8192);
    assert.ok(f, 'the incremental references a file of the full');
    const { dir, env } = await copyRepo('corrupt');
    // A small file is a member of a bundle: flip a byte in its stretch of it.
    const path = join(dir, f.bundle?.key ?? f.key);
    const bytes = await readFile(path);
    const at = (f.bundle?.offset ?? 0) + (f.storedSize >> 1);
    bytes[at] = bytes[at]! ^ 0xff;
    await writeFile(path, bytes);

    const all = await verifyJson(env);
    assert.equal(all.code, 1);
    assert.deepEqual(kinds(all.json), [`object-corrupt ${full.id}`], JSON.stringify(all.json.problems, null, 2));
    assert.equal(all.json.problems[0]!.key, f.key);
    assert.match(all.json.problems[0]!.message, new RegExp(`^backup "${full.id}": .*"${f.path}"`));

    const set = await verifyJson(env, ['--set', incr.id]);
    assert.equal(set.code, 1);
    assert.equal(set.json.scope, `set:${incr.id}`);
    assert.deepEqual(kinds(set.json), [`object-corrupt ${incr.id}`]);
    assert.match(set.json.problems[0]!.message, new RegExp(`stored by backup "${full.id}"`));

    // The human report: the problem with its hint, exit 1.
    const human = await runCairn('verify', ['--set', incr.id], { env });
    assert.equal(human.code, 1);
    assert.match(human.stderr, /^problem: backup "\d{8}-\d{6}I": (corrupt (zstd |gzip )?data|.*fails its checksum)/m);
    assert.match(human.stderr, /^ {2}hint: .*take a new full backup/m);
    assert.match(human.stderr, /1 problem$/m);
  });

  it('finds a missing backup file (a bundle: each of its files)', async () => {
    const { incr } = state();
    const f = incr.files.find((x) => x.ref === incr.id);
    assert.ok(f, 'the incremental stored a file of its own');
    const { dir, env } = await copyRepo('missing');
    const gone = f.bundle?.key ?? f.key;
    await rm(join(dir, gone));
    const lost = incr.files.filter((x) => x.ref === incr.id && (x.bundle?.key ?? x.key) === gone);
    const { code, json } = await verifyJson(env);
    assert.equal(code, 1);
    assert.deepEqual(kinds(json), lost.map(() => `object-missing ${incr.id}`), JSON.stringify(json.problems, null, 2));
    for (const p of json.problems) {
      assert.equal(p.key, gone);
      assert.match(p.message, /is missing/);
    }
  });

  it('finds a WAL segment missing in the middle of the archive, and --set of a backup does not care', async () => {
    const { middle, full } = state();
    const { dir, env } = await copyRepo('gap');
    const key = (await state().repo.keys('main/wal/')).find((k) => k.includes(`/${middle}-`))!;
    await rm(join(dir, key));
    // As while push-ahead drains a backlog out of order: the segments after
    // the hole were stored just now. Not archived yet, not lost: a note.
    const walKeys = await state().repo.keys('main/wal/');
    const now = new Date();
    for (const k of walKeys.filter((k) => /\/[0-9A-F]{24}-/.test(k) && k.slice(k.lastIndexOf('/') + 1, k.lastIndexOf('/') + 25) > middle)) await utimes(join(dir, k), now, now);
    const draining = await verifyJson(env);
    assert.equal(draining.code, 0, JSON.stringify(draining.json.problems, null, 2));
    assert.ok(draining.json.notes?.some((n) => n.includes(`WAL "${middle}" on timeline 1`) && n.includes('not archived yet')), JSON.stringify(draining.json.notes));
    await sleep(1100);
    const { code, json } = await verifyJson(env, ['--wal-gap-grace', '1s']);
    assert.equal(code, 1);
    assert.deepEqual(kinds(json), [`wal-gap ${middle}`], JSON.stringify(json.problems, null, 2));
    assert.match(json.problems[0]!.message, new RegExp(`WAL "${middle}" on timeline 1 .* is missing`));
    // The full backup's own WAL is whole: a scoped run passes.
    const set = await verifyJson(env, ['--set', full.id]);
    assert.equal(set.code, 0, JSON.stringify(set.json.problems));
  });

  it("finds a backup's own WAL missing", async () => {
    const { full } = state();
    const { dir, env } = await copyRepo('backup-wal');
    const key = (await state().repo.keys('main/wal/')).find((k) => k.includes(`/${full.stop.wal}-`))!;
    assert.ok(key, `the full's stop segment ${full.stop.wal} is archived`);
    await rm(join(dir, key));
    const set = await verifyJson(env, ['--set', full.id]);
    assert.equal(set.code, 1);
    assert.deepEqual(kinds(set.json), [`backup-wal-missing ${full.id}`]);
  });

  it('finds a missing history file', async () => {
    const { history } = state();
    const { dir, env } = await copyRepo('history');
    await rm(join(dir, history));
    const { code, json } = await verifyJson(env);
    assert.equal(code, 1);
    assert.deepEqual(kinds(json), ['history-missing timeline 2'], JSON.stringify(json.problems, null, 2));
    assert.match(json.problems[0]!.hint, /00000002\.history/);
  });

  it('finds a corrupted WAL segment and a damaged manifest', async () => {
    const { middle, incr } = state();
    const { dir, env } = await copyRepo('wal-corrupt');
    const key = (await state().repo.keys('main/wal/')).find((k) => k.includes(`/${middle}-`))!;
    const bytes = await readFile(join(dir, key));
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
    await writeFile(join(dir, key), bytes);
    await writeFile(join(dir, 'main', 'backups', incr.id, 'manifest.json'), '{"format": "cairn.backup/1"');
    const { code, json } = await verifyJson(env);
    assert.equal(code, 1);
    assert.deepEqual(kinds(json).sort(), [`manifest-invalid ${incr.id}`, `wal-corrupt ${middle}`], JSON.stringify(json.problems, null, 2));
  });

  it('verifies custom and directory dumps; finds a table of contents pg_restore cannot read and a corrupt dump file', async () => {
    const { dumps, dumpRepo } = state();
    for (const d of dumps) assert.equal(d.code, 0, `cairn-dump:\n${d.stderr}`);
    const [custom, directory] = dumps.map((d) => d.stdout.trim()) as [string, string];
    assert.match(custom, /^postgres\/\d{8}-\d{6}L$/);
    assert.match(directory, /^app\/\d{8}-\d{6}L$/);
    const { dir, env } = await copyRepo('dumps', dumpRepo);
    const one = await verifyJson(env, ['--dump', directory]);
    assert.equal(one.code, 0, JSON.stringify(one.json.problems, null, 2));
    assert.equal(one.json.scope, `dump:${directory}`);
    assert.equal(one.json.checked.dumps, 1);
    assert.equal(one.json.checked.backups, 0);
    assert.ok(one.json.checked.objects > 2, `the directory dump's files: ${one.json.checked.objects}`);

    // Custom format: a stored object whose checksum matches (the manifest is
    // rewritten to fit) but which is no archive pg_restore can read.
    const [db, id] = custom.split('/') as [string, string];
    const manifestPath = join(dir, 'main', 'dumps', db, id, 'manifest.json');
    const m = JSON.parse(await readFile(manifestPath, 'utf8')) as { objects: { key: string; size: number; sha256: string; storedSize: number }[] };
    const o = m.objects[0]!;
    assert.match(o.key, /\.zst$/);
    const plain = Buffer.from('PGDMP this is not a table of contents\n');
    const stored = zstdCompressSync(plain);
    await writeFile(join(dir, o.key), stored);
    Object.assign(o, { size: plain.length, sha256: createHash('sha256').update(plain).digest('hex'), storedSize: stored.length });
    await writeFile(manifestPath, JSON.stringify(m));
    const toc = await verifyJson(env, ['--dump', custom]);
    assert.equal(toc.code, 1);
    assert.deepEqual(kinds(toc.json), [`dump-toc-invalid ${custom}`], JSON.stringify(toc.json.problems, null, 2));
    assert.match(toc.json.problems[0]!.message, /pg_restore --list cannot read its table of contents: /);

    // Directory format: one data file corrupted.
    const keys = (await dumpRepo.keys(`main/dumps/app/${directory.split('/')[1]}/data/`)).filter((k) => !k.includes('toc.dat'));
    assert.ok(keys.length > 0);
    const bytes = await readFile(join(dir, keys[0]!));
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
    await writeFile(join(dir, keys[0]!), bytes);
    const bad = await verifyJson(env, ['--dump', directory]);
    assert.equal(bad.code, 1);
    assert.deepEqual(kinds(bad.json), [`object-corrupt ${directory}`], JSON.stringify(bad.json.problems, null, 2));

    // Both dumps as cairn-dump stored them: clean.
    const fresh = await copyRepo('dumps-clean', dumpRepo);
    const all = await verifyJson(fresh.env);
    assert.equal(all.json.checked.dumps, 2);
    assert.equal(all.code, 0, JSON.stringify(all.json.problems, null, 2));
  });

  it('a read-only repository is still verified: a warning, the exit status of the findings', async () => {
    const { dir, env } = await copyRepo('read-only');
    await run('chmod', ['-R', 'a-w', dir]);
    const r = await runCairn('verify', [], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /could not store the result in repository ".*"/);
    assert.match(r.stderr, /no problems$/m);
  });

  it('a cluster that is not in the repository is a configuration error', async () => {
    const { repo } = state();
    const r = await runCairn('verify', ['--cluster', 'nosuch'], { env: repo.env });
    assert.equal(r.code, 3);
    assert.match(r.stderr, /cluster "nosuch" is not in repository/);
  });

  it('usage errors: exit 2 with the reason', async () => {
    const { repo } = state();
    const both = await runCairn('verify', ['--set', '20261121-020000F', '--dump', '20261121-020000L'], { env: repo.env });
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--set and --dump exclude each other/);
    const bad = await runCairn('verify', ['--set', 'yesterday'], { env: repo.env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /invalid backup id "yesterday"/);
    const none = await runCairn('verify', ['--set', '20200101-000000F'], { env: repo.env });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /backup "20200101-000000F" is not in cluster "main"/);
    await cairnOk('verify', ['--help'], repo.env);
  });
});
