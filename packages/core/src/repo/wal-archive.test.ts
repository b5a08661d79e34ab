import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { MemoryDriver } from '../storage/memory.js';
import { encodeBuffer, encryptionKeyFromBytes, sha256Hex, type EncodeSpec } from '../codec/index.js';
import { CairnError } from '../cli/errors.js';
import { findWal, readWalInto, storeWal } from './wal-archive.js';
import { parseWalObjectName, walFilePrefix, walObjectKey } from './layout.js';
import { ensureRepoConfig } from './repo-config.js';
import { ensureSystemRegistered } from './systems.js';

const SYS = '7312345678901234567';
const SEG = '000000010000000000000003';

async function put(d: MemoryDriver, data: Buffer, spec: EncodeSpec, name = SEG) {
  const ext = spec.key ? '.zst.enc' : '.zst';
  const encoded = await encodeBuffer(data, spec);
  return storeWal(d, { cluster: 'main', systemId: SYS, walName: name, sha256: sha256Hex(data), ext, body: () => encoded });
}

test('layout: keys and their parsing', () => {
  assert.equal(walFilePrefix('main', SYS, SEG), `main/wal/${SYS}/0000000100000000/${SEG}-`);
  assert.equal(walFilePrefix('main', SYS, '00000002.history'), `main/wal/${SYS}/00000002.history-`);
  const sha = 'a'.repeat(64);
  const key = walObjectKey('main', SYS, `${SEG}.partial`, sha, '.zst.enc');
  assert.deepEqual(parseWalObjectName(key), { walName: `${SEG}.partial`, sha256: sha, ext: '.zst.enc' });
  assert.equal(parseWalObjectName(`main/wal/${SYS}/0000000100000000/.tmp.x`), undefined);
  assert.equal(parseWalObjectName(`${SEG}-${sha}`)?.ext, '');
});

test('store: new, identical, different content', async () => {
  const d = new MemoryDriver('unit-wal-store');
  const spec: EncodeSpec = { compress: { alg: 'zstd', level: 1 } };
  const data = Buffer.alloc(65536, 7);
  assert.equal(await put(d, data, spec), 'stored');
  assert.equal(await put(d, data, spec), 'identical');
  assert.equal(await put(d, data, { compress: { alg: 'gzip', level: 1 } }), 'identical', 'same plaintext under another codec is identical');
  const other = Buffer.from(data);
  other[10] = 1;
  await assert.rejects(put(d, other, spec), (e: unknown) => e instanceof CairnError && e.code === 'WAL_DUPLICATE' && /different content/.test(e.message));
  const copies = await findWal(d, 'main', SYS, SEG);
  assert.equal(copies.length, 1);
  assert.equal(copies[0]!.sha256, sha256Hex(data));
});

test('read back verifies the checksum', async () => {
  const d = new MemoryDriver('unit-wal-read');
  const key = encryptionKeyFromBytes(Buffer.from('0123456789abcdef0123456789abcdef'));
  const data = Buffer.from('x'.repeat(100000));
  await put(d, data, { compress: { alg: 'zstd', level: 3 }, key });
  const [copy] = await findWal(d, 'main', SYS, SEG);
  const sink = new PassThrough();
  const got = buffer(sink);
  await readWalInto(d, copy!, key, sink);
  assert.ok((await got).equals(data));

  // A stored object whose content does not match its name's checksum.
  const forged = await encodeBuffer(Buffer.from('y'.repeat(100000)), { compress: { alg: 'zstd', level: 3 }, key });
  await d.write(copy!.key, forged);
  const sink2 = new PassThrough().resume();
  await assert.rejects(readWalInto(d, copy!, key, sink2), (e: unknown) => e instanceof CairnError && e.code === 'CHECKSUM_MISMATCH');
});

test('repo.json: created once, key checked', async () => {
  const d = new MemoryDriver('unit-repo-config');
  const k1 = encryptionKeyFromBytes(Buffer.from('k1-0123456789abcdef0123456789'));
  const k2 = encryptionKeyFromBytes(Buffer.from('k2-0123456789abcdef0123456789'));
  const cfg = await ensureRepoConfig(d, 'main', k1, new Date(0));
  assert.equal(cfg.cipher, 'aes-256-gcm-stream-v1');
  await ensureRepoConfig(d, 'main', k1, new Date(1));
  await assert.rejects(ensureRepoConfig(d, 'main', k2, new Date()), (e: unknown) => e instanceof CairnError && e.code === 'KEY_MISMATCH');
  await assert.rejects(ensureRepoConfig(d, 'main', undefined, new Date()), (e: unknown) => e instanceof CairnError && e.code === 'KEY_INVALID');
  await ensureRepoConfig(d, 'plain', undefined, new Date());
  await assert.rejects(ensureRepoConfig(d, 'plain', k1, new Date()), (e: unknown) => e instanceof CairnError && e.code === 'KEY_MISMATCH');
});

test('repo.json: a first use racing ours (its repo.json and first object land between our read and our listing) is no orphaned cluster', async () => {
  const d = new MemoryDriver('unit-repo-config-race');
  const list = d.list.bind(d);
  let raced = false;
  // The other writer (the first WAL push) does its whole first use just before our listing.
  d.list = async function* (prefix: string, signal?: AbortSignal) {
    if (!raced && prefix === 'main/') {
      raced = true;
      await ensureRepoConfig(new Proxy(d, { get: (t, k) => (k === 'list' ? list : Reflect.get(t, k)) }), 'main', undefined, new Date(0));
      await ensureSystemRegistered(d, 'main', { systemId: SYS, firstSeen: 'x', registeredBy: 'test' }, { force: false });
    }
    yield* list(prefix, signal);
  };
  const cfg = await ensureRepoConfig(d, 'main', undefined, new Date(1));
  assert.ok(raced);
  assert.equal(cfg.created, new Date(0).toISOString(), 'the other writer\'s repo.json, not a second one');
  // A cluster that really lost repo.json is still refused.
  const orphan = new MemoryDriver('unit-repo-config-orphan');
  await ensureSystemRegistered(orphan, 'main', { systemId: SYS, firstSeen: 'x', registeredBy: 'test' }, { force: false });
  await assert.rejects(ensureRepoConfig(orphan, 'main', undefined, new Date()), (e: unknown) => e instanceof CairnError && e.code === 'FORMAT_INVALID' && /no repo\.json/.test(e.message));
});

test('systems: first registers, another is refused unless forced', async () => {
  const d = new MemoryDriver('unit-systems');
  const rec = (id: string) => ({ systemId: id, firstSeen: 'x', registeredBy: 'test' });
  assert.equal(await ensureSystemRegistered(d, 'main', rec('1'), { force: false }), 'registered');
  assert.equal(await ensureSystemRegistered(d, 'main', rec('1'), { force: false }), 'known');
  await assert.rejects(ensureSystemRegistered(d, 'main', rec('2'), { force: false }), (e: unknown) => e instanceof CairnError && e.code === 'SYSTEM_MISMATCH' && /--register-system/.test(e.hint ?? ''));
  assert.equal(await ensureSystemRegistered(d, 'main', rec('2'), { force: true }), 'registered');
  assert.equal(await ensureSystemRegistered(d, 'other', rec('2'), { force: false }), 'registered', 'clusters are separate');
});
