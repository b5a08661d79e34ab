// Archiving WAL files into the open repositories: read once, check the
// system identifier, hash, compress, encrypt, store everywhere. Shared by
// PostgreSQL's own call and the push-ahead worker.

import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CairnError, toCairnError } from '@cairn/core/cli/errors';
import type { Logger } from '@cairn/core/cli/log';
import {
  createHashStage,
  encodedExtension,
  encodeBuffer,
  encodeStages,
  sha256Hex,
  type CompressSpec,
  type EncodeSpec,
  type EncryptionKey,
} from '@cairn/core/codec/index';
import { readSystemIdFromPgData } from '@cairn/core/pg/control-file';
import { systemKey } from '@cairn/core/repo/layout';
import { ensureRepoConfig, type OpenedRepoConfig } from '@cairn/core/repo/repo-config';
import { ensureSystemRegistered, listSystems } from '@cairn/core/repo/systems';
import { storeWal, type StoreOutcome } from '@cairn/core/repo/wal-archive';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { checkSegmentHeader, readWalPageHeader, type WalFileName } from '@cairn/core/wal/index';
import { createLimiter } from '@cairn/core/util/limit';
import type { EncodedSegment, SegmentEncoder } from '@cairn/core/codec/segment-encoder';
import { encodeWidth } from './encoder.js';
import { ReadPool, type PooledRead } from './read-pool.js';


export interface ArchiverOptions {
  cluster: string;
  compress: CompressSpec;
  /** PGDATA (archive_command runs there): pg_control names the system of history files. */
  pgdata: string;
  /** Given system identifier for files without one (history, backup) outside PGDATA. */
  systemId: string | undefined;
  /** Register this file's system although the cluster holds another one. */
  registerSystem: boolean;
  /** Files archived at once. */
  concurrency: number;
}

export interface ArchiverContext {
  log: Logger;
  signal: AbortSignal;
  now: () => Date;
  /** Encoder threads (the push-ahead worker, for zstd): segments are read, hashed and compressed there. */
  encoder?: SegmentEncoder;
}

/** Push-ahead collects garbage when buffer memory passes this (target: ≤ 150 MB peak RSS). */
const GC_ABOVE_BUFFERS = 48 * 1024 * 1024;

/** WAL files up to this size are read into memory once; bigger ones stream twice. */
const IN_MEMORY_LIMIT = 64 * 1024 * 1024;

export interface Archiver {
  archive(walPath: string, name: WalFileName): Promise<{ outcome: StoreOutcome; sha256: string; bytesIn: number; bytesOut: number }>;
}

/** One archiving session over the open repositories; caches per-repo checks. */
export function createArchiver(drivers: StorageDriver[], key: EncryptionKey | undefined, opts: ArchiverOptions, ctx: ArchiverContext): Archiver {
  // Compressed once for every repository, encrypted per repository: each
  // cluster has its own data key (repo/data-key.ts), so the same segment's
  // stored bytes differ between repositories.
  const spec: EncodeSpec = { compress: opts.compress };
  const ext = encodedExtension({ ...spec, ...(key ? { key } : {}) });
  const repoReady = new Map<StorageDriver, Promise<OpenedRepoConfig>>();
  const systemReady = new Map<string, Promise<unknown>>();
  let pgdataSystem: Promise<string | undefined> | undefined;
  const pool = new ReadPool();
  const encodeLimit = createLimiter(encodeWidth(opts.concurrency));

  const ensureRepo = (d: StorageDriver): Promise<OpenedRepoConfig> => {
    let p = repoReady.get(d);
    if (!p) {
      p = ensureRepoConfig(d, opts.cluster, key, ctx.now(), ctx.signal);
      repoReady.set(d, p);
    }
    return p;
  };
  /** The repository's configuration, then the system: the system's record is looked for alongside the first. */
  const ensureSystem = (d: StorageDriver, systemId: string, segSize: number | undefined) => {
    const k = `${drivers.indexOf(d)}:${systemId}`;
    let p = systemReady.get(k);
    if (!p) {
      p = (async () => {
        const look = d.stat(systemKey(opts.cluster, systemId), ctx.signal);
        look.catch(() => {});
        await ensureRepo(d);
        if ((await look) !== undefined) return 'known';
        return await ensureSystemRegistered(d, opts.cluster, {
          systemId,
          firstSeen: ctx.now().toISOString(),
          registeredBy: 'wal-push',
          ...(segSize ? { walSegmentSize: segSize } : {}),
        }, { force: opts.registerSystem, signal: ctx.signal });
      })();
      systemReady.set(k, p);
    }
    return p;
  };

  /** The system a history or backup file belongs to: it carries no identifier. */
  const systemOfTextFile = async (name: string): Promise<string> => {
    if (opts.systemId) return opts.systemId;
    pgdataSystem ??= readSystemIdFromPgData(opts.pgdata);
    const fromControl = await pgdataSystem;
    if (fromControl) return fromControl;
    const known = await listSystems(drivers[0]!, opts.cluster, ctx.signal);
    if (known.length === 1) return known[0]!;
    throw new CairnError('CONFIG_INVALID', `cannot tell which database system "${name}" belongs to: no global/pg_control in "${opts.pgdata}"`, {
      hint: 'run from the data directory (as archive_command does) or pass --system-id',
    });
  };

  /** The compressed file as one buffer, or a stream made anew for each repository and attempt, encrypted with the repository's key. */
  type Body = { compressed: Buffer } | { stream: (k: EncryptionKey | undefined) => NodeJS.ReadableStream };
  const storeEverywhere = async (name: WalFileName, systemId: string, segSize: number | undefined, sha256: string, body: Body): Promise<{ outcome: StoreOutcome; bufferedOut: number }> => {
    // The stored size of a buffered file: the same in every repository (encryption adds a fixed overhead per size).
    let bufferedOut = 'compressed' in body ? body.compressed.length : 0;
    const results = await Promise.allSettled(
      drivers.map((d) => {
        // The body is made with the repository's key once its configuration
        // is read; storeWal writes nothing before `ready`, and its first look
        // for a stored copy runs alongside.
        let made: () => Buffer | NodeJS.ReadableStream;
        const bodyReady = ensureRepo(d).then(async ({ dataKey: k }) => {
          if ('compressed' in body) {
            const b = k ? await encodeBuffer(body.compressed, { compress: { alg: 'none', level: 0 }, key: k }) : body.compressed;
            bufferedOut = b.length;
            made = () => b;
          } else {
            made = () => body.stream(k);
          }
        });
        const ready = Promise.all([ensureSystem(d, systemId, segSize), bodyReady]);
        return storeWal(d, { cluster: opts.cluster, systemId, walName: name.name, sha256, ext, body: () => made(), signal: ctx.signal, ready });
      }),
    );
    // Finish every repository, then fail as a whole if any failed: PostgreSQL
    // must keep the file until all of them have it (docs/style.md §Streams).
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ url: drivers[i]!.url, err: toCairnError(r.reason) }] : []));
    if (failed.length > 0) {
      const first = failed[0]!.err;
      if (drivers.length === 1) throw first;
      throw new CairnError(first.code, `"${name.name}" not archived in ${failed.length} of ${drivers.length} repositories: ${failed.map((f) => `"${f.url}": ${f.err.message}`).join('; ')}`, {
        ...(first.hint ? { hint: first.hint } : {}),
        transient: failed.every((f) => f.err.transient),
      });
    }
    const outcomes = results.map((r) => (r as PromiseFulfilledResult<StoreOutcome>).value);
    return { outcome: outcomes.every((o) => o === 'identical') ? 'identical' : 'stored', bufferedOut };
  };

  return {
    async archive(walPath, name) {
      let st;
      try {
        st = await stat(walPath);
      } catch (err) {
        throw new CairnError('FILE_UNREADABLE', `cannot read WAL file "${walPath}": ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
          hint: 'archive_command must be run by PostgreSQL with %p (relative to the data directory) or an absolute path',
        });
      }
      const label = name.name;
      const hasHeader = name.kind === 'segment' || name.kind === 'partial';
      const unreadable = (err: unknown) =>
        new CairnError('FILE_UNREADABLE', `cannot read WAL file "${walPath}": ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
          hint: 'check that the file exists and the user running cairn-wal-push may read it',
        });
      /** The system and segment size from a segment's first bytes (`head`), checked against its name and `size`. */
      const segmentHeader = (head: Buffer, size: number) => {
        const header = readWalPageHeader(head, label);
        checkSegmentHeader(head, name.name, label);
        if (name.kind === 'segment' && size !== header.segmentSize) {
          throw new CairnError('FORMAT_INVALID', `WAL segment "${label}" is ${size} bytes, its header says ${header.segmentSize}`, {
            hint: 'the file is truncated or not a WAL segment; do not archive it',
          });
        }
        return { systemId: header.systemId, segSize: header.segmentSize };
      };

      if (st.size <= IN_MEMORY_LIMIT && hasHeader && ctx.encoder && spec.compress.alg === 'zstd') {
        // Read, hashed and compressed on an encoder thread, into a lent buffer.
        let seg: EncodedSegment;
        try {
          seg = await ctx.encoder.encode(walPath, st.size);
        } catch (err) {
          throw err instanceof CairnError ? err : unreadable(err);
        }
        try {
          const { systemId, segSize } = segmentHeader(seg.head, st.size);
          const { outcome, bufferedOut } = await storeEverywhere(name, systemId, segSize, seg.sha256, { compressed: seg.frame });
          return { outcome, sha256: seg.sha256, bytesIn: st.size, bytesOut: bufferedOut };
        } finally {
          seg.release();
        }
      }

      if (st.size <= IN_MEMORY_LIMIT) {
        // Read, hash and compress under a tighter limit than uploads: that
        // work is CPU-bound (zstd on the libuv pool, SHA-256 here), and each
        // job in it holds a segment and a compression context in memory.
        const { systemId, segSize, sha256, encoded, bytesIn } = await encodeLimit(async () => {
          let read: PooledRead;
          try {
            read = await pool.readWhole(walPath, st.size);
          } catch (err) {
            throw unreadable(err);
          }
          try {
            const data = read.data;
            let systemId: string;
            let segSize: number | undefined;
            if (hasHeader) {
              ({ systemId, segSize } = segmentHeader(data, data.length));
            } else {
              systemId = await systemOfTextFile(name.name);
            }
            // Compression runs on the threadpool while this thread hashes.
            const encoding = encodeBuffer(data, spec);
            let sha256: string;
            try {
              sha256 = sha256Hex(data);
            } finally {
              // The buffer goes back to the pool only once zstd is done with it.
              await encoding.catch(() => undefined);
            }
            return { systemId, segSize, sha256, encoded: await encoding, bytesIn: data.length };
          } finally {
            // The plaintext is not needed once encoded: free it for the next
            // file while this one uploads.
            read.release();
          }
        });
        const { outcome, bufferedOut } = await storeEverywhere(name, systemId, segSize, sha256, { compressed: encoded });
        return { outcome, sha256, bytesIn, bytesOut: bufferedOut };
      }

      // Large segments (wal_segment_size up to 1 GiB): hash in one pass, then
      // stream-encode in a second pass that re-checks the hash, so memory stays
      // flat. The header comes from the first 64 KiB.
      const head = Buffer.alloc(65536);
      const fh = await open(walPath, 'r');
      try {
        await fh.read(head, 0, head.length, 0);
      } finally {
        await fh.close();
      }
      const header = readWalPageHeader(head, label);
      checkSegmentHeader(head, name.name, label);
      const hash1 = createHashStage();
      await pipeline(createReadStream(walPath), hash1.stage, new PassThrough().resume(), { signal: ctx.signal });
      const sha256 = hash1.digest();
      let bytesOut = 0;
      let pass2: ReturnType<typeof createHashStage> | undefined;
      const { outcome } = await storeEverywhere(name, header.systemId, header.segmentSize, sha256, { stream: (k) => {
        pass2 = createHashStage();
        const out = new PassThrough();
        out.on('data', (c: Buffer) => (bytesOut += c.length));
        pipeline([createReadStream(walPath), pass2.stage, ...encodeStages({ ...spec, ...(k ? { key: k } : {}) }), out], { signal: ctx.signal }).catch((err) => out.destroy(err));
        return out;
      } });
      if (pass2 && pass2.digest() !== sha256) {
        throw new CairnError('FORMAT_INVALID', `WAL file "${label}" changed while it was being archived`, { hint: 'PostgreSQL never changes a .ready file; check what else writes to pg_wal' });
      }
      return { outcome, sha256, bytesIn: st.size, bytesOut };
    },
  };
}

/**
 * A full collection between push-ahead files. Each file leaves ~8 MB of
 * compressed-output garbage outside the JS heap, which V8 frees only at its
 * next major GC; over a 32-file run that lifted peak RSS to ~150–170 MB, and
 * collecting when buffers pass 96 MB keeps the peak well below 150 MB. The
 * bin runs node with --expose-gc; without it this does nothing. `held`:
 * buffer bytes that are reused, not garbage (the segment encoder's outputs).
 */
export function collectGarbage(held = 0): void {
  const gc = (globalThis as { gc?: (opts?: { type: 'major' }) => void }).gc;
  // A major GC costs ~10–20 ms: only when buffers (live: the read pool and
  // the outputs in flight, ~50 MB) have piled up. Not RSS: it does not shrink
  // after a collection, so it would trigger one for every file.
  if (gc && process.memoryUsage().arrayBuffers - held > GC_ABOVE_BUFFERS) gc({ type: 'major' });
}

