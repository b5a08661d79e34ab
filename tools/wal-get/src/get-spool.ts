// The prefetch spool: segments fetched ahead, verified, waiting for
// PostgreSQL to ask. Entries are named <walName>-<sha256>; serving one
// re-hashes it while copying to %p, so a damaged spool file is never handed
// to PostgreSQL (DESIGN §4.3).

import { createReadStream } from 'node:fs';
import { readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createHashStage } from '@cairn/core/codec/index';
import { writeStreamAtomic } from '@cairn/core/util/local-file';

const ENTRY_RE = /^([0-9A-F]{24})-([0-9a-f]{64})$/;
const LOCK = '.prefetch.lock';

export class GetSpool {
  constructor(readonly dir: string) {}

  async entries(): Promise<{ walName: string; sha256: string; file: string }[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    return names.flatMap((n) => {
      const m = ENTRY_RE.exec(n);
      return m ? [{ walName: m[1]!, sha256: m[2]!, file: join(this.dir, n) }] : [];
    });
  }

  entryPath(walName: string, sha256: string): string {
    return join(this.dir, `${walName}-${sha256}`);
  }

  /**
   * Moves the spooled copy of `walName` to `dest` if there is a good one.
   * Returns false (and drops the entry) if it is missing or fails its hash.
   */
  async serve(walName: string, dest: string, durable: boolean): Promise<boolean> {
    const entry = (await this.entries()).find((e) => e.walName === walName);
    if (!entry) return false;
    try {
      await writeStreamAtomic(dest, async (sink) => {
        const hash = createHashStage();
        await pipeline(createReadStream(entry.file), hash.stage, sink);
        if (hash.digest() !== entry.sha256) throw new Error('spooled copy fails its checksum');
      }, { durable });
      return true;
    } catch {
      return false;
    } finally {
      await unlink(entry.file).catch(() => {});
    }
  }

  /** Removes entries PostgreSQL has moved past, and any older than maxAgeMs. */
  async prune(before: string, maxAgeMs: number): Promise<void> {
    const now = Date.now();
    for (const e of await this.entries()) {
      let drop = e.walName.slice(8) < before.slice(8);
      if (!drop) {
        const st = await stat(e.file).catch(() => undefined);
        drop = st === undefined || now - st.mtimeMs > maxAgeMs;
      }
      if (drop) await unlink(e.file).catch(() => {});
    }
    // Temp files of a worker that was killed.
    for (const n of await readdir(this.dir).catch(() => [] as string[])) {
      if (!n.includes('.cairn-tmp.') && !n.endsWith('.part')) continue;
      const p = join(this.dir, n);
      const st = await stat(p).catch(() => undefined);
      if (st && now - st.mtimeMs > 600_000) await unlink(p).catch(() => {});
    }
  }

  /** Takes the worker lock; a lock whose process is gone is taken over. */
  async lock(): Promise<boolean> {
    const path = join(this.dir, LOCK);
    for (let i = 0; i < 2; i++) {
      try {
        await writeFile(path, String(process.pid), { flag: 'wx', mode: 0o600 });
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return false;
        const pid = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
        if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) return false;
        await unlink(path).catch(() => {});
      }
    }
    return false;
  }

  async isLocked(): Promise<boolean> {
    const pid = Number.parseInt(await readFile(join(this.dir, LOCK), 'utf8').catch(() => ''), 10);
    return Number.isInteger(pid) && pid > 0 && isAlive(pid);
  }

  async unlock(): Promise<void> {
    await unlink(join(this.dir, LOCK)).catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
