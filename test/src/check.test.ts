// cairn-check against a real server (issue 14 item 6): 0 on a healthy setup;
// 1 naming the problem when archive_command is wrong, when a repository is not
// writable, and when the switched segment never arrives.

import assert from 'node:assert/strict';
import { chmod } from 'node:fs/promises';
import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { commandLine, runCairn } from './tools.js';
import { makeRepo } from './repo-fixture.js';

after(runCleanups);

interface CheckDoc {
  format: string;
  segment: string | null;
  archiveSeconds: number | null;
  items: { check: string; ok: boolean; message: string }[];
  problems: string[];
}

test('cairn-check: healthy, then each kind of problem named in one line', { timeout: 300_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const src = await createCluster({ name: 'check', archiveCommand: commandLine('wal-push', '%p %f'), env: repo.env });
  await src.start();
  const env = { ...src.env, ...repo.env };

  // Healthy: every check ok, the switched segment found in the repository.
  let r = await runCairn('check', ['--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as CheckDoc;
  assert.equal(doc.format, 'cairn.check/1');
  assert.deepEqual(doc.problems, []);
  assert.match(doc.segment ?? '', /^[0-9A-F]{24}$/);
  assert.ok(doc.archiveSeconds !== null && doc.archiveSeconds < 60);
  assert.deepEqual([...new Set(doc.items.map((i) => i.check))], ['repository', 'connection', 'settings', 'archive', 'archiver']);
  assert.deepEqual((await repo.keys('main/locks/check/')), [], 'the probe object is removed');
  r = await runCairn('check', [], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ok {5} {2}repository ".*" is reachable and writable$/m);

  // The segment never arrives: archiving goes to the first repository, the check asks the second.
  const other = await makeRepo('fs', false);
  r = await runCairn('check', ['--repo', other.url, '--archive-timeout', '2'], { env });
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(r.lines.length, 1, r.stderr);
  assert.match(r.lines[0]!, /^cairn-check: error: WAL segment [0-9A-F]{24} did not reach repository ".*" within 2 s; see pg_stat_archiver/);

  // A repository this user cannot write.
  await chmod(other.url, 0o555);
  r = await runCairn('check', ['--repo', repo.url, '--repo', other.url, '--archive-timeout', '10'], { env });
  await chmod(other.url, 0o755);
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(r.lines.length, 1, r.stderr);
  assert.match(r.lines[0]!, new RegExp(`^cairn-check: error: repository "${other.url}" is not writable: .*; check the URL, the credentials`));
  assert.match(r.stdout, /^ok .*WAL segment [0-9A-F]{24} reached every repository/m, 'the writable repository is still followed');

  // archive_command that does not archive: named, and the archiver's failure too.
  await src.psql(`alter system set archive_command = '/bin/false'`);
  await src.psql('select pg_reload_conf()');
  await src.psql('create table t as select 1 i; select pg_switch_wal()');
  for (let i = 0; Number(await src.psql('select failed_count from pg_stat_archiver')) === 0; i++) {
    assert.ok(i < 300, 'the archiver never failed');
    await new Promise((res) => setTimeout(res, 100));
  }
  r = await runCairn('check', [], { env });
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.lines.length, 3, r.stderr);
  assert.match(r.lines[0]!, /archive_command "\/bin\/false" does not run cairn-wal-push; set archive_command = 'cairn-wal-push %p'/);
  assert.match(r.lines[1]!, /no WAL switch while the settings above are wrong/);
  assert.match(r.lines[2]!, /archiving is failing: the last attempt, for [0-9A-F]{24} at .*, failed/);
  await src.stop();
});
