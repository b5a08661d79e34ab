// cairn-wal-get as a function: restore_command. Takes the file from the first
// repository that has it (or the prefetch spool), verifies its SHA-256 and
// writes it atomically to %p. "Not found" is a result, not an error; the
// command maps it to exit 1 and every error to 126 (docs/design.md §4.4).

import { dirname } from 'node:path';
import { CairnError } from '@cairn/core/cli/errors';
import type { Logger } from '@cairn/core/cli/log';
import { findSystemIdAbove, readSystemIdFromPgData } from '@cairn/core/pg/control-file';
import { closeRepositories, loadKey, openRepositories } from '@cairn/core/repo/repositories';
import { listSystems } from '@cairn/core/repo/systems';
import { openSpool, type SpoolPlan } from '@cairn/core/spool/spool-dir';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { isValidSegmentSize, parseWalFileName } from '@cairn/core/wal/index';
import { isExpected } from '@cairn/core/repo/reader-lease';
import { quote } from '@cairn/core/wal/quote';
import { fetchWal, type RetryPolicy } from './fetch.js';
import { inArchiveRecovery, renewLease } from './lease-renewal.js';
import { GetSpool } from './get-spool.js';
import { startPrefetch } from './prefetch.js';

export interface WalGetOptions {
  walName: string;
  /** Absolute destination (%p resolved against PGDATA). */
  destPath: string;
  repos: string[];
  cluster: string;
  keyFile: string | undefined;
  keyCommand?: string | undefined;
  /** PGDATA (restore_command runs there): pg_control names the system. */
  pgdata: string;
  systemId: string | undefined;
  /** Segments to fetch ahead (0: off). */
  prefetch: number;
  prefetchConcurrency: number;
  /** Where the prefetch spool is and the context it is keyed by; undefined disables prefetch. */
  spool: SpoolPlan | undefined;
  retry: RetryPolicy;
  /** The reader lease of the restore that wrote this restore_command (--lease), renewed while recovery runs. */
  lease: string | undefined;
  /** Segments the restore's plan found in the repository (--expect-through): never "not found". */
  expect: readonly { from: string; to: string }[];
}

export type WalGetResult =
  | { found: true; walName: string; source: 'spool' | 'repository'; repo?: string; bytes?: number }
  | { found: false; walName: string };

export interface WalGetContext {
  log: Logger;
  signal: AbortSignal;
  env: NodeJS.ProcessEnv;
}

/**
 * Which system's WAL to serve: --system-id; else the data directory %p lies
 * in (PostgreSQL passes pg_wal/RECOVERYXLOG from PGDATA; pg_rewind an
 * absolute path from anywhere); else the one the cwd is; else the only one
 * the repositories hold.
 */
async function resolveSystemId(opts: WalGetOptions, drivers: StorageDriver[], signal: AbortSignal, fromDest: { systemId: string } | undefined): Promise<string> {
  if (opts.systemId) return opts.systemId;
  if (fromDest) return fromDest.systemId;
  const fromControl = await readSystemIdFromPgData(opts.pgdata);
  if (fromControl) return fromControl;
  for (const d of drivers) {
    let ids: string[];
    try {
      ids = await listSystems(d, opts.cluster, signal);
    } catch {
      continue;
    }
    if (ids.length === 1) return ids[0]!;
    if (ids.length > 1) {
      throw new CairnError('CONFIG_INVALID', `repository "${d.url}" cluster "${opts.cluster}" holds several database systems (${ids.join(', ')}) and neither %p nor "${opts.pgdata}" is in a data directory`, {
        hint: 'run from the data directory being recovered (as restore_command does), give an absolute %p inside it, or pass --system-id',
      });
    }
  }
  throw new CairnError('CONFIG_INVALID', `cannot tell which database system to restore: neither %p nor "${opts.pgdata}" is in a data directory and no system is registered in cluster "${opts.cluster}" of ${drivers.map((d) => `"${d.url}"`).join(', ')}`, {
    hint: 'run from the data directory being recovered or pass --system-id; check --repo and --cluster',
  });
}

export async function walGet(opts: WalGetOptions, ctx: WalGetContext): Promise<WalGetResult> {
  const name = parseWalFileName(opts.walName);
  const prefetching = name.kind === 'segment' && opts.prefetch > 0 && opts.spool !== undefined;
  // Checked (lstat, every component) on every call; an unsafe spool is
  // skipped with one warning, never a failed restore_command.
  const spoolDir = prefetching ? await openSpool(opts.spool!, 'get', ctx.log) : undefined;
  const spool = spoolDir !== undefined ? new GetSpool(spoolDir) : undefined;

  // What the bin wrapper's fast path does, for callers that run Node directly.
  if (spool && (await spool.take(name.name, opts.destPath))) {
    await spool.setWant(name.name).catch(() => {});
    return { found: true, walName: name.name, source: 'spool' };
  }

  const key = await loadKey(opts, ctx.env, ctx.signal);
  const drivers = await openRepositories(opts.repos, ctx.env);
  try {
    const fromDest = await findSystemIdAbove(dirname(opts.destPath));
    const systemId = await resolveSystemId(opts, drivers, ctx.signal, fromDest);
    // The data directory being recovered: where %p lies, else the cwd.
    const recovering = fromDest?.pgdata ?? opts.pgdata;
    const renewal = opts.lease !== undefined && inArchiveRecovery(recovering)
      ? renewLease(drivers, opts.cluster, opts.lease, new Date(), (err) => ctx.log.warn(`reader lease ${opts.lease} not renewed: ${(err as Error).message}`))
      : undefined;
    // PostgreSQL only needs %p fully written when we exit 0, not durable: after
    // a crash it asks again (pgBackRest's archive-get does not sync either).
    const r = await fetchWal(drivers, { cluster: opts.cluster, systemId, walName: name.name, key }, opts.destPath, {
      retry: opts.retry,
      durable: false,
      signal: ctx.signal,
      log: ctx.log,
    });
    await renewal;
    if (!r.found) {
      // Not found is the end of the archive to PostgreSQL, which then
      // promotes: for a segment the restore's plan saw, the repository lost
      // it, and recovery must stop here instead (issue 12).
      if (isExpected(name.name, opts.expect)) {
        throw new CairnError('NOT_FOUND', `WAL segment ${name.name} is in no repository (${drivers.map((d) => quote(d.url)).join(', ')}), but it was present when the restore was planned: the repository lost it`, {
          hint: 'recovery stops here rather than end early: put the segment back (from another repository or copy) and start PostgreSQL again, or restore to a target before it',
        });
      }
      return { found: false, walName: name.name };
    }

    if (spool) {
      // A segment file is exactly one segment long (wal-push checked it against
      // its header), so the bytes written are the cluster's segment size.
      const segmentSize = r.bytes;
      if (isValidSegmentSize(segmentSize)) {
        try {
          await spool.claimFor(systemId);
          await spool.setWant(name.name);
          await startPrefetch({
            repos: opts.repos,
            cluster: opts.cluster,
            keyFile: opts.keyFile,
            keyCommand: opts.keyCommand,
            systemId,
            segmentSize,
            count: opts.prefetch,
            concurrency: opts.prefetchConcurrency,
            spoolDir: spool.dir,
            ...(opts.lease !== undefined && inArchiveRecovery(recovering) ? { lease: opts.lease } : {}),
          }, ctx.env);
        } catch (err) {
          ctx.log.debug(`prefetch not started: ${String(err)}`);
        }
      }
    }
    return { found: true, walName: name.name, source: 'repository', repo: r.repo, bytes: r.bytes };
  } finally {
    await closeRepositories(drivers);
  }
}
