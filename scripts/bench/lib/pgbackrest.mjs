// pgBackRest for the bench: installed when missing, and a config file per
// use (its own repo, log, lock and spool dirs, zstd at the bench's level).

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { aptInstall, problem } from './common.mjs';
import { chownPg, pgUser } from './proc.mjs';

export const PGBACKREST = '/usr/bin/pgbackrest';
export const STANZA = 'bench';

/**
 * Installs pgBackRest with apt-get when it is missing. False when that
 * fails (said as a problem): the caller then skips its contenders.
 */
export async function ensurePgbackrest() {
  if (existsSync(PGBACKREST)) return true;
  try {
    await aptInstall('pgbackrest');
    return true;
  } catch (err) {
    problem(`pgBackRest could not be installed, its contenders are skipped: ${err.message}`);
    return false;
  }
}

/**
 * Writes <dir>/pgbackrest.conf and returns its path: [global] with `repo`,
 * zstd at `level`, dirs under `dir`, warnings on the console, then `extra`
 * (which may override any of these); stanza STANZA for `pgdata` (default the
 * server's), with the port, socket dir and user of `server` when given.
 */
export function writePgbrConf(dir, { repo, level, server, pgdata = server?.pgdata, extra = {} }) {
  for (const d of ['log', 'lock', 'spool']) mkdirSync(join(dir, d), { recursive: true });
  const global = {
    'repo1-path': repo,
    'compress-type': 'zst',
    'compress-level': String(level),
    'log-path': join(dir, 'log'),
    'lock-path': join(dir, 'lock'),
    'spool-path': join(dir, 'spool'),
    'log-level-console': 'warn',
    'log-level-stderr': 'off',
    'log-level-file': 'off',
    ...extra,
  };
  const stanza = { 'pg1-path': pgdata };
  if (server) Object.assign(stanza, { 'pg1-port': String(server.port), 'pg1-socket-path': server.socketDir, 'pg1-user': pgUser.name });
  const text =
    '[global]\n' + Object.entries(global).map(([k, v]) => `${k}=${v}`).join('\n') +
    `\n\n[${STANZA}]\n` + Object.entries(stanza).map(([k, v]) => `${k}=${v}`).join('\n') + '\n';
  const file = join(dir, 'pgbackrest.conf');
  writeFileSync(file, text);
  for (const p of [dir, join(dir, 'log'), join(dir, 'lock'), join(dir, 'spool'), file]) chownPg(p);
  return file;
}
