import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MemoryDriver } from '../storage/memory.js';
import type { StorageDriver } from '../storage/driver.js';
import { bundleKey, createBundler, createSpanReader, SPAN_GAP, tarHeader, type BundleRef } from './bundle.js';

async function bytesOf(d: StorageDriver, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await d.read(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('bundles', () => {
  it('are tar archives that tar(1) lists and extracts byte for byte, long names included', async () => {
    const d = new MemoryDriver('bundle-tar');
    const b = createBundler({ driver: d, cluster: 'main', id: '20260101-000000F', signal: new AbortController().signal, target: 1 << 30 });
    const long = `data/pg_tblspc/16385/PG_16_202307071/16386/${'x'.repeat(60)}/${'y'.repeat(90)}.zst`;
    const members: [string, Buffer][] = [
      ['data/base/5/1259.zst', randomBytes(1000)],
      ['data/global/pg_control.zst', randomBytes(512)],
      ['data/PG_VERSION.zst', Buffer.alloc(0)],
      [long, randomBytes(513)],
    ];
    const refs: BundleRef[] = [];
    for (const [name, data] of members) refs.push((await b.add(name, data, 1_700_000_000))!);
    const keys = await b.finish();
    assert.deepEqual(keys, [bundleKey('main', '20260101-000000F', 1)]);
    const body = await bytesOf(d, keys[0]!);
    members.forEach(([, data], i) => assert.ok(body.subarray(refs[i]!.offset, refs[i]!.offset + data.length).equals(data), `member ${i} at its offset`));
    const dir = mkdtempSync(join(tmpdir(), 'cairn-bundle-'));
    try {
      writeFileSync(join(dir, 'b.tar'), body);
      const list = execFileSync('tar', ['-tf', join(dir, 'b.tar')], { encoding: 'utf8' }).trim().split('\n');
      assert.deepEqual(list, members.map(([n]) => n));
      execFileSync('tar', ['-xf', join(dir, 'b.tar'), '-C', dir]);
      for (const [name, data] of members) assert.ok(readFileSync(join(dir, name)).equals(data), name);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a name tar cannot hold is left to the caller (stored alone)', () => {
    assert.equal(tarHeader(`data/${'z'.repeat(120)}`, 1, 0), undefined);
    assert.ok(tarHeader(`data/${'z'.repeat(95)}`, 1, 0));
  });

  it('roll over at the target size, and a failed write is rethrown', async () => {
    const d = new MemoryDriver('bundle-roll');
    const b = createBundler({ driver: d, cluster: 'main', id: '20260101-000000F', signal: new AbortController().signal, target: 4096 });
    const refs: BundleRef[] = [];
    for (let i = 0; i < 20; i++) refs.push((await b.add(`data/f${i}`, randomBytes(1000), 0))!);
    const keys = await b.finish();
    assert.ok(keys.length >= 5, `${keys.length} bundles of about 4 KiB for 20 KB`);
    assert.deepEqual(new Set(refs.map((r) => r.key)), new Set(keys));

    const failing = { ...d, url: d.url, write: async () => { throw new Error('disk on fire'); } } as unknown as StorageDriver;
    const f = createBundler({ driver: failing, cluster: 'main', id: '20260101-000000F', signal: new AbortController().signal, target: 100 });
    await f.add('data/a', randomBytes(200), 0);
    await assert.rejects(f.finish(), /disk on fire/);
  });

  it('are read by span: neighbours share one ranged read, far ones do not, each file gets its own bytes', async () => {
    const d = new MemoryDriver('bundle-span');
    const reads: [string, number, number][] = [];
    const counting = Object.assign(Object.create(d) as StorageDriver, {
      readRange: (key: string, offset: number, length: number) => {
        reads.push([key, offset, length]);
        return d.readRange(key, offset, length);
      },
    });
    const body = randomBytes(SPAN_GAP * 4);
    await d.write('b/1.tar', body);
    await d.write('b/2.tar', body);
    const files = [
      { bundle: { key: 'b/1.tar', offset: 512 }, storedSize: 100 },
      { bundle: { key: 'b/1.tar', offset: 1024 }, storedSize: 2000 },
      { bundle: { key: 'b/1.tar', offset: 1024 + 2000 + SPAN_GAP + 1 }, storedSize: 10 }, // past the gap: a span of its own
      { bundle: { key: 'b/2.tar', offset: 0 }, storedSize: 7 },
    ];
    const spans = createSpanReader(counting, files.slice().reverse());
    assert.deepEqual(spans.order.map((f) => f.bundle.offset), [512, 1024, 1024 + 2000 + SPAN_GAP + 1, 0]);
    const got = await Promise.all(files.map((f) => spans.read(f)));
    files.forEach((f, i) => assert.ok(got[i]!.equals(body.subarray(f.bundle.offset, f.bundle.offset + f.storedSize)), `file ${i}`));
    assert.deepEqual(reads.sort(), [['b/1.tar', 512, 1024 + 2000 - 512], ['b/1.tar', 1024 + 2000 + SPAN_GAP + 1, 10], ['b/2.tar', 0, 7]].sort());
    // A bundle cut short is an error for its files, never short bytes.
    await d.write('b/3.tar', randomBytes(100));
    const short = createSpanReader(d, [{ bundle: { key: 'b/3.tar', offset: 50 }, storedSize: 60 }]);
    await assert.rejects(short.read(short.order[0]!), /too few for bytes/);
  });
});
