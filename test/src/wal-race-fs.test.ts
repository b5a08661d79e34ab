import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { runWalRace } from './wal-race.js';

after(runCleanups);

test('file repository: racing pushes of one segment never lose it', { timeout: 1_800_000 }, async () => {
  await runWalRace('fs', 30);
});
