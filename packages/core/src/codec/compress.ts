// Compression stages: zstd (node:zlib, on the libuv threadpool) and gzip.
// Output is a plain .zst / .gz stream that the stock `zstd -d` / `gzip -d`
// decode, so an operator can get data back without cairn (docs/design.md §3).

import { Transform } from 'node:stream';
import zlib from 'node:zlib';
import { CairnError } from '../cli/errors.js';
import { corruptDataFrom } from './errors.js';
import { createZstdFrameCheck } from './zstd-frames.js';

export type CompressAlg = 'zstd' | 'gzip' | 'none';

export interface CompressSpec {
  alg: CompressAlg;
  /** zstd 1..19, gzip 1..9; 0 for none. */
  level: number;
}

/**
 * Level 3 is zstd's own default (ZSTD_CLEVEL_DEFAULT): measured on a TPC-B
 * WAL segment ≈ 314 MB/s at 4.6× (docs/gotchas.md §zstd), fast enough for one segment
 * per archive_command. 6 is gzip's default. zstd stops at 19: 20–22 are
 * "ultra" levels that need --ultra and much more memory to decode.
 */
const LEVELS = {
  zstd: { min: 1, max: 19, default: 3 },
  gzip: { min: 1, max: 9, default: 6 },
} as const;

const SPEC_RE = /^(zstd|gzip|none)(?::(\d{1,2}))?$/;

/** Parses `zstd`, `zstd:N`, `gzip`, `gzip:N` or `none` (--compress / CAIRN_COMPRESS). */
export function parseCompress(s: string): CompressSpec {
  const text = typeof s === 'string' ? s.trim().toLowerCase() : '';
  const m = SPEC_RE.exec(text);
  const bad = () =>
    new CairnError('CONFIG_INVALID', `invalid compression ${JSON.stringify(String(s))}`, {
      hint: 'use zstd[:1-19], gzip[:1-9] or none',
    });
  if (!m) throw bad();
  const alg = m[1] as CompressAlg;
  if (alg === 'none') {
    if (m[2] !== undefined) throw bad();
    return { alg, level: 0 };
  }
  const range = LEVELS[alg];
  const level = m[2] === undefined ? range.default : Number(m[2]);
  if (level < range.min || level > range.max) throw bad();
  return { alg, level };
}

/** `zstd:3`, `gzip:6`, `none`: the inverse of parseCompress. */
export function formatCompress(spec: CompressSpec): string {
  return spec.alg === 'none' ? 'none' : `${spec.alg}:${spec.level}`;
}

/** The extension a compressed object carries: '.zst', '.gz' or ''. */
export function compressExtension(alg: CompressAlg): string {
  return alg === 'zstd' ? '.zst' : alg === 'gzip' ? '.gz' : '';
}

/**
 * The zstd parameters of every zstd object cairn writes, streamed or in one
 * call: the level, and an XXH64 of the content in every frame (off by default
 * in libzstd), so that `zstd -d` and our decoder detect corruption on their
 * own, even without the manifest's SHA-256 (`zstd -lv` shows "Check: XXH64").
 * The content size goes into the frame header whenever it is known (one-shot
 * calls, or a stream given pledgedSrcSize); libzstd's default, stated here.
 */
export function zstdParams(level: number): Record<number, number> {
  return {
    [zlib.constants.ZSTD_c_compressionLevel]: level,
    [zlib.constants.ZSTD_c_checksumFlag]: 1,
    [zlib.constants.ZSTD_c_contentSizeFlag]: 1,
  };
}

/** Output piece size of the zlib engines (see createCompressStage). */
const CHUNK_SIZE = 1024 * 1024;

/**
 * The compressing stage for `spec`, or undefined for 'none'. `size`: the
 * exact number of bytes that will pass, when known (a buffer): zstd then
 * compresses the whole input as one known-size frame, about 7% less CPU on a
 * 16 MiB WAL segment than as a stream of unknown length, and records the
 * size in the frame header. More or fewer bytes than `size` fail the stage.
 */
export function createCompressStage(spec: CompressSpec, size?: number): Transform | undefined {
  switch (spec.alg) {
    case 'none':
      return undefined;
    case 'zstd':
      checkLevel(spec);
      return createZstdStage({
        // zlib hands over output in chunkSize pieces, each a JS callback and a
        // new Buffer: 16 KiB pieces of a 16 MiB segment cost ~10 ms of the
        // main thread per segment; 1 MiB pieces cost next to nothing.
        chunkSize: CHUNK_SIZE,
        ...(size !== undefined ? { pledgedSrcSize: size } : {}),
        params: zstdParams(spec.level),
      });
    case 'gzip':
      checkLevel(spec);
      return zlib.createGzip({ level: spec.level, chunkSize: CHUNK_SIZE });
    default:
      throw new CairnError('INTERNAL', `unknown compression ${JSON.stringify(spec.alg)}`);
  }
}

/**
 * Node's zstd compressor, fed so that it writes exactly one frame. Node's
 * zlib streams end the frame on the last chunk when end() has already been
 * called by the time that chunk is compressed, and then again in their flush:
 * for zstd that second end is a second, empty frame (write(a); end(b) does it
 * every time, a pipeline whenever its source ends while the last chunk
 * waits). Here each chunk is handed over only after the previous one was
 * compressed, and end() only after the last: the frame ends once.
 */
function createZstdStage(opts: zlib.ZstdOptions): Transform {
  const inner = zlib.createZstdCompress(opts);
  const stage = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      inner.write(chunk, (err) => cb(err ?? null));
    },
    flush(cb) {
      inner.once('end', () => cb());
      inner.end();
    },
    destroy(err, cb) {
      inner.destroy();
      cb(err);
    },
  });
  inner.on('data', (d: Buffer) => stage.push(d));
  inner.once('error', (err) => stage.destroy(err));
  return stage;
}

function checkLevel(spec: CompressSpec): void {
  const range = LEVELS[spec.alg as 'zstd' | 'gzip'];
  if (!Number.isInteger(spec.level) || spec.level < range.min || spec.level > range.max) {
    throw new CairnError('INTERNAL', `compression level ${spec.level} out of range for ${spec.alg}`);
  }
}

/**
 * The stages that undo `alg`, with errors naming `label`. zstd gets a frame
 * check in front of the decoder (see zstd-frames.ts). Errors of the zlib
 * engine (bad data, checksum, truncation) become FORMAT_INVALID.
 */
export function createDecompressStages(alg: CompressAlg, label: string): Transform[] {
  switch (alg) {
    case 'none':
      return [];
    case 'zstd':
      return [createZstdFrameCheck(label), withDataErrors(zlib.createZstdDecompress({ chunkSize: CHUNK_SIZE }), 'zstd', label)];
    case 'gzip':
      // Like `gzip -d`, concatenated members decode as one stream and
      // trailing zero bytes are ignored; other trailing bytes are an error.
      return [withDataErrors(zlib.createGunzip({ chunkSize: CHUNK_SIZE }), 'gzip', label)];
    default:
      throw new CairnError('INTERNAL', `unknown compression ${JSON.stringify(alg)}`);
  }
}

/** True for errors the zlib/zstd engines raise on bad input (Z_DATA_ERROR, ZSTD_error_*, …). */
function isEngineError(err: unknown): err is Error & { code: string } {
  if (!(err instanceof Error) || err instanceof CairnError) return false;
  const { code, errno } = err as NodeJS.ErrnoException;
  return typeof code === 'string' && typeof errno === 'number' && (code.startsWith('Z_') || code.startsWith('ZSTD_error_'));
}

/**
 * Maps the engine's own errors to FORMAT_INVALID at the one place every error
 * of a stream passes: destroy(). The zlib stream destroys itself with the
 * engine's error (zlibOnError), and a pipeline destroys it with other stages'
 * errors, which must pass unchanged, hence the isEngineError test.
 */
function withDataErrors(stream: Transform, alg: string, label: string): Transform {
  const destroy = stream.destroy.bind(stream);
  stream.destroy = ((err?: Error) => {
    if (isEngineError(err)) err = corruptDataFrom(alg, label, err);
    return destroy(err);
  }) as typeof stream.destroy;
  return stream;
}
