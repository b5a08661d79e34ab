// Point-in-time recovery on an S3 repository, encrypted (scenario in pitr.ts).

import { after } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { describePitr } from './pitr.js';

after(runCleanups);

describePitr('s3', true, { timelines: true, exclusiveXid: false });
