import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCairnError } from '../cli/errors.js';
import { MemoryDriver } from '../storage/memory.js';
import { acquireLeases } from './lease.js';
import {
  createReaderLease, describeReader, holdReaderLease, isExpected, isLiveReader, listReaderLeases, parseExpectation, readerLeaseKey,
  readReaderLease, renewInterval, renewReaderLease, waitForRunningExpire, type ReaderLeaseFields,
} from './reader-lease.js';

const FIELDS: ReaderLeaseFields = {
  purpose: 'restore', pgdata: '/srv/pg', systemId: '7312', walSegmentSize: 16 * 1024 * 1024, backup: '20261201-010000F',
  chain: ['20261201-010000F'], dumps: [], wal: [{ timeline: 1, from: '000000010000000000000003', to: '00000001000000000000002E' }], target: 'latest',
};
const T0 = new Date('2026-12-03T10:00:00Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);

describe('reader leases', () => {
  it('are created under readers/, listed, live until their lifetime runs out, and described for people', async () => {
    const d = new MemoryDriver();
    const rec = await createReaderLease(d, 'main', FIELDS, { lifetimeMs: 60_000, now: T0, tool: 'cairn-restore' });
    assert.match(rec.id, /^20261203-100000-[0-9a-f]{8}$/);
    assert.equal(rec.expiresAt, at(60).toISOString());
    const listed = await listReaderLeases(d, 'main');
    assert.deepEqual(listed.leases.map((l) => l.id), [rec.id]);
    assert.equal(isLiveReader(rec, at(59)), true);
    assert.equal(isLiveReader(rec, at(60)), false);
    assert.match(describeReader(rec), /^the restore of backup 20261201-010000F into "\/srv\/pg" on host ".+" \(lease \d{8}-\d{6}-[0-9a-f]{8}, renewed at 2026-12-03T10:00:00.000Z\)$/);
  });

  it('renew at most once per renewInterval, push the expiry a lifetime on, and never make a removed lease again', async () => {
    const d = new MemoryDriver();
    const rec = await createReaderLease(d, 'main', FIELDS, { lifetimeMs: 3_600_000, now: T0, tool: 'cairn-restore' });
    assert.equal(renewInterval(3_600_000), 60_000);
    assert.equal(await renewReaderLease(d, 'main', rec.id, at(30)), 'fresh');
    assert.equal((await readReaderLease(d, 'main', rec.id))!.renewedAt, T0.toISOString());
    assert.equal(await renewReaderLease(d, 'main', rec.id, at(61)), 'renewed');
    const renewed = (await readReaderLease(d, 'main', rec.id))!;
    assert.equal(renewed.renewedAt, at(61).toISOString());
    assert.equal(renewed.expiresAt, at(61 + 3600).toISOString());
    await d.remove(readerLeaseKey('main', rec.id));
    assert.equal(await renewReaderLease(d, 'main', rec.id, at(200)), 'absent');
    assert.equal(await readReaderLease(d, 'main', rec.id), undefined);
  });

  it('list damaged or foreign objects apart, as protecting nothing', async () => {
    const d = new MemoryDriver();
    await d.write('main/readers/20261203-100000-00000000.json', Buffer.from('{"format":"cairn.reader-lease/1"'));
    await d.write('main/readers/notes.txt', Buffer.from('hello'));
    await d.write('main/readers/20261203-100000-11111111.json', Buffer.from(JSON.stringify({ format: 'cairn.reader-lease/1', id: '20261203-100000-22222222' })));
    const listed = await listReaderLeases(d, 'main');
    assert.deepEqual(listed.leases, []);
    assert.deepEqual(listed.unreadable.map((u) => u.key), [
      'main/readers/20261203-100000-00000000.json', 'main/readers/20261203-100000-11111111.json', 'main/readers/notes.txt',
    ]);
    assert.match(listed.unreadable[1]!.problem, /its id "20261203-100000-22222222" is not its name/);
  });

  it('held by a drill: renewed on a timer while held, removed on release', async () => {
    const d = new MemoryDriver();
    let clock = T0.getTime();
    const held = await holdReaderLease(d, 'main', { ...FIELDS, purpose: 'drill' }, { lifetimeMs: 400, now: () => new Date(clock), tool: 'cairn-drill' });
    clock += 1000;
    // Polled: the timer's tick may come late on a loaded machine.
    for (const deadline = Date.now() + 5000; (await readReaderLease(d, 'main', held.lease.id))!.renewedAt !== new Date(clock).toISOString(); ) {
      assert.ok(Date.now() < deadline, 'renewed within 5 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    await held.release();
    await held.release();
    assert.equal(await readReaderLease(d, 'main', held.lease.id), undefined);
  });

  it('a restore waits for an expire that holds the backup lease, not for a backup', async () => {
    const d = new MemoryDriver();
    assert.equal(await waitForRunningExpire(d, 'main', { maxWaitMs: 0 }), false);
    const backup = await acquireLeases(d, 'main', { tool: 'basebackup' });
    assert.equal(await waitForRunningExpire(d, 'main', { maxWaitMs: 0 }), false);
    await backup.release();
    const expire = await acquireLeases(d, 'main', { tool: 'expire' });
    await assert.rejects(waitForRunningExpire(d, 'main', { maxWaitMs: 0 }), (e) => isCairnError(e, 'LOCK_HELD'));
    const waiting = waitForRunningExpire(d, 'main', { maxWaitMs: 10_000 });
    setTimeout(() => void expire.release(), 200);
    assert.equal(await waiting, true);
  });
});

describe('--expect-through', () => {
  it('takes FROM-TO of one timeline, or a lone TO', () => {
    assert.deepEqual(parseExpectation('000000010000000000000003-00000001000000010000002E'), { from: '000000010000000000000003', to: '00000001000000010000002E' });
    assert.deepEqual(parseExpectation('00000002000000000000002E'), { from: '000000020000000000000000', to: '00000002000000000000002E' });
    for (const bad of ['', '3-4', '000000010000000000000003-00000002000000000000002E', '00000001000000000000002E-000000010000000000000003', '000000010000000000000003-00000001000000000000002e']) {
      assert.throws(() => parseExpectation(bad), (e) => isCairnError(e, 'USAGE'), bad);
    }
  });

  it('covers the segments of a range on its own timeline only', () => {
    const ranges = [parseExpectation('000000010000000000000003-000000010000000100000002'), parseExpectation('000000020000000100000002-000000020000000100000010')];
    for (const yes of ['000000010000000000000003', '0000000100000000000000FF', '000000010000000100000002', '000000020000000100000002', '000000020000000100000010']) assert.equal(isExpected(yes, ranges), true, yes);
    // Before a timeline's switch point PostgreSQL may ask a newer timeline for a segment it does not have: that is "not found".
    for (const no of ['000000010000000000000002', '000000010000000100000003', '000000020000000100000001', '000000020000000000000005', '000000030000000100000005', '00000002.history', '000000010000000000000003.partial']) assert.equal(isExpected(no, ranges), false, no);
  });
});
