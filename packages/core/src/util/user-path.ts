// Checks of paths the operator gives (--tmp-dir, --scratch-dir, --pgdata,
// --from-tar, %p): a mistake is a configuration error naming the path and
// what it is, before any work (issue 11: stack traces, exit 70, hangs on a FIFO).

import { constants, statSync, type Stats } from 'node:fs';
import { accessSync } from 'node:fs';
import { CairnError } from '../cli/errors.js';
import { pathErrorToCairn } from '../cli/fs-error.js';

function describe(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'a regular file';
}

function statOrThrow(path: string, what: string): Stats {
  try {
    return statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CairnError('CONFIG_INVALID', `${what} "${path}" does not exist`, { hint: `check ${what}` });
    throw pathErrorToCairn(err) ?? err;
  }
}

/** `path` must be a directory this user can enter and (with `writable`) create files in. */
export function assertUsableDirectory(path: string, what: string, opts: { writable?: boolean } = {}): void {
  const st = statOrThrow(path, what);
  if (!st.isDirectory()) throw new CairnError('CONFIG_INVALID', `${what} "${path}" is ${describe(st)}, not a directory`, { hint: `give ${what} a directory` });
  try {
    accessSync(path, constants.X_OK | (opts.writable ? constants.W_OK : 0) | constants.R_OK);
  } catch (err) {
    throw new CairnError('FILE_UNREADABLE', `${what} "${path}" is not ${opts.writable ? 'writable' : 'readable'} for this user: ${(err as NodeJS.ErrnoException).code ?? 'EACCES'}`, {
      hint: 'check its owner and mode',
    });
  }
}

/**
 * `path` must be something a read will end on: a regular file (a FIFO too,
 * with `allowFifo`, for `--from-tar <(pg_basebackup …)`). Reading a FIFO
 * nobody writes to blocks for ever; a device may never end. A missing path is
 * left to the reader's own message unless `mustExist`.
 */
export function assertReadableFile(path: string, what: string, opts: { allowFifo?: boolean; mustExist?: boolean } = {}): void {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    if (!opts.mustExist) return; // the reader names the path and the error
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CairnError('CONFIG_INVALID', `${what} "${path}" does not exist`, { hint: `check ${what}` });
    throw pathErrorToCairn(err) ?? err;
  }
  if (st.isFile() || (opts.allowFifo && st.isFIFO())) return;
  throw new CairnError('CONFIG_INVALID', `${what} "${path}" is ${describe(st)}, not a regular file`, { hint: 'a FIFO, device or directory is refused: reading it may never end' });
}
