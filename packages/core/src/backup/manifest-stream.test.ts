import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buffer } from 'node:stream/consumers';
import { MemoryDriver } from '../storage/memory.js';
import { manifestKey, MANIFEST_FORMAT, MANIFEST_FORMAT_PAGES, MANIFEST_FORMAT_STREAM, readManifest, type BackupManifest, type ManifestFile } from './manifest.js';
import { comparePaths, manifestLines, openManifest, openManifestBytes, readManifestSummary, writeManifest } from './manifest-stream.js';
import { readBackupSummaries } from '../repo/catalog.js';

const ID = '20261121-020000F';

function file(path: string, i: number): ManifestFile {
  return { path, size: 8192 * i, mode: 0o600, mtime: 1763690400, sha256: i.toString(16).padStart(64, '0'), ref: ID, key: `main/backups/${ID}/data/${path}.zst`, storedSize: 100 + i };
}

function manifest(files: ManifestFile[], format: BackupManifest['format'] = MANIFEST_FORMAT_STREAM): BackupManifest {
  return {
    format, tool: { name: 'cairn-basebackup', version: '0' }, id: ID, type: 'full', parent: null, references: [], source: 'local', cluster: 'main',
    systemId: '7312345678901234567', pgVersionNum: 150004, pgMajor: '15', walSegmentSize: 16777216, timeline: 1,
    start: { time: '2026-11-21T02:00:00.000Z', lsn: '0/2000028', wal: '000000010000000000000002' },
    stop: { time: '2026-11-21T02:01:00.000Z', lsn: '0/2000100', wal: '000000010000000000000002' },
    checkpointLsn: '0/2000060', compress: 'zstd:1', encrypted: false, dataChecksums: true, backupLabel: 'START WAL LOCATION: 0/2000028\n', tablespaceMap: null,
    tablespaces: [], dirs: [{ path: 'base', mode: 0o700 }, { path: 'base/1', mode: 0o700 }],
    files,
    totals: { size: files.reduce((s, f) => s + f.size, 0), storedSize: files.reduce((s, f) => s + f.storedSize, 0), filesStored: files.length, filesReferenced: 0, badPages: 0 },
    durationSeconds: 60,
  };
}

// Unsorted on purpose: the writer puts them in comparePaths order.
const FILES = ['global/pg_control', 'base/1/16384', 'base/1/16384.1', 'base/1/16384_fsm', 'base/10/1', 'PG_VERSION', 'base/1-x/1'].map(file);

async function collect(d: MemoryDriver): Promise<ManifestFile[]> {
  const opened = await openManifest(d, 'main', ID);
  assert.ok(opened);
  const out: ManifestFile[] = [];
  for await (const f of opened.files()) out.push(f);
  return out;
}

/** Rewrites the stored manifest through `edit` of its lines. */
async function editStored(d: MemoryDriver, edit: (lines: string[]) => string[]): Promise<void> {
  const key = manifestKey('main', ID);
  const text = (await buffer(await d.read(key))).toString('utf8');
  await d.remove(key);
  await d.write(key, Buffer.from(edit(text.split('\n').slice(0, -1)).map((l) => l + '\n').join('')));
}

test('paths order as a depth-first walk in name order meets them', () => {
  const sorted = ['base/1/16384', 'base/1-x/1', 'base/1/16384.1'].sort(comparePaths);
  assert.deepEqual(sorted, ['base/1/16384', 'base/1/16384.1', 'base/1-x/1']);
  assert.equal(comparePaths('a', 'a'), 0);
  assert.ok(comparePaths('a', 'a/b') < 0);
});

test('a streamed manifest reads back record for record, its summary from the first line alone', async () => {
  const d = new MemoryDriver();
  const m = manifest(FILES);
  await writeManifest(d, m);
  const text = (await buffer(await d.read(manifestKey('main', ID)))).toString('utf8');
  const lines = text.split('\n');
  assert.equal(lines.length, FILES.length + 3, 'header, records, end line, and the final newline');
  assert.equal(JSON.parse(lines[0]!).fileCount, FILES.length);
  const expect = [...FILES].sort((a, b) => comparePaths(a.path, b.path));
  assert.deepEqual(await collect(d), expect);
  assert.deepEqual(await readManifest(d, 'main', ID), { ...m, files: expect });
  const s = await readManifestSummary(d, 'main', ID);
  assert.deepEqual(s?.totals, m.totals);
  assert.equal(s?.format, MANIFEST_FORMAT_STREAM);
  assert.equal((s as Record<string, unknown>).dirs, undefined);
  assert.deepEqual((await readBackupSummaries(d, 'main')).map((b) => b.id), [ID]);
  // Written once: a second manifest for the same backup is refused.
  await assert.rejects(writeManifest(d, m), { code: 'WRITE_CONFLICT' });
});

test('a truncated manifest is found out before its records are trusted', async () => {
  for (const cut of [1, 2, 4]) {
    const d = new MemoryDriver();
    await writeManifest(d, manifest(FILES));
    // Lines dropped from the end: the end line first, then records too.
    await editStored(d, (l) => l.slice(0, l.length - cut));
    await assert.rejects(collect(d), { code: 'FORMAT_INVALID', message: /truncated/ }, `cut ${cut}`);
  }
  // Cut in the middle of a line.
  const d = new MemoryDriver();
  await writeManifest(d, manifest(FILES));
  const key = manifestKey('main', ID);
  const bytes = await buffer(await d.read(key));
  await d.remove(key);
  await d.write(key, bytes.subarray(0, bytes.length - 30));
  await assert.rejects(collect(d), { code: 'FORMAT_INVALID' });
  await assert.rejects(readManifest(d, 'main', ID), { code: 'FORMAT_INVALID' });
});

test('an altered, reordered or repeated record fails the read', async () => {
  const cases: [string, (l: string[]) => string[], RegExp][] = [
    ['altered', (l) => l.map((x, i) => (i === 2 ? x.replace('"size":', '"size":1') : x)), /checksum does not match/],
    ['swapped', (l) => [l[0]!, l[2]!, l[1]!, ...l.slice(3)], /out of order/],
    ['repeated', (l) => [l[0]!, l[1]!, l[1]!, ...l.slice(2)], /listed twice/],
    ['end line wrong count', (l) => [...l.slice(0, -1), JSON.stringify({ end: { files: 1, sha256: 'x' } })], /end line says 1/],
    ['header count', (l) => [l[0]!.replace(`"fileCount":${FILES.length}`, '"fileCount":2'), ...l.slice(1)], /more file records than the 2/],
    ['bad record', (l) => [l[0]!, '{"path":1}', ...l.slice(2)], /bad file entry/],
    ['lines after the end', (l) => [...l, l[1]!], /after its end line/],
  ];
  for (const [what, edit, message] of cases) {
    const d = new MemoryDriver();
    await writeManifest(d, manifest(FILES));
    await editStored(d, edit);
    await assert.rejects(collect(d), { code: 'FORMAT_INVALID', message }, what);
  }
});

test('the writer refuses records out of order or not as many as announced', async () => {
  const head = (({ files: _f, format: _x, ...h }) => h)(manifest(FILES));
  const drain = async (it: AsyncIterable<Buffer>) => {
    for await (const _ of it);
  };
  await assert.rejects(drain(manifestLines({ ...head, fileCount: 2 }, [file('b', 1), file('a', 2)])), { code: 'INTERNAL', message: /out of order/ });
  await assert.rejects(drain(manifestLines({ ...head, fileCount: 3 }, [file('a', 1), file('b', 2)])), { code: 'INTERNAL', message: /announced 3 files and had 2/ });
});

test('older manifests (cairn.backup/1 and /2, one JSON document) still read, whole and as a stream', async () => {
  for (const format of [MANIFEST_FORMAT, MANIFEST_FORMAT_PAGES] as const) {
    const d = new MemoryDriver();
    const m = manifest(FILES, format);
    await d.write(manifestKey('main', ID), Buffer.from(JSON.stringify(m, null, 2) + '\n'));
    assert.deepEqual(await collect(d), FILES, format);
    assert.deepEqual(await readManifest(d, 'main', ID), m);
    assert.deepEqual((await readManifestSummary(d, 'main', ID))?.totals, m.totals);
    // Compact JSON too (one line: not taken for a streamed header).
    await d.remove(manifestKey('main', ID));
    await d.write(manifestKey('main', ID), Buffer.from(JSON.stringify(m)));
    assert.deepEqual(await readManifest(d, 'main', ID), m);
  }
  const d = new MemoryDriver();
  await d.write(manifestKey('main', ID), Buffer.from('{"format":'));
  await assert.rejects(readManifest(d, 'main', ID), { code: 'FORMAT_INVALID', message: /not valid JSON/ });
  assert.equal(await openManifest(d, 'main', '20261121-030000F'), undefined);
});

test('a manifest stored under another backup\'s name is refused, in every format; bytes read once check the same way', async () => {
  const other = '20261122-020000F';
  for (const format of [MANIFEST_FORMAT_STREAM, MANIFEST_FORMAT_PAGES] as const) {
    const d = new MemoryDriver();
    const m = manifest(FILES, format);
    if (format === MANIFEST_FORMAT_STREAM) await writeManifest(d, m);
    else await d.write(manifestKey('main', ID), Buffer.from(JSON.stringify(m, null, 2) + '\n'));
    const bytes = await buffer(await d.read(manifestKey('main', ID)));
    // As if copied under the other backup's name.
    await d.write(manifestKey('main', other), bytes);
    await assert.rejects(openManifest(d, 'main', other), /names backup "20261121-020000F", not "20261122-020000F"/);
    await assert.rejects(readManifest(d, 'main', other), /names backup/);
    await assert.rejects(openManifestBytes(bytes, other, 'x'), /names backup/);
    const opened = await openManifestBytes(bytes, ID, 'x');
    const files: ManifestFile[] = [];
    for await (const f of opened.files()) files.push(f);
    assert.deepEqual(files.map((f) => f.path).sort(comparePaths), FILES.map((f) => f.path).sort(comparePaths));
  }
});
