// Reading a stored object back for verify: what a failed read means (a
// finding, or a failure of the run), and a sink for bytes that are only
// checked, never kept.

import { Writable } from 'node:stream';
import { isCairnError } from '@cairn/core/cli/errors';
import { ObjectNotFoundError } from '@cairn/core/storage/driver';

/** What a failed read of a stored object means; undefined: not a finding (storage down, bug) — rethrow. */
export function findingOf(err: unknown): 'missing' | 'corrupt' | undefined {
  if (err instanceof ObjectNotFoundError) return 'missing';
  if (isCairnError(err, 'CHECKSUM_MISMATCH') || isCairnError(err, 'FORMAT_INVALID') || isCairnError(err, 'DECRYPT_FAILED')) return 'corrupt';
  return undefined;
}

export function discard(): Writable {
  return new Writable({ write(_c, _e, cb) { cb(); } });
}
