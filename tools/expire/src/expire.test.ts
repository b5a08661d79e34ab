import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { runTool } from '@cairn/core/cli/run';
import { MemoryDriver } from '@cairn/core/storage/memory';
import { sha256Hex } from '@cairn/core/codec/hash';
import { backup, seg, SYS } from '@cairn/core/expire/test-catalog';
import { EXPIRE_PLAN_FORMAT, type ExpirePlan } from '@cairn/core/expire/plan';
import { parseDuration } from '@cairn/core/util/duration';
import { WAL_INTENT_STALE_MS } from '@cairn/core/repo/wal-archive';
import { createReaderLease, describeReader, readerLeaseKey, type ReaderLeaseFields } from '@cairn/core/repo/reader-lease';
import { expireTool } from './command.js';
import { DEFAULT_DEBRIS_GRACE } from './expire.js';

function capture() {
  const s = new PassThrough();
  let text = '';
  s.on('data', (c: Buffer) => (text += c.toString()));
  return { stream: s, text: () => text };
}

const NOW = new Date('2026-11-21T12:00:00Z');

async function run(argv: string[]) {
  const out = capture();
  const err = capture();
  const code = await runTool(expireTool, { argv, env: {}, cwd: '/', stdout: out.stream, stderr: err.stream, now: () => NOW });
  return { code, out: out.text(), err: err.text() };
}

test('the default --debris-grace outlives any intent a WAL push still counts as live', () => {
  const grace = parseDuration(DEFAULT_DEBRIS_GRACE);
  const now = new Date();
  assert.ok(now.getTime() - grace.before(now).getTime() >= WAL_INTENT_STALE_MS);
});

describe('cairn-expire: usage errors (exit 2, one line)', () => {
  const cases: [string[], string][] = [
    [[], 'cairn-expire: error: no retention policy given; give at least one of --keep-full, --keep-diff, --keep-within, --keep-daily/-weekly/-monthly/-yearly, --keep-dumps, --keep-dumps-within, --keep-dumps-daily/-weekly/-monthly/-yearly\n'],
    [['--keep-full', '0'], 'cairn-expire: error: invalid --keep-full "0": expected a whole number of at least 1; --keep-full N keeps N; to keep nothing by this rule leave the flag out\n'],
    [['--keep-monthly', 'x'], 'cairn-expire: error: invalid --keep-monthly "x": expected a whole number of at least 1; --keep-monthly N keeps N; to keep nothing by this rule leave the flag out\n'],
    [['--keep-within', '14'], 'cairn-expire: error: invalid --keep-within "14": no unit; a bare number is ambiguous: write a number and a unit: s, min, h, d, w, mo (months), y; combine them as in 1d12h (e.g. 14d or 14h)\n'],
    [['--keep-full', '1', '--debris-grace', '5m'], 'cairn-expire: error: invalid --debris-grace "5m": "m" could mean minutes or months; write min for minutes or mo for months\n'],
    [['--keep-fulll', '1'], "cairn-expire: error: unknown option '--keep-fulll'; see cairn-expire --help\n"],
  ];
  for (const [argv, stderr] of cases) {
    test(argv.join(' ') || '(no flags)', async () => {
      const r = await run(['--repo', 'memory://expire-usage', ...argv]);
      assert.equal(r.code, 2);
      assert.equal(r.err, stderr);
      assert.equal(r.out, '');
    });
  }
});

/** A small repository: two fulls with an incr each, WAL 1–12, a history file, debris. */
async function seed(name: string): Promise<MemoryDriver> {
  const d = new MemoryDriver(name);
  const put = (key: string, body: string | Buffer) => d.write(key, Buffer.from(body));
  const specs = [
    backup({ id: '20261101-010000F', start: 2 }),
    backup({ id: '20261102-010000I', start: 4, parent: '20261101-010000F' }),
    backup({ id: '20261110-010000F', start: 8 }),
    backup({ id: '20261111-010000I', start: 10, parent: '20261110-010000F' }),
  ];
  for (const b of specs) {
    await put(`main/backups/${b.id}/data/base/1/1259.zst`, 'x'.repeat(100));
    await put(`main/backups/${b.id}/manifest.json`, JSON.stringify({ ...b, files: [], dirs: [], backupLabel: '', tablespaceMap: null }));
  }
  for (let n = 1; n <= 12; n++) {
    const name = seg(1, n);
    const body = `segment ${n}`;
    await put(`main/wal/${SYS}/${name.slice(0, 16)}/${name}-${sha256Hex(body)}`, body);
  }
  await put(`main/wal/${SYS}/00000002.history-${sha256Hex('1\t0/9000000\tno recovery target specified\n')}`, '1\t0/9000000\tno recovery target specified\n');
  await put('main/backups/20261115-010000F/data/base/1/1.zst', 'debris');
  await put('main/locks/unrelated', 'x');
  await put('main/repo.json', JSON.stringify({ format: 1, cipher: 'none', created: NOW.toISOString(), createdBy: 'test' }));
  return d;
}

describe('cairn-expire on a repository', () => {
  test('--dry-run prints the plan and deletes nothing; the run deletes exactly that', async () => {
    const d = await seed('expire-apply');
    const before = new Set<string>();
    for await (const o of d.list('')) before.add(o.key);

    // The debris was written just now (the memory driver stamps the real
    // time), later than NOW − 6h: within the grace period, it stays.
    const dry = await run(['--repo', 'memory://expire-apply', '--keep-full', '1', '--dry-run']);
    assert.equal(dry.code, 0, dry.err);
    const plan = JSON.parse(dry.out) as ExpirePlan;
    assert.equal(plan.format, EXPIRE_PLAN_FORMAT);
    assert.deepEqual(plan.backups.map((b) => [b.id, b.action]), [
      ['20261101-010000F', 'remove'],
      ['20261102-010000I', 'remove'],
      ['20261110-010000F', 'keep'],
      ['20261111-010000I', 'keep'],
    ]);
    assert.deepEqual(plan.wal[0]!.removed, { from: seg(1, 1), to: seg(1, 7), segments: 7, files: 7, bytes: 7 * 9 });
    assert.deepEqual(plan.debris, []);
    assert.equal(dry.err, 'cairn-expire: repository "memory://expire-apply": would remove 2 backups (2 kept), 0 dumps (0 kept), 7 WAL segments (7 files), 0 debris objects; would free 1.8 kB\n');
    const afterDry = new Set<string>();
    for await (const o of d.list('')) afterDry.add(o.key);
    assert.deepEqual(afterDry, before);

    const real = await run(['--repo', 'memory://expire-apply', '--keep-full', '1', '--json']);
    assert.equal(real.code, 0, real.err);
    assert.deepEqual((JSON.parse(real.out) as ExpirePlan).totals, plan.totals);
    assert.match(real.err, /: removed 2 backups \(2 kept\), .* 7 WAL segments \(7 files\), 0 debris objects; freed 1.8 kB\n$/);
    const left: string[] = [];
    for await (const o of d.list('')) left.push(o.key);
    const gone = [...before].filter((k) => !left.includes(k));
    assert.equal(gone.length, 4 + 7);
    assert.ok(gone.every((k) => k.includes('20261101-010000F') || k.includes('20261102-010000I') || /\/00000001000000000000000[1-7]-/.test(k)), gone.join('\n'));
    assert.ok(left.includes('main/locks/unrelated') && left.includes('main/repo.json'));
    assert.ok(left.some((k) => k.includes('00000002.history')));
    // The lease is released.
    assert.ok(!left.some((k) => k.startsWith('main/locks/') && k !== 'main/locks/unrelated'), left.join('\n'));
  });
});

describe('cairn-expire with reader leases (issue 12)', () => {
  const fields: ReaderLeaseFields = {
    purpose: 'restore', pgdata: '/srv/pg', systemId: SYS, walSegmentSize: 16 * 1024 * 1024, backup: '20261102-010000I',
    chain: ['20261101-010000F', '20261102-010000I'], dumps: [], wal: [{ timeline: 1, from: seg(1, 2), to: seg(1, 7) }], target: 'latest',
  };
  const HOUR = 3600_000;
  const at = (ms: number) => new Date(NOW.getTime() + ms);

  test('a live lease keeps the chain and WAL its restore reads; --dry-run says why and the summary says what it kept', async () => {
    const d = await seed('expire-leased');
    const lease = await createReaderLease(d, 'main', fields, { lifetimeMs: 24 * HOUR, now: at(-HOUR), tool: 'cairn-restore' });
    const dry = await run(['--repo', 'memory://expire-leased', '--keep-full', '1', '--dry-run']);
    assert.equal(dry.code, 0, dry.err);
    const plan = JSON.parse(dry.out) as ExpirePlan;
    assert.deepEqual(plan.backups.map((b) => b.action), ['keep', 'keep', 'keep', 'keep']);
    assert.deepEqual(plan.backups[0]!.reasons, [`needed by ${describeReader(lease)}`]);
    assert.deepEqual(plan.wal[0]!.removed, { from: seg(1, 1), to: seg(1, 1), segments: 1, files: 1, bytes: 9 });
    assert.deepEqual(plan.readers.map((r) => [r.id, r.live, r.action, r.expiresAt]), [[lease.id, true, 'keep', lease.expiresAt]]);
    assert.equal(dry.err, 'cairn-expire: repository "memory://expire-leased": would remove 0 backups (4 kept), 0 dumps (0 kept), 1 WAL segment (1 file), 0 debris objects; would free 9 B; 1 live reader lease kept 2 backups and 6 WAL segments\n');
  });

  test('lapsed leases protect nothing; one lapsed longer than --debris-grace ago is removed, a recent one stays', async () => {
    const d = await seed('expire-lapsed');
    const old = await createReaderLease(d, 'main', fields, { lifetimeMs: 24 * HOUR, now: at(-31 * HOUR), tool: 'cairn-restore' });
    const recent = await createReaderLease(d, 'main', fields, { lifetimeMs: 24 * HOUR, now: at(-25 * HOUR), tool: 'cairn-restore' });
    await d.write('main/readers/notes.json', Buffer.from('{}'));
    const r = await run(['--repo', 'memory://expire-lapsed', '--keep-full', '1', '--json']);
    assert.equal(r.code, 0, r.err);
    const plan = JSON.parse(r.out) as ExpirePlan;
    assert.deepEqual(plan.backups.map((b) => b.action), ['remove', 'remove', 'keep', 'keep']);
    assert.deepEqual(plan.readers.map((x) => [x.id, x.live, x.action]), [[old.id, false, 'remove'], [recent.id, false, 'keep'], ['notes.json', false, 'keep']]);
    assert.match(r.err, /: removed 2 backups \(2 kept\), 0 dumps \(0 kept\), 7 WAL segments \(7 files\), 0 debris objects, 1 lapsed reader lease; freed 1.8 kB\n$/);
    const left: string[] = [];
    for await (const o of d.list('main/readers/')) left.push(o.key);
    assert.deepEqual(left.sort(), [readerLeaseKey('main', recent.id), 'main/readers/notes.json'].sort());
  });
});
