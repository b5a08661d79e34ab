import assert from 'node:assert/strict';
import { test } from 'node:test';
import { garbageMeter, GARBAGE_STEP } from './garbage.js';

const MiB = 1024 * 1024;

test('dropped 4 MiB Buffers noted on the meter are freed every GARBAGE_STEP bytes, not at 64 MiB', () => {
  const note = garbageMeter();
  const piece = 4 * MiB;
  let most = 0;
  // 160 MiB of pieces, each dropped at once, as a backup's compressed pieces
  // are once written. Without the meter V8 let them pile up to ~68 MiB here.
  for (let i = 0; i < 40; i++) {
    const b = Buffer.allocUnsafe(piece);
    b.fill(i);
    note(b.length);
    most = Math.max(most, process.memoryUsage().arrayBuffers);
  }
  assert.ok(most <= 2 * GARBAGE_STEP + 2 * piece, `at most ${(most / MiB).toFixed(1)} MiB outside the V8 heap`);
});
