import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rejectsWith } from '../testing/errors.js';
import { MemoryDriver } from '../storage/memory.js';
import { encodeBuffer, encryptionKeyFromBytes, sha256Hex, type EncodeSpec, type EncryptionKey } from '../codec/index.js';
import { MANIFEST_FORMAT, manifestKey, type BackupManifest } from '../backup/manifest.js';
import { ensureRepoConfig } from '../repo/repo-config.js';
import { storeWal } from '../repo/wal-archive.js';
import { formatLsn } from '../wal/lsn.js';
import { segmentName } from '../wal/segment.js';
import { makePlanFromRepositories } from './load-plan.js';
import type { RecoveryTarget } from './plan-format.js';

const SEG = 16 * 1024 * 1024;
const SYS = '7312345678901234567';
const NOW = new Date('2026-12-01T00:00:00Z');
const LATEST: RecoveryTarget = { kind: 'latest', timeline: 'latest', action: 'pause', inclusive: true };
const lsnAt = (seg: number, off = 0x28) => formatLsn(BigInt(seg) * BigInt(SEG) + BigInt(off));
const seg = (tli: number, n: number) => segmentName(tli, BigInt(n), SEG);

function manifest(id: string, tli: number, start: number, stop: number): BackupManifest {
  return {
    format: MANIFEST_FORMAT,
    tool: { name: 'cairn-basebackup', version: '0.1.0' },
    id,
    type: 'full',
    parent: null,
    references: [],
    source: 'local',
    cluster: 'main',
    systemId: SYS,
    pgVersionNum: 170002,
    pgMajor: '17',
    walSegmentSize: SEG,
    timeline: tli,
    start: { time: '2026-11-21T02:00:00.000Z', lsn: lsnAt(start), wal: seg(tli, start) },
    stop: { time: '2026-11-21T02:10:00.000Z', lsn: lsnAt(stop, 0x100), wal: seg(tli, stop) },
    checkpointLsn: lsnAt(start, 0x60),
    compress: 'zstd:3',
    encrypted: false,
    dataChecksums: true,
    backupLabel: 'START WAL LOCATION: …\n',
    tablespaceMap: null,
    tablespaces: [],
    dirs: [{ path: 'base', mode: 0o700 }],
    files: [{ path: 'PG_VERSION', size: 3, mode: 0o600, mtime: 0, sha256: sha256Hex(Buffer.from('17\n')), ref: id, key: `main/backups/${id}/data/PG_VERSION.zst`, storedSize: 12 }],
    totals: { size: 3, storedSize: 12, filesStored: 1, filesReferenced: 0, badPages: 0 },
    durationSeconds: 600,
  };
}

async function putWal(d: MemoryDriver, name: string, data: Buffer, key?: EncryptionKey) {
  const spec: EncodeSpec = { compress: { alg: 'zstd', level: 1 }, ...(key ? { key } : {}) };
  const encoded = await encodeBuffer(data, spec);
  await storeWal(d, { cluster: 'main', systemId: SYS, walName: name, sha256: sha256Hex(data), ext: key ? '.zst.enc' : '.zst', body: () => encoded });
}

/** A repository with one backup on timeline 1 (segments 2–3), timeline 2 from 0/5000100, WAL 1–4 on 1 and 5–6 on 2. */
async function makeRepo(name: string, key?: EncryptionKey): Promise<MemoryDriver> {
  const d = new MemoryDriver(name);
  // Objects are encrypted with the cluster's data key.
  key = (await ensureRepoConfig(d, 'main', key, NOW)).dataKey;
  const m = manifest('20261121-020000F', 1, 2, 3);
  await d.write(manifestKey('main', m.id), Buffer.from(JSON.stringify(m)));
  const body = Buffer.alloc(1024, 1);
  for (let n = 1; n <= 4; n++) await putWal(d, seg(1, n), body, key);
  for (let n = 5; n <= 6; n++) await putWal(d, seg(2, n), body, key);
  await putWal(d, `${seg(1, 5)}.partial`, body, key);
  await putWal(d, '00000002.history', Buffer.from('1\t0/5000100\tno recovery target specified\n'), key);
  return d;
}

test('reads manifests, WAL and history files into a plan', async () => {
  const d = await makeRepo('load-plan-plain');
  const plan = await makePlanFromRepositories({ drivers: [d], cluster: 'main', key: undefined, target: LATEST, now: NOW });
  assert.equal(plan.backup.id, '20261121-020000F');
  assert.equal(plan.targetTimeline, 2);
  assert.deepEqual(plan.timelines, [1, 2]);
  assert.deepEqual(plan.wal, [
    { timeline: 1, from: seg(1, 2), to: seg(1, 4), segments: 3 },
    { timeline: 2, from: seg(2, 5), to: seg(2, 6), segments: 2 },
  ]);
  assert.equal(plan.repo, 'memory://load-plan-plain');
  assert.deepEqual(plan.warnings, []);
});

test('an encrypted repository: history files decoded with the key; a missing key is told', async () => {
  const key = encryptionKeyFromBytes(Buffer.from('0123456789abcdef0123456789abcdef'));
  const d = await makeRepo('load-plan-enc', key);
  const plan = await makePlanFromRepositories({ drivers: [d], cluster: 'main', key, target: LATEST, now: NOW });
  assert.equal(plan.targetTimeline, 2);
  await rejectsWith(makePlanFromRepositories({ drivers: [d], cluster: 'main', key: undefined, target: LATEST, now: NOW }), 'KEY_INVALID');
});

test('the first repository that can make a plan; the others\' reasons become warnings', async () => {
  const empty = new MemoryDriver('load-plan-empty');
  const d = await makeRepo('load-plan-second');
  const plan = await makePlanFromRepositories({ drivers: [empty, d], cluster: 'main', key: undefined, target: LATEST, now: NOW });
  assert.equal(plan.repo, 'memory://load-plan-second');
  assert.deepEqual(plan.warnings, ['repository "memory://load-plan-empty" could not make a plan: no backups in cluster "main" of repository "memory://load-plan-empty"']);
});

test('when no repository can, the first one\'s error', async () => {
  const empty = new MemoryDriver('load-plan-empty-2');
  const d = await makeRepo('load-plan-third');
  await d.remove((await findKey(d, seg(1, 3)))!);
  await rejectsWith(makePlanFromRepositories({ drivers: [empty, d], cluster: 'main', key: undefined, target: LATEST, now: NOW }), 'NOT_FOUND',
    'no backups in cluster "main" of repository "memory://load-plan-empty-2"');
  await rejectsWith(makePlanFromRepositories({ drivers: [d, empty], cluster: 'main', key: undefined, target: LATEST, now: NOW }), 'NOT_FOUND',
    /^WAL segment "000000010000000000000003" needed to restore backup "20261121-020000F"/);
});

async function findKey(d: MemoryDriver, walName: string): Promise<string | undefined> {
  for await (const o of d.list(`main/wal/${SYS}/`)) if (o.key.includes(`/${walName}-`)) return o.key;
  return undefined;
}

test('WAL only another repository holds: planned from the one with the backup, saying which segments come from where', async () => {
  const key = encryptionKeyFromBytes(Buffer.from('0123456789abcdef0123456789abcdef'));
  const a = await makeRepo('load-plan-lost', key);
  await a.remove((await findKey(a, seg(1, 3)))!);
  await a.remove((await findKey(a, '00000002.history'))!);
  // The lender holds the WAL under its own data key, and no backup.
  const b = await makeRepo('load-plan-lender', key);
  await b.remove(manifestKey('main', '20261121-020000F'));
  await rejectsWith(makePlanFromRepositories({ drivers: [a], cluster: 'main', key, target: LATEST, now: NOW }), 'NOT_FOUND', /^WAL segment "000000010000000000000003" needed/);
  const plan = await makePlanFromRepositories({ drivers: [a, b], cluster: 'main', key, target: LATEST, now: NOW });
  assert.equal(plan.repo, 'memory://load-plan-lost');
  assert.equal(plan.targetTimeline, 2, 'the history file only the lender holds is read');
  assert.deepEqual(plan.wal, [
    { timeline: 1, from: seg(1, 2), to: seg(1, 4), segments: 3 },
    { timeline: 2, from: seg(2, 5), to: seg(2, 6), segments: 2 },
  ]);
  assert.deepEqual(plan.warnings, [
    'repository "memory://load-plan-lender" could not make a plan: no backups in cluster "main" of repository "memory://load-plan-lender"',
    `1 WAL segment the plan needs is not in repository "memory://load-plan-lost" (${seg(1, 3)}): cairn-wal-get takes it from "memory://load-plan-lender"; run cairn-verify on "memory://load-plan-lost"`,
  ]);
  // A segment that no repository holds still fails the plan.
  await b.remove((await findKey(b, seg(1, 3)))!);
  await rejectsWith(makePlanFromRepositories({ drivers: [a, b], cluster: 'main', key, target: LATEST, now: NOW }), 'NOT_FOUND', /^WAL segment "000000010000000000000003" needed/);
});
