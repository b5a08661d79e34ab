// cairn-copy (issue 18 item 2): an encrypted file repository (envelope
// encryption: a wrapped data key) with a full and a
// page-level incr backup, a dump, WAL and a verify result is copied into an
// empty S3 repository; a first copy is killed (-9) midway while it holds a
// reader lease on the source, a second one running beside it is refused by
// the target's lease, the rerun finishes, a third
// copies nothing, cairn-verify is clean on the copy, and a restore from the
// copy to a time target holds exactly the source's rows at that time.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { startFaultProxy, type FaultProxy } from '@cairn/testkit/fault-proxy';
import { binPath } from '@cairn/testkit/paths';
import { spawnAsPg, killAndWait } from '@cairn/testkit/run-as';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import {
  assertRestoredEquals,
  cairnOk,
  captureUnderLock,
  NOW_UTC_SQL,
  restoreAndStart,
  scalar,
  sleep,
  switchAndWaitArchived,
  takeBackup,
  walPushCommand,
  type Capture,
} from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

interface CopyJson {
  format: string;
  dryRun: boolean;
  copied: { objects: number; bytes: number };
  skipped: { objects: number; bytes: number };
  backups: { copied: string[]; present: string[] };
  dumps: { copied: string[]; present: string[] };
  wal: { copied: number; present: number };
  results: { copied: number; present: number };
  problems: string[];
}

interface State {
  src: RepoFixture;
  dst: RepoFixture;
  proxy: FaultProxy;
  cluster: Cluster;
  full: string;
  incr: string;
  dump: string;
  time: Capture<string>;
}

/** The S3 repository URL through the proxy (no SDK retries, so a kill lands between requests). */
function viaProxy(url: string, endpoint: string): string {
  const u = new URL(url.replace(/^s3:/, 'http:'));
  u.searchParams.set('endpoint', endpoint);
  return u.toString().replace(/^http:/, 's3:');
}

describe('cairn-copy: file repository to an empty S3 one', { timeout: 900_000 }, () => {
  let st: State | undefined;
  const state = (): State => {
    assert.ok(st, 'the setup step failed; see the first failure');
    return st;
  };
  const copyArgs = () => ['--from', state().src.url, '--to', state().dst.env['CAIRN_REPO']!];
  const copyEnv = () => ({ ...state().dst.env, CAIRN_REPO: '' });

  it('builds a source: full and page-level incr backups, a dump, WAL and a verify result', async () => {
    const src = await makeRepo('fs', true);
    const s3 = await makeRepo('s3', false);
    const target = new URL(s3.endpoint!);
    const proxy = await startFaultProxy({ host: target.hostname, port: Number(target.port) });
    // The copy opens with the source's key: its wrapped data key is copied too.
    const dst = { ...s3, encrypted: true, env: { ...s3.env, CAIRN_ENCRYPTION_KEY_FILE: src.keyFile!, CAIRN_REPO: viaProxy(s3.url, proxy.endpoint) } };
    const cluster = await createCluster({ name: 'copy-src', archiveCommand: walPushCommand(), archiveTimeout: '1s', env: src.env });
    await cluster.start();
    await cluster.psql("create table marker(v text); insert into marker values ('a')");
    await cluster.pgbench(['-i', '-s', '2', '-q']);
    const full = await takeBackup(cluster, src, 'full');
    let loadError: unknown;
    const load = cluster.pgbench(['-c', '2', '-j', '2', '-T', '10', '-n']).catch((err: unknown) => {
      loadError = err;
    });
    await sleep(3000);
    const time = await captureUnderLock(cluster, (c) => scalar(c, NOW_UTC_SQL));
    await sleep(2000);
    const incr = await takeBackup(cluster, src, 'incr');
    await load;
    assert.equal(loadError, undefined, `pgbench: ${String(loadError)}`);
    const d = await cairnOk('dump', ['--dbname', 'postgres'], { ...cluster.env, ...src.env });
    const dump = d.stdout.trim();
    await cluster.psql("insert into marker values ('b')");
    await switchAndWaitArchived(cluster);
    await cluster.stop();
    await cairnOk('verify', [], src.env);
    st = { src, dst, proxy, cluster, full, incr, dump, time };
    const m = JSON.parse((await src.objects(`main/backups/${incr}/manifest.json`)).get(`main/backups/${incr}/manifest.json`)!.toString()) as { format: string };
    assert.equal(m.format, 'cairn.backup/2', 'the incr backup is page-level (its chain reaches into the full one)');
  });

  it('--dry-run lists what it would copy and writes nothing', async () => {
    const s = state();
    const r = await runCairn('copy', [...copyArgs(), '--dry-run', '--json'], { env: copyEnv() });
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as CopyJson;
    assert.equal(j.dryRun, true);
    assert.deepEqual(j.backups.copied, [s.full, s.incr]);
    assert.deepEqual(j.dumps.copied, [s.dump]);
    assert.ok(j.wal.copied > 3, `WAL files to copy: ${j.wal.copied}`);
    assert.ok(j.results.copied >= 1, 'the verify result');
    assert.deepEqual(await s.dst.keys(), [], 'nothing written');
  });

  it('refuses a target with other encryption settings, in one line', async () => {
    const s = state();
    const cases = [
      { cfg: { format: 1, cipher: 'none' }, why: /^cairn-copy: error: cannot copy cluster "main" .*: the source is encrypted \(aes-256-gcm-stream-v1\), the target not encrypted;/ },
      { cfg: { format: 2, cipher: 'aes-256-gcm-stream-v1', keyCheck: 'x' }, why: /^cairn-copy: error: the encryption key does not match repository/ },
    ];
    for (const c of cases) {
      const other = await makeRepo('fs', false);
      await mkdir(join(other.url, 'main'), { recursive: true });
      await writeFile(join(other.url, 'main/repo.json'), JSON.stringify({ ...c.cfg, created: new Date().toISOString(), createdBy: 'test' }));
      await chownToPgUser(join(other.url, 'main'));
      await chownToPgUser(join(other.url, 'main/repo.json'));
      const r = await runCairn('copy', ['--from', s.src.url, '--to', other.url], { env: copyEnv() });
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.lines[0]!, c.why);
      assert.deepEqual(await other.keys(), ['main/repo.json'], 'nothing copied');
    }
    // A typo in --from: one line, exit 3, and neither path is created (no lease was taken).
    const base = await makeTempDir('copy-typo');
    await chownToPgUser(base);
    const typo = await runCairn('copy', ['--from', join(base, 'no-such-repo'), '--to', join(base, 'target')], { env: copyEnv() });
    assert.equal(typo.code, 3, typo.stderr);
    assert.match(typo.lines[0]!, /has no cluster "main"/);
    assert.deepEqual(await readdir(base), [], 'nothing created');
    // And the source's own key is needed to check what is copied.
    const nokey = await runCairn('copy', copyArgs(), { env: { ...copyEnv(), CAIRN_ENCRYPTION_KEY_FILE: '' } });
    assert.equal(nokey.code, 3, nokey.stderr);
    assert.match(nokey.lines[0]!, /is encrypted and no encryption key is configured/);
  });

  it('killed (-9) midway, a second copy meanwhile refused by the lease; a rerun completes, a third copies nothing', async () => {
    const s = state();
    // A far-away store: each request waits, so the kill lands midway.
    s.proxy.delay(400);
    const child = spawnAsPg(binPath('copy'), copyArgs(), { env: copyEnv() });
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const t0 = Date.now();
    let seen: string[] = [];
    while (Date.now() - t0 < 120_000) {
      seen = await s.dst.keys('main/backups/');
      if (seen.length > 0) break;
      assert.equal(child.exitCode, null, `the first copy ended before it was killed: ${stderr}`);
      await sleep(100);
    }
    assert.ok(seen.length > 0, 'the first copy reached the backups');
    // It holds a reader lease on the source, so the source's expire keeps what it copies.
    const readers = [...(await s.src.objects('main/readers/')).values()].map((b) => JSON.parse(b.toString()) as { purpose: string; chain: string[]; dumps: string[]; wal: unknown[] });
    assert.equal(readers.length, 1, 'one reader lease on the source');
    assert.equal(readers[0]!.purpose, 'copy');
    assert.deepEqual(readers[0]!.chain, [s.full, s.incr]);
    assert.deepEqual(readers[0]!.dumps.length, 1);
    assert.ok(readers[0]!.wal.length >= 1, 'and the WAL');
    const second = await runCairn('copy', copyArgs(), { env: copyEnv() });
    assert.equal(second.code, 5, `a second copy beside the first: ${second.stderr}`);
    assert.match(second.stderr, /lease/);
    child.kill('SIGKILL');
    await killAndWait(child);
    const manifests = (await s.dst.keys('main/backups/')).filter((k) => k.endsWith('/manifest.json'));
    assert.ok(manifests.length < 2, `the kill landed before both backups were whole: ${manifests.join(', ')}`);
    s.proxy.delay(0);

    const r = await runCairn('copy', [...copyArgs(), '--json'], { env: copyEnv(), timeoutMs: 600_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /took over the stale lease/);
    const j = JSON.parse(r.stdout) as CopyJson;
    assert.deepEqual([...j.backups.present, ...j.backups.copied].sort(), [s.full, s.incr]);
    assert.deepEqual([...j.dumps.present, ...j.dumps.copied], [s.dump]);
    assert.ok(j.skipped.objects > 0, 'the rerun kept what the killed one copied');
    assert.deepEqual(j.problems, []);

    const again = await runCairn('copy', [...copyArgs(), '--json'], { env: copyEnv() });
    assert.equal(again.code, 0, again.stderr);
    const k = JSON.parse(again.stdout) as CopyJson;
    assert.equal(k.copied.objects, 0, 'a third copy has nothing to do');
    assert.deepEqual(k.backups.present, [s.full, s.incr]);
    assert.match(again.stderr, /^cairn-copy: copied 0 object\(s\)/m);
    assert.equal((await s.src.keys('main/readers/')).length, 1, 'the finished copies removed their reader leases (the killed one lapses)');

    // Byte for byte: every object of the source's backups, dumps, WAL and results is in the copy.
    const srcKeys = (await s.src.keys('main/')).filter((k) => !k.startsWith('main/locks/') && !k.startsWith('main/readers/'));
    const dstObjects = await s.dst.objects('main/');
    const srcObjects = await s.src.objects('main/');
    for (const key of srcKeys) {
      assert.ok(dstObjects.has(key), `${key} copied`);
      assert.ok(dstObjects.get(key)!.equals(srcObjects.get(key)!), `${key} has the same bytes`);
    }
  });

  it('a source manifest that names objects outside its backup or dump is not copied, and nothing is written there', async () => {
    const s = state();
    const evil = await makeTempDir('copy-evil');
    await cp(s.src.url, evil, { recursive: true });
    const incrKey = join(evil, `main/backups/${s.incr}/manifest.json`);
    const incr = JSON.parse(await readFile(incrKey, 'utf8')) as { files: { key: string; ref: string; bundle?: { key: string }; pages?: unknown }[] };
    const own = incr.files.find((f) => f.ref === s.incr && f.pages === undefined);
    assert.ok(own, 'the incr stores a file of its own');
    if (own.bundle) own.bundle.key = 'main/systems/planted.json';
    else own.key = 'main/systems/planted.json';
    await writeFile(incrKey, JSON.stringify(incr));
    const [dir, id] = s.dump.split('/') as [string, string];
    const dumpKey = join(evil, `main/dumps/${dir}/${id}/manifest.json`);
    const dump = JSON.parse(await readFile(dumpKey, 'utf8')) as { objects: { key: string }[] };
    dump.objects[0]!.key = 'main/repo.json.planted';
    await writeFile(dumpKey, JSON.stringify(dump));
    // The objects the manifests point at are there, as a hostile source would have them.
    await writeFile(join(evil, 'main/systems/planted.json'), '{}');
    await writeFile(join(evil, 'main/repo.json.planted'), '{}');
    await chownToPgUser(evil, { recursive: true });
    const dst = await makeRepo('fs', false);
    const r = await runCairn('copy', ['--from', evil, '--to', dst.url, '--json'], { env: copyEnv() });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`backup "${s.incr}" not copied: .*systems/planted`));
    assert.match(r.stderr, new RegExp(`dump "${s.dump}" not copied: .*outside the dump`));
    const keys = await dst.keys();
    assert.ok(keys.includes(`main/backups/${s.full}/manifest.json`), 'the full backup is copied');
    assert.ok(!keys.some((k) => k.startsWith(`main/backups/${s.incr}/`) || k.startsWith(`main/dumps/${dir}/${id}/`)), 'nothing of the bad backup or dump');
    assert.ok(!keys.includes('main/systems/planted.json') && !keys.includes('main/repo.json.planted'), 'nothing planted');
  });

  it('an incr is not copied onto a target whose own copy of its parent holds other objects', async () => {
    const s = state();
    const dst = await makeRepo('fs', false);
    const env = { ...copyEnv(), CAIRN_ENCRYPTION_KEY_FILE: s.src.keyFile! };
    await runCairn('copy', ['--from', s.src.url, '--to', dst.url], { env }).then((r) => assert.equal(r.code, 0, r.stderr));
    // The target keeps the full backup as if written there on its own: one
    // object the incr references differs; the incr is taken away again.
    type Entry = { key: string; ref: string; sha256: string; bundle?: { key: string; offset: number } };
    const incr = JSON.parse(await readFile(join(dst.url, `main/backups/${s.incr}/manifest.json`), 'utf8')) as { files: Entry[] };
    const borrowed = incr.files.find((f) => f.ref === s.full);
    assert.ok(borrowed, 'the incr references a file of the full backup');
    await rm(join(dst.url, `main/backups/${s.incr}`), { recursive: true });
    const fullKey = join(dst.url, `main/backups/${s.full}/manifest.json`);
    const full = JSON.parse(await readFile(fullKey, 'utf8')) as { files: Entry[] };
    const same = (e: Entry) => e.key === borrowed.key && e.bundle?.key === borrowed.bundle?.key && e.bundle?.offset === borrowed.bundle?.offset;
    full.files.find(same)!.sha256 = '0'.repeat(64);
    await writeFile(fullKey, JSON.stringify(full));
    const r = await runCairn('copy', ['--from', s.src.url, '--to', dst.url], { env });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`backup "${s.incr}" not copied: it references object .* of backup "${s.full}", which repository .* holds with other content`));
    assert.ok(!(await dst.keys()).some((k) => k.startsWith(`main/backups/${s.incr}/`)), 'nothing of the incr');
  });

  it('into an encrypted repository with its own data key (WAL pushed there first): every object encrypted again, verify clean, restore equal, and a damaged file of the source healed from it', async () => {
    const s = state();
    const dst = await makeRepo('fs', true);
    const env = { ...dst.env, CAIRN_ENCRYPTION_KEY_FILE: s.src.keyFile!, CAIRN_REPO: '' };
    // The target is made by wal-push with the same operator key: its own data key.
    // (The stopped server's lowest segment holds its shutdown checkpoint: its pages name it.)
    const seg = (await readdir(join(s.cluster.pgdata, 'pg_wal'))).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort()[0]!;
    await cairnOk('wal-push', [join(s.cluster.pgdata, 'pg_wal', seg), seg], { ...s.cluster.env, ...env, CAIRN_REPO: dst.url });
    const dataKey = (k: string) => k.startsWith('main/keys/');
    const theirKey = (await dst.keys()).filter(dataKey);
    assert.equal(theirKey.length, 1, 'the target has its own data key');
    const r = await runCairn('copy', ['--from', s.src.url, '--to', dst.url, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /encrypted again under the target's data key/);
    assert.equal((JSON.parse(r.stdout) as { reencrypted: boolean }).reencrypted, true);
    assert.deepEqual((await dst.keys()).filter(dataKey), theirKey, 'its data key is its own still');
    // Every encrypted object differs from the source's (another key), with the same size.
    const srcObjects = await s.src.objects(`main/backups/${s.incr}/`);
    const dstObjects = await dst.objects(`main/backups/${s.incr}/`);
    for (const [k, v] of srcObjects) {
      if (k.endsWith('manifest.json')) continue;
      assert.equal(dstObjects.get(k)?.length, v.length, `${k}: same size`);
      assert.ok(!dstObjects.get(k)!.equals(v), `${k}: encrypted again`);
    }
    const v = await runCairn('verify', [], { env: { ...env, CAIRN_REPO: dst.url }, timeoutMs: 300_000 });
    assert.equal(v.code, 0, `cairn-verify on the re-encrypted copy:\n${v.stderr}`);
    const { cluster, result } = await restoreAndStart({ ...dst, env: { ...env, CAIRN_REPO: dst.url } }, 'copy-reenc', ['--target-time', s.time.value, '--target-action', 'promote']);
    assert.equal(result.backup, s.full);
    await assertRestoredEquals(cluster, s.time.snapshot, 'restore from the re-encrypted copy');
    await cluster.destroy();

    // Self-healing across the two data keys: a damaged file in (a copy of)
    // the source is taken from the re-encrypted copy, decrypted with its key.
    const broken = await makeTempDir('copy-broken');
    await cp(s.src.url, broken, { recursive: true });
    type Entry = { path: string; key: string; ref: string; size: number; storedSize: number; bundle?: unknown; pages?: unknown };
    const full = JSON.parse(await readFile(join(broken, `main/backups/${s.full}/manifest.json`), 'utf8')) as { files: Entry[] };
    const big = full.files.filter((f) => f.ref === s.full && f.bundle === undefined && f.pages === undefined).sort((x, y) => y.size - x.size)[0]!;
    const obj = await readFile(join(broken, big.key));
    for (let i = (obj.length >> 1); i < (obj.length >> 1) + 16; i++) obj[i] = obj[i]! ^ 0x5a;
    await writeFile(join(broken, big.key), obj);
    await chownToPgUser(broken, { recursive: true });
    const both = { ...env, CAIRN_REPO: `${broken},${dst.url}` };
    const healed = await createCluster({ name: 'copy-healed', initdb: false, env: both, conf: { archive_mode: 'off' } });
    const h = await cairnOk('restore', ['--pgdata', healed.pgdata, '--target-time', s.time.value, '--target-action', 'promote'], both);
    assert.match(h.stderr, new RegExp(`"${big.path}" of backup ${s.full} was restored from repository "${dst.url}" instead`));
    await healed.start({ timeoutSec: 300 });
    await healed.waitForRecoveryEnd(300_000);
    await assertRestoredEquals(healed, s.time.snapshot, 'restore healed from the re-encrypted copy');
    await healed.destroy();
  });

  it('the copy verifies clean and restores to the time target with the source rows', async () => {
    const s = state();
    const v = await runCairn('verify', ['--json'], { env: s.dst.env, timeoutMs: 300_000 });
    assert.equal(v.code, 0, `cairn-verify on the copy:\n${v.stderr}`);
    const { cluster, result } = await restoreAndStart(s.dst, 'copy-restored', ['--target-time', s.time.value, '--target-action', 'promote']);
    assert.equal(result.backup, s.full, 'the time target lies between the two backups');
    await assertRestoredEquals(cluster, s.time.snapshot, 'restore from the copy');
    await cluster.destroy();
    await s.proxy.stop();
  });
});
