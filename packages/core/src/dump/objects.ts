// Writing and reading the objects of a logical dump: plaintext → sha256 →
// compress → encrypt → storage on the way in, and the reverse on the way out
// with the SHA-256 and size re-checked before the last bytes are let through,
// so a consumer (pg_restore in one transaction) never sees the end of a dump
// that fails its checksum and never commits it.

import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { CairnError } from '../cli/errors.js';
import { checksumMismatch } from '../codec/errors.js';
import { createCompressStage, createCountStage, createEncryptStage, createHashStage, decodeStagesForExtension, type EncodeSpec, type EncryptionKey } from '../codec/index.js';
import { sameCompression } from '../codec/file-codec.js';
import { fanOut, type Outcome } from '../util/fan-out.js';
import { ObjectNotFoundError, type StorageDriver } from '../storage/driver.js';
import type { DumpObject } from './manifest.js';

/** Bytes held back from the consumer until the checksum is known (docs/design.md §4.3). */
export const HOLD_BACK_BYTES = 1024 * 1024;

export interface WrittenObject {
  size: number;
  sha256: string;
  storedSize: number;
}

/**
 * Streams `source` (plaintext) into `key`, encoded per `spec`. The write is
 * atomic (driver contract); a failing source (pg_dump's pipe erroring) or
 * storage failure rejects and leaves nothing under `key`.
 */
export async function writeDumpObject(driver: StorageDriver, key: string, source: Readable, spec: EncodeSpec, signal: AbortSignal): Promise<WrittenObject> {
  const [r] = await writeDumpObjectMany(key, source, [{ driver, spec, signal }], signal);
  if (!r!.ok) throw r!.error;
  return r!.value;
}

/**
 * writeDumpObject into several repositories from one read of `source`,
 * hashed and compressed once (the specs differ only in their keys), then
 * encrypted under each repository's own key (issue 18: the CPU of a dump to
 * two repositories was two compressions). The source moves at the pace of
 * the slowest repository still going; one that fails is reported in its
 * outcome and the others go on. A failing source fails them all (thrown).
 */
export async function writeDumpObjectMany(
  key: string,
  source: AsyncIterable<Buffer>,
  targets: readonly { driver: StorageDriver; spec: EncodeSpec; signal: AbortSignal }[],
  signal: AbortSignal,
): Promise<Outcome<WrittenObject>[]> {
  const hash = createHashStage();
  const compress = createCompressStage(sameCompression(targets.map((t) => t.spec)).compress);
  const compressed = new PassThrough({ highWaterMark: PIECE_BYTES });
  const input = source instanceof Readable ? source : Readable.from(source, { objectMode: false });
  const encoding = pipeline([input, coalesce(PIECE_BYTES), hash.stage, ...(compress ? [compress] : []), compressed], { signal });
  encoding.catch(() => {}); // its error reaches the sinks through `compressed`, and is thrown below
  const outcomes = await fanOut(compressed, targets.map((t) => async (body: Readable) => {
    const count = createCountStage();
    const out = new PassThrough();
    const results = await Promise.allSettled([
      pipeline([body, ...(t.spec.key !== undefined ? [createEncryptStage(t.spec.key)] : []), count.stage, out], { signal: t.signal }),
      t.driver.write(key, out, { signal: t.signal }),
    ]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return count.bytes();
  }));
  await encoding;
  return outcomes.map((r) => (r.ok ? { ok: true as const, value: { size: hash.bytes(), sha256: hash.digest(), storedSize: r.value } } : r));
}

/** Pieces handed to the codecs: a pipe delivers 64 KiB reads, each a trip through the zlib threadpool. */
const PIECE_BYTES = 1024 * 1024;

/** Gathers small chunks into pieces of at least `min` bytes (the last may be smaller). */
function coalesce(min: number): Transform {
  let parts: Buffer[] = [];
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      parts.push(chunk);
      bytes += chunk.length;
      if (bytes >= min) {
        const piece = parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
        parts = [];
        bytes = 0;
        cb(null, piece);
        return;
      }
      cb();
    },
    flush(cb: TransformCallback) {
      if (bytes > 0) this.push(parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes));
      parts = [];
      cb();
    },
  });
}

/** The codec extension of a stored object: what follows its name in the key. */
export function objectExtension(obj: DumpObject): string {
  const last = obj.key.slice(obj.key.lastIndexOf('/') + 1);
  if (!last.startsWith(obj.name)) {
    throw new CairnError('FORMAT_INVALID', `dump object ${JSON.stringify(obj.name)} has key ${JSON.stringify(obj.key)}, which does not end in its name`, {
      hint: 'the dump manifest is damaged; cairn-verify reports which dumps are affected',
    });
  }
  return last.slice(obj.name.length);
}

/**
 * A pass-through stage that checks size and SHA-256 against the manifest
 * and keeps the last `holdBack` bytes until it has: on a mismatch it fails
 * (CHECKSUM_MISMATCH) without ever passing them on.
 */
export function createVerifyStage(obj: DumpObject, label: string, holdBack = HOLD_BACK_BYTES): Transform {
  const hash = createHash('sha256');
  let size = 0;
  let held: Buffer[] = [];
  let heldBytes = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      hash.update(chunk);
      size += chunk.length;
      held.push(chunk);
      heldBytes += chunk.length;
      // Release what lies beyond the last `holdBack` bytes.
      while (held.length > 0 && heldBytes - held[0]!.length >= holdBack) {
        const c = held.shift()!;
        heldBytes -= c.length;
        this.push(c);
      }
      cb();
    },
    flush(cb: TransformCallback) {
      const sha = hash.digest('hex');
      if (size !== obj.size || sha !== obj.sha256) {
        held = [];
        cb(checksumMismatch('dump', label, obj, { sha256: sha, size }));
        return;
      }
      for (const c of held) this.push(c);
      held = [];
      cb();
    },
  });
}

/** Stages that turn a stored dump object back into its checked plaintext. */
export function dumpReadStages(obj: DumpObject, key: EncryptionKey | undefined, label: string, holdBack = HOLD_BACK_BYTES): Transform[] {
  return [...decodeStagesForExtension(objectExtension(obj), key, label), createVerifyStage(obj, label, holdBack)];
}

/** The stored bytes of a dump object (a stream; the caller pipes it through dumpReadStages). */
export async function readDumpObject(driver: StorageDriver, obj: DumpObject, signal: AbortSignal): Promise<Readable> {
  try {
    return await driver.read(obj.key, signal);
  } catch (err) {
    if (!(err instanceof ObjectNotFoundError)) throw err;
    throw new CairnError('FORMAT_INVALID', `dump object ${JSON.stringify(obj.key)} is missing from repository "${driver.url}"`, {
      hint: 'the dump is incomplete; restore another dump (cairn-info lists them) and run cairn-verify',
    });
  }
}
