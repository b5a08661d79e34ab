import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { runWalRace } from './wal-race.js';

after(runCleanups);

/** Rounds of each kind (identical, different bytes); CAIRN_RACE_ROUNDS to run more or fewer. */
const ROUNDS = Number(process.env['CAIRN_RACE_ROUNDS'] ?? 12);

test('file repository: racing pushes of one segment never lose it', { timeout: 1_800_000 }, async () => {
  await runWalRace('fs', ROUNDS);
});
