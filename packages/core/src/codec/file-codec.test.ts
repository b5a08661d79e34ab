import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { encryptionKeyFromBytes, parseCompress, sha256Hex, type EncodeSpec } from './index.js';
import { createSlots, decodeFileInto, decodeFileStages, decodeWhole, encodeFile, encodeFileMany, encodeWholeMany, rechunk, PIECE_SIZE } from './file-codec.js';

async function* chunks(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function encode(data: Buffer, spec: EncodeSpec): Promise<{ stored: Buffer; sha256: string; size: number; storedSize: number }> {
  let stored = Buffer.alloc(0);
  const r = await encodeFile(rechunk(chunks(data, 100_000)), spec, createSlots(4), async (body) => {
    stored = await buffer(body);
  });
  return { stored, ...r };
}

async function decode(stored: Buffer, ext: string, key: EncodeSpec['key'], sha256: string, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  const sink = new Writable({ write(c: Buffer, _e, cb) { parts.push(c); cb(); } });
  await decodeFileInto(Readable.from([stored]), decodeFileStages(`x${ext}`, key, 'x'), sink, { sha256, size, label: '"x"' });
  return Buffer.concat(parts);
}

const compressible = Buffer.alloc(PIECE_SIZE * 2 + 12345, 'pgbench filler ');
randomBytes(5000).copy(compressible, 1_000_000);

for (const [name, ext] of [['zstd:1', '.zst'], ['gzip:1', '.gz'], ['none', '']] as const) {
  test(`a file of several pieces round-trips (${name})`, async () => {
    const spec = { compress: parseCompress(name) };
    const r = await encode(compressible, spec);
    assert.equal(r.size, compressible.length);
    assert.equal(r.sha256, sha256Hex(compressible));
    assert.equal(r.storedSize, r.stored.length);
    assert.ok((await decode(r.stored, ext, undefined, r.sha256, r.size)).equals(compressible));
    if (name !== 'none') {
      const tool = name.startsWith('zstd') ? ['zstd', '-d', '-c', '-q'] : ['gzip', '-d', '-c'];
      const z = spawnSync(tool[0]!, tool.slice(1), { input: r.stored, maxBuffer: 64 << 20 });
      assert.equal(z.status, 0, z.stderr.toString());
      assert.ok(z.stdout.equals(compressible), `${tool[0]} -d gives the file back`);
    }
  });
}

test('an empty file is one decodable frame', async () => {
  const r = await encode(Buffer.alloc(0), { compress: parseCompress('zstd') });
  assert.ok(r.stored.length > 0);
  assert.equal((await decode(r.stored, '.zst', undefined, r.sha256, 0)).length, 0);
  const z = spawnSync('zstd', ['-d', '-c', '-q'], { input: r.stored });
  assert.equal(z.status, 0);
});

test('encrypted pieces round-trip; tampering is caught', async () => {
  const key = encryptionKeyFromBytes(randomBytes(32));
  const spec = { compress: parseCompress('zstd:1'), key };
  const r = await encode(compressible, spec);
  assert.ok((await decode(r.stored, '.zst.enc', key, r.sha256, r.size)).equals(compressible));
  const bad = Buffer.from(r.stored);
  bad[bad.length >> 1]! ^= 1;
  await assert.rejects(decode(bad, '.zst.enc', key, r.sha256, r.size), { code: 'DECRYPT_FAILED' });
});

test('a corrupted or truncated zstd object fails, never returns data', async () => {
  const r = await encode(compressible, { compress: parseCompress('zstd:1') });
  const bad = Buffer.from(r.stored);
  bad[bad.length - 10]! ^= 0xff;
  await assert.rejects(decode(bad, '.zst', undefined, r.sha256, r.size), (e: Error & { code?: string }) => e.code === 'FORMAT_INVALID' || e.code === 'CHECKSUM_MISMATCH');
  await assert.rejects(decode(r.stored.subarray(0, r.stored.length - 7), '.zst', undefined, r.sha256, r.size), { code: 'FORMAT_INVALID' });
  await assert.rejects(decode(r.stored, '.zst', undefined, '0'.repeat(64), r.size), { code: 'CHECKSUM_MISMATCH' });
});

test('a failing source fails the encode and frees its slots', async () => {
  const slots = createSlots(2);
  async function* broken(): AsyncGenerator<Buffer> {
    yield Buffer.alloc(10, 1);
    throw new Error('disk went away');
  }
  await assert.rejects(encodeFile(broken(), { compress: parseCompress('zstd') }, slots, async (b) => { await buffer(b); }), /disk went away/);
  await slots.acquire();
  await slots.acquire();
});

test('small files: encodeWhole stores what decodeWhole (and zstd -d) read back; damage is caught', async () => {
  const { encodeWhole, decodeWhole } = await import('./file-codec.js');
  const data = Buffer.from('PG_VERSION 15\n'.repeat(500));
  const key = encryptionKeyFromBytes(randomBytes(32));
  for (const [spec, ext] of [[{ compress: parseCompress('zstd:3') }, '.zst'], [{ compress: parseCompress('gzip') }, '.gz'], [{ compress: parseCompress('none') }, ''], [{ compress: parseCompress('zstd:1'), key }, '.zst.enc']] as const) {
    const e = await encodeWhole(data, spec);
    assert.equal(e.sha256, sha256Hex(data));
    const back = await decodeWhole(e.stored, `f${ext}`, 'key' in spec ? key : undefined, { sha256: e.sha256, size: e.size, label: '"f"' });
    assert.ok(back.equals(data), ext);
    // The streaming reader reads it too (one code path for restore).
    assert.ok((await decode(e.stored, ext, 'key' in spec ? key : undefined, e.sha256, e.size)).equals(data));
    if (ext !== '') {
      const bad = Buffer.from(e.stored);
      bad[bad.length - 6]! ^= 0x55;
      await assert.rejects(decodeWhole(bad, `f${ext}`, 'key' in spec ? key : undefined, { sha256: e.sha256, size: e.size, label: '"f"' }), (err: Error & { code?: string }) => ['FORMAT_INVALID', 'CHECKSUM_MISMATCH', 'DECRYPT_FAILED'].includes(err.code ?? ''));
    }
  }
  const e = await encodeWhole(data, { compress: parseCompress('zstd:1') });
  const z = spawnSync('zstd', ['-d', '-c', '-q'], { input: e.stored });
  assert.ok(z.stdout.equals(data));
});

test('encodeFileMany: one read, each sink under its own key; a failing sink drops out, the others finish', async () => {
  const keys = [encryptionKeyFromBytes(randomBytes(32)), encryptionKeyFromBytes(randomBytes(32)), encryptionKeyFromBytes(randomBytes(32))];
  const specs = keys.map((key) => ({ compress: parseCompress('zstd:1'), key }));
  let reads = 0;
  async function* once(): AsyncGenerator<Buffer> {
    reads++;
    yield* rechunk(chunks(compressible, 100_000));
  }
  const stored: Buffer[] = [Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0)];
  const r = await encodeFileMany(once(), specs, createSlots(4), [
    async (body) => {
      stored[0] = await buffer(body);
    },
    async (body) => {
      let n = 0;
      for await (const c of body) if ((n += (c as Buffer).length) > 1000) throw new Error('repository down');
    },
    async (body) => {
      stored[2] = await buffer(body);
    },
  ]);
  assert.equal(reads, 1);
  assert.equal(r.sha256, sha256Hex(compressible));
  assert.equal(r.stored[1]!.ok, false);
  for (const i of [0, 2]) {
    const o = r.stored[i]!;
    assert.ok(o.ok);
    assert.equal(o.value, stored[i]!.length);
    assert.ok((await decode(stored[i]!, '.zst.enc', keys[i], r.sha256, r.size)).equals(compressible), `sink ${i} decodes under its own key`);
  }
  assert.ok(!stored[0]!.equals(stored[2]!), 'different keys, different bytes');
  await assert.rejects(decode(stored[0]!, '.zst.enc', keys[2], r.sha256, r.size), 'not under another key');
});

test('encodeWholeMany: compressed once, encrypted per key', async () => {
  const buf = Buffer.from('a small file of a cluster '.repeat(100));
  const keys = [encryptionKeyFromBytes(randomBytes(32)), undefined];
  const e = await encodeWholeMany(buf, keys.map((key) => ({ compress: parseCompress('zstd:1'), ...(key ? { key } : {}) })));
  assert.equal(e.stored.length, 2);
  assert.ok((await decodeWhole(e.stored[0]!, 'x.zst.enc', keys[0], { sha256: e.sha256, size: e.size, label: '"x"' })).equals(buf));
  assert.ok((await decodeWhole(e.stored[1]!, 'x.zst', undefined, { sha256: e.sha256, size: e.size, label: '"x"' })).equals(buf));
});

test('a write that fails on a file of many pieces rejects, stops reading and frees its slots', async () => {
  let read = 0;
  async function* many(): AsyncGenerator<Buffer> {
    for (let i = 0; i < 20; i++) {
      read++;
      yield Buffer.alloc(PIECE_SIZE, i);
    }
  }
  const slots = createSlots(2);
  const failing = async (body: Readable) => {
    for await (const _ of body) throw new Error('write failed');
  };
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('hung')), 10_000).unref());
  await assert.rejects(Promise.race([encodeFile(many(), { compress: parseCompress('zstd:1') }, slots, failing), timeout]), /write failed/);
  assert.ok(read < 20, `stopped reading (${read} of 20 pieces read)`);
  // Every slot is free again: two can be taken at once.
  await Promise.race([Promise.all([slots.acquire(), slots.acquire()]), timeout]);
});
