// Bad input: one clear line on stderr naming the problem and what to do, and
// the documented exit status. wal-push: 2 usage, 3 configuration. wal-get
// exits 126 for every error (PostgreSQL reads 1–125 as "not found" and would
// end recovery early on a misconfigured restore_command).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, chmod, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { runCleanups } from '@cairn/testkit/cleanup';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { makeKeyFile, makeRepo, type RepoFixture } from './repo-fixture.js';
import { runCairn } from './tools.js';
import { makeWalMaterial, type WalMaterial } from './wal-material.js';

after(runCleanups);

let m: WalMaterial;
let repo: RepoFixture;
let rootOnly: string;
let badKey: string;
/** A directory the pg user owns: config files, a regular file, a FIFO, an open key file. */
let work: string;
before(async () => {
  m = await makeWalMaterial('bad-input', 2);
  repo = await makeRepo('fs', false);
  const dir = await makeTempDir('root-only', { owner: 'me' });
  rootOnly = join(dir, 'secret');
  await writeFile(rootOnly, 'x');
  await chmod(rootOnly, 0o600);
  badKey = join(dir, 'nokey');
  work = await makeTempDir('bad-input-work');
  await writeFile(join(work, 'typo.conf'), `[global]\nrepo = ${repo.url}\nencryption-keyfile = /etc/cairn/key\n`);
  await writeFile(join(work, 'afile'), 'not a repository\n');
  execFileSync('mkfifo', [join(m.pgdata, 'pg_wal', 'FIFO'), join(work, 'fifo')]);
  await chownToPgUser(work, { recursive: true });
  await chownToPgUser(join(m.pgdata, 'pg_wal', 'FIFO'));
});

interface Case {
  name: string;
  tool: 'wal-push' | 'wal-get' | 'cairn' | 'basebackup' | 'info' | 'dump' | 'verify';
  args: string[];
  env?: Record<string, string>;
  code: number;
  message: RegExp;
}

const seg = () => m.segments[0]!;
const cases: Case[] = [
  { name: 'wal-push: missing arguments', tool: 'wal-push', args: [], code: 2, message: /missing argument <path>/ },
  { name: 'wal-push: unknown flag', tool: 'wal-push', args: ['pg_wal/x', '--dryrun'], code: 2, message: /unknown option '--dryrun'/ },
  { name: 'wal-push: invalid WAL file name', tool: 'wal-push', args: ['pg_wal/foo', 'foo'], code: 2, message: /invalid WAL file name "foo"/ },
  { name: 'wal-push: path traversal in %f', tool: 'wal-push', args: ['pg_wal/x', '../../etc/passwd'], code: 2, message: /invalid WAL file name "..\/..\/etc\/passwd"/ },
  { name: 'wal-push: %p missing', tool: 'wal-push', args: ['pg_wal/000000010000000000000099', '000000010000000000000099'], code: 3, message: /cannot read WAL file ".*000000010000000000000099": ENOENT/ },
  { name: 'wal-push: %p unreadable', tool: 'wal-push', args: ['ROOTONLY', '000000010000000000000001'], code: 3, message: /cannot read WAL file ".*secret": EACCES/ },
  { name: 'wal-push: malformed repo URL', tool: 'wal-push', args: ['pg_wal/SEG'], env: { CAIRN_REPO: 'ftp://host/x' }, code: 3, message: /invalid repository URL "ftp:\/\/host\/x"/ },
  { name: 'wal-push: relative repo path', tool: 'wal-push', args: ['pg_wal/SEG', '--repo', 'relative/dir'], code: 3, message: /invalid repository URL "relative\/dir"/ },
  { name: 'wal-push: no repository', tool: 'wal-push', args: ['pg_wal/SEG'], env: { CAIRN_REPO: '' }, code: 3, message: /no repository configured/ },
  { name: 'wal-push: unreadable key file', tool: 'wal-push', args: ['pg_wal/SEG'], env: { CAIRN_ENCRYPTION_KEY_FILE: 'NOKEY' }, code: 3, message: /cannot read encryption key file ".*nokey"/ },
  { name: 'wal-push: bad compression', tool: 'wal-push', args: ['pg_wal/SEG', '--compress', 'lz5'], code: 2, message: /invalid compression "lz5"/ },
  { name: 'wal-push: bad compression in the environment', tool: 'wal-push', args: ['pg_wal/SEG'], env: { CAIRN_COMPRESS: 'lz5' }, code: 3, message: /environment variable CAIRN_COMPRESS: invalid compression "lz5"/ },
  { name: 'wal-push: bad integer', tool: 'wal-push', args: ['pg_wal/SEG', '--push-ahead', 'many'], code: 2, message: /"many" is not a whole number for --push-ahead/ },
  { name: 'wal-get: missing arguments', tool: 'wal-get', args: ['000000010000000000000001'], code: 126, message: /missing argument <path>/ },
  { name: 'wal-get: unknown flag', tool: 'wal-get', args: ['SEG', 'pg_wal/RECOVERYXLOG', '--prefech', '3'], code: 126, message: /unknown option '--prefech'/ },
  { name: 'wal-get: path traversal in %f', tool: 'wal-get', args: ['../../../etc/shadow', 'pg_wal/RECOVERYXLOG'], code: 126, message: /invalid WAL file name/ },
  { name: 'wal-get: malformed repo URL', tool: 'wal-get', args: ['SEG', 'pg_wal/RECOVERYXLOG'], env: { CAIRN_REPO: 's3://' }, code: 126, message: /invalid repository URL "s3:\/\/"/ },
  { name: 'wal-get: unreadable key file', tool: 'wal-get', args: ['SEG', 'pg_wal/RECOVERYXLOG'], env: { CAIRN_ENCRYPTION_KEY_FILE: 'NOKEY' }, code: 126, message: /cannot read encryption key file/ },
  { name: 'cairn: unknown tool', tool: 'cairn', args: ['wal-pull'], code: 2, message: /unknown tool "wal-pull"/ },
  // Issue 11, class 7: configuration is checked like flags.
  { name: 'config file: unknown key, with the nearest known one', tool: 'wal-push', args: ['pg_wal/SEG', '--config', 'WORK/typo.conf'], env: { CAIRN_REPO: '' }, code: 3, message: /^cairn-wal-push: error: config file ".*typo.conf" line 3: unknown key "encryption-keyfile"; did you mean "encryption-key-file"\?$/ },
  { name: 'wal-push: memory:// is refused', tool: 'wal-push', args: ['pg_wal/SEG', '--repo', 'memory://x'], code: 3, message: /invalid repository URL "memory:\/\/x": memory:\/\/ is a test double/ },
  { name: 'wal-get: memory:// is refused', tool: 'wal-get', args: ['SEG', 'pg_wal/RECOVERYXLOG', '--repo', 'memory://x'], code: 126, message: /memory:\/\/ is a test double/ },
  // Class 8: messages are one line without secrets.
  { name: 'wal-get: an unknown S3 parameter is named, its value never echoed', tool: 'wal-get', args: ['SEG', 'pg_wal/RECOVERYXLOG'], env: { CAIRN_REPO: 's3://bucket/pg?region=eu-west-1&secret=hunter2' }, code: 126, message: /invalid repository URL "s3:\/\/bucket\/pg\?region=eu-west-1&secret=\*\*\*": unknown parameter "secret"/ },
  { name: 'wal-push: credentials in an endpoint are not echoed', tool: 'wal-push', args: ['pg_wal/SEG', '--repo', 's3://bucket/pg?endpoint=http://AKIA:hunter2@127.0.0.1:1&token=hunter2'], code: 3, message: /invalid repository URL "s3:\/\/bucket\/pg\?endpoint=http:\/\/\*\*\*@127\.0\.0\.1:1&token=\*\*\*"/ },
  { name: 'control characters in an argument are escaped', tool: 'wal-push', args: ['pg_wal/SEG', '--cluster', 'a\x1b[31mb\nfake: line'], code: 3, message: /^cairn-wal-push: error: invalid cluster name "a\\x1b\[31mb\\x0afake: line"/ },
  { name: 'basebackup: a negative number after a flag names the problem', tool: 'basebackup', args: ['--jobs', '-4', '--pgdata', 'WORK'], code: 2, message: /^cairn-basebackup: error: invalid --jobs -4; use 1 to 256$/ },
  { name: 'basebackup: --lock-wait=-1 is refused', tool: 'basebackup', args: ['--lock-wait=-1', '--pgdata', 'WORK'], code: 2, message: /^cairn-basebackup: error: invalid --lock-wait -1; use 0 or more$/ },
  { name: 'basebackup: --archive-timeout=-1 is refused', tool: 'basebackup', args: ['--archive-timeout=-1', '--pgdata', 'WORK'], code: 2, message: /invalid --archive-timeout -1; use 1 or more/ },
  { name: 'basebackup: a flag without its value', tool: 'basebackup', args: ['--pgdata', '--jobs', '2'], code: 2, message: /^cairn-basebackup: error: option --pgdata needs a value/ },
  { name: 'verify: a non-integer --jobs is a usage error', tool: 'verify', args: ['--jobs', '2.5'], code: 2, message: /"2.5" is not a whole number for --jobs; use 1 to 256/ },
  { name: 'wal-push: --system-id with traversal', tool: 'wal-push', args: ['pg_wal/SEG', '--system-id', '../x'], code: 2, message: /invalid system identifier "..\/x"/ },
  { name: 'wal-get: --system-id with traversal', tool: 'wal-get', args: ['SEG', 'pg_wal/RECOVERYXLOG', '--system-id', '../x'], code: 126, message: /invalid system identifier "..\/x"/ },
  // Filesystem mistakes on user paths: exit 3 naming the path, quickly.
  { name: 'wal-push: a FIFO as %p is refused, not waited on', tool: 'wal-push', args: ['pg_wal/FIFO', 'SEG'], code: 3, message: /WAL file ".*pg_wal\/FIFO" is a FIFO, not a regular file/ },
  { name: 'info: --repo a regular file', tool: 'info', args: ['--repo', 'WORK/afile'], code: 3, message: /repository ".*afile" is a regular file, not a directory/ },
  { name: 'info: --repo on /proc', tool: 'info', args: ['--repo', '/proc/1'], code: 3, message: /repository "\/proc\/1" is on the kernel's proc file system/ },
  { name: 'basebackup: --from-tar of a missing file', tool: 'basebackup', args: ['--from-tar', 'WORK/missing.tar'], code: 3, message: /^cairn-basebackup: error: --from-tar ".*missing.tar" does not exist/ },
  { name: 'basebackup: --pgdata missing', tool: 'basebackup', args: ['--pgdata', 'WORK/nopgdata'], code: 3, message: /--pgdata ".*nopgdata" does not exist/ },
  { name: 'dump: --tmp-dir a regular file', tool: 'dump', args: ['--dbname', 'x', '--jobs', '2', '--tmp-dir', 'WORK/afile'], code: 3, message: /--tmp-dir ".*afile" is a regular file, not a directory/ },
];

for (const c of cases) {
  test(c.name, async () => {
    const fill = (s: string) => s.replace('SEG', seg()).replace('ROOTONLY', rootOnly).replace('NOKEY', badKey).replace('WORK', work);
    const env = { ...repo.env, ...Object.fromEntries(Object.entries(c.env ?? {}).map(([k, v]) => [k, fill(v)])) };
    const r = await runCairn(c.tool, c.args.map(fill), { env, cwd: m.pgdata, timeoutMs: 30_000 });
    assert.equal(r.code, c.code, `exit status; stderr: ${r.stderr}`);
    assert.equal(r.lines.length, 1, `exactly one line on stderr: ${r.stderr}`);
    assert.match(r.lines[0]!, c.message);
    assert.doesNotMatch(r.stderr, /hunter2|internal error|\n {4}at /, 'no secret, no bug report, no stack trace');
    assert.equal(r.stdout, '');
  });
}

test('--help and --version answer on every entry point', async () => {
  for (const tool of ['wal-push', 'wal-get']) {
    let r = await runCairn(tool, ['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`usage: cairn-${tool}`));
    r = await runCairn(tool, ['--version']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`^cairn-${tool} \\d+\\.\\d+\\.\\d+`));
    r = await runCairn('cairn', [tool, '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`usage: cairn-${tool}`));
  }
  const r = await runCairn('cairn', ['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /wal-push/);
});

test('config file: "# comment" after a value is a comment; a key of another tool is accepted', async () => {
  const r0 = await makeRepo('fs', false);
  const conf = join(work, 'comment.conf');
  // keep-full is expire's and scratch-dir drill's: one file serves every tool.
  await writeFile(conf, `[global]\nrepo = ${r0.url}   # nightly copy\nkeep-full = 2\nscratch-dir = /srv/scratch\n`);
  await chownToPgUser(conf);
  const r = await runCairn('wal-push', [`pg_wal/${seg()}`, '--config', conf], { env: { ...r0.env, CAIRN_REPO: '' }, cwd: m.pgdata });
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await r0.keys('main/wal/')).some((k) => k.includes(seg())), 'the segment is in the repository the file names, not in "<repo>   # nightly copy"');
});

test('an encrypted cluster that lost repo.json refuses a push without the key', async () => {
  const enc = await makeRepo('fs', true);
  let r = await runCairn('wal-push', [`pg_wal/${m.segments[0]}`], { env: enc.env, cwd: m.pgdata });
  assert.equal(r.code, 0, r.stderr);
  await rm(join(enc.url, 'main', 'repo.json'));
  const { CAIRN_ENCRYPTION_KEY_FILE: _key, ...noKey } = enc.env;
  r = await runCairn('wal-push', [`pg_wal/${m.segments[1]}`, '--push-ahead', '0'], { env: noKey, cwd: m.pgdata });
  assert.equal(r.code, 4, r.stderr);
  assert.equal(r.lines.length, 1, r.stderr);
  assert.match(r.lines[0]!, /cluster "main" holds objects \(e\.g\. "main\/.*"\) but no repo\.json; restore main\/repo\.json from a copy/);
  const keys = await enc.keys('main/');
  assert.ok(!keys.includes('main/repo.json'), 'no fresh (unencrypted) repo.json');
  assert.ok(!keys.some((k) => k.includes(m.segments[1]!)), 'no plaintext segment stored');
});

test('a key file other users can read: one warning naming it', async () => {
  const key = await makeKeyFile(work);
  await chmod(key, 0o644);
  const r0 = await makeRepo('fs', false);
  const r = await runCairn('info', ['--encryption-key-file', key], { env: r0.env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.lines, [`cairn-info: warn: encryption key file "${key}" is accessible by other users (mode 0644); chmod 600 it`]);
  await chmod(key, 0o600);
});

test('drill: a bad --scratch-dir is exit 3 and stores no (failed) drill result', async () => {
  const r = await runCairn('drill', ['--scratch-dir', join(work, 'no-such-dir')], { env: repo.env });
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.lines.length, 1, r.stderr);
  assert.match(r.lines[0]!, /--scratch-dir ".*no-such-dir" does not exist/);
  assert.deepEqual(await repo.keys('main/drills/'), []);
});

test('wal-get: %p in a missing directory is 126 naming the directory, not a bug', async () => {
  const r0 = await makeRepo('fs', false);
  let r = await runCairn('wal-push', [`pg_wal/${seg()}`, '--push-ahead', '0'], { env: r0.env, cwd: m.pgdata });
  assert.equal(r.code, 0, r.stderr);
  r = await runCairn('wal-get', [seg(), join(work, 'gone', 'RECOVERYXLOG'), '--prefetch', '0'], { env: r0.env, cwd: m.pgdata });
  assert.equal(r.code, 126, r.stderr);
  assert.equal(r.lines.length, 1, r.stderr);
  assert.match(r.lines[0]!, /".*\/gone\/.*": ENOENT/);
  assert.doesNotMatch(r.lines[0]!, /internal error|bug in cairn/);
});
