// Page-level diff and incr backups on an S3 repository, encrypted (scenario in page-chain.ts).

import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { makeRepo } from './repo-fixture.js';
import { pageChainScenario } from './page-chain.js';

after(runCleanups);

test('page-level chains across truncations, extensions, recreated files, new databases and a timeline switch (s3, encrypted)', { timeout: 900_000 }, async () => {
  await pageChainScenario(await makeRepo('s3', true), 'pages-s3');
});
