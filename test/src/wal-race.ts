// Racing cairn-wal-push processes (issue 11, Build 9): two archivers of one
// system push the same segment name at the same moment, many rounds, on a
// file repository and on an S3 server that ignores If-None-Match. After
// every round exactly one version is stored and cairn-wal-get serves its
// bytes; with identical bytes both pushes succeed, with different bytes
// exactly one does and the other fails (1–125) with the duplicate message.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';
import { makeRepo } from './repo-fixture.js';
import { runCairn, type ToolRun } from './tools.js';
import { makeWalMaterial, type WalMaterial } from './wal-material.js';

let material: WalMaterial | undefined;

/** A data directory of its own (pg_control, one segment): each archiver has one, as on two hosts. */
async function archiverDir(m: WalMaterial, label: string, segs: Record<string, Buffer>): Promise<string> {
  const dir = await makeTempDir(`race-${label}`);
  await mkdir(join(dir, 'global'), { recursive: true });
  await mkdir(join(dir, 'pg_wal', 'archive_status'), { recursive: true });
  await copyFile(join(m.pgdata, 'global', 'pg_control'), join(dir, 'global', 'pg_control'));
  for (const [name, bytes] of Object.entries(segs)) await writeFile(join(dir, 'pg_wal', name), bytes, { mode: 0o600 });
  await chownToPgUser(dir, { recursive: true });
  return dir;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export async function runWalRace(kind: 'fs' | 's3', rounds: number): Promise<void> {
  material ??= await makeWalMaterial('race');
  const m = material;
  const [seg0, seg] = m.segments as [string, string];
  const original = await readFile(join(m.pgdata, 'pg_wal', seg));
  const altered = Buffer.from(original);
  // Past the page header, so wal-push still takes it for this segment.
  altered[8192 + 100] = altered[8192 + 100]! ^ 0xff;
  const first = await readFile(join(m.pgdata, 'pg_wal', seg0));
  const dirA = await archiverDir(m, 'a', { [seg0]: first, [seg]: original });
  const dirB = await archiverDir(m, 'b', { [seg]: original });
  const dirC = await archiverDir(m, 'c', { [seg]: altered });
  const failures: string[] = [];

  for (const mode of ['identical', 'different'] as const) {
    for (let round = 0; round < rounds; round++) {
      const repo = await makeRepo(kind, false);
      // Each archiver with its own spool, as on two hosts: the spool's claim would serialise them on one.
      const push = async (dir: string): Promise<ToolRun> =>
        runCairn('wal-push', [`pg_wal/${seg}`, seg, '--push-ahead', '0'], { env: { ...repo.env, CAIRN_SPOOL_DIR: await makeTempDir('race-spool') }, cwd: dir });
      const setup = await runCairn('wal-push', [`pg_wal/${seg0}`, seg0, '--push-ahead', '0'], { env: repo.env, cwd: dirA });
      assert.equal(setup.code, 0, setup.stderr);
      const other = mode === 'identical' ? dirB : dirC;
      const [a, b] = await Promise.all([push(dirA), push(other)]);
      const tag = `${kind} ${mode} round ${round}: exits ${a.code}/${b.code}`;
      const stored = (await repo.keys(`main/wal/${m.systemId}/`)).filter((k) => k.slice(k.lastIndexOf('/') + 1).startsWith(`${seg}-`));
      const get = await runCairn('wal-get', [seg, 'pg_wal/RECOVERYXLOG', '--prefetch', '0'], { env: repo.env, cwd: dirB });
      const served = get.code === 0 ? await readFile(join(dirB, 'pg_wal', 'RECOVERYXLOG')) : undefined;
      const intents = await repo.keys('main/locks/');
      const problems: string[] = [];
      if (stored.length !== 1) problems.push(`${stored.length} stored versions`);
      if (get.code !== 0) problems.push(`wal-get exit ${get.code}: ${get.stderr.trim().slice(0, 160)}`);
      if (intents.length > 0) problems.push(`left behind: ${intents.join(', ')}`);
      if (mode === 'identical') {
        if (a.code !== 0 || b.code !== 0) problems.push(`stderr: ${(a.stderr + b.stderr).trim().slice(0, 300)}`);
        if (served && !served.equals(original)) problems.push('wal-get served other bytes');
      } else {
        const winners = [a, b].filter((r) => r.code === 0).length;
        const loser = a.code === 0 ? b : a;
        if (winners !== 1) problems.push(`${winners} pushes succeeded`);
        else {
          if (loser.code < 1 || loser.code > 125) problems.push(`loser exit ${loser.code}`);
          if (!/already archived .* with different content/.test(loser.stderr)) problems.push(`loser said: ${loser.stderr.trim().slice(0, 300)}`);
          const want = a.code === 0 ? original : altered;
          if (served && !served.equals(want)) problems.push('wal-get served the losing bytes');
          if (stored.length === 1 && !stored[0]!.includes(sha(want))) problems.push('the stored version is the loser\'s');
        }
      }
      if (problems.length > 0) failures.push(`${tag}: ${problems.join('; ')}`);
    }
  }
  assert.deepEqual(failures, [], `${failures.length} of ${2 * rounds} rounds broke the race rules:\n${failures.join('\n')}`);
}
