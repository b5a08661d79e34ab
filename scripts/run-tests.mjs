#!/usr/bin/env node
// Runs every test: unit tests beside the code (packages/*/dist, tools/*/dist)
// and the end-to-end suites (test/dist). `--unit` runs only the unit tests,
// `--e2e` only the end-to-end ones; other arguments filter file paths.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);
const only = args.includes('--unit') ? 'unit' : args.includes('--e2e') ? 'e2e' : 'all';
const filters = args.filter((a) => !a.startsWith('--'));

function walk(dir, out = []) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    if (n === 'node_modules') continue;
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (n.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const unit = [];
for (const top of ['packages', 'tools']) {
  for (const pkg of readdirSync(join(root, top))) unit.push(...walk(join(root, top, pkg, 'dist')));
}
const e2e = walk(join(root, 'test', 'dist'));
let files = only === 'unit' ? unit : only === 'e2e' ? e2e : [...unit, ...e2e];
if (filters.length > 0) files = files.filter((f) => filters.some((x) => f.includes(x)));
files = files.map((f) => relative(root, f)).sort();
// The longest files first (their durations in the CI of stop 32), so the run
// does not end on one of them alone on a core while the other idles.
const SLOWEST = ['page-chain-s3', 'pitr-s3', 'pitr-fs', 'reader-lease-s3', 'backup-every-repo', 'copy.test', 'reader-lease-fs', 'page-chain-fs', 'backup-chain', 'pg-versions', 'package.test', 'drill-repos'];
const rank = (f) => {
  const i = SLOWEST.findIndex((s) => f.startsWith('test/') && f.includes(`/${s}`));
  return i === -1 ? SLOWEST.length : i;
};
files.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
if (files.length === 0) {
  console.error('run-tests: no test files found; run the build first (npm run build)');
  process.exit(1);
}
// Two test files at once on two cores. The suite is CPU-bound here: three at
// once made every file 1.5x slower and the whole no faster (stop 32: 2121 s
// against 2061 s).
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=600000', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' },
});
process.exit(r.status ?? 1);
