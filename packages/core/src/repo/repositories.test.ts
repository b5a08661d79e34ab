import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CairnError } from '../cli/errors.js';
import { notEverywhere, pickRepositories } from './repositories.js';

const repos = ['/backup/nas', 's3://bucket/pg?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=us-east-1'];

test('--repo-only: every repository without it; one by its URL or position', () => {
  assert.deepEqual(pickRepositories(repos, undefined), repos);
  assert.deepEqual(pickRepositories(repos, ''), repos);
  assert.deepEqual(pickRepositories(repos, '1'), [repos[0]]);
  assert.deepEqual(pickRepositories(repos, '2'), [repos[1]]);
  assert.deepEqual(pickRepositories(repos, repos[1]), [repos[1]]);
  assert.deepEqual(pickRepositories(repos, 'file:///backup/nas/'), [repos[0]], 'the file:// form of a path names it too');
});

test('--repo-only naming no configured repository is a usage error (exit 2)', () => {
  for (const bad of ['0', '3', '/backup/other', 's3://bucket/pg']) {
    assert.throws(() => pickRepositories(repos, bad), (err: unknown) => {
      assert.ok(err instanceof CairnError);
      assert.equal(err.code, 'USAGE');
      assert.equal(err.exitCode, 2);
      assert.match(err.message, new RegExp(`^--repo-only "${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}" is none of the 2 configured repositories$`));
      return true;
    });
  }
});

test('a run that failed in one repository names it, with its status', () => {
  const e = notEverywhere('backup 20261206-203000F', [repos[0]!], [{ url: repos[1]!, error: new CairnError('STORAGE_UNAVAILABLE', 'the store answered 500') }]);
  assert.equal(e.exitCode, 3);
  assert.equal(e.message, `backup 20261206-203000F is not in repository "${repos[1]}" (the store answered 500)`);
  assert.match(e.hint!, /it is whole in "\/backup\/nas"/);
  const lock = notEverywhere('dump app/x', [], [{ url: repos[0]!, error: new CairnError('LOCK_HELD', 'lease held') }]);
  assert.equal(lock.exitCode, 5);
});
