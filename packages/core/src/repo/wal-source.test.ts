import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { encodeBuffer, encryptionKeyFromBytes, sha256Hex } from '../codec/index.js';
import { MemoryDriver } from '../storage/memory.js';
import { rejectsWith } from '../testing/errors.js';
import { syntheticSegment } from '../testing/wal-segment.js';
import { ensureRepoConfig } from './repo-config.js';
import { ensureSystemRegistered } from './systems.js';
import { findWal, storeWal } from './wal-archive.js';
import { readWalChecked } from './wal-read.js';
import { checkWalSource } from './wal-source.js';

const SYS = '7312345678901234567';
const SEG16 = 16 * 1024 * 1024;
const NOW = new Date('2026-12-01T00:00:00Z');

/** A 16 MiB segment of timeline 1 whose header names `sysid` and the start of segment `segno`. */
const segment = (segno: number, sysid = SYS) => syntheticSegment({ systemId: sysid, timeline: 1, segno });

async function repoWithSystem(): Promise<MemoryDriver> {
  const d = new MemoryDriver();
  await ensureRepoConfig(d, 'main', undefined, NOW);
  await ensureSystemRegistered(d, 'main', { systemId: SYS, firstSeen: NOW.toISOString(), registeredBy: 'test' }, { force: false });
  return d;
}

/** Stores `data` under `walName` as wal-push would: its own SHA-256 in the key, zstd. */
async function store(d: MemoryDriver, walName: string, data: Buffer): Promise<void> {
  const encoded = await encodeBuffer(data, { compress: { alg: 'zstd', level: 1 } });
  await storeWal(d, { cluster: 'main', systemId: SYS, walName, sha256: sha256Hex(data), ext: '.zst', body: () => encoded });
}

const collect = () => {
  const parts: Buffer[] = [];
  const sink = new Writable({ write(c: Buffer, _e, cb) { parts.push(c); cb(); } });
  return { sink, data: () => Buffer.concat(parts) };
};

describe('checkWalSource: when "not found" can be believed', () => {
  test('a repository holding the cluster and the system', async () => {
    await checkWalSource(await repoWithSystem(), 'main', SYS, undefined);
  });

  test('an empty (or missing, or unmounted) repository, or another cluster', async () => {
    const d = new MemoryDriver();
    await rejectsWith(checkWalSource(d, 'main', SYS, undefined), 'CONFIG_INVALID',
      `repository "${d.url}" holds no cluster "main" (no "main/repo.json"): it is not mounted, empty, not a directory, or --cluster is wrong`);
    await rejectsWith(checkWalSource(await repoWithSystem(), 'other', SYS, undefined), 'CONFIG_INVALID', /holds no cluster "other"/);
  });

  test('a system the cluster never registered', async () => {
    const d = await repoWithSystem();
    await rejectsWith(checkWalSource(d, 'main', '42', undefined), 'CONFIG_INVALID',
      `database system 42 is not registered in repository "${d.url}" cluster "main" (it holds ${SYS})`);
    const bare = new MemoryDriver();
    await ensureRepoConfig(bare, 'main', undefined, NOW);
    await rejectsWith(checkWalSource(bare, 'main', SYS, undefined), 'CONFIG_INVALID', /\(it holds none\)$/);
  });

  test('a key that does not fit repo.json', async () => {
    const key = encryptionKeyFromBytes(Buffer.alloc(32, 1));
    await rejectsWith(checkWalSource(await repoWithSystem(), 'main', SYS, key), 'KEY_MISMATCH', /is not encrypted, but an encryption key is configured/);
    const enc = new MemoryDriver();
    await ensureRepoConfig(enc, 'main', key, NOW);
    await rejectsWith(checkWalSource(enc, 'main', SYS, undefined), 'KEY_INVALID', /is encrypted and no encryption key is configured/);
  });
});

describe('readWalChecked: every segment read is the one asked for', () => {
  test('the right segment passes whole; a history file has no header to check', async () => {
    const d = await repoWithSystem();
    await store(d, '000000010000000000000003', segment(3));
    await store(d, '00000002.history', Buffer.from('1\t0/3000000\tno recovery target specified\n'));
    const [stored] = await findWal(d, 'main', SYS, '000000010000000000000003');
    const out = collect();
    const r = await readWalChecked(d, stored!, SYS, undefined, out.sink);
    assert.equal(r.bytes, SEG16);
    assert.equal(r.header?.pageAddress, 3n * BigInt(SEG16));
    assert.ok(out.data().equals(segment(3)));
    const [history] = await findWal(d, 'main', SYS, '00000002.history');
    const h = await readWalChecked(d, history!, SYS, undefined, collect().sink);
    assert.equal(h.header, undefined);
  });

  test('segment 5 stored as 4, and another system\'s segment, each with its own matching SHA-256', async () => {
    const d = await repoWithSystem();
    await store(d, '000000010000000000000004', segment(5));
    await store(d, '000000010000000000000006', segment(6, '42'));
    const [renamed] = await findWal(d, 'main', SYS, '000000010000000000000004');
    await rejectsWith(readWalChecked(d, renamed!, SYS, undefined, collect().sink), 'WAL_MISMATCH',
      /^WAL file "000000010000000000000004" in repository "memory:\/\/[^"]+" is not that segment: .*start 0\/5000000 \(000000010000000000000005\); the name says start 0\/4000000$/);
    const [foreign] = await findWal(d, 'main', SYS, '000000010000000000000006');
    await rejectsWith(readWalChecked(d, foreign!, SYS, undefined, collect().sink), 'WAL_MISMATCH',
      /its page header says system 42, .*; the repository holds it for system 7312345678901234567$/);
  });
});
