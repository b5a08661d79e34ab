// The prefetch spool of one invocation context (spool-dir.ts: data directory
// and repository set): segments fetched ahead by the worker, each verified
// (SHA-256, and the page header in fetch.ts) before it is renamed into place
// here under its plain WAL file name, so serving it is a rename (the bin
// wrapper's bash fast path does exactly `mv "$spool/$f" "$p"`).
//
// Files: <walName> (ready segments), want (the last segment PostgreSQL asked
// cairn for), system (the database system the entries belong to),
// .prefetch.lock (the worker's pid), .<walName>.cairn-tmp.* (fetches in
// progress, contract.ts TEMP_INFIX: the wrapper waits while one exists).

import { copyFile, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TEMP_INFIX } from '@cairn/core/spool/contract';
import { pidFileHolder, releasePidFile, takePidFile } from '@cairn/core/spool/pid-lock';
import { isPrivate } from '@cairn/core/spool/spool-dir';
import { writeBufferAtomic } from '@cairn/core/util/local-file';
import { isSegmentName } from '@cairn/core/wal/file-name';

const LOCK = '.prefetch.lock';

export class GetSpool {
  constructor(readonly dir: string) {}

  entryPath(walName: string): string {
    return join(this.dir, walName);
  }

  /** Segment names ready in the spool. */
  async entries(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => isSegmentName(n)).sort();
  }

  /** Moves a ready segment to `dest`; false when the spool does not have it. */
  async take(walName: string, dest: string): Promise<boolean> {
    const src = this.entryPath(walName);
    // Only an entry that is ours and a regular file is served (lstat), as in the wrapper.
    if (!(await isPrivate(src, 'file'))) return false;
    try {
      await rename(src, dest);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return false;
      if (code !== 'EXDEV') throw err;
    }
    // Spool and pg_wal on different file systems: copy, then drop the entry.
    const tmp = `${dest}.cairn-tmp.${process.pid}`;
    try {
      await copyFile(src, tmp);
      await rename(tmp, dest);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    await unlink(src).catch(() => {});
    return true;
  }

  async setWant(walName: string): Promise<void> {
    await writeBufferAtomic(join(this.dir, 'want'), walName, { durable: false });
  }

  async want(): Promise<string | undefined> {
    const w = (await readFile(join(this.dir, 'want'), 'utf8').catch(() => '')).trim();
    return isSegmentName(w) ? w : undefined;
  }

  async system(): Promise<string | undefined> {
    const s = (await readFile(join(this.dir, 'system'), 'utf8').catch(() => '')).trim();
    return s === '' ? undefined : s;
  }

  /**
   * Entries belong to one database system: if the data directory now holds
   * another (restored again from a different cluster), drop them all.
   */
  async claimFor(systemId: string): Promise<void> {
    if ((await this.system()) === systemId) return;
    await this.clear();
    await writeBufferAtomic(join(this.dir, 'system'), systemId, { durable: false });
  }

  async remove(walName: string): Promise<void> {
    await unlink(this.entryPath(walName)).catch(() => {});
  }

  /** Removes every entry and leftover temp file (not the lock). */
  async clear(): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    // Leftover fetches: tempPathFor's `.<walName>.cairn-tmp.*` (contract.ts TEMP_INFIX).
    await Promise.all(names.filter((n) => isSegmentName(n) || (n.startsWith('.') && n.includes(TEMP_INFIX))).map((n) => unlink(join(this.dir, n)).catch(() => {})));
  }

  /** Takes the worker lock; a lock whose process is gone is taken over. */
  lock(): Promise<boolean> {
    return takePidFile(join(this.dir, LOCK));
  }

  async isLocked(): Promise<boolean> {
    return (await pidFileHolder(join(this.dir, LOCK))) !== undefined;
  }

  unlock(): Promise<void> {
    return releasePidFile(join(this.dir, LOCK));
  }

}
