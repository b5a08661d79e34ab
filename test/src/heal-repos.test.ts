// Self-healing reads (issue 18 item 3), end to end: a cluster archiving into
// a file repository and an S3 repository, one full backup copied from the
// first into the second. With a damaged bundled file, a damaged big file, a
// missing WAL segment and a damaged WAL segment in the first repository,
// cairn-restore and the PITR it sets up take each from the second, say so
// on stderr (and in the server log), and the restored cluster holds exactly
// the rows at the target; cairn-drill of the same plan passes and repeats
// those warnings; cairn-verify names the second repository as holding a good
// copy of each damaged one. A second repository whose manifest of the same
// backup records other bytes for the file is not used for it (exit 4), nor
// is its copy of a WAL file with another SHA-256 (wal-get exits 126). A
// page-level incremental backup whose newest layer is damaged in the first
// repository is laid down from the second's chain.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { decodeToBuffer, sha256Hex } from '@cairn/core/codec/index';
import { walObjectKey } from '@cairn/core/repo/layout';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import {
  assertRestoredEquals,
  cairnOk,
  captureUnderLock,
  NOW_UTC_SQL,
  parseStoredManifest,
  readStoredManifest,
  scalar,
  sleep,
  switchAndWaitArchived,
  takeBackup,
  walPushCommand,
  type StoredManifest,
} from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

interface State {
  a: RepoFixture;
  b: RepoFixture;
  /** Both repositories, the file one first. */
  env: Record<string, string>;
  backup: string;
  manifest: StoredManifest;
  /** The target time and the rows at it. */
  target: string;
  snapshot: string;
  /** A plan to the target, made while the first repository was whole. */
  planFile: string;
  /** WAL segments between the backup and the target: one removed from the first repository, one damaged there. */
  lost: string;
  damaged: string;
  systemId: string;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Flips 16 bytes in the middle of `len` bytes from `at` of object `key` in `repo`. */
async function flipBytes(repo: RepoFixture, key: string, at: number, len: number): Promise<void> {
  const original = (await repo.objects(key)).get(key);
  assert.ok(original, `object "${key}" is stored`);
  const tampered = Buffer.from(original);
  const mid = at + (len >> 1);
  for (let i = 0; i < 16; i++) tampered[mid + i] = tampered[mid + i]! ^ 0x5a;
  await repo.tamper(key, tampered);
}

/** The stored key of WAL segment `name` in `repo`. */
async function walKeyOf(repo: RepoFixture, name: string): Promise<string> {
  const keys = (await repo.keys('main/wal/')).filter((k) => k.split('/').at(-1)!.startsWith(`${name}-`));
  assert.equal(keys.length, 1, `one stored copy of ${name}: ${keys.join(', ')}`);
  return keys[0]!;
}

/**
 * A file repository and an S3 one, a cluster archiving into both (wal-push
 * stores every segment in each: CAIRN_REPO lists them), with a marker table
 * and pgbench at scale 3 (pgbench_accounts, ~40 MB, is restored in a worker
 * thread), and a full backup in the first.
 */
async function twoRepoCluster(name: string, marker: string): Promise<{ a: RepoFixture; b: RepoFixture; env: Record<string, string>; src: Cluster; full: string }> {
  const a = await makeRepo('fs', false);
  const b = await makeRepo('s3', false);
  const env = { ...b.env, ...a.env, CAIRN_REPO: `${a.url},${b.url}` };
  const src = await createCluster({ name, archiveCommand: walPushCommand(), archiveTimeout: '1s', env });
  await src.start();
  await src.psql(`create table marker(v text); insert into marker values ('${marker}')`);
  await src.pgbench(['-i', '-s', '3', '-q']);
  return { a, b, env, src, full: await takeBackup(src, a, 'full') };
}

/** Backup `id` of `from` into `to`, byte for byte, manifest last (what cairn-copy or a basebackup to every repository leaves). */
async function copyBackup(from: RepoFixture, to: RepoFixture, id: string): Promise<void> {
  const objects = await from.objects(`main/backups/${id}/`);
  const manifestKey = `main/backups/${id}/manifest.json`;
  for (const [k, v] of objects) if (k !== manifestKey) await to.tamper(k, v);
  await to.tamper(manifestKey, objects.get(manifestKey)!);
}

describe('self-healing reads: restore and PITR from the second repository', { timeout: 900_000 }, () => {
  it('sets up: WAL in both repositories, a full backup copied into the second, a target between two WAL switches and more load', async () => {
    const { a, b, env, src, full: backup } = await twoRepoCluster('heal-src', 'a: before the backup');
    await copyBackup(a, b, backup);

    // Two segments wholly after the backup: the one lost and the one damaged.
    await src.psql("insert into marker values ('b: first segment')");
    const lost = await switchAndWaitArchived(src);
    await src.psql("insert into marker values ('c: second segment')");
    const damaged = await switchAndWaitArchived(src);

    let loadError: unknown;
    const load = src.pgbench(['-c', '2', '-j', '2', '-T', '6', '-n']).catch((err: unknown) => {
      loadError = err;
    });
    await sleep(2500);
    const cap = await captureUnderLock(src, (c) => scalar(c, NOW_UTC_SQL));
    await load;
    assert.equal(loadError, undefined, `pgbench: ${String(loadError)}`);
    await src.psql("insert into marker values ('d: after the target')");
    await switchAndWaitArchived(src);
    await src.stop();

    const plan = await cairnOk('restore-plan', ['--target-time', cap.value, '--target-action', 'promote'], env);
    const parsed = JSON.parse(plan.stdout) as { repo: string; systemId: string; backup: { id: string }; walEnd: string };
    assert.equal(parsed.repo, a.url, 'the plan reads the first repository');
    assert.equal(parsed.backup.id, backup);
    assert.ok(parsed.walEnd > damaged, `the target (${parsed.walEnd}) is after the damaged segment ${damaged}`);
    const dir = await makeTempDir('heal-plan');
    const planFile = join(dir, 'plan.json');
    await writeFile(planFile, plan.stdout);
    await chownToPgUser(dir, { recursive: true });
    st = { a, b, env, backup, manifest: await readStoredManifest(a, backup), target: cap.value, snapshot: cap.snapshot, planFile, lost, damaged, systemId: parsed.systemId };
  });

  it('a damaged bundled file, a damaged big file, a lost and a damaged WAL segment in the first repository: restored and recovered from the second, with warnings', async () => {
    const { a, b, env, backup, manifest, snapshot, planFile, lost, damaged } = state();
    // What the first repository loses after the plan was made.
    const bundled = manifest.files.filter((f) => f.bundle && f.path.startsWith('base/') && f.size > 8192).sort((x, y) => y.size - x.size)[0]!;
    const big = manifest.files.filter((f) => !f.bundle && f.size >= 32 * 1024 * 1024).sort((x, y) => y.size - x.size)[0];
    assert.ok(bundled, 'a bundled file to damage');
    assert.ok(big, 'a file of 32 MiB or more to damage (pgbench_accounts)');
    await flipBytes(a, bundled.bundle!.key, bundled.bundle!.offset, bundled.storedSize);
    await flipBytes(a, big.key, 0, big.storedSize);
    await a.remove(await walKeyOf(a, lost));
    const damagedKey = await walKeyOf(a, damaged);
    await flipBytes(a, damagedKey, 0, (await a.objects(damagedKey)).get(damagedKey)!.length);

    // Without the second repository the damage stops the restore (exit 4).
    const alone = await createCluster({ name: 'heal-alone', initdb: false, env: a.env, conf: { archive_mode: 'off' } });
    const r0 = await runCairn('restore', ['--pgdata', alone.pgdata, '--plan', planFile], { env: a.env, timeoutMs: 300_000 });
    assert.equal(r0.code, 4, r0.stderr);
    assert.match(r0.stderr, /damaged|checksum|corrupt/);

    const cluster = await createCluster({ name: 'heal-restored', initdb: false, env, conf: { archive_mode: 'off' } });
    const r = await cairnOk('restore', ['--pgdata', cluster.pgdata, '--plan', planFile, '--json'], env);
    const result = JSON.parse(r.stdout) as { backup: string; healed: number };
    assert.equal(result.backup, backup);
    assert.equal(result.healed, 2, r.stderr);
    // With --json the log is JSON lines too.
    const warnings = r.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: string; msg: string }).filter((l) => l.level === 'warn').map((l) => l.msg);
    assert.equal(warnings.length, 2, r.stderr);
    for (const f of [bundled, big]) {
      assert.match(
        warnings.join('\n'),
        new RegExp(`^repository "${esc(a.url)}": .*; "${esc(f.path)}" of backup ${backup} was restored from repository "${esc(b.url)}" instead \\(same backup, same SHA-256 ${f.sha256.slice(0, 12)}…\\)`, 'm'),
        r.stderr,
      );
    }
    // restore_command lists both repositories, the plan's first.
    const auto = await readFile(join(cluster.pgdata, 'postgresql.auto.conf'), 'utf8');
    assert.match(auto, new RegExp(`^restore_command = '.*--repo '*${esc(a.url)}'* --repo '*${esc(b.url)}'* --cluster`, 'm'), auto);
    await cluster.start({ timeoutSec: 300 });
    await cluster.waitForRecoveryEnd(300_000);
    await assertRestoredEquals(cluster, snapshot, 'healed PITR');
    const log = await cluster.serverLog();
    assert.match(log, new RegExp(`^cairn-wal-get: warn: "${lost}" missing from repository "${esc(a.url)}": taken from repository "${esc(b.url)}" instead`, 'm'), log);
    assert.match(log, new RegExp(`^cairn-wal-get: warn: "${damaged}" damaged in repository "${esc(a.url)}": taken from repository "${esc(b.url)}" instead`, 'm'), log);
    await cluster.destroy();
  });

  it('restored with target flags instead: planned from the second, which holds every segment, saying why not from the first', async () => {
    const { a, b, env, backup, target, snapshot, lost } = state();
    const cluster = await createCluster({ name: 'heal-flags', initdb: false, env, conf: { archive_mode: 'off' } });
    const r = await cairnOk('restore', ['--pgdata', cluster.pgdata, '--target-time', target, '--target-action', 'promote', '--json'], env);
    const result = JSON.parse(r.stdout) as { backup: string; healed: number; plan: { repo: string } };
    assert.equal(result.backup, backup);
    assert.equal(result.plan.repo, b.url);
    assert.equal(result.healed, 0);
    assert.match(r.stderr, new RegExp(`repository \\\\"${esc(a.url)}\\\\" could not make a plan: WAL segment \\\\"${lost}\\\\" needed`), r.stderr);
    await cluster.start({ timeoutSec: 300 });
    await cluster.waitForRecoveryEnd(300_000);
    await assertRestoredEquals(cluster, snapshot, 'PITR planned from the second repository');
    await cluster.destroy();
  });

  it('cairn-drill of the same plan passes, repeating the restore\'s and wal-get\'s warnings', async () => {
    const { a, b, env, planFile, lost, damaged } = state();
    const scratch = await makeTempDir('heal-drill');
    await chownToPgUser(scratch);
    const r = await runCairn('drill', ['--plan', planFile, '--scratch-dir', scratch, '--no-amcheck'], { env, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^cairn-drill: warn: cairn-restore: repository "${esc(a.url)}": .* was restored from repository "${esc(b.url)}" instead`, 'm'), r.stderr);
    assert.match(r.stderr, new RegExp(`^cairn-drill: warn: cairn-wal-get: "${lost}" missing from repository "${esc(a.url)}": taken from repository "${esc(b.url)}" instead`, 'm'), r.stderr);
    assert.match(r.stderr, new RegExp(`^cairn-drill: warn: cairn-wal-get: "${damaged}" damaged in repository "${esc(a.url)}": taken from repository "${esc(b.url)}" instead`, 'm'), r.stderr);
    assert.match(r.stderr, /: ok$/m);
  });

  it('cairn-verify over both repositories names the damaged copies in the first and the second as holding good ones', async () => {
    const { a, b, env, backup, manifest, damaged } = state();
    const r = await runCairn('verify', ['--json'], { env, timeoutMs: 300_000 });
    assert.equal(r.code, 1, r.stderr);
    const results = JSON.parse(`[${r.stdout.trim().replace(/\n}\n{/g, '\n},\n{')}]`) as { repo: string; ok: boolean; problems: { kind: string; subject: string; path?: string; goodCopy?: string; hint: string }[] }[];
    assert.deepEqual(results.map((x) => x.repo), [a.url, b.url]);
    assert.equal(results[1]!.ok, true, JSON.stringify(results[1]!.problems));
    const problems = results[0]!.problems;
    const bundled = manifest.files.filter((f) => f.bundle && f.path.startsWith('base/') && f.size > 8192).sort((x, y) => y.size - x.size)[0]!;
    const big = manifest.files.filter((f) => !f.bundle && f.size >= 32 * 1024 * 1024).sort((x, y) => y.size - x.size)[0]!;
    for (const f of [bundled, big]) {
      const p = problems.find((q) => q.subject === backup && q.path === f.path);
      assert.ok(p, `a problem for "${f.path}": ${JSON.stringify(problems)}`);
      assert.equal(p.goodCopy, b.url, JSON.stringify(p));
      assert.match(p.hint, new RegExp(`^repository "${esc(b.url)}" holds a good copy \\(same backup, same SHA-256\\)`));
    }
    const w = problems.find((q) => q.kind === 'wal-corrupt' && q.subject === damaged);
    assert.ok(w, `the damaged WAL file is reported: ${JSON.stringify(problems)}`);
    assert.equal(w.goodCopy, b.url, JSON.stringify(w));
  });

  it('a second repository whose manifest of the same backup records other bytes for the file is not used for it: exit 4', async () => {
    const { a, b, env, backup, planFile } = state();
    const manifest = await readStoredManifest(a, backup);
    const bundled = manifest.files.filter((f) => f.bundle && f.path.startsWith('base/') && f.size > 8192).sort((x, y) => y.size - x.size)[0]!;
    // The second repository's manifest of this backup now says other bytes.
    const key = `main/backups/${backup}/manifest.json`;
    const theirs = parseStoredManifest((await b.objects(key)).get(key)!.toString('utf8')) as unknown as StoredManifest;
    const entry = theirs.files.find((f) => f.path === bundled.path)!;
    entry.sha256 = entry.sha256.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    // Written back as one document (cairn.backup/2, which still reads).
    await b.tamper(key, Buffer.from(JSON.stringify({ ...theirs, format: 'cairn.backup/2' })));
    const cluster = await createCluster({ name: 'heal-refused', initdb: false, env, conf: { archive_mode: 'off' } });
    const r = await runCairn('restore', ['--pgdata', cluster.pgdata, '--plan', planFile], { env, timeoutMs: 300_000 });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`repository "${esc(b.url)}" records other bytes for "${esc(bundled.path)}" in backup ${backup}`), r.stderr);
  });

  it('wal-get does not take a later repository\'s copy of a damaged WAL file whose SHA-256 differs: exit 126', async () => {
    const { a, b, env, damaged, lost, systemId } = state();
    // The second repository's copy of the damaged segment replaced by other bytes (those of another segment).
    const goodKey = await walKeyOf(b, damaged);
    const other = (await b.objects(await walKeyOf(b, lost))).values().next().value as Buffer;
    const plain = await decodeToBuffer(other, 'x.zst', undefined, 'segment');
    await b.remove(goodKey);
    await b.tamper(walObjectKey('main', systemId, damaged, sha256Hex(plain), '.zst'), other);
    const dir = await makeTempDir('heal-walget');
    await mkdir(join(dir, 'pg_wal'));
    await chownToPgUser(dir, { recursive: true });
    const r = await runCairn('wal-get', [damaged, 'pg_wal/RECOVERYXLOG', '--prefetch', '0', '--retries', '0', '--system-id', systemId], { env, cwd: dir });
    assert.equal(r.code, 126, r.stderr);
    assert.match(r.stderr, new RegExp(`repository "${esc(b.url)}" holds "${damaged}" with SHA-256 ${sha256Hex(plain).slice(0, 12)}…, not [0-9a-f]{12}… as repository "${esc(a.url)}" records: not used`), r.stderr);
    assert.doesNotMatch(r.stderr, /taken from repository/);
    assert.equal(existsSync(join(dir, 'pg_wal', 'RECOVERYXLOG')), false, 'nothing at %p');
  });
});

describe('self-healing reads of a page-level incremental backup', { timeout: 600_000 }, () => {
  it('a damaged page layer in the first repository: the file is laid down from the second\'s chain, rows as at the backup', async () => {
    const { a, b, env, src, full } = await twoRepoCluster('heal-incr', 'full');
    await src.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
    const imm = await captureUnderLock(src, () => takeBackup(src, a, 'incr'));
    const incr = imm.value;
    await switchAndWaitArchived(src);
    await src.stop();
    for (const id of [full, incr]) await copyBackup(a, b, id);
    const m = await readStoredManifest(a, incr);
    const paged = (m.files as (StoredManifest['files'][number] & { pages?: unknown })[]).filter((f) => f.pages !== undefined && f.ref === incr).sort((x, y) => y.size - x.size)[0];
    assert.ok(paged, 'a page-level file whose newest layer is the incr\'s');
    await flipBytes(a, paged.bundle?.key ?? paged.key, paged.bundle?.offset ?? 0, paged.storedSize);

    const cluster = await createCluster({ name: 'heal-incr-rest', initdb: false, env, conf: { archive_mode: 'off' } });
    const r = await cairnOk('restore', ['--pgdata', cluster.pgdata, '--target', 'immediate', '--set', incr, '--target-action', 'promote'], env);
    assert.match(r.stderr, new RegExp(`^cairn-restore: warn: repository "${esc(a.url)}": .*; "${esc(paged.path)}" of backup ${incr} was restored from repository "${esc(b.url)}" instead \\(same backup, same SHA-256 ${paged.sha256.slice(0, 12)}…\\)`, 'm'), r.stderr);
    await cluster.start({ timeoutSec: 300 });
    await cluster.waitForRecoveryEnd(300_000);
    await assertRestoredEquals(cluster, imm.snapshot, 'healed page-level incr');
    await cluster.destroy();
  });
});
