import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetSpool } from './get-spool.js';

const SEG = '000000010000000000000007';

test('serve: a good entry moves to the destination; a damaged one is dropped, never served', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'get-spool-'));
  try {
    const spool = new GetSpool(dir);
    const data = Buffer.from('wal bytes '.repeat(1000));
    const sha = createHash('sha256').update(data).digest('hex');
    await writeFile(spool.entryPath(SEG, sha), data);
    assert.equal(await spool.serve(SEG, join(dir, 'out1'), false), true);
    assert.ok((await readFile(join(dir, 'out1'))).equals(data));
    assert.equal((await spool.entries()).length, 0, 'entry used up');

    const bad = Buffer.from(data);
    bad[5] = 0;
    await writeFile(spool.entryPath(SEG, sha), bad);
    assert.equal(await spool.serve(SEG, join(dir, 'out2'), false), false);
    assert.equal(existsSync(join(dir, 'out2')), false, 'nothing written');
    assert.equal((await spool.entries()).length, 0, 'damaged entry removed');
    assert.equal(await spool.serve('000000010000000000000008', join(dir, 'out3'), false), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('prune drops entries PostgreSQL has moved past; the lock excludes a second worker', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'get-spool-'));
  try {
    const spool = new GetSpool(dir);
    for (const n of ['000000010000000000000005', '000000010000000000000009']) await writeFile(spool.entryPath(n, 'a'.repeat(64)), 'x');
    await spool.prune(SEG, 3600_000);
    assert.deepEqual((await spool.entries()).map((e) => e.walName), ['000000010000000000000009']);
    assert.equal(await spool.lock(), true);
    assert.equal(await spool.isLocked(), true);
    assert.equal(await spool.lock(), false, 'held by a live process');
    await spool.unlock();
    await writeFile(join(dir, '.prefetch.lock'), '999999999');
    assert.equal(await spool.lock(), true, 'a dead holder is taken over');
    await spool.unlock();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
