// cairn-wal-push as a function: archive_command. Archives PostgreSQL's file
// itself (archiver.ts) and starts the push-ahead worker (push-worker.ts) for
// the other .ready files, whose later calls are then answered from records.

import { dirname } from 'node:path';
import type { Logger } from '@cairn/core/cli/log';
import { closeRepositories, loadKey, openRepositories } from '@cairn/core/repo/repositories';
import type { StoreOutcome } from '@cairn/core/repo/wal-archive';
import { POLL_MS, PUSH_CLAIM_WAIT_MS } from '@cairn/core/spool/contract';
import { openSpool, type SpoolPlan } from '@cairn/core/spool/spool-dir';
import { sleep } from '@cairn/core/util/limit';
import { parseWalFileName } from '@cairn/core/wal/index';
import { createArchiver, type ArchiverOptions } from './archiver.js';
import { PushSpool } from './push-spool.js';
import { startPushWorker } from './push-worker.js';

export interface WalPushOptions extends ArchiverOptions {
  /** Absolute path of the file to archive (%p resolved against PGDATA). */
  walPath: string;
  /** Its WAL file name (%f). */
  walName: string;
  repos: string[];
  keyFile: string | undefined;
  keyCommand?: string | undefined;
  /** How many .ready files the push-ahead worker takes per scan (0: no worker). */
  pushAhead: number;
  /** Where the push spool (records, claims) is and the context it is keyed by; undefined: none. */
  spool: SpoolPlan | undefined;
}

export interface WalPushResult {
  walName: string;
  /** 'spooled': archived earlier by push-ahead, confirmed by the cheap check. */
  outcome: StoreOutcome | 'spooled';
  bytesIn: number;
  bytesOut: number;
}

export interface WalPushContext {
  log: Logger;
  signal: AbortSignal;
  now: () => Date;
  env: NodeJS.ProcessEnv;
}

export async function walPush(opts: WalPushOptions, ctx: WalPushContext): Promise<WalPushResult> {
  const name = parseWalFileName(opts.walName);
  // Checked (lstat, every component) on every call; an unsafe spool is
  // skipped with one warning, never a failed archive_command.
  const spoolDir = opts.spool ? await openSpool(opts.spool, 'push', ctx.log) : undefined;
  const spool = spoolDir !== undefined ? new PushSpool(spoolDir) : undefined;
  const done = (outcome: WalPushResult['outcome'], bytesIn = 0, bytesOut = 0): WalPushResult => ({ walName: name.name, outcome, bytesIn, bytesOut });
  const spooled = () => {
    // The wrapper answers most of these without Node; this line tells the two apart.
    ctx.log.info(`"${name.name}" was archived by push-ahead`);
    return done('spooled');
  };

  if (spool) {
    // What the bin wrapper's fast path does, for callers that run Node directly.
    if (await spool.consume(name.name, opts.walPath)) return spooled();
    // The worker is archiving this very file: wait for it rather than race it.
    // As long and as often as the wrapper waits (contract.ts).
    const until = Date.now() + PUSH_CLAIM_WAIT_MS;
    while ((await spool.claimant(name.name)) !== undefined && Date.now() < until) await sleep(POLL_MS, ctx.signal);
    if (await spool.consume(name.name, opts.walPath)) return spooled();
  }

  const key = await loadKey(opts, ctx.env, ctx.signal);
  const drivers = await openRepositories(opts.repos, ctx.env);
  try {
    if (spool) {
      await spool.claim(name.name);
      if (opts.pushAhead > 0) {
        await startPushWorker({
          cluster: opts.cluster,
          compress: opts.compress,
          pgdata: opts.pgdata,
          systemId: opts.systemId,
          registerSystem: false,
          concurrency: opts.concurrency,
          repos: opts.repos,
          keyFile: opts.keyFile,
          keyCommand: opts.keyCommand,
          walDir: dirname(opts.walPath),
          spoolDir: spool.dir,
          batch: opts.pushAhead,
        }, ctx.env).catch((err: unknown) => ctx.log.debug(`push-ahead not started: ${String(err)}`));
      }
    }
    const started = Date.now();
    try {
      const r = await createArchiver(drivers, key, opts, ctx).archive(opts.walPath, name);
      // So the worker does not archive it again before PostgreSQL marks it done.
      await spool?.record(name.name, opts.walPath).catch(() => {});
      ctx.log.info(`archived "${name.name}" (${r.outcome}) ${r.bytesIn} → ${r.bytesOut} bytes in ${Date.now() - started} ms`);
      return done(r.outcome, r.bytesIn, r.bytesOut);
    } finally {
      await spool?.unclaim(name.name);
    }
  } finally {
    await closeRepositories(drivers);
  }
}
