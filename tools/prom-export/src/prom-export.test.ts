import assert from 'node:assert/strict';
import { readFile, writeFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, mock, test } from 'node:test';
import { MANIFEST_FORMAT, manifestKey, type BackupManifest } from '@cairn/core/backup/manifest';
import { runTool } from '@cairn/core/cli/run';
import { encryptionKeyFromBytes } from '@cairn/core/codec/encrypt';
import { databaseDir, DUMP_MANIFEST_FORMAT, dumpManifestKey, GLOBALS_DIR, type DumpManifest } from '@cairn/core/dump/manifest';
import { parseExposition } from '@cairn/core/metrics/exposition';
import { walObjectKey } from '@cairn/core/repo/layout';
import { READER_LEASE_FORMAT, readerLeaseKey, type ReaderLease } from '@cairn/core/repo/reader-lease';
import { ensureRepoConfig } from '@cairn/core/repo/repo-config';
import { ensureSystemRegistered } from '@cairn/core/repo/systems';
import { clearMemoryStores, MemoryDriver } from '@cairn/core/storage/memory';
import { VERIFY_RESULT_FORMAT, verifyResultKey, type VerifyResult } from '@cairn/core/verify/result-format';
import { formatLsn } from '@cairn/core/wal/lsn';
import { segmentName } from '@cairn/core/wal/segment';
import { promExportTool } from './command.js';
import { parseListen, sharedRead, textfileName } from './prom-export.js';

const GOLDEN = new URL('../test/golden.prom', import.meta.url);
const NOW = new Date('2026-11-22T00:00:00Z');
const SEG = 16 * 1024 * 1024;
const SYS = '7312345678901234567';
const seg = (n: number) => segmentName(1, BigInt(n), SEG);
const lsn = (n: number, off: number) => formatLsn(BigInt(n) * BigInt(SEG) + BigInt(off));
/** Segment n was stored n hours after 2026-11-21 00:30 UTC. */
const archivedAt = (n: number) => Date.UTC(2026, 10, 21, 0, 30) + n * 3600_000;
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

after(() => clearMemoryStores());

function manifest(id: string, type: 'full' | 'incr', parent: string | null, start: number, stop: number, size: number): BackupManifest {
  return {
    format: MANIFEST_FORMAT, tool: { name: 'cairn-basebackup', version: '0.1.0' }, id, type, parent, references: parent === null ? [] : [parent],
    source: 'local', cluster: 'main', systemId: SYS, pgVersionNum: 150004, pgMajor: '15', walSegmentSize: SEG, timeline: 1,
    start: { time: new Date(archivedAt(start) - 3000_000).toISOString(), lsn: lsn(start, 0x28), wal: seg(start) },
    stop: { time: new Date(archivedAt(stop) - 3000_000).toISOString(), lsn: lsn(stop, 0x100), wal: seg(stop) },
    checkpointLsn: lsn(start, 0x60), compress: 'zstd:3', encrypted: false, dataChecksums: true,
    backupLabel: '', tablespaceMap: null, tablespaces: [], dirs: [], files: [],
    totals: { size, storedSize: Math.round(size / 5), filesStored: 10, filesReferenced: 0, badPages: 0 },
    durationSeconds: type === 'full' ? 95.5 : 12,
  };
}

function dumpManifest(database: string | null, id: string, stop: string, size: number): DumpManifest {
  return {
    format: DUMP_MANIFEST_FORMAT, cairnVersion: '0.1.0', id, database, dir: database === null ? GLOBALS_DIR : databaseDir(database),
    dumpFormat: database === null ? 'globals' : 'custom', systemId: SYS, serverVersionNum: 150004, pgMajor: '15', pgDumpVersion: 'pg_dump (PostgreSQL) 15.4',
    filters: { schemas: [], tables: [], excludeTables: [] }, compress: 'zstd:3', encrypted: false,
    start: { time: new Date(Date.parse(stop) - 7000).toISOString() }, stop: { time: stop }, durationSeconds: 7, objects: [], totals: { size, storedSize: Math.round(size / 4) },
  };
}

/**
 * A known repository: a full and an incremental backup, WAL segments 2…9 of
 * timeline 1 with segment 8 missing, dumps of two databases (one twice) and
 * the globals, a failed verify run and a successful drill. The memory driver
 * stamps objects with the time they are written: the clock is mocked so each
 * WAL segment gets its archive time.
 */
async function buildKnownRepository(name: string): Promise<void> {
  const d = new MemoryDriver(name);
  mock.timers.enable({ apis: ['Date'], now: archivedAt(0) });
  try {
    await ensureRepoConfig(d, 'main', undefined, new Date(archivedAt(0)));
    await ensureSystemRegistered(d, 'main', { systemId: SYS, firstSeen: new Date(archivedAt(0)).toISOString(), registeredBy: 'test', walSegmentSize: SEG }, { force: false });
    for (let n = 2; n <= 9; n++) {
      if (n === 8) continue;
      mock.timers.setTime(archivedAt(n));
      await d.write(walObjectKey('main', SYS, seg(n), String(n).repeat(64).slice(0, 64), '.zst'), Buffer.alloc(1000 + n));
    }
    mock.timers.setTime(archivedAt(10));
    const full = manifest('20261121-010000F', 'full', null, 2, 3, 30_000_000);
    const incr = manifest('20261121-040000I', 'incr', full.id, 5, 6, 30_500_000);
    for (const m of [full, incr]) {
      await d.write(`main/backups/${m.id}/data/base.zst`, Buffer.alloc(m.totals.storedSize % 5000));
      await d.write(manifestKey('main', m.id), json(m));
    }
    const dumps = [
      dumpManifest('app', '20261120-030000L', '2026-11-20T03:00:07.000Z', 5_000_000),
      dumpManifest('app', '20261121-030000L', '2026-11-21T03:00:07.000Z', 5_100_000),
      dumpManifest('shop "eu"', '20261121-031000L', '2026-11-21T03:10:07.250Z', 800_000),
      dumpManifest(null, '20261121-030000L', '2026-11-21T03:00:01.000Z', 2_000),
    ];
    for (const m of dumps) await d.write(dumpManifestKey('main', m.dir, m.id), json(m));
    const verify: VerifyResult = {
      format: VERIFY_RESULT_FORMAT, id: '20261121-220000', cluster: 'main', repo: 'memory://golden', scope: 'all',
      start: { time: '2026-11-21T22:00:00.000Z' }, stop: { time: '2026-11-21T22:03:20.000Z' }, durationSeconds: 200, ok: false,
      checked: { backups: 2, dumps: 4, objects: 10, bytes: 100, storedBytes: 50, walSegments: 7, historyFiles: 0 },
      problems: [{ kind: 'wal-gap', subject: seg(8), message: 'missing', hint: 'check archiving' }],
    };
    await d.write(verifyResultKey('main', verify.id), json(verify));
    await d.write('main/drills/20261121-230000.json', json({ ok: true, rtoSeconds: 42.5, dataAgeSeconds: 3, start: { time: '2026-11-21T23:00:00.000Z' }, stop: { time: '2026-11-21T23:05:00.000Z' } }));
    // A restore in progress (live at NOW) and one long over (lapsed): written as cairn-restore does, on a fixed host.
    for (const [id, renewedAt, expiresAt] of [['20261121-200000-0a0b0c0d', '2026-11-21T23:30:00.000Z', '2026-11-22T23:30:00.000Z'], ['20261120-200000-01020304', '2026-11-20T20:00:00.000Z', '2026-11-21T20:00:00.000Z']] as const) {
      const lease: ReaderLease = {
        format: READER_LEASE_FORMAT, id, purpose: 'restore', tool: 'cairn-restore', host: 'db1', pid: 4242, pgdata: '/srv/pg', systemId: SYS, walSegmentSize: SEG,
        backup: incr.id, chain: [full.id, incr.id], dumps: [], wal: [{ timeline: 1, from: seg(5), to: seg(7) }], target: 'latest',
        lifetimeSeconds: 86_400, createdAt: renewedAt, renewedAt, expiresAt,
      };
      await d.write(readerLeaseKey('main', id), json(lease));
    }
  } finally {
    mock.timers.reset();
  }
}

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough().on('data', (c: Buffer) => out.push(c));
  const stderr = new PassThrough().on('data', (c: Buffer) => err.push(c));
  const code = await runTool(promExportTool, { argv, env: {}, cwd: '/', stdout, stderr, now: () => NOW });
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

describe('cairn-prom-export on a known repository', () => {
  test('produces exactly the golden samples (and a locked repository as scrape_success 0, exit 3)', async () => {
    await buildKnownRepository('golden');
    const locked = new MemoryDriver('golden-locked');
    await ensureRepoConfig(locked, 'main', encryptionKeyFromBytes(Buffer.alloc(32, 7)), NOW);
    const r = await run(['--repo', 'memory://golden', '--repo', 'memory://golden-locked', '--config', '/dev/null']);
    if (process.env['UPDATE_GOLDEN'] === '1') await writeFile(GOLDEN, r.stdout);
    assert.equal(r.stdout, await readFile(GOLDEN, 'utf8'));
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^cairn-prom-export: error: .*memory:\/\/golden-locked.*is encrypted and no encryption key is configured/m);
    // The values an alert rule reads, spelled out (the golden file pins the rest).
    const m = parseExposition(r.stdout);
    // Exposition order: label names sorted, values escaped.
    const at = (name: string, extra: Record<string, string> = {}) => {
      const labels: Record<string, string> = { cluster: 'main', repo: 'memory://golden', ...extra };
      const text = Object.keys(labels).sort().map((k) => `${k}="${labels[k]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(',');
      return m.get(`${name}{${text}}`);
    };
    assert.equal(at('cairn_backup_last_success_timestamp_seconds', { type: 'full' }), (archivedAt(3) - 3000_000) / 1000);
    assert.equal(at('cairn_backup_last_success_timestamp_seconds', { type: 'incr' }), (archivedAt(6) - 3000_000) / 1000);
    assert.equal(at('cairn_backup_last_success_timestamp_seconds', { type: 'diff' }), undefined);
    assert.equal(at('cairn_backups', { type: 'diff' }), 0);
    assert.equal(at('cairn_dumps', { database: 'app' }), 2);
    assert.equal(at('cairn_dump_last_success_timestamp_seconds', { database: 'app' }), Date.parse('2026-11-21T03:00:07Z') / 1000);
    assert.equal(at('cairn_dump_last_success_timestamp_seconds', { database: 'shop "eu"' }), Date.parse('2026-11-21T03:10:07.25Z') / 1000);
    assert.equal(at('cairn_dump_last_size_bytes'), 2000, 'the globals dump has no database label');
    assert.equal(at('cairn_wal_last_archived_timestamp_seconds', { system_id: SYS, timeline: '1' }), archivedAt(9) / 1000);
    assert.equal(at('cairn_wal_last_segment_info', { segment: seg(9), system_id: SYS, timeline: '1' }), 1);
    assert.equal(at('cairn_wal_missing_segments', { system_id: SYS, timeline: '1' }), 1);
    assert.equal(at('cairn_verify_last_success'), 0);
    assert.equal(at('cairn_verify_last_problems'), 1);
    assert.equal(at('cairn_drill_last_success'), 1);
    assert.equal(at('cairn_drill_last_timestamp_seconds'), Date.parse('2026-11-21T23:05:00Z') / 1000);
    assert.equal(at('cairn_recoverable'), 1);
    assert.equal(at('cairn_recoverability_earliest_timestamp_seconds'), (archivedAt(3) - 3000_000) / 1000);
    assert.equal(at('cairn_recoverability_latest_timestamp_seconds'), archivedAt(7) / 1000, 'the latest point stops before the gap');
    assert.equal(at('cairn_reader_leases'), 1, 'the lapsed lease is no sample');
    assert.equal(at('cairn_reader_lease_expiry_timestamp_seconds', { backup: '20261121-040000I', host: 'db1', lease: '20261121-200000-0a0b0c0d', purpose: 'restore' }), Date.parse('2026-11-22T23:30:00Z') / 1000);
    assert.equal(m.get('cairn_exporter_scrape_success{cluster="main",repo="memory://golden-locked"}'), 0);
    assert.equal([...m.keys()].filter((k) => k.includes('golden-locked')).length, 2, 'an unreadable repository gives no data samples');
  });

  test('--textfile writes cairn_<cluster>.prom atomically: the same text, no temp file left, mode 0644', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'prom-textfile-'));
    try {
      await buildKnownRepository('golden-tf');
      const r = await run(['--repo', 'memory://golden-tf', '--textfile', dir, '--config', '/dev/null']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '');
      assert.deepEqual(await readdir(dir), [textfileName('main')]);
      const text = await readFile(join(dir, 'cairn_main.prom'), 'utf8');
      assert.equal(text, (await readFile(GOLDEN, 'utf8')).split('\n').filter((l) => !l.includes('golden-locked')).join('\n').replaceAll('memory://golden"', 'memory://golden-tf"'));
      const missing = await run(['--repo', 'memory://golden-tf', '--textfile', join(dir, 'nope'), '--config', '/dev/null']);
      assert.equal(missing.code, 3);
      assert.match(missing.stderr, /^cairn-prom-export: error: textfile directory ".*nope" does not exist or is not a directory; give node_exporter's/m);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('usage errors: both outputs, a bad --listen, exit 2 before any repository is read', async () => {
    const both = await run(['--repo', 'memory://x', '--textfile', '/tmp', '--listen', '9188', '--config', '/dev/null']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /^cairn-prom-export: error: --textfile and --listen exclude each other/m);
    const bad = await run(['--repo', 'memory://x', '--listen', 'localhost', '--config', '/dev/null']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^cairn-prom-export: error: invalid --listen "localhost"; give \[HOST:\]PORT/m);
  });
});

test('parseListen', () => {
  assert.deepEqual(parseListen('9188'), { host: undefined, port: 9188 });
  assert.deepEqual(parseListen(':9188'), { host: undefined, port: 9188 });
  assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListen('[::1]:9188'), { host: '::1', port: 9188 });
  for (const bad of ['', 'host', '1:2:3', '70000', 'a:b']) assert.throws(() => parseListen(bad), /invalid --listen/);
});

test('sharedRead: with no cache, concurrent callers share the read in flight; a later call reads again', async () => {
  let reads = 0;
  let release!: () => void;
  const read = () => {
    reads++;
    return new Promise<number>((resolve) => { release = () => resolve(reads); });
  };
  let clock = 0;
  const current = sharedRead(read, 0, () => clock);
  const scrapes = Array.from({ length: 100 }, () => current());
  assert.equal(reads, 1, '100 concurrent scrapes, one read');
  release();
  assert.deepEqual(new Set(await Promise.all(scrapes)), new Set([1]));
  clock = 1;
  const again = current();
  assert.equal(reads, 2, 'after the read finished, --cache-seconds 0 reads again');
  release();
  await again;
  const cached = sharedRead(read, 30_000, () => clock);
  const a = cached();
  release();
  await a;
  clock += 10_000;
  await Promise.race([cached(), Promise.resolve()]);
  assert.equal(reads, 3, 'within --cache-seconds the finished read is reused');
});
