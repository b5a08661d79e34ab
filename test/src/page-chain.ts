// Page-level diff and incr backups (issue 17 items 1-2), end to end on a real
// cluster with data checksums: a chain full → incr → incr, then a timeline
// switch, diff → incr on the new timeline, with truncated, extended, dropped
// and recreated tables, a relation file replaced under the same name, and new
// databases in between. Each restore must give byte-identical relation files
// to a full backup taken at the same point, the captured rows, pgbench's
// invariant and a clean pg_amcheck; --delta over an earlier link of the
// chain fetches only the newer pages; cairn-verify reads every layer.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { runAsPg } from '@cairn/testkit/run-as';
import type { RepoFixture } from './repo-fixture.js';
import { assertRestoredEquals, cairnOk, readStoredManifest, restoreAndStart, SNAPSHOT_SQL, walPushCommand, type RestoreJson } from './pitr-harness.js';

interface PagedEntry {
  path: string;
  size: number;
  ref: string;
  storedSize: number;
  pages?: { base: { ref: string; size: number }; layers: { ref: string; blocks: string; size: number; fileSize: number }[] };
}

/** Every table's rows, per database: what a restore must give back. */
const TABLES_SQL = `select coalesce(json_object_agg(t, h order by t), '{}')::text from (
  select c.relname t, (xpath('/row/h/text()', query_to_xml(format('select md5(coalesce(string_agg(x::text, '','' order by x::text), '''')) h from %I x', c.relname), false, true, '')))[1]::text h
  from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' and n.nspname = 'public') s`;

async function tables(c: Cluster, db = 'postgres'): Promise<string> {
  return c.psql(TABLES_SQL, { db });
}

/** SHA-256 of every main fork under base/ of a data directory. */
function mainForks(pgdata: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const db of readdirSync(join(pgdata, 'base'))) {
    for (const name of readdirSync(join(pgdata, 'base', db))) {
      if (!/^[1-9][0-9]*(\.[1-9][0-9]*)?$/.test(name)) continue;
      out.set(`base/${db}/${name}`, createHash('sha256').update(readFileSync(join(pgdata, 'base', db, name))).digest('hex'));
    }
  }
  return out;
}

async function backup(src: Cluster, repo: RepoFixture, type: 'full' | 'diff' | 'incr'): Promise<{ id: string; stderr: string }> {
  await src.psql('checkpoint');
  const r = await cairnOk('basebackup', ['--pgdata', src.pgdata, '--type', type, '--json', '--log-level', 'info'], { ...src.env, ...repo.env });
  return { id: (JSON.parse(r.stdout) as { id: string }).id, stderr: r.stderr };
}

async function manifestFiles(repo: RepoFixture, id: string): Promise<Map<string, PagedEntry>> {
  const m = await readStoredManifest(repo, id);
  return new Map((m.files as unknown as PagedEntry[]).map((f) => [f.path, f]));
}

async function relPath(c: Cluster, table: string, db = 'postgres'): Promise<string> {
  return (await c.psql(`select pg_relation_filepath('${table}')`, { db })).trim();
}

/** A data directory restored from `id` and not started. */
async function restoreOnly(repo: RepoFixture, name: string, id: string, extra: string[] = [], into?: Cluster): Promise<{ cluster: Cluster; result: RestoreJson }> {
  const cluster = into ?? (await createCluster({ name, initdb: false, env: repo.env, conf: { archive_mode: 'off' } }));
  const r = await cairnOk('restore', ['--pgdata', cluster.pgdata, '--json', '--set', id, '--target', 'immediate', '--target-action', 'promote', ...extra], repo.env);
  return { cluster, result: JSON.parse(r.stdout) as RestoreJson };
}

export async function pageChainScenario(repo: RepoFixture, tag: string): Promise<void> {
  const src = await createCluster({ name: `${tag}-src`, archiveCommand: walPushCommand(), archiveTimeout: '1s', env: repo.env, conf: { autovacuum: 'off' } });
  await src.start();
  await src.psql('create table marker(v text)');
  await src.pgbench(['-i', '-s', '3', '-q']); // pgbench_accounts ~40 MB: the worker-thread path
  await src.psql(`create table shrink as select g, repeat('s', 400) pad from generate_series(1, 20000) g;
    create table grow(g int, pad text); insert into grow select g, repeat('g', 400) from generate_series(1, 200) g;
    create table dropped(g int, pad text); insert into dropped select g, 'old' from generate_series(1, 1000) g;
    create table victim(g int, pad text); insert into victim select g, 'victim' from generate_series(1, 2000) g;
    create table twin(g int, pad text); insert into twin select -g, 'twin' from generate_series(1, 3000) g;
    insert into marker values ('full')`);
  const full = await backup(src, repo, 'full');

  // Changes 1: updates spread over pgbench's tables, a truncation by VACUUM,
  // an extension, a table dropped and created again under its name.
  await src.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
  await src.psql(`delete from shrink where g > 5000; vacuum shrink;
    insert into grow select g, repeat('G', 400) from generate_series(201, 20000) g;
    drop table dropped; create table dropped(g int, pad text); insert into dropped select g, 'new' from generate_series(1, 500) g;
    insert into marker values ('incr1')`);
  const incr1 = await backup(src, repo, 'incr');
  const m1 = await manifestFiles(repo, incr1.id);
  const accounts = m1.get(await relPath(src, 'pgbench_accounts'))!;
  assert.ok(accounts.pages, `pgbench_accounts is stored page-level in ${incr1.id}:\n${incr1.stderr}`);
  assert.equal(accounts.pages.base.ref, full.id);
  assert.ok(accounts.storedSize * 4 < accounts.size, `pgbench_accounts: ${accounts.storedSize} bytes stored for a ${accounts.size}-byte file`);
  const shrunk = m1.get(await relPath(src, 'shrink'))!;
  assert.ok(shrunk.pages, 'the truncated table is page-level');
  assert.ok(shrunk.size < shrunk.pages.base.size, `shrink was cut from ${shrunk.pages.base.size} to ${shrunk.size} bytes`);
  const grown = m1.get(await relPath(src, 'grow'))!;
  assert.ok(grown.pages && grown.size > grown.pages.base.size, 'the extended table is page-level and longer');

  // Changes 2: the truncated table grows again, the grown one is cut, new
  // databases (one copied file by file from its template), and a relation
  // file replaced under its name while the server is down (new inode, pages
  // with old LSNs: another relation's).
  await src.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
  await src.psql(`insert into shrink select g, repeat('S', 400) from generate_series(20001, 30000) g;
    delete from grow where g > 100; vacuum grow; insert into marker values ('incr2')`);
  await src.psql('create database newdb');
  await src.psql('create table n(g int); insert into n select generate_series(1, 50000)', { db: 'newdb' });
  await src.psql('create database copied strategy file_copy template newdb');
  const victim = join(src.pgdata, await relPath(src, 'victim'));
  const twin = join(src.pgdata, await relPath(src, 'twin'));
  await src.stop();
  const swap = await runAsPg('/bin/sh', ['-c', `cp "$1" "$2.tmp" && mv "$2.tmp" "$2" && rm -f "$2_fsm" "$2_vm"`, 'swap', twin, victim], { allowFail: true });
  assert.equal(swap.code, 0, swap.stderr);
  await src.start();
  const incr2 = await backup(src, repo, 'incr');
  const m2 = await manifestFiles(repo, incr2.id);
  const v2 = m2.get(await relPath(src, 'victim'))!;
  assert.equal(v2.pages, undefined, 'a file replaced under its name (another inode) is stored whole');
  assert.equal(v2.ref, incr2.id);
  assert.ok(m2.get(await relPath(src, 'pgbench_accounts'))!.pages!.layers.length === 2, 'incr2 adds a second layer over incr1');
  const rows2 = await tables(src);
  const snap2 = await src.psql(SNAPSHOT_SQL);
  const newdb2 = await tables(src, 'newdb');
  await src.stop();

  // The chain full → incr1 → incr2 restores, and --delta over the full's
  // restore fetches only the newer pages.
  const r2 = await restoreAndStart(repo, `${tag}-r2`, ['--set', incr2.id, '--target', 'immediate', '--target-action', 'promote'], { archive: true });
  const tl2 = r2.cluster;
  await assertRestoredEquals(tl2, snap2, 'incr2');
  assert.equal(await tables(tl2), rows2, 'incr2: every table of postgres');
  assert.equal(await tables(tl2, 'newdb'), newdb2, 'incr2: newdb');
  assert.equal(await tables(tl2, 'copied'), newdb2, 'incr2: the database copied from newdb');
  const d = await restoreOnly(repo, `${tag}-delta`, full.id);
  const again = await restoreOnly(repo, `${tag}-delta`, incr2.id, ['--delta'], d.cluster);
  const plain = await restoreOnly(repo, `${tag}-plain`, incr2.id);
  // What it must write: the new databases, the files stored whole, the
  // layers' pages (about 40% of the plain restore here).
  assert.ok(again.result.bytesWritten < plain.result.bytesWritten * 0.6, `--delta over the full wrote ${again.result.bytesWritten} bytes, a plain restore ${plain.result.bytesWritten}`);
  assert.deepEqual(mainForks(d.cluster.pgdata), mainForks(plain.cluster.pgdata), '--delta gives the same relation files as a plain restore');
  await d.cluster.destroy();
  await plain.cluster.destroy();

  // A timeline switch: the restored cluster is promoted onto timeline 2 and
  // becomes the source. Its diff (parent: the full, on timeline 1) must not
  // trust page LSNs; the incr after it (same timeline) is page-level again.
  await tl2.psql("alter system set autovacuum = off; select pg_reload_conf()");
  await tl2.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
  await tl2.psql("insert into marker values ('diff on timeline 2')");
  const diff = await backup(tl2, repo, 'diff');
  assert.match(diff.stderr, /compared whole, not page by page: the timeline changed/);
  const md = await manifestFiles(repo, diff.id);
  assert.ok([...md.values()].every((f) => f.pages === undefined), 'no page layers across a timeline switch');
  await tl2.pgbench(['-c', '2', '-j', '2', '-t', '300', '-n']);
  await tl2.psql(`delete from shrink where g > 1000; vacuum shrink; insert into grow select g, 'x' from generate_series(101, 5000) g;
    drop table dropped; create table dropped(g int); insert into dropped select generate_series(1, 10);
    insert into marker values ('incr3')`);
  // Read (and hint) everything first: nothing may change a page between
  // incr3 and the full taken at the same point.
  const rows3 = await tables(tl2);
  const snap3 = await tl2.psql(SNAPSHOT_SQL);
  await tl2.psql('vacuum');
  const incr3 = await backup(tl2, repo, 'incr');
  const full2 = await backup(tl2, repo, 'full');
  const m3 = await manifestFiles(repo, incr3.id);
  assert.ok([...m3.values()].some((f) => f.pages?.base.ref === diff.id), 'incr3 lays pages over the diff');
  assert.equal(await tables(tl2), rows3, 'the source stayed idle between incr3 and full2');
  await tl2.stop();

  const a = await restoreOnly(repo, `${tag}-a`, incr3.id);
  const b = await restoreOnly(repo, `${tag}-b`, full2.id);
  const fa = mainForks(a.cluster.pgdata);
  const fb = mainForks(b.cluster.pgdata);
  assert.ok(fa.size > 20, `${fa.size} relation files`);
  assert.deepEqual(fa, fb, 'the page-level chain restores byte-identical relation files to a full backup at the same point');
  await b.cluster.destroy();
  await a.cluster.start({ timeoutSec: 300 });
  await a.cluster.waitForRecoveryEnd(300_000);
  await assertRestoredEquals(a.cluster, snap3, 'incr3');
  assert.equal(await tables(a.cluster), rows3, 'incr3: every table of postgres');
  await a.cluster.destroy();

  const v = await cairnOk('verify', ['--json'], repo.env, 600_000);
  const vr = JSON.parse(v.stdout) as { ok: boolean; problems: unknown[] };
  assert.equal(vr.ok, true, `verify: ${JSON.stringify(vr.problems)}`);
  await tl2.destroy();
  await src.destroy();
}
