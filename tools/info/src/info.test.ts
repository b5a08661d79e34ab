import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encryptionKeyFromBytes } from '@cairn/core/codec/encrypt';
import { listWalArchive } from '@cairn/core/repo/catalog';
import { walObjectKey } from '@cairn/core/repo/layout';
import { ensureRepoConfig } from '@cairn/core/repo/repo-config';
import { createReaderLease, describeReader, type ReaderLeaseFields } from '@cairn/core/repo/reader-lease';
import { MemoryDriver } from '@cairn/core/storage/memory';
import { rejectsWith } from '@cairn/core/testing/errors';
import { VERIFY_RESULT_FORMAT, verifyResultKey, type VerifyResult } from '@cairn/core/verify/result-format';
import { formatReport, infoExitStatus, readInfoReport } from './info.js';

const NOW = new Date('2026-11-22T00:00:00Z');

function verifyResult(id: string, ok: boolean): VerifyResult {
  return {
    format: VERIFY_RESULT_FORMAT, id, cluster: 'main', repo: 'memory://x', scope: 'all',
    start: { time: '2026-11-21T23:00:00.000Z' }, stop: { time: '2026-11-21T23:01:00.000Z' }, durationSeconds: 60, ok,
    checked: { backups: 0, dumps: 0, objects: 0, bytes: 0, storedBytes: 0, walSegments: 0, historyFiles: 0 },
    problems: ok ? [] : [{ kind: 'wal-gap', subject: '000000010000000000000004', message: 'missing', hint: 'check archiving' }],
  };
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('readInfoReport', () => {
  test('an empty repository: an empty report', async () => {
    const r = await readInfoReport(new MemoryDriver(), 'main', undefined, NOW);
    assert.deepEqual([r.backups, r.dumps, r.wal, r.lastVerify, r.lastDrill, r.repository.objects], [[], [], [], null, null, 0]);
    assert.match(formatReport(r), /nothing can be restored: no backups/);
    r.dumps.push(
      { id: '20261121-030000000', database: 'app', dumpFormat: 'custom', systemId: '1', pgMajor: '15', startTime: '2026-11-21T03:00:00.000Z', stopTime: '2026-11-21T03:00:05.000Z', size: 5_000_000, storedSize: 1_000_000, durationSeconds: 5, compress: 'zstd:3', encrypted: false },
      { id: '20261121-030000001', database: null, dumpFormat: 'globals', systemId: '1', pgMajor: '15', startTime: '2026-11-21T03:00:00.000Z', stopTime: '2026-11-21T03:00:06.000Z', size: 2000, storedSize: 500, durationSeconds: 1, compress: 'zstd:3', encrypted: false },
    );
    const dumps = [
      'dumps',
      '  DATABASE   ID                  FORMAT   STOP                  SIZE    STORED',
      '  app        20261121-030000000  custom   2026-11-21 03:00:05Z  5.0 MB  1.0 MB',
      '  (globals)  20261121-030000001  globals  2026-11-21 03:00:06Z  2.0 kB  500 B',
      '',
    ].join('\n');
    assert.ok(formatReport(r).includes(dumps), formatReport(r));
  });

  test('the WAL comes from the one listing of the cluster: no second listing of wal/, the same archive', async () => {
    const d = new MemoryDriver();
    await ensureRepoConfig(d, 'main', undefined, NOW);
    const sys = '7300000000000000001';
    for (const n of [1, 2, 4]) await d.write(walObjectKey('main', sys, `00000001000000000000000${n}`, String(n).repeat(64), '.zst'), Buffer.alloc(100 + n));
    await d.write(`main/wal/${sys}/stray.tmp`, Buffer.alloc(3));
    const listed: string[] = [];
    const list = d.list.bind(d);
    d.list = (prefix: string, signal?: AbortSignal) => {
      listed.push(prefix);
      return list(prefix, signal);
    };
    const r = await readInfoReport(d, 'main', undefined, NOW);
    assert.equal(listed.filter((p) => p === 'main/').length, 1, `listings: ${listed.join(', ')}`);
    assert.equal(listed.filter((p) => p.startsWith('main/wal')).length, 0, `listings: ${listed.join(', ')}`);
    d.list = list;
    const archive = (await listWalArchive(d, 'main')).get(sys)!;
    assert.deepEqual([...archive.segments.keys()], ['000000010000000000000001', '000000010000000000000002', '000000010000000000000004']);
    assert.equal(r.wal.length, 1);
    const t = r.wal[0]!.timelines[0]!;
    assert.deepEqual([r.wal[0]!.systemId, t.first, t.last, t.segments, t.missingSegments, r.wal[0]!.foreignObjects], [sys, '000000010000000000000001', '000000010000000000000004', 3, 1, 1]);
    assert.equal(r.repository.areas.wal.objects, 4);
  });

  test('sizes from one listing, the newest verify and drill results', async () => {
    const d = new MemoryDriver();
    await ensureRepoConfig(d, 'main', undefined, NOW);
    await d.write(verifyResultKey('main', '20261121-220000'), json(verifyResult('20261121-220000', true)));
    await d.write(verifyResultKey('main', '20261121-230000'), json(verifyResult('20261121-230000', false)));
    await d.write('main/drills/20261121-200000.json', json({ ok: true, rtoSeconds: 30 }));
    await d.write('main/drills/20261121-210000.json', Buffer.from('{not json'));
    await d.write('other/backups/x', Buffer.alloc(100)); // another cluster: not counted
    const r = await readInfoReport(d, 'main', undefined, NOW);
    assert.equal(r.repository.encrypted, false);
    assert.equal(r.repository.objects, 5);
    assert.equal(r.repository.areas.other.objects, 5);
    assert.deepEqual(r.lastVerify, { id: '20261121-230000', time: '2026-11-21T23:01:00.000Z', ok: false, scope: 'all', problems: 1, durationSeconds: 60 });
    // The newest drill result is damaged: shown, with what could not be read as unknown.
    assert.deepEqual(r.lastDrill, { id: '20261121-210000', time: null, ok: null, rtoSeconds: null, dataAgeSeconds: null, durationSeconds: null });
    const text = formatReport(r);
    assert.match(text, /last verify {2}20261121-230000 FAILED \(1 problem\), all, finished 2026-11-21 23:01:00Z/);
    assert.match(text, /last drill {3}20261121-210000 result unknown/);
    // A readable one: its times, the whole drill's duration included.
    await d.write('main/drills/20261121-220000.json', json({ ok: true, rtoSeconds: 30, dataAgeSeconds: 2, start: { time: '2026-11-21T22:00:00.000Z' }, stop: { time: '2026-11-21T22:01:15.000Z' } }));
    const ok = formatReport(await readInfoReport(d, 'main', undefined, NOW));
    assert.match(ok, /last drill {3}20261121-220000 ok, RTO 30 s, data age 2 s, took 75 s, finished 2026-11-21 22:01:15Z/);
  });

  test('a damaged manifest and verify result: the rest is reported, the damaged one listed, exit 4', async () => {
    const d = new MemoryDriver();
    await ensureRepoConfig(d, 'main', undefined, NOW);
    await d.write('main/backups/20261121-020000F/manifest.json', Buffer.from('{"format": "cairn.backup/1"'));
    await d.write(verifyResultKey('main', '20261121-230000'), Buffer.from('{half'));
    const warned: string[] = [];
    const r = await readInfoReport(d, 'main', undefined, NOW, undefined, (l) => warned.push(l));
    assert.deepEqual(r.backups, []);
    assert.equal(r.lastVerify, null);
    assert.deepEqual(r.damaged?.map((x) => [x.kind, x.id, x.key]), [['backup', '20261121-020000F', 'main/backups/20261121-020000F/manifest.json']]);
    assert.match(warned[0]!, /^backup 20261121-020000F left out: its manifest "main\/backups\/20261121-020000F\/manifest.json" is damaged/);
    assert.match(formatReport(r), /damaged \(left out above; run cairn-verify\)\n {2}backup 20261121-020000F: /);
    assert.equal(infoExitStatus({ format: 'cairn.info/1', createdAt: NOW.toISOString(), repositories: [r], errors: [] }), 4);
  });

  test('reader leases: each live one on a line with when it expires; lapsed ones counted; unreadable ones named', async () => {
    const d = new MemoryDriver();
    await ensureRepoConfig(d, 'main', undefined, NOW);
    const fields: ReaderLeaseFields = {
      purpose: 'restore', pgdata: '/srv/pg', systemId: '1', walSegmentSize: 16 * 1024 * 1024, backup: '20261121-010000F',
      chain: ['20261121-010000F'], dumps: [], wal: [], target: 'latest',
    };
    const hour = 3600_000;
    const live = await createReaderLease(d, 'main', fields, { lifetimeMs: 24 * hour, now: new Date(NOW.getTime() - hour), tool: 'cairn-restore' });
    const lapsed = await createReaderLease(d, 'main', fields, { lifetimeMs: hour, now: new Date(NOW.getTime() - 2 * hour), tool: 'cairn-restore' });
    await d.write('main/readers/20261121-000000-deadbeef.json', Buffer.from('{half'));
    const r = await readInfoReport(d, 'main', undefined, NOW);
    assert.deepEqual(r.readers.map((x) => [x.id, x.live]).sort(), [[live.id, true], [lapsed.id, false]].sort());
    assert.deepEqual(r.readersUnreadable.map((u) => u.key), ['main/readers/20261121-000000-deadbeef.json']);
    const text = formatReport(r);
    const section = text.slice(text.indexOf('\nreader leases'));
    assert.equal(section, [
      '',
      'reader leases (cairn-expire keeps what a live one needs)',
      `  ${describeReader(live)}, expires 2026-11-22 23:00:00Z`,
      '  1 lapsed lease (protecting nothing; cairn-expire removes them once lapsed longer than its --debris-grace)',
      `  unreadable main/readers/20261121-000000-deadbeef.json: ${r.readersUnreadable[0]!.problem} (protects nothing; remove it by hand once no restore uses it)`,
      '',
    ].join('\n'));
    assert.ok(!formatReport(await readInfoReport(new MemoryDriver(), 'main', undefined, NOW)).includes('reader leases'), 'no section without leases');
  });

  test('an encrypted repository without the key is refused before anything is decoded', async () => {
    const d = new MemoryDriver();
    await ensureRepoConfig(d, 'main', encryptionKeyFromBytes(Buffer.alloc(32, 7)), NOW);
    await rejectsWith(readInfoReport(d, 'main', undefined, NOW), 'KEY_INVALID', /is encrypted and no encryption key is configured/);
  });
});

test('infoExitStatus: 0 when every repository was read, else the first failure\'s status', () => {
  const doc = { format: 'cairn.info/1' as const, createdAt: NOW.toISOString(), repositories: [] };
  assert.equal(infoExitStatus({ ...doc, errors: [] }), 0);
  assert.equal(infoExitStatus({ ...doc, errors: [{ repo: 'a', code: 'STORAGE_UNAVAILABLE', message: 'down', hint: null }, { repo: 'b', code: 'FORMAT_INVALID', message: 'bad', hint: null }] }), 3);
  assert.equal(infoExitStatus({ ...doc, errors: [{ repo: 'b', code: 'FORMAT_INVALID', message: 'bad', hint: null }] }), 4);
});
