import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { runArchiveRestore } from './archive-restore.js';

after(runCleanups);

test('fs repository: archive under load, restore from pg_basebackup -X none through wal-get', { timeout: 600_000 }, async () => {
  await runArchiveRestore('fs', false);
});

test('fs repository, encrypted: archive under load, restore through wal-get', { timeout: 600_000 }, async () => {
  await runArchiveRestore('fs', true);
});
