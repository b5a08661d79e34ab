// The push-ahead worker's encoder threads, started by its entry before the
// rest of the worker loads (push-worker-main.ts): kept apart from archiver.ts
// so that starting them loads almost nothing.

import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { CompressSpec } from '@cairn/core/codec/index';
import type { SegmentEncoder } from '@cairn/core/codec/segment-encoder';
import { findWorkerEntry } from '@cairn/core/util/worker-entry';

/** Files read, hashed and compressed at once: never wider than the cores. */
export function encodeWidth(concurrency: number): number {
  return Math.max(1, Math.min(concurrency, availableParallelism()));
}

/**
 * Segments are read, hashed and compressed on threads, one per core
 * (codec/segment-encoder.ts); undefined without zstd or zstd-napi (the
 * archiver then works as PostgreSQL's own call does). `fromUrl`: the caller's
 * import.meta.url, beside which encode-thread.js is found.
 */
export async function startEncoder(compress: CompressSpec, concurrency: number, fromUrl: string): Promise<SegmentEncoder | undefined> {
  const entry = compress.alg === 'zstd' ? findWorkerEntry(fromUrl, 'encode-thread.js') : undefined;
  if (!entry) return undefined;
  const { createSegmentEncoder } = await import('@cairn/core/codec/segment-encoder');
  return createSegmentEncoder(entry, encodeWidth(concurrency), compress.level, mapFileAddon(fromUrl));
}

/**
 * bin/map-file.node (scripts/build-native.mjs), from dist/ or from a
 * bundle's entry or chunks/; undefined where it was not built.
 */
export function mapFileAddon(fromUrl: string): string | undefined {
  const u = findWorkerEntry(fromUrl, '../bin/map-file.node');
  return u && fileURLToPath(u);
}
