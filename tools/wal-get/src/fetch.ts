// Fetching one WAL file from the repositories into a local path, verified
// (checksum, and a segment's page header against its name and system), with
// the retry rules of docs/design.md §4.4 and §4.12: "not found" only when every
// repository is there, holds the cluster and system, and lacks the file;
// transient errors are retried with backoff; anything else is a persistent
// error.

import { CairnError, toCairnError } from '@cairn/core/cli/errors';
import type { Logger } from '@cairn/core/cli/log';
import type { EncryptionKey } from '@cairn/core/codec/index';
import { dataKeyResolver } from '@cairn/core/repo/data-key';
import { openCluster } from '@cairn/core/repo/repo-config';
import { findWal, type StoredWal } from '@cairn/core/repo/wal-archive';
import { readWalChecked } from '@cairn/core/repo/wal-read';
import { checkWalSource } from '@cairn/core/repo/wal-source';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { writeStreamAtomic } from '@cairn/core/util/local-file';
import { sleep } from '@cairn/core/util/limit';

export interface FetchTarget {
  cluster: string;
  systemId: string;
  walName: string;
  key: EncryptionKey | undefined;
}

export interface RetryPolicy {
  /** Attempts over all repositories (1: no retry). */
  attempts: number;
  /** First backoff; doubles each time. */
  baseDelayMs: number;
}

export type FetchResult = { found: true; sha256: string; repo: string; bytes: number } | { found: false };

/**
 * Writes `stored` to `dest` atomically (temp, fsync, rename); the checksum
 * and the page header are checked before the rename, so a wrong file never
 * appears at `dest`.
 */
async function fetchCopy(driver: StorageDriver, stored: StoredWal, target: FetchTarget, dest: string, durable: boolean, signal: AbortSignal): Promise<number> {
  const key = await dataKeyOf(driver, target, signal);
  return writeStreamAtomic(dest, async (sink) => (await readWalChecked(driver, stored, target.systemId, key, sink, signal)).bytes, { durable });
}

/** Per operator key and cluster, each repository's data key, looked up once per process (prefetch fetches many segments). */
const resolvers = new WeakMap<EncryptionKey, Map<string, ReturnType<typeof dataKeyResolver>>>();
function dataKeyOf(driver: StorageDriver, target: FetchTarget, signal: AbortSignal): Promise<EncryptionKey | undefined> {
  if (target.key === undefined) return Promise.resolve(undefined);
  let byCluster = resolvers.get(target.key);
  if (byCluster === undefined) resolvers.set(target.key, (byCluster = new Map()));
  let r = byCluster.get(target.cluster);
  if (r === undefined) byCluster.set(target.cluster, (r = dataKeyResolver(target.cluster, target.key)));
  return r(driver, signal);
}

/** Turns a decrypt failure into "wrong key" when repo.json says so. */
async function explainDecryptFailure(driver: StorageDriver, target: FetchTarget, err: CairnError, signal: AbortSignal): Promise<CairnError> {
  if (err.code !== 'DECRYPT_FAILED') return err;
  try {
    await openCluster(driver, target.cluster, target.key, signal);
  } catch (e) {
    return toCairnError(e);
  }
  return err;
}

/** Errors that say a stored copy is not the file its name records. */
const DAMAGED: ReadonlySet<string> = new Set(['CHECKSUM_MISMATCH', 'FORMAT_INVALID', 'DECRYPT_FAILED', 'WAL_MISMATCH']);

export async function fetchWal(
  drivers: StorageDriver[],
  target: FetchTarget,
  dest: string,
  opts: {
    retry: RetryPolicy; durable: boolean; signal: AbortSignal; log: Logger;
    /**
     * false: a file missing or damaged in an earlier repository is left
     * alone ({ found: false }) rather than taken from a later one, so that
     * the prefetch worker, which cannot warn, leaves it to wal-get, which does.
     */
    heal?: boolean;
  },
): Promise<FetchResult> {
  let lastErr: CairnError | undefined;
  for (let attempt = 1; ; attempt++) {
    let allSaidAbsent = true;
    let retryable = false;
    lastErr = undefined;
    // Self-healing reads (issue 18 item 3): the SHA-256 the first repository
    // that lists the file records; a later repository's copy is used only
    // when it is the same file, and each one passed over is named.
    let recorded: { sha256: string; repo: string } | undefined;
    const passedOver: string[] = [];
    for (const driver of drivers) {
      let disagrees = false;
      try {
        const copies = await findWal(driver, target.cluster, target.systemId, target.walName, opts.signal);
        if (copies.length === 0) {
          // An unmounted or mistyped repository lists nothing too: its
          // "absent" counts only once it proves it holds cluster and system.
          await checkWalSource(driver, target.cluster, target.systemId, target.key, opts.signal);
          passedOver.push(`missing from repository "${driver.url}"`);
          continue;
        }
        allSaidAbsent = false;
        if (new Set(copies.map((c) => c.sha256)).size > 1) {
          throw new CairnError('WAL_DUPLICATE', `repository "${driver.url}" holds ${copies.length} different copies of "${target.walName}"`, {
            hint: 'run cairn-verify; do not remove either copy before comparing them',
          });
        }
        const sha256 = copies[0]!.sha256;
        if (recorded !== undefined && recorded.sha256 !== sha256) {
          disagrees = true;
          throw new CairnError('WAL_MISMATCH', `repository "${driver.url}" holds "${target.walName}" with SHA-256 ${sha256.slice(0, 12)}…, not ${recorded.sha256.slice(0, 12)}… as repository "${recorded.repo}" records: not used`, {
            hint: 'two repositories disagree about one WAL file: run cairn-verify on both, and do not remove either copy before comparing them',
          });
        }
        recorded ??= { sha256, repo: driver.url };
        if (passedOver.length > 0 && opts.heal === false) return { found: false };
        const bytes = await fetchCopy(driver, copies[0]!, target, dest, opts.durable, opts.signal);
        if (passedOver.length > 0) {
          opts.log.warn(`"${target.walName}" ${passedOver.join(', ')}: taken from repository "${driver.url}" instead (SHA-256 ${sha256.slice(0, 12)}…); run cairn-verify on ${passedOver.length === 1 ? 'that repository' : 'those repositories'}`);
        }
        return { found: true, sha256, repo: driver.url, bytes };
      } catch (thrown) {
        if (opts.signal.aborted) throw thrown;
        const err = await explainDecryptFailure(driver, target, toCairnError(thrown), opts.signal);
        allSaidAbsent = false;
        retryable ||= err.transient;
        lastErr = err;
        passedOver.push(`${disagrees ? 'another copy' : DAMAGED.has(err.code) ? 'damaged' : 'unreadable'} in repository "${driver.url}"`);
        // With several repositories, say which one failed; the final error
        // (or another repository's copy) follows.
        if (drivers.length > 1) opts.log.warn(`"${target.walName}" from repository "${driver.url}": ${err.message}`);
        else opts.log.debug(`attempt ${attempt}: ${err.message}`);
        // Try the next repository: it may hold a good copy.
      }
    }
    if (allSaidAbsent) return { found: false };
    if (!retryable || attempt >= opts.retry.attempts) break;
    await sleep(opts.retry.baseDelayMs * 2 ** (attempt - 1), opts.signal);
  }
  throw lastErr ?? new CairnError('INTERNAL', `no result fetching "${target.walName}"`);
}
