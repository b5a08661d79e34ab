#!/usr/bin/env node
// Builds the C fast path of cairn-wal-push or cairn-wal-get
// (packages/core/native/spool-fast.c) into the tool's bin/: PostgreSQL runs
// these once per WAL segment, and a confirmed push or a prefetched segment
// then costs one process instead of sh -> bash -> stat (-> mv) (issue 16).
// Static first (it runs in the postgres Docker images and k8s init containers
// whatever their libc), dynamic if static linking fails; where no C compiler
// works, bin/cairn-wal-<tool> becomes a link to the bash wrapper beside it,
// which does the same fast path more slowly.
//
// usage (from a tool's directory, or with the tool named):
//   node ../../scripts/build-native.mjs wal-push|wal-get [OUT-DIR]
// OUT-DIR (default: the tool's bin/) is for tests.
// CC picks the compiler (default cc); CC=false forces the link to the wrapper.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, realpathSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tool = process.argv[2];
const DEFINES = { 'wal-push': 'CAIRN_WAL_PUSH', 'wal-get': 'CAIRN_WAL_GET' };
if (!(tool in DEFINES)) {
  console.error('build-native: name the tool: wal-push or wal-get');
  process.exit(2);
}
const exe = `cairn-${tool}`;
const bin = process.argv[3] ? resolve(process.argv[3]) : join(root, 'tools', tool, 'bin');
const out = join(bin, exe);
const tmp = join(bin, `.${exe}.build-${process.pid}`);
const src = join(root, 'packages/core/native/spool-fast.c');
const cc = process.env.CC || 'cc';
const flags = ['-std=c11', '-O2', '-s', '-Wall', '-Wextra', `-D${DEFINES[tool]}`, '-o', tmp, src];

let last = '';
/** Compiles with the extra flags; true when the compiler made the program. */
function compile(extra) {
  const r = spawnSync(cc, [...extra, ...flags], { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
  if (r.status === 0) {
    if (r.stderr) process.stderr.write(r.stderr); // warnings
    return true;
  }
  last = r.error ? String(r.error.message) : r.stderr;
  rmSync(tmp, { force: true });
  return false;
}

let how;
if (compile(['-static'])) how = 'static';
else if (compile([])) how = 'dynamic';
if (how) {
  chmodSync(tmp, 0o755);
  // A rename: a running archive_command keeps the old file.
  renameSync(tmp, out);
  console.error(`build-native: ${exe} (${how})`);
} else {
  rmSync(tmp, { force: true });
  rmSync(out, { force: true });
  symlinkSync(`${exe}.sh`, out);
  console.error(`build-native: no working C compiler (${cc}: ${last.trim().split('\n').slice(-1)[0] ?? ''}): ${exe} is a link to ${exe}.sh, the same fast path in bash`);
}

// wal-push's encoder threads map WAL segments instead of reading them
// (packages/core/native/map-file.c, a Node-API addon): bin/map-file.node,
// built against the headers of the Node running this script. Without it the
// threads read the files (the same bytes, ~5% more CPU in a drain).
if (tool === 'wal-push') {
  const addon = join(bin, 'map-file.node');
  const addonTmp = join(bin, `.map-file.node.build-${process.pid}`);
  let include;
  try {
    include = join(dirname(dirname(realpathSync(process.execPath))), 'include', 'node');
  } catch {
    include = undefined;
  }
  const r = include && existsSync(join(include, 'node_api.h'))
    ? spawnSync(cc, ['-std=c11', '-O2', '-s', '-Wall', '-Wextra', '-shared', '-fPIC', `-I${include}`, '-o', addonTmp, join(root, 'packages/core/native/map-file.c')], { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' })
    : undefined;
  if (r?.status === 0) {
    if (r.stderr) process.stderr.write(r.stderr);
    renameSync(addonTmp, addon);
    console.error('build-native: map-file.node');
  } else {
    rmSync(addonTmp, { force: true });
    rmSync(addon, { force: true });
    const why = r === undefined ? `no Node headers beside ${process.execPath}` : (r.error ? String(r.error.message) : r.stderr).trim().split('\n').slice(-1)[0];
    console.error(`build-native: map-file.node not built (${why}): the encoder threads read WAL files instead of mapping them`);
  }
}

// npm links a workspace's bin into node_modules/.bin only when the file is
// there at install time, and on a fresh clone the build makes it after npm
// install: make the link npm would have made (npm keeps it on later installs).
if (!process.argv[3] && existsSync(join(root, 'node_modules', '.bin'))) {
  const link = join(root, 'node_modules', '.bin', exe);
  let present = true;
  try { lstatSync(link); } catch { present = false; }
  if (!present) {
    symlinkSync(`../@cairn/${tool}/bin/${exe}`, link);
    console.error(`build-native: linked node_modules/.bin/${exe}`);
  }
}
