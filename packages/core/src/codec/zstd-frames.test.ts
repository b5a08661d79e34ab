// The frame walker in both modes: what each accepts and refuses, however the
// bytes are chunked.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { rejectsWith, testData } from './test-helpers.js';
import { randomBytes } from 'node:crypto';
import { createFramePool, createZstdFrameCheck, createZstdFrameSplitter, createZstdFrameWalker } from './zstd-frames.js';

const frame = (data: Buffer) => zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_checksumFlag]: 1 } });
const skippable = (n: number) => Buffer.concat([Buffer.from([0x5a, 0x2a, 0x4d, 0x18]), Buffer.from(Uint32Array.of(n).buffer), Buffer.alloc(n, 7)]);

/** Runs `bytes` through `stage` in chunks of `size`; returns what came out, one entry per push. */
async function run(stage: Transform, bytes: Buffer, size: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  const chunks = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
  await pipeline([Readable.from(chunks), stage, new Writable({ objectMode: true, write(c: Buffer, _e, cb) { out.push(c); cb(); } })]);
  return out;
}

test('split: one Buffer per frame, skippable frames dropped, in chunks of any size', async () => {
  const a = frame(testData(300_000, 'a'));
  const b = frame(testData(1000, 'b'));
  const e = frame(Buffer.alloc(0));
  const bytes = Buffer.concat([a, skippable(10), b, skippable(0), e]);
  for (const size of [1, 3, 7, 4096, bytes.length]) {
    const frames = await run(createZstdFrameSplitter('"f"'), bytes, size);
    assert.deepEqual(frames.map((f) => f.length), [a.length, b.length, e.length], `chunks of ${size}`);
    assert.ok(Buffer.concat(frames).equals(Buffer.concat([a, b, e])));
  }
  assert.deepEqual(await run(createZstdFrameSplitter('"f"'), Buffer.alloc(0), 1), []);
});

test('split: a frame handed back is filled again for a later one; one not handed back is never touched', async () => {
  // The biggest frame first, so the later ones fit in its buffer.
  const pairs = [testData(200_000, 'a'), testData(150_000, 'b'), testData(180_000, 'c'), testData(120_000, 'd')]
    .map((d) => ({ d, f: zlib.zstdCompressSync(d, { params: { [zlib.constants.ZSTD_c_compressionLevel]: -5 } }) }))
    .sort((x, y) => y.f.length - x.f.length);
  const data = pairs.map((p) => p.d);
  const frames = pairs.map((p) => p.f);
  const bytes = Buffer.concat(frames);
  const splitter = createZstdFrameSplitter('"f"');
  const seen: { frame: Buffer; copy: Buffer }[] = [];
  const chunks = [];
  for (let i = 0; i < bytes.length; i += 4096) chunks.push(bytes.subarray(i, i + 4096));
  await pipeline([Readable.from(chunks), splitter, new Writable({
    objectMode: true,
    write(f: Buffer, _e, cb) {
      seen.push({ frame: f, copy: Buffer.from(f) });
      // The first frame is kept; every later one is handed back once read.
      if (seen.length > 1) splitter.release(f);
      cb();
    },
  })]);
  assert.equal(seen.length, 4);
  seen.forEach((s, i) => assert.ok(s.copy.equals(frames[i]!), `frame ${i}`));
  // Frame 1 was handed back, so frames 2 and 3 (no bigger) were assembled in its buffer.
  assert.ok(seen[2]!.frame.buffer === seen[1]!.frame.buffer, 'frame 2 in frame 1\'s buffer');
  assert.ok(seen[3]!.frame.buffer === seen[1]!.frame.buffer, 'frame 3 in frame 1\'s buffer');
  // The kept frame still holds its own bytes.
  assert.ok(seen[0]!.frame.buffer !== seen[1]!.frame.buffer, 'the kept frame has a buffer of its own');
  assert.ok(seen[0]!.frame.equals(frames[0]!));
  assert.ok(zlib.zstdDecompressSync(seen[0]!.frame).equals(data[0]!));
  // Handing back a frame that is a view of an input chunk (it did not span chunks) changes nothing.
  const whole = createZstdFrameSplitter('"f"');
  const out = await run(whole, frames[0]!, frames[0]!.length);
  whole.release(out[0]!);
  assert.ok(out[0]!.equals(frames[0]!));
});

test('walk: no chunk is held once feed returns, so the next bytes may be read into the same memory; buffers grow and pass from walker to walker', () => {
  const a = frame(testData(300_000, 'a'));
  const big = frame(randomBytes(3 * 1024 * 1024)); // does not compress: a 3 MiB frame, bigger than a first buffer
  const b = frame(testData(1000, 'b'));
  const bytes = Buffer.concat([a, skippable(70_000), big, b, skippable(3)]);
  const pool = createFramePool();
  for (const size of [1000, 65536, 1024 * 1024]) {
    const mem = Buffer.alloc(size);
    const got: Buffer[] = [];
    const walker = createZstdFrameWalker('"f"', (f) => {
      got.push(Buffer.from(f));
      walker.release(f);
    }, { pool });
    for (let i = 0; i < bytes.length; i += size) {
      const n = bytes.copy(mem, 0, i, i + size);
      walker.feed(mem.subarray(0, n));
      mem.fill(0xee); // the next read would land here
    }
    walker.end();
    assert.deepEqual(got.map((f) => f.length), [a.length, big.length, b.length], `reads of ${size}`);
    assert.ok(Buffer.concat(got).equals(Buffer.concat([a, big, b])), `reads of ${size}`);
  }
  // The buffers made for spanning frames went back to the pool, the biggest 4 MiB (grown from 1 MiB).
  assert.ok(pool.spare.length >= 1 && pool.spare.length <= 4);
  assert.equal(Math.max(...pool.spare.map((s) => s.length)), 4 * 1024 * 1024);
  // A hint sizes the first buffer: no growing.
  const hinted = createFramePool();
  const w = createZstdFrameWalker('"f"', (f) => w.release(f), { pool: hinted, frameHint: 5 * 1024 * 1024 });
  for (let i = 0; i < big.length; i += 65536) w.feed(big.subarray(i, i + 65536));
  w.end();
  assert.deepEqual(hinted.spare.map((s) => s.length), [5 * 1024 * 1024]);
  // Ends inside a frame: refused, however the walk was fed.
  const cut = createZstdFrameWalker('"f"', () => {});
  cut.feed(a.subarray(0, 1000));
  assert.throws(() => cut.end(), /truncated/);
});

test('split: refuses truncation, garbage, a reserved block type and a frame over 64 MiB', async () => {
  const a = frame(testData(300_000, 'a'));
  const split = (bytes: Buffer, re: RegExp) => rejectsWith(run(createZstdFrameSplitter('"f"'), bytes, 65536), 'FORMAT_INVALID', re);
  await split(a.subarray(0, a.length - 1), /^corrupt zstd data in "f": truncated/);
  await split(Buffer.concat([a, Buffer.from('xyz')]), /truncated/);
  await split(Buffer.concat([a, Buffer.from('not zstd')]), /bad magic number/);
  await split(skippable(5).subarray(0, 9), /truncated/);
  // A raw block header of type 3 (reserved) right after a minimal frame header.
  await split(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x07, 0x00, 0x00]), /reserved block type/);
  // Blocks are at most 128 KiB.
  await split(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x20]), /block larger than 128 KiB/);
  // 600 raw blocks of 128 KiB: 75 MiB in one frame.
  const block = Buffer.concat([Buffer.from([0x00, 0x00, 0x10]), Buffer.alloc(128 * 1024)]);
  await split(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00]), ...Array.from({ length: 600 }, () => block)]), /a frame larger than 64 MiB/);
});

test('check: passes exactly one frame through unchanged, plus empty frames after it', async () => {
  const a = frame(testData(300_000, 'a'));
  const e = frame(Buffer.alloc(0));
  for (const size of [1, 5, 65536]) {
    assert.ok(Buffer.concat(await run(createZstdFrameCheck('f'), Buffer.concat([a, e, e]), size)).equals(Buffer.concat([a, e, e])));
    await rejectsWith(run(createZstdFrameCheck('f'), Buffer.concat([a, e, Buffer.from([0x28, 0xb5])]), size), 'FORMAT_INVALID', /^corrupt zstd data in "f": unexpected data after the end of the zstd frame$/);
    await rejectsWith(run(createZstdFrameCheck('f'), Buffer.concat([a, skippable(0)]), size), 'FORMAT_INVALID', /unexpected data after the end/);
  }
  await rejectsWith(run(createZstdFrameCheck('f'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x20]), 64), 'FORMAT_INVALID', /block larger than 128 KiB/);
});
