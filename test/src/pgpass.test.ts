// The password file, as psql reads it: a role that needs a password
// (scram-sha-256 over TCP) gets it from PGPASSFILE, with no warning from
// node-postgres on stderr; a file others may read is refused, and the error
// says so (core/pg/pgpass.ts).

import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo } from './repo-fixture.js';
import { runCairn } from './tools.js';

after(runCleanups);

test('cairn-dump takes the password from PGPASSFILE as libpq does', { timeout: 300_000 }, async () => {
  const repo = await makeRepo('fs', false);
  const c = await createCluster({ name: 'pgpass' });
  await c.start();
  await c.psql("create role pwuser login superuser password 'secret pw:1'");
  const hba = await readFile(join(c.pgdata, 'pg_hba.conf'), 'utf8');
  await c.writeFile('pg_hba.conf', `host all pwuser ${c.host}/32 scram-sha-256\n${hba}`);
  await c.reload();

  const dir = await makeTempDir('pgpass');
  const file = join(dir, 'pgpass');
  // Escaped ':' in the password; a line for another port first.
  await writeFile(file, `# cairn test\n${c.host}:1:*:pwuser:wrong\n${c.host}:${c.port}:*:pwuser:secret pw\\:1\n`, { mode: 0o600 });
  // The tools run as the PostgreSQL user here: the file is that user's, as ~/.pgpass would be.
  await chownToPgUser(dir, { recursive: true });
  const env = { ...repo.env, PGHOST: c.host, PGPORT: String(c.port), PGUSER: 'pwuser', PGDATABASE: 'postgres', PGPASSFILE: file };
  delete (env as Record<string, string | undefined>)['PGPASSWORD'];

  const ok = await runCairn('dump', ['--dbname', 'postgres'], { env });
  assert.equal(ok.code, 0, ok.stderr);
  assert.doesNotMatch(ok.stderr, /DeprecationWarning|pgpass support is deprecated/);

  await chmod(file, 0o644);
  const loose = await runCairn('dump', ['--dbname', 'postgres'], { env });
  assert.equal(loose.code, 3, loose.stderr);
  assert.match(loose.stderr, /the server asks for a password and none was found.*password file ".*pgpass" has group or world access; permissions should be u=rw \(0600\) or less, so it was not read/);

  await writeFile(file, `*:*:*:pwuser:not-the-password\n`);
  await chmod(file, 0o600);
  const wrong = await runCairn('dump', ['--dbname', 'postgres'], { env });
  assert.equal(wrong.code, 3, wrong.stderr);
  assert.match(wrong.stderr, /password authentication failed for user "pwuser"/);
  assert.doesNotMatch(wrong.stderr, /not-the-password/, 'no secret echoed');
  await c.destroy();
});
