// The tar reader of @cairn/core on what it is for: the stdout of a real
// `pg_basebackup -D - -Ft -X none -c fast`, including the backup_manifest that
// pg_basebackup injects into the stream, checked against the cluster's files.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { readTarEntries, type TarHeader } from '@cairn/core/backup/tar-reader';
import { findBadPages, firstBlockOf, isChecksummedRelationFile } from '@cairn/core/pg/page-checksum';
import { parseLsn } from '@cairn/core/wal/lsn';
import { runCleanups } from './cleanup.js';
import { createCluster } from './pg-cluster.js';

after(runCleanups);

interface ManifestFile {
  Path: string;
  Size: number;
}

test('reads pg_basebackup -Ft from stdout: every file, the label and the manifest', { timeout: 120_000 }, async (t) => {
  const c = await createCluster({ name: 'tarpg' });
  await c.start();
  await c.psql(`create table t (id int primary key, v text);
                insert into t select g, md5(g::text) from generate_series(1, 20000) g;`);

  const child = c.spawnBasebackupTar();
  const stderr: Buffer[] = [];
  child.stderr!.on('data', (d: Buffer) => stderr.push(d));
  const exited = once(child, 'exit');

  const headers = new Map<string, TarHeader>();
  const bodies = new Map<string, Buffer>();
  let bytes = 0;
  for await (const e of readTarEntries(child.stdout as Readable, 'pg_basebackup of "tarpg"')) {
    assert.equal(headers.has(e.header.path), false, `${e.header.path} twice`);
    headers.set(e.header.path, e.header);
    if (e.header.type !== 'file') continue;
    const parts: Buffer[] = [];
    for await (const part of e.body()) parts.push(Buffer.from(part));
    const body = Buffer.concat(parts);
    assert.equal(body.length, e.header.size, e.header.path);
    bytes += body.length;
    bodies.set(e.header.path, body); // a fresh cluster: some 40 MB
  }
  const [code] = await exited;
  assert.equal(code, 0, Buffer.concat(stderr).toString());

  for (const p of ['PG_VERSION', 'global/pg_control', 'backup_label', 'backup_manifest', 'postgresql.conf', 'base/1/PG_VERSION']) {
    assert.equal(headers.get(p)?.type, 'file', p);
  }
  assert.equal(headers.get('base')?.type, 'dir');
  assert.equal(headers.get('pg_wal')?.type, 'dir');
  assert.equal(headers.get('global/pg_control')?.size, 8192);

  // Files that do not change while the server runs: byte for byte as in PGDATA.
  for (const p of ['PG_VERSION', 'base/1/PG_VERSION', 'postgresql.conf', 'pg_hba.conf']) {
    assert.ok(bodies.get(p)!.equals(await readFile(join(c.pgdata, p))), p);
  }
  assert.equal(bodies.get('PG_VERSION')!.toString(), '15\n');

  const label = bodies.get('backup_label')!.toString();
  const start = /^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+) /m.exec(label);
  assert.ok(start, label);

  // The manifest pg_basebackup injected lists every other file with its size.
  const manifest = JSON.parse(bodies.get('backup_manifest')!.toString()) as { 'PostgreSQL-Backup-Manifest-Version': number; Files: ManifestFile[] };
  assert.equal(manifest['PostgreSQL-Backup-Manifest-Version'], 1);
  const listed = new Map(manifest.Files.map((f) => [f.Path, f.Size]));
  const files = [...headers.values()].filter((h) => h.type === 'file' && h.path !== 'backup_manifest');
  assert.deepEqual(new Set(listed.keys()), new Set(files.map((h) => h.path)));
  for (const h of files) assert.equal(listed.get(h.path), h.size, h.path);

  // And the pages of every relation file verify against the backup's start LSN.
  let pages = 0;
  for (const [p, body] of bodies) {
    if (!isChecksummedRelationFile(p)) continue;
    assert.deepEqual(findBadPages(body, 0, firstBlockOf(p), parseLsn(start[1]!)), [], p);
    pages += body.length / 8192;
  }
  assert.ok(pages > 100);
  t.diagnostic(`${headers.size} entries, ${bytes} bytes, ${pages} pages checked`);
  await c.destroy();
});
