// Where the bin entries keep Node's module compile cache (they start once per
// WAL segment): $TMPDIR/cairn-compile-cache-<euid>, used only while it is our
// own private directory. Another user who creates that path first in a shared
// /tmp would otherwise hand us compiled code to run (docs/threat-model.md).

import { lstatSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/** The cache directory under `base`, created 0700; undefined (no cache) unless lstat shows it is ours and private. */
export function privateCompileCacheDir(base: string): string | undefined {
  const uid = typeof process.geteuid === 'function' ? process.geteuid() : 0;
  const dir = `${base.replace(/\/+$/, '')}/cairn-compile-cache-${uid}`;
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
  }
  try {
    const st = lstatSync(dir);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) return undefined;
    // Others may write the parent only if the sticky bit keeps them from renaming our directory.
    const parent = lstatSync(dirname(dir));
    if ((parent.mode & 0o022) !== 0 && (parent.mode & 0o1000) === 0) return undefined;
    return dir;
  } catch {
    return undefined;
  }
}
