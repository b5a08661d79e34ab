// The spool contract between Node (spool-dir.ts, PushSpool, GetSpool) and the
// fast paths of bin/cairn-wal-push and bin/cairn-wal-get, each checked twice:
// the compiled program (packages/core/native/spool-fast.c) and the bash
// wrapper it falls back to (bin/*.sh): for the same
// data directory, argv, CAIRN_* environment and config file both find the same
// context directory; any other call, or a component that is not private, makes
// the wrapper leave the decision to Node.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, readFile, realpath, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLAIM_SUFFIX, GET_FETCH_WAIT_MS, IDENTITY_STAT_FORMAT, SEGMENT_NAME_PATTERN, TEMP_INFIX, WAL_GET_EXIT, WAL_NAME_PATTERN } from '@cairn/core/spool/contract';
import { openContextDir, planSpool, spoolContext, STALE_CONTEXT_MS, type SpoolPlan } from '@cairn/core/spool/spool-dir';
import { tempPathFor } from '@cairn/core/util/local-file';
import { isSegmentName, isWalFileName } from '@cairn/core/wal/file-name';
import { PushSpool } from '@cairn/wal-push/push-spool';
import { GetSpool } from '@cairn/wal-get/get-spool';
import { runCleanups } from '@cairn/testkit/cleanup';
import { repoRoot } from '@cairn/testkit/paths';
import { makeTempDir } from '@cairn/testkit/tmp';

after(runCleanups);

/** The build's bins: the compiled fast path (a link to the .sh where no C compiler worked). */
const PUSH_BIN = join(repoRoot(), 'tools/wal-push/bin/cairn-wal-push');
const GET_BIN = join(repoRoot(), 'tools/wal-get/bin/cairn-wal-get');
/** The bash wrappers: the fallback of the compiled program, and the fast path where it is missing. */
const PUSH_SH = `${PUSH_BIN}.sh`;
const GET_SH = `${GET_BIN}.sh`;
type Wrapper = 'compiled' | 'bash';
const WRAPPERS: Array<{ name: Wrapper; push: string; get: string }> = [
  { name: 'compiled', push: PUSH_BIN, get: GET_BIN },
  { name: 'bash', push: PUSH_SH, get: GET_SH },
];
/** Whether this build compiled the fast path (an ELF file, not a link to the wrapper). */
const compiled = (path: string): boolean => {
  try {
    return readFileSync(path).subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } catch {
    return false;
  }
};
const ccWorks = spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
const SEG = '000000010000000000000005';
const NOBODY = 65534;

/** A data directory stand-in (pg_wal/ with one segment), owned by this process's user. */
async function dataDir(): Promise<{ pgdata: string; walPath: string }> {
  const pgdata = await realpath(await makeTempDir('contract', { owner: 'me' }));
  await mkdir(join(pgdata, 'pg_wal'), { mode: 0o700 });
  const walPath = join(pgdata, 'pg_wal', SEG);
  await writeFile(walPath, 'segment bytes');
  return { pgdata, walPath };
}

/**
 * The PATH a run gets: the compiled program none (it starts nothing), so its
 * fallback (the bash wrapper, which needs stat and mv) can never succeed in
 * its place: exit 0 then means the C program confirmed or served the call.
 */
const pathFor = (bin: string): string => ((bin === PUSH_BIN || bin === GET_BIN) && compiled(bin) ? '/nonexistent' : '/usr/bin:/bin');

/** The wrapper run as the pg user would, with Node replaced by /bin/false: exit 0 only on the fast path. */
function runWrapper(bin: string, args: string[], cwd: string, env: Record<string, string>): { code: number; stderr: string } {
  const r = spawnSync(bin, args, { cwd, env: { PATH: pathFor(bin), ...env }, encoding: 'utf8' });
  return { code: r.status ?? 128, stderr: r.stderr };
}

/** What Node computes for the same call (the wrapper adds nothing to env but PATH, which is not CAIRN_*). */
function plan(args: string[], positionals: string[], cwd: string, env: Record<string, string>): SpoolPlan {
  const configured = flagValue(args, '--spool-dir') ?? (env['CAIRN_SPOOL_DIR'] || undefined);
  return planSpool(configured, { cwd, argv: args, positionals, env: { PATH: '/usr/bin:/bin', ...env } });
}

function flagValue(args: string[], flag: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag && i + 1 < args.length) v = args[++i];
    else if (args[i]!.startsWith(`${flag}=`)) v = args[i]!.slice(flag.length + 1);
  }
  return v;
}

async function recordFor(p: SpoolPlan, walPath: string): Promise<string> {
  assert.ok(p.choice.root !== undefined);
  const dir = await openContextDir(p.choice, 'push', p.context);
  await new PushSpool(dir).record(SEG, walPath);
  return join(dir, `${SEG}.ok`);
}

const exists = (p: string) => stat(p).then(() => true, () => false);
/** A record that can confirm nothing again: removed (Node) or emptied (the bash fast path, which starts no rm). */
const usedUp = (p: string) => stat(p).then((st) => st.size === 0, () => true);

test('the build compiled the fast path: bin/cairn-wal-push and bin/cairn-wal-get are ELF programs beside their .sh wrappers', { skip: ccWorks ? false : 'no C compiler (cc) on this machine: the bins are links to the .sh wrappers' }, () => {
  for (const bin of [PUSH_BIN, GET_BIN]) {
    assert.ok(compiled(bin), `${bin} is an ELF file (npm run build compiles packages/core/native/spool-fast.c)`);
    assert.ok(readFileSync(`${bin}.sh`, 'utf8').startsWith('#!/bin/bash\n'), `${bin}.sh is the bash wrapper`);
  }
});

test('without a C compiler the build links each bin to its wrapper; with one it makes an ELF program', async () => {
  const out = await makeTempDir('contract-native', { owner: 'me' });
  const build = (cc: string) => spawnSync(process.execPath, [join(repoRoot(), 'scripts/build-native.mjs'), 'wal-get', out], { env: { ...process.env, CC: cc }, encoding: 'utf8' });
  let r = build('/bin/false');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /no working C compiler/);
  assert.equal(readlinkSync(join(out, 'cairn-wal-get')), 'cairn-wal-get.sh');
  if (!ccWorks) return;
  r = build('cc');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /cairn-wal-get \((static|dynamic)\)/);
  assert.ok(compiled(join(out, 'cairn-wal-get')));
});

for (const w of WRAPPERS) test(`wal-push (${w.name}): the wrapper confirms a record Node wrote for the same call, and only for it`, async () => {
  const PUSH_BIN = w.push;
  const { pgdata, walPath } = await dataDir();
  const config = join(pgdata, 'cairn.conf');
  await writeFile(config, '[global]\nrepo = /r1\n');
  const env = { CAIRN_NODE: '/bin/false', CAIRN_CONFIG: config, CAIRN_LOG_LEVEL: 'info', CAIRN_A_B: 'x y\nz' };
  const cases: Array<{ args: string[]; positionals: string[] }> = [
    { args: [`pg_wal/${SEG}`, SEG], positionals: [`pg_wal/${SEG}`, SEG] },
    { args: [`pg_wal/${SEG}`], positionals: [`pg_wal/${SEG}`] },
    { args: ['--repo', '/r1', '--cluster=c 1', `pg_wal/${SEG}`, SEG], positionals: [`pg_wal/${SEG}`, SEG] },
    { args: ['--config', config, '--repo', '/r2', walPath, SEG], positionals: [walPath, SEG] },
  ];
  for (const c of cases) {
    const rec = await recordFor(plan(c.args, c.positionals, pgdata, env), walPath);
    // Another repository set, another environment, another config: Node decides.
    for (const [args, e] of [
      [[...c.args.slice(0, -c.positionals.length), '--repo', '/other', ...c.positionals], env],
      [c.args, { ...env, CAIRN_REPO: '/other' }],
      [c.args, { ...env, CAIRN_CONFIG: join(pgdata, 'none.conf') }],
    ] as Array<[string[], Record<string, string>]>) {
      assert.equal(runWrapper(PUSH_BIN, args, pgdata, e).code, 1, `${JSON.stringify(args)} must not use the record of ${JSON.stringify(c.args)}`);
      assert.ok(await exists(rec));
    }
    const r = runWrapper(PUSH_BIN, c.args, pgdata, env);
    assert.equal(r.code, 0, `fast path for ${JSON.stringify(c.args)}: ${r.stderr}`);
    assert.ok(await usedUp(rec), 'the record is used up');
  }
  // The config file's content is part of the context: an edit voids the records.
  const rec = await recordFor(plan([`pg_wal/${SEG}`], [`pg_wal/${SEG}`], pgdata, env), walPath);
  await writeFile(config, '[global]\nrepo = /r2\n');
  assert.equal(runWrapper(PUSH_BIN, [`pg_wal/${SEG}`], pgdata, env).code, 1);
  assert.ok(await exists(rec));
});

for (const w of WRAPPERS) test(`wal-push (${w.name}): control bytes, UTF-8 and CR in arguments, CAIRN_* values and the config file match Node's context (a config with a NUL byte is compared up to it, as bash's read does)`, async () => {
  const { pgdata, walPath } = await dataDir();
  const config = join(pgdata, 'odd.conf');
  const env = { CAIRN_NODE: '/bin/false', CAIRN_Z: 'v\u0001\u007f\n', CAIRN_A: '\u00e9\u00e8', CAIRN_CONFIG: config };
  const args = ['--cluster=a\u0001b\u007fc\r\u00e9', '--repo', '/dev/null/cairn-repo', `pg_wal/${SEG}`, SEG];
  for (const body of [Buffer.from('a\u0001b\u007fc\r\n\u00e9\\x'), Buffer.from('[global]\nrepo = /r\n\u0000after the NUL')]) {
    await writeFile(config, body);
    const rec = await recordFor(plan(args, args.slice(-2), pgdata, env), walPath);
    const r = runWrapper(w.push, args, pgdata, env);
    assert.equal(r.code, 0, `${JSON.stringify(body.toString('latin1'))}: ${r.stderr}`);
    assert.ok(await usedUp(rec));
  }
});

for (const w of WRAPPERS) test(`wal-push (${w.name}): the wrapper refuses records and directories that are not private`, async () => {
  const PUSH_BIN = w.push;
  const { pgdata, walPath } = await dataDir();
  const env = { CAIRN_NODE: '/bin/false' };
  const args = [`pg_wal/${SEG}`, SEG];
  const p = plan(args, args, pgdata, env);
  const rec = await recordFor(p, walPath);
  const dir = join(rec, '..');
  const tries: Array<[string, () => Promise<void>, () => Promise<void>]> = [
    ['a record owned by another user', () => chown(rec, NOBODY, NOBODY), () => chown(rec, 0, 0)],
    ['a group-writable record', () => chmod(rec, 0o620), () => chmod(rec, 0o600)],
    ['a context directory writable by others', () => chmod(dir, 0o777), () => chmod(dir, 0o700)],
    ['a context directory of another user', () => chown(dir, NOBODY, NOBODY), () => chown(dir, 0, 0)],
    ['a spool root writable by others', () => chmod(join(pgdata, 'pg_wal/.cairn-spool'), 0o1777), () => chmod(join(pgdata, 'pg_wal/.cairn-spool'), 0o700)],
    ['a pg_wal writable by others', () => chmod(join(pgdata, 'pg_wal'), 0o777), () => chmod(join(pgdata, 'pg_wal'), 0o700)],
  ];
  for (const [what, spoil, mend] of tries) {
    await spoil();
    assert.equal(runWrapper(PUSH_BIN, args, pgdata, env).code, 1, what);
    assert.ok(await exists(rec), what);
    const nodeTrusts = await openContextDir(p.choice as { root: string; configured: boolean }, 'push', p.context).then((d) => new PushSpool(d).isRecorded(SEG, walPath), () => false);
    assert.equal(nodeTrusts, false, `Node: ${what}`);
    await mend();
  }
  // A record in place of a symbolic link to one.
  await writeFile(join(dir, 'real.ok'), readFileSync(rec));
  await unlink(rec);
  await symlink(join(dir, 'real.ok'), rec);
  assert.equal(runWrapper(PUSH_BIN, args, pgdata, env).code, 1, 'a symlinked record');
  assert.equal(await new PushSpool(dir).isRecorded(SEG, walPath), false);
});

for (const w of WRAPPERS) test(`wal-get (${w.name}): the wrapper serves a prefetched entry by rename for the same call only; Node agrees on the directory`, async () => {
  const GET_BIN = w.get;
  const { pgdata } = await dataDir();
  const spoolRoot = await makeTempDir('contract-spool', { owner: 'me' });
  for (const env of [{ CAIRN_NODE: '/bin/false' }, { CAIRN_NODE: '/bin/false', CAIRN_SPOOL_DIR: spoolRoot }] as Array<Record<string, string>>) {
    const args = ['--prefetch', '4', SEG, 'pg_wal/RECOVERYXLOG'];
    const p = plan(args, [SEG, 'pg_wal/RECOVERYXLOG'], pgdata, env);
    assert.ok(p.choice.root !== undefined);
    const dir = await openContextDir(p.choice, 'get', p.context);
    assert.equal((await readFile(join(dir, 'context'))).equals(spoolContext({ cwd: pgdata, argv: args, positionals: [SEG, 'pg_wal/RECOVERYXLOG'], env: { PATH: '/usr/bin:/bin', ...env } })), true);
    const entry = new GetSpool(dir).entryPath(SEG);
    await writeFile(entry, 'prefetched', { mode: 0o600 });
    const ino = (await stat(entry)).ino;
    assert.equal(runWrapper(GET_BIN, ['--prefetch', '5', SEG, 'pg_wal/RECOVERYXLOG'], pgdata, env).code, 126, 'other flags: Node decides');
    assert.equal(runWrapper(GET_BIN, args, pgdata, { ...env, CAIRN_CLUSTER: 'other' }).code, 126, 'other environment: Node decides');
    await chown(entry, NOBODY, NOBODY);
    assert.equal(runWrapper(GET_BIN, args, pgdata, env).code, 126, 'an entry of another user is not served');
    await chown(entry, 0, 0);
    const r = runWrapper(GET_BIN, args, pgdata, env);
    assert.equal(r.code, 0, r.stderr);
    const dest = join(pgdata, 'pg_wal/RECOVERYXLOG');
    assert.equal(await readFile(dest, 'utf8'), 'prefetched');
    assert.equal((await stat(dest)).ino, ino, 'moved by rename, not copied');
    assert.equal(await exists(entry), false);
  }
});

test('a configured root under a directory others can write (no sticky bit), or a symlinked root, is refused by both', async () => {
  const { pgdata } = await dataDir();
  const open = await makeTempDir('contract-open', { owner: 'me' });
  await chmod(open, 0o777);
  const real = await makeTempDir('contract-real', { owner: 'me' });
  await symlink(real, join(open, 'link'));
  for (const root of [join(open, 'spool'), join(open, 'link')]) {
    const env = { CAIRN_NODE: '/bin/false', CAIRN_SPOOL_DIR: root };
    const p = plan([SEG, 'pg_wal/X'], [SEG, 'pg_wal/X'], pgdata, env);
    await assert.rejects(openContextDir(p.choice as { root: string; configured: boolean }, 'get', p.context), /writable by others|symbolic link/);
  }
  await chmod(open, 0o1777);
  const env = { CAIRN_NODE: '/bin/false', CAIRN_SPOOL_DIR: join(open, 'link') };
  const p = plan([SEG, 'pg_wal/X'], [SEG, 'pg_wal/X'], pgdata, env);
  await assert.rejects(openContextDir(p.choice as { root: string; configured: boolean }, 'get', p.context), /symbolic link/, 'a link as the root itself, even in a sticky directory');
});

test('the spool block is the same in both wrappers, and shellcheck passes them', () => {
  const block = (path: string) => {
    const s = readFileSync(path, 'utf8');
    return s.slice(s.indexOf('# --- spool: this block'), s.indexOf('# --- end of the spool block'));
  };
  assert.ok(block(PUSH_SH).length > 1000);
  assert.equal(block(PUSH_SH), block(GET_SH));
  const r = spawnSync('shellcheck', [PUSH_SH, GET_SH], { encoding: 'utf8' });
  assert.equal(r.error, undefined, 'shellcheck is installed by scripts/bootstrap.sh');
  assert.equal(r.status, 0, r.stdout);
});

for (const w of WRAPPERS) test(`the push fast path (${w.name}) starts ${w.name === 'bash' ? 'one process, stat' : 'no process'}: each one costs milliseconds of every archive_command call`, { skip: w.name === 'compiled' && !compiled(PUSH_BIN) ? 'no compiled fast path in this build' : false }, async () => {
  const PUSH_BIN = w.push;
  const { pgdata, walPath } = await dataDir();
  // Shims in front of the real commands log what the wrapper starts.
  const shim = await makeTempDir('contract-shim', { owner: 'me' });
  const started = join(shim, 'started');
  for (const cmd of ['stat', 'rm', 'sleep', 'mv', 'cat', 'readlink', 'test']) {
    await writeFile(join(shim, cmd), `#!/bin/sh\necho ${cmd} >> '${started}'\nexec /usr/bin/${cmd} "$@"\n`, { mode: 0o755 });
  }
  const env = { CAIRN_NODE: '/bin/false' };
  const args = [`pg_wal/${SEG}`, SEG];
  const rec = await recordFor(plan(args, args, pgdata, env), walPath);
  const r = runWrapper(PUSH_BIN, args, pgdata, { ...env, PATH: `${shim}:/usr/bin:/bin` });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(await usedUp(rec));
  const log = await readFile(started, 'utf8').catch(() => '');
  assert.deepEqual(log.trim().split('\n').filter((l) => l !== ''), w.name === 'bash' ? ['stat'] : []);
});

for (const w of WRAPPERS) test(`pg_wal moved by initdb -X (a link): the default spool is in its target, and both sides find it (${w.name})`, async () => {
  const PUSH_BIN = w.push;
  const pgdata = await realpath(await makeTempDir('contract-x', { owner: 'me' }));
  const walTarget = await realpath(await makeTempDir('contract-waldir', { owner: 'me' }));
  await symlink(walTarget, join(pgdata, 'pg_wal'));
  const walPath = join(pgdata, 'pg_wal', SEG);
  await writeFile(walPath, 'segment bytes');
  const env = { CAIRN_NODE: '/bin/false' };
  const args = [`pg_wal/${SEG}`, SEG];
  const p = plan(args, args, pgdata, env);
  assert.equal(p.choice.root, join(walTarget, '.cairn-spool'));
  const rec = await recordFor(p, walPath);
  assert.ok(rec.startsWith(join(walTarget, '.cairn-spool', 'push') + '/'));
  const r = runWrapper(PUSH_BIN, args, pgdata, env);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(await usedUp(rec));
});

test('a context directory nothing touched for a week goes when another one is made', async () => {
  const { pgdata, walPath } = await dataDir();
  const env = { CAIRN_NODE: '/bin/false' };
  const old = await recordFor(plan(['--repo', '/r1', `pg_wal/${SEG}`], [`pg_wal/${SEG}`], pgdata, env), walPath);
  const oldDir = join(old, '..');
  const fresh = await recordFor(plan(['--repo', '/r2', `pg_wal/${SEG}`], [`pg_wal/${SEG}`], pgdata, env), walPath);
  assert.ok(await exists(oldDir), 'a recent sibling stays');
  const weekAgo = new Date(Date.now() - STALE_CONTEXT_MS - 60_000);
  await utimes(oldDir, weekAgo, weekAgo);
  await recordFor(plan(['--repo', '/r3', `pg_wal/${SEG}`], [`pg_wal/${SEG}`], pgdata, env), walPath);
  assert.equal(await exists(oldDir), false, 'the stale one is removed');
  assert.ok(await exists(fresh));
});

// --- One source of truth (issue 13, item 6): the scripts' values come from
// packages/core/src/spool/contract.ts through scripts/gen-spool-contract.mjs.

interface Generator {
  SCRIPTS: string[];
  contractVariables(): Promise<[string, string][]>;
  splitScript(text: string, name?: string): { head: string; block: string; tail: string };
  renderBlock(vars: [string, string][], text: string, name?: string): string;
}
const GEN = join(repoRoot(), 'scripts/gen-spool-contract.mjs');
const generator = (): Promise<Generator> => import(pathToFileURL(GEN).href) as Promise<Generator>;

test('each wrapper\'s generated block is what the generator writes from the built contract; --check names a stale one', async () => {
  const gen = await generator();
  const vars = await gen.contractVariables();
  assert.deepEqual(gen.SCRIPTS.sort(), [GET_SH, PUSH_SH].sort());
  for (const bin of [PUSH_SH, GET_SH]) {
    const text = readFileSync(bin, 'utf8');
    assert.equal(gen.splitScript(text, bin).block, gen.renderBlock(vars, text, bin), `${bin}: run node scripts/gen-spool-contract.mjs`);
  }
  const ok = spawnSync(process.execPath, [GEN, '--check'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  // A copy with one value changed is reported, on one line naming it.
  const dir = await makeTempDir('contract-gen', { owner: 'me' });
  const copy = join(dir, 'cairn-wal-get.sh');
  await writeFile(copy, readFileSync(GET_SH, 'utf8').replace(/^sp_poll_s=.*$/m, "sp_poll_s='0.03'"));
  const stale = spawnSync(process.execPath, [GEN, '--check', copy], { encoding: 'utf8' });
  assert.equal(stale.status, 1);
  assert.deepEqual(stale.stderr.trim().split('\n'), [`gen-spool-contract: ${copy} is stale: run node scripts/gen-spool-contract.mjs`]);
  // Only the variables a script uses are in its block (shellcheck flags unused ones).
  assert.match(readFileSync(PUSH_SH, 'utf8'), /^sp_push_claim_polls='6000'$/m);
  assert.doesNotMatch(readFileSync(GET_SH, 'utf8'), /^sp_push_claim_polls=/m);
});

test('the C header is what the generator writes from the built contract; --check names a stale one', async () => {
  const gen = (await generator()) as Generator & { HEADER: string; renderHeader(): Promise<string> };
  const header = join(repoRoot(), 'packages/core/native/spool-contract.h');
  assert.equal(gen.HEADER, header);
  const want = await gen.renderHeader();
  assert.equal(readFileSync(header, 'utf8'), want, 'run node scripts/gen-spool-contract.mjs');
  assert.match(want, /^#define SP_PUSH_CLAIM_POLLS 6000$/m);
  assert.match(want, /^#define SP_POLL_MS 20$/m);
  assert.match(want, /^#define SP_NOT_CONTEXT_ENV \{ "CAIRN_WRAPPED", .*, NULL \}$/m);
  const dir = await makeTempDir('contract-gen-h', { owner: 'me' });
  const copy = join(dir, 'spool-contract.h');
  await writeFile(copy, want.replace('#define SP_POLL_MS 20', '#define SP_POLL_MS 30'));
  const stale = spawnSync(process.execPath, [GEN, '--check', copy], { encoding: 'utf8' });
  assert.equal(stale.status, 1);
  assert.deepEqual(stale.stderr.trim().split('\n'), [`gen-spool-contract: ${copy} is stale: run node scripts/gen-spool-contract.mjs`]);
  // The C source takes every contract value from the header, none literally.
  const c = readFileSync(join(repoRoot(), 'packages/core/native/spool-fast.c'), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  for (const v of ['.cairn-spool', 'pg_wal', 'cairn spool context', '.ok"', '.claim', '.cairn-tmp.', 'CAIRN_WRAPPED', 'CAIRN_PREFETCH_JOB', 'CAIRN_SPOOL_WAITED', '/etc/cairn', '6000', '500', '[0-9A-F]']) {
    assert.equal(c.includes(v), false, `spool-fast.c writes ${JSON.stringify(v)} literally: take it from spool-contract.h`);
  }
});

/** The contract values written literally in a script's code outside its generated block (comments aside). */
function literalsOutsideBlock(gen: Generator, vars: [string, string][], text: string): string[] {
  const { head, tail } = gen.splitScript(text);
  const code = (head + tail).split('\n').map((l) => l.replace(/(^|\s)#.*$/, '')).join('\n');
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const found: string[] = [];
  for (const [name, value] of vars) {
    // "0" and "1" are in every loop; the statuses that matter (99, 126) are checked.
    if (/^[01]$/.test(value)) continue;
    const v = value.trim();
    // A flag (--config=) is not the context line config=.
    const re = new RegExp(`${/^\w/.test(v) ? '(?<![\\w-])' : ''}${escape(v)}${/\w$/.test(v) ? '(?!\\w)' : ''}`);
    if (re.test(code)) found.push(`${name} (${JSON.stringify(value)})`);
  }
  // The excluded variables one by one, as a case pattern would name them.
  for (const v of vars.find(([n]) => n === 'sp_not_context_env')![1].trim().split(' ')) {
    if (new RegExp(`(?<!\\w)${v}(?!\\w)`).test(code)) found.push(v);
  }
  return found;
}

test('no contract value is written literally in the wrappers outside their generated block', async () => {
  const gen = await generator();
  const vars = await gen.contractVariables();
  for (const bin of [PUSH_SH, GET_SH]) assert.deepEqual(literalsOutsideBlock(gen, vars, readFileSync(bin, 'utf8')), [], bin);
  // The check sees a literal (so it can fail), and not in a comment.
  const text = readFileSync(GET_SH, 'utf8');
  const spoiled = text.replace('read -r -t "$sp_poll_s"', 'read -r -t 0.02 # was "$sp_poll_s"').replace('spool_find "$sp_kind_get"', 'spool_find get');
  assert.deepEqual(literalsOutsideBlock(gen, vars, spoiled), ['sp_kind_get ("get")', 'sp_poll_s ("0.02")']);
  assert.deepEqual(literalsOutsideBlock(gen, vars, text + '# sleep 0.02 pg_wal/.cairn-spool CAIRN_WRAPPED\n'), []);
  assert.deepEqual(literalsOutsideBlock(gen, vars, text + 'case $v in CAIRN_PREFETCH_JOB) ;; esac\n'), ['CAIRN_PREFETCH_JOB']);
});

test('the contract\'s name patterns agree with core/wal on the names PostgreSQL writes', () => {
  const wal = new RegExp(WAL_NAME_PATTERN);
  const seg = new RegExp(SEGMENT_NAME_PATTERN);
  const names = [SEG, '00000002.history', `${SEG}.partial`, `${SEG}.00000028.backup`, SEG.toLowerCase(), SEG.slice(1), `${SEG}0`, `x${SEG}`, '00000001.HISTORY', `${SEG}.backup`, `../${SEG}`, '', `${SEG}\n`];
  for (const n of names) {
    assert.equal(seg.test(n), isSegmentName(n), `segment pattern on ${JSON.stringify(n)}`);
    // The wrapper only recognises a shape; Node validates the rest (timeline 0, the seg range).
    if (isWalFileName(n)) assert.ok(wal.test(n), `wal pattern accepts ${JSON.stringify(n)}`);
    if (!isWalFileName(n) && n !== '00000000.history') assert.equal(wal.test(n), false, `wal pattern refuses ${JSON.stringify(n)}`);
  }
  // A fetch in progress is named as the wrapper and GetSpool.clear expect.
  assert.ok(basename(tempPathFor(join('/x', SEG))).startsWith(`.${SEG}${TEMP_INFIX}`));
  assert.equal(IDENTITY_STAT_FORMAT.split(' ').length, 5, 'fileIdentity prints five fields');
});

// --- The same cases through the bash path (the wrapper, Node replaced by
// /bin/false: exit 0 only when bash served the call) and through the Node path
// (the bundle run directly, with a repository that cannot open: exit 0 only
// when the spool served it). Both must decide alike.

const NODE_CLI = { push: join(repoRoot(), 'tools/wal-push/bundle/cli.js'), get: join(repoRoot(), 'tools/wal-get/bundle/cli.js') };
/** A repository URL whose opening fails (a directory under /dev/null): the Node path then never succeeds without the spool. */
const NO_REPO = '/dev/null/cairn-repo';

function runAsync(cmd: string, args: string[], cwd: string, env: Record<string, string>): Promise<{ code: number; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd, env: { PATH: pathFor(cmd), ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => done({ code: code ?? 128, stderr, ms: Date.now() - t0 }));
  });
}

type Side = Wrapper | 'node';
const sides: Side[] = ['compiled', 'bash', 'node'];
function runSide(side: Side, tool: 'push' | 'get', args: string[], cwd: string, env: Record<string, string>) {
  if (side === 'node') return runAsync(process.execPath, [NODE_CLI[tool], ...args], cwd, env);
  const w = WRAPPERS.find((x) => x.name === side)!;
  return runAsync(tool === 'push' ? w.push : w.get, args, cwd, env);
}

/** A child that lives `seconds` (a claimant); killed by the cleanup. */
function liveProcess(seconds: number): ChildProcess {
  const child = spawn('sleep', [String(seconds)], { stdio: 'ignore' });
  const t = setTimeout(() => child.kill(), seconds * 1000 + 1000);
  child.on('exit', () => clearTimeout(t));
  return child;
}

interface PushState { pgdata: string; walPath: string; rec: string; config: string; args: string[]; env: Record<string, string> }
interface PushCase {
  what: string;
  served: boolean;
  /** Changes the state before the call; returns what to do while the call runs, if anything. */
  prepare?: (s: PushState) => Promise<(() => Promise<void>) | void>;
  call?: (s: PushState) => { args?: string[]; env?: Record<string, string> };
}

const pushCases: PushCase[] = [
  { what: 'the call the record was made for', served: true },
  { what: 'another repository on the command line', served: false, call: (s) => ({ args: ['--push-ahead', '0', '--repo', `${NO_REPO}2`, ...s.args.slice(-2)] }) },
  { what: 'another CAIRN_* variable', served: false, call: (s) => ({ env: { ...s.env, CAIRN_CLUSTER: 'other' } }) },
  { what: 'the variables left out of the context set', served: true, call: (s) => ({ env: { ...s.env, CAIRN_WRAPPED: '1', CAIRN_PUSH_AHEAD_JOB: '{}', CAIRN_PREFETCH_JOB: '{}' } }) },
  { what: 'the config file edited', served: false, prepare: (s) => writeFile(s.config, '[global]\ncluster = c2\n') },
  { what: 'the config path now a directory (the wrappers refuse it, Node reads it as absent)', served: false, prepare: async (s) => { await unlink(s.config); await mkdir(s.config); } },
  { what: 'the record emptied (used up by an earlier call)', served: false, prepare: (s) => writeFile(s.rec, '') },
  { what: 'the WAL file grown since the record', served: false, prepare: (s) => writeFile(s.walPath, 'more', { flag: 'a' }) },
  {
    what: 'the WAL file replaced by the same bytes (another inode)',
    served: false,
    prepare: async (s) => {
      const bytes = await readFile(s.walPath);
      await unlink(s.walPath);
      await writeFile(s.walPath, bytes);
    },
  },
  { what: 'a record writable by group', served: false, prepare: (s) => chmod(s.rec, 0o620) },
  {
    what: 'a live claimant that records the file while the call waits',
    served: true,
    prepare: async (s) => {
      const id = await readFile(s.rec);
      await unlink(s.rec);
      const claimant = liveProcess(30);
      after(() => claimant.kill());
      await writeFile(join(s.rec, '..', `${SEG}${CLAIM_SUFFIX}`), String(claimant.pid), { mode: 0o600 });
      return async () => {
        await new Promise((r) => setTimeout(r, 400));
        await writeFile(s.rec, id, { mode: 0o600 });
        claimant.kill();
      };
    },
  },
  {
    what: 'a claimant that exits without a record ends the wait',
    served: false,
    prepare: async (s) => {
      await unlink(s.rec);
      const claimant = liveProcess(0.4);
      await writeFile(join(s.rec, '..', `${SEG}${CLAIM_SUFFIX}`), String(claimant.pid), { mode: 0o600 });
    },
  },
];

test('wal-push: the compiled, the bash and the Node path decide every spool case alike', async () => {
  for (const c of pushCases) {
    for (const side of sides) {
      const { pgdata, walPath } = await dataDir();
      const config = join(pgdata, 'cairn.conf');
      await writeFile(config, '[global]\ncluster = c1\n');
      const env = { CAIRN_NODE: '/bin/false', CAIRN_CONFIG: config };
      const args = ['--push-ahead', '0', '--repo', NO_REPO, `pg_wal/${SEG}`, SEG];
      const rec = await recordFor(plan(args, args.slice(-2), pgdata, env), walPath);
      const s: PushState = { pgdata, walPath, rec, config, args, env };
      const during = await c.prepare?.(s);
      const call = c.call?.(s) ?? {};
      const [r] = await Promise.all([runSide(side, 'push', call.args ?? args, pgdata, call.env ?? env), during?.()]);
      assert.equal(r.code === 0, c.served, `${side}: ${c.what} (exit ${r.code}): ${r.stderr}`);
      if (c.served) assert.ok(await usedUp(rec), `${side}: ${c.what}: the record is used up`);
      assert.ok(r.ms < 30_000, `${side}: ${c.what}: took ${r.ms} ms`);
    }
  }
});

test('wal-push: a name that is no WAL file name is never confirmed, by either path', async () => {
  for (const side of sides) {
    const { pgdata, walPath } = await dataDir();
    const lower = SEG.replace('5', 'a').toLowerCase();
    const lowerPath = join(pgdata, 'pg_wal', lower);
    await writeFile(lowerPath, await readFile(walPath));
    const env = { CAIRN_NODE: '/bin/false' };
    const args = ['--push-ahead', '0', '--repo', NO_REPO, `pg_wal/${lower}`, lower];
    const p = plan(args, args.slice(-2), pgdata, env);
    assert.ok(p.choice.root !== undefined);
    await new PushSpool(await openContextDir(p.choice, 'push', p.context)).record(lower, lowerPath);
    const r = await runSide(side, 'push', args, pgdata, env);
    assert.notEqual(r.code, 0, `${side}: ${r.stderr}`);
  }
});

interface GetCase {
  what: string;
  served: boolean;
  /** The name asked for (default SEG); the spool entry is made under it. */
  name?: string;
  /** Arguments and environment the spool directory is made for (default: the call's). */
  made?: { args: (name: string) => string[]; env?: Record<string, string> };
  call?: { args?: (name: string) => string[]; env?: Record<string, string> };
  prepare?: (entry: string) => Promise<void>;
}

const getArgs = (name: string) => ['--prefetch', '4', '--repo', NO_REPO, name, 'pg_wal/RECOVERYXLOG'];
const noPrefetchFlag = (name: string) => ['--repo', NO_REPO, name, 'pg_wal/RECOVERYXLOG'];
const getCases: GetCase[] = [
  { what: 'the call the entry was fetched for', served: true },
  { what: 'other flags', served: false, call: { args: (n) => ['--prefetch', '5', '--repo', NO_REPO, n, 'pg_wal/RECOVERYXLOG'] } },
  { what: 'another CAIRN_* variable', served: false, call: { env: { CAIRN_CLUSTER: 'other' } } },
  { what: 'the variables left out of the context set', served: true, call: { env: { CAIRN_WRAPPED: '1', CAIRN_PUSH_AHEAD_JOB: '{}', CAIRN_PREFETCH_JOB: '{}' } } },
  { what: 'a history file (not a segment)', served: false, name: '00000002.history' },
  { what: 'a lowercase segment name', served: false, name: SEG.replace('5', 'a').toLowerCase() },
  { what: 'a .partial segment', served: false, name: `${SEG}.partial` },
  { what: '--prefetch 0 (a spool made for that call anyway)', served: false, made: { args: (n) => ['--prefetch', '0', '--repo', NO_REPO, n, 'pg_wal/RECOVERYXLOG'] }, call: { args: (n) => ['--prefetch', '0', '--repo', NO_REPO, n, 'pg_wal/RECOVERYXLOG'] } },
  { what: 'CAIRN_PREFETCH=0', served: false, made: { args: noPrefetchFlag, env: { CAIRN_PREFETCH: '0' } }, call: { args: noPrefetchFlag, env: { CAIRN_PREFETCH: '0' } } },
  { what: 'CAIRN_PREFETCH=0 overridden by --prefetch 4', served: true, made: { args: getArgs, env: { CAIRN_PREFETCH: '0' } }, call: { env: { CAIRN_PREFETCH: '0' } } },
  { what: '--prefetch 0 then --prefetch=4 (the last one counts)', served: true, made: { args: (n) => ['--prefetch', '0', '--prefetch=4', '--repo', NO_REPO, n, 'pg_wal/RECOVERYXLOG'] }, call: { args: (n) => ['--prefetch', '0', '--prefetch=4', '--repo', NO_REPO, n, 'pg_wal/RECOVERYXLOG'] } },
  { what: 'an entry writable by group', served: false, prepare: (e) => chmod(e, 0o660) },
  { what: 'an entry that is a symbolic link', served: false, prepare: async (e) => { await writeFile(`${e}.real`, 'prefetched', { mode: 0o600 }); await unlink(e); await symlink(`${e}.real`, e); } },
];

test('wal-get: the compiled, the bash and the Node path decide every spool case alike', async () => {
  for (const c of getCases) {
    const name = c.name ?? SEG;
    for (const side of sides) {
      const { pgdata } = await dataDir();
      const base = { CAIRN_NODE: '/bin/false' };
      const madeArgs = (c.made?.args ?? getArgs)(name);
      const p = plan(madeArgs, madeArgs.slice(-2), pgdata, { ...base, ...c.made?.env });
      assert.ok(p.choice.root !== undefined);
      const entry = new GetSpool(await openContextDir(p.choice, 'get', p.context)).entryPath(name);
      await writeFile(entry, 'prefetched', { mode: 0o600 });
      await c.prepare?.(entry);
      const r = await runSide(side, 'get', (c.call?.args ?? getArgs)(name), pgdata, { ...base, ...c.call?.env });
      assert.equal(r.code === 0, c.served, `${side}: ${c.what} (exit ${r.code}): ${r.stderr}`);
      const dest = join(pgdata, 'pg_wal/RECOVERYXLOG');
      if (c.served) {
        assert.equal(await readFile(dest, 'utf8'), 'prefetched', `${side}: ${c.what}`);
        assert.equal(await exists(entry), false, `${side}: ${c.what}: the entry was moved`);
      } else {
        assert.equal(await exists(dest), false, `${side}: ${c.what}: nothing written`);
      }
    }
  }
});

for (const w of WRAPPERS) test(`wal-get (${w.name}): the wrapper waits GET_FETCH_WAIT_MS for a fetch in progress, then leaves it to Node (once, not twice); GetSpool.clear removes the leftover`, async () => {
  const { pgdata } = await dataDir();
  const env = { CAIRN_NODE: '/bin/false' };
  const args = getArgs(SEG);
  const p = plan(args, args.slice(-2), pgdata, env);
  assert.ok(p.choice.root !== undefined);
  const dir = await openContextDir(p.choice, 'get', p.context);
  const temp = tempPathFor(new GetSpool(dir).entryPath(SEG));
  await writeFile(temp, 'half', { mode: 0o600 });
  // A fetch that lands while the wrapper waits is served.
  const [served] = await Promise.all([
    runSide(w.name, 'get', args, pgdata, env),
    (async () => {
      await new Promise((r) => setTimeout(r, 400));
      await writeFile(new GetSpool(dir).entryPath(SEG), 'prefetched', { mode: 0o600 });
    })(),
  ]);
  assert.equal(served.code, 0, served.stderr);
  assert.ok(served.ms >= 300, `served after the wait (${served.ms} ms)`);
  // One that never lands: the wait ends after GET_FETCH_WAIT_MS and Node
  // decides, once, not twice. Told without a clock (a loaded machine
  // stretches the polls): the compiled program hands over to the wrapper
  // saying it has waited (seen by a wrapper that records it, beside a copy
  // of the program), and the wrapper told so does not wait again.
  if (w.name === 'compiled' && compiled(GET_BIN)) {
    const side = await makeTempDir('contract-handover', { owner: 'me' });
    const copy = join(side, 'cairn-wal-get');
    await writeFile(copy, readFileSync(GET_BIN), { mode: 0o755 });
    await writeFile(`${copy}.sh`, '#!/bin/sh\nprintf %s "${CAIRN_SPOOL_WAITED-unset}" > "${0%/*}/seen"\nexit 1\n', { mode: 0o755 });
    const h = await runAsync(copy, args, pgdata, { ...env, PATH: pathFor(GET_BIN) });
    assert.ok(h.ms >= GET_FETCH_WAIT_MS, `waited ${h.ms} ms`);
    assert.equal(await readFile(join(side, 'seen'), 'utf8'), '1', 'the wrapper is told the wait is done');
  } else {
    const r = await runSide(w.name, 'get', args, pgdata, env);
    assert.equal(r.code, WAL_GET_EXIT.FAILED, 'Node (/bin/false) decides');
    assert.ok(r.ms >= GET_FETCH_WAIT_MS, `waited ${r.ms} ms`);
    const again = await runSide(w.name, 'get', args, pgdata, { ...env, CAIRN_SPOOL_WAITED: '1' });
    assert.equal(again.code, WAL_GET_EXIT.FAILED, 'Node (/bin/false) decides');
    assert.ok(again.ms < GET_FETCH_WAIT_MS, `told it has waited, the wrapper waits no more (${again.ms} ms)`);
  }
  await new GetSpool(dir).clear();
  assert.equal(await exists(temp), false, 'clear() removes a fetch left behind');
});
