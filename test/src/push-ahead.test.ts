// Push-ahead: a backlog of .ready files (archiving was broken) drains through
// cairn-wal-push; one run archives many files, PostgreSQL's later calls for
// them return after the cheap check, and the .ready files are left to
// PostgreSQL.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo } from './repo-fixture.js';
import { commandLine, runCairn } from './tools.js';

after(runCleanups);

// fs, fs encrypted, and S3: the S3 driver sends the encoder's lent
// (SharedArrayBuffer) output as it is, the encrypted repository a copy.
const cases = [['fs', false], ['fs', true], ['s3', false]] as const;
for (const [kind, encrypted] of cases) test(`a backlog of .ready segments drains through push-ahead with no gap (${kind}${encrypted ? ', encrypted' : ''})`, { timeout: 300_000 }, async () => {
  const repo = await makeRepo(kind, encrypted);
  const c = await createCluster({ name: `backlog-${kind}${encrypted ? '-enc' : ''}`, archiveCommand: '/bin/false', env: repo.env });
  await c.start();
  await c.psql('create table t(i int)');
  for (let i = 0; i < 24; i++) await c.psql('insert into t select generate_series(1,100); select pg_switch_wal()');
  const ready = Number(await c.psql("select count(*) from pg_ls_archive_statusdir() where name like '%.ready'"));
  assert.ok(ready >= 20, `${ready} .ready files`);

  // Settings through the environment, so the bin wrapper's fast path applies.
  await c.setConf({ archive_command: `CAIRN_LOG_LEVEL=info CAIRN_PUSH_AHEAD=8 ${commandLine('wal-push', '%p %f')}` });
  await c.reload();
  const last = await c.psql('insert into t values (1); select pg_walfile_name(pg_switch_wal())');
  await c.waitForArchived(last, 120_000);

  // Most calls were confirmed from push-ahead records without running the
  // tool: only PostgreSQL's calls that ran Node log "archived".
  const log = await c.serverLog();
  const archivedByCall = (log.match(/cairn-wal-push: archived "/g) ?? []).length;
  const archived = Number(await c.psql('select archived_count from pg_stat_archiver'));
  assert.ok(archived >= ready, `${archived} archived`);
  assert.ok(archivedByCall <= archived - 3, `${archivedByCall} of ${archived} files were archived by PostgreSQL's own call; the rest should come from push-ahead records`);
  // Most records were confirmed by the bin wrapper without starting Node.
  const confirmedByNode = (log.match(/cairn-wal-push: "[0-9A-F]{24}" was archived by push-ahead/g) ?? []).length;
  console.log(`push-ahead: ${archived} archived, ${archivedByCall} by the call itself, ${confirmedByNode} confirmed by Node, ${archived - archivedByCall - confirmedByNode} by the wrapper`);
  assert.ok(confirmedByNode <= (archived - archivedByCall) / 2, `${confirmedByNode} records were confirmed by Node, not by the wrapper's fast path`);
  // Every segment is stored once, no gap.
  const names = (await repo.keys('main/wal/')).map((k) => k.slice(k.lastIndexOf('/') + 1, k.lastIndexOf('/') + 25)).filter((n) => /^[0-9A-F]{24}$/.test(n));
  assert.equal(new Set(names).size, names.length, 'one copy of each');
  const lastNo = Number.parseInt(last.slice(16), 16);
  for (let n = 1; n <= lastNo; n++) assert.ok(names.includes(`0000000100000000${n.toString(16).toUpperCase().padStart(8, '0')}`), `segment ${n}`);
  // Each one reads back whole (wal-get checks the SHA-256 of what it decoded).
  // The push-ahead worker encodes them on its threads (codec/segment-encoder.ts).
  const back = await makeTempDir('wal-back');
  for (const n of names) {
    const r = await runCairn('wal-get', [n, join(back, n), '--prefetch', '0'], { env: repo.env, cwd: c.pgdata });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await stat(join(back, n))).size, 16 * 1024 * 1024, n);
  }
  // PostgreSQL marked them all done itself; every record was used by its call.
  assert.equal(await c.psql("select count(*) from pg_ls_archive_statusdir() where name like '%.ready'"), '0');
  // One context directory (this data directory, these settings) under the configured root.
  const pushRoot = `${repo.env['CAIRN_SPOOL_DIR']}/push`;
  const contexts = await readdir(pushRoot);
  assert.equal(contexts.length, 1, contexts.join(' '));
  // (Records of files PostgreSQL no longer waits for go at the worker's next scan.)
  const left = (await readdir(`${pushRoot}/${contexts[0]}`)).filter((n) => n.endsWith('.claim'));
  assert.deepEqual(left, [], 'no claim left');
  await c.destroy();
});
