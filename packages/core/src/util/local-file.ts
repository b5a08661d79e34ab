// Local files written so a reader never sees a partial one: a temp name in the
// same directory, fsync, rename, fsync the directory.

import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CairnError } from '../cli/errors.js';

/** What each errno of a failed local write means, and what to do about it. */
const WRITE_ERRNOS: Record<string, { what: string; hint: (dir: string) => string }> = {
  ENOSPC: { what: 'no space left on device', hint: (dir) => `free space on the file system holding "${dir}"` },
  EDQUOT: { what: 'disk quota exceeded', hint: (dir) => `free space or raise the quota on the file system holding "${dir}"` },
  EROFS: { what: 'read-only file system', hint: (dir) => `mount the file system holding "${dir}" read-write` },
  EACCES: { what: 'permission denied', hint: (dir) => `make "${dir}" writable for the user cairn runs as` },
  EPERM: { what: 'operation not permitted', hint: (dir) => `make "${dir}" writable for the user cairn runs as` },
};

/**
 * A local write that failed for a reason of the host (full disk, quota,
 * read-only mount, permissions) as a configuration error naming the file
 * (exit 3; wal-get's 126), never "a bug in cairn" (issue 11). Anything else
 * passes unchanged.
 */
export function localWriteError(err: unknown, path: string): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (err instanceof CairnError || typeof code !== 'string') return err;
  const known = WRITE_ERRNOS[code];
  if (known === undefined) return err;
  return new CairnError('FILE_UNWRITABLE', `cannot write "${path}": ${known.what} (${code})`, { hint: known.hint(dirname(path)), cause: err });
}

export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.cairn-tmp.${process.pid}.${randomBytes(4).toString('hex')}`);
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes a file atomically. `fill` writes the content to the open temp file;
 * if it throws, the temp file is removed and `path` is left as it was.
 */
export async function writeFileAtomic(
  path: string,
  fill: (fh: FileHandle, tempPath: string) => Promise<void>,
  opts: { mode?: number; durable?: boolean } = {},
): Promise<void> {
  const tmp = tempPathFor(path);
  let fh: FileHandle;
  try {
    fh = await open(tmp, 'wx', opts.mode ?? 0o600);
  } catch (err) {
    throw localWriteError(err, path);
  }
  try {
    try {
      await fill(fh, tmp);
      if (opts.durable !== false) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw localWriteError(err, path);
  }
  if (opts.durable !== false) await fsyncDir(dirname(path)).catch((err: unknown) => Promise.reject(localWriteError(err, path)));
}

export async function writeBufferAtomic(path: string, data: Buffer | string, opts: { mode?: number; durable?: boolean } = {}): Promise<void> {
  await writeFileAtomic(path, async (fh) => {
    await fh.writeFile(data);
  }, opts);
}

/**
 * Streams into a temp file next to `path` and moves it into place only if
 * `fill` resolves (then fsync and rename, and fsync the directory when
 * durable); otherwise the temp file is removed and `path` is untouched.
 */
export async function writeStreamAtomic<T>(
  path: string,
  fill: (sink: Writable) => Promise<T>,
  opts: { mode?: number; durable?: boolean } = {},
): Promise<T> {
  const durable = opts.durable !== false;
  const tmp = tempPathFor(path);
  try {
    // Opened before the stream: a missing directory is then a rejected
    // promise naming the path, not an 'error' event nobody listens to yet.
    const fh = await open(tmp, 'wx', opts.mode ?? 0o600);
    const result = await fill(fh.createWriteStream());
    if (durable) {
      const fh = await open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await rename(tmp, path);
    if (durable) await fsyncDir(dirname(path));
    return result;
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw localWriteError(err, path);
  }
}
