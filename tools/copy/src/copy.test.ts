// copyRepository over the in-memory driver, on generated backups with a
// streamed manifest (cairn.backup/3): bundles whose members lie far apart in
// path order (several passes), a manifest altered between the reads of the
// copy (no manifest written), a truncated one (not copied), a rerun after a
// failed copy (what the target has is kept).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { buffer } from 'node:stream/consumers';
import { Readable } from 'node:stream';
import { backupFileKey, manifestKey, MANIFEST_FORMAT_STREAM, type ManifestFile } from '@cairn/core/backup/manifest';
import { comparePaths, writeManifestRecords, type ManifestHead } from '@cairn/core/backup/manifest-stream';
import { createBundler } from '@cairn/core/backup/bundle';
import { encodeWhole } from '@cairn/core/codec/file-codec';
import { encodedExtension, parseCompress, type EncodeSpec } from '@cairn/core/codec/index';
import { ensureRepoConfig } from '@cairn/core/repo/repo-config';
import { MemoryDriver } from '@cairn/core/storage/memory';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { segmentName } from '@cairn/core/wal/segment';
import { isCairnError } from '@cairn/core/cli/errors';
import { copyRepository, type CopyOptions } from './copy.js';

const SEG = 16 * 1024 * 1024;
const SYS = '7300000000000000001';
const ID = '20261121-020000F';
const spec: EncodeSpec = { compress: parseCompress('zstd:1') };
const ext = encodedExtension(spec);
const log = { info() {}, warn() {}, debug() {} };
const signal = new AbortController().signal;

function head(fileCount: number): ManifestHead {
  return {
    format: MANIFEST_FORMAT_STREAM, tool: { name: 'cairn-basebackup', version: '0' }, id: ID, type: 'full', parent: null, references: [], source: 'local',
    cluster: 'main', systemId: SYS, pgVersionNum: 150004, pgMajor: '15', walSegmentSize: SEG, timeline: 1,
    start: { time: '2026-11-21T02:00:00Z', lsn: '0/2000028', wal: segmentName(1, 2n, SEG) },
    stop: { time: '2026-11-21T02:01:00Z', lsn: '0/3000100', wal: segmentName(1, 3n, SEG) },
    checkpointLsn: '0/2000060', compress: 'zstd:1', encrypted: false, dataChecksums: true, backupLabel: '', tablespaceMap: null, tablespaces: [], dirs: [],
    totals: { size: 0, storedSize: 0, filesStored: fileCount, filesReferenced: 0, badPages: 0 }, durationSeconds: 60,
  } as unknown as ManifestHead;
}

/**
 * A source with one full backup of `n` small files. Bundled (bundles of
 * about `bundleTarget` bytes), the files are added to the bundles in the
 * order `order` gives (a tar stream's order: members of one bundle far apart
 * in the manifest's path order); `alone` files are stored as objects.
 */
async function makeSource(n: number, o: { bundleTarget?: number; order?: (paths: string[]) => string[] } = {}): Promise<{ driver: MemoryDriver; manifest: Buffer }> {
  const driver = new MemoryDriver();
  await ensureRepoConfig(driver, 'main', undefined, new Date('2026-11-21T00:00:00Z'));
  const paths = Array.from({ length: n }, (_, i) => `base/5/${10000 + i}`);
  const bundler = o.bundleTarget ? createBundler({ driver, cluster: 'main', id: ID, signal, target: o.bundleTarget }) : undefined;
  const files: ManifestFile[] = [];
  for (const path of o.order ? o.order(paths) : paths) {
    const data = Buffer.from(`file ${path} `.repeat(20 + (path.length % 7)));
    const r = await encodeWhole(data, spec);
    const key = backupFileKey('main', ID, path, ext);
    const f: ManifestFile = { path, size: r.size, mode: 0o600, mtime: 0, sha256: r.sha256, ref: ID, key, storedSize: r.stored.length };
    const bundle = bundler ? await bundler.add(key.slice(`main/backups/${ID}/`.length), r.stored, 0) : undefined;
    if (bundle) f.bundle = bundle;
    else await driver.write(key, r.stored);
    files.push(f);
  }
  await bundler?.finish();
  files.sort((a, b) => comparePaths(a.path, b.path));
  await writeManifestRecords(driver, head(n), n, files);
  return { driver, manifest: await buffer(await driver.read(manifestKey('main', ID))) };
}

const opts = (from: StorageDriver, to: StorageDriver): CopyOptions => ({ from, to, cluster: 'main', key: undefined, dryRun: false, jobs: 3 });
const copy = (from: StorageDriver, to: StorageDriver) => copyRepository(opts(from, to), { signal, log });

/** Every object of the source's backup is in the target with the same bytes. */
async function assertSameBackup(from: MemoryDriver, to: MemoryDriver): Promise<void> {
  let n = 0;
  for await (const o of from.list(`main/backups/${ID}/`)) {
    const theirs = await to.stat(o.key);
    assert.ok(theirs, `${o.key} copied`);
    assert.ok((await buffer(await from.read(o.key))).equals(await buffer(await to.read(o.key))), `${o.key} has the same bytes`);
    n++;
  }
  assert.ok(n > 1);
}

/** `driver`, whose reads of `key` after the first `after` give `other` instead. */
function swapAfter(driver: StorageDriver, key: string, after: number, other: Buffer): StorageDriver & { reads: number } {
  let reads = 0;
  return new Proxy(driver, {
    get(target, prop, recv) {
      if (prop === 'reads') return reads;
      if (prop === 'read') {
        return async (k: string, s?: AbortSignal) => {
          if (k !== key) return target.read(k, s);
          return ++reads > after ? Readable.from([other]) : target.read(k, s);
        };
      }
      const v = Reflect.get(target, prop, recv);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) as StorageDriver & { reads: number };
}

const INCR = '20261122-020000I';

/**
 * An incr of the full backup in `driver`: files whose index is even borrowed
 * from the full (its records as they are, ref the full), the others stored
 * again by the incr.
 */
async function addIncr(driver: MemoryDriver, full: ManifestFile[]): Promise<void> {
  const files: ManifestFile[] = [];
  for (const [i, f] of full.entries()) {
    if (i % 2 === 0) {
      files.push(f);
      continue;
    }
    const data = Buffer.from(`changed ${f.path} `.repeat(30));
    const r = await encodeWhole(data, spec);
    const key = backupFileKey('main', INCR, f.path, ext);
    await driver.write(key, r.stored);
    files.push({ ...f, size: r.size, sha256: r.sha256, ref: INCR, key, storedSize: r.stored.length, bundle: undefined } as ManifestFile);
  }
  for (const f of files) if (f.bundle === undefined) delete f.bundle;
  const h = { ...head(files.length), id: INCR, type: 'incr', parent: ID, references: [ID] } as unknown as ManifestHead;
  await writeManifestRecords(driver, h, files.length, files);
}

/** The records of backup `id`'s manifest in `driver`. */
async function recordsOf(driver: StorageDriver, id: string): Promise<ManifestFile[]> {
  const lines = (await buffer(await driver.read(manifestKey('main', id)))).toString('utf8').trim().split('\n');
  return lines.slice(1, -1).map((l) => JSON.parse(l) as ManifestFile);
}

describe('copyRepository with a streamed manifest', () => {
  test('an incr copied onto the target\'s copy of its full (an earlier run): what it borrows matches, merged by path', async () => {
    const { driver } = await makeSource(120, { bundleTarget: 8 * 1024 });
    const to = new MemoryDriver();
    assert.deepEqual((await copy(driver, to)).backups.copied, [ID]);
    await addIncr(driver, await recordsOf(driver, ID));
    const r = await copy(driver, to);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.backups.copied, [INCR]);
    assert.deepEqual(r.backups.present, [ID]);
  });

  test('an incr is not copied onto a target whose own copy of its full records another object (streamed manifests)', async () => {
    const { driver } = await makeSource(120, { bundleTarget: 8 * 1024 });
    const full = await recordsOf(driver, ID);
    await addIncr(driver, full);
    // The target's full: the same backup written there on its own, one record borrowed by the incr differs.
    const to = new MemoryDriver();
    assert.deepEqual((await copy(driver, to)).backups.copied, [ID, INCR]);
    await to.remove(manifestKey('main', INCR));
    for await (const o of to.list(`main/backups/${INCR}/`)) await to.remove(o.key);
    await to.remove(manifestKey('main', ID));
    const theirs = full.map((f, i) => (i === 60 ? { ...f, sha256: '0'.repeat(64) } : f));
    await writeManifestRecords(to, head(theirs.length), theirs.length, theirs);
    const r = await copy(driver, to);
    assert.equal(r.problems.length, 1, r.problems.join('\n'));
    assert.match(r.problems[0]!, new RegExp(`backup "${INCR}" not copied: it references object .* of backup "${ID}", which repository .* holds with other content`));
    for await (const o of to.list(`main/backups/${INCR}/`)) assert.fail(`${o.key} written`);
  });

  test('objects and bundles copied, each checked; the manifest written as read', async () => {
    const { driver } = await makeSource(300, { bundleTarget: 8 * 1024 });
    const to = new MemoryDriver();
    const r = await copy(driver, to);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.backups.copied, [ID]);
    assert.ok(r.checkedBytes > 0);
    await assertSameBackup(driver, to);
    const again = await copy(driver, to);
    assert.deepEqual(again.backups.present, [ID]);
  });

  test('bundles whose members lie far apart in path order: gathered over several passes, every member checked', async () => {
    // Round robin over 40 bundles: each bundle's members are spread over the whole manifest.
    const spread = (paths: string[]) => Array.from({ length: paths.length }, (_, i) => paths[(i % 40) * (paths.length / 40) + Math.floor(i / 40)]!);
    const { driver } = await makeSource(2000, { bundleTarget: 20 * 1024, order: spread });
    const bundles = [];
    for await (const o of driver.list(`main/backups/${ID}/bundles/`)) bundles.push(o.key);
    assert.ok(bundles.length > 8, `more bundles (${bundles.length}) than a pass gathers`);
    const to = new MemoryDriver();
    const counted = swapAfter(driver, manifestKey('main', ID), Infinity, Buffer.alloc(0));
    const r = await copy(counted, to);
    assert.deepEqual(r.problems, []);
    // Its head, the check, the copy passes (more than one) and the manifest's own copy.
    assert.ok(counted.reads > 4, `several passes (${counted.reads} reads of the manifest)`);
    await assertSameBackup(driver, to);
  });

  test('a damaged bundle member fails the copy and no manifest is written', async () => {
    const { driver } = await makeSource(200, { bundleTarget: 8 * 1024 });
    const bundle = `main/backups/${ID}/bundles/000002.tar`;
    const bytes = await buffer(await driver.read(bundle));
    bytes[530] = bytes[530]! ^ 0xff; // inside the first member (its header is the first 512 bytes)
    await driver.remove(bundle);
    await driver.write(bundle, bytes);
    const to = new MemoryDriver();
    await assert.rejects(copy(driver, to), (err: unknown) => isCairnError(err) && /CHECKSUM_MISMATCH|FORMAT_INVALID|DECOMPRESS/.test(err.code));
    assert.equal(await to.stat(manifestKey('main', ID)), undefined);
    assert.equal(await to.stat(bundle), undefined);
  });

  for (const [when, after] of [['before its objects are copied (second pass)', 2], ['as it is written (third read)', 3]] as const) {
    test(`a manifest altered between reads, ${when}: the copy stops and writes no manifest`, async () => {
      const { driver, manifest } = await makeSource(50);
      // Another whole manifest of the same backup, its end line recomputed so that it checks out on its own.
      const lines = manifest.toString('utf8').split('\n').slice(0, -2);
      lines[0] = lines[0]!.replace('"durationSeconds":60', '"durationSeconds":61');
      const body = lines.map((l) => `${l}\n`).join('');
      const altered = Buffer.from(body + JSON.stringify({ end: { files: 50, sha256: createHash('sha256').update(body).digest('hex') } }) + '\n');
      assert.notDeepEqual(altered, manifest);
      const from = swapAfter(driver, manifestKey('main', ID), after, altered);
      const to = new MemoryDriver();
      await assert.rejects(copy(from, to), (err: unknown) => isCairnError(err) && err.code === 'FORMAT_INVALID' && /changed while it was being copied/.test(err.message));
      assert.ok(from.reads > after, 'the altered manifest was read');
      assert.equal(await to.stat(manifestKey('main', ID)), undefined, 'no manifest in the target');
    });
  }

  test('a truncated manifest is not copied, and nothing of its backup is written', async () => {
    const { driver, manifest } = await makeSource(50);
    await driver.remove(manifestKey('main', ID));
    await driver.write(manifestKey('main', ID), manifest.subarray(0, manifest.length - 200));
    const to = new MemoryDriver();
    const r = await copy(driver, to);
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0]!, new RegExp(`backup "${ID}" not copied: .*truncated|backup "${ID}" not copied: .*invalid`));
    for await (const o of to.list(`main/backups/`)) assert.fail(`${o.key} written`);
  });

  test('a copy that failed midway, run again, keeps what the target has and finishes', async () => {
    const { driver } = await makeSource(120);
    const to = new MemoryDriver();
    // The target refuses writes after the first 40 objects.
    let writes = 0;
    const failing = new Proxy(to, {
      get(target, prop, recv) {
        if (prop === 'write') {
          return async (k: string, body: unknown, o?: object) => {
            if (k.includes('/data/') && ++writes > 40) {
              if (body instanceof Readable) body.destroy();
              throw new Error('injected write failure');
            }
            return target.write(k, body as Buffer, o);
          };
        }
        const v = Reflect.get(target, prop, recv);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    }) as StorageDriver;
    await assert.rejects(copy(driver, failing), /injected write failure/);
    assert.equal(await to.stat(manifestKey('main', ID)), undefined);
    const r = await copy(driver, to);
    assert.deepEqual(r.problems, []);
    assert.ok(r.skipped.objects >= 40, `kept what the failed copy wrote (${r.skipped.objects})`);
    await assertSameBackup(driver, to);
  });
});
