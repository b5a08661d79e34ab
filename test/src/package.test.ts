// The release packages (issue 14 item 5): `scripts/package.mjs` writes the
// tarball and the .deb; install.sh puts the tarball under a temporary prefix,
// and from there the tools run with no Node on PATH: cairn-wal-push as a real
// server's archive_command, cairn-info reading what it archived. The .deb's
// layout and conffile are read with dpkg-deb; as root it is installed with
// dpkg, run from /usr/bin, and purged. Then the host story (issue 14 item 7):
// the .deb on a Debian cluster made by pg_createcluster, configured by
// /etc/cairn/cairn.conf alone, backed up, dumped, drilled and restored.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { repoRoot } from '@cairn/testkit/paths';
import { runAsMe, runAsPg } from '@cairn/testkit/run-as';
import { makeTempDir } from '@cairn/testkit/tmp';
import { freePort } from '@cairn/testkit/ports';
import { makeRepo } from './repo-fixture.js';

after(runCleanups);

const root = repoRoot();
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
/** Every tool of the checkout (tools/<name>/): each must be in the packages. */
const TOOLS = readdirSync(join(root, 'tools')).filter((t) => existsSync(join(root, 'tools', t, 'package.json'))).sort();
const isRoot = process.getuid?.() === 0;

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('npm run package: the tarball installs with install.sh and runs without Node on PATH; the .deb installs with dpkg', { timeout: 600_000 }, async () => {
  const lint = spawnSync('shellcheck', [join(root, 'scripts/install.sh')], { encoding: 'utf8' });
  assert.equal(lint.error, undefined, 'shellcheck is installed by scripts/bootstrap.sh');
  assert.equal(lint.status, 0, lint.stdout);
  const built = spawnSync(join(root, 'scripts/node'), [join(root, 'scripts/package.mjs')], { cwd: root, encoding: 'utf8', timeout: 480_000 });
  assert.equal(built.status, 0, built.stderr);
  const tarball = join(root, 'dist', `cairn-${version}-linux-x64.tar.gz`);
  const deb = join(root, 'dist', `cairn_${version}_amd64.deb`);

  // The tarball: one top directory, the runtime with its license, every
  // executable, the bundles and workers, the ops files; no sources, tests or
  // development packages.
  const entries = new Set(sh('tar', ['-tzf', tarball]).split('\n').filter(Boolean).map((e) => e.replace(/\/$/, '')));
  const top = `cairn-${version}`;
  const want = [
    'install.sh', 'node/bin/node', 'node/LICENSE', 'bin/cairn', ...TOOLS.map((t) => `bin/cairn-${t}`),
    'tools/wal-push/bundle/cli.js', 'tools/wal-push/bundle/push-worker-main.js', 'tools/wal-get/bundle/prefetch-main.js',
    'tools/wal-push/bin/cairn-wal-push', 'tools/wal-push/bin/cairn-wal-push.sh', 'tools/wal-get/bin/cairn-wal-get', 'tools/wal-get/bin/cairn-wal-get.sh',
    'tools/basebackup/bundle/file-worker.js', 'packages/cli/dist/cli.js', 'node_modules/@cairn/core', 'node_modules/execa/package.json',
    'node_modules/pg/package.json', 'node_modules/@aws-sdk/client-s3/package.json',
    'cron/crontab', 'cron/cairn.conf.example', 'cron/systemd/cairn-backup-full.timer', 'k8s/base/kustomization.yaml', 'README.md',
  ];
  assert.deepEqual(want.filter((w) => !entries.has(`${top}/${w}`)), [], 'missing from the tarball');
  assert.ok([...entries].every((e) => e === top || e.startsWith(`${top}/`)), 'one top directory');
  const unwanted = [...entries].filter((e) => /^[^/]+\/(tools|packages)\/[^/]+\/(src|test)(\/|$)|^[^/]+\/(tools|packages)\/.*\.(test\.js|d\.ts)$|node_modules\/(typescript|esbuild|turbo|@types|@cairn\/testkit)(\/|$)/.test(e));
  assert.deepEqual(unwanted.slice(0, 5), [], 'no sources, tests or development packages');

  // install.sh into a temporary prefix; a second run replaces it in place.
  const tmp = await makeTempDir('package');
  mkdirSync(join(tmp, 'unpacked'));
  sh('tar', ['-xzf', tarball, '-C', join(tmp, 'unpacked')]);
  const install = join(tmp, 'unpacked', top, 'install.sh');
  const prefix = join(tmp, 'opt/cairn');
  const bindir = join(tmp, 'bin');
  for (let i = 0; i < 2; i++) {
    const r = await runAsMe(install, ['--prefix', prefix, '--bindir', bindir]);
    assert.equal(r.stdout, `installed cairn ${version} in ${prefix}; ${TOOLS.length + 1} commands linked in ${bindir}\n`);
  }
  let r = await runAsMe(install, ['--prefix', 'opt/cairn'], { allowFail: true });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^install\.sh: error: --prefix "opt\/cairn" is not an absolute path\n/);
  const blocked = join(tmp, 'blocked');
  mkdirSync(blocked);
  writeFileSync(join(blocked, 'cairn-info'), 'not a link of ours\n');
  r = await runAsMe(install, ['--prefix', join(tmp, 'other'), '--bindir', blocked], { allowFail: true });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /^install\.sh: error: ".*\/blocked\/cairn-info" exists and is not a link\n/);
  assert.ok(!existsSync(join(tmp, 'other')), 'refused before copying');
  if (isRoot) {
    // The postgres user cannot write /usr/local/bin: refused before anything is copied.
    r = await runAsPg(install, ['--prefix', join(tmp, 'other')], { allowFail: true });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^install\.sh: error: cannot write "\/usr\/local\/bin"\nrun as root/);
    assert.ok(!existsSync(join(tmp, 'other')));
  }

  // wal-push and wal-get run their compiled fast path, statically linked (no
  // program interpreter: it runs in any postgres image), beside the wrapper.
  const { isStaticElf } = (await import(pathToFileURL(join(repoRoot(), 'scripts/elf.mjs')).href)) as { isStaticElf: (path: string) => boolean };
  for (const t of ['wal-push', 'wal-get']) {
    assert.ok(isStaticElf(join(prefix, 'tools', t, 'bin', `cairn-${t}`)), `${t}: an ELF program, statically linked (no PT_INTERP)`);
    assert.ok(readFileSync(join(prefix, 'tools', t, 'bin', `cairn-${t}.sh`), 'utf8').startsWith('#!/bin/bash\n'));
  }

  // A PATH with the installed links and a few system tools, and no node
  // (setpriv: the harness starts the server as postgres with it).
  const sys = join(tmp, 'sys');
  mkdirSync(sys);
  for (const c of ['bash', 'sh', 'readlink', 'stat', 'rm', 'mv', 'sleep', 'cat', 'dirname', 'env', 'setpriv']) {
    symlinkSync(sh('bash', ['-c', `command -v ${c}`]).trim(), join(sys, c));
  }
  const noNode = { PATH: `${bindir}:${sys}` };
  r = await runAsMe('bash', ['-c', 'command -v node'], { env: noNode, allowFail: true });
  assert.equal(r.code, 1, `node is not on the test PATH: ${r.stdout}`);
  r = await runAsMe('cairn', ['--version'], { env: noNode });
  assert.equal(r.stdout, `cairn ${version}\n`);
  for (const t of TOOLS) {
    r = await runAsMe(`cairn-${t}`, ['--version'], { env: noNode });
    assert.equal(r.stdout, `cairn-${t} ${version}\n`);
  }
  r = await runAsMe('cairn-wal-push', ['--help'], { env: noNode });
  assert.match(r.stdout, /^usage: cairn-wal-push /m);

  // The installed wal-push archives a real server's WAL (Node and its
  // fast path from the prefix), and the installed info reads it back.
  const repo = await makeRepo('fs', false);
  const pg = await createCluster({ name: 'package', archiveCommand: `${bindir}/cairn-wal-push %p`, env: { ...repo.env, ...noNode } });
  await pg.start();
  await pg.psql('create table t as select generate_series(1, 1000) i; select pg_switch_wal()');
  for (let i = 0; Number(await pg.psql('select archived_count from pg_stat_archiver')) === 0; i++) {
    assert.ok(i < 300, `nothing archived: ${await pg.psql('select last_failed_wal from pg_stat_archiver')}`);
    await new Promise((res) => setTimeout(res, 100));
  }
  await pg.stop();
  r = await runAsMe('cairn-info', ['--json'], { env: { ...repo.env, ...noNode } });
  const info = JSON.parse(r.stdout) as { repositories: { wal: { timelines: { segments: number }[] }[] }[] };
  assert.ok((info.repositories[0]?.wal[0]?.timelines[0]?.segments ?? 0) >= 1, r.stdout);

  // The .deb: its fields, the conffile, the layout.
  const control = sh('dpkg-deb', ['-f', deb]);
  assert.match(control, /^Package: cairn$/m);
  assert.match(control, new RegExp(`^Version: ${version.replaceAll('.', '\\.')}$`, 'm'));
  assert.match(control, /^Architecture: amd64$/m);
  assert.match(control, /^Depends: bash[,\n]/m);
  assert.equal(sh('dpkg-deb', ['-I', deb, 'conffiles']), '/etc/cairn/cairn.conf\n');
  const files = sh('dpkg-deb', ['-c', deb]);
  for (const line of [
    /^-rwxr-xr-x root\/root .* \.\/usr\/lib\/cairn\/node\/bin\/node$/m,
    /^lrwxrwxrwx root\/root .* \.\/usr\/bin\/cairn-wal-push -> \.\.\/lib\/cairn\/bin\/cairn-wal-push$/m,
    /^lrwxrwxrwx root\/root .* \.\/usr\/bin\/cairn -> \.\.\/lib\/cairn\/bin\/cairn$/m,
    /^-rw-r--r-- root\/root .* \.\/lib\/systemd\/system\/cairn-backup-full\.timer$/m,
    /^-rw-r--r-- root\/root .* \.\/etc\/cairn\/cairn\.conf$/m,
    /^-rw-r--r-- root\/root .* \.\/usr\/share\/doc\/cairn\/examples\/crontab$/m,
    /^-rwxr-xr-x root\/root .* \.\/usr\/lib\/cairn\/tools\/wal-push\/bin\/cairn-wal-push$/m,
    /^-rwxr-xr-x root\/root .* \.\/usr\/lib\/cairn\/tools\/wal-push\/bin\/cairn-wal-push\.sh$/m,
    /^-rwxr-xr-x root\/root .* \.\/usr\/lib\/cairn\/tools\/wal-get\/bin\/cairn-wal-get$/m,
  ]) assert.match(files, line);
  assert.doesNotMatch(files, /install\.sh/);

  // As root on a machine without cairn installed: dpkg -i, run, purge.
  const installed = spawnSync('dpkg-query', ['-W', 'cairn'], { encoding: 'utf8' }).status === 0;
  if (!isRoot || installed) return;
  try {
    sh('dpkg', ['-i', deb]);
    r = await runAsMe('/usr/bin/cairn-info', ['--help'], { env: { PATH: sys, CAIRN_CONFIG: undefined } });
    assert.match(r.stdout, /^cairn-info /);
    // The conffile as shipped configures nothing: the error names it.
    r = await runAsMe('/usr/bin/cairn-info', [], { env: { PATH: sys, CAIRN_CONFIG: undefined }, allowFail: true });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /no repository configured; .*\(\/etc\/cairn\/cairn\.conf\)/);
    assert.equal(readFileSync('/etc/cairn/cairn.conf', 'utf8'), readFileSync(join(root, 'cron/cairn.conf.example'), 'utf8'));
  } finally {
    sh('dpkg', ['--purge', 'cairn']);
  }
  assert.ok(!existsSync('/usr/bin/cairn-info') && !existsSync('/usr/lib/cairn') && !existsSync('/etc/cairn/cairn.conf'), 'purged');
});

// The host story as a Debian operator lives it (issue 14 item 7): the .deb,
// a packaged cluster (pg_createcluster: its configuration in /etc/postgresql),
// archive_command = 'cairn-wal-push %p' and /etc/cairn/cairn.conf, no CAIRN_*
// and no PGHOST; as postgres: check, full backup, dump, a drill (its scratch
// server on the configuration the backup kept from /etc/postgresql), info;
// then the README's Debian restore: the old data directory and configuration
// moved aside, cairn-restore --config-dir /etc/postgresql/MAJOR/NAME, started
// with pg_ctlcluster, the configuration as it was and the rows written after
// the backup (replayed from the archive) compared.
// While it runs /etc/cairn/cairn.conf names its repository and data
// directory for every cairn tool on the machine: the suites running alongside
// read an empty config file instead (testkit baseEnv's CAIRN_CONFIG).
const majors = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').filter((m) => /^\d+$/.test(m)).sort((a, b) => Number(a) - Number(b)) : [];
const canHost = isRoot && majors.length > 0 && existsSync('/usr/bin/pg_createcluster')
  && spawnSync('dpkg-query', ['-W', 'cairn'], { encoding: 'utf8' }).status !== 0;

test('the host story: the .deb checks, backs up, dumps and drills and restores a pg_createcluster cluster with /etc/cairn/cairn.conf only', { timeout: 600_000, skip: canHost ? false : 'needs root, pg_createcluster and no cairn package installed' }, async () => {
  const deb = join(root, 'dist', `cairn_${version}_amd64.deb`);
  assert.ok(existsSync(deb), 'the first test built the .deb');
  const major = majors.at(-1)!;
  const name = `cairnhost${process.pid}`;
  const port = await freePort();
  const pgdata = `/var/lib/postgresql/${major}/${name}`;
  const repo = await makeTempDir('host-repo');
  // What postgres's tools see: no CAIRN_*, no PGHOST; PGPORT because the
  // cluster is not on 5432 (psql and cairn-dump connect through libpq's default socket).
  // (CAIRN_CONFIG: undefined lifts the testkit's empty config: the tools read /etc/cairn/cairn.conf.)
  const env = { PATH: '/usr/local/bin:/usr/bin:/bin', PGPORT: String(port), CAIRN_CONFIG: undefined };
  const asPg = (cmd: string, args: string[], allowFail = false) => runAsPg(cmd, args, { env, allowFail, timeoutMs: 300_000 });
  const sql = async (q: string) => (await asPg('psql', ['-XAtq', '-d', 'postgres', '-c', q])).stdout.trim();
  try {
    sh('dpkg', ['-i', deb]);
    sh('pg_createcluster', [major, name, '--port', String(port)]);
    writeFileSync(`/etc/postgresql/${major}/${name}/conf.d/cairn.conf`, "archive_mode = on\narchive_command = 'cairn-wal-push %p'\n");
    writeFileSync('/etc/cairn/cairn.conf', `[global]\nrepo = ${repo}\npgdata = ${pgdata}\n`);
    sh('pg_ctlcluster', [major, name, 'start']);
    await sql('create table t as select generate_series(1, 5000) i');

    let r = await asPg('/usr/bin/cairn-check', []);
    assert.match(r.stdout, /reached every repository/);
    r = await asPg('/usr/bin/cairn-basebackup', ['--type', 'full']);
    const backup = r.stdout.trim();
    assert.match(backup, /^\d{8}-\d{6}F$/, 'a full backup id');
    r = await asPg('/usr/bin/cairn-dump', ['--dbname', 'postgres']);
    assert.match(r.stdout, /^postgres\//m);
    await sql('insert into t select generate_series(5001, 6000); select pg_switch_wal()');
    const want = await sql('select count(*), sum(i) from t');
    // The drill's scratch server runs on the configuration the backup kept
    // from /etc/postgresql (PGDATA holds no postgresql.conf).
    const scratch = await makeTempDir('host-drill');
    r = await asPg('/usr/bin/cairn-drill', ['--scratch-dir', scratch, '--timeout', '5min', '--log-level', 'info'], true);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /reads the backup's settings from .*config\/postgresql\.conf/);
    assert.match(r.stderr, /cairn-drill: drill \S+ of backup \S+ .*: ok\n/);
    r = await asPg('/usr/bin/cairn-info', []);
    assert.ok(r.stdout.includes(backup), r.stdout);
    sh('pg_ctlcluster', [major, name, 'stop']);

    // The README's Debian restore: the old data directory and configuration
    // kept aside, an empty data directory, the configuration from the backup.
    const etc = `/etc/postgresql/${major}/${name}`;
    const confFiles = ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf', 'conf.d/cairn.conf'];
    const confBefore = confFiles.map((f) => readFileSync(join(etc, f), 'utf8'));
    renameSync(pgdata, `${pgdata}.old`);
    for (const f of confFiles) renameSync(join(etc, f), join(etc, `${f.replace('/', '-')}.old`));
    await asPg('install', ['-d', '-m', '0700', pgdata]);
    r = await asPg('/usr/bin/cairn-restore', ['--pgdata', pgdata, '--config-dir', etc, '--log-level', 'info']);
    assert.deepEqual(confFiles.map((f) => readFileSync(join(etc, f), 'utf8')), confBefore, 'the configuration as it was');
    // Written again over what is there: refused without --force, before anything is written.
    const again = await makeTempDir('host-again', { owner: 'pg' });
    r = await asPg('/usr/bin/cairn-restore', ['--pgdata', again, '--config-dir', etc], true);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /exists; cairn-restore does not overwrite it/);
    sh('pg_ctlcluster', [major, name, 'start']);
    for (let i = 0; (await sql('select pg_is_in_recovery()')) !== 'f'; i++) {
      assert.ok(i < 600, 'recovery did not end');
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(await sql('select count(*), sum(i) from t'), want);
  } finally {
    spawnSync('pg_dropcluster', ['--stop', major, name], { encoding: 'utf8' });
    rmSync(`${pgdata}.old`, { recursive: true, force: true });
    rmSync(`/etc/postgresql/${major}/${name}`, { recursive: true, force: true });
    spawnSync('dpkg', ['--purge', 'cairn'], { encoding: 'utf8' });
  }
  assert.ok(!existsSync('/usr/lib/cairn') && !existsSync(pgdata), 'the package and the cluster are gone');
});
