// Logical dumps end to end (fs repository, encrypted): cairn-dump of one
// database and of --all (with the globals), restored by cairn-restore --dump
// into a fresh cluster whose schema text and rows equal the source's; the
// directory format (--jobs), --list, a single table alone; and one dump
// through an S3 repository.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { cairnOk } from './pitr-harness.js';
import { runCairn } from './tools.js';
import { assertSameDatabase, databases, fillSourceDatabase, tableFingerprints } from './dump-harness.js';

after(runCleanups);

interface DumpSummaryJson {
  id: string;
  database: string | null;
  dir: string;
  dumpFormat: 'custom' | 'directory' | 'globals';
  systemId: string;
  pgMajor: string;
  pgDumpVersion: string;
  compress: string;
  encrypted: boolean;
  totals: { size: number; storedSize: number };
}

interface State {
  repo: RepoFixture;
  src: Cluster;
  dst: Cluster;
  /** `app/ID` of the single-database dump. */
  one: string;
  /** The id of the --all run. */
  all: string;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

const ID_LINE = /^(.+)\/(\d{8}-\d{6}L)$/;

describe('cairn-dump and cairn-restore --dump (fs, encrypted)', { timeout: 600_000 }, () => {
  it('dumps one database, then --all with the globals', async () => {
    const repo = await makeRepo('fs', true);
    const src = await createCluster({ name: 'dump-src' });
    await src.start();
    await src.psql('create role app_owner; create role app_reader login');
    await fillSourceDatabase(src, 'app');
    await src.psql('create database other; ');
    await src.psql("create table t(v text); insert into t select 'other-' || g from generate_series(1, 300) g", { db: 'other' });
    const env = { ...src.env, ...repo.env };

    const r1 = await cairnOk('dump', ['--dbname', 'app'], env);
    const lines1 = r1.stdout.trim().split('\n');
    assert.equal(lines1.length, 1, `one line for one database: ${r1.stdout}`);
    const m1 = ID_LINE.exec(lines1[0]!);
    assert.ok(m1, `stdout is DATABASE/ID: ${r1.stdout}`);
    assert.equal(m1[1], 'app');
    assert.match(r1.stderr, /cairn-dump: app\/\d{8}-\d{6}L: [\d.]+ [kM]B in [\d.]+ s, stored [\d.]+ [kM]B/);
    const keys1 = await repo.keys(`main/dumps/app/${m1[2]}/`);
    assert.deepEqual(keys1, [`main/dumps/app/${m1[2]}/dump.pgdump.zst.enc`, `main/dumps/app/${m1[2]}/manifest.json`]);

    const r2 = await cairnOk('dump', ['--all', '--json'], env);
    const summaries = JSON.parse(r2.stdout) as DumpSummaryJson[];
    assert.deepEqual(summaries.map((s) => s.database), [null, 'app', 'other', 'postgres'], 'globals first, then every connectable database');
    const all = summaries[0]!.id;
    for (const s of summaries) {
      assert.equal(s.id, all, 'one id for the whole run');
      assert.equal(s.dumpFormat, s.database === null ? 'globals' : 'custom');
      assert.equal(s.pgMajor, '15');
      assert.match(s.pgDumpVersion, /\(PostgreSQL\) 15\./);
      assert.equal(s.compress, 'zstd:3');
      assert.equal(s.encrypted, true);
      assert.ok(s.totals.size > 0 && s.totals.storedSize > 0);
    }
    const app = summaries[1]!;
    assert.ok(app.totals.storedSize < app.totals.size / 2, `zstd shrinks the dump: ${app.totals.storedSize} of ${app.totals.size}`);
    assert.equal(app.systemId, (await src.psql('select system_identifier from pg_control_system()')).trim());
    // The stored objects are encrypted: no table data readable in them.
    for (const [k, body] of await repo.objects(`main/dumps/app/${all}/`)) {
      if (!k.endsWith('manifest.json')) assert.ok(!body.includes('needle-row'), `${k} is not plaintext`);
    }
    const dst = await createCluster({ name: 'dump-dst', conf: { archive_mode: 'off' } });
    await dst.start();
    st = { repo, src, dst, one: lines1[0]!, all };
  });

  it('restores the globals, then a database of the --all run with --create: same schema and rows', async () => {
    const { repo, src, dst, all } = state();
    const env = { ...dst.env, ...repo.env };
    const g = await cairnOk('restore', ['--dump', all, '--globals'], env);
    assert.match(g.stderr, new RegExp(`dump @globals/${all} run through psql`));
    const sql = await cairnOk('restore', ['--dump', `@globals/${all}`, '--list'], env);
    assert.match(sql.stdout, /CREATE ROLE app_owner;/, 'the globals as cairn-dump printed their name, listed');
    const roles = await dst.psql("select string_agg(rolname, ',' order by rolname) from pg_roles where rolname like 'app_%'");
    assert.equal(roles, 'app_owner,app_reader');
    const r = await cairnOk('restore', ['--dump', `app/${all}`, '--dbname', 'app', '--create'], env);
    assert.match(r.stderr, new RegExp(`dump app/${all} restored into database "app".*checksum verified`));
    await assertSameDatabase(src, 'app', dst, 'app', 'app from --all');
    assert.equal(await dst.psql("select tableowner from pg_tables where tablename = 'items'", { db: 'app' }), 'app_owner', 'ownership kept');
  });

  it('restores the single-database dump with --jobs, and a directory-format dump', async () => {
    const { repo, src, dst, one } = state();
    const env = { ...dst.env, ...repo.env };
    await cairnOk('restore', ['--dump', one, '--dbname', 'app_jobs', '--create', '--jobs', '2'], env);
    await assertSameDatabase(src, 'app', dst, 'app_jobs', 'app with --jobs 2');

    const d = await cairnOk('dump', ['--dbname', 'app', '--jobs', '2', '--json'], { ...src.env, ...repo.env });
    const [dir] = JSON.parse(d.stdout) as DumpSummaryJson[];
    assert.equal(dir!.dumpFormat, 'directory');
    const keys = await repo.keys(`main/dumps/app/${dir!.id}/`);
    assert.ok(keys.includes(`main/dumps/app/${dir!.id}/data/toc.dat.zst.enc`), `toc.dat stored: ${keys.join(', ')}`);
    assert.ok(keys.filter((k) => /\/data\/\d+\.dat\.zst\.enc$/.test(k)).length >= 4, 'one object per table data file');
    await cairnOk('restore', ['--dump', `app/${dir!.id}`, '--dbname', 'app_dir', '--create'], env);
    await assertSameDatabase(src, 'app', dst, 'app_dir', 'app from the directory format');
  });

  it('lists the table of contents and restores a single table alone', async () => {
    const { repo, src, dst, one } = state();
    const env = { ...dst.env, ...repo.env };
    const l = await cairnOk('restore', ['--dump', one, '--list'], env);
    assert.match(l.stdout, /TABLE DATA public pgbench_accounts/);
    assert.match(l.stdout, /TABLE extra items/);
    const r = await cairnOk('restore', ['--dump', one, '--dbname', 'only_branches', '--create', '--table', 'pgbench_branches', '--no-owner'], env);
    assert.match(r.stderr, /restored into database "only_branches"/);
    const fp = await tableFingerprints(dst, 'only_branches');
    assert.deepEqual(Object.keys(fp), ['public.pgbench_branches'], 'only the one table');
    assert.equal(fp['public.pgbench_branches'], (await tableFingerprints(src, 'app'))['public.pgbench_branches']);
  });

  it('dumps to and restores from an S3 repository', async () => {
    const { src, dst } = state();
    const s3 = await makeRepo('s3', false);
    const d = await cairnOk('dump', ['--dbname', 'other', '--compress', 'gzip:6'], { ...src.env, ...s3.env });
    const name = d.stdout.trim();
    assert.match(name, ID_LINE);
    const keys = await s3.keys('main/dumps/other/');
    assert.ok(keys.some((k) => k.endsWith('/dump.pgdump.gz')), keys.join(', '));
    await cairnOk('restore', ['--dump', name, '--dbname', 'other_s3', '--create'], { ...dst.env, ...s3.env });
    assert.deepEqual(await tableFingerprints(dst, 'other_s3'), await tableFingerprints(src, 'other'));
    assert.equal((await tableFingerprints(dst, 'other_s3'))['public.t'], (await tableFingerprints(src, 'other'))['public.t']);
  });

  it('dumps and restores a database whose name needs quoting everywhere', async () => {
    const { repo, src, dst } = state();
    const odd = `we "ird"/db's=1`;
    await src.psql(`create database "we ""ird""/db's=1"`);
    // node-postgres: psql -d would read a name holding '=' as a connection string.
    await src.query('create table t(v text)', [], { db: odd });
    await src.query("insert into t values ('odd one')", [], { db: odd });
    const d = await cairnOk('dump', ['--dbname', odd], { ...src.env, ...repo.env });
    const line = d.stdout.trim();
    assert.ok(line.startsWith(`${odd}/`), line);
    const keys = await repo.keys(`main/dumps/we%20%22ird%22%2Fdb%27s%3D1/${line.slice(odd.length + 1)}/`);
    assert.equal(keys.length, 2, `stored under the escaped directory: ${keys.join(', ')}`);
    await cairnOk('restore', ['--dump', line, '--dbname', odd, '--create'], { ...dst.env, ...repo.env });
    assert.deepEqual(await tableFingerprints(dst, odd), await tableFingerprints(src, odd));
    await dst.psql(`drop database "we ""ird""/db's=1"`);
  });

  it('refuses mixed flags, unknown dumps and a restore without a target', async () => {
    const { repo, dst, one } = state();
    const env = { ...dst.env, ...repo.env };
    const mixed = await runCairn('restore', ['--dump', one, '--dbname', 'x', '--target-time', '2026-11-21 12:00:00+00'], { env });
    assert.equal(mixed.code, 2, mixed.stderr);
    assert.match(mixed.stderr, /--target-time applies to a physical restore, not to --dump/);
    const delta = await runCairn('restore', ['--dump', one, '--dbname', 'x', '--delta'], { env });
    assert.equal(delta.code, 2, delta.stderr);
    assert.match(delta.stderr, /--delta applies to a physical restore, not to --dump/);
    const stray = await runCairn('restore', ['--pgdata', '/tmp/nowhere', '--create'], { env });
    assert.equal(stray.code, 2, stray.stderr);
    assert.match(stray.stderr, /--create applies to a logical restore only/);
    const none = await runCairn('restore', ['--dump', 'app/20200101-000000L', '--dbname', 'x'], { env });
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stderr, /no dump "app\/20200101-000000L" in the repository/);
    const ambiguous = await runCairn('restore', ['--dump', state().all, '--dbname', 'x'], { env });
    assert.equal(ambiguous.code, 2, ambiguous.stderr);
    assert.match(ambiguous.stderr, /names 3 dumps \(app\/.*, other\/.*, postgres\/.*\); give --dump DATABASE\/ID/);
    const noTarget = await runCairn('restore', ['--dump', one], { env });
    assert.equal(noTarget.code, 2, noTarget.stderr);
    assert.match(noTarget.stderr, /--dump needs --dbname NAME/);
    const both = await runCairn('dump', ['--all', '--dbname', 'app'], { env });
    assert.equal(both.code, 2, both.stderr);
    assert.match(both.stderr, /--all and --dbname exclude each other/);
    const missing = await runCairn('dump', ['--dbname', 'nosuchdb'], { env: { ...state().src.env, ...repo.env } });
    assert.equal(missing.code, 3, missing.stderr);
    assert.match(missing.stderr, /cannot connect to PostgreSQL database "nosuchdb"/);
    assert.deepEqual(await databases(dst), ['app', 'app_dir', 'app_jobs', 'only_branches', 'other_s3', 'postgres']);
  });
});
