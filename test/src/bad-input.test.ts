// Bad input: one clear line on stderr naming the problem and what to do, and
// the documented exit status. wal-push: 2 usage, 3 configuration. wal-get
// exits 126 for every error (PostgreSQL reads 1–125 as "not found" and would
// end recovery early on a misconfigured restore_command).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { runCleanups } from '@cairn/testkit/cleanup';
import { makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { runCairn } from './tools.js';
import { makeWalMaterial, type WalMaterial } from './wal-material.js';

after(runCleanups);

let m: WalMaterial;
let repo: RepoFixture;
let rootOnly: string;
let badKey: string;
before(async () => {
  m = await makeWalMaterial('bad-input', 1);
  repo = await makeRepo('fs', false);
  const dir = await makeTempDir('root-only', { owner: 'me' });
  rootOnly = join(dir, 'secret');
  await writeFile(rootOnly, 'x');
  await chmod(rootOnly, 0o600);
  badKey = join(dir, 'nokey');
});

interface Case {
  name: string;
  tool: 'wal-push' | 'wal-get' | 'cairn';
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
  { name: 'wal-push: bad compression', tool: 'wal-push', args: ['pg_wal/SEG', '--compress', 'lz5'], code: 3, message: /invalid compression "lz5"/ },
  { name: 'wal-push: bad integer', tool: 'wal-push', args: ['pg_wal/SEG', '--push-ahead', 'many'], code: 3, message: /"many" is not an integer/ },
  { name: 'wal-get: missing arguments', tool: 'wal-get', args: ['000000010000000000000001'], code: 126, message: /missing argument <path>/ },
  { name: 'wal-get: unknown flag', tool: 'wal-get', args: ['SEG', 'pg_wal/RECOVERYXLOG', '--prefech', '3'], code: 126, message: /unknown option '--prefech'/ },
  { name: 'wal-get: path traversal in %f', tool: 'wal-get', args: ['../../../etc/shadow', 'pg_wal/RECOVERYXLOG'], code: 126, message: /invalid WAL file name/ },
  { name: 'wal-get: malformed repo URL', tool: 'wal-get', args: ['SEG', 'pg_wal/RECOVERYXLOG'], env: { CAIRN_REPO: 's3://' }, code: 126, message: /invalid repository URL "s3:\/\/"/ },
  { name: 'wal-get: unreadable key file', tool: 'wal-get', args: ['SEG', 'pg_wal/RECOVERYXLOG'], env: { CAIRN_ENCRYPTION_KEY_FILE: 'NOKEY' }, code: 126, message: /cannot read encryption key file/ },
  { name: 'cairn: unknown tool', tool: 'cairn', args: ['wal-pull'], code: 2, message: /unknown tool "wal-pull"/ },
];

for (const c of cases) {
  test(c.name, async () => {
    const fill = (s: string) => s.replace('SEG', seg()).replace('ROOTONLY', rootOnly).replace('NOKEY', badKey);
    const env = { ...repo.env, ...Object.fromEntries(Object.entries(c.env ?? {}).map(([k, v]) => [k, fill(v)])) };
    const r = await runCairn(c.tool, c.args.map(fill), { env, cwd: m.pgdata });
    assert.equal(r.code, c.code, `exit status; stderr: ${r.stderr}`);
    assert.equal(r.lines.length, 1, `exactly one line on stderr: ${r.stderr}`);
    assert.match(r.lines[0]!, c.message);
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
