import assert from 'node:assert/strict';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { MemoryDriver } from '@cairn/core/storage/memory';
import { manifestKey, MANIFEST_FORMAT_STREAM, type BackupManifest, type ManifestFile } from '@cairn/core/backup/manifest';
import { comparePaths, openManifest, writeManifest, writeManifestRecords } from '@cairn/core/backup/manifest-stream';
import { createRecords, parentLookup } from './records.js';
import type { StoreTarget } from './store.js';

const ID = '20261121-020000F';
const NEW = '20261122-020000I';

function file(path: string, i: number, ref = ID): ManifestFile {
  return { path, size: 8192 * i, mode: 0o600, mtime: 1763690400, sha256: i.toString(16).padStart(64, '0'), ref, key: `main/backups/${ref}/data/${path}.zst`, storedSize: 100 + i };
}

function manifest(files: ManifestFile[]): BackupManifest {
  return {
    format: MANIFEST_FORMAT_STREAM, tool: { name: 'cairn-basebackup', version: '0' }, id: ID, type: 'full', parent: null, references: [], source: 'local', cluster: 'main',
    systemId: '7312345678901234567', pgVersionNum: 150004, pgMajor: '15', walSegmentSize: 16777216, timeline: 1,
    start: { time: '2026-11-21T02:00:00.000Z', lsn: '0/2000028', wal: '000000010000000000000002' },
    stop: { time: '2026-11-21T02:01:00.000Z', lsn: '0/2000100', wal: '000000010000000000000002' },
    checkpointLsn: '0/2000060', compress: 'zstd:1', encrypted: false, dataChecksums: true, backupLabel: 'x\n', tablespaceMap: null,
    tablespaces: [], dirs: [], files,
    totals: { size: 0, storedSize: 0, filesStored: files.length, filesReferenced: 0, badPages: 0 },
    durationSeconds: 1,
  };
}

async function targetWithParent(d: MemoryDriver): Promise<StoreTarget> {
  const opened = await openManifest(d, 'main', ID);
  assert.ok(opened);
  return { index: 0, driver: d, spec: { compress: { alg: 'none', level: 0 } } as StoreTarget['spec'], parent: opened.head, parentManifest: opened, signal: new AbortController().signal };
}

const PARENT = ['PG_VERSION', 'base/1/1259', 'base/1/16384', 'base/1/16384.1', 'base/1-x/1', 'base/10/1', 'global/pg_control'].map((p, i) => file(p, i + 1));

test('the parent is read beside the walk: each path gets its record, files new or dropped since get none', async () => {
  const d = new MemoryDriver();
  await writeManifest(d, manifest(PARENT));
  const t = await targetWithParent(d);
  const look = parentLookup([t], true, new AbortController().signal);
  // The walk: dropped base/1/1259 and base/10/1; new base/1/16385 and base/2/1.
  const walk = ['PG_VERSION', 'base/1/16384', 'base/1/16384.1', 'base/1/16385', 'base/1-x/1', 'base/2/1', 'global/pg_control'];
  assert.deepEqual([...walk].sort(comparePaths), walk);
  const got: (string | undefined)[] = [];
  for (const p of walk) got.push((await look.at(p)).get(t)?.sha256);
  const want = walk.map((p) => PARENT.find((f) => f.path === p)?.sha256);
  assert.deepEqual(got, want);
  await look.finish();
});

test('a damaged parent manifest fails the backup before its manifest is written, even when the walk ended first', async () => {
  const d = new MemoryDriver();
  await writeManifest(d, manifest(PARENT));
  // Alter the last record (its size) and keep the end line: the checksum no longer matches.
  const key = manifestKey('main', ID);
  const text = (await buffer(await d.read(key))).toString('utf8');
  await d.remove(key);
  await d.write(key, Buffer.from(text.replace('"path":"global/pg_control","size":57344', '"path":"global/pg_control","size":8192')));
  const t = await targetWithParent(d);
  const look = parentLookup([t], true, new AbortController().signal);
  assert.equal((await look.at('PG_VERSION')).get(t)?.path, 'PG_VERSION');
  await assert.rejects(look.finish(), { code: 'FORMAT_INVALID' });
});

test('out of order (a tar stream), the parent is looked up by path', async () => {
  const d = new MemoryDriver();
  await writeManifest(d, manifest(PARENT));
  const t = await targetWithParent(d);
  const look = parentLookup([t], false, new AbortController().signal);
  const [a, b] = await Promise.all([look.at('global/pg_control'), look.at('PG_VERSION')]);
  assert.equal(a.get(t)?.path, 'global/pg_control');
  assert.equal(b.get(t)?.path, 'PG_VERSION');
  assert.equal((await look.at('base/9/9')).size, 0);
});

test('records spool in order with the totals of the header; pg_control keeps its place; the manifest reads back', async () => {
  const r = createRecords(NEW);
  r.add(file('PG_VERSION', 1, NEW));
  r.add(file('base/1/16384', 2, ID)); // referenced
  const hole = r.hole();
  r.add(file('pg_xact/0000', 3, NEW));
  r.fill(hole, { ...file('global/pg_control', 4, NEW), bundle: { key: 'b', offset: 512 } });
  assert.deepEqual([r.size, r.storedFilesSize, r.filesStored, r.filesReferenced], [8192 * 10, 8192 * 8, 3, 1]);
  assert.deepEqual(r.alone, [`main/backups/${NEW}/data/PG_VERSION.zst`, `main/backups/${NEW}/data/pg_xact/0000.zst`]);
  const d = new MemoryDriver();
  const { files: _f, ...head } = { ...manifest([]), id: NEW };
  await writeManifestRecords(d, head, r.spool.count, r.spool.records());
  const opened = await openManifest(d, 'main', NEW);
  const back: string[] = [];
  for await (const f of opened!.files()) back.push(f.path);
  assert.deepEqual(back, ['PG_VERSION', 'base/1/16384', 'global/pg_control', 'pg_xact/0000']);
});

test('records out of order fail the manifest write, and no manifest appears', async () => {
  const r = createRecords(NEW);
  r.add(file('base/2/1', 1, NEW));
  r.add(file('base/1/1', 2, NEW));
  const d = new MemoryDriver();
  const { files: _f, ...head } = { ...manifest([]), id: NEW };
  await assert.rejects(writeManifestRecords(d, head, r.spool.count, r.spool.records()), /out of order/);
  assert.equal(await d.stat(manifestKey('main', NEW)), undefined);
});
