// cairn-verify's finding for a stored WAL file that is whole (its SHA-256
// matches) but is not the segment its name says (docs/design.md §4.12): another
// cluster's segment, or another segment of this one, under a valid name.
// The check itself is the one wal-get makes (repo/wal-read.ts).

import type { CairnError } from '../cli/errors.js';
import type { StoredWal } from '../repo/wal-archive.js';
import type { VerifyProblem } from './result-format.js';

/** The problem for a WAL_MISMATCH thrown by readWalChecked. */
export function walMismatchProblem(stored: StoredWal, err: CairnError): VerifyProblem {
  return {
    kind: 'wal-mismatch',
    subject: stored.walName,
    key: stored.key,
    message: err.message,
    hint: 'cairn-wal-get refuses this file, so point-in-time recovery stops here: remove the object, archive the right segment from the server\'s pg_wal or another repository, and take a new full backup if you have none',
  };
}
