// Connecting to PostgreSQL through libpq's environment (PGHOST, PGPORT,
// PGUSER, PGPASSWORD or PGPASSFILE, PGSSLMODE, PGDATABASE), as psql does.
// `pg` is loaded on demand: tools that never connect do not pay for it.

import { userInfo } from 'node:os';
import type { Client, ClientConfig } from 'pg';
import { CairnError } from '../cli/errors.js';
import { lookupPgpass, pgpassPath } from './pgpass.js';
import { describeAddress, serverAddress, type ServerAddress } from './server-address.js';

export type PgClient = Client;

export interface ConnectOptions {
  /** The tool context's environment, where PGHOST and the rest are read. */
  env: NodeJS.ProcessEnv;
  /** Where the server is (default: serverAddress(env), libpq's choice). */
  address?: ServerAddress;
  /** application_name, shown in pg_stat_activity (e.g. cairn-dump). */
  application: string;
  /** Database to connect to; default PGDATABASE, else the user's name (libpq's rule). */
  database?: string;
  /** What the role needs, for the error's hint (e.g. "a role that may read every table"). */
  needs?: string;
}

/**
 * node-postgres settings from the context's environment, each named
 * explicitly: pg falls back to process.env for any it is not given, and
 * nothing below a tool's cli.ts reads process.env (docs/style.md). The user
 * is libpq's: PGUSER, else the effective OS user (not $USER, which su keeps).
 * Without PGPASSWORD the password comes from the password file, read as libpq
 * reads it (pgpass.ts), only when the server asks for one. `ignored` collects
 * why a password file was passed over, for the connection error.
 */
export function pgClientConfig(o: ConnectOptions, ignored: string[] = []): ClientConfig {
  const env = o.env;
  const set = (v: string | undefined) => (v !== undefined && v !== '' ? v : undefined);
  const user = set(env['PGUSER']) ?? userInfo().username;
  const addr = o.address ?? serverAddress(env);
  const timeout = Number(set(env['PGCONNECT_TIMEOUT']) ?? 0);
  const config: ClientConfig = {
    host: addr.host,
    port: addr.port,
    user,
    database: o.database ?? set(env['PGDATABASE']) ?? user,
    application_name: o.application,
    // libpq never uses TLS over a Unix socket; pg would ask and fail.
    ssl: addr.host.startsWith('/') ? false : sslFromMode(set(env['PGSSLMODE'])),
  };
  const password = set(env['PGPASSWORD']);
  if (password !== undefined) config.password = password;
  else {
    const lookup = { host: addr.host, port: addr.port, database: config.database!, user };
    config.password = async () => {
      const found = lookupPgpass(pgpassPath(env), lookup);
      if (found.ignored !== undefined) ignored.push(found.ignored);
      // undefined: no password to offer (pg then says the server wanted one).
      return found.password as string;
    };
  }
  const options = set(env['PGOPTIONS']);
  if (options !== undefined) config.options = options;
  if (Number.isFinite(timeout) && timeout > 0) config.connectionTimeoutMillis = timeout * 1000;
  return config;
}

/**
 * PGSSLMODE exactly as node-postgres reads it from the environment, so moving
 * the read here changes nothing. (It is not libpq's: "prefer" does not fall
 * back to plain and "require" verifies the certificate; docs/gotchas.md.)
 */
function sslFromMode(mode: string | undefined): ClientConfig['ssl'] {
  switch (mode) {
    case 'prefer':
    case 'require':
    case 'verify-ca':
    case 'verify-full':
      return true;
    case 'no-verify':
      return { rejectUnauthorized: false };
    default:
      return false;
  }
}

/** A connected client; PG_CONNECT (exit 3) with a hint when the server cannot be reached. */
export async function connectPg(o: ConnectOptions): Promise<PgClient> {
  const { default: pg } = await import('pg');
  const addr = o.address ?? serverAddress(o.env);
  const ignored: string[] = [];
  const client = new pg.Client(pgClientConfig({ ...o, address: addr }, ignored));
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    // pg's words when the server wants a password and it has none.
    const why = /client password must be a string/.test((err as Error).message)
      ? 'the server asks for a password and none was found (PGPASSWORD, or a matching line in the password file)'
      : (err as Error).message;
    throw new CairnError('PG_CONNECT', `cannot connect to PostgreSQL${o.database !== undefined ? ` database ${JSON.stringify(o.database)}` : ''} at ${describeAddress(addr)}: ${why}`, {
      hint: ignored.length > 0
        ? `${ignored[0]}, so it was not read`
        : `set PGHOST, PGPORT, PGUSER${o.needs ? ` (${o.needs})` : ''} and PGPASSWORD or PGPASSFILE as for psql`,
      cause: err,
    });
  }
  // A server that goes away mid-work emits 'error' on the client; without a
  // listener that would crash the process instead of failing the query.
  client.on('error', () => {});
  return client;
}

export interface ServerInfo {
  /** server_version_num, e.g. 150014. */
  versionNum: number;
  /** "15" (the major, as pg_dump and the bin dirs name it). */
  major: string;
  /** The database system identifier (pg_control_system()). */
  systemId: string;
}

export async function readServerInfo(client: PgClient): Promise<ServerInfo> {
  const r = await client.query<{ v: string; sys: string }>(
    `select current_setting('server_version_num') v, (select system_identifier::text from pg_control_system()) sys`,
  );
  const versionNum = Number(r.rows[0]!.v);
  return { versionNum, major: String(Math.floor(versionNum / 10000)), systemId: r.rows[0]!.sys };
}

/** A libpq connection string naming only a database: `-d` with a name holding '=' would be read as one anyway. */
export function dbnameConninfo(database: string): string {
  return `dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A quoted SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
