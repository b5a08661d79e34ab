// The file-system driver: a repository is a directory tree, a key a relative
// path under it. Writes follow docs/design.md §4.1: temp file in the same directory,
// fsync, rename (link for ifAbsent), fsync the directory.

import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeSync, type Dirent } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, sep } from 'node:path';
import { Readable, addAbortSignal } from 'node:stream';
import { CairnError } from '../cli/errors.js';
import { hostTag, isWriterGone } from '../util/debris.js';
import { writeWholeDirect } from '../util/direct-write.js';
import { createLimiter } from '../util/limit.js';
import {
  ObjectNotFoundError,
  WriteConflictError,
  assertValidKey,
  assertValidPrefix,
  compareKeys,
  type DebrisInfo,
  type DriverFeatures,
  type ObjectInfo,
  type ObjectReader,
  type RemoveOptions,
  type StorageDriver,
  type WriteOptions,
  consumeBody,
  LOCAL_REQUESTS,
  shortRange,
} from './driver.js';

/**
 * In-progress writes are named `.tmp.<name>.<host>-<pid>.<random>` (before
 * issue 11 `.tmp.<name>.<pid>.<random>`); list skips them and keys whose last
 * segment starts with it are rejected, so a temp file can never be mistaken
 * for an object. The host tag and pid let a later writer on this host remove
 * the temp files of a killed one, and listDebris report them.
 */
const TEMP_PREFIX = '.tmp.';
const TEMP_WRITER_RE = /\.([0-9a-f]{8})-(\d+)\.[0-9a-f]+$/;
/** Non-durable Buffer writes up to this size go through synchronous calls (see writeSmallSync). */
const SYNC_WRITE_LIMIT = 1024 * 1024;
/**
 * A non-durable object starts writing back to the device every this many
 * bytes (an fdatasync in the background, never more than one at a time),
 * so the syncKeys that ends a backup finds little left to flush: the page
 * cache holds gigabytes before the kernel's own writeback begins (10% of
 * memory), and the 0.6 s flush of a 1 GB backup then came after the copy
 * instead of beside it.
 */
const WRITEBACK_STEP = 32 * 1024 * 1024;
/**
 * Durable Buffer writes from this size go around the page cache
 * (util/direct-write.ts writeWholeDirect): the fsync that follows writes
 * them out anyway, and the copy into fresh page-cache pages cost more CPU
 * than compressing a WAL segment's worth of them. Smaller ones are not
 * worth a device round trip of their own.
 */
const DIRECT_WRITE_MIN = 128 * 1024;

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/** An entry of a directory being listed; `st` when it was stat'ed already. */
interface WalkItem {
  name: string;
  dir: boolean;
  sortKey: string;
  st?: { isFile(): boolean; size: number; mtime: Date };
}

/** Errnos a retry may cure: descriptor exhaustion, NFS hiccups. */
const TRANSIENT_ERRNOS = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'EINTR', 'ETIMEDOUT', 'ESTALE']);

export class FsDriver implements StorageDriver {
  readonly url: string;
  readonly features: DriverFeatures = { atomicIfAbsent: true, requests: LOCAL_REQUESTS };
  /** Absolute path of the repository's root directory. */
  readonly root: string;
  /** Directories whose dead writers' temp files this instance has removed already. */
  private readonly swept = new Set<string>();

  /** `url` is what messages show (e.g. the file:// URL the user gave); default rootDir. */
  constructor(rootDir: string, url: string = rootDir) {
    if (!isAbsolute(rootDir)) throw new Error(`repository root "${rootDir}" is not an absolute path`);
    this.root = rootDir;
    this.url = url;
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined> {
    const path = this.pathOf(key);
    signal?.throwIfAborted();
    try {
      const st = await fsp.stat(path);
      // A directory is where keys live, not an object.
      if (!st.isFile()) return undefined;
      return { key, size: st.size, mtime: st.mtime };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.fail(err, `stat "${key}"`);
    }
  }

  async readSmall(key: string, signal?: AbortSignal): Promise<Buffer> {
    signal?.throwIfAborted();
    try {
      return readFileSync(this.pathOf(key));
    } catch (err) {
      if (isMissing(err) || errnoOf(err) === 'EISDIR') throw new ObjectNotFoundError(key, this.url);
      throw this.fail(err, `read "${key}"`);
    }
  }

  async readRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    signal?.throwIfAborted();
    const out = Buffer.alloc(length);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(this.pathOf(key), 'r');
    } catch (err) {
      if (isMissing(err) || errnoOf(err) === 'EISDIR') throw new ObjectNotFoundError(key, this.url);
      throw this.fail(err, `read "${key}"`);
    }
    try {
      let got = 0;
      while (got < length) {
        const { bytesRead } = await this.io(() => fh.read(out, got, length - got, offset + got), `read "${key}"`);
        if (bytesRead === 0) throw shortRange(this.url, key, offset, length, offset + got);
        got += bytesRead;
      }
      return out;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  async openReader(key: string, signal?: AbortSignal): Promise<ObjectReader> {
    const fh = await this.openForRead(key, signal);
    let pos = 0;
    let closed = false;
    return {
      read: async (into) => {
        signal?.throwIfAborted();
        if (closed) throw new CairnError('INTERNAL', `read of "${key}" after it was closed`);
        const { bytesRead } = await this.io(() => fh.read(into, 0, into.length, pos), `read "${key}"`);
        pos += bytesRead;
        return bytesRead;
      },
      close: async () => {
        if (closed) return;
        closed = true;
        await fh.close().catch(() => {});
      },
    };
  }

  /** `key` opened for reading, checked to be a file (ObjectNotFoundError when it is not there). */
  private async openForRead(key: string, signal?: AbortSignal): Promise<fsp.FileHandle> {
    const path = this.pathOf(key);
    signal?.throwIfAborted();
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, 'r');
    } catch (err) {
      // ENOENT of the root itself lands here too: an empty repository.
      if (isMissing(err)) throw new ObjectNotFoundError(key, this.url);
      throw this.fail(err, `read "${key}"`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new ObjectNotFoundError(key, this.url);
    } catch (err) {
      await fh.close().catch(() => {});
      if (err instanceof ObjectNotFoundError) throw err;
      throw this.fail(err, `read "${key}"`);
    }
    return fh;
  }

  async read(key: string, signal?: AbortSignal): Promise<Readable> {
    const fh = await this.openForRead(key, signal);
    // 1 MiB reads: with the default 64 KiB every piece is a trip through the
    // decompressor on the thread pool, and a 16 MiB segment took ~200 ms.
    const source = fh.createReadStream({ highWaterMark: 1024 * 1024 }); // closes fh on end, error or destroy
    const out = Readable.from(this.mapReadErrors(source, key), { objectMode: false });
    // Destroying `out` before its first read never starts the generator, so
    // close the file from here too.
    out.once('close', () => source.destroy());
    return signal ? addAbortSignal(signal, out) : out;
  }

  async write(key: string, body: Readable | Buffer, opts: WriteOptions = {}): Promise<void> {
    const path = this.pathOf(key);
    await consumeBody(body, () => this.writeFile(path, key, body, opts));
  }

  private async writeFile(path: string, key: string, body: Readable | Buffer, opts: WriteOptions): Promise<void> {
    const { signal } = opts;
    signal?.throwIfAborted();
    if (Buffer.isBuffer(body) && body.length <= SYNC_WRITE_LIMIT && opts.durable === false && !opts.ifAbsent) {
      await this.writeSmallSync(path, key, body);
      return;
    }
    // Fail fast before spending the body; link() below is what makes it atomic.
    if (opts.ifAbsent && (await this.stat(key)) !== undefined) throw new WriteConflictError(key, this.url);
    const dir = dirname(path);
    const temp = tempPathFor(path);
    await this.sweepDeadTemps(dir);
    const fh = await this.createTemp(dir, temp, key);
    let fhOpen = true;
    let tempExists = true;
    try {
      if (Buffer.isBuffer(body)) {
        const tryDirect = opts.durable !== false && body.length >= DIRECT_WRITE_MIN;
        if (!tryDirect || !(await this.io(() => writeWholeDirect(temp, fh.fd, body), `write "${key}"`))) await this.writeAll(fh, body, key);
      } else {
        // Errors from the body (the caller's stream) pass through unchanged;
        // only our own syscalls are mapped to storage errors.
        const source = signal ? addAbortSignal(signal, body) : body;
        const writeback = opts.durable === false ? this.writeback(fh, key) : undefined;
        for await (const chunk of source) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
          await this.writeAll(fh, buf, key);
          writeback?.wrote(buf.length);
        }
        await writeback?.settle();
      }
      signal?.throwIfAborted();
      if (opts.durable !== false) await this.io(() => fh.sync(), `write "${key}"`);
      fhOpen = false;
      await this.io(() => fh.close(), `write "${key}"`);
      signal?.throwIfAborted();
      if (opts.ifAbsent) {
        // link() fails with EEXIST instead of replacing: of two racing writers
        // exactly one wins, and the winner's object is whole when it appears.
        try {
          await fsp.link(temp, path);
        } catch (err) {
          if (errnoOf(err) === 'EEXIST') throw new WriteConflictError(key, this.url);
          if (['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK'].includes(errnoOf(err) ?? '')) {
            throw new CairnError(
              'STORAGE_UNAVAILABLE',
              `repository "${this.url}": cannot write "${key}": the file system refuses hard links (${errnoOf(err)})`,
              { hint: 'put the repository on a file system with hard links (ext4, xfs, zfs, nfs)', cause: err },
            );
          }
          throw this.fail(err, `write "${key}"`);
        }
        await fsp.unlink(temp).catch(() => {});
        tempExists = false;
      } else {
        await this.io(() => fsp.rename(temp, path), `write "${key}"`);
        tempExists = false;
      }
      if (opts.durable !== false) await this.io(() => fsyncDir(dir), `write "${key}"`);
    } finally {
      if (fhOpen) await fh.close().catch(() => {});
      if (tempExists) await fsp.unlink(temp).catch(() => {});
    }
  }

  /**
   * A small non-durable write in synchronous calls: open, write, close,
   * rename take microseconds each; as promises each is a trip through the
   * threadpool, which dominated backups of a thousand small files.
   */
  private async writeSmallSync(path: string, key: string, body: Buffer): Promise<void> {
    const dir = dirname(path);
    const temp = tempPathFor(path);
    await this.sweepDeadTemps(dir);
    let fd: number;
    try {
      fd = openSync(temp, 'wx', FILE_MODE);
    } catch (err) {
      if (!isMissing(err)) throw this.fail(err, `write "${key}"`);
      // Not durable: syncKeys makes the directories durable when it matters.
      await this.ensureDir(dir, false);
      try {
        fd = openSync(temp, 'wx', FILE_MODE);
      } catch (err2) {
        throw this.fail(err2, `write "${key}"`);
      }
    }
    try {
      let off = 0;
      while (off < body.length) off += writeSync(fd, body, off, body.length - off);
      closeSync(fd);
      fd = -1;
      renameSync(temp, path);
    } catch (err) {
      if (fd >= 0) closeSync(fd);
      try {
        unlinkSync(temp);
      } catch {
        /* already gone */
      }
      throw this.fail(err, `write "${key}"`);
    }
  }

  async syncKeys(keys: string[], signal?: AbortSignal): Promise<void> {
    // Concurrent fsyncs share journal commits: far cheaper than in line.
    const dirs = new Set<string>();
    const limit = createLimiter(16);
    await Promise.all(
      keys.map((key) =>
        limit(async () => {
          signal?.throwIfAborted();
          const path = this.pathOf(key);
          dirs.add(dirname(path));
          const fh = await this.io(() => fsp.open(path, 'r'), `sync "${key}"`);
          try {
            await this.io(() => fh.sync(), `sync "${key}"`);
          } finally {
            await fh.close();
          }
        }),
      ),
    );
    // New directories too, up to the root, so every entry is durable.
    for (const d of [...dirs]) {
      for (let p = dirname(d); p.startsWith(this.root) && p !== this.root; p = dirname(p)) dirs.add(p);
    }
    await Promise.all([...dirs].map((d) => limit(() => this.io(() => fsyncDir(d), `sync "${d}"`))));
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    // Start in the deepest directory the prefix names; its last segment only
    // filters entries there ('a/b' reads a/ and keeps names starting with 'b').
    const slash = prefix.lastIndexOf('/');
    yield* this.walk(prefix.slice(0, slash + 1), prefix.slice(slash + 1), signal);
  }

  async remove(key: string, signal?: AbortSignal, opts: RemoveOptions = {}): Promise<void> {
    const path = this.pathOf(key);
    signal?.throwIfAborted();
    try {
      await fsp.unlink(path);
    } catch (err) {
      if (isMissing(err) || errnoOf(err) === 'EISDIR') return;
      throw this.fail(err, `remove "${key}"`);
    }
    const dir = dirname(path);
    // Not durable (a WAL intent, every segment): no fsyncs, here or for the
    // directories pruned; the next such write makes them again unsynced too.
    const durable = opts.durable !== false;
    if (durable) await this.io(() => fsyncDir(dir), `remove "${key}"`);
    if (opts.keepDirs !== true) await this.pruneEmptyDirs(dir, durable);
  }

  async close(): Promise<void> {}

  async *listDebris(dirPrefix: string, signal?: AbortSignal): AsyncIterable<DebrisInfo> {
    if (dirPrefix !== '' && !dirPrefix.endsWith('/')) throw new Error(`invalid debris prefix "${dirPrefix}": not a directory`);
    assertValidPrefix(dirPrefix);
    yield* this.walkDebris(dirPrefix, signal);
  }

  async removeDebris(path: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const isDir = path.endsWith('/');
    const rel = isDir ? path.slice(0, -1) : path;
    assertValidKey(rel);
    if (!isDir && !basename(rel).startsWith(TEMP_PREFIX)) throw new Error(`"${path}" is not a temp file`);
    const full = join(this.root, ...rel.split('/'));
    try {
      if (isDir) await fsp.rmdir(full);
      else await fsp.unlink(full);
    } catch (err) {
      // Not empty any more: a writer is using it, so it is not debris.
      if (isMissing(err) || errnoOf(err) === 'ENOTEMPTY' || errnoOf(err) === 'EEXIST') return;
      throw this.fail(err, `remove "${path}"`);
    }
    await this.pruneEmptyDirs(dirname(full)).catch(() => {});
  }

  /** Temp files and empty directories under dirKey, children first; true in `empty` when nothing else is there. */
  private async *walkDebris(dirKey: string, signal?: AbortSignal, state = { empty: true }): AsyncGenerator<DebrisInfo> {
    const entries = await this.readDir(dirKey, `list "${dirKey}"`, signal);
    entries.sort((a, b) => compareKeys(a.name, b.name));
    for (const e of entries) {
      const rel = dirKey + e.name;
      if (e.isDirectory()) {
        const inner = { empty: true };
        yield* this.walkDebris(rel + '/', signal, inner);
        const st = inner.empty ? await fsp.stat(join(this.root, rel)).catch(() => undefined) : undefined;
        if (st !== undefined) yield { path: rel + '/', size: 0, mtime: st.mtime };
        else state.empty = false;
        continue;
      }
      if (e.isFile() && e.name.startsWith(TEMP_PREFIX)) {
        const st = await fsp.stat(join(this.root, rel)).catch(() => undefined);
        if (st === undefined) continue;
        const m = TEMP_WRITER_RE.exec(e.name);
        yield { path: rel, size: st.size, mtime: st.mtime, ...(m ? { writer: { host: m[1]!, pid: Number(m[2]) } } : {}) };
        continue;
      }
      state.empty = false;
    }
  }

  /**
   * Once per directory and instance: removes the temp files of writers on
   * this host that are gone (a wal-push, basebackup or dump killed mid-write),
   * so a rerun cleans up after the run it replaces (issue 11).
   */
  private async sweepDeadTemps(dir: string): Promise<void> {
    if (this.swept.has(dir)) return;
    this.swept.add(dir);
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch {
      return; // a new directory (the usual case for a backup's files)
    }
    for (const name of names) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      const m = TEMP_WRITER_RE.exec(name);
      if (m && isWriterGone({ host: m[1]!, pid: Number(m[2]) })) await fsp.unlink(join(dir, name)).catch(() => {});
    }
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    if (basename(key).startsWith(TEMP_PREFIX)) {
      throw new Error(`invalid storage key "${key}": names starting with "${TEMP_PREFIX}" are in-progress writes`);
    }
    return join(this.root, ...key.split('/'));
  }

  /** mkdir -p (0700) plus the temp file; retried if expire prunes the directory meanwhile. */
  private async createTemp(dir: string, temp: string, key: string): Promise<fsp.FileHandle> {
    for (let attempt = 1; ; attempt++) {
      try {
        // The directory usually exists already (a backup writes hundreds of
        // files per directory): try first, make it on ENOENT.
        if (attempt > 1) await this.ensureDir(dir);
        return await fsp.open(temp, 'wx', FILE_MODE);
      } catch (err) {
        if (errnoOf(err) === 'ENOENT' && attempt < 5) continue;
        throw this.fail(err, `write "${key}"`);
      }
    }
  }

  private async ensureDir(dir: string, durable = true): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const first = await fsp.mkdir(dir, { recursive: true, mode: DIR_MODE });
        if (first === undefined || !durable) return;
        // A new directory is durable only once its parent's entry is: fsync the
        // parent of every directory just created.
        const created = [first];
        for (const seg of relative(first, dir).split(sep).filter((s) => s !== '')) {
          created.push(join(created[created.length - 1]!, seg));
        }
        for (const d of created) await fsyncDir(dirname(d));
        return;
      } catch (err) {
        // A racing remove() pruned the (still empty) directories: make them again.
        if (!isMissing(err) || attempt >= 5) throw err;
      }
    }
  }

  /**
   * Early writeback of one non-durable object (see WRITEBACK_STEP). An
   * fdatasync that fails fails the write at settle(): the kernel reports a
   * writeback error once, so the later syncKeys might not see it again.
   */
  private writeback(fh: fsp.FileHandle, key: string): { wrote(bytes: number): void; settle(): Promise<void> } {
    let since = 0;
    let inFlight: Promise<void> | undefined;
    let failed: unknown;
    const fail = () => this.fail(failed, `write "${key}"`);
    return {
      wrote(bytes) {
        if (failed !== undefined) throw fail();
        since += bytes;
        if (since < WRITEBACK_STEP || inFlight !== undefined) return;
        since = 0;
        inFlight = fh.datasync().then(
          () => {
            inFlight = undefined;
          },
          (err: unknown) => {
            failed ??= err;
            inFlight = undefined;
          },
        );
      },
      settle: async () => {
        await inFlight;
        if (failed !== undefined) throw fail();
      },
    };
  }

  private async writeAll(fh: fsp.FileHandle, buf: Buffer, key: string): Promise<void> {
    let offset = 0;
    while (offset < buf.length) {
      const { bytesWritten } = await this.io(() => fh.write(buf, offset, buf.length - offset), `write "${key}"`);
      offset += bytesWritten;
    }
  }

  private async *walk(dirKey: string, namePrefix: string, signal?: AbortSignal): AsyncGenerator<ObjectInfo> {
    const items = namePrefix === '' ? await this.walkItems(dirKey, signal) : await this.prefixItems(dirKey, namePrefix, signal);
    items.sort((a, b) => compareKeys(a.sortKey, b.sortKey));
    for (const item of items) {
      signal?.throwIfAborted();
      const key = dirKey + item.name;
      if (item.dir) {
        yield* this.walk(key + '/', '', signal);
        continue;
      }
      try {
        const st = item.st ?? (await fsp.stat(join(this.root, key)));
        if (st.isFile()) yield { key, size: st.size, mtime: st.mtime };
      } catch (err) {
        if (isMissing(err)) continue; // removed while we listed
        throw this.fail(err, `list "${dirKey}${namePrefix}"`);
      }
    }
  }

  /** Every file and directory in dirKey, for a walk. */
  private async walkItems(dirKey: string, signal?: AbortSignal): Promise<WalkItem[]> {
    const entries = await this.readDir(dirKey, `list "${dirKey}"`, signal);
    const items: WalkItem[] = [];
    for (const e of entries) {
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const st = await fsp.stat(join(this.root, dirKey, e.name)).catch(() => undefined);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
      }
      if (isFile && e.name.startsWith(TEMP_PREFIX)) continue;
      // Every key below directory 'd' starts with 'd/', so sorting the
      // directory as 'd/' among its siblings keeps the whole walk in key order.
      if (isDir) items.push({ name: e.name, dir: true, sortKey: e.name + '/' });
      else if (isFile) items.push({ name: e.name, dir: false, sortKey: e.name });
    }
    return items;
  }

  /**
   * The entries of dirKey whose names start with namePrefix. Names only,
   * then a stat of each match (which a file needs for its size anyway): a
   * WAL push lists its segment's prefix in a directory of up to 256
   * segments several times, and typed entries for all of them were most of
   * that cost.
   */
  private async prefixItems(dirKey: string, namePrefix: string, signal?: AbortSignal): Promise<WalkItem[]> {
    signal?.throwIfAborted();
    let names: string[];
    try {
      names = await fsp.readdir(join(this.root, dirKey));
    } catch (err) {
      if (isMissing(err)) return [];
      throw this.fail(err, `list "${dirKey}${namePrefix}"`);
    }
    const items: WalkItem[] = [];
    for (const name of names) {
      if (!name.startsWith(namePrefix)) continue;
      // Followed, as walkItems follows symbolic links.
      let st: Awaited<ReturnType<typeof fsp.stat>>;
      try {
        st = await fsp.stat(join(this.root, dirKey, name));
      } catch (err) {
        if (isMissing(err)) continue; // removed while we listed (or a dangling link)
        throw this.fail(err, `list "${dirKey}${namePrefix}"`);
      }
      if (st.isDirectory()) items.push({ name, dir: true, sortKey: name + '/' });
      else if (st.isFile() && !name.startsWith(TEMP_PREFIX)) items.push({ name, dir: false, sortKey: name, st });
    }
    return items;
  }

  /** The entries of a directory under the root; none when it does not exist. */
  private async readDir(dirKey: string, what: string, signal?: AbortSignal): Promise<Dirent[]> {
    signal?.throwIfAborted();
    try {
      return await fsp.readdir(join(this.root, dirKey), { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return [];
      throw this.fail(err, what);
    }
  }

  /** Removes directories left empty by a remove, up to (not including) the root. */
  private async pruneEmptyDirs(dir: string, durable = true): Promise<void> {
    let d = dir;
    let removed = false;
    while (d !== this.root && d.startsWith(this.root + sep)) {
      try {
        await fsp.rmdir(d);
      } catch {
        break; // not empty (or gone): stop there
      }
      removed = true;
      d = dirname(d);
    }
    if (removed && durable) await fsyncDir(d).catch(() => {});
  }

  private async *mapReadErrors(source: AsyncIterable<Buffer>, key: string): AsyncGenerator<Buffer> {
    try {
      yield* source;
    } catch (err) {
      throw this.fail(err, `read "${key}"`);
    }
  }

  private async io<T>(fn: () => Promise<T>, what: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.fail(err, what);
    }
  }

  /** Maps an errno to a storage error; anything else (a bug, an abort) passes unchanged. */
  private fail(err: unknown, what: string): unknown {
    const code = errnoOf(err);
    if (code === undefined || err instanceof CairnError) return err;
    const where = `repository "${this.url}": cannot ${what}`;
    switch (code) {
      case 'EACCES':
      case 'EPERM':
        return new CairnError('STORAGE_DENIED', `${where}: permission denied (${code})`, {
          hint: `make "${this.root}" owned by and writable for the user cairn runs as (directories 0700, files 0600)`,
          cause: err,
        });
      case 'EROFS':
        return new CairnError('STORAGE_DENIED', `${where}: read-only file system`, {
          hint: `mount the file system holding "${this.root}" read-write`,
          cause: err,
        });
      case 'ENOSPC':
      case 'EDQUOT':
        return new CairnError('STORAGE_UNAVAILABLE', `${where}: no space left on device (${code})`, {
          hint: `free space on the file system holding "${this.root}" or expire old backups (cairn-expire)`,
          cause: err,
        });
      default:
        return new CairnError('STORAGE_UNAVAILABLE', `${where}: ${describeErrno(err)} (${code})`, {
          transient: TRANSIENT_ERRNOS.has(code),
          cause: err,
        });
    }
  }
}

function tempPathFor(path: string): string {
  return join(dirname(path), `${TEMP_PREFIX}${basename(path)}.${hostTag()}-${process.pid}.${randomBytes(6).toString('hex')}`);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** ENOENT, or ENOTDIR when a path component is a file: either way no object. */
function isMissing(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** "EIO: i/o error, read" → "i/o error" (libuv's text, already lowercase). */
function describeErrno(err: unknown): string {
  const msg = (err as Error).message ?? '';
  const m = /^E[A-Z0-9]+: ([^,]+)/.exec(msg);
  return m?.[1] ?? msg;
}
