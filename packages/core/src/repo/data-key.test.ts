import assert from 'node:assert/strict';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { decodeToBuffer, encodeBuffer, encryptionKeyFromBytes, keyCheck, type EncryptionKey } from '../codec/index.js';
import { CairnError } from '../cli/errors.js';
import { MemoryDriver } from '../storage/memory.js';
import { WriteConflictError } from '../storage/driver.js';
import { rejectsWith } from '../testing/errors.js';
import { createDataKey, listDataKeyVersions, openDataKey, rekeyDataKey } from './data-key.js';
import { dataKeyKey, repoConfigKey } from './layout.js';
import { ensureRepoConfig, openCluster, readRepoConfig } from './repo-config.js';

const NOW = new Date('2026-12-06T12:00:00Z');
const k1 = encryptionKeyFromBytes(Buffer.from('operator key one, 32 bytes long!'));
const k2 = encryptionKeyFromBytes(Buffer.from('operator key two, 32 bytes long!'));
const k3 = encryptionKeyFromBytes(Buffer.from('operator key three, 34 bytes long'));
const SPEC = (key: EncryptionKey) => ({ compress: { alg: 'none' as const, level: 0 }, key });
const PLAIN = Buffer.from('a WAL segment or a relation file, as it was before the rotation');

async function roundTrip(d: MemoryDriver, operator: EncryptionKey, objectKey: string): Promise<Buffer> {
  const cfg = await openCluster(d, 'main', operator);
  return decodeToBuffer(await d.read(objectKey), objectKey, cfg!.dataKey, objectKey);
}

test('a new encrypted cluster gets a random data key wrapped by the operator key, and repo.json format 2 with its check', async () => {
  const d = new MemoryDriver();
  const cfg = await ensureRepoConfig(d, 'main', k1, NOW);
  assert.equal(cfg.format, 2);
  assert.notEqual(cfg.dataKey!.id, k1.id, 'the data key is not the operator key');
  assert.equal(cfg.keyCheck, keyCheck(cfg.dataKey!));
  assert.deepEqual(await listDataKeyVersions(d, 'main'), [1]);
  // Never serialised with the config.
  assert.ok(!JSON.stringify(cfg).includes('dataKey'));
  const stored = (await buffer(await d.read(dataKeyKey('main', 1)))).toString('utf8');
  assert.match(stored, /"format": "cairn.datakey\/1"/);
  // Opened again (another tool), the same data key.
  assert.equal((await openCluster(d, 'main', k1))!.dataKey!.id, cfg.dataKey!.id);
  assert.equal((await ensureRepoConfig(d, 'main', k1, NOW)).dataKey!.id, cfg.dataKey!.id);
  // A wrong key is told as such, before anything is decoded.
  await rejectsWith(openCluster(d, 'main', k2), 'KEY_MISMATCH', /the encryption key \(id [0-9a-f]{16}\) does not open repository "memory:\/\/.*" cluster "main": its data key \(version 1\) is wrapped by key [0-9a-f]{16}/);
  await rejectsWith(openCluster(d, 'main', undefined), 'KEY_INVALID', /is encrypted and no encryption key is configured/);
  // Unencrypted clusters stay format 1, with no data key.
  const plain = await ensureRepoConfig(d, 'plain', undefined, NOW);
  assert.equal(plain.format, 1);
  assert.equal(plain.dataKey, undefined);
  assert.deepEqual(await listDataKeyVersions(d, 'plain'), []);
});

test('two first writers racing end with one data key; one that died after the data key leaves it to the next', async () => {
  const d = new MemoryDriver();
  const [a, b] = await Promise.all([createDataKey(d, 'main', k1, NOW), createDataKey(d, 'main', k1, NOW)]);
  assert.equal(a.key.id, b.key.id);
  // No repo.json yet (the writer died): the next one uses the stored key, and the data key object is no "orphaned data".
  assert.equal(await readRepoConfig(d, 'main'), undefined);
  const cfg = await ensureRepoConfig(d, 'main', k1, NOW);
  assert.equal(cfg.dataKey!.id, a.key.id);
  assert.deepEqual(await listDataKeyVersions(d, 'main'), [1]);
});

test('rotation: the new key opens everything written before; the old key no longer opens the cluster; the old wrap is removed', async () => {
  const d = new MemoryDriver();
  const cfg = await ensureRepoConfig(d, 'main', k1, NOW);
  await d.write('main/obj.enc', await encodeBuffer(PLAIN, SPEC(cfg.dataKey!)));

  await rejectsWith(rekeyDataKey(d, 'main', cfg.keyCheck!, k2, k3, NOW), 'KEY_MISMATCH');
  await rejectsWith(rekeyDataKey(d, 'main', cfg.keyCheck!, k1, k1, NOW), 'USAGE', 'the new encryption key is the old one');
  assert.deepEqual(await listDataKeyVersions(d, 'main'), [1], 'a refused rotation writes nothing');

  const r = await rekeyDataKey(d, 'main', cfg.keyCheck!, k1, k2, NOW);
  assert.deepEqual({ from: r.fromVersion, to: r.version, data: r.dataKeyId, removed: r.removed, kept: r.kept }, { from: 1, to: 2, data: cfg.dataKey!.id, removed: [dataKeyKey('main', 1)], kept: [] });
  assert.deepEqual(await listDataKeyVersions(d, 'main'), [2]);
  assert.deepEqual(await roundTrip(d, k2, 'main/obj.enc'), PLAIN);
  await rejectsWith(openCluster(d, 'main', k1), 'KEY_MISMATCH', /version 2/);
  await rejectsWith(ensureRepoConfig(d, 'main', k1, NOW), 'KEY_MISMATCH');

  // Again: the key before is refused as the old key, the current one is accepted.
  await rejectsWith(rekeyDataKey(d, 'main', cfg.keyCheck!, k1, k3, NOW), 'KEY_MISMATCH');
  await rekeyDataKey(d, 'main', cfg.keyCheck!, k2, k3, NOW);
  assert.deepEqual(await roundTrip(d, k3, 'main/obj.enc'), PLAIN);
  await rejectsWith(openCluster(d, 'main', k2), 'KEY_MISMATCH');
});

test('a cluster written before data keys keeps working, and cairn-rekey gives it one whose key is the old key', async () => {
  const d = new MemoryDriver();
  // As an older cairn wrote it: format 1, the operator key's check, objects under the operator key.
  await d.write(repoConfigKey('main'), Buffer.from(JSON.stringify({ format: 1, cipher: 'aes-256-gcm-stream-v1', keyCheck: keyCheck(k1), created: NOW.toISOString(), createdBy: 'cairn 0.0.9' })));
  await d.write('main/obj.enc', await encodeBuffer(PLAIN, SPEC(k1)));
  const before = await ensureRepoConfig(d, 'main', k1, NOW);
  assert.equal(before.format, 1);
  assert.equal(before.dataKey, k1, 'used as before: the operator key itself');
  assert.deepEqual(await listDataKeyVersions(d, 'main'), [], 'no data key is added behind the operator\'s back');
  await rejectsWith(openCluster(d, 'main', k2), 'KEY_MISMATCH', /does not match/);

  const r = await rekeyDataKey(d, 'main', before.keyCheck!, k1, k2, NOW);
  assert.deepEqual({ from: r.fromVersion, to: r.version, data: r.dataKeyId }, { from: 0, to: 1, data: k1.id });
  assert.deepEqual(await roundTrip(d, k2, 'main/obj.enc'), PLAIN);
  await rejectsWith(openCluster(d, 'main', k1), 'KEY_MISMATCH', /wrapped by key/);
  // New objects are written with the same data key, so old and new read alike.
  const after = await ensureRepoConfig(d, 'main', k2, NOW);
  assert.equal(after.dataKey!.id, k1.id);
});

test('a changed or moved data key object is refused, never used', async () => {
  const d = new MemoryDriver();
  const cfg = await ensureRepoConfig(d, 'main', k1, NOW);
  const obj = JSON.parse((await buffer(await d.read(dataKeyKey('main', 1)))).toString('utf8'));
  // Copied under a higher version (to replay an old wrap): bound to its version.
  await d.write(dataKeyKey('main', 2), Buffer.from(JSON.stringify({ ...obj, version: 2 })));
  await rejectsWith(openCluster(d, 'main', k1), 'FORMAT_INVALID', /"main\/keys\/datakey-000002.json" .* does not open with the key that wrapped it/);
  await d.remove(dataKeyKey('main', 2));
  // One flipped bit in the sealed key.
  const sealed = Buffer.from(obj.wrapped.sealed, 'base64');
  sealed[3]! ^= 1;
  await d.remove(dataKeyKey('main', 1));
  await d.write(dataKeyKey('main', 1), Buffer.from(JSON.stringify({ ...obj, wrapped: { ...obj.wrapped, sealed: sealed.toString('base64') } })));
  await rejectsWith(openCluster(d, 'main', k1), 'FORMAT_INVALID', /does not open with the key that wrapped it/);
  assert.ok(cfg.dataKey);
});

test('a superseded wrap the storage will not delete (Object Lock) is reported as kept, and the rotation stands', async () => {
  const d = new MemoryDriver();
  const cfg = await ensureRepoConfig(d, 'main', k1, NOW);
  const locked = new Proxy(d, {
    get: (t, p) => (p === 'remove' ? async (key: string) => {
      throw new CairnError('STORAGE_DENIED', `access denied removing "${key}": object is under retention`);
    } : Reflect.get(t, p)),
  });
  const r = await rekeyDataKey(locked, 'main', cfg.keyCheck!, k1, k2, NOW);
  assert.deepEqual(r.removed, []);
  assert.deepEqual(r.kept.map((k) => k.key), [dataKeyKey('main', 1)]);
  assert.match(r.kept[0]!.reason, /retention/);
  await rejectsWith(openCluster(d, 'main', k1), 'KEY_MISMATCH');
  assert.equal((await openDataKey(d, 'main', k2))!.version, 2);
});

/**
 * A store that does not honour "only if absent" (as s3rver ignores
 * If-None-Match): it looks, lets other writers in, then writes over
 * whatever landed meanwhile; its probe rewrites and reports "not atomic".
 */
class IgnoresIfAbsent extends MemoryDriver {
  override readonly features = { atomicIfAbsent: false, requests: 8 };
  override async write(key: string, body: Parameters<MemoryDriver['write']>[1], opts: Parameters<MemoryDriver['write']>[2] = {}): Promise<void> {
    if (opts.ifAbsent && (await this.stat(key)) !== undefined) throw new WriteConflictError(key, this.url);
    await new Promise((r) => setTimeout(r, 30));
    return super.write(key, body, { ...opts, ifAbsent: false });
  }
  async probeConditionalWrite(key: string, body: Buffer): Promise<boolean> {
    await super.write(key, body);
    return false;
  }
}

test('first writers racing on a store that ignores "only if absent" all end with the one data key that stands', async () => {
  const d = new IgnoresIfAbsent();
  const now = new Date('2026-11-21T02:00:00Z');
  // Three first writers, the third arriving once the first key is stored.
  const runs = [ensureRepoConfig(d, 'main', k1, now, undefined, 300), ensureRepoConfig(d, 'main', k1, now, undefined, 300)];
  await new Promise((r) => setTimeout(r, 40));
  runs.push(ensureRepoConfig(d, 'main', k1, now, undefined, 300));
  const opened = await Promise.all(runs);
  const stands = await openCluster(d, 'main', k1);
  assert.ok(stands?.dataKey);
  assert.deepEqual(opened.map((o) => o.dataKey!.id), [stands.dataKey.id, stands.dataKey.id, stands.dataKey.id], 'every writer encrypts under the key the cluster keeps');
});
