// A filesystem error on a path the operator gave (--pgdata, --tmp-dir, a key
// file, %p's directory, --repo /path) is a configuration error naming the
// path (exit 3; 126 for wal-get), never "internal error" (exit 70).

import { CairnError } from './errors.js';

/**
 * Errors that say something about the path or its permissions, not about
 * cairn. localWriteError (util/local-file.ts) words the writes it wraps
 * better (the file meant, not its temp name); this is the floor for the rest.
 */
const PATH_ERRORS = new Set(['ENOENT', 'EACCES', 'EPERM', 'ENOTDIR', 'EISDIR', 'ELOOP', 'ENAMETOOLONG', 'EROFS', 'ENXIO', 'ENODEV', 'EEXIST', 'ENOTEMPTY', 'EXDEV', 'EBUSY', 'ETXTBSY']);
/** A full file system or quota: the host's problem, FILE_UNWRITABLE like localWriteError's. */
const SPACE_ERRORS = new Set(['ENOSPC', 'EDQUOT']);

/** The CairnError for a Node filesystem error with a path, or undefined for anything else. */
export function pathErrorToCairn(err: unknown): CairnError | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  if (!(e instanceof Error) || typeof e.code !== 'string' || typeof e.path !== 'string' || (!PATH_ERRORS.has(e.code) && !SPACE_ERRORS.has(e.code))) return undefined;
  // "ENOENT: no such file or directory, open '/x'" → "no such file or directory".
  const what = /^[A-Z]+: ([^,]+)/.exec(e.message)?.[1];
  const destPath = (e as { dest?: unknown }).dest;
  const dest = typeof destPath === 'string' ? ` -> "${destPath}"` : '';
  return new CairnError(SPACE_ERRORS.has(e.code) ? 'FILE_UNWRITABLE' : 'FILE_UNREADABLE', `cannot ${e.syscall ?? 'use'} "${e.path}"${dest}: ${e.code}${what ? ` (${what})` : ''}`, {
    hint: SPACE_ERRORS.has(e.code) ? 'free space on the file system holding it' : 'check the path and that this user may use it',
    cause: err,
  });
}
