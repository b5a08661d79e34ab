import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { encodedExtension, encryptionKeyFromBytes, parseCompress, type EncodeSpec } from '../codec/index.js';
import { rejectsWith, testData } from '../codec/test-helpers.js';
import { MemoryDriver } from '../storage/memory.js';
import { createVerifyStage, dumpReadStages, objectExtension, readDumpObject, writeDumpObject, writeDumpObjectMany } from './objects.js';
import type { DumpObject } from './manifest.js';

const signal = new AbortController().signal;

async function storedBytes(d: MemoryDriver, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await d.read(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Feeds `data` in `chunk`-sized pieces through the stage; what came out before it ended or failed. */
async function through(stage: ReturnType<typeof createVerifyStage>, data: Buffer, chunk: number): Promise<{ out: Buffer; err?: unknown }> {
  const parts: Buffer[] = [];
  const pieces: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunk) pieces.push(data.subarray(i, i + chunk));
  try {
    await pipeline([Readable.from(pieces), stage, new Writable({ write(c: Buffer, _e, cb) { parts.push(c); cb(); } })]);
    return { out: Buffer.concat(parts) };
  } catch (err) {
    return { out: Buffer.concat(parts), err };
  }
}

describe('dump objects', () => {
  const specs: [string, EncodeSpec][] = [
    ['zstd', { compress: parseCompress('zstd:3') }],
    ['gzip + encrypted', { compress: parseCompress('gzip:1'), key: encryptionKeyFromBytes(Buffer.alloc(32, 7)) }],
    ['none', { compress: parseCompress('none') }],
  ];
  for (const [name, spec] of specs) {
    it(`writes and reads back an object (${name})`, async () => {
      const driver = new MemoryDriver();
      const data = testData(3 * 1024 * 1024 + 17);
      const key = `main/dumps/app/20261121-020000L/dump.pgdump${encodedExtension(spec)}`;
      const w = await writeDumpObject(driver, key, Readable.from([data.subarray(0, 1000), data.subarray(1000)]), spec, signal);
      assert.equal(w.size, data.length);
      assert.equal(w.storedSize, (await driver.stat(key))!.size);
      const obj: DumpObject = { name: 'dump.pgdump', key, ...w };
      assert.equal(objectExtension(obj), encodedExtension(spec));
      const parts: Buffer[] = [];
      await pipeline([await readDumpObject(driver, obj, signal), ...dumpReadStages(obj, spec.key, 'test object'), new Writable({ write(c: Buffer, _e, cb) { parts.push(c); cb(); } })]);
      assert.ok(Buffer.concat(parts).equals(data));
    });
  }

  it('stores one zstd frame however the source is chunked (small pipe reads included)', async () => {
    const driver = new MemoryDriver();
    const spec: EncodeSpec = { compress: parseCompress('zstd:3') };
    // Patterns that made Node's zstd stream append a second, empty frame.
    for (const sizes of [[1000, 1000], [1000, 1 << 20], [65535, 65535], [500000, 7, 7], Array.from({ length: 200 }, () => 4096)]) {
      const data = testData(sizes.reduce((a, b) => a + b, 0));
      const pieces: Buffer[] = [];
      let at = 0;
      for (const n of sizes) pieces.push(data.subarray(at, (at += n)));
      const key = `k/${sizes.length}-${sizes[0]}/dump.pgdump.zst`;
      const w = await writeDumpObject(driver, key, Readable.from(pieces), spec, signal);
      const obj: DumpObject = { name: 'dump.pgdump', key, ...w };
      const parts: Buffer[] = [];
      await pipeline([await readDumpObject(driver, obj, signal), ...dumpReadStages(obj, undefined, key), new Writable({ write(c: Buffer, _e, cb) { parts.push(c); cb(); } })]);
      assert.ok(Buffer.concat(parts).equals(data), sizes.join('+'));
    }
  });

  it('leaves nothing under the key when the source fails', async () => {
    const driver = new MemoryDriver();
    const source = new Readable({ read() { this.destroy(new Error('pg_dump pipe broke')); } });
    await assert.rejects(writeDumpObject(driver, 'k/dump.pgdump', source, specs[0]![1], signal), /pg_dump pipe broke/);
    assert.equal(await driver.stat('k/dump.pgdump'), undefined);
  });

  it('into several repositories: compressed once, each encrypted under its own key, each reads back; one that fails is only its own loss', async () => {
    const a = new MemoryDriver('a');
    const b = new MemoryDriver('b');
    const broken = new MemoryDriver('broken');
    // As the driver contract says: a failed write destroys its stream body.
    broken.write = async (_key, body) => {
      if (body instanceof Readable) body.destroy(new Error('disk full'));
      throw new Error('disk full');
    };
    const keyA = encryptionKeyFromBytes(Buffer.alloc(32, 1));
    const keyB = encryptionKeyFromBytes(Buffer.alloc(32, 2));
    const compress = parseCompress('zstd:1');
    const data = testData(5 * 1024 * 1024 + 3);
    const key = 'main/dumps/app/20261121-020000L/dump.pgdump.zst.enc';
    const targets = [{ driver: a, spec: { compress, key: keyA } }, { driver: broken, spec: { compress, key: keyA } }, { driver: b, spec: { compress, key: keyB } }].map((t) => ({ ...t, signal }));
    const out = await writeDumpObjectMany(key, Readable.from([data.subarray(0, 7), data.subarray(7)]), targets, signal);
    assert.equal(out[1]!.ok, false);
    for (const [i, driver, k] of [[0, a, keyA], [2, b, keyB]] as const) {
      const r = out[i]!;
      assert.ok(r.ok);
      assert.equal(r.value.size, data.length);
      assert.equal(r.value.storedSize, (await driver.stat(key))!.size);
      const obj: DumpObject = { name: 'dump.pgdump', key, ...r.value };
      const parts: Buffer[] = [];
      await pipeline([await readDumpObject(driver, obj, signal), ...dumpReadStages(obj, k, 'test object'), new Writable({ write(c: Buffer, _e, cb) { parts.push(c); cb(); } })]);
      assert.ok(Buffer.concat(parts).equals(data));
      // Under the other repository's key it does not decode.
      const other = k === keyA ? keyB : keyA;
      await assert.rejects(pipeline([await readDumpObject(driver, obj, signal), ...dumpReadStages(obj, other, 'test object'), new Writable({ write(_c, _e, cb) { cb(); } })]));
    }
    // The two encryptions of one compressed stream differ (own keys, own nonces).
    assert.ok(!(await storedBytes(a, key)).equals(await storedBytes(b, key)));
  });

  it('into several repositories, a failing source fails every one and leaves nothing', async () => {
    const a = new MemoryDriver('a');
    const b = new MemoryDriver('b');
    const source = new Readable({ read() { this.destroy(new Error('pg_dump pipe broke')); } });
    const targets = [a, b].map((driver) => ({ driver, spec: specs[0]![1], signal }));
    await assert.rejects(writeDumpObjectMany('k/dump.pgdump.zst', source, targets, signal), /pg_dump pipe broke/);
    assert.equal(await a.stat('k/dump.pgdump.zst'), undefined);
    assert.equal(await b.stat('k/dump.pgdump.zst'), undefined);
  });

  it('passes every byte in order when the checksum matches, holding back only until the end', async () => {
    const data = testData(5 * 1024 * 1024);
    const { sha256Hex } = await import('../codec/index.js');
    const obj: DumpObject = { name: 'x', key: 'x', size: data.length, sha256: sha256Hex(data), storedSize: 0 };
    const r = await through(createVerifyStage(obj, 'x', 1024 * 1024), data, 64 * 1024);
    assert.equal(r.err, undefined);
    assert.ok(r.out.equals(data));
  });

  it('never lets the last held-back bytes through when the checksum does not match', async () => {
    const data = testData(5 * 1024 * 1024);
    const { sha256Hex } = await import('../codec/index.js');
    const altered = Buffer.from(data);
    altered[100] = altered[100]! ^ 1; // early in the stream, long before the end
    const obj: DumpObject = { name: 'x', key: 'x', size: data.length, sha256: sha256Hex(data), storedSize: 0 };
    const hold = 1024 * 1024;
    const r = await through(createVerifyStage(obj, 'dump "app/ID" object "x"', hold), altered, 64 * 1024);
    assert.ok(r.err, 'the stage fails');
    await rejectsWith(Promise.reject(r.err), 'CHECKSUM_MISMATCH', /dump "app\/ID" object "x" fails its checksum/);
    assert.ok(r.out.length <= data.length - hold, `at most all but the last ${hold} bytes passed (${r.out.length} of ${data.length})`);
    assert.ok(r.out.equals(altered.subarray(0, r.out.length)));
    // A size mismatch alone fails too (a truncated object with a matching prefix).
    const short = await through(createVerifyStage(obj, 'x', hold), data.subarray(0, data.length - 1), 64 * 1024);
    assert.ok(short.err);
  });
});
