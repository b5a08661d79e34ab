// Naming what a run leaves behind so a later run can tell it is abandoned:
// temp names carry this host's tag and the writer's pid, and a writer on this
// host whose pid is gone will never finish (issue 11, "debris is bounded").

import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive } from '../spool/pid-lock.js';

let tag: string | undefined;

/** 8 hex digits of this host's name: short enough for file names, enough to tell hosts apart. */
export function hostTag(): string {
  tag ??= createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
  return tag;
}

/**
 * A writer that is certainly gone: it ran on this host and its pid is not
 * running. A reused pid only keeps the leftover until expire's grace period.
 */
export function isWriterGone(writer: { host: string; pid: number } | undefined): boolean {
  return writer !== undefined && writer.host === hostTag() && !isAlive(writer.pid);
}

/** `<prefix>-<pid>-<random>`: a local work directory a later run can attribute. */
export function localWorkDirName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * Removes `<prefix>-<pid>-<random>` directories in `base` whose process is
 * gone (a run killed before it could clean up; pg_dump's directory of a
 * killed cairn-dump is table data, tens of MB and more). Only directories
 * owned by this user; errors are ignored (best effort, the next run tries
 * again). Returns the paths removed.
 */
export async function removeDeadWorkDirs(base: string, prefix: string): Promise<string[]> {
  const re = new RegExp(`^${prefix.replace(/[^a-z0-9]/gi, '\\$&')}-(\\d+)-[0-9a-f]{8}$`);
  const removed: string[] = [];
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = re.exec(name);
    if (m === null || Number(m[1]) === process.pid || isAlive(Number(m[1]))) continue;
    const path = join(base, name);
    try {
      const st = await lstat(path);
      if (!st.isDirectory() || st.uid !== process.getuid?.()) continue;
      await rm(path, { recursive: true, force: true });
      removed.push(path);
    } catch {
      /* gone meanwhile, or not ours to remove */
    }
  }
  return removed;
}
