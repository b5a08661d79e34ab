// Point-in-time recovery on a file repository, unencrypted (scenario in pitr.ts).

import { after } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { describePitr } from './pitr.js';

after(runCleanups);

describePitr('fs', false, { timelines: true, exclusiveXid: true });
