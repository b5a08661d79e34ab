// Logical dumps that must fail, and fail cleanly: a dump object altered in
// the repository is refused before pg_restore commits anything (and
// cairn-verify reports it); a pg_dump that fails, is cut off or is older than
// the server, or is stopped by SIGTERM, leaves no dump behind.

import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { binPath } from '@cairn/testkit/paths';
import { spawnAsPg } from '@cairn/testkit/run-as';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { cairnOk } from './pitr-harness.js';
import { runCairn } from './tools.js';
import { databases, fillSourceDatabase, tableFingerprints } from './dump-harness.js';

after(runCleanups);

interface State {
  repo: RepoFixture;
  src: Cluster;
  env: Record<string, string>;
  /** `app/ID` whose object was altered. */
  bad: string;
  badKey: string;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

/** A --pg-bin directory whose pg_dump is `body` (sh), --version answered by `version` or the real one. */
async function fakePgBin(src: Cluster, body: string, version?: string): Promise<string> {
  const dir = await makeTempDir('fake-pg-bin');
  const real = join(src.clientBindir, 'pg_dump');
  const script = `#!/bin/sh
case "$1" in --version) ${version ? `echo '${version}'; exit 0` : `exec ${real} --version`};; esac
${body.replaceAll('$REAL', real).replaceAll('$DIR', dir)}
`;
  await writeFile(join(dir, 'pg_dump'), script);
  await chmod(join(dir, 'pg_dump'), 0o755);
  await chownToPgUser(dir, { recursive: true });
  return dir;
}

describe('logical dumps that fail (fs, uncompressed)', { timeout: 600_000 }, () => {
  it('sets up a dump and alters a row inside its stored object', async () => {
    const repo = await makeRepo('fs', false);
    const src = await createCluster({ name: 'dump-fail' });
    await src.start();
    await src.psql('create role app_owner; create role app_reader');
    await fillSourceDatabase(src, 'app');
    // Uncompressed and unencrypted: the change below is one pg_restore would
    // restore without complaint; only the SHA-256 can tell.
    const env = { ...src.env, ...repo.env, CAIRN_CLUSTER: 'bad', CAIRN_COMPRESS: 'none' };
    const bad = (await cairnOk('dump', ['--dbname', 'app'], env)).stdout.trim();
    const id = bad.split('/')[1]!;
    const badKey = `bad/dumps/app/${id}/dump.pgdump`;
    const body = (await repo.objects(badKey)).get(badKey);
    assert.ok(body, `${badKey} is stored`);
    const at = body.indexOf('needle-row-0123456789');
    assert.ok(at > 0, 'the row is in the stored dump as text');
    // The extra schema's data comes first: pg_restore would have loaded it
    // long before the end where the checksum is known.
    assert.ok(at < body.length - 4 * 1024 * 1024, `the row lies far from the end (${at} of ${body.length})`);
    body.write('needle-row-0123456780', at);
    await repo.tamper(badKey, body);
    st = { repo, src, env, bad, badKey };
  });

  it('refuses the altered dump before pg_restore commits anything', async () => {
    const { src, env, bad, badKey } = state();
    await src.psql('create database victim');
    const r = await runCairn('restore', ['--dump', bad, '--dbname', 'victim', '--no-owner'], { env });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`dump "${bad}" object "${badKey}" fails its checksum`));
    assert.deepEqual(await tableFingerprints(src, 'victim'), {}, 'nothing of the dump was committed');

    const c = await runCairn('restore', ['--dump', bad, '--dbname', 'victim2', '--create'], { env });
    assert.equal(c.code, 4, c.stderr);
    assert.ok(!(await databases(src)).includes('victim2'), 'the database --create made is dropped again');

    const j = await runCairn('restore', ['--dump', bad, '--dbname', 'victim', '--jobs', '2'], { env });
    assert.equal(j.code, 4, j.stderr);
    assert.match(j.stderr, /fails its checksum/);
    assert.deepEqual(await tableFingerprints(src, 'victim'), {}, '--jobs: pg_restore never ran');

    const l = await runCairn('restore', ['--dump', bad, '--list'], { env });
    assert.equal(l.code, 4, l.stderr);
    assert.equal(l.stdout, '', '--list prints nothing of a damaged dump');
  });

  it('cairn-verify reports the altered dump', async () => {
    const { env, bad, badKey } = state();
    const v = await runCairn('verify', ['--dump', bad, '--json'], { env });
    assert.equal(v.code, 1, `${v.stdout}\n${v.stderr}`);
    const out = JSON.parse(v.stdout) as { problems: { kind: string; subject: string; key?: string }[] };
    assert.ok(out.problems.some((p) => p.kind === 'object-corrupt' && p.subject === bad && p.key === badKey), v.stdout);
  });

  it('keeps nothing of a pg_dump that fails, is cut off, or is older than the server', async () => {
    const { repo, src, env } = state();
    const before = await repo.keys('bad/dumps/');
    const noTable = await runCairn('dump', ['--dbname', 'app', '--table', 'no_such_table'], { env });
    assert.equal(noTable.code, 3, noTable.stderr);
    assert.match(noTable.stderr, /pg_dump of database "app" failed \(exit status 1\): pg_dump: error: no matching tables were found/);

    const cut = await fakePgBin(src, '$REAL "$@" | head -c 300000\nkill -9 $$');
    const c = await runCairn('dump', ['--dbname', 'app', '--pg-bin', cut], { env });
    assert.equal(c.code, 3, c.stderr);
    assert.match(c.stderr, /pg_dump of database "app" failed \(signal SIGKILL\)/);

    const old = await fakePgBin(src, 'exit 0', 'pg_dump (PostgreSQL) 14.9');
    const o = await runCairn('dump', ['--dbname', 'app', '--pg-bin', old], { env });
    assert.equal(o.code, 3, o.stderr);
    assert.match(o.stderr, /pg_dump ".*\/pg_dump" is version 14, older than the server \(15\); install the PostgreSQL 15 client programs/);
    assert.deepEqual(await repo.keys('bad/dumps/'), before, 'no object and no manifest left behind');
    assert.equal((await repo.keys('bad/locks/')).length, 0, 'the dump lease is released');
  });

  it('stops on SIGTERM mid-dump, ending pg_dump and keeping nothing', async () => {
    const { repo, src, env } = state();
    const before = await repo.keys('bad/dumps/');
    const slow = await fakePgBin(src, 'echo $$ > $DIR/pid\n$REAL "$@" | head -c 300000\nexec sleep 60');
    const child = spawnAsPg(binPath('dump'), ['--dbname', 'app', '--pg-bin', slow], { env });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // Until the fake pg_dump has written its bytes and sleeps (as the same pid).
    let pid = 0;
    for (let i = 0; i < 100 && !pid; i++) {
      await new Promise((r) => setTimeout(r, 100));
      pid = Number(await readFile(join(slow, 'pid'), 'utf8').catch(() => '0'));
    }
    assert.ok(pid > 0, 'the fake pg_dump started');
    await new Promise((r) => setTimeout(r, 1000));
    child.kill('SIGTERM');
    const code = await exited;
    assert.equal(code, 70, stderr);
    assert.match(stderr, /interrupted by SIGTERM/);
    assert.deepEqual(await repo.keys('bad/dumps/'), before, 'nothing of the interrupted dump is left');
    assert.equal((await repo.keys('bad/locks/')).length, 0, 'the dump lease is released');
    assert.throws(() => process.kill(pid, 0), /ESRCH/, 'pg_dump was ended');
  });
});
