// zstd-napi (libzstd built with the package) for the paths where a thread
// owns a backup file and can block on it: the file workers. There it beats
// node:zlib by a wide margin. Measured here on a 1 GiB pgbench relation
// segment in 4 MiB frames:
//   decode: node:zlib zstdDecompressSync 1.0-1.15 s (a fresh 4 MiB output per
//           frame), zstd-napi DCtx.decompress into one reused buffer 0.32 s;
//   encode: node:zlib on the threadpool 1.5-2.0 s of CPU, zstd-napi
//           CCtx.compress2 on the worker 1.3 s, and 3% smaller.
//
// It is an optional dependency: a native build (node-gyp) that may be absent
// (no compiler when it was installed, a libc it was not built for). Then
// nativeZstd() is undefined and callers use node:zlib; the frames are
// standard zstd frames either way.

import { createRequire } from 'node:module';

interface Binding {
  DCtx: new () => { decompress(dst: Uint8Array, src: Uint8Array): number };
  CCtx: new () => {
    setParameter(p: number, v: number): void;
    compress2(dst: Uint8Array, src: Uint8Array): number;
    reset(r: number): void;
    setPledgedSrcSize(size: number): void;
    compressStream2(dst: Uint8Array, src: Uint8Array, end: number): [left: number, produced: number, consumed: number];
  };
  CParameter: { compressionLevel: number; checksumFlag: number; contentSizeFlag: number };
  EndDirective: { continue: number; end: number };
  ResetDirective: { sessionOnly: number };
  getFrameContentSize(src: Uint8Array): number | null;
  compressBound(size: number): number;
}

export interface NativeZstd {
  /**
   * Decodes one whole frame into `dst`; returns the bytes written, or
   * undefined when it does not fit or does not decode (the caller decodes it
   * with node:zlib, which then says what is wrong with it).
   */
  decodeFrameInto(frame: Buffer, dst: Buffer): number | undefined;
  /**
   * One zstd frame of `piece` at `level`, with its XXH64 and its size in the
   * header (what codec/compress.ts's zstdParams asks of node:zlib), in a new
   * Buffer of exactly the frame's length.
   */
  encodeFrame(piece: Buffer, level: number): Buffer;
  /** The most bytes one frame of `size` bytes can take. */
  bound(size: number): number;
  /**
   * The same frame, fed piece by piece: `size` bytes in all, written into
   * `dst` (at least bound(size) bytes). Each piece may be reused once push
   * returns; end() returns the frame's length. One frame at a time per thread.
   */
  frameWriter(size: number, level: number, dst: Uint8Array): { push(piece: Uint8Array): void; end(): number };
  /**
   * The same frame of all of `src`, written into `dst` (at least
   * bound(src.length) bytes); returns its length. Faster than frameWriter
   * when the input is whole in memory: zstd then compresses it where it lies
   * instead of copying it into its window, whose wrap-arounds take the slower
   * external-dictionary path (WAL at level 1: ~19 ms per 16 MiB segment
   * against ~23 streamed in 1 MiB pieces).
   */
  encodeInto(src: Uint8Array, level: number, dst: Uint8Array): number;
}

let loaded: NativeZstd | null | undefined;

/** This thread's decoder, or undefined when zstd-napi cannot be loaded. */
export function nativeZstd(): NativeZstd | undefined {
  if (loaded === undefined) loaded = load();
  return loaded ?? undefined;
}

function load(): NativeZstd | null {
  let b: Binding;
  try {
    b = createRequire(import.meta.url)('zstd-napi/binding') as Binding;
  } catch {
    return null;
  }
  const dctx = new b.DCtx();
  const cctx = new b.CCtx();
  let cctxLevel: number | undefined;
  let out: Buffer | undefined;
  const setLevel = (level: number) => {
    if (cctxLevel !== level) {
      cctx.setParameter(b.CParameter.compressionLevel, level);
      cctx.setParameter(b.CParameter.checksumFlag, 1);
      cctx.setParameter(b.CParameter.contentSizeFlag, 1);
      cctxLevel = level;
    }
  };
  const encodeInto = (src: Uint8Array, level: number, dst: Uint8Array): number => {
    setLevel(level);
    return cctx.compress2(dst, src);
  };
  return {
    decodeFrameInto(frame, dst) {
      // Frames compressed in one call through node:zlib do not record their
      // size: try, and leave what does not fit (or is damaged) to the caller.
      const size = b.getFrameContentSize(frame);
      if (size !== null && size > dst.length) return undefined;
      try {
        const n = dctx.decompress(dst, frame);
        return size === null || n === size ? n : undefined;
      } catch {
        return undefined;
      }
    },
    encodeFrame(piece, level) {
      const bound = b.compressBound(piece.length);
      if (out === undefined || out.length < bound) out = Buffer.allocUnsafe(bound);
      return Buffer.from(out.subarray(0, encodeInto(piece, level, out)));
    },
    frameWriter(size, level, dst) {
      setLevel(level);
      cctx.reset(b.ResetDirective.sessionOnly);
      cctx.setPledgedSrcSize(size);
      let at = 0;
      const feed = (src: Uint8Array, end: boolean) => {
        for (;;) {
          const [left, produced, consumed] = cctx.compressStream2(dst.subarray(at), src, end ? b.EndDirective.end : b.EndDirective.continue);
          at += produced;
          src = src.subarray(consumed);
          if (end ? left === 0 : src.length === 0) return;
          if (produced === 0 && consumed === 0) throw new Error('zstd made no progress: the output buffer is too small');
        }
      };
      return {
        push: (piece) => feed(piece, false),
        end: () => {
          feed(new Uint8Array(0), true);
          return at;
        },
      };
    },
    encodeInto,
    bound: (size) => b.compressBound(size),
  };
}
