// Shared by the wal tests: asserting CairnErrors.

import assert from 'node:assert/strict';
import { CairnError, type ErrorCode } from '../cli/errors.js';

/** Asserts that `fn` throws a CairnError of `code` whose message matches; returns it. */
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
