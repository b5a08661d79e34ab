// A second local OS user for the hostile cases of the threat model
// (docs/threat-model.md): another account on the database host that plants
// directories, files and links where cairn looks, before or while it runs.
import { execFileSync } from 'node:child_process';
import { runAsMe, type RunOptions, type RunResult, type PgUser } from './run-as.js';

export const HOSTILE_USER = 'cairnhostile';
let cache: PgUser | undefined;

function lookup(): PgUser | undefined {
  try {
    const line = execFileSync('getent', ['passwd', HOSTILE_USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const [, , uid, gid] = line.split(':');
    return uid === undefined || gid === undefined ? undefined : { name: HOSTILE_USER, uid: Number(uid), gid: Number(gid) };
  } catch {
    return undefined;
  }
}

/** The hostile user, created (useradd, no home, no login shell) on first use; tests must run as root. */
export function hostileUser(): PgUser {
  if (cache) return cache;
  if (process.getuid?.() !== 0) throw new Error('hostile-user tests need root (to create and switch to a second user)');
  let u = lookup();
  if (!u) {
    try {
      execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', HOSTILE_USER], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      // Another test process may have created it at the same moment.
      if (!lookup()) throw new Error(`could not create the user "${HOSTILE_USER}": ${(err as Error).message}`);
    }
    u = lookup();
    if (!u) throw new Error(`user "${HOSTILE_USER}" missing right after useradd`);
  }
  return (cache = u);
}

/** Runs `cmd args` as the hostile user (setpriv, like run-as.ts does for the pg user); throws on failure unless allowFail. */
export function runAsHostile(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const u = hostileUser();
  return runAsMe('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', '--', cmd, ...args], opts);
}

/** A shell script run as the hostile user (`sh -c`), with `$1…` from args; umask 000 so what it plants is open to all. */
export function hostileShell(script: string, args: string[] = [], opts: RunOptions = {}): Promise<RunResult> {
  return runAsHostile('/bin/sh', ['-c', `umask 000; ${script}`, 'hostile', ...args], opts);
}
