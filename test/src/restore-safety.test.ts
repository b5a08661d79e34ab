// Manifests are input and --force/--delta need a data directory (issue 11,
// classes 5 and 6): a real backup of a real cluster in a file repository, its
// manifest.json then rewritten (manifests are plain JSON, neither signed nor
// hashed) so that only the manifest rules can stop it. Traversal, absolute
// paths, a tablespace escape and a foreign object key are refused before
// anything is written; setuid and 0777 modes are restored masked; verify
// reports each; a typo'd --pgdata is never emptied; a symlinked global/ is
// never written through.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rename, stat, symlink, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { binPath } from '@cairn/testkit/paths';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { runAsMe } from '@cairn/testkit/run-as';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { parseStoredManifest, takeBackup, walPushCommand } from './pitr-harness.js';
import { runCairn, type ToolRun } from './tools.js';
import type { BackupManifest as Manifest, ManifestFile as Entry } from '@cairn/core/backup/manifest';

after(runCleanups);


interface State {
  repo: RepoFixture;
  src: Cluster;
  backup: string;
  /** manifest.json as stored, byte for byte. */
  original: string;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

const manifestPath = (s: State) => join(s.repo.url, 'main', 'backups', s.backup, 'manifest.json');

/** Runs `body` with the stored manifest rewritten by `edit`; the original is put back after. */
/** The stored bytes of a file entry: its object, or its stretch of a bundle. */
async function storedBytes(repoDir: string, f: Entry): Promise<Buffer> {
  if (!f.bundle) return readFile(join(repoDir, f.key));
  return (await readFile(join(repoDir, f.bundle.key))).subarray(f.bundle.offset, f.bundle.offset + f.storedSize);
}

async function withManifest(edit: (m: Manifest) => void, body: () => Promise<void>): Promise<void> {
  const s = state();
  const m = parseStoredManifest(s.original) as unknown as Manifest;
  edit(m);
  await writeFile(manifestPath(s), JSON.stringify(m, null, 2) + '\n');
  try {
    await body();
  } finally {
    await writeFile(manifestPath(s), s.original);
  }
}

const restoreArgs = (dir: string, ...more: string[]) => ['--pgdata', dir, '--target', 'immediate', '--set', state().backup, ...more];

/** cairn-restore as root: a crafted manifest must not reach what only root can write. */
async function restoreAsRoot(dir: string): Promise<ToolRun> {
  const r = await runAsMe(binPath('restore'), restoreArgs(dir), { env: state().repo.env, allowFail: true, timeoutMs: 300_000 });
  return { ...r, lines: r.stderr.split('\n').filter((l) => l !== '') };
}

/** cairn-verify --set of the backup: exit 1 and the report's problem lines. */
async function verifyProblems(): Promise<string[]> {
  const r = await runCairn('verify', ['--set', state().backup], { env: state().repo.env, timeoutMs: 300_000 });
  assert.equal(r.code, 1, `verify finds a problem: ${r.stderr}`);
  return r.lines.filter((l) => l.startsWith('problem: '));
}

function entry(m: Manifest, path: string): Entry {
  const e = m.files.find((f) => f.path === path);
  assert.ok(e, `manifest lists ${path}`);
  return e;
}

async function refusedBeforeWriting(r: ToolRun, pgdata: string, what: RegExp): Promise<void> {
  assert.equal(r.code, 4, r.stderr);
  assert.equal(r.lines.length, 1, r.stderr);
  assert.match(r.lines[0]!, /^cairn-restore: error: backup manifest "main\/backups\/\d{8}-\d{6}F\/manifest.json" in repository ".*" is unsafe to restore: /);
  assert.match(r.lines[0]!, what);
  assert.deepEqual(await readdir(pgdata), [], '--pgdata is untouched');
}

describe('restore safety: crafted manifests and destructive flags (fs repository)', { timeout: 900_000 }, () => {
  it('sets up a full backup of a real cluster', async () => {
    const repo = await makeRepo('fs', false);
    const src = await createCluster({ name: 'safety-src', archiveCommand: walPushCommand(), env: repo.env });
    await src.start();
    await src.psql("create table marker(v text); insert into marker values ('restored')");
    const backup = await takeBackup(src, repo, 'full');
    await src.stop();
    st = { repo, src, backup, original: await readFile(join(repo.url, 'main', 'backups', backup, 'manifest.json'), 'utf8') };
  });

  it('refuses a streamed manifest cut short (its end line gone) before writing anything, and verify reports it (issue 19)', async () => {
    const s = state();
    const pgdata = await makeTempDir('safety-cut-pgdata');
    const lines = s.original.split('\n');
    assert.ok(lines[0]!.includes('"format":"cairn.backup/3"') && lines.at(-2)!.startsWith('{"end":'), 'basebackup wrote a streamed manifest');
    // Half the records and no end line: each line that is left is whole and valid.
    const cut = lines.slice(0, Math.ceil(lines.length / 2)).join('\n') + '\n';
    await writeFile(manifestPath(s), cut);
    try {
      const r = await restoreAsRoot(pgdata);
      // Not "unsafe": damaged (exit 4 all the same), found by the pass that precedes any write.
      assert.equal(r.code, 4, r.stderr);
      assert.equal(r.lines.length, 1, r.stderr);
      assert.match(r.lines[0]!, /^cairn-restore: error: backup manifest "main\/backups\/\d{8}-\d{6}F\/manifest.json" in repository ".*" is invalid: it ends after \d+ of \d+ file records without its end line \(truncated\); /);
      assert.deepEqual(await readdir(pgdata), [], '--pgdata is untouched');
      const problems = await verifyProblems();
      assert.ok(problems.some((l) => l.includes('(truncated)')), problems.join('\n'));
    } finally {
      await writeFile(manifestPath(s), s.original);
    }
  });

  it('refuses a file entry "../x" before writing anything, also as root into a root-only directory', async () => {
    const rootOnly = await makeTempDir('safety-rootonly', { owner: 'me' });
    const pgdata = join(rootOnly, 'pgdata');
    await mkdir(pgdata, { mode: 0o700 });
    await withManifest((m) => m.files.push({ ...entry(m, 'PG_VERSION'), path: '../x' }), async () => {
      const r = await restoreAsRoot(pgdata);
      await refusedBeforeWriting(r, pgdata, /file entry "\.\.\/x" leaves its root/);
      assert.equal(existsSync(join(rootOnly, 'x')), false, 'nothing written outside --pgdata');
      const problems = await verifyProblems();
      assert.ok(problems.some((l) => l.includes('manifest file entry "../x" leaves its root')), problems.join('\n'));
    });
  });

  it('refuses an absolute path, quoting it with control characters escaped in verify', async () => {
    const outside = await makeTempDir('safety-abs', { owner: 'me' });
    const pgdata = await makeTempDir('safety-abs-pgdata');
    const abs = `${outside}/abs\nproblem: forged`;
    await withManifest((m) => m.files.push({ ...entry(m, 'PG_VERSION'), path: abs }), async () => {
      const r = await restoreAsRoot(pgdata);
      await refusedBeforeWriting(r, pgdata, /is absolute/);
      assert.deepEqual(await readdir(outside), []);
      const problems = await verifyProblems();
      assert.ok(problems.some((l) => l.includes(`manifest file entry ${JSON.stringify(abs)} is absolute`)), problems.join('\n'));
      const all = (await runCairn('verify', ['--set', state().backup], { env: state().repo.env })).lines;
      assert.ok(!all.some((l) => l.startsWith('problem: forged')), 'no forged line');
    });
  });

  it('refuses a tablespace entry that climbs out of its location', async () => {
    const outside = await makeTempDir('safety-ts', { owner: 'me' });
    const pgdata = await makeTempDir('safety-ts-pgdata');
    const location = join(outside, 'ts');
    await withManifest((m) => {
      m.tablespaces.push({ oid: '16385', location });
      m.dirs.push({ path: 'pg_tblspc/16385', mode: 0o700 });
      m.files.push({ ...entry(m, 'PG_VERSION'), path: 'pg_tblspc/16385/../../escaped' });
    }, async () => {
      const r = await restoreAsRoot(pgdata);
      await refusedBeforeWriting(r, pgdata, /file entry "pg_tblspc\/16385\/\.\.\/\.\.\/escaped" leaves its root/);
      assert.deepEqual(await readdir(outside), [], 'neither the location nor the escaped file was made');
      const problems = await verifyProblems();
      assert.ok(problems.some((l) => l.includes('"pg_tblspc/16385/../../escaped" leaves its root')), problems.join('\n'));
    });
  });

  it('refuses an object key outside the backup\'s prefix (the object is there and its checksum matches)', async () => {
    const s = state();
    const pgdata = await makeTempDir('safety-key-pgdata');
    const orig = entry(parseStoredManifest(s.original) as unknown as Manifest, 'PG_VERSION');
    const stray = `main/stray/PG_VERSION${orig.key.slice(orig.key.lastIndexOf('PG_VERSION') + 'PG_VERSION'.length)}`;
    await mkdir(join(s.repo.url, 'main', 'stray'), { recursive: true });
    await writeFile(join(s.repo.url, stray), await storedBytes(s.repo.url, orig));
    await chownToPgUser(join(s.repo.url, 'main', 'stray'));
    try {
      // The entry stored alone, under a key outside the prefix.
      await withManifest((m) => Object.assign(entry(m, 'PG_VERSION'), { key: stray, bundle: undefined }), async () => {
        const r = await restoreAsRoot(pgdata);
        await refusedBeforeWriting(r, pgdata, new RegExp(`file entry "PG_VERSION" names object "${stray}", outside the prefix of backup`));
        const problems = await verifyProblems();
        assert.ok(problems.some((l) => l.includes(`names object "${stray}"`)), problems.join('\n'));
      });
    } finally {
      await rm(join(s.repo.url, 'main', 'stray'), { recursive: true, force: true });
    }
  });

  it('restores a 04777 file and a 0777 directory masked to 0600 and 0700; verify reports both', async () => {
    const pgdata = await makeTempDir('safety-modes');
    await withManifest((m) => {
      entry(m, 'PG_VERSION').mode = 0o4777;
      const base = m.dirs.find((d) => d.path === 'base');
      assert.ok(base);
      base.mode = 0o777;
    }, async () => {
      const r = await runCairn('restore', restoreArgs(pgdata), { env: state().repo.env, timeoutMs: 300_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /mode 0?777, which PostgreSQL never creates \(restored as 0700\)/);
      assert.equal((await stat(join(pgdata, 'PG_VERSION'))).mode & 0o7777, 0o600);
      assert.equal((await stat(join(pgdata, 'base'))).mode & 0o7777, 0o700);
      assert.equal(existsSync(join(pgdata, 'cairn-restore.in-progress')), false, 'the in-progress marker is gone after a restore');
      const problems = await verifyProblems();
      assert.ok(problems.some((l) => l.includes('file entry "PG_VERSION" has mode 04777')), problems.join('\n'));
      assert.ok(problems.some((l) => l.includes('directory entry "base" has mode 0777')), problems.join('\n'));
    });
  });

  it('restores a backup whose manifest header has no totals or odd ones (they are not checked input; restore only reads them to start a worker early)', async () => {
    for (const totals of [undefined, { size: 'a lot' }]) {
      const pgdata = await makeTempDir('safety-totals');
      await withManifest((m) => {
        if (totals === undefined) delete (m as Partial<Manifest>).totals;
        else (m as unknown as { totals: unknown }).totals = totals;
      }, async () => {
        const r = await runCairn('restore', restoreArgs(pgdata), { env: state().repo.env, timeoutMs: 300_000 });
        assert.equal(r.code, 0, `totals ${JSON.stringify(totals)}: ${r.stderr}`);
        assert.equal(existsSync(join(pgdata, 'global', 'pg_control')), true);
      });
    }
  });

  it('without sync(1) on PATH (no syncfs), each file is fsynced on its own and the restore is whole', async () => {
    const pgdata = await makeTempDir('safety-nosync');
    // What the harness (setpriv) and the wrapper run, and nothing else: `sync -f` is not found.
    const bin = await makeTempDir('safety-nosync-bin');
    for (const p of ['setpriv', 'readlink', 'nproc']) await symlink(`/usr/bin/${p}`, join(bin, p));
    const r = await runCairn('restore', restoreArgs(pgdata), { env: { ...state().repo.env, PATH: bin }, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(join(pgdata, 'global', 'pg_control')), true);
    assert.equal(existsSync(join(pgdata, 'cairn-restore.in-progress')), false);
    assert.equal((await readFile(join(pgdata, 'PG_VERSION'), 'utf8')).trim(), (await readFile(join(state().src.pgdata, 'PG_VERSION'), 'utf8')).trim());
  });

  it('--force and --delta refuse a directory without PG_VERSION (a typo in --pgdata) and leave it alone', async () => {
    for (const flag of ['--force', '--delta']) {
      const dir = await makeTempDir('safety-typo');
      const keep = join(dir, 'operator-data.txt');
      await writeFile(keep, 'precious\n', { mode: 0o600 });
      await chownToPgUser(keep);
      const r = await runCairn('restore', restoreArgs(dir, flag), { env: state().repo.env });
      assert.equal(r.code, 3, `${flag}: ${r.stderr}`);
      assert.equal(r.lines.length, 1, r.stderr);
      assert.match(r.lines[0]!, new RegExp(`^cairn-restore: error: "${dir}" is not a PostgreSQL data directory \\(no PG_VERSION\\): ${flag} would remove what is there; check --pgdata`));
      assert.deepEqual(await readdir(dir), ['operator-data.txt'], `${flag}: nothing added or removed`);
      assert.equal(await readFile(keep, 'utf8'), 'precious\n');
    }
  });

  it('--force acts on a directory an interrupted restore left (its marker), and removes the marker', async () => {
    const dir = await makeTempDir('safety-marker');
    await writeFile(join(dir, 'cairn-restore.in-progress'), 'left by a killed run\n');
    await writeFile(join(dir, 'half-written'), 'x');
    await chownToPgUser(dir);
    const r = await runCairn('restore', restoreArgs(dir, '--force'), { env: state().repo.env, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const names = await readdir(dir);
    assert.ok(names.includes('PG_VERSION') && !names.includes('half-written') && !names.includes('cairn-restore.in-progress'), names.join(' '));
  });

  it('--delta with global/ a link to another directory: the link is replaced, the target\'s pg_control untouched', async () => {
    const s = state();
    const dst = await makeTempDir('safety-delta');
    const first = await runCairn('restore', restoreArgs(dst), { env: s.repo.env, timeoutMs: 300_000 });
    assert.equal(first.code, 0, first.stderr);
    const control = await readFile(join(dst, 'global', 'pg_control'));

    const victim = await makeTempDir('safety-victim');
    await writeFile(join(victim, 'pg_control'), 'precious control file\n', { mode: 0o600 });
    await chownToPgUser(victim);
    await rm(join(dst, 'global'), { recursive: true });
    await symlink(victim, join(dst, 'global'));
    await chownToPgUser(dst);

    const r = await runCairn('restore', restoreArgs(dst, '--delta'), { env: s.repo.env, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readdir(victim), ['pg_control'], 'nothing written into the link\'s target');
    assert.equal(await readFile(join(victim, 'pg_control'), 'utf8'), 'precious control file\n');
    assert.equal((await stat(victim)).mode & 0o7777, 0o700);
    assert.ok((await lstat(join(dst, 'global'))).isDirectory(), 'global/ is a real directory now');
    assert.deepEqual(await readFile(join(dst, 'global', 'pg_control')), control, 'the backup\'s pg_control restored');
  });
  it('a backup object removed: exit 4 naming it (not 70), and no startable directory; also for a file read in a worker thread', async () => {
    const s = state();
    const missing = async (what: string) => {
      const dst = await makeTempDir('safety-missing');
      const r = await runCairn('restore', restoreArgs(dst), { env: s.repo.env, timeoutMs: 300_000 });
      assert.equal(r.code, 4, `${what}: ${r.stderr}`);
      assert.match(r.lines[0]!, /^cairn-restore: error: object "main\/backups\/\d{8}-\d{6}F\/(data|bundles)\/.+" not found in repository /, what);
      assert.equal(existsSync(join(dst, 'global', 'pg_control')), false, `${what}: no pg_control, so the directory cannot be started`);
    };
    const victim = entry(parseStoredManifest(s.original) as unknown as Manifest, 'PG_VERSION');
    // A small file is a member of a bundle: the bundle goes.
    const objPath = join(s.repo.url, victim.bundle?.key ?? victim.key);
    await rename(objPath, `${objPath}.aside`);
    try {
      await missing('a small file');
    } finally {
      await rename(`${objPath}.aside`, objPath);
    }
    // Files from 32 MiB on are decoded in a worker thread: its error crosses
    // the thread boundary and must keep its status.
    await withManifest((m) => m.files.push({ ...entry(m, 'PG_VERSION'), path: 'big-and-gone', size: 40 * 1024 * 1024, key: `${victim.key}.gone`, bundle: undefined }), () => missing('a big file'));
  });
  it('a parent missing from the repository: the one error (exit 4) from restore-plan and from restore of an older plan', async () => {
    const s = state();
    const gone = '20200101-000000F';
    const line = (tool: string) => `cairn-${tool}: error: backup "${gone}" needed by "${s.backup}" is missing from the repository; restore from another backup (cairn-info lists them) and take a new full backup`;
    const planned = await runCairn('restore-plan', ['--target', 'immediate', '--set', s.backup], { env: s.repo.env, timeoutMs: 300_000 });
    assert.equal(planned.code, 0, planned.stderr);
    const planFile = join(await makeTempDir('safety-plan'), 'plan.json');
    await writeFile(planFile, planned.stdout);
    await withManifest((m) => Object.assign(m, { type: 'incr', parent: gone, references: [gone] }), async () => {
      const plan = await runCairn('restore-plan', ['--target', 'immediate', '--set', s.backup], { env: s.repo.env, timeoutMs: 300_000 });
      assert.equal(plan.code, 4, plan.stderr);
      assert.equal(plan.lines[0], line('restore-plan'));
      const dst = await makeTempDir('safety-parent');
      const r = await runCairn('restore', ['--pgdata', dst, '--plan', planFile], { env: s.repo.env, timeoutMs: 300_000 });
      assert.equal(r.code, 4, r.stderr);
      assert.equal(r.lines[0], line('restore'));
      assert.deepEqual(await readdir(dst), [], '--pgdata is untouched');
    });
  });
});
