// Local spool directories (push-ahead records, prefetched WAL): private to the
// user, outside pg_wal/, one per data directory so two clusters on one host
// never share entries.

import { lstat, mkdir } from 'node:fs/promises';
import { CairnError } from '../cli/errors.js';

/**
 * Creates `dir` (0700) and refuses it unless it is a real directory owned by
 * us: a spool in a shared /tmp must not be a directory another user planted.
 */
export async function ensurePrivateDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (!st.isDirectory() || st.uid !== uid) {
    throw new CairnError('CONFIG_INVALID', `spool directory "${dir}" is not a directory owned by this user`, {
      hint: 'remove it, or point --spool-dir / CAIRN_SPOOL_DIR at a private directory',
    });
  }
  return dir;
}

/**
 * The spool root: the configured directory, else $TMPDIR/cairn-spool-<euid>.
 * The bin wrappers compute the same path in bash for their fast paths
 * (`${CAIRN_SPOOL_DIR:-${TMPDIR:-/tmp}/cairn-spool-$EUID}`): keep them in step.
 */
export function spoolRoot(configured: string | undefined, env: NodeJS.ProcessEnv): string {
  if (configured) return configured;
  const uid = typeof process.geteuid === 'function' ? process.geteuid() : 0;
  return `${env['TMPDIR'] || '/tmp'}/cairn-spool-${uid}`;
}

/**
 * One data directory's spool: `<root>/pgdata<physical cwd>` (bash:
 * "$root/pgdata$(pwd -P)"). PostgreSQL runs archive and restore commands in
 * the data directory, so the path needs no hashing and a wrapper finds it.
 */
export function pgdataSpoolDir(root: string, physicalCwd: string): string {
  return `${root.replace(/\/+$/, '')}/pgdata${physicalCwd}`;
}

/** Creates the spool root privately (checked), then `dir` below it. */
export async function ensureSpoolDir(root: string, dir: string): Promise<void> {
  await ensurePrivateDir(root.replace(/\/+$/, '') || '/');
  await mkdir(dir, { recursive: true, mode: 0o700 });
}
