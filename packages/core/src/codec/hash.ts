// Pass-through stages that measure what flows through them: SHA-256 of the
// plaintext (recorded in manifests, re-checked on every read) and byte counts.

import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { CairnError } from '../cli/errors.js';

export interface HashStage {
  /** Put it in a pipeline; bytes pass through unchanged. */
  readonly stage: Transform;
  /** SHA-256 of everything that passed, lowercase hex. Throws INTERNAL before the stream ended. */
  digest(): string;
  /** Bytes that passed so far. */
  bytes(): number;
}

export interface CountStage {
  readonly stage: Transform;
  /** Bytes that passed so far. */
  bytes(): number;
}

export function createHashStage(): HashStage {
  const hash = createHash('sha256');
  let bytes = 0;
  let digest: string | undefined;
  const stage = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      hash.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      digest = hash.digest('hex');
      cb();
    },
  });
  return {
    stage,
    digest() {
      // A digest of a stream that did not end would be a checksum of part of
      // the data: refuse rather than return something that looks valid.
      if (digest === undefined) throw new CairnError('INTERNAL', 'sha256 digest read before the stream ended');
      return digest;
    },
    bytes: () => bytes,
  };
}

export function createCountStage(): CountStage {
  let bytes = 0;
  const stage = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  return { stage, bytes: () => bytes };
}

/** SHA-256 of a buffer, lowercase hex. */
export function sha256Hex(buf: Buffer | Uint8Array | string): string {
  return createHash('sha256').update(buf).digest('hex');
}
