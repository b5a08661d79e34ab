import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDriver } from '../storage/memory.js';
import { backupId, isBackupId, listBackupIds, parseBackupId } from './manifest.js';

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
