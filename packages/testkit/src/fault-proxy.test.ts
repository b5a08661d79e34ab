// The S3 driver behind a fault-injecting proxy: 5xx, throttling, refused and
// stalled connections and bodies cut short must come out as transient
// STORAGE_UNAVAILABLE errors, within the configured time, never as "not found"
// or a short read.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import { isCairnError, type CairnError } from '@cairn/core/cli/errors';
import { WriteConflictError, type StorageDriver } from '@cairn/core/storage/driver';
import { openStorage } from '@cairn/core/storage/open';
import { acquireLeases } from '@cairn/core/repo/lease';
import { S3Driver, type S3DriverInit } from '@cairn/core/storage/s3';
import { runCleanups } from './cleanup.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { DEFAULT_TEST_BUCKET, s3TestEnv, startS3Server, type S3Server } from './s3-server.js';
import { collect, readAll } from './storage-conformance.js';

Object.assign(process.env, s3TestEnv());
after(() => runCleanups());

const REQUEST_TIMEOUT_MS = 700;

function assertTransient(what: string, pattern: RegExp) {
  return (err: unknown): true => {
    assert.ok(isCairnError(err, 'STORAGE_UNAVAILABLE'), `${what}: expected STORAGE_UNAVAILABLE, got ${String(err)}`);
    assert.equal((err as CairnError).transient, true, what);
    assert.match((err as CairnError).message, pattern, what);
    return true;
  };
}

describe('s3 driver through a fault-injecting proxy', () => {
  let server: S3Server;
  let proxy: FaultProxy;
  let driver: StorageDriver;
  let url: string;

  before(async () => {
    server = await startS3Server();
    proxy = await startFaultProxy({ host: '127.0.0.1', port: server.port });
    url =
      `s3://${DEFAULT_TEST_BUCKET}/faults?endpoint=${proxy.endpoint}&force-path-style=true` +
      `&max-attempts=1&request-timeout-ms=${REQUEST_TIMEOUT_MS}&connect-timeout-ms=500`;
    driver = await openStorage(url, { env: process.env });
    await driver.write('small', Buffer.from('hello'));
    await driver.write('big', randomBytes(1024 * 1024));
  });
  afterEach(() => {
    proxy.setMode('pass');
    proxy.delay(0);
  });
  after(async () => {
    await driver?.close();
    await proxy?.stop();
    await server?.stop();
  });

  it('passes requests through', async () => {
    const before = proxy.requests;
    assert.equal((await readAll(await driver.read('small'))).toString(), 'hello');
    assert.equal((await driver.stat('big'))?.size, 1024 * 1024);
    assert.ok(proxy.requests >= before + 2);
  });

  it('holds each request back by delay(ms), and counts the requests in flight at once', async () => {
    proxy.delay(150);
    const t0 = performance.now();
    const sizes = await Promise.all(Array.from({ length: 6 }, () => driver.stat('small')));
    const took = performance.now() - t0;
    assert.deepEqual(sizes.map((x) => x?.size), [5, 5, 5, 5, 5, 5]);
    assert.ok(took >= 150, `6 requests at once took ${Math.round(took)} ms, at least the delay`);
    assert.ok(proxy.maxInFlight >= 6, `${proxy.maxInFlight} in flight at once, 6 sent together`);
  });

  for (const [mode, code, status] of [
    ['error500', 'InternalError', 500],
    ['error503', 'SlowDown', 503],
  ] as const) {
    it(`maps ${status} ${code} to a transient STORAGE_UNAVAILABLE`, async () => {
      proxy.setMode(mode);
      const re = (what: string) =>
        new RegExp(`^repository "${escape(url)}": cannot ${escape(what)}: server answered ${status}( \\(${code}\\))?$`);
      await assert.rejects(driver.stat('small'), assertTransient('stat', re('stat "small"')));
      await assert.rejects(driver.read('small'), assertTransient('read', re('read "small"')));
      await assert.rejects(driver.write('new', Buffer.from('x')), assertTransient('write', re('write "new"')));
      await assert.rejects(collect(driver.list('')), assertTransient('list', re('list ""')));
      await assert.rejects(driver.remove('small'), assertTransient('remove', re('remove "small"')));
      // Named when the answer has a body to name it.
      await assert.rejects(driver.read('small'), (err: unknown) => {
        assert.match((err as Error).message, new RegExp(`\\(${code}\\)$`));
        return true;
      });
    });
  }

  it('retries a transient error when attempts remain', async () => {
    const retrying = await openStorage(url.replace('max-attempts=1', 'max-attempts=3'), { env: process.env });
    try {
      proxy.setMode('error503');
      const start = proxy.requests;
      const result = retrying.stat('small');
      while (proxy.requests === start) await new Promise((r) => setTimeout(r, 5));
      proxy.setMode('pass');
      assert.equal((await result)?.size, 5);
    } finally {
      await retrying.close();
    }
  });

  it('maps a refused connection to a transient STORAGE_UNAVAILABLE, and recovers', async () => {
    proxy.setMode('refuse');
    // Let the client see its kept-alive sockets close (else: ECONNRESET on reuse).
    await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(driver.stat('small'), assertTransient('stat', /: network error \(ECONNREFUSED\): connect ECONNREFUSED 127\.0\.0\.1:\d+$/));
    await assert.rejects(driver.write('new', Buffer.from('x')), assertTransient('write', /ECONNREFUSED/));
    proxy.setMode('pass');
    await new Promise((r) => setImmediate(r));
    assert.equal((await driver.stat('small'))?.size, 5);
  });

  it('errors a read whose connection drops mid-body, never ends it quietly', async () => {
    proxy.setMode('drop');
    await assert.rejects(
      async () => readAll(await driver.read('big')),
      assertTransient('read', /cannot read "big": (network error|the body ended)/),
    );
    // Without a body to cut, the connection is dropped before the answer.
    await assert.rejects(driver.stat('small'), assertTransient('stat', /network error/));
  });

  it(`gives up on a stalled server after request-timeout-ms (${REQUEST_TIMEOUT_MS} ms); persistent after the retry window`, async () => {
    proxy.setMode('stall');
    // The retry window is twice the timeout: the first failure may be
    // retried; once requests have failed that long, callers must stop.
    for (const [what, op, transient] of [
      ['stat', () => driver.stat('small'), true],
      ['write', () => driver.write('stalled', Buffer.from('x')), false],
      ['list', () => collect(driver.list('')), false],
    ] as const) {
      const started = Date.now();
      await assert.rejects(op(), (err: unknown) => {
        assert.ok(isCairnError(err, 'STORAGE_UNAVAILABLE'), `${what}: ${String(err)}`);
        assert.equal(err.transient, transient, what);
        assert.match(err.message, new RegExp(`no answer within ${REQUEST_TIMEOUT_MS} ms$`), what);
        return true;
      });
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= REQUEST_TIMEOUT_MS - 50 && elapsed < REQUEST_TIMEOUT_MS + 1500, `${what} took ${elapsed} ms`);
    }
    // One success and errors are transient again.
    proxy.setMode('pass');
    await new Promise((r) => setImmediate(r));
    assert.equal((await driver.stat('small'))?.size, 5);
    proxy.setMode('stall');
    await assert.rejects(driver.stat('small'), assertTransient('stat after a success', /no answer within/));
  });

  it('readRange: a range cut mid-body every time resumes from where it stopped, and returns the same bytes', async () => {
    const d = await openStorage(url.replace('max-attempts=1', 'max-attempts=3'), { env: process.env });
    try {
      const want = (await readAll(await d.read('big'))).subarray(1000, 1000 + 300_000);
      proxy.cutBodies(1);
      const cutBefore = proxy.cutResponses;
      const got = await d.readRange!('big', 1000, 300_000);
      assert.ok(got.equals(want), 'same bytes');
      assert.ok(proxy.cutResponses - cutBefore >= 2, `${proxy.cutResponses - cutBefore} cuts`);
    } finally {
      proxy.cutBodies(0);
      await d.close();
    }
  });

  it('resumes a read cut mid-body with a ranged GET, and returns the same bytes', async () => {
    const d = await openStorage(url.replace('max-attempts=1', 'max-attempts=3'), { env: process.env });
    try {
      const want = await readAll(await d.read('big'));
      proxy.cutBodies(1);
      const cutBefore = proxy.cutResponses;
      // Every response is cut somewhere, the ranged ones too: each resumption gains bytes.
      const got = await readAll(await d.read('big'));
      assert.ok(got.equals(want), 'same bytes');
      assert.ok(proxy.cutResponses - cutBefore >= 2, `${proxy.cutResponses - cutBefore} cuts`);
    } finally {
      proxy.cutBodies(0);
      await d.close();
    }
  });

  it('honours If-None-Match: * on request, as AWS S3 does; the driver\'s probe tells which store it has', async () => {
    const probe = await openStorage(url, { env: process.env });
    try {
      await probe.write('cond/a', Buffer.from('one'));
      // s3rver behind the proxy: the header is ignored, the object rewritten with the same bytes.
      assert.equal(await probe.probeConditionalWrite!('cond/a', Buffer.from('one')), false);
      assert.equal(probe.features.atomicIfAbsent, false);
      proxy.honourIfNoneMatch(true);
      await assert.rejects(probe.write('cond/a', Buffer.from('two'), { ifAbsent: true }), WriteConflictError);
      // Racing conditional writes of a new key: exactly one wins.
      const racing = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => probe.probeConditionalWrite!('cond/b', Buffer.from(String(i)))));
      assert.deepEqual(racing.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
      assert.equal(racing.filter((r) => r.status === 'fulfilled' && r.value === false).length, 1, 'one write created the object');
      assert.equal(await probe.probeConditionalWrite!('cond/a', Buffer.from('one')), true);
      assert.equal(probe.features.atomicIfAbsent, true, 'proven atomic for this driver from now on');
      assert.equal((await readAll(await probe.read('cond/a'))).toString(), 'one');
    } finally {
      proxy.honourIfNoneMatch(false);
      await probe.close();
    }
  });

  it('a lease on a store that honours If-None-Match is taken at once, without the read-back pause', async () => {
    const d = await openStorage(url.replace('/faults?', '/faults-lease?'), { env: process.env });
    proxy.honourIfNoneMatch(true);
    try {
      // A pause of ten minutes: only the probe's proof lets this return.
      const held = await acquireLeases(d, 'main', { tool: 'expire', confirmMs: 600_000 });
      assert.deepEqual(held.records.map((r) => r.name), ['backup', 'dump']);
      await assert.rejects(acquireLeases(d, 'main', { tool: 'basebackup', confirmMs: 600_000 }), /lease "backup" of cluster "main"/);
      await held.release();
    } finally {
      proxy.honourIfNoneMatch(false);
      await d.close();
    }
  });

  it('write-once: refuses and records an overwrite and a delete, lets leases change, a new object land and an If-None-Match write fail with 412', async () => {
    // Uploads of 6 MiB parts: a timeout for a busy machine, so a write fails only where the store refuses it.
    const d = await openStorage(url.replace('/faults?', '/faults-worm?').replace(`request-timeout-ms=${REQUEST_TIMEOUT_MS}`, 'request-timeout-ms=30000'), { env: process.env });
    proxy.writeOnce({ mutable: (k) => k.includes('/locks/'), deletable: (k) => k.endsWith('/expired') });
    try {
      const before = proxy.refused.length;
      await d.write('kept', Buffer.from('one'));
      await d.write('expired', Buffer.from('x'));
      // A stream goes up in parts: its completion is the whole write.
      const big = () => Readable.from([randomBytes(6 * 1024 * 1024), randomBytes(6 * 1024 * 1024), randomBytes(6 * 1024 * 1024)]);
      await d.write('big-new', big());
      await assert.rejects(d.write('kept', Buffer.from('two')), (err: unknown) => isCairnError(err) && /denied|AccessDenied|permission/i.test((err as Error).message));
      const denied = (err: unknown) => isCairnError(err) && /denied|AccessDenied|permission/i.test((err as Error).message);
      await assert.rejects(d.write('big-new', big()), denied);
      await assert.rejects(d.remove('kept'), denied);
      await assert.rejects(d.write('kept', Buffer.from('three'), { ifAbsent: true }), WriteConflictError);
      await d.remove('expired');
      await d.write('main/locks/backup', Buffer.from('a'));
      await d.write('main/locks/backup', Buffer.from('b'));
      await d.remove('main/locks/backup');
      assert.deepEqual(proxy.refused.slice(before), [
        { method: 'PUT', key: 'faults-worm/kept', why: 'overwrite' },
        { method: 'POST', key: 'faults-worm/big-new', why: 'overwrite' },
        { method: 'DELETE', key: 'faults-worm/kept', why: 'delete' },
      ]);
      assert.equal((await readAll(await d.read('kept'))).toString(), 'one', 'the object is as first written');
      assert.equal(await d.stat('expired'), undefined);
    } finally {
      proxy.writeOnce(undefined);
      await d.close();
    }
  });

  it('stalls writes only in stall-writes mode', async () => {
    proxy.setMode('stall-writes');
    assert.equal((await readAll(await driver.read('small'))).toString(), 'hello');
    const before = proxy.stalledWrites;
    await assert.rejects(
      driver.write('stalled-w', Buffer.from('x')),
      assertTransient('write', new RegExp(`no answer within ${REQUEST_TIMEOUT_MS} ms$`)),
    );
    assert.equal(proxy.stalledWrites, before + 1);
    proxy.setMode('pass');
    assert.equal(await driver.stat('stalled-w'), undefined);
  });

  it('gives up on a body that stalls midway', async () => {
    proxy.setMode('stall-body');
    const started = Date.now();
    await assert.rejects(
      async () => readAll(await driver.read('big')),
      assertTransient('read', new RegExp(`cannot read "big": no answer within ${REQUEST_TIMEOUT_MS} ms$`)),
    );
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= REQUEST_TIMEOUT_MS - 50 && elapsed < REQUEST_TIMEOUT_MS + 1500, `read took ${elapsed} ms`);
  });
});

describe('s3 driver conditional writes (fake server)', () => {
  // s3rver ignores If-None-Match (docs/gotchas.md §s3rver), so the 412 path runs against a fake client.
  function fakeClient(answers: { head: 'missing' | 'present'; put: 'ok' | 412 | 409 }) {
    const sent: { name: string; input: Record<string, unknown> }[] = [];
    const client = {
      send: async (cmd: { constructor: { name: string }; input: Record<string, unknown> }) => {
        sent.push({ name: cmd.constructor.name, input: cmd.input });
        if (cmd.constructor.name === 'HeadObjectCommand') {
          if (answers.head === 'present') return { ContentLength: 1, LastModified: new Date() };
          throw Object.assign(new Error('UnknownError'), { name: 'NotFound', $metadata: { httpStatusCode: 404 } });
        }
        if (cmd.constructor.name === 'ListObjectsV2Command') return { Contents: [] };
        if (cmd.constructor.name === 'PutObjectCommand') {
          if (answers.put === 412) {
            throw Object.assign(new Error('At least one of the pre-conditions you specified did not hold'), {
              name: 'PreconditionFailed',
              $metadata: { httpStatusCode: 412 },
            });
          }
          if (answers.put === 409) {
            throw Object.assign(new Error('A conflicting conditional operation is in progress'), {
              name: 'ConditionalRequestConflict',
              $metadata: { httpStatusCode: 409 },
            });
          }
          return {};
        }
        throw new Error(`unexpected ${cmd.constructor.name}`);
      },
      destroy: () => {},
    };
    return { client: client as unknown as NonNullable<S3DriverInit['client']>, sent };
  }
  const options = {
    bucket: 'b',
    prefix: 'p',
    region: 'us-east-1',
    forcePathStyle: true,
    connectTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    maxAttempts: 1,
    conditionalWrites: true,
  };

  it('sends If-None-Match: * and maps 412 and 409 to WriteConflictError', async () => {
    for (const put of [412, 409] as const) {
      const { client, sent } = fakeClient({ head: 'missing', put });
      const d = new S3Driver(options, { client });
      assert.equal(d.features.atomicIfAbsent, true);
      await assert.rejects(d.write('k', Buffer.from('x'), { ifAbsent: true }), WriteConflictError);
      const putCmd = sent.find((s) => s.name === 'PutObjectCommand');
      assert.equal(putCmd?.input.IfNoneMatch, '*');
      assert.equal(putCmd?.input.Key, 'p/k');
    }
  });

  it('checks with HEAD first and sends nothing when the key exists', async () => {
    const { client, sent } = fakeClient({ head: 'present', put: 'ok' });
    const d = new S3Driver({ ...options, conditionalWrites: false }, { client });
    assert.equal(d.features.atomicIfAbsent, false);
    await assert.rejects(d.write('k', Buffer.from('x'), { ifAbsent: true }), WriteConflictError);
    // The first look also asks whether the bucket is there, alongside the HEAD.
    assert.deepEqual(sent.map((s) => s.name).sort(), ['HeadObjectCommand', 'ListObjectsV2Command']);
  });

  it('on a store known to honour If-None-Match, or after the caller looked, sends the PUT alone', async () => {
    const atomic = fakeClient({ head: 'present', put: 412 });
    await assert.rejects(new S3Driver(options, { client: atomic.client }).write('k', Buffer.from('x'), { ifAbsent: true }), WriteConflictError);
    assert.deepEqual(atomic.sent.map((s) => s.name), ['PutObjectCommand']);
    const looked = fakeClient({ head: 'present', put: 'ok' });
    await new S3Driver({ ...options, conditionalWrites: false }, { client: looked.client }).write('k', Buffer.from('x'), { ifAbsent: true, lookedFirst: true });
    assert.deepEqual(looked.sent.map((s) => s.name), ['PutObjectCommand']);
    assert.equal(looked.sent[0]?.input.IfNoneMatch, '*', 'still conditional');
  });

  it('sends no condition on a plain write', async () => {
    const { client, sent } = fakeClient({ head: 'missing', put: 'ok' });
    await new S3Driver(options, { client }).write('k', Buffer.from('x'));
    assert.deepEqual(sent.map((s) => s.name), ['PutObjectCommand']);
    assert.equal(sent[0]?.input.IfNoneMatch, undefined);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
