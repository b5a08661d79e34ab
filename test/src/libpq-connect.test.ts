// Tools connect as libpq does (issue 14 item 1): with PGHOST unset, through
// the Unix socket with peer authentication, as on a packaged host where
// `local all postgres peer` is the only way in and TCP asks for a password.

import assert from 'node:assert/strict';
import { rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { onCleanup, runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { commandLine, runCairn } from './tools.js';
import { makeRepo } from './repo-fixture.js';

after(runCleanups);

test('basebackup --pgdata and dump reach a peer-only server through its socket with no PGHOST', { timeout: 300_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const src = await createCluster({ name: 'peer-only', archiveCommand: commandLine('wal-push', '%p %f'), archiveTimeout: '1s', env: repo.env });
  await src.start();
  await src.psql('create table t as select generate_series(1, 100) i');
  // Only the socket, only peer: what Debian's packaged cluster gives the postgres user.
  await src.writeFile('pg_hba.conf', 'local all all peer\n');
  await src.reload();
  // No PGHOST, PGPORT, PGUSER or PGDATABASE: the repository settings only.
  const env = { ...repo.env };

  // Over TCP the same server refuses (so the socket is what makes the runs below pass).
  const tcp = await runCairn('basebackup', ['--pgdata', src.pgdata], { env: { ...env, PGHOST: '127.0.0.1', PGPORT: String(src.port) } });
  assert.equal(tcp.code, 3, tcp.stderr);
  assert.match(tcp.lines.at(-1)!, /cannot connect to PostgreSQL at host 127\.0\.0\.1 port \d+ \(from PGHOST\): .*pg_hba\.conf/);

  // --pgdata: the socket directory and port from the server's postmaster.pid.
  const bb = await runCairn('basebackup', ['--pgdata', src.pgdata], { env });
  assert.equal(bb.code, 0, bb.stderr);
  assert.match(bb.stdout.trim(), /^\d{8}-\d{6}F$/);

  // No --pgdata: libpq's default socket directories (/var/run/postgresql, then
  // /tmp). The server's socket is linked into /tmp under its own port.
  const link = join('/tmp', `.s.PGSQL.${src.port}`);
  await rm(link, { force: true });
  const none = await runCairn('dump', ['--dbname', 'postgres'], { env: { ...env, PGPORT: String(src.port) } });
  assert.equal(none.code, 3, none.stderr);
  assert.match(none.lines.at(-1)!, /at host localhost port \d+ \(no socket found in \/var\/run\/postgresql or \/tmp\)/);
  await symlink(join(src.socketDir, `.s.PGSQL.${src.port}`), link);
  onCleanup(() => rm(link, { force: true }));
  const dump = await runCairn('dump', ['--dbname', 'postgres'], { env: { ...env, PGPORT: String(src.port) } });
  assert.equal(dump.code, 0, dump.stderr);
  assert.match(dump.stdout, /postgres/, 'the dump names the database it stored');
  await src.stop();
});
