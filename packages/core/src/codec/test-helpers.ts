// Shared by the codec tests: deterministic test data (and the error assertions).

import { createHash } from 'node:crypto';

export { rejectsWith, throwsWith } from '../testing/errors.js';

/**
 * Reproducible bytes that compress somewhat (like WAL: structure plus noise):
 * a SHA-256 counter stream with runs of repeated text mixed in.
 */
export function testData(size: number, seed = 'cairn'): Buffer {
  const out = Buffer.alloc(size);
  let off = 0;
  let i = 0;
  while (off < size) {
    const block =
      i % 3 === 0
        ? Buffer.from(`INSERT INTO pgbench_history VALUES (${i}, ${i * 7}, ${i % 100});\n`.repeat(4))
        : createHash('sha256').update(`${seed}:${i}`).digest();
    off += block.copy(out, off);
    i++;
  }
  return out;
}
