import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createManifestSpool } from './manifest-spool.js';
import type { ManifestFile } from './manifest.js';

const rec = (path: string): ManifestFile => ({ path, size: 8192, mode: 0o600, mtime: 1, sha256: 'ab'.repeat(32), ref: 'X', key: `k/${path}.zst`, storedSize: 100 });

test('records come back in the order added, across blocks, with holes filled in place', () => {
  const s = createManifestSpool();
  const paths: string[] = [];
  for (let i = 0; i < 5000; i++) paths.push(`base/1/${String(i).padStart(6, '0')}`);
  for (const p of paths.slice(0, 3000)) s.add(rec(p));
  const hole = s.hole();
  for (const p of paths.slice(3001)) s.add(rec(p));
  const empty = s.hole();
  s.add(rec('z'));
  assert.equal(s.count, 4999 + 1);
  s.fill(hole, rec(paths[3000]!));
  void empty; // a file that vanished: its place stays empty
  const back = [...s.records()].map((f) => f.path);
  assert.deepEqual(back, [...paths, 'z']);
  assert.deepEqual([...s.records()][0], rec(paths[0]!));
  assert.equal(s.count, 5001);
});
