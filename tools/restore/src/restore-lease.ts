// The reader lease of a physical restore (issue 12): taken once the plan is
// made, so that cairn-expire keeps the chain and WAL the recovery needs; its
// id and the WAL the plan proved present go into restore_command, for
// cairn-wal-get to renew it and to refuse "not found" for those segments.

import type { ToolContext } from '@cairn/core/cli/run';
import { CairnError } from '@cairn/core/cli/errors';
import { listWalArchive } from '@cairn/core/repo/catalog';
import {
  createReaderLease, formatExpectation, leaseFieldsFromPlan, readReaderLease, removeReaderLease, waitForRunningExpire,
} from '@cairn/core/repo/reader-lease';
import type { RestorePlan } from '@cairn/core/restore/plan-format';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { nextSegmentName } from '@cairn/core/wal/index';
import { quote } from '@cairn/core/wal/quote';

/** How long a restore waits for an expire that started before its lease was visible. */
const EXPIRE_WAIT_MS = 15 * 60_000;

export interface RestoreLease {
  /** Undefined when the repository took no lease (read-only credentials): the restore goes on without. */
  id: string | undefined;
  /** `--lease ID --expect-through FROM-TO,…` for cairn-wal-get. */
  restoreCommandArgs: string[];
  /** Removes a lease this restore took (a failed restore protects nothing); an adopted one is its owner's. */
  abandon(): Promise<void>;
}

export async function takeRestoreLease(
  o: { driver: StorageDriver; cluster: string; plan: RestorePlan; pgdata: string; adopt: string | undefined; lifetimeMs: number },
  ctx: Pick<ToolContext, 'now' | 'signal' | 'log'>,
): Promise<RestoreLease> {
  const { driver, cluster, plan } = o;
  let id: string | undefined;
  let ours = false;
  if (o.adopt !== undefined) {
    if ((await readReaderLease(driver, cluster, o.adopt, ctx.signal)) === undefined) {
      throw new CairnError('NOT_FOUND', `reader lease ${o.adopt} is not in repository ${quote(driver.url)} cluster ${quote(cluster)}`, {
        hint: '--lease is for cairn-drill, which takes the lease first; leave it out and cairn-restore takes its own',
      });
    }
    id = o.adopt;
  } else {
    try {
      id = (await createReaderLease(driver, cluster, leaseFieldsFromPlan(plan, o.pgdata, 'restore'), { lifetimeMs: o.lifetimeMs, now: ctx.now(), tool: 'cairn-restore', signal: ctx.signal })).id;
      ours = true;
    } catch (err) {
      ctx.signal.throwIfAborted();
      // A disaster restore may well run with read-only credentials: it must
      // not fail for want of a lease, but the operator must know.
      ctx.log.warn(`no reader lease taken in repository ${quote(driver.url)} (${(err as Error).message}): a cairn-expire run during this recovery may remove the WAL it needs`);
    }
  }
  const abandon = async () => {
    if (ours && id !== undefined) await removeReaderLease(driver, cluster, id).catch(() => {});
  };
  try {
    // An expire that took its lease before ours was written planned without
    // it, and may be deleting what our plan found: wait for it, then look again.
    const waited = await waitForRunningExpire(driver, cluster, {
      signal: ctx.signal,
      maxWaitMs: EXPIRE_WAIT_MS,
      onWait: (who) => ctx.log.warn(`${who} is running on this cluster: waiting for it before restoring`),
    });
    if (waited) await assertPlannedWalPresent(driver, plan, ctx.signal);
  } catch (err) {
    await abandon();
    throw err;
  }
  const ranges = plan.wal.map(formatExpectation);
  return {
    id,
    restoreCommandArgs: [...(id !== undefined ? ['--lease', id] : []), ...(ranges.length > 0 ? ['--expect-through', ranges.join(',')] : [])],
    abandon,
  };
}

/** Every segment of the plan's WAL ranges is still stored (after an expire ran beside the planning). */
async function assertPlannedWalPresent(driver: StorageDriver, plan: RestorePlan, signal: AbortSignal): Promise<void> {
  const stored = (await listWalArchive(driver, plan.cluster, signal)).get(plan.systemId)?.segments;
  for (const r of plan.wal) {
    for (let name = r.from; ; name = nextSegmentName(name, plan.walSegmentSize)) {
      if (!stored?.has(name)) {
        throw new CairnError('NOT_FOUND', `WAL segment ${name} that the plan found is no longer in repository ${quote(driver.url)} (cairn-expire ran meanwhile)`, {
          hint: 'plan the restore again (another backup or target may still be reachable)',
        });
      }
      if (name === r.to) break;
    }
  }
}
