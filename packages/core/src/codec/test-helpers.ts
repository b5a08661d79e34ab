// Shared by the codec tests: error assertions and deterministic test data.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { CairnError, type ErrorCode } from '../cli/errors.js';

/** Asserts that `p` rejects with a CairnError of `code` whose message matches. */
export async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message?: RegExp | string): Promise<CairnError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected a ${code} error, got success`);
  assert.ok(caught instanceof CairnError, `expected CairnError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `expected ${code}, got ${caught.code}: ${caught.message}`);
  if (typeof message === 'string') assert.equal(caught.message, message);
  else if (message) assert.match(caught.message, message);
  return caught;
}

/** Synchronous variant for functions that throw. */
export function throwsWith(fn: () => unknown, code: ErrorCode, message?: RegExp | string): CairnError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected a ${code} error, got success`);
  assert.ok(caught instanceof CairnError, `expected CairnError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `expected ${code}, got ${caught.code}: ${caught.message}`);
  if (typeof message === 'string') assert.equal(caught.message, message);
  else if (message) assert.match(caught.message, message);
  return caught;
}

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
