// The password file (~/.pgpass, or PGPASSFILE), read as libpq reads it
// (PostgreSQL docs, "The Password File"; libpq's passwordFromFile). node-postgres
// reads it too when no password is given, but prints a deprecation warning
// each time it finds one (its reader goes away in pg 9) and matches a socket
// connection only by the socket's path, where libpq also takes "localhost".
//
// The rules kept from libpq:
//   - lines are hostname:port:database:username:password; '#' starts a
//     comment line; '\' escapes ':' and '\'; '*' alone matches anything;
//   - the first matching line wins;
//   - a connection over the default socket directory matches "localhost"
//     (both defaults here: Debian's /var/run/postgresql and upstream's /tmp);
//   - a file that is not a regular file, or that its group or others may
//     read or write, is ignored (libpq warns; here the reason goes into the
//     connection error's hint).

import { readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_SOCKET_DIRS } from './server-address.js';

export interface PgpassLookup {
  host: string;
  port: number;
  database: string;
  user: string;
}

export interface PgpassResult {
  password?: string;
  /** Why the file was not read, when it exists and was ignored. */
  ignored?: string;
}

/** The password file libpq would read: PGPASSFILE, else .pgpass in the user's home directory. */
export function pgpassPath(env: NodeJS.ProcessEnv): string {
  const given = env['PGPASSFILE'];
  if (given !== undefined && given !== '') return given;
  return join(userInfo().homedir, '.pgpass');
}

/** The password for `c` in the file at `path` (see above); nothing when the file is absent or has no matching line. */
export function lookupPgpass(path: string, c: PgpassLookup): PgpassResult {
  let st;
  try {
    st = statSync(path);
  } catch {
    return {};
  }
  if (!st.isFile()) return { ignored: `password file "${path}" is not a plain file` };
  if ((st.mode & 0o077) !== 0) return { ignored: `password file "${path}" has group or world access; permissions should be u=rw (0600) or less` };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { ignored: `password file "${path}" cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
  const host = c.host === '' || (DEFAULT_SOCKET_DIRS as readonly string[]).includes(c.host) ? 'localhost' : c.host;
  const want = [host, String(c.port), c.database, c.user];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line === '' || line.startsWith('#')) continue;
    let rest: string | undefined = line;
    for (const token of want) {
      rest = matchField(rest, token);
      if (rest === undefined) break;
    }
    if (rest !== undefined) return { password: unescapePassword(rest) };
  }
  return {};
}

/** If the line's first field matches `token`, the rest of the line after its ':'; else undefined. */
function matchField(line: string, token: string): string | undefined {
  if (line.startsWith('*:')) return line.slice(2);
  let i = 0;
  let t = 0;
  while (i < line.length) {
    let escaped = false;
    if (line[i] === '\\') {
      if (i + 1 === line.length) return undefined;
      i++;
      escaped = true;
    }
    // As in libpq, an unescaped ':' ends the field only once the token is
    // used up; before that it is compared like any other character.
    if (!escaped && line[i] === ':' && t === token.length) return line.slice(i + 1);
    if (t >= token.length || line[i] !== token[t]) return undefined;
    i++;
    t++;
  }
  return undefined; // a line with fewer than five fields matches nothing
}

/** The password field: up to the next unescaped ':', escapes removed. */
function unescapePassword(field: string): string {
  let out = '';
  for (let i = 0; i < field.length && field[i] !== ':'; i++) {
    if (field[i] === '\\' && i + 1 < field.length) i++;
    out += field[i];
  }
  return out;
}
