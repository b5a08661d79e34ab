import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { runWalRules } from './wal-rules.js';

after(runCleanups);

test('fs repository: archive and restore command rules', { timeout: 300_000 }, async () => {
  await runWalRules('fs', false);
});

test('fs repository, encrypted: archive and restore command rules', { timeout: 300_000 }, async () => {
  await runWalRules('fs', true);
});
