// Runs the storage conformance suite against every driver, plus the checks
// that only make sense for one of them (file modes, temp files, S3 errors).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat as fsStat, chmod, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { isCairnError } from '@cairn/core/cli/errors';
import { ObjectNotFoundError } from '@cairn/core/storage/driver';
import { FsDriver } from '@cairn/core/storage/fs';
import { MemoryDriver, clearMemoryStores } from '@cairn/core/storage/memory';
import { openStorage } from '@cairn/core/storage/open';
import { runCleanups } from './cleanup.js';
import { DEFAULT_TEST_BUCKET, s3TestEnv, startS3Server, type S3Server } from './s3-server.js';
import { collect, describeStorageConformance, failingStream, randomStream, readAll } from './storage-conformance.js';

Object.assign(process.env, s3TestEnv());
after(() => runCleanups());

describeStorageConformance('fs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-fs-conf-'));
  // A root that does not exist yet: the first write creates it.
  return { driver: new FsDriver(join(dir, 'repo')), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

describeStorageConformance('memory', async () => ({ driver: new MemoryDriver(), cleanup: async () => {} }));

describeStorageConformance('s3 (s3rver)', async () => {
  const server = await startS3Server();
  const driver = await openStorage(
    `s3://${DEFAULT_TEST_BUCKET}/conformance/run-1?endpoint=${server.endpoint}&force-path-style=true`,
    { env: process.env },
  );
  return { driver, cleanup: () => server.stop() };
});

describe('fs driver specifics', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-fs-spec-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates directories 0700 and files 0600', async () => {
    const root = join(dir, 'modes');
    const d = new FsDriver(root);
    await d.write('a/b/c', Buffer.from('x'));
    for (const p of [root, join(root, 'a'), join(root, 'a/b')]) {
      assert.equal((await fsStat(p)).mode & 0o777, 0o700, p);
    }
    assert.equal((await fsStat(join(root, 'a/b/c'))).mode & 0o777, 0o600);
    await d.write('a/b/c', Readable.from([Buffer.from('y')])); // an overwrite too
    assert.equal((await fsStat(join(root, 'a/b/c'))).mode & 0o777, 0o600);
  });

  it('leaves no temp file behind after a failed write, and never lists one', async () => {
    const root = join(dir, 'temps');
    const d = new FsDriver(root);
    await d.write('t/keep', Buffer.from('k'));
    await assert.rejects(d.write('t/k', failingStream(1024 * 1024)), /body failed on purpose/);
    await assert.rejects(d.write('t/keep', Buffer.from('again'), { ifAbsent: true }));
    assert.deepEqual(await readdir(join(root, 't')), ['keep']);
    // A crashed writer's leftover is invisible, and its name is not a key.
    await d.write('t/crashed', Buffer.from('c'));
    const { rename } = await import('node:fs/promises');
    await rename(join(root, 't/crashed'), join(root, 't/.tmp.crashed.999.abcdef'));
    assert.deepEqual((await collect(d.list('t/'))).map((o) => o.key), ['t/keep']);
    await assert.rejects(d.write('t/.tmp.x', Buffer.from('x')), /invalid storage key/);
  });

  it('writes back a big non-durable stream early: byte-exact, and a body failing meanwhile leaves nothing', async () => {
    // 40 MiB passes WRITEBACK_STEP (32 MiB): a background fdatasync is in
    // flight while the rest is written, and when the body then fails.
    const root = join(dir, 'writeback');
    const d = new FsDriver(root);
    const { stream, digest } = randomStream(40 * 1024 * 1024);
    await d.write('w/big', stream, { durable: false });
    await d.syncKeys(['w/big']);
    assert.equal(createHash('sha256').update(await readAll(await d.read('w/big'))).digest('hex'), digest());
    await assert.rejects(d.write('w/failed', failingStream(40 * 1024 * 1024), { durable: false }), /body failed on purpose/);
    assert.deepEqual(await readdir(join(root, 'w')), ['big']);
  });

  it('writes a big durable buffer around the page cache byte-exact, ifAbsent or not, leaving no temp file', async () => {
    // From DIRECT_WRITE_MIN (128 KiB) Buffer bodies go through O_DIRECT
    // (util/direct-write.ts): sizes around its 4 KiB padding and its stages.
    const root = join(dir, 'direct');
    const d = new FsDriver(root);
    const data = randomBytes(2 * 1024 * 1024 + 4097);
    const sizes = [128 * 1024 - 1, 128 * 1024, 128 * 1024 + 1, 512 * 1024 + 4095, data.length];
    await Promise.all(sizes.map((n, i) => d.write(`d/${n}`, data.subarray(0, n), i % 2 === 0 ? { ifAbsent: true } : {})));
    for (const n of sizes) {
      assert.ok((await readAll(await d.read(`d/${n}`))).equals(data.subarray(0, n)), `${n} bytes`);
      assert.equal((await fsStat(join(root, 'd', String(n)))).mode & 0o777, 0o600);
    }
    // An overwrite with a shorter body keeps nothing of the longer one.
    await d.write(`d/${data.length}`, data.subarray(0, 300_000));
    assert.ok((await readAll(await d.read(`d/${data.length}`))).equals(data.subarray(0, 300_000)));
    assert.deepEqual((await readdir(join(root, 'd'))).filter((n) => n.startsWith('.tmp.')), []);
  });

  it('treats a missing root as an empty repository', async () => {
    const d = new FsDriver(join(dir, 'does/not/exist'));
    assert.equal(await d.stat('a'), undefined);
    await assert.rejects(d.read('a/b'), ObjectNotFoundError);
    assert.deepEqual(await collect(d.list('')), []);
    assert.deepEqual(await collect(d.list('a/b/')), []);
    await d.remove('a/b');
  });

  it('prunes directories a remove leaves empty, never the root', async () => {
    const root = join(dir, 'prune');
    const d = new FsDriver(root);
    await d.write('p/q/r', Buffer.from('x'));
    await d.write('p/s', Buffer.from('y'));
    await d.remove('p/q/r');
    assert.deepEqual(await readdir(join(root, 'p')), ['s']);
    await d.remove('p/s');
    assert.deepEqual(await readdir(root), []);
    await d.write('p/q/r', Buffer.from('again'));
    assert.equal((await readAll(await d.read('p/q/r'))).toString(), 'again');
  });

  it('maps a key that collides with a file to a storage error', async () => {
    const d = new FsDriver(join(dir, 'collide'));
    await d.write('f', Buffer.from('file'));
    await assert.rejects(d.write('f/x', Buffer.from('x')), (err: unknown) => {
      assert.ok(isCairnError(err, 'STORAGE_UNAVAILABLE'), String(err));
      assert.match(err.message, /^repository ".*collide": cannot write "f\/x": .*\(E[A-Z]+\)$/);
      return true;
    });
    assert.equal(await d.stat('f/x'), undefined);
  });

  it('reports EACCES as STORAGE_DENIED with a hint', async () => {
    const root = join(dir, 'denied');
    await mkdir(root, { mode: 0o700 });
    const driverModule = fileURLToPath(import.meta.resolve('@cairn/core/storage/fs'));
    let result: { code?: string; message?: string; hint?: string };
    if (process.getuid?.() === 0) {
      // root ignores modes: try as nobody against a root-owned 0700 directory.
      const script = `
        const { FsDriver } = await import(${JSON.stringify(driverModule)});
        try { await new FsDriver(${JSON.stringify(root)}).write('k', Buffer.from('x')); console.log('{}'); }
        catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, hint: e.hint })); }`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      result = JSON.parse(r.stdout) as typeof result;
    } else {
      await chmod(root, 0o500);
      try {
        await new FsDriver(root).write('k', Buffer.from('x'));
        result = {};
      } catch (e) {
        result = e as typeof result;
      } finally {
        await chmod(root, 0o700);
      }
    }
    assert.equal(result.code, 'STORAGE_DENIED');
    assert.equal(result.message, `repository "${root}": cannot write "k": permission denied (EACCES)`);
    assert.match(result.hint ?? '', /owned by and writable for the user cairn runs as/);
  });
});

describe('memory driver specifics', () => {
  it('shares one store per memory://name', async () => {
    clearMemoryStores('shared');
    const a = await openStorage('memory://shared', { env: process.env });
    const b = await openStorage('memory://shared', { env: process.env });
    const c = await openStorage('memory://other', { env: process.env });
    await a.write('k', Buffer.from('v'));
    assert.equal((await readAll(await b.read('k'))).toString(), 'v');
    assert.equal(await c.stat('k'), undefined);
    assert.equal(a.url, 'memory://shared');
    clearMemoryStores('shared');
    assert.equal(await (await openStorage('memory://shared', { env: process.env })).stat('k'), undefined);
  });
});

describe('s3 driver specifics (s3rver)', () => {
  let server: S3Server;
  const url = (bucketAndPrefix: string, extra = '') =>
    `s3://${bucketAndPrefix}?endpoint=${server.endpoint}&force-path-style=true&max-attempts=1${extra}`;
  before(async () => {
    server = await startS3Server({ buckets: [DEFAULT_TEST_BUCKET, 'cairn-other'] });
  });
  after(() => server.stop());

  it('reports a missing bucket as CONFIG_INVALID, never as a missing key', async () => {
    const u = url('no-such-bucket/x');
    const d = await openStorage(u, { env: process.env });
    try {
      for (const [what, op] of [
        ['stat "k"', () => d.stat('k')],
        ['read "k"', () => d.read('k')],
        ['write "k"', () => d.write('k', Buffer.from('x'))],
        ['list ""', () => collect(d.list(''))],
      ] as const) {
        await assert.rejects(op(), (err: unknown) => {
          assert.ok(isCairnError(err, 'CONFIG_INVALID'), `${what}: ${String(err)}`);
          assert.equal(err.message, `repository "${u}": cannot ${what}: bucket "no-such-bucket" does not exist`);
          assert.match(err.hint ?? '', /create the bucket/);
          return true;
        });
      }
    } finally {
      await d.close();
    }
  });

  it('reports unknown credentials as STORAGE_DENIED', async () => {
    // s3rver checks the access key id but not SigV4 signatures (any secret
    // passes), so only an unknown key id can be tested here. A HEAD answer has
    // no body, so only its status is known.
    const saved = process.env.AWS_ACCESS_KEY_ID;
    process.env.AWS_ACCESS_KEY_ID = 'NOT-A-KEY-ID';
    const u = url(`${DEFAULT_TEST_BUCKET}/creds`);
    const d = await openStorage(u, { env: process.env });
    try {
      for (const [what, code, op] of [
        ['stat "k"', 'HTTP 403', () => d.stat('k')],
        ['read "k"', 'InvalidAccessKeyId', () => d.read('k')],
        ['write "k"', 'InvalidAccessKeyId', () => d.write('k', Buffer.from('x'))],
      ] as const) {
        await assert.rejects(op(), (err: unknown) => {
          assert.ok(isCairnError(err, 'STORAGE_DENIED'), `${what}: ${String(err)}`);
          assert.equal(err.transient, false);
          assert.equal(err.message, `repository "${u}": cannot ${what}: access denied (${code})`);
          assert.match(err.hint ?? '', /AWS default chain/);
          return true;
        });
      }
    } finally {
      await d.close();
      process.env.AWS_ACCESS_KEY_ID = saved;
    }
  });

  it('keeps repositories under different prefixes and buckets apart', async () => {
    const a = await openStorage(url(`${DEFAULT_TEST_BUCKET}/one`), { env: process.env });
    const b = await openStorage(url(`${DEFAULT_TEST_BUCKET}/one-two/three`), { env: process.env });
    const whole = await openStorage(url(DEFAULT_TEST_BUCKET), { env: process.env });
    const other = await openStorage(url('cairn-other/one'), { env: process.env });
    try {
      await a.write('k', Buffer.from('a'));
      await b.write('k', Buffer.from('b'));
      assert.deepEqual((await collect(a.list(''))).map((o) => o.key), ['k']);
      assert.deepEqual((await collect(b.list(''))).map((o) => o.key), ['k']);
      assert.deepEqual((await collect(whole.list(''))).map((o) => o.key), ['one-two/three/k', 'one/k']);
      assert.equal(await other.stat('k'), undefined);
      assert.equal((await readAll(await whole.read('one/k'))).toString(), 'a');
    } finally {
      for (const d of [a, b, whole, other]) await d.close();
    }
  });
});
