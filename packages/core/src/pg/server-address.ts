// Where a tool reaches PostgreSQL, chosen as libpq (psql, pg_dump) chooses
// (issue 14): node-postgres alone would go to localhost over TCP when PGHOST
// is unset, which a packaged cluster (local = peer, host = scram) refuses with
// "client password must be a string" (docs/gotchas.md §Real hosts).

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** libpq's default socket directories: Debian's first, then upstream's. */
export const DEFAULT_SOCKET_DIRS = ['/var/run/postgresql', '/tmp'] as const;

export interface ServerAddress {
  /** A socket directory (starts with "/") or a host name. */
  host: string;
  port: number;
  /** How it was found, for the connection error's hint. */
  from: 'PGHOST' | 'postmaster.pid' | 'socket' | 'localhost';
}

export interface AddressOptions {
  /** The data directory of a local server: its postmaster.pid names the socket and port it serves. */
  pgdata?: string;
  /** Where to look for a socket when PGHOST is unset (tests point it elsewhere). */
  socketDirs?: readonly string[];
}

const set = (v: string | undefined) => (v !== undefined && v !== '' ? v : undefined);

/**
 * 1. PGHOST (and PGPORT), when set: the operator's choice.
 * 2. With `pgdata`: the socket directory and port in lines 5 and 4 of the
 *    running server's postmaster.pid (its listen address, line 6, when it
 *    has no socket), so a local backup reaches the server that owns the data
 *    directory even when PGPORT names another.
 * 3. The first default socket directory holding `.s.PGSQL.<PGPORT or 5432>`.
 * 4. localhost over TCP, as cairn did before: a container with no socket.
 */
export function serverAddress(env: NodeJS.ProcessEnv, opts: AddressOptions = {}): ServerAddress {
  const envPort = Number(set(env['PGPORT']) ?? 5432);
  const port = Number.isInteger(envPort) && envPort > 0 && envPort < 65536 ? envPort : 5432;
  const host = set(env['PGHOST']);
  if (host !== undefined) return { host, port, from: 'PGHOST' };
  if (opts.pgdata !== undefined) {
    const pid = fromPostmasterPid(opts.pgdata);
    if (pid !== undefined) return { ...pid, from: 'postmaster.pid' };
  }
  for (const dir of opts.socketDirs ?? DEFAULT_SOCKET_DIRS) {
    if (isSocket(join(dir, `.s.PGSQL.${port}`))) return { host: dir, port, from: 'socket' };
  }
  return { host: 'localhost', port, from: 'localhost' };
}

/**
 * The tool's environment with the server's address in PGHOST and PGPORT, so
 * node-postgres and the libpq programs it runs (pg_dump, psql,
 * pg_basebackup) reach one server. Unchanged when nothing better than
 * localhost was found: libpq's own compiled-in socket directory may know more.
 */
export function libpqEnv(env: NodeJS.ProcessEnv, opts: AddressOptions = {}): NodeJS.ProcessEnv {
  const addr = serverAddress(env, opts);
  return addr.from === 'postmaster.pid' || addr.from === 'socket' ? { ...env, PGHOST: addr.host, PGPORT: String(addr.port) } : env;
}

/** "socket /var/run/postgresql port 5432 (from postmaster.pid)", for messages. */
export function describeAddress(addr: ServerAddress): string {
  const where = addr.host.startsWith('/') ? `socket ${addr.host}` : `host ${addr.host}`;
  const from = addr.from === 'socket' ? ' (libpq\'s default socket directory)' : addr.from === 'localhost' ? ' (no socket found in /var/run/postgresql or /tmp)' : ` (from ${addr.from})`;
  return `${where} port ${addr.port}${from}`;
}

/** The address in a running server's postmaster.pid; undefined when it is absent, unreadable or not a server's. */
function fromPostmasterPid(pgdata: string): { host: string; port: number } | undefined {
  let text: string;
  try {
    text = readFileSync(join(pgdata, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  // Lines: pid, data directory, start time, port, socket directory, listen address, shmem key, status.
  const lines = text.split('\n');
  const port = Number(lines[3]);
  if (lines.length < 6 || !Number.isInteger(port) || port <= 0 || port >= 65536) return undefined;
  const socketDir = lines[4]!.trim();
  if (socketDir !== '') return { host: socketDir, port };
  const listen = lines[5]!.split(',')[0]!.trim();
  if (listen === '' || listen === '*' || listen === '0.0.0.0' || listen === '::') return { host: 'localhost', port };
  return { host: listen, port };
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}
