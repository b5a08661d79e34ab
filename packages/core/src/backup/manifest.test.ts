import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDriver } from '../storage/memory.js';
import { backupId, checkManifest, isBackupId, listBackupIds, MANIFEST_FORMAT, MANIFEST_FORMAT_PAGES, parseBackupId } from './manifest.js';

test('backup ids sort by time and carry the type', () => {
  const t = new Date(Date.UTC(2026, 10, 21, 2, 0, 5));
  assert.equal(backupId(t, 'full'), '20261121-020005F');
  assert.equal(backupId(t, 'diff'), '20261121-020005D');
  assert.equal(backupId(t, 'incr'), '20261121-020005I');
  assert.deepEqual(parseBackupId('20261121-020005I'), { time: t, type: 'incr' });
  assert.ok(isBackupId('20261121-020005F'));
  for (const bad of ['20261121-020005', '20261121-020005X', '2026112-020005F', '../x', '']) {
    assert.ok(!isBackupId(bad), bad);
    assert.throws(() => parseBackupId(bad), { code: 'USAGE' });
  }
  const ids = [backupId(new Date(Date.UTC(2026, 0, 2)), 'incr'), backupId(new Date(Date.UTC(2025, 11, 31, 23, 59, 59)), 'full')];
  assert.deepEqual([...ids].sort(), [ids[1], ids[0]]);
});

test('a backup exists iff its manifest does', async () => {
  const d = new MemoryDriver();
  await d.write('main/backups/20261121-020000F/manifest.json', Buffer.from('{}'));
  await d.write('main/backups/20261121-030000I/data/base/1/1.zst', Buffer.from('x'));
  await d.write('main/backups/20261121-040000D/manifest.json', Buffer.from('{}'));
  await d.write('other/backups/20261121-050000F/manifest.json', Buffer.from('{}'));
  assert.deepEqual(await listBackupIds(d, 'main'), ['20261121-020000F', '20261121-040000D']);
});

test('page layers need format cairn.backup/2, so a cairn that predates them refuses the manifest', () => {
  const base = {
    id: '20261121-030000I', type: 'incr', parent: '20261121-020000F', references: ['20261121-020000F'], dirs: [], systemId: '1', timeline: 1,
    start: { lsn: '0/2000028' }, stop: { lsn: '0/2000100' },
  };
  const whole = { path: 'base/1/16384', key: 'main/backups/20261121-020000F/data/base/1/16384.zst', sha256: 'a'.repeat(64), size: 8192, storedSize: 10, ref: '20261121-020000F' };
  const paged = { ...whole, pages: { base: whole, layers: [{ ...whole, blocks: '0', fileSize: 8192, fileSha256: 'a'.repeat(64) }] } };
  assert.doesNotThrow(() => checkManifest({ ...base, format: MANIFEST_FORMAT, files: [whole] }, 'm'));
  assert.doesNotThrow(() => checkManifest({ ...base, format: MANIFEST_FORMAT_PAGES, files: [whole, { ...paged, path: 'base/1/16385' }] }, 'm'));
  assert.throws(() => checkManifest({ ...base, format: MANIFEST_FORMAT, files: [paged] }, 'm'), /has page layers, which cairn.backup\/1 does not have/);
  assert.throws(() => checkManifest({ ...base, format: 'cairn.backup/4', files: [] }, 'm'), /format "cairn.backup\/4", expected cairn.backup\/1, cairn.backup\/2, cairn.backup\/3/);
  assert.throws(() => checkManifest({ ...base, format: MANIFEST_FORMAT_PAGES, files: [{ ...paged, pages: { base: whole, layers: [] } }] }, 'm'), /bad page layers/);
});
