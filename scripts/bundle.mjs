#!/usr/bin/env node
// Bundles a tool's built JavaScript (dist/) into bundle/: one file per entry
// point plus lazily loaded chunks. wal-push and wal-get start once per WAL
// segment; a bundle halves the ESM loader's start-up work (measured: ~50 ms
// against ~95 ms for --version). The AWS SDK stays external and is loaded
// only for s3:// repositories. execa stays external too: its cross-spawn
// require()s node built-ins, which an ESM bundle cannot do. zstd-napi is a
// native addon (optional: codec/zstd-native.ts loads it if it is there).
//
// usage (from a tool's directory): node ../../scripts/bundle.mjs cli.js [other-entry.js …]
import { build } from 'esbuild';
import { rmSync } from 'node:fs';

const entries = process.argv.slice(2);
if (entries.length === 0) {
  console.error('bundle: name the dist/ entry points to bundle');
  process.exit(2);
}
rmSync('bundle', { recursive: true, force: true });
await build({
  entryPoints: entries.map((e) => `dist/${e}`),
  outdir: 'bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  external: ['@aws-sdk/*', '@smithy/*', 'pg', 'pg-native', 'execa', 'zstd-napi'],
  sourcemap: 'linked',
  logLevel: 'warning',
  chunkNames: 'chunks/[name]-[hash]',
});
