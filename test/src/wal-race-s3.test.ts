import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { runWalRace } from './wal-race.js';

after(runCleanups);

/** Rounds of each kind (identical, different bytes); CAIRN_RACE_ROUNDS to run more or fewer. */
const ROUNDS = Number(process.env['CAIRN_RACE_ROUNDS'] ?? 12);

// s3rver ignores If-None-Match: the protocol must hold without conditional writes.
test('s3 repository without conditional writes: racing pushes of one segment never lose it', { timeout: 1_800_000 }, async () => {
  await runWalRace('s3', ROUNDS);
});
