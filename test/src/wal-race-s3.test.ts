import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { runWalRace } from './wal-race.js';

after(runCleanups);

// s3rver ignores If-None-Match: the protocol must hold without conditional writes.
test('s3 repository without conditional writes: racing pushes of one segment never lose it', { timeout: 1_800_000 }, async () => {
  await runWalRace('s3', 30);
});
