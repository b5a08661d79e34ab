// Shared by unit tests: asserting that code fails with a given CairnError.

import assert from 'node:assert/strict';
import { CairnError, type ErrorCode } from '../cli/errors.js';

function assertCairnError(caught: unknown, code: ErrorCode, message?: RegExp | string): CairnError {
  assert.ok(caught !== undefined, `expected a ${code} error, got success`);
  assert.ok(caught instanceof CairnError, `expected CairnError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `expected ${code}, got ${caught.code}: ${caught.message}`);
  if (typeof message === 'string') assert.equal(caught.message, message);
  else if (message) assert.match(caught.message, message);
  return caught;
}

/** Asserts that `p` rejects with a CairnError of `code` whose message matches. */
export async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message?: RegExp | string): Promise<CairnError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  return assertCairnError(caught, code, message);
}

/** Synchronous variant for functions that throw. */
export function throwsWith(fn: () => unknown, code: ErrorCode, message?: RegExp | string): CairnError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  return assertCairnError(caught, code, message);
}
