import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCairnError } from '../cli/errors.js';
import { MemoryDriver } from '../storage/memory.js';
import { readRepoCatalog, type InvalidManifest } from './catalog.js';

describe('readRepoCatalog', () => {
  it('throws on a damaged manifest, or leaves it out and tells onInvalid', async () => {
    const d = new MemoryDriver();
    await d.write('main/backups/20261121-020000F/manifest.json', Buffer.from('{"format": "cairn.backup/1"'));
    await d.write('main/dumps/app/20261121-030000L/manifest.json', Buffer.from('{"format": "something else"}'));
    await d.write('main/wal/7312/0000000100000000/000000010000000000000001-' + 'a'.repeat(64) + '.zst', Buffer.from('x'));
    await assert.rejects(readRepoCatalog(d, 'main'), (e: unknown) => isCairnError(e, 'FORMAT_INVALID'));
    const bad: InvalidManifest[] = [];
    const cat = await readRepoCatalog(d, 'main', { onInvalid: (b) => bad.push(b) });
    assert.deepEqual(bad.map((b) => [b.kind, b.id, b.key]), [
      ['backup', '20261121-020000F', 'main/backups/20261121-020000F/manifest.json'],
      ['dump', 'app/20261121-030000L', 'main/dumps/app/20261121-030000L/manifest.json'],
    ]);
    assert.deepEqual(cat.backups, []);
    assert.deepEqual(cat.dumps, []);
    assert.deepEqual([...cat.wal.get('7312')!.segments.keys()], ['000000010000000000000001']);
  });
});
