#!/usr/bin/env node
// `node scripts/bench/copy-files.mjs` (Node 24), issue 19: cairn-copy's peak
// RSS and time on backups of many files, without PostgreSQL. For each size in
// BENCH_COPY_FILES_SIZES (default 100000,300000,1000000) a file repository is
// generated with one full backup of that many 8 KiB relation files as
// basebackup stores them (zstd objects, small ones packed into tar bundles,
// every 100th file stored alone, a streamed cairn.backup/3 manifest), then
// `cairn-copy --from REPO --to EMPTY` runs under /usr/bin/time into a fresh
// file repository: seconds, peak RSS, and µs per file (time linear in the
// file count) beside the 300 MB target. BENCH_COPY_BIN names another
// cairn-copy to compare (a build of an older commit); BENCH_COPY_FILES_KEEP=1
// keeps the generated repositories for the next run (1 KiB of disk a file);
// BENCH_COPY_FILES_ORDER=spread packs the bundles in a tar stream's order
// rather than path order (each bundle's members all over the manifest: the
// copy gathers its bundles over several passes).
// Prints a table and one JSON line; exits 1 when a copy is over the target.

import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { FsDriver } from '@cairn/core/storage/fs';
import { createBundler } from '@cairn/core/backup/bundle';
import { backupFileKey, backupPrefix, MANIFEST_FORMAT_STREAM } from '@cairn/core/backup/manifest';
import { writeManifestRecords } from '@cairn/core/backup/manifest-stream';
import { encodeWhole } from '@cairn/core/codec/file-codec';
import { encodedExtension, parseCompress } from '@cairn/core/codec/index';
import { ensureRepoConfig } from '@cairn/core/repo/repo-config';
import { segmentName } from '@cairn/core/wal/segment';
import { ROOT, TIME, toolBin } from './lib/common.mjs';

const ID = '20261201-020000F';
const SEG = 16 * 1024 * 1024;
const sizes = (process.env.BENCH_COPY_FILES_SIZES || '100000,300000,1000000').split(',').map(Number);
const bin = process.env.BENCH_COPY_BIN || toolBin('cairn-copy');
const base = process.env.BENCH_COPY_FILES_DIR || join(process.env.BENCH_TMPDIR || tmpdir(), 'cairn-copy-files');
const keep = process.env.BENCH_COPY_FILES_KEEP === '1';
const TARGET_MB = 300;
const order = process.env.BENCH_COPY_FILES_ORDER === 'spread' ? 'spread' : 'path';
const signal = new AbortController().signal;
const spec = { compress: parseCompress('zstd:1') };
const ext = encodedExtension(spec);

function head(n) {
  return {
    format: MANIFEST_FORMAT_STREAM, tool: { name: 'cairn-basebackup', version: 'bench' }, id: ID, type: 'full', parent: null, references: [], source: 'local',
    cluster: 'main', systemId: '7312345678901234567', pgVersionNum: 150004, pgMajor: '15', walSegmentSize: SEG, timeline: 1,
    start: { time: '2026-12-01T02:00:00Z', lsn: '0/2000028', wal: segmentName(1, 2n, SEG) },
    stop: { time: '2026-12-01T02:10:00Z', lsn: '0/3000100', wal: segmentName(1, 3n, SEG) },
    checkpointLsn: '0/2000060', compress: 'zstd:1', encrypted: false, dataChecksums: true, backupLabel: '', tablespaceMap: null, tablespaces: [],
    dirs: [{ path: 'base', mode: 0o700 }, { path: 'base/16384', mode: 0o700 }],
    totals: { size: n * 8192, storedSize: 0, filesStored: n, filesReferenced: 0, badPages: 0 }, durationSeconds: 600,
  };
}

/** Writes the repository of `n` files under `dir` (once: kept for the next run). */
async function generate(dir, n, spread) {
  if (existsSync(join(dir, 'main', 'backups', ID, 'manifest.json'))) return;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const driver = new FsDriver(dir);
  await ensureRepoConfig(driver, 'main', undefined, new Date('2026-12-01T00:00:00Z'));
  const bundler = createBundler({ driver, cluster: 'main', id: ID, signal });
  const page = Buffer.alloc(8192);
  // spread: files packed in the order of a tar stream that visits 64 directories in turn, so each
  // bundle's members lie all over the manifest (the records are then held here to be sorted).
  const at = (k) => (spread ? (k % 64) * Math.ceil(n / 64) + Math.floor(k / 64) : k);
  async function* packed() {
    for (let k = 0; k < (spread ? 64 * Math.ceil(n / 64) : n); k++) {
      const i = at(k);
      if (i >= n) continue;
      // A page that compresses as heap pages do (a little), different per file.
      page.fill(0);
      page.write(`relation ${i} `.repeat(40), 24);
      const r = await encodeWhole(page, spec);
      const path = `base/16384/${1_000_000 + i}`;
      const key = backupFileKey('main', ID, path, ext);
      const f = { path, size: r.size, mode: 0o600, mtime: 1764554400, sha256: r.sha256, ref: ID, key, storedSize: r.stored.length };
      const bundle = i % 100 === 99 ? undefined : await bundler.add(key.slice(backupPrefix('main', ID).length), r.stored, f.mtime);
      if (bundle) f.bundle = bundle;
      else await driver.write(key, r.stored, { durable: false });
      yield f;
    }
    await bundler.finish();
  }
  if (!spread) return await writeManifestRecords(driver, head(n), n, packed(), signal);
  const held = [];
  for await (const f of packed()) held.push(f);
  held.sort((a, b) => (a.path < b.path ? -1 : 1)); // same-length numeric names: path order
  await writeManifestRecords(driver, head(n), n, held, signal);
}

function timed(args) {
  const out = join(base, 'time.txt');
  const r = spawnSync(TIME, ['-o', out, '-f', '%e %M', bin, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const [seconds, kb] = readFileSync(out, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  return { code: r.status, seconds, rssMB: Math.round(kb / 102.4) / 10, stdout: r.stdout, stderr: r.stderr };
}

const rows = [];
for (const n of sizes) {
  const src = join(base, `src-${order}-${n}`);
  const t0 = Date.now();
  await generate(src, n, order === 'spread');
  const genS = (Date.now() - t0) / 1000;
  const dst = join(base, 'dst');
  rmSync(dst, { recursive: true, force: true });
  const r = timed(['--from', src, '--to', dst, '--json']);
  if (r.code !== 0) throw new Error(`cairn-copy exited ${r.code}: ${r.stderr}`);
  const j = JSON.parse(r.stdout);
  if (j.problems.length > 0 || j.backups.copied.length !== 1) throw new Error(`cairn-copy did not copy the backup: ${r.stdout}`);
  rmSync(dst, { recursive: true, force: true });
  if (!keep) rmSync(src, { recursive: true, force: true });
  rows.push({ files: n, seconds: r.seconds, maxRssMB: r.rssMB, usPerFile: Math.round((r.seconds * 1e6) / n), generatedS: genS });
  process.stderr.write(`${n} files: ${r.seconds} s, peak RSS ${r.rssMB} MB\n`);
}
process.stdout.write(`cairn-copy of one full backup, bundles packed in ${order} order (${bin.startsWith(ROOT) ? 'this build' : bin})\n`);
process.stdout.write(`| files | seconds | peak RSS MB (target ${TARGET_MB}) | µs/file |\n|---|---|---|---|\n`);
for (const r of rows) process.stdout.write(`| ${r.files} | ${r.seconds} | ${r.maxRssMB}${r.maxRssMB > TARGET_MB ? ' OVER' : ''} | ${r.usPerFile} |\n`);
process.stdout.write(JSON.stringify({ kind: 'copy-files', bin, order, rows }) + '\n');
rmSync(join(base, 'time.txt'), { force: true });
if (rows.some((r) => r.maxRssMB > TARGET_MB)) process.exitCode = 1;
