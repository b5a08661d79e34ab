// Reader leases on a file repository, unencrypted (scenarios in reader-lease.ts).

import { after } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { describeReaderLeases } from './reader-lease.js';

after(runCleanups);

describeReaderLeases('fs');
