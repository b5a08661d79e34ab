import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { runWalRules } from './wal-rules.js';

after(runCleanups);

test('s3 repository: archive and restore command rules', { timeout: 300_000 }, async () => {
  await runWalRules('s3', false);
});

test('s3 repository, encrypted: archive and restore command rules', { timeout: 300_000 }, async () => {
  await runWalRules('s3', true);
});
