// zstd-napi (libzstd built with the package) for the one path where it beats
// node:zlib by a wide margin: decoding a backup file's frames, one after the
// other, on the file worker thread that owns the file, into a buffer that is
// reused. Measured here on the frames of a 1 GiB pgbench relation segment:
// node:zlib's zstdDecompressSync 1.0-1.15 s (a fresh 4 MiB output buffer per
// frame), zstd-napi's DCtx.decompress into one reused buffer 0.32 s.
//
// It is an optional dependency: a native build (node-gyp) that may be absent
// (no compiler when it was installed, a libc it was not built for). Then
// nativeZstd() is undefined and callers use node:zlib; the bytes are the same.

import { createRequire } from 'node:module';

interface Binding {
  DCtx: new () => { decompress(dst: Uint8Array, src: Uint8Array): number };
  getFrameContentSize(src: Uint8Array): number | null;
}

export interface NativeZstd {
  /**
   * Decodes one whole frame into `dst`; returns the bytes written, or
   * undefined when it does not fit or does not decode (the caller decodes it
   * with node:zlib, which then says what is wrong with it).
   */
  decodeFrameInto(frame: Buffer, dst: Buffer): number | undefined;
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
  };
}
