// Push-ahead records: "this file, as it is on disk now, is in every
// repository". A record (<walName>.ok) holds the file's identity as
// `stat -c` prints it with contract.ts's IDENTITY_STAT_FORMAT (device, inode,
// size, mtime, ctime), so the bin wrapper can confirm PostgreSQL's later call
// for the unchanged file in bash, without starting Node. Claims
// (<walName>.claim, holding a pid) keep two processes from archiving the same
// file at once.
// The directory is one invocation context's (spool-dir.ts: data directory and
// repository set); .ready files are never touched (PostgreSQL owns
// archive_status/).

import { link, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLAIM_SUFFIX, RECORD_SUFFIX } from '@cairn/core/spool/contract';
import { pidFileHolder, releasePidFile, takePidFile } from '@cairn/core/spool/pid-lock';
import { isPrivate } from '@cairn/core/spool/spool-dir';
import { writeBufferAtomic } from '@cairn/core/util/local-file';
import { isWalFileName, parseWalFileName, type WalFileName } from '@cairn/core/wal/index';

const WORKER_LOCK = '.push-ahead.lock';

const seconds9 = (ns: bigint) => `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;

/** The identity line of a file, as `stat -c IDENTITY_STAT_FORMAT` prints it (the contract test compares the two). */
export async function fileIdentity(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path, { bigint: true });
    return `${st.dev} ${st.ino} ${st.size} ${seconds9(st.mtimeNs)} ${seconds9(st.ctimeNs)}`;
  } catch {
    return undefined;
  }
}

/** A file waiting in archive_status/, as readyFiles returns it. */
export interface ReadyFile {
  name: WalFileName;
  path: string;
}

export class PushSpool {
  constructor(readonly dir: string) {}

  private path(name: string): string {
    return join(this.dir, name);
  }

  private recordPath(walName: string): string {
    return this.path(walName + RECORD_SUFFIX);
  }

  private claimPath(walName: string): string {
    return this.path(walName + CLAIM_SUFFIX);
  }

  /** Does a record confirm `path` as it is now? */
  async isRecorded(walName: string, path: string): Promise<boolean> {
    // Only a record that is ours and a regular file counts (lstat), as in the wrapper.
    if (!(await isPrivate(this.recordPath(walName), 'file'))) return false;
    const rec = (await readFile(this.recordPath(walName), 'utf8').catch(() => '')).split('\n')[0]!.trim();
    return rec !== '' && rec === (await fileIdentity(path));
  }

  /** True when `path` was archived ahead unchanged; the record is used up either way. */
  async consume(walName: string, path: string): Promise<boolean> {
    const ok = await this.isRecorded(walName, path);
    await unlink(this.recordPath(walName)).catch(() => {});
    return ok;
  }

  async record(walName: string, path: string): Promise<void> {
    const id = await fileIdentity(path);
    if (!id) return;
    // Not fsynced: a record lost in a crash only costs one more upload.
    await writeBufferAtomic(this.recordPath(walName), id + '\n', { durable: false });
  }

  /** The live process archiving `walName`, if any. */
  claimant(walName: string): Promise<number | undefined> {
    return pidFileHolder(this.claimPath(walName));
  }

  /**
   * Claims `walName` for this process. The push-ahead worker, which holds
   * the worker lock (`viaLock`), claims by hard-linking it: the same bytes
   * (its pid, as the wrappers read them) without a new inode per file, and
   * on ext4 without a journal each new inode costs a scan past every inode
   * freed in the last seconds (about 2% of a drain's CPU here for the
   * claims). A claim already there is replaced (removed, made anew), never written into: a
   * dead worker's claims are links to its old lock, and bytes written
   * through one would show up in all of them.
   */
  async claim(walName: string, viaLock = false): Promise<void> {
    const path = this.claimPath(walName);
    const own = () => writeFile(path, String(process.pid), { flag: 'wx', mode: 0o600 });
    // No hard links on this file system: a file of its own.
    const make = () => (viaLock ? link(this.path(WORKER_LOCK), path).catch(own) : own());
    try {
      await make();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      await unlink(path).catch(() => {});
      // EEXIST again: another process claimed it this instant; both archiving it is harmless (storeWal).
      await make().catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
    }
  }

  async unclaim(walName: string): Promise<void> {
    await unlink(this.claimPath(walName)).catch(() => {});
  }

  /** Takes the push-ahead worker's lock; a dead holder's lock is taken over. */
  lockWorker(): Promise<boolean> {
    return takePidFile(this.path(WORKER_LOCK));
  }

  async workerRunning(): Promise<boolean> {
    return (await pidFileHolder(this.path(WORKER_LOCK))) !== undefined;
  }

  unlockWorker(): Promise<void> {
    return releasePidFile(this.path(WORKER_LOCK));
  }

  /**
   * Files waiting in archive_status/ beside `walDir`, in the order PostgreSQL
   * archives them (history files first, then oldest first), that are neither
   * recorded nor claimed by a live process.
   */
  async readyFiles(walDir: string, max: number): Promise<ReadyFile[]> {
    let entries: string[];
    try {
      entries = await readdir(join(walDir, 'archive_status'));
    } catch {
      return [];
    }
    const ready = entries
      .filter((e) => e.endsWith('.ready'))
      .map((e) => e.slice(0, -'.ready'.length))
      .filter((n) => isWalFileName(n))
      .sort((a, b) => {
        const ha = a.endsWith('.history') ? 0 : 1;
        const hb = b.endsWith('.history') ? 0 : 1;
        return ha - hb || (a < b ? -1 : a > b ? 1 : 0);
      });
    await this.prune(new Set(ready));
    const out: ReadyFile[] = [];
    for (const n of ready) {
      if (out.length >= max) break;
      const path = join(walDir, n);
      if ((await this.isRecorded(n, path)) || (await this.claimant(n)) !== undefined) continue;
      out.push({ name: parseWalFileName(n), path });
    }
    return out;
  }

  /**
   * Drops records of files that no longer wait (PostgreSQL will not call for
   * them again; after a crash it would, and then archives them anew) and
   * claims of dead processes.
   */
  private async prune(waiting: Set<string>): Promise<void> {
    for (const e of await readdir(this.dir).catch(() => [] as string[])) {
      const suffix = [RECORD_SUFFIX, CLAIM_SUFFIX].find((s) => e.endsWith(s));
      if (suffix === undefined) continue;
      const walName = e.slice(0, -suffix.length);
      if (waiting.has(walName)) continue;
      if (suffix === CLAIM_SUFFIX && (await this.claimant(walName)) !== undefined) continue;
      await unlink(this.path(e)).catch(() => {});
    }
  }
}
