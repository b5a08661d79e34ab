import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import { inspect } from 'node:util';
import {
  ENCRYPTION_CHUNK_SIZE,
  ENCRYPTION_HEADER_SIZE,
  createDecryptStage,
  decodeToBuffer,
  encodeBuffer,
  encryptionKeyFromBytes,
  keyCheck,
  keyMatches,
  loadEncryptionKey,
  type EncryptionKey,
} from './index.js';
import { rejectsWith, testData, throwsWith } from './test-helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'cairn-encrypt-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const MATERIAL = 'c2VjcmV0IGtleSBtYXRlcmlhbCBmb3IgdGVzdHMgb25seQ==';
const key = encryptionKeyFromBytes(Buffer.from(MATERIAL));
const otherKey = encryptionKeyFromBytes(Buffer.from(MATERIAL + 'x'));

const CHUNK = ENCRYPTION_CHUNK_SIZE;
const SEALED = CHUNK + 16;
const HEADER = ENCRYPTION_HEADER_SIZE;
const NAME = 'obj.enc';
const LABEL = 'backups/x/base/1/1259';
const DECRYPT_MSG = `cannot decrypt "${LABEL}": wrong encryption key or corrupted data`;

async function encrypt(data: Buffer, k: EncryptionKey = key): Promise<Buffer> {
  return encodeBuffer(data, { compress: { alg: 'none', level: 0 }, key: k });
}
async function decrypt(stored: Buffer, k: EncryptionKey | undefined = key): Promise<Buffer> {
  return decodeToBuffer(stored, NAME, k, LABEL);
}

describe('encryption round trips', () => {
  const sizes = [0, 1, 15, 16, 17, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5];
  for (const size of sizes) {
    test(`${size} bytes`, async () => {
      const data = testData(size);
      const enc = await encrypt(data);
      // Exactly one final chunk for n ≤ 64 KiB, ⌈n / 64 KiB⌉ chunks otherwise.
      const chunks = Math.max(1, Math.ceil(size / CHUNK));
      assert.equal(enc.length, HEADER + size + 16 * chunks);
      assert.equal(enc.subarray(0, 8).toString('ascii'), 'CAIRNENC');
      assert.equal(enc[8], 1);
      assert.ok((await decrypt(enc)).equals(data));
    });
  }

  test('two encryptions of the same data differ (random salt per object)', async () => {
    const data = testData(1000);
    const [a, b] = [await encrypt(data), await encrypt(data)];
    assert.ok(!a.equals(b));
    assert.ok(!a.subarray(9, HEADER).equals(b.subarray(9, HEADER)));
  });

  test('ciphertext does not contain the plaintext', async () => {
    const data = Buffer.from('SECRET-PAYLOAD-'.repeat(1000));
    const enc = await encrypt(data);
    assert.equal(enc.indexOf('SECRET-PAYLOAD-'), -1);
  });

  test('input arriving in odd-sized pieces', async () => {
    const data = testData(5 * CHUNK + 123);
    const enc = await encrypt(data);
    const pieces: Buffer[] = [];
    for (let off = 0, n = 1; off < enc.length; off += n, n = (n * 7 + 13) % 70001) pieces.push(enc.subarray(off, off + n));
    assert.ok((await decodeToBuffer(Readable.from(pieces), NAME, key, LABEL)).equals(data));
  });
});

describe('tampering is detected', () => {
  const data = testData(3 * CHUNK + 100); // 4 chunks: 3 full, 1 final of 100 bytes
  let enc: Buffer;
  const ready = encrypt(data).then((e) => (enc = e));
  const chunkAt = (i: number) => HEADER + i * SEALED;

  test('wrong key → DECRYPT_FAILED', async () => {
    await ready;
    const err = await rejectsWith(decrypt(enc, otherKey), 'DECRYPT_FAILED', DECRYPT_MSG);
    assert.match(err.hint ?? '', /encryption-key-file/);
  });

  const truncations: [string, () => number][] = [
    ['at a chunk boundary (final chunk dropped)', () => chunkAt(3)],
    ['at an earlier chunk boundary', () => chunkAt(1)],
    ['right after the header', () => HEADER],
    ['inside the final chunk', () => enc.length - 1],
    ['inside the final chunk’s tag', () => enc.length - 10],
    ['inside a full chunk', () => chunkAt(2) + 1000],
    ['one byte into a chunk', () => chunkAt(3) + 1],
    ['inside the header', () => 10],
  ];
  for (const [name, at] of truncations) {
    test(`truncation ${name} → DECRYPT_FAILED`, async () => {
      await ready;
      await rejectsWith(decrypt(enc.subarray(0, at())), 'DECRYPT_FAILED', DECRYPT_MSG);
    });
  }

  test('an empty object is FORMAT_INVALID', async () => {
    await rejectsWith(decrypt(Buffer.alloc(0)), 'FORMAT_INVALID', `"${LABEL}" is empty, but an encrypted object is never empty`);
  });

  const flips: [string, () => number][] = [
    ['in the salt', () => 12],
    ['in the first chunk', () => HEADER + 5],
    ['in a middle chunk', () => chunkAt(2) + 30000],
    ['in a tag', () => chunkAt(1) - 3],
    ['in the final chunk', () => enc.length - 20],
    ['the last byte', () => enc.length - 1],
  ];
  for (const [name, at] of flips) {
    test(`flipped byte ${name} → DECRYPT_FAILED`, async () => {
      await ready;
      const bad = Buffer.from(enc);
      bad[at()]! ^= 0x01;
      await rejectsWith(decrypt(bad), 'DECRYPT_FAILED', DECRYPT_MSG);
    });
  }

  test('changed magic → FORMAT_INVALID, changed version → FORMAT_INVALID', async () => {
    await ready;
    const magic = Buffer.from(enc);
    magic[0] = 0x41;
    await rejectsWith(decrypt(magic), 'FORMAT_INVALID', `"${LABEL}" is not an encrypted cairn object (bad header)`);
    const version = Buffer.from(enc);
    version[8] = 2;
    await rejectsWith(decrypt(version), 'FORMAT_INVALID', `"${LABEL}" uses encryption format version 2, which this cairn cannot read`);
  });

  const appends: [string, () => Buffer][] = [
    ['one byte', () => Buffer.from([0])],
    ['16 bytes', () => Buffer.alloc(16, 0xaa)],
    ['a copy of the final chunk', () => enc.subarray(chunkAt(3))],
    ['a copy of a full chunk', () => enc.subarray(chunkAt(0), chunkAt(1))],
    ['a whole second object', () => enc],
  ];
  for (const [name, extra] of appends) {
    test(`appended ${name} → DECRYPT_FAILED`, async () => {
      await ready;
      await rejectsWith(decrypt(Buffer.concat([enc, extra()])), 'DECRYPT_FAILED', DECRYPT_MSG);
    });
  }

  test('swapped chunks → DECRYPT_FAILED', async () => {
    await ready;
    const c = (i: number) => enc.subarray(chunkAt(i), chunkAt(i + 1));
    const swapped = Buffer.concat([enc.subarray(0, HEADER), c(1), c(0), c(2), enc.subarray(chunkAt(3))]);
    await rejectsWith(decrypt(swapped), 'DECRYPT_FAILED', DECRYPT_MSG);
  });

  test('a chunk spliced in from another object under the same key → DECRYPT_FAILED', async () => {
    await ready;
    const other = await encrypt(data);
    const spliced = Buffer.concat([enc.subarray(0, chunkAt(1)), other.subarray(chunkAt(1), chunkAt(2)), enc.subarray(chunkAt(2))]);
    await rejectsWith(decrypt(spliced), 'DECRYPT_FAILED', DECRYPT_MSG);
  });

  test('a header swapped in from another object → DECRYPT_FAILED', async () => {
    await ready;
    const other = await encrypt(data);
    await rejectsWith(decrypt(Buffer.concat([other.subarray(0, HEADER), enc.subarray(HEADER)])), 'DECRYPT_FAILED', DECRYPT_MSG);
  });

  test('no plaintext of a failing chunk is released', async () => {
    await ready;
    const bad = Buffer.from(enc);
    bad[chunkAt(1) + 100]! ^= 0x80; // corrupt chunk 1 of 4
    const out: Buffer[] = [];
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    });
    await rejectsWith(pipeline(Readable.from([bad]), createDecryptStage(key, LABEL), sink), 'DECRYPT_FAILED');
    const released = Buffer.concat(out);
    assert.ok(released.length <= CHUNK, `released ${released.length} bytes`);
    assert.ok(released.equals(data.subarray(0, released.length)));
  });
});

describe('encryption keys', () => {
  const write = (name: string, content: string | Buffer, mode = 0o600) => {
    const p = join(tmp, name);
    writeFileSync(p, content, { mode });
    return p;
  };

  test('a key file with one trailing newline (LF or CRLF) is the same key', async () => {
    const a = await loadEncryptionKey(write('k-plain', MATERIAL));
    const b = await loadEncryptionKey(write('k-lf', MATERIAL + '\n'));
    const c = await loadEncryptionKey(write('k-crlf', MATERIAL + '\r\n'));
    assert.equal(a.id, key.id);
    assert.equal(b.id, key.id);
    assert.equal(c.id, key.id);
    assert.equal(keyCheck(b), keyCheck(key));
    // Only one newline is stripped: two make a different key.
    const d = await loadEncryptionKey(write('k-2lf', MATERIAL + '\n\n'));
    assert.notEqual(d.id, key.id);
  });

  test('data encrypted with a loaded key decrypts with the same material', async () => {
    const loaded = await loadEncryptionKey(write('k-rt', MATERIAL + '\n'));
    assert.ok((await decrypt(await encrypt(Buffer.from('hello'), loaded), key)).equals(Buffer.from('hello')));
  });

  test('binary key files work', async () => {
    const k = await loadEncryptionKey(write('k-bin', Buffer.from(Array.from({ length: 32 }, (_, i) => i * 8))));
    assert.match(k.id, /^[0-9a-f]{16}$/);
  });

  test('missing file → FILE_UNREADABLE with the errno code', async () => {
    const p = join(tmp, 'does-not-exist');
    const err = await rejectsWith(loadEncryptionKey(p), 'FILE_UNREADABLE', `cannot read encryption key file "${p}": ENOENT`);
    assert.match(err.hint ?? '', /head -c 32 \/dev\/urandom \| base64 > key/);
  });

  test('a directory → FILE_UNREADABLE EISDIR', async () => {
    const p = join(tmp, 'a-dir');
    mkdirSync(p);
    await rejectsWith(loadEncryptionKey(p), 'FILE_UNREADABLE', `cannot read encryption key file "${p}": EISDIR`);
  });

  // EACCES (a key file the user may not read) is covered end to end in
  // test/src/bad-input.test.ts, where the tool runs as a non-root user.

  test('too little material → KEY_INVALID with a hint on making a key', async () => {
    for (const content of ['', '\n', 'short', '123456789012345\n', '123456789012345']) {
      const p = write('k-short', content);
      const err = await rejectsWith(loadEncryptionKey(p), 'KEY_INVALID', new RegExp(`^encryption key "${p}" is too short: \\d+ bytes, at least 16 are needed$`));
      assert.match(err.hint ?? '', /head -c 32 \/dev\/urandom \| base64 > key/);
    }
    // 16 bytes of material plus a newline is enough.
    await loadEncryptionKey(write('k-16', '1234567890123456\n'));
  });

  test('a huge file → KEY_INVALID', async () => {
    const p = write('k-huge', Buffer.alloc(65 * 1024, 0x41));
    await rejectsWith(loadEncryptionKey(p), 'KEY_INVALID', /is larger than 64 KiB/);
  });

  test('keyCheck is stable and non-secret; keyMatches tells keys apart', () => {
    const check = keyCheck(key);
    assert.match(check, /^[0-9a-f]{64}$/);
    assert.equal(keyCheck(encryptionKeyFromBytes(Buffer.from(MATERIAL))), check);
    assert.ok(!check.includes(Buffer.from(MATERIAL).toString('hex')));
    assert.ok(keyMatches(key, check));
    assert.ok(keyMatches(key, check.toUpperCase()));
    assert.ok(!keyMatches(otherKey, check));
    for (const junk of ['', 'zz', check.slice(0, 63), check + '0', 'g'.repeat(64)]) assert.ok(!keyMatches(key, junk));
    assert.notEqual(key.id, otherKey.id);
    assert.ok(check.startsWith(key.id) === false);
  });

  test('the key object shows only its id (JSON, inspect, keys)', () => {
    const material = Buffer.from(MATERIAL);
    const k = encryptionKeyFromBytes(material);
    const shown = [JSON.stringify(k), inspect(k, { showHidden: true, depth: 10 }), String(Object.getOwnPropertyNames(k)), JSON.stringify({ ...k })];
    for (const s of shown) {
      assert.ok(!s.includes(MATERIAL), s);
      assert.ok(!s.includes(material.toString('hex')), s);
    }
    assert.deepEqual(Object.keys(k), ['id']);
    assert.equal(JSON.stringify(k), JSON.stringify({ id: k.id }));
  });

  test('a fake key object is refused', () => {
    throwsWith(() => keyCheck({ id: 'abc' }), 'INTERNAL');
  });

  test('an encrypted object and no key → KEY_INVALID', async () => {
    const enc = await encrypt(Buffer.from('x'));
    const err = await rejectsWith(decodeToBuffer(enc, 'a/b.zst.enc', undefined, 'b'), 'KEY_INVALID', '"b" is encrypted and no encryption key is configured');
    assert.match(err.hint ?? '', /--encryption-key-file \/ CAIRN_ENCRYPTION_KEY_FILE/);
  });
});
