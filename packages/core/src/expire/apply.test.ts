import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CairnError } from '../cli/errors.js';
import { MemoryDriver } from '../storage/memory.js';
import { applyExpire } from './apply.js';
import { createObjectGrouper, type ExpireStep } from './plan.js';

/** A store under Object Lock: objects whose key matches `locked` cannot be deleted yet (AccessDenied → STORAGE_DENIED). */
function lockedDriver(d: MemoryDriver, locked: RegExp): MemoryDriver {
  return new Proxy(d, {
    get: (t, p) => (p === 'remove'
      ? async (key: string, signal?: AbortSignal) => {
          if (locked.test(key)) throw new CairnError('STORAGE_DENIED', `remove "${key}": access denied (AccessDenied: object is WORM protected and cannot be overwritten)`);
          return t.remove(key, signal);
        }
      : Reflect.get(t, p)),
  });
}

test('objects the storage may not delete yet are kept with the reason, their step stops, the others go on', async () => {
  const d = new MemoryDriver();
  const keys = ['main/backups/A/manifest.json', 'main/backups/A/data/1', 'main/backups/B/manifest.json', 'main/backups/B/data/1', 'main/wal/s/0/seg-1', 'main/wal/s/0/seg-2'];
  for (const k of keys) await d.write(k, Buffer.from('x'));
  const steps: ExpireStep[] = [
    { kind: 'backup', name: 'A', keys: ['main/backups/A/manifest.json', 'main/backups/A/data/1'], bytes: 2 },
    { kind: 'backup', name: 'B', keys: ['main/backups/B/manifest.json', 'main/backups/B/data/1'], bytes: 2 },
    { kind: 'wal', name: 's/1', keys: ['main/wal/s/0/seg-1', 'main/wal/s/0/seg-2'], bytes: 2 },
  ];
  const done = await applyExpire(lockedDriver(d, /backups\/A\/manifest|seg-2/), steps);
  assert.deepEqual(done.kept.map((k) => [k.step, k.name, k.key]), [
    ['backup', 'A', 'main/backups/A/manifest.json'],
    ['wal', 's/1', 'main/wal/s/0/seg-2'],
  ]);
  assert.match(done.kept[0]!.reason, /WORM protected/);
  assert.equal(done.keysRemoved, 3);
  assert.equal(done.bytesFreed, 2, 'only the step done whole counts');
  const left: string[] = [];
  for await (const o of d.list('main/')) left.push(o.key);
  // A refused manifest keeps its whole backup: never a manifest with missing objects.
  assert.deepEqual(left.sort(), ['main/backups/A/data/1', 'main/backups/A/manifest.json', 'main/wal/s/0/seg-2']);
});

test('any other error still stops expire', async () => {
  const d = new MemoryDriver();
  await d.write('main/backups/A/manifest.json', Buffer.from('x'));
  const broken = new Proxy(d, { get: (t, p) => (p === 'remove' ? async () => { throw new CairnError('STORAGE_UNAVAILABLE', 'down'); } : Reflect.get(t, p)) });
  await assert.rejects(applyExpire(broken, [{ kind: 'backup', name: 'A', keys: ['main/backups/A/manifest.json'], bytes: 1 }]), /down/);
});

test('a backup planned from counts (issue 19) goes manifest first, then everything listed under its prefix; the same plan as from keys', async () => {
  const d = new MemoryDriver();
  const A = '20261121-020000F';
  const B = '20261122-020000F';
  const keys = [`main/backups/${A}/data/base/1/1.zst`, `main/backups/${A}/data/base/1/2.zst`, `main/backups/${A}/manifest.json`, `main/backups/${B}/data/base/1/1.zst`, `main/backups/${B}/manifest.json`];
  for (const k of keys) await d.write(k, Buffer.from('x'));
  const grouper = createObjectGrouper('main', false);
  const withKeys = createObjectGrouper('main', true);
  for await (const o of d.list('main/backups/')) {
    grouper.add(o);
    withKeys.add(o);
  }
  const a = grouper.result().get(`backups/${A}/`)!;
  assert.deepEqual({ ...a, newest: 0 }, { prefix: `backups/${A}/`, objects: 3, bytes: 3, newest: 0, manifestKey: `main/backups/${A}/manifest.json` });
  assert.deepEqual(withKeys.result().get(`backups/${A}/`)!.keys, keys.slice(0, 3));
  // Its deletions, in order: a store whose remove is watched.
  const removed: string[] = [];
  const watched = new Proxy(d, { get: (t, p) => (p === 'remove' ? async (k: string, s?: AbortSignal) => { removed.push(k); return t.remove(k, s); } : Reflect.get(t, p)) });
  const done = await applyExpire(watched, [{ kind: 'backup', name: A, keys: [a.manifestKey!], prefix: `main/${a.prefix}`, bytes: 3 }]);
  assert.deepEqual(removed, [keys[2], keys[0], keys[1]]);
  assert.equal(done.keysRemoved, 3);
  const left: string[] = [];
  for await (const o of d.list('main/')) left.push(o.key);
  assert.deepEqual(left, keys.slice(3), 'the other backup stays whole');
  // A manifest the storage keeps: nothing listed is deleted after it.
  const locked = await applyExpire(lockedDriver(d, /manifest/), [{ kind: 'backup', name: B, keys: [`main/backups/${B}/manifest.json`], prefix: `main/backups/${B}/`, bytes: 2 }]);
  assert.equal(locked.keysRemoved, 0);
  assert.equal(locked.kept.length, 1);
});
