// The directory cairn-restore writes into: what --force and --delta may act
// on, the marker of a restore in progress, and directories made or checked
// with lstat so nothing is written through a symbolic link (issue 11).

import { closeSync, lstatSync, openSync, writeSync } from 'node:fs';
import { chmod, lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CairnError } from '@cairn/core/cli/errors';
import { RESTORE_WRITE_FLAGS } from '@cairn/core/backup/restore-file';
import { quote } from '@cairn/core/wal/quote';

/**
 * Written first into the data directory and removed after pg_control, last:
 * a restore that stopped half-way (before PG_VERSION was written) is still
 * recognised by the next `--force` or `--delta` as a directory it may empty.
 */
export const RESTORE_MARKER = 'cairn-restore.in-progress';

function isRegularFile(path: string): boolean {
  try {
    return lstatSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * `--force` and `--delta` remove what the backup lacks: only in a PostgreSQL
 * data directory (PG_VERSION) or one a cairn-restore left unfinished (the
 * marker). Anything else is most likely a typo in --pgdata; exit 3 with
 * nothing touched. An empty directory needs no flag at all.
 */
export function checkDestructiveTarget(pgdata: string, flag: '--force' | '--delta'): void {
  if (isRegularFile(join(pgdata, 'PG_VERSION')) || isRegularFile(join(pgdata, RESTORE_MARKER))) return;
  throw new CairnError('CONFIG_INVALID', `${quote(pgdata)} is not a PostgreSQL data directory (no PG_VERSION): ${flag} would remove what is there`, {
    hint: `check --pgdata; ${flag} acts only on an empty directory, a data directory, or one an interrupted cairn-restore left (${RESTORE_MARKER})`,
  });
}

/** Creates or truncates a small file without following a link in its place (made durable with the rest, before pg_control). */
export function writeFileNoFollow(path: string, data: string | Buffer, mode = 0o600): void {
  const fd = openSync(path, RESTORE_WRITE_FLAGS, mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
  } finally {
    closeSync(fd);
  }
}

export function writeRestoreMarker(pgdata: string, backup: string, now: Date): void {
  writeFileNoFollow(join(pgdata, RESTORE_MARKER), `cairn-restore of backup ${backup} started at ${now.toISOString()}; not finished while this file exists\n`);
}

/**
 * Makes (or checks) `root/rel` component by component with lstat: a missing
 * directory is created with `mode`, a real one is kept, anything else (a
 * symbolic link, a file) is refused — a restore never writes through it.
 * `done` remembers the directories checked already.
 */
export async function ensureRealDir(root: string, rel: string, mode: number, done: Set<string>): Promise<string> {
  let cur = root;
  let curRel = '';
  for (const seg of rel === '' ? [] : rel.split('/')) {
    cur = join(cur, seg);
    curRel = curRel === '' ? seg : `${curRel}/${seg}`;
    const id = `${root}\0${curRel}`;
    if (done.has(id)) continue;
    let st = await lstat(cur).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (st === undefined) {
      await mkdir(cur, { mode }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      st = await lstat(cur);
      // mkdir's mode passes through the umask.
      if (st.isDirectory() && (st.mode & 0o7777) !== mode) await chmod(cur, mode);
    }
    if (!st.isDirectory()) {
      throw new CairnError('CONFIG_INVALID', `${quote(cur)} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}: cairn-restore does not write through it`, {
        hint: 'remove it (or restore into an empty directory); only the tablespace links the backup describes are followed',
      });
    }
    done.add(id);
  }
  return cur;
}
