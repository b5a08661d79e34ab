// Objects written by an earlier cairn (src/testing/fixtures/codec-v1, see its
// README) still decode, through every decode path, to their recorded SHA-256:
// the stored formats are a promise to every repository already written.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkManifest } from '../backup/manifest.js';
import { decodeFileInto, decodeFileStages, decodeWhole, decodeZstdFrameSync, zstdFrameStages } from './file-codec.js';
import { decodeStagesFor, decodeToBuffer, encryptionKeyFromBytes, storedEncoding } from './index.js';

const dir = new URL('../../src/testing/fixtures/codec-v1/', import.meta.url);

interface FixtureObject {
  key: string;
  kind: 'wal' | 'history' | 'backup-file' | 'dump-object' | 'json';
  how: string;
  size: number;
  sha256: string;
  storedSize: number;
  storedSha256: string;
}

const objects = JSON.parse(readFileSync(new URL('objects.json', dir), 'utf8')) as FixtureObject[];
const material = readFileSync(new URL('test-key', dir));
const key = encryptionKeyFromBytes(material.subarray(0, material.length - 1), 'test-key');
const stored = (o: FixtureObject) => readFileSync(new URL(`repo/${o.key}`, dir));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Plaintext length and SHA-256 of what `stages` make of `bytes`, streamed in 64 KiB chunks. */
async function streamed(bytes: Buffer, stages: NodeJS.ReadWriteStream[]): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  const chunks = Array.from({ length: Math.ceil(bytes.length / 65536) }, (_, i) => bytes.subarray(i * 65536, (i + 1) * 65536));
  await pipeline([Readable.from(chunks), ...stages, new Writable({
    objectMode: true,
    write(c: Buffer, _e, cb) {
      hash.update(c);
      size += c.length;
      cb();
    },
  })]);
  return { size, sha256: hash.digest('hex') };
}

test('the fixture is as it was written (objects.json records every stored object)', () => {
  assert.ok(objects.length >= 10);
  for (const o of objects) {
    const b = stored(o);
    assert.equal(b.length, o.storedSize, o.key);
    assert.equal(sha256(b), o.storedSha256, o.key);
  }
  const kinds = new Set(objects.map((o) => o.kind));
  assert.deepEqual([...kinds].sort(), ['backup-file', 'dump-object', 'history', 'json', 'wal']);
  // At least one backup file of more than one piece, zstd and encrypted.
  assert.ok(objects.some((o) => o.kind === 'backup-file' && o.key.endsWith('.zst.enc') && o.size > 4 * 1024 * 1024));
});

for (const o of objects.filter((x) => x.kind === 'wal' || x.kind === 'history' || x.kind === 'dump-object')) {
  test(`${o.kind} ${o.key.split('/').pop()} (${o.how}): stream, whole buffer and frame by frame`, async () => {
    const b = stored(o);
    assert.deepEqual(await streamed(b, decodeStagesFor(o.key, key, o.key)), { size: o.size, sha256: o.sha256 });
    const whole = await decodeToBuffer(b, o.key, key, o.key);
    assert.equal(sha256(whole), o.sha256);
    const frames = zstdFrameStages(o.key, key, o.key);
    if (storedEncoding(o.key).alg === 'zstd') {
      const hash = createHash('sha256');
      await pipeline([Readable.from([b]), ...frames!.stages, new Writable({ objectMode: true, write(f: Buffer, _e, cb) { hash.update(decodeZstdFrameSync(f, o.key)); cb(); } })]);
      assert.equal(hash.digest('hex'), o.sha256);
    } else assert.equal(frames, undefined);
  });
}

for (const o of objects.filter((x) => x.kind === 'backup-file')) {
  test(`backup file ${o.key.split('/data/').pop()} (${o.how}): stream, whole buffer and frame by frame`, async () => {
    const b = stored(o);
    const expect = { sha256: o.sha256, size: o.size, label: `"${o.key}"` };
    await decodeFileInto(Readable.from([b]), decodeFileStages(o.key, key, expect.label), new Writable({ write(_c, _e, cb) { cb(); } }), expect);
    assert.deepEqual(await streamed(b, decodeFileStages(o.key, key, expect.label, 2)), { size: o.size, sha256: o.sha256 });
    assert.equal(sha256(await decodeWhole(b, o.key, key, expect)), o.sha256);
    const frames = zstdFrameStages(o.key, key, expect.label);
    if (storedEncoding(o.key).alg === 'zstd') {
      const hash = createHash('sha256');
      let n = 0;
      // Each frame handed back once decoded: its buffer is filled again for a later one.
      await pipeline([Readable.from([b]), ...frames!.stages, new Writable({ objectMode: true, write(f: Buffer, _e, cb) { n++; hash.update(decodeZstdFrameSync(f, expect.label)); frames!.splitter.release(f); cb(); } })]);
      assert.equal(hash.digest('hex'), o.sha256);
      // 4 MiB pieces, one frame each; an empty file is still one frame.
      assert.equal(n, Math.max(1, Math.ceil(o.size / (4 * 1024 * 1024))));
    } else assert.equal(frames, undefined);
  });
}

test('the manifest reads and names every backup file of the fixture with its size and SHA-256', () => {
  const o = objects.find((x) => x.kind === 'json')!;
  const b = stored(o);
  assert.equal(sha256(b), o.sha256);
  const m = checkManifest(JSON.parse(b.toString('utf8')), o.key);
  const files = objects.filter((x) => x.kind === 'backup-file');
  assert.deepEqual(
    m.files.map((f) => [f.key, f.size, f.sha256, f.storedSize]).sort(),
    files.map((f) => [f.key, f.size, f.sha256, f.storedSize]).sort(),
  );
});
