import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { toCairnError } from './errors.js';
import { ObjectNotFoundError } from '../storage/driver.js';

test('a filesystem error on a path is a configuration error naming it, not a bug', async () => {
  const err = await readFile('/nonexistent-dir/x').catch((e: unknown) => e);
  const c = toCairnError(err);
  assert.equal(c.exitCode, 3);
  assert.equal(c.message, 'cannot open "/nonexistent-dir/x": ENOENT (no such file or directory)');
});

test('a missing repository object is a data error (4), not a bug (70)', () => {
  const c = toCairnError(new ObjectNotFoundError('main/backups/20261121-020000F/pg_data/base/1/1259.zst', '/backup'));
  assert.equal(c.exitCode, 4);
  assert.match(c.message, /object "main\/backups\/.*1259\.zst" not found in repository "\/backup"/);
});

test('anything else stays an internal error', () => {
  assert.equal(toCairnError(new TypeError('boom')).exitCode, 70);
});

test('a full file system on any path (mkdir, a recovery file) is FILE_UNWRITABLE naming it, not a bug', () => {
  const err = Object.assign(new Error("ENOSPC: no space left on device, mkdir '/srv/restore/base'"), { code: 'ENOSPC', syscall: 'mkdir', path: '/srv/restore/base' });
  const c = toCairnError(err);
  assert.equal(c.code, 'FILE_UNWRITABLE');
  assert.equal(c.exitCode, 3);
  assert.equal(c.message, 'cannot mkdir "/srv/restore/base": ENOSPC (no space left on device)');
});
