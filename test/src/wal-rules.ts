// The archive and restore command rules (docs/design.md §4.2–4.4), on one repository
// kind: identical re-push succeeds, different content fails and leaves the
// stored copy alone, history files are never overwritten, .partial and
// .backup files round-trip, a corrupted object makes wal-get exit 126 and
// leave nothing at %p, an absent file exits 1, a wrong key is named.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeRepo, makeKeyFile } from './repo-fixture.js';
import { runCairn } from './tools.js';
import { makeWalMaterial, putWalFile, type WalMaterial } from './wal-material.js';

let material: WalMaterial | undefined;
async function wal(): Promise<WalMaterial> {
  material ??= await makeWalMaterial('rules');
  return material;
}

export async function runWalRules(kind: 'fs' | 's3', encrypted: boolean): Promise<void> {
  const m = await wal();
  const repo = await makeRepo(kind, encrypted);
  const env = repo.env;
  const push = (args: string[], extraEnv: Record<string, string> = {}) => runCairn('wal-push', args, { env: { ...env, ...extraEnv }, cwd: m.pgdata });
  const get = (args: string[], extraEnv: Record<string, string> = {}) => runCairn('wal-get', args, { env: { ...env, ...extraEnv }, cwd: m.pgdata });
  const [seg1, seg2, seg3] = m.segments as [string, string, string];

  // First push registers the system; identical re-push succeeds.
  let r = await push([`pg_wal/${seg1}`, seg1]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  r = await push([`pg_wal/${seg1}`, seg1]);
  assert.equal(r.code, 0, `identical re-push: ${r.stderr}`);
  const keys = await repo.keys();
  assert.ok(keys.includes(`main/systems/${m.systemId}.json`), keys.join('\n'));
  assert.ok(keys.includes('main/repo.json'));
  assert.equal(keys.filter((k) => k.includes(seg1)).length, 1, 'one stored copy');

  // Different content under the same name: refused, stored copy unchanged.
  r = await push([`pg_wal/${seg2}`, seg2]);
  assert.equal(r.code, 0, r.stderr);
  const before = await repo.objects(`main/wal/${m.systemId}/`);
  const original = await readFile(join(m.pgdata, 'pg_wal', seg2));
  const altered = Buffer.from(original);
  altered[8192 + 100] = altered[8192 + 100]! ^ 0xff;
  const otherDir = await putWalFile(m, `${seg2}.altered`, altered);
  r = await push([otherDir, seg2]);
  assert.equal(r.code, 4, `different content must fail: ${r.stderr}`);
  assert.equal(r.lines.length, 1, r.stderr);
  assert.match(r.stderr, /already archived .* with different content/);
  assert.deepEqual(await repo.objects(`main/wal/${m.systemId}/`), before, 'stored copies unchanged');

  // wal-get writes an identical file; absent → 1 and nothing written.
  const dest = join(m.pgdata, 'pg_wal', 'RECOVERYXLOG');
  r = await get([seg2, 'pg_wal/RECOVERYXLOG']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await readFile(dest)).equals(original), 'wal-get returns the original bytes');
  r = await get(['0000000100000000000000FE', 'pg_wal/RECOVERYXLOG.absent']);
  assert.equal(r.code, 1, r.stderr);
  assert.ok(!existsSync(join(m.pgdata, 'pg_wal', 'RECOVERYXLOG.absent')));

  // History files: stored once, never overwritten with other content.
  const history = '1\t0/3000000\tno recovery target specified\n';
  await putWalFile(m, '00000002.history', history);
  r = await push(['pg_wal/00000002.history', '00000002.history']);
  assert.equal(r.code, 0, r.stderr);
  r = await push(['pg_wal/00000002.history', '00000002.history']);
  assert.equal(r.code, 0, r.stderr);
  await putWalFile(m, '00000002.history.other', '1\t0/4000000\tother\n');
  r = await push(['pg_wal/00000002.history.other', '00000002.history']);
  assert.equal(r.code, 4, r.stderr);
  r = await get(['00000002.history', 'pg_wal/RECOVERYHISTORY']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(join(m.pgdata, 'pg_wal', 'RECOVERYHISTORY'), 'utf8'), history);
  r = await get(['00000003.history', 'pg_wal/RECOVERYHISTORY']);
  assert.equal(r.code, 1, 'a timeline that never existed is not found');

  // .partial and .backup files.
  const partialName = `${seg3}.partial`;
  await putWalFile(m, partialName, await readFile(join(m.pgdata, 'pg_wal', seg3)));
  r = await push([`pg_wal/${partialName}`, partialName]);
  assert.equal(r.code, 0, r.stderr);
  const backupName = `${seg2}.00000028.backup`;
  const backupText = `START WAL LOCATION: 0/2000028 (file ${seg2})\nSTOP WAL LOCATION: 0/2000100 (file ${seg2})\n`;
  await putWalFile(m, backupName, backupText);
  r = await push([`pg_wal/${backupName}`, backupName]);
  assert.equal(r.code, 0, r.stderr);
  r = await get([backupName, 'pg_wal/RECOVERYXLOG']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(dest, 'utf8'), backupText);

  // A corrupted stored object: wal-get exits 126 and leaves nothing at %p.
  r = await push([`pg_wal/${seg3}`, seg3]);
  assert.equal(r.code, 0, r.stderr);
  const seg3Key = (await repo.keys(`main/wal/${m.systemId}/`)).find((k) => k.slice(k.lastIndexOf('/') + 1).startsWith(seg3 + '-'))!;
  const stored3 = (await repo.objects(seg3Key)).get(seg3Key)!;
  const corrupt = Buffer.from(stored3);
  corrupt[Math.floor(corrupt.length / 2)] = corrupt[Math.floor(corrupt.length / 2)]! ^ 0x55;
  await repo.tamper(seg3Key, corrupt);
  r = await get([seg3, 'pg_wal/RECOVERYXLOG.corrupt', '--retries', '0', '--prefetch', '0']);
  assert.equal(r.code, 126, `corrupted object: ${r.stderr}`);
  assert.match(r.stderr, /checksum|decrypt|corrupt|not a valid|invalid/i);
  assert.ok(!existsSync(join(m.pgdata, 'pg_wal', 'RECOVERYXLOG.corrupt')), 'no file at %p');
  const leftovers = (await readdir(join(m.pgdata, 'pg_wal'))).filter((n) => n.includes('cairn-tmp'));
  assert.deepEqual(leftovers, [], 'no temp files left');
  r = await get([seg3, 'pg_wal/RECOVERYXLOG.corrupt', '--retries', '0', '--prefetch', '0', '--errors-as-not-found']);
  assert.equal(r.code, 1, '--errors-as-not-found turns persistent errors into "not found"');

  if (encrypted) {
    const wrong = await makeKeyFile();
    r = await get([seg1, 'pg_wal/RECOVERYXLOG.wrongkey', '--retries', '0'], { CAIRN_ENCRYPTION_KEY_FILE: wrong });
    assert.equal(r.code, 126, r.stderr);
    assert.equal(r.lines.length, 1, r.stderr);
    assert.match(r.stderr, /encryption key (does not match|\(id [0-9a-f]+\) does not open repository)/);
    assert.ok(!existsSync(join(m.pgdata, 'pg_wal', 'RECOVERYXLOG.wrongkey')));
    r = await push([`pg_wal/${seg1}`, seg1], { CAIRN_ENCRYPTION_KEY_FILE: wrong });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /encryption key (does not match|\(id [0-9a-f]+\) does not open repository)/);
    const { CAIRN_ENCRYPTION_KEY_FILE: _drop, ...noKey } = env;
    r = await runCairn('wal-get', [seg1, 'pg_wal/RECOVERYXLOG.nokey'], { env: noKey, cwd: m.pgdata });
    assert.equal(r.code, 126, r.stderr);
    assert.match(r.stderr, /encrypted and no encryption key/);
  }

  // A second database system is refused until registered explicitly.
  const other = await makeWalMaterial(`other-${kind}`, 1);
  const o1 = other.segments[0]!;
  r = await runCairn('wal-push', [`pg_wal/${o1}`, o1], { env, cwd: other.pgdata });
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /not registered/);
  assert.match(r.stderr, /--register-system/);
  r = await runCairn('wal-push', [`pg_wal/${o1}`, o1, '--register-system'], { env, cwd: other.pgdata });
  assert.equal(r.code, 0, r.stderr);
  // Same segment name, two systems: each restore gets its own.
  r = await runCairn('wal-get', [o1, 'pg_wal/RECOVERYXLOG'], { env, cwd: other.pgdata });
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await readFile(join(other.pgdata, 'pg_wal', 'RECOVERYXLOG'))).equals(await readFile(join(other.pgdata, 'pg_wal', o1))));
  r = await get([o1, 'pg_wal/RECOVERYXLOG']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await readFile(dest)).equals(await readFile(join(m.pgdata, 'pg_wal', o1))), 'first system keeps its own segment');
}
