import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetSpool } from './get-spool.js';

const SEG = '000000010000000000000007';

test('take moves a ready entry into place once; want and system are remembered', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'get-spool-'));
  try {
    const spool = new GetSpool(dir);
    await writeFile(spool.entryPath(SEG), 'wal bytes');
    assert.deepEqual(await spool.entries(), [SEG]);
    assert.equal(await spool.take(SEG, join(dir, 'out1')), true);
    assert.equal(await readFile(join(dir, 'out1'), 'utf8'), 'wal bytes');
    assert.equal(await spool.take(SEG, join(dir, 'out2')), false, 'used up');
    assert.equal(existsSync(join(dir, 'out2')), false);

    await spool.setWant(SEG);
    assert.equal(await spool.want(), SEG);
    await spool.claimFor('123');
    await writeFile(spool.entryPath('000000010000000000000008'), 'x');
    await spool.claimFor('123');
    assert.deepEqual(await spool.entries(), ['000000010000000000000008'], 'same system keeps its entries');
    await spool.claimFor('456');
    assert.deepEqual(await spool.entries(), [], 'another system drops them');
    assert.equal(await spool.system(), '456');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the worker lock excludes a second worker and is taken over from a dead one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'get-spool-'));
  try {
    const spool = new GetSpool(dir);
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
