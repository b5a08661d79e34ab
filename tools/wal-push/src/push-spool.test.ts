import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { link, mkdir, mkdtemp, readFile, rm, stat, writeFile, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileIdentity, PushSpool } from './push-spool.js';

test('a record holds the identity exactly as `stat -c` prints it (the bin wrapper compares them)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'push-spool-'));
  try {
    const p = join(dir, 'f');
    await writeFile(p, 'x'.repeat(1000));
    const fromStat = execFileSync('stat', ['-c', '%d %i %s %.9Y %.9Z', '--', p], { encoding: 'utf8' }).trim();
    assert.equal(await fileIdentity(p), fromStat);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('records confirm only the unchanged file, once; claims and .ready order', async () => {
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
    await mkdir(join(root, 'spool'));
    const spool = new PushSpool(join(root, 'spool'));
    const order = (await spool.readyFiles(walDir, 10)).map((r) => r.name.name);
    assert.deepEqual(order, ['00000002.history', '000000010000000000000002', '000000010000000000000003', '000000010000000000000004']);

    const p2 = join(walDir, '000000010000000000000002');
    await spool.record('000000010000000000000002', p2);
    await spool.claim('000000010000000000000003');
    assert.equal(await spool.claimant('000000010000000000000003'), process.pid);
    const left = (await spool.readyFiles(walDir, 10)).map((r) => r.name.name);
    assert.deepEqual(left, ['00000002.history', '000000010000000000000004'], 'recorded and claimed files are skipped');
    await spool.unclaim('000000010000000000000003');
    assert.equal(await spool.claimant('000000010000000000000003'), undefined);

    assert.equal(await spool.consume('000000010000000000000002', p2), true);
    assert.equal(await spool.consume('000000010000000000000002', p2), false, 'a record is used once');

    const p3 = join(walDir, '000000010000000000000003');
    await spool.record('000000010000000000000003', p3);
    await utimes(p3, new Date(), new Date(Date.now() + 5000));
    assert.equal(await spool.consume('000000010000000000000003', p3), false, 'a changed file is not confirmed');

    assert.equal(await spool.lockWorker(), true);
    assert.equal(await spool.lockWorker(), false);
    await spool.unlockWorker();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('the worker claims by linking its lock; a dead worker\'s claims are replaced, never written into', async () => {
  const root = await mkdtemp(join(tmpdir(), 'push-spool-'));
  try {
    const spool = new PushSpool(root);
    const a = '000000010000000000000005';
    const b = '000000010000000000000006';
    // A dead worker's lock, and two claims linked to it.
    await writeFile(join(root, '.push-ahead.lock'), '4194305', { mode: 0o600 });
    await link(join(root, '.push-ahead.lock'), join(root, `${a}.claim`));
    await link(join(root, '.push-ahead.lock'), join(root, `${b}.claim`));
    assert.equal(await spool.claimant(a), undefined, 'a dead claimant');
    assert.equal(await spool.lockWorker(), true, 'the dead lock is taken over');
    await spool.claim(a, true);
    assert.equal(await spool.claimant(a), process.pid);
    assert.equal((await stat(join(root, `${a}.claim`))).ino, (await stat(join(root, '.push-ahead.lock'))).ino, 'the claim is the lock, linked');
    assert.equal(await readFile(join(root, `${b}.claim`), 'utf8'), '4194305', 'the other stale claim is untouched');
    assert.equal(await spool.claimant(b), undefined);
    // PostgreSQL's own call writes a claim of its own.
    await spool.claim(b);
    assert.notEqual((await stat(join(root, `${b}.claim`))).ino, (await stat(join(root, '.push-ahead.lock'))).ino);
    assert.equal(await spool.claimant(b), process.pid);
    await spool.unclaim(a);
    assert.equal(await readFile(join(root, '.push-ahead.lock'), 'utf8'), String(process.pid), 'unclaiming leaves the lock');
    await spool.unlockWorker();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
