// Page-level diff and incr backups on a fs repository (scenario in page-chain.ts).

import { after, test } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { makeRepo } from './repo-fixture.js';
import { pageChainScenario } from './page-chain.js';

after(runCleanups);

test('page-level chains across truncations, extensions, recreated files, new databases and a timeline switch (fs)', { timeout: 900_000 }, async () => {
  await pageChainScenario(await makeRepo('fs', false), 'pages-fs');
});
