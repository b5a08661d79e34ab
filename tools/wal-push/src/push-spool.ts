// Push-ahead records: "this file, as it is on disk now, is in every
// repository". A record names the file's identity (device, inode, size,
// mtime, ctime); PostgreSQL's later call for the same unchanged file is
// answered from it without reading or uploading again. Records live in a
// private spool outside pg_wal/; .ready files are never touched (PostgreSQL
// owns archive_status/).

import { readdir, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ensurePrivateDir } from '@cairn/core/spool/spool-dir';
import { writeBufferAtomic } from '@cairn/core/util/local-file';
import { isWalFileName, parseWalFileName, type WalFileName } from '@cairn/core/wal/index';

interface Record {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  sha256: string;
}

/** Records older than this whose file is no longer waiting are removed. */
const STALE_MS = 24 * 3600 * 1000;

export class PushSpool {
  constructor(private readonly dir: string) {}

  private recordPath(walName: string): string {
    return join(this.dir, `${walName}.ok`);
  }

  private async identity(path: string): Promise<Omit<Record, 'sha256'> | undefined> {
    try {
      const st = await stat(path);
      return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
    } catch {
      return undefined;
    }
  }

  private async matches(walName: string, path: string): Promise<boolean | undefined> {
    let rec: Record;
    try {
      rec = JSON.parse(await readFile(this.recordPath(walName), 'utf8')) as Record;
    } catch {
      return undefined;
    }
    const now = await this.identity(path);
    return now !== undefined && now.dev === rec.dev && now.ino === rec.ino && now.size === rec.size && now.mtimeMs === rec.mtimeMs && now.ctimeMs === rec.ctimeMs;
  }

  /** True when `path` was archived ahead unchanged; the record is used up either way. */
  async consume(walName: string, path: string): Promise<boolean> {
    const m = await this.matches(walName, path);
    if (m === undefined) return false;
    await unlink(this.recordPath(walName)).catch(() => {});
    return m;
  }

  async record(walName: string, path: string, sha256: string): Promise<void> {
    const id = await this.identity(path);
    if (!id) return;
    await ensurePrivateDir(this.dir);
    // Not fsynced: a record lost in a crash only costs one more upload.
    await writeBufferAtomic(this.recordPath(walName), JSON.stringify({ ...id, sha256 }), { durable: false });
  }

  /**
   * Other files waiting in archive_status/, in the order PostgreSQL archives
   * them (history files first, then oldest first), without a valid record.
   */
  async readyFiles(walPath: string, exclude: string, max: number): Promise<{ name: WalFileName; path: string }[]> {
    const walDir = dirname(walPath);
    let entries: string[];
    try {
      entries = await readdir(join(walDir, 'archive_status'));
    } catch {
      return [];
    }
    const ready = entries
      .filter((e) => e.endsWith('.ready'))
      .map((e) => e.slice(0, -'.ready'.length))
      .filter((n) => n !== exclude && isWalFileName(n))
      .sort((a, b) => {
        const ha = a.endsWith('.history') ? 0 : 1;
        const hb = b.endsWith('.history') ? 0 : 1;
        return ha - hb || (a < b ? -1 : a > b ? 1 : 0);
      });
    await this.prune(new Set(ready));
    const out: { name: WalFileName; path: string }[] = [];
    for (const n of ready) {
      if (out.length >= max) break;
      const path = join(walDir, n);
      if (await this.matches(n, path)) continue;
      out.push({ name: parseWalFileName(n), path });
    }
    return out;
  }

  private async prune(waiting: Set<string>): Promise<void> {
    let entries: string[];
    try {
      entries = await readdir(this.dir);
    } catch {
      return;
    }
    const now = Date.now();
    for (const e of entries) {
      if (!e.endsWith('.ok') || waiting.has(e.slice(0, -3))) continue;
      const p = join(this.dir, e);
      const st = await stat(p).catch(() => undefined);
      if (st && now - st.mtimeMs > STALE_MS) await unlink(p).catch(() => {});
    }
  }
}
