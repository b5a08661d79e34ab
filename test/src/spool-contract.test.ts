// The spool contract between Node (spool-dir.ts, PushSpool, GetSpool) and the
// bash fast paths of bin/cairn-wal-push and bin/cairn-wal-get: for the same
// data directory, argv, CAIRN_* environment and config file both find the same
// context directory; any other call, or a component that is not private, makes
// the wrapper leave the decision to Node.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, readFile, realpath, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openContextDir, planSpool, spoolContext, STALE_CONTEXT_MS, type SpoolPlan } from '@cairn/core/spool/spool-dir';
import { PushSpool } from '@cairn/wal-push/push-spool';
import { GetSpool } from '@cairn/wal-get/get-spool';
import { runCleanups } from '@cairn/testkit/cleanup';
import { repoRoot } from '@cairn/testkit/paths';
import { makeTempDir } from '@cairn/testkit/tmp';

after(runCleanups);

const PUSH_BIN = join(repoRoot(), 'tools/wal-push/bin/cairn-wal-push');
const GET_BIN = join(repoRoot(), 'tools/wal-get/bin/cairn-wal-get');
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

/** The wrapper run as the pg user would, with Node replaced by /bin/false: exit 0 only on the fast path. */
function runWrapper(bin: string, args: string[], cwd: string, env: Record<string, string>): { code: number; stderr: string } {
  const r = spawnSync(bin, args, { cwd, env: { PATH: '/usr/bin:/bin', ...env }, encoding: 'utf8' });
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

test('wal-push: the wrapper confirms a record Node wrote for the same call, and only for it', async () => {
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
    assert.equal(await exists(rec), false, 'the record is used up');
  }
  // The config file's content is part of the context: an edit voids the records.
  const rec = await recordFor(plan([`pg_wal/${SEG}`], [`pg_wal/${SEG}`], pgdata, env), walPath);
  await writeFile(config, '[global]\nrepo = /r2\n');
  assert.equal(runWrapper(PUSH_BIN, [`pg_wal/${SEG}`], pgdata, env).code, 1);
  assert.ok(await exists(rec));
});

test('wal-push: the wrapper refuses records and directories that are not private', async () => {
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

test('wal-get: the wrapper serves a prefetched entry by rename for the same call only; Node agrees on the directory', async () => {
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
  assert.ok(block(PUSH_BIN).length > 1000);
  assert.equal(block(PUSH_BIN), block(GET_BIN));
  const r = spawnSync('shellcheck', [PUSH_BIN, GET_BIN], { encoding: 'utf8' });
  assert.equal(r.error, undefined, 'shellcheck is installed by scripts/bootstrap.sh');
  assert.equal(r.status, 0, r.stdout);
});

test('pg_wal moved by initdb -X (a link): the default spool is in its target, and both sides find it', async () => {
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
  assert.equal(await exists(rec), false);
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
