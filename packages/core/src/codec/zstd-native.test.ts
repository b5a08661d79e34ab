import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { nativeZstd } from './zstd-native.js';

const MiB = 1024 * 1024;

test('zstd-napi is there where it could be built (without it, restores use node:zlib)', () => {
  // npm builds it with node-gyp when it installs it; the bootstrap installs
  // the compiler for that. With the compiler here and no addon, the build
  // failed and restores are three times slower than they should be.
  const canBuild = spawnSync('sh', ['-c', 'command -v g++ && command -v make && command -v python3'], { stdio: 'ignore' }).status === 0;
  if (canBuild) assert.ok(nativeZstd(), 'g++, make and python3 are here but zstd-napi did not load: run the bootstrap (npm install) again');
});

test('decodeFrameInto decodes node:zlib frames (which do not record their size) into the buffer given', (t) => {
  const z = nativeZstd();
  if (!z) return t.skip('zstd-napi is not installed');
  const plain = Buffer.concat([randomBytes(MiB), Buffer.alloc(3 * MiB, 7)]);
  const frame = zlib.zstdCompressSync(plain, { params: { [zlib.constants.ZSTD_c_checksumFlag]: 1 } });
  const into = Buffer.alloc(4 * MiB);
  const n = z.decodeFrameInto(frame, into);
  assert.equal(n, plain.length);
  assert.ok(into.subarray(0, n).equals(plain));
  // An empty frame (an empty file) is 0 bytes.
  assert.equal(z.decodeFrameInto(zlib.zstdCompressSync(Buffer.alloc(0)), into), 0);
});

test('decodeFrameInto leaves to node:zlib what does not fit and what is damaged', (t) => {
  const z = nativeZstd();
  if (!z) return t.skip('zstd-napi is not installed');
  const plain = randomBytes(2 * MiB);
  const frame = zlib.zstdCompressSync(plain, { params: { [zlib.constants.ZSTD_c_checksumFlag]: 1 } });
  assert.equal(z.decodeFrameInto(frame, Buffer.alloc(MiB)), undefined, 'too small a buffer');
  const sized = zlib.zstdCompressSync(plain, { params: { [zlib.constants.ZSTD_c_contentSizeFlag]: 1 }, pledgedSrcSize: plain.length } as zlib.ZstdOptions);
  assert.equal(z.decodeFrameInto(sized, Buffer.alloc(MiB)), undefined, 'a frame that says it is bigger');
  const bad = Buffer.from(frame);
  bad[bad.length - 2]! ^= 0xff; // the XXH64 at the end no longer matches
  assert.equal(z.decodeFrameInto(bad, Buffer.alloc(4 * MiB)), undefined, 'a damaged frame');
  assert.equal(z.decodeFrameInto(frame.subarray(0, frame.length - 10), Buffer.alloc(4 * MiB)), undefined, 'a truncated frame');
});

test('encodeFrame writes one frame that node:zlib and the stock decoder read, with its size and XXH64', (t) => {
  const z = nativeZstd();
  if (!z) return t.skip('zstd-napi is not installed');
  for (const plain of [Buffer.alloc(0), randomBytes(1000), Buffer.concat([randomBytes(MiB), Buffer.alloc(3 * MiB, 9)])]) {
    const frame = z.encodeFrame(plain, 1);
    assert.ok(zlib.zstdDecompressSync(frame).equals(plain), `${plain.length} bytes round-trip through node:zlib`);
    assert.equal(frame.readUInt32LE(0), 0xfd2fb528, 'a zstd frame');
    const fhd = frame[4]!;
    assert.equal((fhd >> 2) & 1, 1, 'the content checksum flag is set');
    assert.ok(fhd >> 6 !== 0 || (fhd & 0x20) !== 0, 'the frame records its size');
    // Damage is caught by the checksum.
    if (plain.length > 0) {
      const bad = Buffer.from(frame);
      bad[bad.length - 1]! ^= 1;
      assert.throws(() => zlib.zstdDecompressSync(bad));
    }
  }
  // The output buffer is reused inside: frames handed out earlier stay intact.
  const a = z.encodeFrame(Buffer.alloc(100_000, 1), 3);
  z.encodeFrame(randomBytes(200_000), 3);
  assert.ok(zlib.zstdDecompressSync(a).equals(Buffer.alloc(100_000, 1)));
});

test('frameWriter streams pieces into one frame with its size and XXH64, in the buffer given', (t) => {
  const z = nativeZstd();
  if (!z) return t.skip('zstd-napi is not installed');
  const plain = Buffer.concat([randomBytes(MiB + 7), Buffer.alloc(3 * MiB, 9)]);
  const dst = Buffer.alloc(z.bound(plain.length));
  for (const cut of [1000, MiB, 3 * MiB + 1]) {
    const w = z.frameWriter(plain.length, 1, dst);
    for (let off = 0; off < plain.length; off += cut) w.push(plain.subarray(off, off + cut));
    const n = w.end();
    assert.ok(zlib.zstdDecompressSync(dst.subarray(0, n)).equals(plain), `pieces of ${cut}`);
    assert.ok((dst[4]! & 0x04) !== 0, 'XXH64 flag');
  }
  // An empty file is one empty frame.
  const w = z.frameWriter(0, 1, dst);
  assert.equal(zlib.zstdDecompressSync(dst.subarray(0, w.end())).length, 0);
});

test('encodeInto writes one frame with its size and XXH64 into the buffer given', (t) => {
  const z = nativeZstd();
  if (!z) return t.skip('zstd-napi is not installed');
  const plain = Buffer.concat([randomBytes(MiB + 7), Buffer.alloc(3 * MiB, 9)]);
  const dst = Buffer.alloc(z.bound(plain.length));
  // After a frame at another level, and twice in a row: nothing of the last frame carries over.
  z.encodeFrame(randomBytes(1000), 3);
  for (const input of [plain, plain.subarray(0, MiB), plain]) {
    const n = z.encodeInto(input, 1, dst);
    assert.ok(zlib.zstdDecompressSync(dst.subarray(0, n)).equals(input));
    const descriptor = dst[4]!;
    assert.ok((descriptor & 0x04) !== 0, 'XXH64 flag');
    assert.ok((descriptor & 0xc0) !== 0 || (descriptor & 0x20) !== 0, 'content size in the header');
  }
  // An empty file is one empty frame.
  assert.equal(zlib.zstdDecompressSync(dst.subarray(0, z.encodeInto(Buffer.alloc(0), 1, dst))).length, 0);
  // A buffer too small is an error, not a short frame.
  assert.throws(() => z.encodeInto(randomBytes(MiB), 1, Buffer.alloc(1000)));
});
