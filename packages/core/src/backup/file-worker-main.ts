// The body of a file worker thread (see file-worker.ts): takes one job at a
// time from the main thread and does the whole file.

import { parentPort, workerData } from 'node:worker_threads';
import { CairnError } from '../cli/errors.js';
import { dataKeyResolver } from '../repo/data-key.js';
import { loadKey } from '../repo/repositories.js';
import { parseCompress, type EncodeSpec, type EncryptionKey } from '../codec/index.js';
import { nativeZstd } from '../codec/zstd-native.js';
import type { StorageDriver } from '../storage/driver.js';
import { openStorage } from '../storage/open.js';
import type { Readable } from 'node:stream';
import { createPiecePool, createSlots, encodeFile, encodeWhole, PIECE_SIZE, readFilePieces } from '../codec/file-codec.js';
import { createPageCheck } from '../pg/page-checksum.js';
import { NotWholePages, storeChangedPages } from './pages.js';
import { restoreFileHere } from './restore-file.js';
import type { DecodeJob, EncodeJob, EncodeResult, HashJob, PagesJob, WorkerSetup } from './file-worker.js';
import { hashLocalFile, restorePaged } from './restore-pages.js';

export function runFileWorker(): void {
  const setup = workerData as WorkerSetup;
  let driverP: Promise<StorageDriver> | undefined;
  let keyP: Promise<EncryptionKey | undefined> | undefined;
  const driver = () => (driverP ??= openStorage(setup.repoUrl, { env: setup.env }));
  const key = () => (keyP ??= (async () => {
    const operator = await loadKey(setup, setup.env);
    // The cluster's data key (repo/data-key.ts), as the main thread uses.
    return operator === undefined ? undefined : dataKeyResolver(setup.cluster, operator)(await driver());
  })());
  // Pieces in flight for this worker's one file: enough to keep the
  // threadpool busy compressing while this thread hashes.
  const slots = createSlots(3);
  const pool = createPiecePool(6);

  const encode = async (job: EncodeJob): Promise<EncodeResult> => {
    const d = await driver();
    const k = await key();
    const spec: EncodeSpec = { compress: parseCompress(setup.compress), ...(k ? { key: k } : {}) };
    const check = job.pageCheck ? createPageCheck(job.pageCheck.firstBlock, BigInt(job.pageCheck.startLsn)) : undefined;
    // zstd through zstd-napi on this thread where it is installed: this
    // thread owns the file, and it compresses a 1 GiB relation segment in
    // 1.3 s of CPU against node:zlib's 1.5-2.0 s on the threadpool (and 3%
    // smaller; codec/zstd-native.ts).
    const z = spec.compress.alg === 'zstd' ? nativeZstd() : undefined;
    const compressHere = z ? (piece: Buffer) => z.encodeFrame(piece, spec.compress.level) : undefined;
    const write = (body: Readable | Buffer) => d.write(job.key, body, { durable: false });
    if (job.pages) {
      try {
        const pages = await storeChangedPages(readFilePieces(job.path, job.size, pool), {
          firstBlock: job.pages.firstBlock, parentStartLsn: BigInt(job.pages.parentStartLsn), startLsn: BigInt(job.pages.startLsn), parentBlocks: job.pages.parentBlocks, pieceSize: PIECE_SIZE,
        }, {
          async small(buf) {
            const e = await encodeWhole(buf, spec);
            await write(e.stored);
            return { size: e.size, sha256: e.sha256, storedSize: e.stored.length };
          },
          stream: (pieces) => encodeFile(pieces, spec, slots, write, compressHere ? { compressHere } : {}),
        });
        return { size: pages.fileSize, sha256: pages.fileSha256, storedSize: pages.layer?.storedSize ?? 0, badPages: pages.badPages, pages };
      } catch (err) {
        if (!(err instanceof NotWholePages)) throw err;
        return { size: 0, sha256: '', storedSize: 0, badPages: [] };
      }
    }
    const r = await encodeFile(readFilePieces(job.path, job.size, pool), spec, slots, write, {
      pool,
      ...(check ? { inspect: check.inspect } : {}),
      ...(compressHere ? { compressHere } : {}),
    });
    return { ...r, badPages: check?.bad ?? [] };
  };

  // The worker owns the file: decoded, hashed and written on this thread.
  const decode = async (job: DecodeJob): Promise<void> => restoreFileHere(await driver(), await key(), job);

  // Jobs arrive as soon as they are assigned (file-worker.ts) and run one
  // after the other: this thread's pieces and staging buffers serve one file.
  let tail: Promise<unknown> = Promise.resolve();
  parentPort!.on('message', (m: { id: number; job: EncodeJob | DecodeJob | PagesJob | HashJob }) => {
    const job = m.job;
    const work = (async (): Promise<unknown> => {
      await tail;
      if (job.kind === 'pages') return restorePaged(await driver(), await key(), job.file, job.target, job.delta);
      if (job.kind === 'hash') return hashLocalFile(job.path);
      return job.kind === 'encode' ? encode(job) : decode(job);
    })();
    tail = work.catch(() => {});
    work.then(
      (result) => parentPort!.postMessage({ id: m.id, result }),
      (err: unknown) => {
        const e = err as Error & { code?: string; hint?: string };
        parentPort!.postMessage({
          id: m.id,
          error: err instanceof CairnError ? { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } : { message: e.message, ...(typeof e.code === 'string' ? { errno: e.code } : {}) },
        });
      },
    );
  });
}
