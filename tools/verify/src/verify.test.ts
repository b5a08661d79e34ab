// verifyRepository over the in-memory driver (no readSmall, so every backup
// object takes the streaming path, as on S3) with an encrypted repository:
// a small and a multi-frame file, WAL and a history file, then damage.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import { createSlots, encodeFile, encodeWhole, PIECE_SIZE, rechunk } from '@cairn/core/codec/file-codec';
import { backupFileKey, manifestKey, MANIFEST_FORMAT, type BackupManifest, type ManifestFile } from '@cairn/core/backup/manifest';
import { encodeBuffer, encodedExtension, encryptionKeyFromBytes, parseCompress, sha256Hex, type EncodeSpec, type EncryptionKey } from '@cairn/core/codec/index';
import { ensureRepoConfig } from '@cairn/core/repo/repo-config';
import { storeWal } from '@cairn/core/repo/wal-archive';
import { MemoryDriver } from '@cairn/core/storage/memory';
import { syntheticSegment } from '@cairn/core/testing/wal-segment';
import { segmentName } from '@cairn/core/wal/segment';
import { verifyResultKey } from '@cairn/core/verify/result-format';
import { formatReport, storeVerifyResult, verifyRepository, type VerifyScope } from './verify.js';

const SEG = 16 * 1024 * 1024;
const SYS = '7300000000000000001';
const ID = '20261121-020000F';
const key = encryptionKeyFromBytes(randomBytes(32));
/** Objects are encrypted with the cluster's data key, set once the repository exists. */
let spec: EncodeSpec = { compress: parseCompress('zstd:1'), key };
const ext = encodedExtension(spec);
const HISTORY = '1\t0/5000100\tno recovery target specified\n';
const log = { info() {}, warn() {}, debug() {} };
const ctx = { now: () => new Date('2026-11-21T03:00:00Z'), signal: new AbortController().signal, env: process.env, log };

async function storeFile(driver: MemoryDriver, path: string, data: Buffer): Promise<ManifestFile> {
  const k = backupFileKey('main', ID, path, ext);
  if (data.length <= PIECE_SIZE) {
    const r = await encodeWhole(data, spec);
    await driver.write(k, r.stored);
    return { path, size: r.size, mode: 0o600, mtime: 0, sha256: r.sha256, ref: ID, key: k, storedSize: r.stored.length };
  }
  async function* one() { yield data; }
  const r = await encodeFile(rechunk(one()), spec, createSlots(2), async (body) => driver.write(k, await buffer(body)));
  return { path, size: r.size, mode: 0o600, mtime: 0, sha256: r.sha256, ref: ID, key: k, storedSize: r.storedSize };
}

/** A segment whose page header says what its name says (verify checks it). */
const walSegment = (timeline: number, segno: number, systemId = SYS) => syntheticSegment({ systemId, timeline, segno, segSize: SEG });

async function storeWalFile(driver: MemoryDriver, walName: string, data: Buffer): Promise<void> {
  const body = await encodeBuffer(data, spec);
  await storeWal(driver, { cluster: 'main', systemId: SYS, walName, sha256: sha256Hex(data), ext, body: () => body });
}

/** A repository with one full backup (segments 2–3 of timeline 1), WAL 1–6, timeline 2 from segment 5. */
async function makeRepository(): Promise<{ driver: MemoryDriver; files: ManifestFile[] }> {
  const driver = new MemoryDriver();
  spec = { ...spec, key: (await ensureRepoConfig(driver, 'main', key, new Date())).dataKey! };
  // Compressible but not trivially so: several zstd frames for the big one.
  const big = Buffer.alloc(PIECE_SIZE * 2 + 12345);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
  const files = [await storeFile(driver, 'PG_VERSION', Buffer.from('15\n')), await storeFile(driver, 'base/1/1259', big)];
  const manifest = {
    format: MANIFEST_FORMAT, tool: { name: 'cairn-basebackup', version: '0' }, id: ID, type: 'full', parent: null, references: [], source: 'local',
    cluster: 'main', systemId: SYS, pgVersionNum: 150004, pgMajor: '15', walSegmentSize: SEG, timeline: 1,
    start: { time: '2026-11-21T02:00:00Z', lsn: '0/2000028', wal: segmentName(1, 2n, SEG) },
    stop: { time: '2026-11-21T02:01:00Z', lsn: '0/3000100', wal: segmentName(1, 3n, SEG) },
    checkpointLsn: '0/2000060', compress: 'zstd:1', encrypted: true, dataChecksums: true, backupLabel: '', tablespaceMap: null, tablespaces: [], dirs: [],
    files, totals: { size: 0, storedSize: 0, filesStored: 2, filesReferenced: 0, badPages: 0 }, durationSeconds: 60,
  } satisfies BackupManifest;
  await driver.write(manifestKey('main', ID), Buffer.from(JSON.stringify(manifest)));
  for (let n = 1; n <= 6; n++) await storeWalFile(driver, segmentName(1, BigInt(n), SEG), walSegment(1, n));
  for (let n = 5; n <= 7; n++) await storeWalFile(driver, segmentName(2, BigInt(n), SEG), walSegment(2, n));
  await storeWalFile(driver, '00000002.history', Buffer.from(HISTORY));
  return { driver, files };
}

const run = (driver: MemoryDriver, scope: VerifyScope = { kind: 'all' }, with_: { key: EncryptionKey | undefined } = { key }) =>
  verifyRepository({ driver, cluster: 'main', key: with_.key, scope, jobs: 2, pgBin: undefined }, ctx);

async function damage(driver: MemoryDriver, k: string): Promise<void> {
  const bytes = await buffer(await driver.read(k));
  bytes[bytes.length - 40] = bytes[bytes.length - 40]! ^ 1;
  await driver.remove(k);
  await driver.write(k, bytes);
}

describe('verifyRepository (memory driver, encrypted)', () => {
  test('a whole repository verifies clean, and its result can be stored once', async () => {
    const { driver, files } = await makeRepository();
    const r = await run(driver);
    assert.deepEqual(r.problems, []);
    assert.equal(r.ok, true);
    assert.equal(r.id, '20261121-030000');
    assert.equal(r.checked.backups, 1);
    assert.equal(r.checked.objects, 2);
    assert.equal(r.checked.walSegments, 9);
    assert.equal(r.checked.historyFiles, 1);
    assert.equal(r.checked.bytes, files[0]!.size + files[1]!.size + 9 * SEG + HISTORY.length);
    assert.ok(r.checked.storedBytes > 0);
    assert.equal(await storeVerifyResult(driver, r), undefined);
    assert.deepEqual(JSON.parse((await buffer(await driver.read(verifyResultKey('main', r.id)))).toString()), r);
    assert.match((await storeVerifyResult(driver, r))!, /of the same second exists/);
    assert.match(formatReport(r), /1 backup, 0 dumps, 2 objects and 9 WAL files \(1 history\) .*no problems\n$/);
    assert.deepEqual(r.notes, []);
    // An interrupted backup's objects are a note, not a problem.
    await driver.write('main/backups/20261121-040000F/data/PG_VERSION.zst.enc', Buffer.from('x'));
    const again = await run(driver);
    assert.equal(again.ok, true);
    assert.deepEqual(again.notes, ['backup "20261121-040000F" has 1 object and no manifest (an interrupted run; cairn-expire removes them)']);
  });

  test('a corrupted multi-frame object, a corrupted WAL segment and a history file', async () => {
    const { driver, files } = await makeRepository();
    await damage(driver, files[1]!.key);
    const wal = await listKeys(driver, 'main/wal/');
    const seg4 = wal.find((k) => k.includes(`/${segmentName(1, 4n, SEG)}-`))!;
    const hist = wal.find((k) => k.includes('/00000002.history-'))!;
    await damage(driver, seg4);
    await damage(driver, hist);
    const r = await run(driver);
    assert.deepEqual(r.problems.map((p) => `${p.kind} ${p.subject}`).sort(), [
      `object-corrupt ${ID}`,
      `wal-corrupt ${segmentName(1, 4n, SEG)}`,
      'wal-corrupt 00000002.history',
    ]);
    // The history file could not be read: reported as corrupt, not also as missing.
    const scoped = await run(driver, { kind: 'set', id: ID });
    assert.deepEqual(scoped.problems.map((p) => p.kind), ['object-corrupt']);
    assert.equal(scoped.checked.walSegments, 2, "the backup's own segments 2 and 3");
  });

  test('a whole segment under a wrong name: another system\'s, or segment 5 stored as 4', async () => {
    const { driver } = await makeRepository();
    const wal = await listKeys(driver, 'main/wal/');
    for (const n of [3, 4]) await driver.remove(wal.find((k) => k.includes(`/${segmentName(1, BigInt(n), SEG)}-`))!);
    await storeWalFile(driver, segmentName(1, 3n, SEG), walSegment(1, 3, '7300000000000000002'));
    await storeWalFile(driver, segmentName(1, 4n, SEG), walSegment(1, 5));
    const r = await run(driver);
    assert.deepEqual(r.problems.map((p) => `${p.kind} ${p.subject}`).sort(), [`wal-mismatch ${segmentName(1, 3n, SEG)}`, `wal-mismatch ${segmentName(1, 4n, SEG)}`]);
    // Segments are read in parallel: the problems come in either order.
    const of = (n: bigint) => r.problems.find((p) => p.subject === segmentName(1, n, SEG))!;
    assert.match(of(3n).message, /its page header says system 7300000000000000002, .*; the repository holds it for system 7300000000000000001$/);
    assert.match(of(4n).message, /start 0\/5000000 \(000000010000000000000005\); the name says start 0\/4000000$/);
    assert.match(of(4n).hint, /cairn-wal-get refuses this file/);
    assert.equal(r.ok, false);
  });

  test('a missing object and a missing parent', async () => {
    const { driver, files } = await makeRepository();
    await driver.remove(files[0]!.key);
    const child = JSON.parse((await buffer(await driver.read(manifestKey('main', ID)))).toString()) as BackupManifest;
    const incr = { ...child, id: '20261121-030000I', type: 'incr', parent: '20261121-010000F', references: ['20261121-010000F', ID] };
    await driver.write(manifestKey('main', incr.id), Buffer.from(JSON.stringify(incr)));
    const r = await run(driver);
    assert.deepEqual(r.problems.map((p) => `${p.kind} ${p.subject}`), [`object-missing ${ID}`, 'parent-missing 20261121-030000I']);
    assert.match(r.problems[1]!.message, /builds on backup "20261121-010000F", which is not in the repository/);
  });

  test('a backup expired while verify reads it is no problem: verify runs again on what is left', async () => {
    const { driver, files } = await makeRepository();
    const old = JSON.parse((await buffer(await driver.read(manifestKey('main', ID)))).toString()) as BackupManifest;
    const NEW = '20261121-040000F';
    // Its files stay in the old backup's objects, named in its references (the manifest rules).
    await driver.write(manifestKey('main', NEW), Buffer.from(JSON.stringify({ ...old, id: NEW, references: [ID] })));
    // Expire's order: the manifest first, then the objects, as the first object is read.
    const read = driver.read.bind(driver);
    let expired = false;
    driver.read = async (k: string, signal?: AbortSignal) => {
      if (!expired && k === files[1]!.key) {
        expired = true;
        await driver.remove(manifestKey('main', ID));
        for (const f of files) await driver.remove(f.key);
      }
      return read(k, signal);
    };
    const r = await run(driver);
    assert.ok(expired);
    // The newer backup's manifest still names the removed objects: a real
    // problem, found on the second run, with the note saying why it ran twice.
    assert.deepEqual([...new Set(r.problems.map((p) => `${p.kind} ${p.subject}`))], [`object-missing ${NEW}`]);
    assert.match(r.notes!.at(-1)!, new RegExp(`^${ID} went while verify ran \\(cairn-expire\\?\\); verified what is left again$`));
  });

  test('a wrong key is a configuration error, not a thousand corrupt objects', async () => {
    const { driver } = await makeRepository();
    await assert.rejects(run(driver, { kind: 'all' }, { key: encryptionKeyFromBytes(randomBytes(32)) }), (err: Error & { code?: string }) => err.code === 'KEY_MISMATCH');
    await assert.rejects(run(driver, { kind: 'all' }, { key: undefined }), (err: Error & { code?: string }) => err.code === 'KEY_INVALID');
  });

  test('an unknown --set or --dump, and an empty cluster', async () => {
    const { driver } = await makeRepository();
    await assert.rejects(run(driver, { kind: 'set', id: '20200101-000000F' }), /backup "20200101-000000F" is not in cluster "main"/);
    await assert.rejects(run(driver, { kind: 'dump', ref: '20200101-000000L' }), /no dump "20200101-000000L"/);
    await assert.rejects(run(new MemoryDriver()), (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /cluster "main" is not in repository/.test(err.message));
  });
});

async function listKeys(driver: MemoryDriver, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of driver.list(prefix)) out.push(o.key);
  return out;
}
