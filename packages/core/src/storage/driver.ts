// The one storage interface. Everything that touches repository bytes goes
// through a driver; code above branches on `features`, never on the driver.
// Keys are relative, '/'-separated paths without '.', '..' or empty segments.

import type { Readable } from 'node:stream';
import { CairnError } from '../cli/errors.js';

export interface ObjectInfo {
  /** Key relative to the driver's root. */
  key: string;
  /** Stored size in bytes. */
  size: number;
  /** Last modification time as the storage reports it. */
  mtime: Date;
}

/** A leftover of an unfinished write (see StorageDriver.listDebris). */
export interface DebrisInfo {
  /** Relative to the root, '/'-separated; a directory ends in '/'. Not a key. */
  path: string;
  size: number;
  mtime: Date;
  /** The writer, when the name tells it (temp files): its host tag and pid. */
  writer?: { host: string; pid: number };
}

export interface DriverFeatures {
  /**
   * `write(..., { ifAbsent: true })` is atomic on the server: of two racing
   * writers exactly one wins and the other gets WRITE_CONFLICT. Without it the
   * driver still honours ifAbsent, but as check-then-write (a small race window).
   */
  atomicIfAbsent: boolean;
  /**
   * How many requests for small objects to keep in flight. A local file
   * system gains nothing past a few; an object store answers each request a
   * round trip later (tens of ms in another region), so tens in flight hide
   * that latency. Independent of the CPU workers (--jobs). The tools use it
   * for files up to SMALL_FILE (1 MiB: each holds about twice its size in
   * memory, so a few tens of MiB in all); bigger ones keep smaller limits.
   */
  requests: number;
}

/** `features.requests` of local stores, and of object stores unless configured. */
export const LOCAL_REQUESTS = 8;
export const REMOTE_REQUESTS = 32;

export interface WriteOptions {
  /** Reject with WriteConflictError when the key already exists. */
  ifAbsent?: boolean;
  /**
   * With ifAbsent: the caller has just looked (listed the key's prefix) and
   * not found the key, so a driver whose ifAbsent is check-then-write may
   * take that look as its check instead of a round trip of its own. The
   * write is still conditional where the store honours it.
   */
  lookedFirst?: boolean;
  signal?: AbortSignal;
  /**
   * false: the object is still atomic (whole or absent) but may not survive a
   * crash until syncKeys() has covered it. For many objects committed by one
   * later object (a backup's files, then its manifest): one batch of syncs
   * instead of two fsyncs in line per object. Default true.
   */
  durable?: boolean;
}

export interface RemoveOptions {
  /** false: no fsyncs (fs). Default true. */
  durable?: boolean;
  /**
   * true: directories the remove leaves empty stay (fs), for a prefix that is
   * written again at once (a WAL push's intent, every segment). Default false.
   */
  keepDirs?: boolean;
}

/** An object opened by StorageDriver.openReader. */
export interface ObjectReader {
  /** Reads the next bytes into `into` (as many as fit and are left); 0 at the end. Wait for one read before the next. */
  read(into: Buffer): Promise<number>;
  /** Closes the object; reads after it fail. */
  close(): Promise<void>;
}

export interface StorageDriver {
  /** The repository URL with no credentials, for messages. */
  readonly url: string;
  readonly features: DriverFeatures;

  /** Size and mtime of `key`, or undefined when it does not exist. */
  stat(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined>;

  /**
   * A stream of the object's bytes. Rejects with ObjectNotFoundError when the
   * key does not exist. The stream errors (never ends early silently) if the
   * connection breaks mid-read.
   */
  read(key: string, signal?: AbortSignal): Promise<Readable>;

  /**
   * Stores `body` under `key` atomically: readers and listings see either the
   * old object (or nothing) or the whole new one, never a part. On fs: temp
   * file in the same directory, fsync, rename (or link for ifAbsent), fsync
   * dir. On S3: one PUT or a completed multipart upload. With `ifAbsent`,
   * rejects with WriteConflictError if the key exists, leaving it untouched.
   * A failed or aborted write leaves nothing visible under `key`.
   * A stream `body` belongs to the driver from the call on: it is read to the
   * end, or destroyed when the write fails (so a producer piping into it is
   * torn down instead of blocking). An error of the body itself (or an abort)
   * rejects the write unchanged, not as a storage error.
   */
  write(key: string, body: Readable | Buffer, opts?: WriteOptions): Promise<void>;

  /**
   * Every object whose key starts with `prefix` (a plain string prefix, not a
   * directory: 'a/b' matches 'a/b/c' and 'a/bc'), in ascending key order
   * (UTF-8 byte order, as S3 lists; see compareKeys).
   * In-progress writes (temp files, uncompleted uploads) are never listed.
   */
  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo>;

  /**
   * The whole of a small object (a few kB to a few MB) as one Buffer; same
   * errors as read(). Optional: callers fall back to read(). The fs driver
   * reads it in one synchronous call, which for thousands of small files
   * costs far less than a stream and trips through the threadpool.
   */
  readSmall?(key: string, signal?: AbortSignal): Promise<Buffer>;

  /**
   * `length` bytes of the object from byte `offset` on, as one Buffer (a
   * ranged GET on S3): the members of a bundle (backup/bundle.ts). Same
   * errors as read(); an object shorter than offset + length is an error,
   * never a short Buffer. Optional: readRange() below falls back to read().
   */
  readRange?(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer>;

  /**
   * The object opened for reading into the caller's own memory, from its
   * first byte to its last: a restore reads gigabytes through two buffers
   * used again and again, where a stream makes a fresh 1 MiB Buffer per read
   * that lingers until V8 collects it (64 MB per thread of a restore here,
   * all resident). Same errors as read(). Optional: callers fall back to read().
   */
  openReader?(key: string, signal?: AbortSignal): Promise<ObjectReader>;

  /**
   * Whether the store refuses a write with `If-None-Match: *` to `key`, which
   * this process has just written with `body`: true proves ifAbsent writes
   * are atomic here (AWS S3, R2, MinIO), and features.atomicIfAbsent becomes
   * true for this driver. Where the store ignores the header the object is
   * written again with the same bytes and the answer is false (so is it on
   * any error). Optional: drivers atomic by construction need no probe.
   */
  probeConditionalWrite?(key: string, body: Buffer, signal?: AbortSignal): Promise<boolean>;

  /**
   * Makes objects written with `durable: false` durable (fs: fsync of each
   * file and of their directories). Drivers whose writes are always durable
   * (S3) need not implement it.
   */
  syncKeys?(keys: string[], signal?: AbortSignal): Promise<void>;

  /**
   * Deletes `key`; succeeds if it does not exist. On fs directories left
   * empty are pruned, and the removal is made durable (fsync of the
   * directory) unless `opts.durable` is false: for objects whose loss or
   * return after a crash does no harm (a WAL push's intent).
   */
  remove(key: string, signal?: AbortSignal, opts?: RemoveOptions): Promise<void>;

  /**
   * Leftovers of writes that never finished under `dirPrefix` ('' or ending
   * in '/'): temp files of a killed writer and empty directories (fs).
   * Children come before their parents. Optional: drivers without such
   * leftovers (S3, where an unfinished upload is invisible and a lifecycle
   * rule reaps it) leave it out.
   */
  listDebris?(dirPrefix: string, signal?: AbortSignal): AsyncIterable<DebrisInfo>;

  /**
   * Removes one item listDebris yielded; succeeds if it is gone. A directory
   * is removed only while empty, so a writer that just made it keeps it (its
   * write then recreates it).
   */
  removeDebris?(path: string, signal?: AbortSignal): Promise<void>;

  /** Releases connections (S3 client sockets). Safe to call twice. */
  close(): Promise<void>;
}

// Both are CairnErrors (exit 4) at the driver boundary: callers that expect
// them (an optional object, a create-if-absent) catch them by class; anywhere
// else a stored object something names is gone, or was there already, and
// that is damaged repository data, not a bug in cairn (exit 70) — however
// many layers or worker threads it passes through.
export class ObjectNotFoundError extends CairnError {
  readonly key: string;
  constructor(key: string, url: string) {
    super('OBJECT_MISSING', `object "${key}" not found in repository "${url}"`, { hint: 'the repository is damaged: run cairn-verify; restore from another backup or repository' });
    this.name = 'ObjectNotFoundError';
    this.key = key;
  }
}

export class WriteConflictError extends CairnError {
  readonly key: string;
  constructor(key: string, url: string) {
    super('WRITE_CONFLICT', `object "${key}" already exists in repository "${url}"`, { hint: 'another run wrote it first; run cairn-verify if this repeats' });
    this.name = 'WriteConflictError';
    this.key = key;
  }
}

/** Rejects keys that could escape the repository root or are malformed. */
export function assertValidKey(key: string): void {
  if (
    key === '' ||
    key.startsWith('/') ||
    key.endsWith('/') ||
    key.includes('\\') ||
    key.includes('\0') ||
    key.split('/').some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new Error(`invalid storage key "${key}"`);
  }
}

/**
 * Rejects list prefixes that could escape the repository root. '' (every
 * key) and a trailing '/' are fine; the last segment is a partial name (so
 * 'a/.' matches 'a/.hidden'); the segments before it follow the key rules.
 */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  const inner = prefix.split('/').slice(0, -1);
  if (
    prefix.startsWith('/') ||
    prefix.includes('\\') ||
    prefix.includes('\0') ||
    inner.some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new Error(`invalid storage prefix "${prefix}"`);
  }
}

/** The order `list` yields keys in: UTF-8 bytes, as S3 sorts them. */
export function compareKeys(a: string, b: string): number {
  // For the ASCII keys cairn writes this equals `a < b`; the byte order only
  // differs from JS (UTF-16) order above the BMP.
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Runs a driver's write and, if it fails, destroys a stream body so whoever
 * produces it is torn down rather than left blocked on backpressure.
 */
export async function consumeBody<T>(body: Readable | Buffer, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (!Buffer.isBuffer(body)) body.destroy();
    throw err;
  }
}

/** `driver.readRange`, or the same bytes out of a whole read() where a driver has none. */
export async function readRange(driver: StorageDriver, key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
  if (driver.readRange) return driver.readRange(key, offset, length, signal);
  const out = Buffer.alloc(length);
  let pos = 0;
  let got = 0;
  for await (const chunk of await driver.read(key, signal)) {
    const c = chunk as Buffer;
    const from = Math.max(0, offset - pos);
    const to = Math.min(c.length, offset + length - pos);
    if (to > from) got += c.copy(out, got, from, to);
    pos += c.length;
    if (got === length) break;
  }
  if (got < length) throw shortRange(driver.url, key, offset, length, pos);
  return out;
}

/** The error of a range that runs past the object's end. */
export function shortRange(url: string, key: string, offset: number, length: number, size: number): CairnError {
  return new CairnError('FORMAT_INVALID', `repository "${url}": object "${key}" has ${size} bytes, too few for bytes ${offset}–${offset + length - 1}`, {
    hint: 'the object was cut short or replaced: run cairn-verify, and take a new backup',
  });
}
