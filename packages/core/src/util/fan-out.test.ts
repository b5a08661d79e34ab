import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fanOut } from './fan-out.js';

async function* chunks(n: number, size = 64 * 1024, fail?: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < n; i++) {
    if (i === fail) throw new Error('source broke');
    yield Buffer.alloc(size, i);
  }
}

const collect = (delayMs = 0) => async (body: Readable): Promise<Buffer> => {
  const parts: Buffer[] = [];
  for await (const c of body) {
    parts.push(c as Buffer);
    if (delayMs) await sleep(delayMs);
  }
  return Buffer.concat(parts);
};

test('every sink gets every byte, a slow one included', async () => {
  const r = await fanOut(chunks(40), [collect(), collect(2)]);
  assert.equal(r.length, 2);
  for (const x of r) {
    assert.ok(x.ok);
    assert.equal(x.value.length, 40 * 64 * 1024);
    assert.equal(x.value[39 * 64 * 1024], 39);
  }
});

test('the source moves at the slowest sink: no sink buffers the whole stream', async () => {
  // 16 MiB through a sink that takes its time: the source may run ahead of
  // it by the stream buffers (2 × 1 MiB) and a chunk, not by the stream.
  let read = 0;
  async function* counted() {
    for await (const c of chunks(256)) {
      read += c.length;
      maxAhead = Math.max(maxAhead, read - seenBySlow);
      yield c;
    }
  }
  let seenBySlow = 0;
  let maxAhead = 0;
  const slow = async (body: Readable): Promise<Buffer> => {
    for await (const c of body) {
      seenBySlow += (c as Buffer).length;
      await sleep(2);
    }
    return Buffer.alloc(0);
  };
  const r = await fanOut(counted(), [collect(), slow]);
  assert.ok(r.every((x) => x.ok));
  assert.equal(seenBySlow, 256 * 64 * 1024);
  assert.ok(maxAhead <= 4 * 1024 * 1024, `the source ran ${maxAhead} bytes ahead of the slowest sink`);
});

test('a sink that fails drops out; the others get everything', async () => {
  const failing = async (body: Readable): Promise<Buffer> => {
    let n = 0;
    for await (const c of body) {
      n += (c as Buffer).length;
      if (n >= 256 * 1024) throw new Error('repository down');
    }
    return Buffer.alloc(0);
  };
  const r = await fanOut(chunks(100), [failing, collect(1)]);
  assert.equal(r[0]!.ok, false);
  assert.match(String((r[0] as { error: Error }).error.message), /repository down/);
  assert.ok(r[1]!.ok);
  assert.equal((r[1] as { value: Buffer }).value.length, 100 * 64 * 1024);
});

test('a failing source fails every sink and is thrown', async () => {
  const seen: unknown[] = [];
  const sink = async (body: Readable) => {
    try {
      for await (const _ of body);
    } catch (err) {
      seen.push(err);
      throw err;
    }
  };
  await assert.rejects(fanOut(chunks(10, 1024, 5), [sink, sink]), /source broke/);
  assert.equal(seen.length, 2);
});
