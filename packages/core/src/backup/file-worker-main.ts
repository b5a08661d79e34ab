// The body of a file worker thread (see file-worker.ts): takes one job at a
// time from the main thread and does the whole file.

import { parentPort, workerData } from 'node:worker_threads';
import { dataKeyResolver } from '../repo/data-key.js';
import { loadKey } from '../repo/repositories.js';
import { parseCompress, type EncodeSpec, type EncryptionKey } from '../codec/index.js';
import { nativeZstd } from '../codec/zstd-native.js';
import type { StorageDriver } from '../storage/driver.js';
import { openStorage } from '../storage/open.js';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { createPiecePool, createSlots, encodeFileMany, encodeWholeMany, PIECE_SIZE, readFilePieces } from '../codec/file-codec.js';
import type { Outcome } from '../util/fan-out.js';
import { createPageCheck } from '../pg/page-checksum.js';
import { NotWholePages, storeChangedPages } from './pages.js';
import { restoreFileHere } from './restore-file.js';
import { serializeError, type BatchFile, type BatchJob, type BatchReply, type DecodeJob, type EncodeJob, type EncodeResult, type HashJob, type PagesJob, type SmallJob, type WorkerOutcome, type WorkerSetup } from './file-worker.js';
import { hashLocalFile, restorePaged } from './restore-pages.js';

export function runFileWorker(): void {
  const setup = workerData as WorkerSetup;
  const urls = setup.repoUrls ?? [setup.repoUrl];
  const drivers = new Map<number, Promise<StorageDriver>>();
  const keys = new Map<number, Promise<EncryptionKey | undefined>>();
  let operatorP: Promise<EncryptionKey | undefined> | undefined;
  const driverAt = (i: number) => {
    let d = drivers.get(i);
    if (d === undefined) drivers.set(i, (d = openStorage(urls[i]!, { env: setup.env })));
    return d;
  };
  // Each repository's own data key (repo/data-key.ts), as the main thread uses.
  const keyAt = (i: number) => {
    let k = keys.get(i);
    if (k === undefined) {
      keys.set(i, (k = (async () => {
        const operator = await (operatorP ??= loadKey(setup, setup.env));
        return operator === undefined ? undefined : dataKeyResolver(setup.cluster, operator)(await driverAt(i));
      })()));
    }
    return k;
  };
  const driver = () => driverAt(0);
  const key = () => keyAt(0);
  // Pieces in flight for this worker's one file: enough to keep the
  // threadpool busy compressing while this thread hashes.
  const slots = createSlots(3);
  const pool = createPiecePool(6);

  const specAt = async (i: number): Promise<EncodeSpec> => {
    const k = await keyAt(i);
    return { compress: parseCompress(setup.compress), ...(k ? { key: k } : {}) };
  };
  // A repository whose driver or key does not open fails alone.
  const eachTarget = <T extends object>(targets: number[], open: (i: number) => Promise<T>) =>
    Promise.all(targets.map(async (i) => {
      try {
        return { ok: true as const, ...(await open(i)) };
      } catch (error) {
        return { ok: false as const, error };
      }
    }));
  const openTargets = (targets: number[]) => eachTarget(targets, async (i) => {
    const [d, spec] = await Promise.all([driverAt(i), specAt(i)]);
    return { d, spec };
  });
  // The encoding only: small files are stored by the main thread, so their
  // worker opens no storage (an S3 client) unless a data key must be read.
  const openSpecs = (targets: number[]) => eachTarget(targets, async (i) => ({ spec: await specAt(i) }));

  const encode = async (job: EncodeJob): Promise<EncodeResult> => {
    const opened = await openTargets(job.targets ?? [0]);
    const live = opened.flatMap((o) => (o.ok ? [o] : []));
    const spread = (stored: Outcome<number>[]): WorkerOutcome[] => {
      let n = 0;
      return opened.map((o) => {
        const r: Outcome<number> = o.ok ? stored[n++]! : { ok: false, error: o.error };
        return r.ok ? r : { ok: false, error: serializeError(r.error) };
      });
    };
    if (live.length === 0) return { size: 0, sha256: '', storedSize: 0, badPages: [], stored: spread([]) };
    const specs = live.map((o) => o.spec);
    const check = job.pageCheck ? createPageCheck(job.pageCheck.firstBlock, BigInt(job.pageCheck.startLsn)) : undefined;
    // zstd through zstd-napi on this thread where it is installed: this
    // thread owns the file, and it compresses a 1 GiB relation segment in
    // 1.3 s of CPU against node:zlib's 1.5-2.0 s on the threadpool (and 3%
    // smaller; codec/zstd-native.ts).
    const compress = specs[0]!.compress;
    const z = compress.alg === 'zstd' ? nativeZstd() : undefined;
    const compressHere = z ? (piece: Buffer) => z.encodeFrame(piece, compress.level) : undefined;
    const writes = live.map((o) => (body: Readable | Buffer) => o.d.write(job.key, body, { durable: false }));
    if (job.pages) {
      let stored: Outcome<number>[] = [];
      try {
        const pages = await storeChangedPages(readFilePieces(job.path, job.size, pool), {
          firstBlock: job.pages.firstBlock, parentStartLsn: BigInt(job.pages.parentStartLsn), startLsn: BigInt(job.pages.startLsn), parentBlocks: job.pages.parentBlocks, pieceSize: PIECE_SIZE,
        }, {
          async small(buf) {
            const e = await encodeWholeMany(buf, specs);
            stored = await Promise.all(writes.map((w, i) => w(e.stored[i]!).then((): Outcome<number> => ({ ok: true, value: e.stored[i]!.length }), (error: unknown): Outcome<number> => ({ ok: false, error }))));
            return { size: e.size, sha256: e.sha256, storedSize: e.stored[0]!.length };
          },
          async stream(pieces) {
            const r = await encodeFileMany(pieces, specs, slots, writes, compressHere ? { compressHere } : {});
            stored = r.stored;
            return { size: r.size, sha256: r.sha256, storedSize: 0 };
          },
        });
        // No layer (no page changed): nothing written anywhere.
        if (pages.layer === undefined) stored = live.map(() => ({ ok: true, value: 0 }));
        return { size: pages.fileSize, sha256: pages.fileSha256, storedSize: 0, badPages: pages.badPages, pages, stored: spread(stored) };
      } catch (err) {
        if (!(err instanceof NotWholePages)) throw err;
        return { size: 0, sha256: '', storedSize: 0, badPages: [], stored: spread(live.map(() => ({ ok: true, value: 0 }))) };
      }
    }
    const r = await encodeFileMany(readFilePieces(job.path, job.size, pool), specs, slots, writes, {
      pool,
      ...(check ? { inspect: check.inspect } : {}),
      ...(compressHere ? { compressHere } : {}),
    });
    return { size: r.size, sha256: r.sha256, storedSize: 0, badPages: check?.bad ?? [], stored: spread(r.stored) };
  };

  /** One small file of a batch: its stored bytes per target are appended to `out`, and found there by offset. */
  const small = async (job: SmallJob, out: { parts: Buffer[]; total: number }): Promise<BatchFile> => {
    let buf: Buffer;
    try {
      buf = readFileSync(job.path);
    } catch (err) {
      return { error: serializeError(err) };
    }
    // Grown past one piece since the walk: the main thread streams it.
    if (buf.length > PIECE_SIZE) return { grown: true };
    const opened = await openSpecs(job.targets);
    const specs = opened.flatMap((o) => (o.ok ? [o.spec] : []));
    const check = job.pageCheck ? createPageCheck(job.pageCheck.firstBlock, BigInt(job.pageCheck.startLsn)) : undefined;
    check?.inspect(buf, 0);
    const e = specs.length > 0 ? await encodeWholeMany(buf, specs) : { stored: [], size: buf.length, sha256: '' };
    let n = 0;
    const stored = opened.map((o) => {
      if (!o.ok) return { ok: false as const, error: serializeError(o.error) };
      const bytes = e.stored[n++]!;
      out.parts.push(bytes);
      out.total += bytes.length;
      return { ok: true as const, off: out.total - bytes.length, len: bytes.length };
    });
    return { grown: false, size: e.size, sha256: e.sha256, badPages: check?.bad ?? [], stored };
  };

  /** A batch of small files, one after the other; their bytes cross back in one buffer, given away (not copied). */
  const batch = async (job: BatchJob): Promise<BatchReply> => {
    const out = { parts: [] as Buffer[], total: 0 };
    const files: BatchFile[] = [];
    for (const j of job.jobs) files.push(await small(j, out));
    const buf = new ArrayBuffer(out.total);
    const view = new Uint8Array(buf);
    let at = 0;
    for (const p of out.parts) {
      view.set(p, at);
      at += p.length;
    }
    return { files, buf };
  };

  // The worker owns the file: decoded, hashed and written on this thread.
  const decode = async (job: DecodeJob): Promise<void> => restoreFileHere(await driver(), await key(), job);

  // Jobs arrive as soon as they are assigned (file-worker.ts) and run one
  // after the other: this thread's pieces and staging buffers serve one file.
  let tail: Promise<unknown> = Promise.resolve();
  parentPort!.on('message', (m: { id: number; job: EncodeJob | DecodeJob | PagesJob | HashJob | BatchJob }) => {
    const job = m.job;
    const work = (async (): Promise<unknown> => {
      await tail;
      if (job.kind === 'batch') return batch(job);
      if (job.kind === 'pages') return restorePaged(await driver(), await key(), job.file, job.target, job.delta);
      if (job.kind === 'hash') return hashLocalFile(job.path);
      return job.kind === 'encode' ? encode(job) : decode(job);
    })();
    tail = work.catch(() => {});
    work.then(
      (result) => parentPort!.postMessage({ id: m.id, result }, job.kind === 'batch' ? [(result as BatchReply).buf] : []),
      (err: unknown) => {
        parentPort!.postMessage({ id: m.id, error: serializeError(err) });
      },
    );
  });
}
