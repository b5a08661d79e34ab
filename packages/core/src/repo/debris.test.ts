// Leftovers of unfinished writes on the fs driver: listed children first,
// judged by writer and age, swept by a rerun, planned away by expire; and the
// intents killed WAL pushes leave, on any store.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FsDriver } from '../storage/fs.js';
import { MemoryDriver } from '../storage/memory.js';
import { applyExpire } from '../expire/apply.js';
import { hostTag } from '../util/debris.js';
import { parseDuration } from '../util/duration.js';
import { planExpire } from '../expire/plan.js';
import { abandonedDebris, describeRepoDebris, listRepoDebris, sweepRepoDebris } from './debris.js';
import { walIntentKey } from './layout.js';
import { storeWal, WAL_INTENT_STALE_MS } from './wal-archive.js';

const root = mkdtempSync(join(tmpdir(), 'cairn-debris-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A pid no process has (above the kernel's pid_max default). */
const DEAD_PID = 4_194_305;

async function fixture(name: string) {
  const dir = join(root, name);
  const wal = join(dir, 'main', 'wal', '1', '0000000100000000');
  await mkdir(wal, { recursive: true });
  await mkdir(join(dir, 'main', 'backups', '20261203-010101F', 'data', 'base'), { recursive: true });
  const dead = `.tmp.000000010000000000000001-x.zst.${hostTag()}-${DEAD_PID}.aabbccddeeff`;
  const live = `.tmp.000000010000000000000002-x.zst.${hostTag()}-${process.pid}.aabbccddeeff`;
  const other = `.tmp.000000010000000000000003-x.zst.0000beef-${DEAD_PID}.aabbccddeeff`;
  for (const n of [dead, live, other]) await writeFile(join(wal, n), 'partial');
  await writeFile(join(wal, '000000010000000000000004-x.zst'), 'whole');
  return { driver: new FsDriver(dir), wal, dead, live, other };
}

describe('repository debris (fs)', () => {
  it('WAL pushes leave nothing behind: their intents go; the directory that held them stays, empty, and is no leftover', async () => {
    const dir = join(root, 'pushes');
    const driver = new FsDriver(dir);
    const sha = 'ab'.repeat(32);
    for (const n of [1, 2, 3]) {
      const walName = `00000001000000000000000${n}`;
      assert.equal(await storeWal(driver, { cluster: 'main', systemId: '7312345678901234567', walName, sha256: sha, ext: '.zst', body: () => Buffer.from('x') }), 'stored');
    }
    assert.deepEqual(await listRepoDebris(driver, 'main'), []);
    assert.deepEqual((await readdir(join(dir, 'main'))).sort(), ['locks', 'wal']);
    assert.deepEqual(await readdir(join(dir, 'main', 'locks', 'wal', '7312345678901234567')), []);
    // Any other empty directory there still is one.
    await mkdir(join(dir, 'main', 'locks', 'other'));
    assert.deepEqual((await listRepoDebris(driver, 'main')).map((d) => d.path), ['main/locks/other/']);
  });
  it('lists temp files with their writer and empty directories, children first', async () => {
    const { driver, dead, live, other } = await fixture('list');
    const items = await listRepoDebris(driver, 'main');
    const paths = items.map((d) => d.path);
    const w = 'main/wal/1/0000000100000000/';
    assert.deepEqual(paths, [
      'main/backups/20261203-010101F/data/base/',
      'main/backups/20261203-010101F/data/',
      'main/backups/20261203-010101F/',
      'main/backups/',
      `${w}${dead}`,
      `${w}${live}`,
      `${w}${other}`,
    ]);
    assert.deepEqual(items.find((d) => d.path.endsWith(dead))?.writer, { host: hostTag(), pid: DEAD_PID });
    assert.match(describeRepoDebris(items)[0]!, /^3 temp files \(21 bytes\) of unfinished writes and 4 empty directories/);
  });

  it('abandoned: a gone writer on this host at once; anything else only after the grace period', async () => {
    const { driver, dead } = await fixture('judge');
    const items = await listRepoDebris(driver, 'main');
    const now = new Date();
    assert.deepEqual(abandonedDebris(items, now, 3_600_000).map((d) => d.path), [`main/wal/1/0000000100000000/${dead}`]);
    assert.equal(abandonedDebris(items, new Date(now.getTime() + 7_200_000), 3_600_000).length, items.length);
  });

  it('a rerun sweeps what its killed predecessor left on this host, nothing else', async () => {
    const { driver, wal, dead, live, other } = await fixture('sweep');
    const gone = await sweepRepoDebris(driver, 'main', 'wal/', new Date(), Infinity);
    assert.deepEqual(gone.map((d) => d.path), [`main/wal/1/0000000100000000/${dead}`]);
    assert.deepEqual((await readdir(wal)).sort(), ['000000010000000000000004-x.zst', live, other].sort());
  });

  it('a write into a directory removes the temp files of gone writers there', async () => {
    const { driver, wal, dead } = await fixture('write');
    await driver.write('main/wal/1/0000000100000000/000000010000000000000005-x.zst', Buffer.from('new'));
    assert.ok(!(await readdir(wal)).includes(dead));
  });

  it('expire plans leftovers older than --debris-grace, and its apply removes them', async () => {
    const { driver, wal, live } = await fixture('expire');
    const old = new Date(Date.now() - 2 * 3_600_000);
    await utimes(join(wal, live), old, old);
    const leftovers = await listRepoDebris(driver, 'main');
    const catalog = { cluster: 'main', repo: driver.url, backups: [], dumps: [], wal: new Map(), objects: [], leftovers };
    const { plan, steps } = planExpire(catalog, { debrisGrace: parseDuration('1h'), keepFull: 1 }, new Date());
    const planned = steps.filter((s) => s.kind === 'leftover').map((s) => s.name);
    assert.ok(planned.includes(`main/wal/1/0000000100000000/${live}`), planned.join(', '));
    assert.equal(plan.totals.debrisObjectsRemoved, planned.length);
    for (const s of steps.filter((x) => x.kind === 'leftover')) for (const k of s.keys) await driver.removeDebris(k);
    assert.ok(!(await readdir(wal)).includes(live));
  });
});

describe('intents of killed WAL pushes (memory driver: a store without listDebris)', () => {
  const SYS = '7300000000000000001';
  const SEG = '000000010000000000000007';
  const SHA = 'ab'.repeat(32);
  const note = Buffer.from('{"format":"cairn.wal-intent/1"}\n');

  async function repo() {
    const driver = new MemoryDriver();
    const stale = walIntentKey('main', SYS, SEG, '00000000000000aa', SHA);
    const fresh = walIntentKey('main', SYS, SEG, '00000000000000bb', SHA);
    // Written as storeWal writes them; the others are not intents.
    for (const k of [stale, fresh]) await driver.write(k, note, { durable: false });
    await driver.write(`main/locks/wal/${SYS}/${SEG}.partial.00000000000000cc.${SHA}x`, note);
    await driver.write('main/locks/backup.json', note);
    await driver.write(`main/wal/${SYS}/0000000100000000/${SEG}-${SHA}.zst`, note);
    return { driver, stale, fresh };
  }

  it('lists them as debris (and nothing else under locks/), and verify notes them', async () => {
    const { driver, stale, fresh } = await repo();
    const items = await listRepoDebris(driver, 'main');
    assert.deepEqual(items.map((d) => [d.path, d.intent]), [[stale, true], [fresh, true]]);
    assert.deepEqual(await listRepoDebris(driver, 'main', undefined, 'wal/'), [], 'a rerun sweeping wal/ never meets them');
    assert.match(describeRepoDebris(items)[0]!, /^2 intents of WAL pushes, e\.g\. ".*" \(.*cairn-expire after --debris-grace removes them\)$/);
  });

  it('expire plans those older than --debris-grace (never younger than a push judges stale) and its apply removes them', async () => {
    const { driver, stale, fresh } = await repo();
    const listed = await listRepoDebris(driver, 'main');
    const t0 = listed[0]!.mtime.getTime();
    // The stale one last touched 2 min ago, the fresh one 30 s ago.
    const now = new Date(t0 + 120_000);
    const leftovers = listed.map((d) => (d.path === fresh ? { ...d, mtime: new Date(t0 + 90_000) } : d));
    const catalog = { cluster: 'main', repo: driver.url, backups: [], dumps: [], wal: new Map(), objects: [], leftovers };
    const { plan, steps } = planExpire(catalog, { debrisGrace: parseDuration('1s'), keepFull: 1 }, now);
    assert.deepEqual(steps.map((s) => [s.kind, s.keys]), [['debris', [stale]]]);
    assert.deepEqual(plan.debris.map((d) => d.prefix), [stale]);
    assert.equal(plan.totals.debrisObjectsRemoved, 1);
    // A grace longer than the stale one's age keeps both.
    assert.deepEqual(planExpire(catalog, { debrisGrace: parseDuration('3min'), keepFull: 1 }, now).steps, []);
    // Within WAL_INTENT_STALE_MS an intent is live whatever the grace period.
    const young = listed.map((d) => ({ ...d, mtime: new Date(now.getTime() - WAL_INTENT_STALE_MS + 1000) }));
    assert.deepEqual(abandonedDebris(young, now, 1000), []);
    await applyExpire(driver, steps);
    assert.deepEqual((await listRepoDebris(driver, 'main')).map((d) => d.path), [fresh]);
  });
});
