// The storage conformance suite: the contract of core/storage/driver.ts as
// node:test cases, run once per driver (fs, memory, s3) so all three behave
// the same to the code above them.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import {
  ObjectNotFoundError,
  readRange,
  WriteConflictError,
  type ObjectInfo,
  type StorageDriver,
} from '@cairn/core/storage/driver';

export interface ConformanceSetup {
  driver: StorageDriver;
  cleanup(): Promise<void>;
}

const MiB = 1024 * 1024;

/** Reads a stream to the end. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Collects a listing. */
export async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of it) out.push(o);
  return out;
}

/** A stream of `size` random bytes in 64 KiB chunks; `digest()` is their SHA-256 once it has ended. */
export function randomStream(size: number): { stream: Readable; digest(): string } {
  const hash = createHash('sha256');
  let remaining = size;
  let digest: string | undefined;
  const stream = Readable.from(
    (function* () {
      while (remaining > 0) {
        const chunk = randomBytes(Math.min(64 * 1024, remaining));
        remaining -= chunk.length;
        hash.update(chunk);
        yield chunk;
      }
      digest = hash.digest('hex');
    })(),
    { objectMode: false },
  );
  return {
    stream,
    digest() {
      if (digest === undefined) throw new Error('stream not fully read');
      return digest;
    },
  };
}

/** A stream that delivers `bytes` bytes and then fails with "body failed on purpose". */
export function failingStream(bytes: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= bytes) {
        this.destroy(new Error('body failed on purpose'));
        return;
      }
      const n = Math.min(256 * 1024, bytes - sent);
      sent += n;
      this.push(randomBytes(n));
    },
  });
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

const INVALID_KEYS = ['', '/a', 'a/', 'a//b', './a', 'a/./b', 'a/../b', '..', 'a\\b', 'a\0b'];
const INVALID_PREFIXES = ['/a', 'a//b', '../a', 'a/../b', 'a\\b/'];

/**
 * Registers one node:test suite for a driver. `setup` runs once (before) and
 * must give an empty repository; its cleanup runs after the suite.
 */
export function describeStorageConformance(name: string, setup: () => Promise<ConformanceSetup>): void {
  describe(`storage conformance: ${name}`, () => {
    let driver: StorageDriver;
    let cleanup: (() => Promise<void>) | undefined;

    before(async () => {
      const s = await setup();
      driver = s.driver;
      cleanup = s.cleanup;
    });

    after(async () => {
      await driver?.close();
      await driver?.close(); // close is safe to call twice
      await cleanup?.();
    });

    it('reports a missing key as absent everywhere', async () => {
      assert.equal(await driver.stat('missing/a'), undefined);
      await assert.rejects(driver.read('missing/a'), (err: unknown) => {
        assert.ok(err instanceof ObjectNotFoundError, `expected ObjectNotFoundError, got ${String(err)}`);
        assert.equal(err.key, 'missing/a');
        assert.equal(err.message, `object "missing/a" not found in repository "${driver.url}"`);
        return true;
      });
      await driver.remove('missing/a'); // succeeds
      assert.deepEqual(await collect(driver.list('missing/')), []);
      assert.deepEqual(await collect(driver.list('no-such-dir/deeper/x')), []);
    });

    it('writes a Buffer and reads the same bytes back', async () => {
      const started = Date.now();
      const data = randomBytes(100_003);
      await driver.write('buf/one.bin', data);
      const info = await driver.stat('buf/one.bin');
      assert.ok(info);
      assert.equal(info.key, 'buf/one.bin');
      assert.equal(info.size, data.length);
      assert.ok(info.mtime instanceof Date);
      assert.ok(Math.abs(info.mtime.getTime() - started) < 120_000, `mtime ${info.mtime.toISOString()} is not now`);
      assert.ok((await readAll(await driver.read('buf/one.bin'))).equals(data));
    });

    it('reads byte ranges: exact bytes, empty, to the end; a range past the end or a missing key is an error', async () => {
      const data = randomBytes(300_001);
      await driver.write('range/obj', data);
      for (const [off, len] of [[0, 1], [0, data.length], [12_345, 100_000], [data.length - 7, 7], [5, 0]] as const) {
        for (const read of [(k: string, o: number, l: number) => readRange(driver, k, o, l), (k: string, o: number, l: number) => readRange({ ...driver, readRange: undefined, read: driver.read.bind(driver), url: driver.url }, k, o, l)]) {
          const got = await read('range/obj', off, len);
          assert.ok(got.equals(data.subarray(off, off + len)), `bytes ${off}+${len}`);
        }
      }
      await assert.rejects(readRange(driver, 'range/obj', data.length - 10, 11), /too few for bytes/);
      await assert.rejects(readRange(driver, 'range/obj', data.length + 10, 5), /too few for bytes/);
      await assert.rejects(readRange(driver, 'range/missing', 0, 5), ObjectNotFoundError);
    });

    it('stores an empty object', async () => {
      await driver.write('buf/empty', Buffer.alloc(0));
      assert.equal((await driver.stat('buf/empty'))?.size, 0);
      assert.equal((await readAll(await driver.read('buf/empty'))).length, 0);
    });

    it('overwrites without ifAbsent, also with a shorter body', async () => {
      await driver.write('over/k', Buffer.from('a longer first version'));
      await driver.write('over/k', Buffer.from('v2'));
      assert.equal((await readAll(await driver.read('over/k'))).toString(), 'v2');
      assert.equal((await driver.stat('over/k'))?.size, 2);
    });

    it('writes a small stream of many chunks', async () => {
      const chunks = Array.from({ length: 50 }, (_, i) => Buffer.from(`chunk ${i}\n`));
      await driver.write('stream/small.txt', Readable.from(chunks));
      assert.ok((await readAll(await driver.read('stream/small.txt'))).equals(Buffer.concat(chunks)));
    });

    it('writes a stream larger than 16 MiB (multipart on S3) byte-exact', async () => {
      const size = 17 * MiB + 123; // > 3 parts of lib-storage's 5 MiB
      const body = randomStream(size);
      await driver.write('stream/large.bin', body.stream);
      assert.equal((await driver.stat('stream/large.bin'))?.size, size);
      const hash = createHash('sha256');
      let n = 0;
      for await (const chunk of await driver.read('stream/large.bin')) {
        hash.update(chunk as Buffer);
        n += (chunk as Buffer).length;
      }
      assert.equal(n, size);
      assert.equal(hash.digest('hex'), body.digest());
    });

    it('writes ifAbsent when absent, refuses when present and leaves the original', async () => {
      await driver.write('cond/k', Buffer.from('first'), { ifAbsent: true });
      await assert.rejects(driver.write('cond/k', Buffer.from('second'), { ifAbsent: true }), (err: unknown) => {
        assert.ok(err instanceof WriteConflictError, `expected WriteConflictError, got ${String(err)}`);
        assert.equal(err.key, 'cond/k');
        assert.equal(err.message, `object "cond/k" already exists in repository "${driver.url}"`);
        return true;
      });
      await assert.rejects(driver.write('cond/k', Readable.from([Buffer.from('third')]), { ifAbsent: true }), WriteConflictError);
      assert.equal((await readAll(await driver.read('cond/k'))).toString(), 'first');
      assert.deepEqual((await collect(driver.list('cond/'))).map((o) => o.key), ['cond/k']);
    });

    it('does not leave the producer of a refused stream body blocked', async () => {
      await driver.write('teardown/k', Buffer.from('present'));
      const pass = new PassThrough();
      const producing = pipeline(randomStream(8 * MiB).stream, pass);
      await assert.rejects(driver.write('teardown/k', pass, { ifAbsent: true }), WriteConflictError);
      // The body was read to the end or destroyed: either way the pipeline settles.
      const settled = await Promise.race([
        producing.then(() => 'ended', () => 'destroyed'),
        new Promise((r) => setTimeout(() => r('blocked'), 2000)),
      ]);
      assert.notEqual(settled, 'blocked');
      assert.equal((await readAll(await driver.read('teardown/k'))).toString(), 'present');
    });

    it('racing ifAbsent writers: exactly one wins when atomicIfAbsent, at least one otherwise', async () => {
      const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(`writer ${i} `.repeat(1000)));
      const results = await Promise.allSettled(bodies.map((b) => driver.write('race/k', b, { ifAbsent: true })));
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      if (driver.features.atomicIfAbsent) assert.equal(won.length, 1, `winners: ${won.join(', ')}`);
      else {
        // Check-then-write: several may "win"; the stored object is whole and one of theirs.
        assert.ok(won.length >= 1, 'someone wins');
        const stored = await readAll(await driver.read('race/k'));
        assert.ok(bodies.some((b) => b.equals(stored)), 'stored object is one whole body');
        return;
      }
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof WriteConflictError, String(r.reason));
      assert.ok((await readAll(await driver.read('race/k'))).equals(bodies[won[0]!]!));
    });

    it('lists by plain prefix in ascending key order', async () => {
      const keys = ['l/a-x', 'l/a.x', 'l/a/x', 'l/a/y/z', 'l/a0', 'l/ab', 'l/b', 'l/A'];
      for (const [i, k] of keys.entries()) await driver.write(k, Buffer.alloc(i + 1, 0x61));
      const sorted = ['l/A', 'l/a-x', 'l/a.x', 'l/a/x', 'l/a/y/z', 'l/a0', 'l/ab', 'l/b'];
      const all = await collect(driver.list('l/'));
      assert.deepEqual(all.map((o) => o.key), sorted);
      for (const o of all) assert.equal(o.size, keys.indexOf(o.key) + 1, `size of ${o.key}`);
      assert.deepEqual((await collect(driver.list('l/a'))).map((o) => o.key), sorted.slice(1, 7));
      assert.deepEqual((await collect(driver.list('l/a/'))).map((o) => o.key), ['l/a/x', 'l/a/y/z']);
      assert.deepEqual((await collect(driver.list('l/a/y'))).map((o) => o.key), ['l/a/y/z']);
      assert.deepEqual((await collect(driver.list('l/a/y/z'))).map((o) => o.key), ['l/a/y/z']);
      assert.deepEqual((await collect(driver.list('l/zz'))).map((o) => o.key), []);
      assert.deepEqual((await collect(driver.list('l'))).map((o) => o.key), sorted);
      const everything = (await collect(driver.list(''))).map((o) => o.key);
      assert.deepEqual(everything.filter((k) => k.startsWith('l/')), sorted);
      assert.deepEqual([...everything].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))), everything);
    });

    it('lists more than 1000 keys (pagination on S3)', async () => {
      const n = 1010; // s3rver stores ~300 objects/s: just past one page
      const keys = Array.from({ length: n }, (_, i) => `many/k${String(i).padStart(5, '0')}`);
      for (let i = 0; i < keys.length; i += 50) {
        await Promise.all(keys.slice(i, i + 50).map((k) => driver.write(k, Buffer.from(k))));
      }
      const listed = (await collect(driver.list('many/'))).map((o) => o.key);
      assert.equal(listed.length, n);
      assert.deepEqual(listed, keys);
    });

    it('keeps keys with spaces, +, %, = and non-ASCII intact', async () => {
      const keys = ['odd/a b', 'odd/plus+sign', 'odd/pct%41', 'odd/eq=amp&', 'odd/ünï', 'odd/.hidden'];
      for (const k of keys) await driver.write(k, Buffer.from(`body of ${k}`));
      for (const k of keys) {
        assert.equal((await readAll(await driver.read(k))).toString(), `body of ${k}`, k);
        assert.equal((await driver.stat(k))?.size, Buffer.byteLength(`body of ${k}`), k);
      }
      const expected = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      assert.deepEqual((await collect(driver.list('odd/'))).map((o) => o.key), expected);
    });

    it('leaves nothing visible when a stream body fails midway', async () => {
      await assert.rejects(driver.write('fail/small', failingStream(300 * 1024)), /body failed on purpose/);
      assert.equal(await driver.stat('fail/small'), undefined);
      await assert.rejects(driver.read('fail/small'), ObjectNotFoundError);
      // Past two 5 MiB parts: an S3 multipart upload has begun and must not complete.
      await assert.rejects(driver.write('fail/large', failingStream(12 * MiB)), /body failed on purpose/);
      assert.equal(await driver.stat('fail/large'), undefined);
      await assert.rejects(driver.write('fail/cond', failingStream(100), { ifAbsent: true }), /body failed on purpose/);
      assert.deepEqual(await collect(driver.list('fail/')), []);
      assert.deepEqual(await collect(driver.list('fail')), []);
    });

    it('keeps the old object when an overwrite fails midway', async () => {
      await driver.write('fail-over/k', Buffer.from('original'));
      await assert.rejects(driver.write('fail-over/k', failingStream(6 * MiB)), /body failed on purpose/);
      assert.equal((await readAll(await driver.read('fail-over/k'))).toString(), 'original');
      assert.deepEqual((await collect(driver.list('fail-over/'))).map((o) => o.key), ['fail-over/k']);
    });

    it('stops an aborted write and leaves nothing visible', async () => {
      const ac = new AbortController();
      let pushed = 0;
      const body = new Readable({
        read() {
          pushed++;
          if (pushed === 3) ac.abort();
          // Slow producer: the abort must not wait for the body to end.
          setTimeout(() => this.push(randomBytes(64 * 1024)), 5);
        },
      });
      await assert.rejects(driver.write('abort/k', body, { signal: ac.signal }), (err: unknown) => {
        assert.equal((err as Error).name, 'AbortError');
        return true;
      });
      assert.equal(await driver.stat('abort/k'), undefined);
      assert.deepEqual(await collect(driver.list('abort/')), []);
    });

    it('removes an object', async () => {
      await driver.write('rm/a/b', Buffer.from('x'));
      await driver.write('rm/c', Buffer.from('y'));
      await driver.remove('rm/a/b');
      assert.equal(await driver.stat('rm/a/b'), undefined);
      await assert.rejects(driver.read('rm/a/b'), ObjectNotFoundError);
      assert.deepEqual((await collect(driver.list('rm/'))).map((o) => o.key), ['rm/c']);
      await driver.remove('rm/a/b'); // twice is fine
      // The place can be written again after a remove.
      await driver.write('rm/a/b', Buffer.from('z'));
      assert.equal((await readAll(await driver.read('rm/a/b'))).toString(), 'z');
    });

    it('lets a reader stop early without leaking or blocking the driver', async () => {
      await driver.write('early/k', randomBytes(2 * MiB));
      for (let i = 0; i < 5; i++) {
        const s = await driver.read('early/k');
        for await (const _chunk of s) break; // the loop's exit destroys the stream
      }
      const s = await driver.read('early/k');
      s.destroy();
      assert.equal((await readAll(await driver.read('early/k'))).length, 2 * MiB);
    });

    it('rejects invalid keys and prefixes', async () => {
      for (const key of INVALID_KEYS) {
        const re = /invalid storage key/;
        await assert.rejects(async () => driver.stat(key), re, `stat ${JSON.stringify(key)}`);
        await assert.rejects(async () => driver.read(key), re, `read ${JSON.stringify(key)}`);
        await assert.rejects(async () => driver.write(key, Buffer.from('x')), re, `write ${JSON.stringify(key)}`);
        await assert.rejects(async () => driver.remove(key), re, `remove ${JSON.stringify(key)}`);
      }
      for (const prefix of INVALID_PREFIXES) {
        await assert.rejects(async () => collect(driver.list(prefix)), /invalid storage prefix/, `list ${JSON.stringify(prefix)}`);
      }
      // Nothing got written by the rejected calls.
      const all = (await collect(driver.list(''))).map((o) => o.key);
      assert.ok(!all.some((k) => k === 'x' || k.startsWith('a')), all.join(', '));
    });

    it('hashes what it read, not what it was told (byte-exact random round trips)', async () => {
      for (const size of [1, 1023, 64 * 1024, 64 * 1024 + 1, 5 * MiB, 5 * MiB + 1]) {
        const data = randomBytes(size);
        await driver.write(`exact/${size}`, Readable.from([data.subarray(0, size >> 1), data.subarray(size >> 1)]));
        assert.equal(sha256(await readAll(await driver.read(`exact/${size}`))), sha256(data), `size ${size}`);
      }
    });
  });
}
