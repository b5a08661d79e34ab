// Page checksums computed by @cairn/core against the ones PostgreSQL itself
// stored in a cluster made with initdb -k: every relation file of a fresh
// cluster verifies, and a flipped byte is found on the right block.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, test } from 'node:test';
import { BLCKSZ, findBadPages, firstBlockOf, isChecksummedRelationFile, pageChecksum } from '@cairn/core/pg/page-checksum';
import { MAX_LSN } from '@cairn/core/wal/lsn';
import { runCleanups } from './cleanup.js';
import { createCluster } from './pg-cluster.js';

after(runCleanups);

async function* walk(dir: string): AsyncGenerator<string> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.isFile()) yield p;
  }
}

test('checksums of a real cluster: stored pd_checksum matches, a flipped byte is found', { timeout: 120_000 }, async (t) => {
  const c = await createCluster({ name: 'cksum' });
  await c.start();
  assert.equal(await c.psql('show data_checksums'), 'on');
  await c.psql(`create table t (id int primary key, v text);
                insert into t select g, md5(g::text) from generate_series(1, 5000) g;
                vacuum t;
                checkpoint;`);
  const relPath = await c.psql(`select pg_relation_filepath('t')`);
  // A clean shutdown leaves no page half-written while we read the files.
  await c.stop();

  assert.equal(isChecksummedRelationFile(relPath), true, relPath);
  assert.equal(firstBlockOf(relPath), 0);
  const file = await readFile(join(c.pgdata, relPath));
  const pages = file.length / BLCKSZ;
  assert.ok(Number.isInteger(pages) && pages > 10, `${relPath}: ${file.length} bytes`);

  // The value PostgreSQL stored on each page is the one we compute.
  for (let b = 0; b < pages; b++) {
    const page = file.subarray(b * BLCKSZ, (b + 1) * BLCKSZ);
    if (page.readUInt16LE(14) === 0) continue; // new page: no checksum
    assert.equal(pageChecksum(page, b), page.readUInt16LE(8), `block ${b} of ${relPath}`);
  }
  assert.deepEqual(findBadPages(file, 0, 0, MAX_LSN), []);

  const copy = Buffer.from(file);
  copy[3 * BLCKSZ + 4000]! ^= 0x20;
  assert.deepEqual(findBadPages(copy, 0, 0, MAX_LSN), [3]);
  // The same page read from a later offset of the file is still block 3.
  assert.deepEqual(findBadPages(copy.subarray(2 * BLCKSZ, 5 * BLCKSZ), 2 * BLCKSZ, 0, MAX_LSN), [3]);

  // Every checksummed file of the cluster (catalogs, fsm and vm forks) verifies.
  let files = 0;
  let checked = 0;
  for await (const p of walk(c.pgdata)) {
    const rel = relative(c.pgdata, p);
    if (!isChecksummedRelationFile(rel)) continue;
    const buf = await readFile(p);
    assert.equal(buf.length % BLCKSZ, 0, rel);
    assert.deepEqual(findBadPages(buf, 0, firstBlockOf(rel), MAX_LSN), [], rel);
    files++;
    checked += buf.length / BLCKSZ;
  }
  assert.ok(files > 100, `${files} relation files`);
  t.diagnostic(`${files} relation files, ${checked} pages verified`);
  await c.destroy();
});
