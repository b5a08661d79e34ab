import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { buffer } from 'node:stream/consumers';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { encryptionKeyFromBytes, parseCompress, type EncodeSpec } from '../codec/index.js';
import { MemoryDriver } from '../storage/memory.js';
import { FsDriver } from '../storage/fs.js';
import type { StorageDriver } from '../storage/driver.js';
import { createSlots, encodeFile, PIECE_SIZE, rechunk } from '../codec/file-codec.js';
import { restoreFile, restoreFileHere, type FileToRestore } from './restore-file.js';

const dir = mkdtempSync(join(tmpdir(), 'cairn-restore-file-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function* once(buf: Buffer): AsyncGenerator<Buffer> {
  yield buf;
}

// Three whole pieces and a partial one, a random stretch in the middle.
const data = Buffer.alloc(PIECE_SIZE * 3 + 54321, 'relation page ');
randomBytes(100_000).copy(data, PIECE_SIZE + 17);

/** Stores `data` as the backup would under `key` and returns what a restore job needs. */
async function store(d: StorageDriver, key: string, spec: EncodeSpec, name: string, bytes: Buffer = data): Promise<FileToRestore> {
  const r = await encodeFile(rechunk(once(bytes)), spec, createSlots(4), async (body) => d.write(key, body));
  return { key, path: join(dir, name), sha256: r.sha256, size: r.size, mode: 0o600, mtime: 1_700_000_000, label: `"${name}"` };
}

const key = encryptionKeyFromBytes(randomBytes(32));
for (const [name, ext, spec] of [
  ['zstd', '.zst', { compress: parseCompress('zstd:1') }],
  ['zstd, encrypted', '.zst.enc', { compress: parseCompress('zstd:1'), key }],
  ['gzip (the streaming path)', '.gz', { compress: parseCompress('gzip:1') }],
] as const) {
  test(`restoreFileHere writes the file back, mode and mtime set (${name})`, async () => {
    const d = new MemoryDriver();
    const f = await store(d, `obj${ext}`, spec, `here${ext}`);
    await restoreFileHere(d, spec.key, f);
    assert.ok(readFileSync(f.path).equals(data));
    const st = statSync(f.path);
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(Math.round(st.mtimeMs / 1000), f.mtime);
  });
}

test('restoreFileHere and restoreFile write the same bytes', async () => {
  const d = new MemoryDriver();
  const f = await store(d, 'same.zst', { compress: parseCompress('zstd:3') }, 'same-here');
  await restoreFileHere(d, undefined, f);
  const g = { ...f, path: join(dir, 'same-stream') };
  await restoreFile(d, undefined, g, 3);
  assert.ok(readFileSync(f.path).equals(readFileSync(g.path)));
});

let repos = 0;
/** A file repository in the temp dir: its driver reads objects into restoreFileHere's own buffers (openReader). */
const fsDriver = () => new FsDriver(mkdtempSync(join(dir, `repo${++repos}-`)));

for (const [kind, driver] of [['memory: streamed', () => new MemoryDriver()], ['fs: read into reused buffers', fsDriver]] as const) test(`restoreFileHere: damage is an error and leaves no file behind (${kind})`, async () => {
  const d: StorageDriver = driver();
  const f = await store(d, 'bad.zst', { compress: parseCompress('zstd:1') }, 'bad');
  const stored = await buffer(await d.read('bad.zst'));

  // A wrong checksum in the manifest.
  await assert.rejects(restoreFileHere(d, undefined, { ...f, sha256: '0'.repeat(64) }), { code: 'CHECKSUM_MISMATCH' });
  assert.equal(existsSync(f.path), false);

  // The manifest says less than the object holds: stopped as soon as it is too much.
  await assert.rejects(restoreFileHere(d, undefined, { ...f, size: PIECE_SIZE }), (e: Error & { code?: string }) => e.code === 'CHECKSUM_MISMATCH' && /got [0-9a-f]{12}… of 8388608 bytes$/.test(e.message));
  assert.equal(existsSync(f.path), false);

  // A flipped byte inside a frame: zstd's own check or ours.
  const flipped = Buffer.from(stored);
  flipped[flipped.length >> 1]! ^= 0xff;
  await d.write('bad.zst', flipped);
  await assert.rejects(restoreFileHere(d, undefined, f), (e: Error & { code?: string }) => e.code === 'FORMAT_INVALID' || e.code === 'CHECKSUM_MISMATCH');
  assert.equal(existsSync(f.path), false);

  // Truncated.
  await d.write('bad.zst', stored.subarray(0, stored.length - 100));
  await assert.rejects(restoreFileHere(d, undefined, f), { code: 'FORMAT_INVALID' });
  assert.equal(existsSync(f.path), false);

  // The object is missing.
  await assert.rejects(restoreFileHere(d, undefined, { ...f, key: 'gone.zst' }));
  assert.equal(existsSync(f.path), false);
});

test('restoreFileHere: an encrypted object without the key is refused before anything is written', async () => {
  const d = new MemoryDriver();
  const f = await store(d, 'enc.zst.enc', { compress: parseCompress('zstd:1'), key }, 'enc-nokey');
  await assert.rejects(restoreFileHere(d, undefined, f), { code: 'KEY_INVALID' });
  assert.equal(existsSync(f.path), false);
});

test('restoreFileHere from a file repository: frames within a read and frames across reads, file after file in the same buffers, and a second file at once streamed', async () => {
  const d = fsDriver();
  assert.ok(d.openReader, 'the fs driver reads into the caller\'s buffers');
  // Incompressible pieces: frames of ~4 MiB, each spanning several 1 MiB reads;
  // compressible ones: many frames inside one read.
  const noise = randomBytes(PIECE_SIZE * 2 + 777);
  const files = [
    await store(d, 'a.zst', { compress: parseCompress('zstd:1') }, 'fs-a'),
    await store(d, 'b.zst', { compress: parseCompress('zstd:1') }, 'fs-b', noise),
    await store(d, 'c.zst', { compress: parseCompress('zstd:1') }, 'fs-c', Buffer.concat([noise.subarray(0, PIECE_SIZE), data])),
  ];
  const want = [data, noise, Buffer.concat([noise.subarray(0, PIECE_SIZE), data])];
  for (const f of files) await restoreFileHere(d, undefined, f);
  files.forEach((f, i) => assert.ok(readFileSync(f.path).equals(want[i]!), f.label));
  // Two at once on one thread: the second cannot have the buffers and streams.
  const again = files.map((f) => ({ ...f, path: `${f.path}-again` }));
  await Promise.all(again.map((f) => restoreFileHere(d, undefined, f)));
  again.forEach((f, i) => assert.ok(readFileSync(f.path).equals(want[i]!), f.label));
  // A damaged one between good ones leaves the buffers fit for the next.
  const stored = readFileSync(join(d.root, 'b.zst'));
  await d.write('bad-b.zst', stored.subarray(0, stored.length - PIECE_SIZE));
  await assert.rejects(restoreFileHere(d, undefined, { ...files[1]!, key: 'bad-b.zst', path: join(dir, 'fs-bad') }), { code: 'FORMAT_INVALID' });
  assert.equal(existsSync(join(dir, 'fs-bad')), false);
  await restoreFileHere(d, undefined, { ...files[2]!, path: join(dir, 'fs-c-after') });
  assert.ok(readFileSync(join(dir, 'fs-c-after')).equals(want[2]!));
});
