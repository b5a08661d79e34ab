// Connecting to cairn-drill's scratch server: over its unix socket in the
// scratch directory only (it listens on no TCP address), never through the
// PG* variables, which name the production server.

import type { Client } from 'pg';
import { CairnError } from '../cli/errors.js';

export interface ScratchAddress {
  /** The socket directory. */
  socketDir: string;
  port: number;
  user: string;
}

/** A connected client; PG_CONNECT when the scratch server does not answer. */
export async function connectScratch(addr: ScratchAddress, database: string): Promise<Client> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ host: addr.socketDir, port: addr.port, user: addr.user, database, application_name: 'cairn-drill' });
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw new CairnError('PG_CONNECT', `cannot connect to the scratch server as ${JSON.stringify(addr.user)} to database ${JSON.stringify(database)}: ${(err as Error).message}`, {
      hint: 'give --db-user with a superuser of the backed-up cluster and --check-db with a database it has',
      cause: err,
    });
  }
  client.on('error', () => {});
  return client;
}
