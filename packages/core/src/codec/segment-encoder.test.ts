import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import zlib from 'node:zlib';
import { createSegmentEncoder, SEGMENT_HEAD_BYTES } from './segment-encoder.js';
import { nativeZstd } from './zstd-native.js';

const MiB = 1024 * 1024;
const entry = new URL('./segment-encoder-thread.js', import.meta.url);
const dirP = mkdtemp(join(tmpdir(), 'cairn-segenc-'));
after(async () => rm(await dirP, { recursive: true, force: true }));

/**
 * native/map-file.c built into the temp dir as scripts/build-native.mjs
 * builds it, or why it cannot be here (no C compiler, no Node headers).
 */
const mapperP = (async (): Promise<string | { skip: string }> => {
  const include = join(dirname(dirname(realpathSync(process.execPath))), 'include', 'node');
  if (!existsSync(join(include, 'node_api.h'))) return { skip: `no Node headers in ${include}` };
  const out = join(await dirP, 'map-file.node');
  const src = fileURLToPath(new URL('../../native/map-file.c', import.meta.url));
  const r = spawnSync(process.env.CC || 'cc', ['-std=c11', '-O2', '-shared', '-fPIC', `-I${include}`, '-o', out, src], { encoding: 'utf8' });
  return r.status === 0 ? out : { skip: `cannot build map-file.node: ${r.error?.message ?? r.stderr}` };
})();

/** Each test below runs with the threads reading files, then mapping them. */
const HOW = ['read', 'mapped'] as const;
async function encoderFor(how: (typeof HOW)[number], threads: number, t: { skip(msg: string): void }) {
  if (how === 'read') return createSegmentEncoder(entry, threads, 1);
  const m = await mapperP;
  if (typeof m !== 'string') {
    t.skip(m.skip);
    return undefined;
  }
  return createSegmentEncoder(entry, threads, 1, m);
}

/** Part random, part repeated: compressible like WAL, and no two files alike. */
const content = (size: number) => {
  const b = Buffer.alloc(size, 0x5a);
  randomBytes(Math.min(size, 256 * 1024)).copy(b, 0);
  if (size > MiB) randomBytes(MiB).copy(b, size - MiB);
  return b;
};

for (const how of HOW) test(`each file comes back hashed, with its head and one zstd frame that records its size (${how})`, async (t) => {
  if (!nativeZstd()) return t.skip('zstd-napi is not installed');
  const enc = await encoderFor(how, 2, t);
  if (!enc) return;
  try {
    const dir = await dirP;
    const files = await Promise.all([0, 1, 8191, SEGMENT_HEAD_BYTES + 1, 16 * MiB, 16 * MiB, 3 * MiB, 16 * MiB, 16 * MiB + 8192, 3 * MiB, 32 * MiB].map(async (size, i) => {
      const data = content(size);
      const path = join(dir, `f${i}`);
      await writeFile(path, data);
      return { path, data };
    }));
    // All at once: more files than threads queue, and none gets another's bytes;
    // those over 16 MiB are streamed, the others compressed whole, by the same threads.
    const got = await Promise.all(files.map(async (f) => {
      const e = await enc.encode(f.path, f.data.length);
      const frame = Buffer.from(e.frame); // the lent buffer goes back below
      const r = { sha256: e.sha256, head: e.head, frame };
      e.release();
      return r;
    }));
    for (const [i, f] of files.entries()) {
      const g = got[i]!;
      assert.equal(g.sha256, createHash('sha256').update(f.data).digest('hex'), `file ${i}: hash`);
      assert.ok(g.head.equals(f.data.subarray(0, SEGMENT_HEAD_BYTES)), `file ${i}: head`);
      assert.ok(zlib.zstdDecompressSync(g.frame).equals(f.data), `file ${i}: the frame decodes to the file`);
      // Frame header descriptor (RFC 8878 3.1.1.1.1): content size and XXH64, as zstdParams asks.
      assert.equal(g.frame.readUInt32LE(0), 0xfd2fb528, `file ${i}: a zstd frame`);
      const d = g.frame[4]!;
      assert.ok((d & 0xc0) !== 0 || (d & 0x20) !== 0, `file ${i}: content size recorded`);
      assert.ok((d & 0x04) !== 0, `file ${i}: XXH64 flag`);
    }
  } finally {
    await enc.close();
  }
});

test('output buffers are lent and reused, not allocated per file', async (t) => {
  const z = nativeZstd();
  if (!z) return t.skip('zstd-napi is not installed');
  const enc = createSegmentEncoder(entry, 2, 1)!;
  try {
    const path = join(await dirP, 'reuse');
    await writeFile(path, content(4 * MiB));
    for (let i = 0; i < 6; i++) (await enc.encode(path, 4 * MiB)).release();
    assert.equal(enc.heldBytes, z.bound(4 * MiB), 'one buffer served six files one after the other');
    const a = await enc.encode(path, 4 * MiB);
    const b = await enc.encode(path, 4 * MiB);
    assert.equal(enc.heldBytes, 2 * z.bound(4 * MiB), 'two lent at once are two buffers');
    assert.ok(a.frame.equals(b.frame));
    a.release();
    a.release(); // a second release is a no-op, not a buffer handed out twice
    b.release();
    await enc.encode(path, 4 * MiB).then((e) => e.release());
    assert.equal(enc.heldBytes, 2 * z.bound(4 * MiB));
  } finally {
    await enc.close();
  }
});

for (const how of HOW) test(`a missing or shrunken file rejects with its code, and the threads go on (${how})`, async (t) => {
  if (!nativeZstd()) return t.skip('zstd-napi is not installed');
  const enc = await encoderFor(how, 1, t);
  if (!enc) return;
  try {
    const dir = await dirP;
    await assert.rejects(enc.encode(join(dir, 'nope'), 100), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    const short = join(dir, 'short');
    const data = content(1000);
    await writeFile(short, data);
    await assert.rejects(enc.encode(short, 2000), (e: NodeJS.ErrnoException) => e.code === 'ESHRUNK' && /1000 of 2000/.test(e.message));
    const e = await enc.encode(short, 1000);
    assert.ok(zlib.zstdDecompressSync(e.frame).equals(data));
    e.release();
  } finally {
    await enc.close();
  }
});

test('map-file: the mapping reads as the file, and unmap empties every view of it', async (t) => {
  const m = await mapperP;
  if (typeof m !== 'string') return t.skip(m.skip);
  const addon = createRequire(import.meta.url)(m) as { map(p: string, n: number): ArrayBuffer; unmap(b: ArrayBuffer): void };
  const path = join(await dirP, 'mapped');
  const data = content(3 * MiB + 5);
  await writeFile(path, data);
  const ab = addon.map(path, data.length - 5);
  const view = Buffer.from(ab);
  assert.ok(view.equals(data.subarray(0, data.length - 5)));
  addon.unmap(ab);
  assert.equal(ab.byteLength, 0);
  assert.equal(view.length, 0, 'a view made before reads as empty, never the unmapped pages');
  addon.unmap(ab); // a second unmap does nothing
  assert.equal(addon.map(path, 0).byteLength, 0);
  const dir = await dirP;
  assert.throws(() => addon.map(join(dir, 'nope'), 1), { code: 'ENOENT' });
  assert.throws(() => addon.map(dir, 1), { code: 'EINVAL' });
  assert.throws(() => addon.map(path, data.length + 1), { code: 'ESHRUNK' });
});
