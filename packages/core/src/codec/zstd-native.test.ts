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
