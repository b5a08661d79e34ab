// Helpers of the logical dump suites: a source database with varied objects,
// and the two ways of telling a restored database equals its source — the
// text of pg_dump --schema-only, and per table a row count and a checksum of
// its rows in a fixed order.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runAsPg } from '@cairn/testkit/run-as';
import type { Cluster } from '@cairn/testkit/pg-cluster';

/** Roles, a second schema, several types, a view, an index, a sequence and grants; pgbench's tables beside them. */
export async function fillSourceDatabase(c: Cluster, db: string): Promise<void> {
  await c.psql(`create database ${db}`);
  await c.pgbench(['-i', '-s', '1', '-q', db]);
  await c.psql(
    `create schema extra authorization app_owner;
     create table extra.items(id bigserial primary key, name text not null, doc jsonb, blob bytea, price numeric(12,2), at timestamptz default '2026-01-01 00:00:00+00');
     insert into extra.items(name, doc, blob, price)
       select 'item-' || g, jsonb_build_object('g', g, 'tags', jsonb_build_array('a', 'b')), decode(md5(g::text), 'hex'), g * 1.25
       from generate_series(1, 5000) g;
     insert into extra.items(name) values ('needle-row-0123456789');
     alter table extra.items owner to app_owner;
     create index items_name on extra.items(name);
     create view extra.expensive as select id, name from extra.items where price > 1000;
     grant select on extra.expensive to app_reader;
     comment on table extra.items is 'items with every kind of value';`,
    { db },
  );
}

/** pg_dump --schema-only of `db`, without the lines that differ between any two runs. */
export async function schemaText(c: Cluster, db: string): Promise<string> {
  const r = await runAsPg(join(c.clientBindir, 'pg_dump'), ['--schema-only', db], { env: c.env });
  // \restrict/\unrestrict carry a random key per run (PostgreSQL 15.14+).
  return r.stdout.split('\n').filter((l) => !/^\\(un)?restrict /.test(l)).join('\n');
}

/** Per user table: row count and MD5 of its rows as text, sorted. */
export async function tableFingerprints(c: Cluster, db: string): Promise<Record<string, string>> {
  const tables = await c.query<{ t: string }>(
    `select format('%I.%I', schemaname, tablename) t from pg_tables where schemaname not in ('pg_catalog', 'information_schema') order by 1`,
    [],
    { db },
  );
  const out: Record<string, string> = {};
  for (const { t } of tables) {
    const [row] = await c.query<{ n: string; h: string }>(`select count(*)::text n, md5(coalesce(string_agg(x::text, E'\\n' order by x::text), '')) h from ${t} x`, [], { db });
    out[t] = `${row!.n} rows, md5 ${row!.h}`;
  }
  return out;
}

/** The restored database has the source's schema text and every table's rows. */
export async function assertSameDatabase(src: Cluster, srcDb: string, dst: Cluster, dstDb: string, what: string): Promise<void> {
  const [a, b] = [await schemaText(src, srcDb), await schemaText(dst, dstDb)];
  assert.ok(a.includes('CREATE TABLE extra.items') || a.includes('CREATE TABLE public.'), `${what}: the source schema is not empty`);
  assert.equal(b, a, `${what}: pg_dump --schema-only text equals the source's`);
  const fa = await tableFingerprints(src, srcDb);
  assert.ok(Object.keys(fa).length > 0, `${what}: the source has tables`);
  assert.deepEqual(await tableFingerprints(dst, dstDb), fa, `${what}: row counts and checksums equal the source's`);
}

/** Names of the databases of a cluster (templates left out). */
export async function databases(c: Cluster): Promise<string[]> {
  return (await c.query<{ d: string }>('select datname d from pg_database where not datistemplate order by 1')).map((r) => r.d);
}
