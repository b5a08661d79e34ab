import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import {
  createCompressStage,
  createDecompressStages,
  decodeToBuffer,
  encodeBuffer,
  formatCompress,
  parseCompress,
  type CompressSpec,
} from './index.js';
import { rejectsWith, testData, throwsWith } from './test-helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'cairn-compress-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('parseCompress', () => {
  const good: [string, CompressSpec][] = [
    ['zstd', { alg: 'zstd', level: 3 }],
    ['zstd:1', { alg: 'zstd', level: 1 }],
    ['zstd:19', { alg: 'zstd', level: 19 }],
    ['gzip', { alg: 'gzip', level: 6 }],
    ['gzip:1', { alg: 'gzip', level: 1 }],
    ['gzip:9', { alg: 'gzip', level: 9 }],
    ['none', { alg: 'none', level: 0 }],
    [' ZSTD:5 ', { alg: 'zstd', level: 5 }],
  ];
  for (const [input, want] of good) {
    test(`accepts ${JSON.stringify(input)}`, () => {
      assert.deepEqual(parseCompress(input), want);
    });
  }

  const bad = ['', 'zstd:0', 'zstd:20', 'zstd:22', 'gzip:0', 'gzip:10', 'none:1', 'zstd:', 'zstd:-1', 'zstd:3.5', 'lz4', 'xz:6', 'zstd:1:2', 'gz', 'zst', 'zstd 3', 'zstd:100'];
  for (const input of bad) {
    test(`rejects ${JSON.stringify(input)}`, () => {
      const err = throwsWith(() => parseCompress(input), 'CONFIG_INVALID', `invalid compression ${JSON.stringify(input)}`);
      assert.equal(err.hint, 'use zstd[:1-19], gzip[:1-9] or none');
    });
  }

  test('formatCompress is its inverse', () => {
    for (const s of ['zstd:3', 'zstd:19', 'gzip:6', 'none']) assert.equal(formatCompress(parseCompress(s)), s);
  });
});

function run(cmd: string, args: string[], input?: Buffer): Buffer {
  return execFileSync(cmd, args, { input, maxBuffer: 256 * 1024 * 1024, stdio: ['pipe', 'pipe', 'pipe'] });
}

describe('zstd interoperates with the stock zstd CLI', () => {
  const samples: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['structured 3 MiB', testData(3 * 1024 * 1024)],
    ['zeros 1 MiB (RLE blocks)', Buffer.alloc(1024 * 1024)],
    ['incompressible 300 KiB (raw blocks)', Buffer.concat(Array.from({ length: 300 }, (_, i) => testData(1024, `r${i}`).subarray(0, 1024)))],
  ];

  for (const [name, data] of samples) {
    test(`our ${name} output decodes with zstd -d, byte-equal`, async () => {
      const enc = await encodeBuffer(data, { compress: { alg: 'zstd', level: 3 } });
      const out = run('zstd', ['-d', '-c', '-q'], enc);
      assert.ok(out.equals(data));
    });

    test(`zstd CLI ${name} output decodes with our decoder`, async () => {
      for (const flags of [['-3'], ['-19', '--no-check'], ['-1', '--check']]) {
        const enc = run('zstd', [...flags, '-c', '-q'], data);
        const dec = await decodeToBuffer(enc, 'x.zst', undefined, 'x.zst');
        assert.ok(dec.equals(data), `flags ${flags.join(' ')}`);
      }
    });
  }

  test('frames carry an XXH64 content checksum (zstd -lv: "Check: XXH64")', async () => {
    const file = join(tmp, 'check.zst');
    writeFileSync(file, await encodeBuffer(testData(100_000), { compress: { alg: 'zstd', level: 3 } }));
    const out = run('zstd', ['-lv', file]).toString();
    assert.match(out, /Check: XXH64/);
    assert.match(out, /# Zstandard Frames: 1/);
  });

  test('zstd -t validates our output at several levels', async () => {
    for (const level of [1, 3, 9, 19]) {
      const enc = await encodeBuffer(testData(500_000), { compress: { alg: 'zstd', level } });
      run('zstd', ['-t', '-q'], enc);
    }
  });
});

describe('gzip interoperates with the stock gzip CLI', () => {
  test('our output decodes with gzip -d, byte-equal', async () => {
    for (const data of [Buffer.alloc(0), testData(2 * 1024 * 1024)]) {
      const enc = await encodeBuffer(data, { compress: { alg: 'gzip', level: 6 } });
      assert.ok(run('gzip', ['-d', '-c'], enc).equals(data));
    }
  });

  test('gzip CLI output decodes with our decoder', async () => {
    const data = testData(1_000_000);
    const dec = await decodeToBuffer(run('gzip', ['-9', '-c'], data), 'x.gz', undefined, 'x.gz');
    assert.ok(dec.equals(data));
  });
});

describe('corrupt compressed data is FORMAT_INVALID', () => {
  const data = testData(400_000);

  test('zstd: flipped byte, truncation, trailing data, second frame, empty, not zstd', async () => {
    const enc = await encodeBuffer(data, { compress: { alg: 'zstd', level: 3 } });
    const flipped = Buffer.from(enc);
    flipped[Math.floor(enc.length / 2)]! ^= 0x40;
    const cases: [string, Buffer, RegExp][] = [
      ['flipped', flipped, /^corrupt zstd data in "obj"/],
      ['truncated by 1', enc.subarray(0, enc.length - 1), /^corrupt zstd data in "obj"/],
      ['truncated to half', enc.subarray(0, enc.length >> 1), /^corrupt zstd data in "obj"/],
      ['truncated to 3 bytes', enc.subarray(0, 3), /truncated/],
      ['trailing garbage', Buffer.concat([enc, Buffer.from('garbage')]), /after the end of the zstd frame/],
      ['trailing zero', Buffer.concat([enc, Buffer.alloc(1)]), /after the end of the zstd frame/],
      ['two frames', Buffer.concat([enc, enc]), /after the end of the zstd frame/],
      ['empty', Buffer.alloc(0), /no zstd frame/],
      ['not zstd', Buffer.from('hello, this is not zstd'), /bad magic/],
      ['skippable frame', Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]), enc]), /skippable/],
    ];
    for (const [name, bytes, re] of cases) {
      await rejectsWith(decodeToBuffer(bytes, 'obj.zst', undefined, 'obj'), 'FORMAT_INVALID', re).catch((e: Error) => {
        throw new Error(`${name}: ${e.message}`);
      });
    }
  });

  test('zstd: a frame split into 1-byte chunks is walked correctly', async () => {
    const enc = await encodeBuffer(testData(20_000), { compress: { alg: 'zstd', level: 3 } });
    const chunks = Array.from(enc, (b) => Buffer.from([b]));
    const dec = await decodeToBuffer(Readable.from(chunks), 'x.zst', undefined, 'x');
    assert.ok(dec.equals(testData(20_000)));
  });

  test('zstd: the content checksum catches a change the block structure survives', async () => {
    // Flip a bit inside the 4-byte XXH64 at the end: the frame walks fine,
    // only the checksum can tell.
    const enc = Buffer.from(await encodeBuffer(data, { compress: { alg: 'zstd', level: 3 } }));
    enc[enc.length - 2]! ^= 1;
    await rejectsWith(decodeToBuffer(enc, 'obj.zst', undefined, 'obj'), 'FORMAT_INVALID', /checksum/);
  });

  test('gzip: flipped byte, truncation, trailing garbage, empty', async () => {
    const enc = await encodeBuffer(data, { compress: { alg: 'gzip', level: 6 } });
    const flipped = Buffer.from(enc);
    flipped[Math.floor(enc.length / 2)]! ^= 0x40;
    for (const bytes of [flipped, enc.subarray(0, enc.length - 1), enc.subarray(0, 5), Buffer.concat([enc, Buffer.from('xyz')]), Buffer.alloc(0)]) {
      await rejectsWith(decodeToBuffer(bytes, 'obj.gz', undefined, 'obj'), 'FORMAT_INVALID', /^corrupt gzip data in "obj": /);
    }
  });

  test('errors from other stages pass through a decompressor unchanged', async () => {
    const boom = Object.assign(new Error('connection reset'), { code: 'ECONNRESET', errno: -104 });
    const source = new Readable({
      read() {
        this.destroy(boom);
      },
    });
    const stages = createDecompressStages('gzip', 'obj');
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    await assert.rejects(pipeline([source, ...stages, sink]), (err) => err === boom);
  });
});

test('createCompressStage is undefined for none and new for each call', () => {
  assert.equal(createCompressStage({ alg: 'none', level: 0 }), undefined);
  const a = createCompressStage({ alg: 'zstd', level: 3 });
  const b = createCompressStage({ alg: 'zstd', level: 3 });
  assert.ok(a && b && a !== b);
  a.destroy();
  b.destroy();
});

describe('zstd frames', () => {
  const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
  const frameStarts = (buf: Buffer) => {
    let n = 0;
    for (let p = buf.indexOf(ZSTD_MAGIC); p >= 0; p = buf.indexOf(ZSTD_MAGIC, p + 1)) n++;
    return n;
  };
  const compressWriteEnd = async (a: Buffer, b: Buffer) => {
    const z = createCompressStage({ alg: 'zstd', level: 1 })!;
    const out: Buffer[] = [];
    z.on('data', (d: Buffer) => out.push(d));
    const ended = new Promise((r) => z.on('end', r));
    z.write(a);
    z.end(b);
    await ended;
    return Buffer.concat(out);
  };

  test('write(a); end(b) makes exactly one frame (Node ends it twice without the stage around it)', async () => {
    for (let i = 0; i < 5; i++) {
      const a = testData(100_000, `a${i}`);
      const b = testData(100_000, `b${i}`);
      const z = await compressWriteEnd(a, b);
      assert.equal(frameStarts(z), 1);
      assert.deepEqual(await decodeToBuffer(z, 'x.zst', undefined, 'obj'), Buffer.concat([a, b]));
    }
  });

  test('a trailing empty frame (as older objects may have) decodes; a trailing frame with data does not', async () => {
    const a = testData(50_000, 'c');
    const one = await encodeBuffer(a, { compress: { alg: 'zstd', level: 1 } });
    const empty = await encodeBuffer(Buffer.alloc(0), { compress: { alg: 'zstd', level: 1 } });
    assert.deepEqual(await decodeToBuffer(Buffer.concat([one, empty]), 'x.zst', undefined, 'obj'), a);
    await rejectsWith(decodeToBuffer(Buffer.concat([one, one]), 'x.zst', undefined, 'obj'), 'FORMAT_INVALID', /unexpected data after the end of the zstd frame/);
    await rejectsWith(decodeToBuffer(Buffer.concat([one, empty, Buffer.from('x')]), 'x.zst', undefined, 'obj'), 'FORMAT_INVALID', /unexpected data after the end of the zstd frame/);
  });
});
