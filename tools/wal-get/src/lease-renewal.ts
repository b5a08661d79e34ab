// Renewing a restore's reader lease from restore_command (issue 12): every
// wal-get that runs in Node, and the prefetch worker while recovery moves,
// push the lease's expiry on, so expire keeps what the recovery still needs.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { renewReaderLease, type RenewOutcome } from '@cairn/core/repo/reader-lease';
import type { StorageDriver } from '@cairn/core/storage/driver';

/**
 * Only an archive recovery renews: a standby (standby.signal) follows the
 * archive for ever and would keep its base backup for ever; once recovery
 * has ended (no recovery.signal) nothing is left to protect.
 */
export function inArchiveRecovery(pgdata: string): boolean {
  return existsSync(join(pgdata, 'recovery.signal')) && !existsSync(join(pgdata, 'standby.signal'));
}

/** Renews lease `id` in the first repository that holds it; never throws (a renewal must not fail a restore_command). */
export async function renewLease(
  drivers: readonly StorageDriver[],
  cluster: string,
  id: string,
  now: Date,
  onError: (err: unknown) => void,
): Promise<RenewOutcome> {
  for (const d of drivers) {
    try {
      const r = await renewReaderLease(d, cluster, id, now);
      if (r !== 'absent') return r;
    } catch (err) {
      onError(err);
    }
  }
  return 'absent';
}
