import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isCairnError } from '../cli/errors.js';
import { FsDriver } from '../storage/fs.js';
import { MemoryDriver } from '../storage/memory.js';
import type { StorageDriver, WriteOptions } from '../storage/driver.js';
import { acquireLeases, leaseKey, LEASE_FORMAT, processIdentity, withLeases, type LeaseRecord } from './lease.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function drivers(): [string, () => StorageDriver][] {
  return [
    ['memory', () => new MemoryDriver()],
    [
      'fs',
      () => {
        const d = mkdtempSync(join(tmpdir(), 'cairn-lease-'));
        dirs.push(d);
        return new FsDriver(d);
      },
    ],
  ];
}

async function writeRecord(driver: StorageDriver, name: string, over: Partial<LeaseRecord>): Promise<LeaseRecord> {
  const t = new Date();
  const rec: LeaseRecord = {
    format: LEASE_FORMAT,
    name,
    tool: 'cairn-basebackup',
    holder: 'someone-else',
    host: 'other-host',
    pid: 4242,
    acquiredAt: t.toISOString(),
    renewedAt: t.toISOString(),
    expiresAt: new Date(t.getTime() + 60_000).toISOString(),
    ...over,
  };
  await driver.write(leaseKey('main', name), Buffer.from(JSON.stringify(rec)));
  return rec;
}

function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

for (const [kind, make] of drivers()) {
  describe(`leases (${kind})`, () => {
    it('a second basebackup is refused with LOCK_HELD naming the holder; after release it gets the lease', async () => {
      const d = make();
      const first = await acquireLeases(d, 'main', { tool: 'basebackup' });
      await assert.rejects(acquireLeases(d, 'main', { tool: 'basebackup' }), (err: unknown) => {
        assert.ok(isCairnError(err, 'LOCK_HELD'));
        assert.equal(err.exitCode, 5);
        assert.match(err.message, /^lease "backup" of cluster "main" in repository ".*" is held by cairn-basebackup \(pid \d+ on host ".*", since /);
        assert.match(err.hint ?? '', /--lock-wait/);
        return true;
      });
      await first.release();
      assert.equal(await d.stat(leaseKey('main', 'backup')), undefined);
      const second = await acquireLeases(d, 'main', { tool: 'basebackup' });
      await second.release();
    });

    it('basebackup and dump run side by side; expire waits for both', async () => {
      const d = make();
      const b = await acquireLeases(d, 'main', { tool: 'basebackup' });
      const dump = await acquireLeases(d, 'main', { tool: 'dump' });
      await assert.rejects(acquireLeases(d, 'main', { tool: 'expire' }), (e: unknown) => isCairnError(e, 'LOCK_HELD') && /"backup"/.test(e.message));
      await b.release();
      await assert.rejects(acquireLeases(d, 'main', { tool: 'expire' }), (e: unknown) => isCairnError(e, 'LOCK_HELD') && /"dump"/.test(e.message));
      // The failed expire let go of the backup lease it had taken.
      const b2 = await acquireLeases(d, 'main', { tool: 'basebackup' });
      await b2.release();
      await dump.release();
      const e = await acquireLeases(d, 'main', { tool: 'expire' });
      assert.deepEqual(e.records.map((r) => r.name), ['backup', 'dump']);
      await assert.rejects(acquireLeases(d, 'main', { tool: 'dump' }), (x: unknown) => isCairnError(x, 'LOCK_HELD'));
      await e.release();
    });

    it('other clusters are not affected', async () => {
      const d = make();
      const a = await acquireLeases(d, 'main', { tool: 'expire' });
      const b = await acquireLeases(d, 'other', { tool: 'expire' });
      await a.release();
      await b.release();
    });

    it('an expired lease is taken over', async () => {
      const d = make();
      const stale = await writeRecord(d, 'backup', { expiresAt: new Date(Date.now() - 1000).toISOString() });
      const seen: LeaseRecord[] = [];
      const l = await acquireLeases(d, 'main', { tool: 'basebackup', confirmMs: 10, onTakeover: (r) => seen.push(r) });
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.holder, stale.holder);
      await l.release();
    });

    it('a lease of a process of this host that is gone is taken over before it expires', async () => {
      const d = make();
      await writeRecord(d, 'backup', { host: hostname(), pid: deadPid(), ...processIdentity() });
      const l = await acquireLeases(d, 'main', { tool: 'basebackup', confirmMs: 10 });
      await l.release();
    });

    it('a dead pid of another pid namespace or boot (a container with the same host name) is honoured until expiry', async () => {
      const d = make();
      assert.ok(processIdentity().pidNamespace, 'this Linux shows /proc/self/ns/pid');
      await writeRecord(d, 'backup', { host: hostname(), pid: deadPid(), ...processIdentity(), pidNamespace: 'pid:[1]' });
      await assert.rejects(acquireLeases(d, 'main', { tool: 'basebackup' }), (e: unknown) => isCairnError(e, 'LOCK_HELD'));
      await writeRecord(d, 'backup', { host: hostname(), pid: deadPid(), ...processIdentity(), bootId: 'another-boot' });
      await assert.rejects(acquireLeases(d, 'main', { tool: 'basebackup' }), (e: unknown) => isCairnError(e, 'LOCK_HELD'));
    });

    it('a holder whose renewals fail stops before its lease runs out', async () => {
      const d = make();
      // The lease reads the test's clock: with real time a loaded machine
      // makes the first renewal tick (or the acquiring write) late, and a
      // failure seen that late is rightly already past the point of stopping
      // (fixed 150/250 ms sleeps failed under load). Ticks still run on real
      // timers; only the time they see is set here.
      let clock = Date.parse('2026-01-01T00:00:00.000Z');
      const l = await acquireLeases(d, 'main', { tool: 'basebackup', ttlMs: 300, now: () => new Date(clock) });
      let failed = 0;
      d.write = async () => {
        failed++;
        throw new Error('storage unreachable');
      };
      clock += 150; // 150 ms left: more than a renewal interval (ttl/3)
      // Renewals run one after another: when the second write fails, the first renewal has ended.
      await until(() => failed >= 2, 'a renewal attempted twice');
      assert.equal(l.signal.aborted, false, 'a failed renewal is retried while the lease has time left');
      clock += 100; // 50 ms left: less than a renewal interval, not yet run out
      await until(() => l.signal.aborted, 'stopped');
      assert.match((l.signal.reason as Error).message, /could not be renewed before it ran out/);
      await l.release();
    });

    it('a live holder on another host is honoured until its lease expires', async () => {
      const d = make();
      await writeRecord(d, 'backup', { host: 'db-2', pid: deadPid() });
      await assert.rejects(acquireLeases(d, 'main', { tool: 'basebackup' }), (e: unknown) => isCairnError(e, 'LOCK_HELD') && /host "db-2"/.test(e.message));
    });

    it('a damaged lease counts as expired', async () => {
      const d = make();
      await d.write(leaseKey('main', 'dump'), Buffer.from('{"half'));
      const l = await acquireLeases(d, 'main', { tool: 'dump', confirmMs: 10 });
      await l.release();
    });

    it('waits up to --lock-wait for the holder to finish', async () => {
      const d = make();
      const first = await acquireLeases(d, 'main', { tool: 'dump' });
      setTimeout(() => void first.release(), 200);
      const t0 = Date.now();
      const second = await acquireLeases(d, 'main', { tool: 'dump', waitMs: 5000 });
      assert.ok(Date.now() - t0 >= 150);
      await second.release();
    });

    it('renews the lease while held, and tells the holder when it was taken over', async () => {
      const d = make();
      const l = await acquireLeases(d, 'main', { tool: 'basebackup', ttlMs: 300 });
      const first = l.records[0]!.expiresAt;
      // Polled, not slept: on a loaded machine a tick comes late (a fixed
      // 130 ms wait failed a unit run beside other suites).
      await until(() => l.records[0]!.expiresAt > first, 'renewed');
      assert.equal(l.signal.aborted, false);
      await writeRecord(d, 'backup', { holder: 'thief' });
      await until(() => l.signal.aborted, 'told it was taken over');
      assert.ok(isCairnError(l.signal.reason, 'LOCK_HELD'));
      await l.release();
      // Release leaves the successor's lease alone.
      assert.notEqual(await d.stat(leaseKey('main', 'backup')), undefined);
    });

    it('withLeases releases when the work throws', async () => {
      const d = make();
      await assert.rejects(withLeases(d, 'main', { tool: 'expire' }, async () => {
        throw new Error('boom');
      }), /boom/);
      assert.equal(await d.stat(leaseKey('main', 'backup')), undefined);
      assert.equal(await d.stat(leaseKey('main', 'dump')), undefined);
    });
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 5000; !cond(); ) {
    assert.ok(Date.now() < deadline, `not ${what} within 5 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A driver whose create-if-absent is check-then-write with a gap, like S3 without If-None-Match. */
class RacyDriver extends MemoryDriver {
  override readonly features = { atomicIfAbsent: false, requests: 8 };
  override async write(key: string, body: Buffer | import('node:stream').Readable, opts: WriteOptions = {}): Promise<void> {
    if (opts.ifAbsent) {
      const exists = (await this.stat(key)) !== undefined;
      await new Promise((r) => setTimeout(r, 20));
      if (exists) return super.write(key, body, { ifAbsent: true });
      return super.write(key, body);
    }
    return super.write(key, body, opts);
  }
}

describe('leases without atomic create-if-absent', () => {
  it('of two racing takers exactly one wins', async () => {
    const d = new RacyDriver();
    const results = await Promise.allSettled([
      acquireLeases(d, 'main', { tool: 'basebackup', confirmMs: 100 }),
      acquireLeases(d, 'main', { tool: 'basebackup', confirmMs: 100 }),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    assert.equal(won.length, 1);
    assert.equal(lost.length, 1);
    assert.ok(isCairnError((lost[0] as PromiseRejectedResult).reason, 'LOCK_HELD'));
    await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireLeases>>>).value.release();
  });
});
