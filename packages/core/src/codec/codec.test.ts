import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import {
  createCountStage,
  createHashStage,
  decodeStagesFor,
  decodeStagesForExtension,
  decodeToBuffer,
  encodeBuffer,
  encodeStages,
  encodedExtension,
  encryptionKeyFromBytes,
  parseCompress,
  sha256Hex,
  storedEncoding,
  type EncodeSpec,
} from './index.js';
import { rejectsWith, testData, throwsWith } from './test-helpers.js';

const key = encryptionKeyFromBytes(Buffer.from('a test key of more than sixteen bytes'));

const COMPRESS = ['none', 'zstd', 'zstd:1', 'zstd:19', 'gzip', 'gzip:1'];
const specs: EncodeSpec[] = COMPRESS.flatMap((c) => [{ compress: parseCompress(c) }, { compress: parseCompress(c), key }]);
const specName = (s: EncodeSpec) => `${s.compress.alg}:${s.compress.level}${s.key ? '+enc' : ''}`;

describe('encodedExtension and storedEncoding', () => {
  const table: [string, boolean, string][] = [
    ['none', false, ''],
    ['none', true, '.enc'],
    ['zstd', false, '.zst'],
    ['zstd', true, '.zst.enc'],
    ['gzip', false, '.gz'],
    ['gzip', true, '.gz.enc'],
  ];
  for (const [c, enc, ext] of table) {
    test(`${c}${enc ? '+enc' : ''} → ${JSON.stringify(ext)}`, () => {
      const spec: EncodeSpec = enc ? { compress: parseCompress(c), key } : { compress: parseCompress(c) };
      assert.equal(encodedExtension(spec), ext);
      assert.deepEqual(storedEncoding(`main/wal/1/0000000100000000/000000010000000000000003-${'a'.repeat(64)}${ext}`), {
        alg: spec.compress.alg,
        encrypted: enc,
      });
    });
  }

  test('only the trailing [.zst|.gz][.enc] counts', () => {
    assert.deepEqual(storedEncoding('x.enc.zst'), { alg: 'zstd', encrypted: false });
    assert.deepEqual(storedEncoding('x.zst.gz'), { alg: 'gzip', encrypted: false });
    assert.deepEqual(storedEncoding('backup_label'), { alg: 'none', encrypted: false });
    assert.deepEqual(storedEncoding('x.zstd'), { alg: 'none', encrypted: false });
    assert.deepEqual(storedEncoding('x.gz.enc'), { alg: 'gzip', encrypted: true });
  });

  test('decodeStagesForExtension refuses unknown extensions', () => {
    throwsWith(() => decodeStagesForExtension('.bz2', undefined, 'x'), 'INTERNAL');
    assert.equal(decodeStagesForExtension('', undefined, 'x').length, 0);
    assert.equal(decodeStagesForExtension('.gz.enc', key, 'x').length, 2);
  });

  test('decoders come from the name, not from settings', async () => {
    // Written with gzip; read back through a name-based choice only.
    const data = testData(10_000);
    const stored = await encodeBuffer(data, { compress: parseCompress('gzip'), key });
    assert.ok((await decodeToBuffer(stored, 'old-object.gz.enc', key, 'old')).equals(data));
    // The wrong name is caught, not silently misread.
    await rejectsWith(decodeToBuffer(stored, 'old-object.zst.enc', key, 'old'), 'FORMAT_INVALID');
  });
});

describe('round trips for every combination', () => {
  const sizes = [0, 1, 1000, 64 * 1024, 64 * 1024 + 1, 300_000];
  for (const spec of specs) {
    test(specName(spec), async () => {
      for (const size of sizes) {
        const data = testData(size);
        const stored = await encodeBuffer(data, spec);
        const name = `obj${encodedExtension(spec)}`;
        assert.ok((await decodeToBuffer(stored, name, spec.key, name)).equals(data), `size ${size}`);
        assert.ok((await decodeToBuffer(Readable.from([stored]), name, spec.key, name)).equals(data), `size ${size} as stream`);
      }
    });
  }

  test('unencrypted output is readable by the stock tools', async () => {
    const data = testData(200_000);
    const zst = await encodeBuffer(data, { compress: parseCompress('zstd') });
    const gz = await encodeBuffer(data, { compress: parseCompress('gzip') });
    assert.ok(execFileSync('zstd', ['-d', '-c', '-q'], { input: zst }).equals(data));
    assert.ok(execFileSync('gzip', ['-d', '-c'], { input: gz }).equals(data));
  });
});

describe('hash and count stages', () => {
  test('hash passes bytes through and digests them', async () => {
    const data = testData(123_457);
    const h = createHashStage();
    const out: Buffer[] = [];
    await pipeline(
      Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
      h.stage,
      new Writable({
        write(c: Buffer, _e, cb) {
          out.push(c);
          cb();
        },
      }),
    );
    assert.ok(Buffer.concat(out).equals(data));
    assert.equal(h.digest(), createHash('sha256').update(data).digest('hex'));
    assert.equal(h.digest(), sha256Hex(data));
    assert.equal(h.bytes(), data.length);
  });

  test('digest of an empty stream is SHA-256 of nothing', async () => {
    const h = createHashStage();
    await pipeline(Readable.from([]), h.stage, new Writable({ write: (_c, _e, cb) => cb() }));
    assert.equal(h.digest(), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(h.bytes(), 0);
  });

  test('digest before the end is refused', () => {
    const h = createHashStage();
    h.stage.write(Buffer.from('partial'));
    throwsWith(() => h.digest(), 'INTERNAL', 'sha256 digest read before the stream ended');
    assert.equal(h.bytes(), 7);
    h.stage.destroy();
  });
});

describe('20 MiB streaming through the full write and read chains', () => {
  const SIZE = 20 * 1024 * 1024;
  // A lazily generated source: the test itself never holds the plaintext.
  function* source(): Generator<Buffer> {
    const piece = testData(1024 * 1024 - 7);
    let sent = 0;
    while (sent < SIZE) {
      const n = Math.min(piece.length, SIZE - sent);
      yield piece.subarray(0, n);
      sent += n;
    }
  }

  for (const spec of [{ compress: parseCompress('zstd:1'), key }, { compress: parseCompress('gzip:1'), key }, { compress: parseCompress('none') }]) {
    test(specName(spec), async () => {
      // write: plaintext → sha256 → compress → encrypt → count → sink
      const hash = createHashStage();
      const count = createCountStage();
      const stored: Buffer[] = [];
      await pipeline([
        Readable.from(source()),
        hash.stage,
        ...encodeStages(spec),
        count.stage,
        new Writable({
          write(c: Buffer, _e, cb) {
            stored.push(c);
            cb();
          },
        }),
      ]);
      assert.equal(hash.bytes(), SIZE);
      assert.equal(count.bytes(), stored.reduce((n, b) => n + b.length, 0));

      // read: stored → decrypt → decompress → sha256 (re-checked) → sink
      const name = `seg${encodedExtension(spec)}`;
      const recheck = createHashStage();
      let peakHeld = 0;
      await pipeline([
        Readable.from(stored),
        ...decodeStagesFor(name, spec.key, name),
        recheck.stage,
        new Writable({
          highWaterMark: 64 * 1024,
          write(_c: Buffer, _e, cb) {
            peakHeld = Math.max(peakHeld, recheck.stage.readableLength);
            setImmediate(cb); // a slow consumer, so backpressure is exercised
          },
        }),
      ]);
      assert.equal(recheck.bytes(), SIZE);
      assert.equal(recheck.digest(), hash.digest());
      // Backpressure holds: the stage never buffers more than a few chunks.
      assert.ok(peakHeld <= 4 * 1024 * 1024, `peak ${peakHeld}`);
    });
  }
});

test('maxBytes stops a decode that grows past it', async () => {
  const stored = await encodeBuffer(Buffer.alloc(5_000_000), { compress: parseCompress('zstd') });
  await rejectsWith(decodeToBuffer(stored, 'bomb.json.zst', undefined, 'bomb.json', { maxBytes: 1_000_000 }), 'FORMAT_INVALID', '"bomb.json" is larger than 1000000 bytes');
});

test('an abort signal tears the chain down', async () => {
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(encodeBuffer(testData(1000), { compress: parseCompress('zstd'), key }, { signal: ac.signal }), { name: 'AbortError' });
});
