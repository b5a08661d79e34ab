// cairn-rekey: rotate the operator's encryption key (issue 18 item 4). The
// cluster's data key is wrapped with the new key in a new, versioned object
// (repo/data-key.ts): one small object per repository, nothing re-encrypted,
// nothing rewritten. Every backup, dump and WAL segment written before
// reads with the new key; the old key no longer opens the cluster.
//
// No lease: the data key itself does not change, so a writer running with it
// (a wal-push that opened the cluster a moment ago) stores objects the new
// key reads; two rotations at once are kept apart by the write-once version
// (the second fails with WRITE_CONFLICT and changes nothing).

import { CairnError, toCairnError } from '@cairn/core/cli/errors';
import type { ToolContext } from '@cairn/core/cli/run';
import type { EncryptionKey } from '@cairn/core/codec/index';
import { rekeyDataKey, type RekeyResult } from '@cairn/core/repo/data-key';
import { readRepoConfig } from '@cairn/core/repo/repo-config';
import { closeRepositories, openRepositories } from '@cairn/core/repo/repositories';

export interface RekeyOptions {
  repos: string[];
  cluster: string;
  oldKey: EncryptionKey;
  newKey: EncryptionKey;
}

export interface RekeyOutcome {
  format: 'cairn.rekey/1';
  results: RekeyResult[];
  errors: { repo: string; code: string; message: string; hint: string | null }[];
}

/** Rotates every repository; one that fails is reported and the others are still done. */
export async function rekey(o: RekeyOptions, ctx: Pick<ToolContext, 'env' | 'now' | 'signal'>): Promise<RekeyOutcome> {
  const out: RekeyOutcome = { format: 'cairn.rekey/1', results: [], errors: [] };
  for (const url of o.repos) {
    let driver: Awaited<ReturnType<typeof openRepositories>>[number] | undefined;
    try {
      [driver] = await openRepositories([url], ctx.env);
      const cfg = await readRepoConfig(driver!, o.cluster, ctx.signal);
      if (cfg === undefined) {
        throw new CairnError('CONFIG_INVALID', `repository "${driver!.url}" holds no cluster "${o.cluster}"`, { hint: 'check --repo and --cluster; a new cluster takes its key when it is first written' });
      }
      if (cfg.cipher === 'none' || cfg.keyCheck === undefined) {
        throw new CairnError('CONFIG_INVALID', `repository "${driver!.url}" cluster "${o.cluster}" is not encrypted: there is no key to rotate`, { hint: 'encryption is chosen when a cluster is created: back up into a new --cluster with a key' });
      }
      out.results.push(await rekeyDataKey(driver!, o.cluster, cfg.keyCheck, o.oldKey, o.newKey, ctx.now(), ctx.signal));
    } catch (err) {
      // A repository that cannot be opened or rotated is reported; the others are still done.
      if (driver) ctx.signal.throwIfAborted();
      const e = toCairnError(err);
      if (e.code === 'INTERNAL') throw e;
      out.errors.push({ repo: driver?.url ?? url, code: e.code, message: e.message, hint: e.hint ?? null });
    } finally {
      if (driver) await closeRepositories([driver]);
    }
  }
  return out;
}
