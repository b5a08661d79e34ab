// Reader leases on an S3 repository, encrypted (scenarios in reader-lease.ts).

import { after } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { describeReaderLeases } from './reader-lease.js';

after(runCleanups);

describeReaderLeases('s3');
