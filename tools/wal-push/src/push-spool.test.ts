import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PushSpool } from './push-spool.js';

test('records confirm only the unchanged file, once; .ready files are listed in archive order', async () => {
  const root = await mkdtemp(join(tmpdir(), 'push-spool-'));
  try {
    const walDir = join(root, 'pg_wal');
    await mkdir(join(walDir, 'archive_status'), { recursive: true });
    const names = ['000000010000000000000003', '000000010000000000000002', '00000002.history', '000000010000000000000004'];
    for (const n of names) {
      await writeFile(join(walDir, n), n);
      await writeFile(join(walDir, 'archive_status', `${n}.ready`), '');
    }
    await writeFile(join(walDir, 'archive_status', '000000010000000000000001.done'), '');
    const spool = new PushSpool(join(root, 'spool'));
    const ready = await spool.readyFiles(join(walDir, '000000010000000000000004'), '000000010000000000000004', 10);
    assert.deepEqual(ready.map((r) => r.name.name), ['00000002.history', '000000010000000000000002', '000000010000000000000003']);

    const p2 = join(walDir, '000000010000000000000002');
    await spool.record('000000010000000000000002', p2, 'f'.repeat(64));
    const again = await spool.readyFiles(join(walDir, 'x'), 'none', 10);
    assert.ok(!again.some((r) => r.name.name === '000000010000000000000002'), 'recorded files are not pushed again');
    assert.equal(await spool.consume('000000010000000000000002', p2), true);
    assert.equal(await spool.consume('000000010000000000000002', p2), false, 'a record is used once');

    const p3 = join(walDir, '000000010000000000000003');
    await spool.record('000000010000000000000003', p3, 'e'.repeat(64));
    await utimes(p3, new Date(), new Date(Date.now() + 5000));
    assert.equal(await spool.consume('000000010000000000000003', p3), false, 'a changed file is not confirmed');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
