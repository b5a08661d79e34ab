// cairn-drill end to end: one cluster archiving through cairn-wal-push into a
// file repository and an encrypted S3 repository, a full backup in each;
// drills to a time target on both pass and record RTO and data age; a failing
// --check-sql exits 1 and is recorded; a corrupted backup file exits 4 and is
// recorded; a plan from stdin with --keep; a logical dump drilled as root. After every drill: no scratch directory, no postgres process.

import assert from 'node:assert/strict';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, processesMentioning, type Cluster } from '@cairn/testkit/pg-cluster';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import type { DrillResult } from '@cairn/core/drill/result-format';
import { binPath } from '@cairn/testkit/paths';
import { pgUser, runAsMe, runAsPg, spawnAsPg } from '@cairn/testkit/run-as';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { cairnOk, NOW_UTC_SQL, readStoredManifest, sleep, switchAndWaitArchived, takeBackup } from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

const BEFORE = 500;

interface State {
  fs: RepoFixture;
  s3: RepoFixture;
  src: Cluster;
  fsBackup: string;
  s3Backup: string;
  /** The target: after BEFORE rows, before the 'after' rows. */
  target: string;
  checks: string;
  scratch: string;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

const sh = (w: string) => `'${w.replaceAll("'", "'\\''")}'`;

/** The stored drill results of a repository, oldest first. */
async function storedResults(repo: RepoFixture): Promise<DrillResult[]> {
  const objs = await repo.objects('main/drills/');
  return [...objs.keys()].sort().map((k) => JSON.parse(objs.get(k)!.toString('utf8')) as DrillResult);
}

/** Is a check statement running on the scratch server in `scratch` (found by its socket and the port cairn-drill wrote)? */
async function checkRunning(scratch: string, bindir: string, sqlPrefix: string): Promise<boolean> {
  const dirs = await readdir(scratch).catch(() => [] as string[]);
  if (dirs.length !== 1) return false;
  const sock = join(scratch, dirs[0]!);
  const conf = await readFile(join(sock, 'data', 'postgresql.auto.conf'), 'utf8').catch(() => '');
  const port = [...conf.matchAll(/^port = (\d+)$/gm)].at(-1)?.[1];
  if (port === undefined) return false;
  const r = await runAsPg(join(bindir, 'psql'), ['-XAtq', '-h', sock, '-p', port, '-d', 'postgres', '-c', `select count(*) from pg_stat_activity where query like '${sqlPrefix}%'`], { allowFail: true });
  return r.code === 0 && r.stdout.trim() === '1';
}

/** Nothing left behind: the scratch parent is empty and no process mentions it. */
async function assertCleanedUp(scratch: string): Promise<void> {
  assert.deepEqual(await readdir(scratch), [], 'no scratch directory left');
  assert.deepEqual(processesMentioning(scratch), [], 'no process left running in the scratch directory');
}

async function drillJson(repo: RepoFixture, args: string[]): Promise<{ code: number; result: DrillResult; stderr: string }> {
  const r = await runCairn('drill', ['--json', '--scratch-dir', state().scratch, ...args], { env: repo.env, timeoutMs: 300_000 });
  assert.ok(r.stdout.trim() !== '', `cairn-drill printed a result (exit ${r.code}):\n${r.stderr}`);
  return { code: r.code, result: JSON.parse(r.stdout) as DrillResult, stderr: r.stderr };
}

describe('cairn-drill (fs and S3 repositories)', { timeout: 600_000 }, () => {
  it('sets up: a cluster archiving into both repositories, a full backup in each, a target time between two sets of rows', async () => {
    const fs = await makeRepo('fs', false);
    const s3 = await makeRepo('s3', true);
    const walPush = binPath('wal-push');
    // One archive_command, two repositories with different keys: pushed to
    // each in turn, each push with its own spool (push-ahead state is per repository set).
    const archive =
      `CAIRN_SPOOL_DIR=${sh(fs.env['CAIRN_SPOOL_DIR']!)} ${walPush} %p %f --repo ${sh(fs.url)} && ` +
      `CAIRN_SPOOL_DIR=${sh(s3.env['CAIRN_SPOOL_DIR']!)} ${walPush} %p %f --repo ${sh(s3.url)} --encryption-key-file ${sh(s3.keyFile!)}`;
    const serverEnv = { ...s3.env };
    delete (serverEnv as Record<string, string | undefined>)['CAIRN_REPO'];
    delete (serverEnv as Record<string, string | undefined>)['CAIRN_ENCRYPTION_KEY_FILE'];
    const src = await createCluster({ name: 'drill-src', archiveCommand: archive, archiveTimeout: '1s', env: serverEnv });
    await src.start();
    await src.psql('create table marker(v text)');
    const fsBackup = await takeBackup(src, fs);
    const s3Backup = await takeBackup(src, s3);
    await src.psql(`insert into marker select 'before ' || g from generate_series(1, ${BEFORE}) g`);
    await sleep(500);
    const target = await src.psql(NOW_UTC_SQL);
    await sleep(500);
    await src.psql("insert into marker select 'after ' || g from generate_series(1, 100) g");
    await switchAndWaitArchived(src);
    const dir = await makeTempDir('drill-checks');
    const checks = join(dir, 'checks.sql');
    await writeFile(checks, [
      '-- the rows committed before the target, and none after it',
      `select count(*) = ${BEFORE} from marker;`,
      '-- expect: 0 rows',
      "select * from marker",
      " where v like 'after%';",
      '',
    ].join('\n'));
    await chownToPgUser(dir);
    const scratch = await makeTempDir('drill-scratch');
    st = { fs, s3, src, fsBackup, s3Backup, target, checks, scratch };
  });

  it('drills to the time target on the file repository: passes, records RTO and data age', async () => {
    const { fs, fsBackup, target, checks, scratch } = state();
    const { code, result, stderr } = await drillJson(fs, ['--target-time', target, '--check-sql', checks]);
    assert.equal(code, 0, stderr);
    assert.equal(result.format, 'cairn.drill/1');
    assert.equal(result.ok, true, stderr);
    assert.equal(result.kind, 'backup');
    assert.equal(result.backup, fsBackup);
    assert.equal(result.target?.kind, 'time');
    assert.deepEqual(result.checks.map((c) => [c.name, c.ok]), [['connect', true], ['recovery-target', true], ['amcheck', true], ['sql:2', true], ['sql:4', true]], stderr);
    assert.match(result.checks[1]!.message, /^recovery stopping before commit of transaction \d+/);
    for (const k of ['restoreSeconds', 'replaySeconds', 'rtoSeconds'] as const) assert.ok(typeof result[k] === 'number' && result[k]! > 0, `${k}: ${result[k]}`);
    assert.ok(result.rtoSeconds! >= result.restoreSeconds! + result.replaySeconds!, 'RTO covers restore and replay');
    // The newest commit recovered is the BEFORE rows', half a second or more before the target.
    assert.ok(result.newestCommit !== null && Date.parse(result.newestCommit) < Date.parse(target.replace(' ', 'T').replace(/\+00$/, 'Z')));
    assert.ok(result.dataAgeSeconds !== null && result.dataAgeSeconds >= 0.4 && result.dataAgeSeconds < 30, `data age ${result.dataAgeSeconds}`);
    assert.match(stderr, /^cairn-drill: drill \d{8}-\d{6} of backup \d{8}-\d{6}F to time .*: ok$/m);
    // Stored in the repository, as printed; cairn-info shows it.
    assert.deepEqual(await storedResults(fs), [result]);
    const info = JSON.parse((await cairnOk('info', ['--json'], fs.env)).stdout) as { repositories: { lastDrill: Record<string, unknown> }[] };
    const took = (Date.parse(result.stop.time) - Date.parse(result.start.time)) / 1000;
    assert.ok(took >= result.rtoSeconds!, `the whole drill (${took} s) covers its RTO (${result.rtoSeconds} s)`);
    assert.deepEqual(info.repositories[0]!.lastDrill, { id: result.id, time: result.stop.time, ok: true, rtoSeconds: result.rtoSeconds, dataAgeSeconds: result.dataAgeSeconds, durationSeconds: took });
    await assertCleanedUp(scratch);
  });

  it('drills to the time target on the encrypted S3 repository: passes and records it there', async () => {
    const { s3, s3Backup, target, checks, scratch } = state();
    const { code, result, stderr } = await drillJson(s3, ['--target-time', target, '--check-sql', checks, '--no-amcheck']);
    assert.equal(code, 0, stderr);
    assert.equal(result.ok, true);
    assert.equal(result.backup, s3Backup);
    assert.match(result.repo, /^s3:\/\/cairn-test-/);
    assert.deepEqual(result.checks.map((c) => [c.name, c.ok]), [['connect', true], ['recovery-target', true], ['sql:2', true], ['sql:4', true]]);
    assert.ok(result.rtoSeconds! > 0 && result.dataAgeSeconds! >= 0.4 && result.dataAgeSeconds! < 30, JSON.stringify(result));
    const stored = (await s3.keys('main/drills/')).filter((k) => k.endsWith('.json'));
    assert.deepEqual(stored, [`main/drills/${result.id}.json`]);
    await assertCleanedUp(scratch);
  });

  it('a failing --check-sql exits 1 and records which check failed', async () => {
    const { fs, target, scratch } = state();
    const dir = await makeTempDir('drill-bad-checks');
    const bad = join(dir, 'bad.sql');
    await writeFile(bad, `select count(*) = ${BEFORE + 100} from marker;\n-- expect: 1 rows\nselect 1 from no_such_table;\n`);
    await chownToPgUser(dir, { recursive: true });
    const { code, result, stderr } = await drillJson(fs, ['--target-time', target, '--check-sql', bad, '--no-amcheck']);
    assert.equal(code, 1, stderr);
    assert.equal(result.ok, false);
    assert.equal(result.error, undefined);
    const failed = result.checks.filter((c) => !c.ok);
    assert.deepEqual(failed.map((c) => c.name), ['sql:1', 'sql:3']);
    assert.match(failed[0]!.message, /returned false, expected true/);
    assert.match(failed[1]!.message, /relation "no_such_table" does not exist/);
    assert.match(stderr, /: FAILED$/m);
    assert.match(stderr, /check sql:1: FAILED: "select count\(\*\) = 600 from marker" returned false, expected true/);
    const all = await storedResults(fs);
    assert.deepEqual(all.at(-1), result, 'the failed drill is stored too');
    await assertCleanedUp(scratch);
  });

  it('a corrupted backup file fails the drill with exit 4, recorded with the error', async () => {
    const { fs, fsBackup, target, scratch } = state();
    const m = await readStoredManifest(fs, fsBackup);
    const victim = m.files.filter((f) => f.path.startsWith('base/') && f.size > 8192 && f.key.endsWith('.zst')).sort((a, b) => b.size - a.size)[0]!;
    // A file under 1 MiB is a member of a bundle: bytes in the middle of its
    // stretch are flipped (the zstd frame fails); a file stored alone gets a
    // well-formed zstd stream of other bytes (only the SHA-256 can tell).
    const objectKey = victim.bundle?.key ?? victim.key;
    const original = (await fs.objects(objectKey)).get(objectKey)!;
    let tampered: Buffer;
    if (victim.bundle) {
      tampered = Buffer.from(original);
      const mid = victim.bundle.offset + (victim.storedSize >> 1);
      for (let i = 0; i < 16; i++) tampered[mid + i] = tampered[mid + i]! ^ 0x5a;
    } else {
      const plain = zstdDecompressSync(original);
      plain[Math.floor(plain.length / 2)] = plain[Math.floor(plain.length / 2)]! ^ 0x01;
      tampered = zstdCompressSync(plain);
    }
    await fs.tamper(objectKey, tampered);
    try {
      const { code, result, stderr } = await drillJson(fs, ['--target-time', target]);
      assert.equal(code, 4, stderr);
      assert.equal(result.ok, false);
      assert.match(result.error ?? '', new RegExp(`^cairn-restore of backup ${fsBackup} failed \\(exit status 4\\): .*${victim.path.replace(/[/.]/g, '\\$&')}`));
      assert.deepEqual(result.checks, []);
      assert.equal(result.restoreSeconds, null);
      assert.equal(result.rtoSeconds, null);
      assert.match(stderr, /^ {2}error: cairn-restore of backup .* failed \(exit status 4\)/m);
      assert.deepEqual((await storedResults(fs)).at(-1), result);
    } finally {
      await fs.tamper(objectKey, original);
    }
    await assertCleanedUp(scratch);
  });

  it('drills a plan from stdin to the latest point with --keep: the server is left running and says where', async () => {
    const { fs, fsBackup, src, scratch } = state();
    await src.psql("insert into marker values ('latest')");
    await switchAndWaitArchived(src);
    const plan = (await cairnOk('restore-plan', ['--target', 'latest'], fs.env)).stdout;
    const r = await runAsPg(binPath('drill'), ['--plan', '-', '--keep', '--no-amcheck', '--json', '--scratch-dir', scratch], { env: fs.env, input: plan, allowFail: true, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as DrillResult;
    assert.equal(result.backup, fsBackup);
    assert.deepEqual(result.target, { kind: 'latest', value: null, timeline: 1 });
    assert.deepEqual(result.checks.map((c) => [c.name, c.ok, c.message]), [
      ['connect', true, result.checks[0]!.message],
      ['recovery-target', true, 'replayed the archived WAL to its end and promoted'],
    ]);
    // Data age of a latest drill: from the drill's start back to the newest commit replayed.
    assert.ok(result.dataAgeSeconds !== null && result.dataAgeSeconds >= 0 && result.dataAgeSeconds < 120, `data age ${result.dataAgeSeconds}`);
    const kept = /^ {2}kept: the scratch server runs on socket (\S+) port (\d+) .*; data in (\S+); /m.exec(r.stderr);
    assert.ok(kept, r.stderr);
    const [, sock, port, pgdata] = kept;
    assert.ok(sock!.startsWith(join(scratch, 'cairn-drill-')));
    const rows = await runAsPg(join(src.clientBindir, 'psql'), ['-XAtq', '-h', sock!, '-p', port!, '-d', 'postgres', '-c', "select count(*) from marker where v = 'latest'"]);
    assert.equal(rows.stdout.trim(), '1', 'the kept server holds the newest row');
    await runAsPg(join(src.bindir, 'pg_ctl'), ['stop', '-D', pgdata!, '-m', 'immediate', '-w']);
    await rm(sock!, { recursive: true, force: true });
    await assertCleanedUp(scratch);
  });

  it('drills a logical dump (started as root, --run-as): a scratch cluster, the dump restored, the checks run in its database', async () => {
    const { fs, src, scratch } = state();
    await src.psql('create database app');
    await src.psql("create table items(id int primary key, name text); insert into items values (1, 'a'), (2, 'b'), (3, 'c')", { db: 'app' });
    const ref = (await cairnOk('dump', ['--dbname', 'app'], { ...src.env, ...fs.env })).stdout.trim();
    assert.match(ref, /^app\/\d{8}-\d{6}L$/);
    const dir = await makeTempDir('drill-app-checks');
    await writeFile(join(dir, 'app.sql'), "select count(*) = 3 from items;\n-- expect: 1 rows\nselect * from items where name = 'b';\n");
    await chownToPgUser(dir, { recursive: true });
    const args = ['--dump', ref, '--check-sql', join(dir, 'app.sql'), '--json', '--scratch-dir', scratch];
    const r = await runAsMe(binPath('drill'), [...args, '--run-as', pgUser().name], { env: fs.env, allowFail: true, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as DrillResult;
    assert.equal(result.kind, 'dump');
    assert.equal(result.dump, ref);
    assert.equal(result.backup, null);
    assert.equal(result.replaySeconds, null);
    assert.deepEqual(result.checks.map((c) => [c.name, c.ok]), [['connect', true], ['amcheck', true], ['sql:1', true], ['sql:3', true]], r.stderr);
    assert.match(result.checks[0]!.message, /^database "app" accepts connections/);
    assert.ok(result.restoreSeconds! > 0 && result.rtoSeconds! >= result.restoreSeconds!);
    assert.ok(result.dataAgeSeconds !== null && result.dataAgeSeconds >= 0 && result.dataAgeSeconds < 120);
    assert.deepEqual((await storedResults(fs)).at(-1), result);
    await assertCleanedUp(scratch);
  });

  it('SIGTERM during the checks: the server is stopped, the scratch directory removed, exit 70', async () => {
    const { fs, target, scratch } = state();
    const dir = await makeTempDir('drill-slow-checks');
    await writeFile(join(dir, 'slow.sql'), 'select pg_sleep(60) is not null;\n');
    await chownToPgUser(dir, { recursive: true });
    const child = spawnAsPg(binPath('drill'), ['--target-time', target, '--check-sql', join(dir, 'slow.sql'), '--no-amcheck', '--scratch-dir', scratch], { env: fs.env });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    // The check runs once the server has promoted: wait for its pg_sleep.
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (await checkRunning(scratch, state().src.clientBindir, 'select pg_sleep')) break;
      assert.ok(Date.now() < deadline, `the drill never reached its check:\n${stderr}`);
      await sleep(200);
    }
    // The drill holds a reader lease on what it restores for its whole run (issue 12)...
    const leases = [...(await fs.objects('main/readers/')).values()].map((b) => JSON.parse(b.toString('utf8')) as { purpose: string; backup: string; tool: string });
    assert.deepEqual(leases.map((l) => [l.purpose, l.backup, l.tool]), [['drill', state().fsBackup, 'cairn-drill']]);
    child.kill('SIGTERM');
    assert.equal(await exited, 70, stderr);
    assert.match(stderr, /cairn-drill: error: interrupted by SIGTERM/);
    await assertCleanedUp(scratch);
    // ...and gives it back however it ends.
    assert.deepEqual([...(await fs.objects('main/readers/')).keys()], []);
  });

  it('a target no backup reaches: exit 1, recorded with the planner\'s reason, nothing restored', async () => {
    const { fs, scratch } = state();
    const { code, result, stderr } = await drillJson(fs, ['--target-time', '2020-01-01 00:00:00+00']);
    assert.equal(code, 1, stderr);
    assert.equal(result.ok, false);
    assert.equal(result.backup, null);
    assert.deepEqual(result.target, { kind: 'time', value: '2020-01-01 00:00:00.000000+00', timeline: null });
    assert.match(result.error ?? '', /no backup/i);
    assert.deepEqual([result.restoreSeconds, result.rtoSeconds, result.checks], [null, null, []]);
    assert.deepEqual((await storedResults(fs)).at(-1), result);
    await assertCleanedUp(scratch);
  });

  it('refuses bad flags with exit 2 before touching anything', async () => {
    const { fs, scratch } = state();
    const r = await runCairn('drill', ['--target-time', '2026-11-21 14:03:00+00', '--dump', 'app/20261121-020000L', '--scratch-dir', scratch], { env: fs.env });
    assert.equal(r.code, 2);
    assert.deepEqual(r.lines, ['cairn-drill: error: --dump and --target-time do not go together; give target flags, or --plan FILE|-, or --dump ID']);
    const t = await runCairn('drill', ['--target-action', 'pause'], { env: fs.env });
    assert.equal(t.code, 2);
    assert.match(t.lines[0]!, /^cairn-drill: error: unknown option '--target-action'/);
  });
});
