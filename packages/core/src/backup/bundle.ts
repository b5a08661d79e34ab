// Bundles: a backup's small files packed into few objects (issue 17 item 3).
// A fresh cluster is ~1,000 files, nearly all a few KiB; as one object each,
// a store in another region costs a round trip per file, and requests cost
// money. So files up to BUNDLE_FILE_MAX are stored, already encoded exactly
// as they would be alone (zstd frame, then encryption), as members of a
// bundle object of about BUNDLE_TARGET bytes:
//
//   <cluster>/backups/<id>/bundles/<nnnnnn>.tar
//
// A bundle is a plain POSIX tar (ustar) archive, so it stays readable without
// cairn: each member is named by the key the file would have had alone,
// relative to the backup (data/base/5/1259.zst), and `tar -xf` gives back the
// same tree an unbundled backup has; `zstd -d` then gives the file. The
// manifest entry keeps that key in `key` (encodings are read from its
// extension, labels name it) and adds `bundle: { key, offset }`: the member's
// bytes are storedSize bytes from offset, read back with one ranged GET per
// span of neighbouring members (createSpanReader). Bundles are written once,
// like every object; a backup that fails removes them with its prefix.

import { CairnError } from '../cli/errors.js';
import { readRange, type StorageDriver } from '../storage/driver.js';
import { backupPrefix } from './manifest.js';

/** Files up to this size go into bundles. */
export const BUNDLE_FILE_MAX = 1024 * 1024;
/** A bundle is written once it holds this much. */
export const BUNDLE_TARGET = 16 * 1024 * 1024;
/**
 * Bundles being written at once, beside the one filling: bounds memory
 * (about 2 × BUNDLE_TARGET). One: with small files encoded on a worker,
 * bundles fill fast, and a third 18 MiB buffer took the 20,000-table
 * backup to 302 MB (issue 19).
 */
const PENDING_MAX = 1;

const BLOCK = 512;

/** Where a bundled file's stored bytes are: `storedSize` bytes from `offset` of object `key`. */
export interface BundleRef {
  key: string;
  offset: number;
}

export function bundleKey(cluster: string, id: string, n: number): string {
  return `${backupPrefix(cluster, id)}bundles/${String(n).padStart(6, '0')}.tar`;
}

/** The prefix every bundle of backup `id` is below (manifest rules check it). */
export function bundlePrefix(cluster: string, id: string): string {
  return `${backupPrefix(cluster, id)}bundles/`;
}

function octal(buf: Buffer, at: number, width: number, value: number): void {
  buf.write(value.toString(8).padStart(width - 1, '0') + '\0', at, width, 'ascii');
}

/**
 * A ustar header for a regular file, or undefined when the name does not fit
 * (more than 100 bytes that cannot be split at a '/' into 155 + 100): such a
 * file is stored alone instead.
 */
export function tarHeader(name: string, size: number, mtime: number): Buffer | undefined {
  const bytes = Buffer.byteLength(name);
  let prefix = '';
  let base = name;
  if (bytes > 100) {
    // Split at a '/' so that both parts fit.
    let cut = -1;
    for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
      if (Buffer.byteLength(name.slice(0, i)) <= 155 && Buffer.byteLength(name.slice(i + 1)) <= 100) {
        cut = i;
        break;
      }
    }
    if (cut < 0) return undefined;
    prefix = name.slice(0, cut);
    base = name.slice(cut + 1);
  }
  const h = Buffer.alloc(BLOCK);
  h.write(base, 0, 100, 'utf8');
  octal(h, 100, 8, 0o644);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, Math.max(0, Math.floor(mtime)));
  h.fill(' ', 148, 156); // the checksum counts its own field as spaces
  h.write('0', 156, 1, 'ascii');
  h.write('ustar\0' + '00', 257, 8, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

export interface Bundler {
  /**
   * Adds one stored file as member `member` (its key relative to the
   * backup); undefined when the name cannot be a tar member (store it alone).
   * Waits while PENDING_MAX bundles are being written.
   */
  add(member: string, stored: Buffer, mtime: number): Promise<BundleRef | undefined>;
  /** Writes the last bundle and waits for every write; the keys written. */
  finish(): Promise<string[]>;
}

/**
 * Fills bundles of backup `id` and writes each (durable: false, like the
 * files; the backup's syncKeys covers them) once it holds BUNDLE_TARGET.
 */
export function createBundler(o: { driver: StorageDriver; cluster: string; id: string; signal: AbortSignal; target?: number }): Bundler {
  const target = o.target ?? BUNDLE_TARGET;
  // Members are copied into the bundle's own buffer, never kept by
  // reference: a small file's stored bytes are often a view of a much
  // larger buffer (zlib's output chunk), and a bundle of 50,000 such views
  // held 800 MB for 16 MiB of members (issue 19, 20,000 tables).
  const capacity = target + 2 * BUNDLE_FILE_MAX + 4 * BLOCK;
  let n = 0;
  let buf: Buffer | undefined;
  // A written bundle's buffer, filled again by the next one. Dropped, each
  // 18 MiB buffer waited for a full collection to be freed (it lives too
  // long to die young), and several such waited at once (issue 19).
  let spare: Buffer | undefined;
  let size = 0;
  let key = '';
  const written: string[] = [];
  const pending = new Set<Promise<void>>();
  // The first failed write, rethrown by the next add() or finish().
  const failed: { err?: unknown; yes: boolean } = { yes: false };
  const check = () => {
    if (failed.yes) throw failed.err;
  };

  const flush = () => {
    if (size === 0 || buf === undefined) return;
    // End of archive: two zero blocks.
    buf.fill(0, size, size + 2 * BLOCK);
    const body = buf.subarray(0, size + 2 * BLOCK);
    const whole = buf;
    const k = key;
    buf = undefined;
    size = 0;
    const p: Promise<void> = o.driver.write(k, body, { signal: o.signal, durable: false }).then(
      () => {
        written.push(k);
        // Written: the driver is done with the bytes.
        spare = whole;
      },
      (err: unknown) => {
        if (!failed.yes) Object.assign(failed, { yes: true, err });
      },
    ).finally(() => pending.delete(p));
    pending.add(p);
  };

  return {
    async add(member, stored, mtime) {
      check();
      const header = tarHeader(member, stored.length, mtime);
      if (header === undefined) return undefined;
      const pad = (BLOCK - (stored.length % BLOCK)) % BLOCK;
      const need = BLOCK + stored.length + pad;
      // Room for the member and the end blocks, in an empty bundle at least.
      if (need + 2 * BLOCK > capacity) return undefined;
      while (pending.size >= PENDING_MAX) await Promise.race(pending);
      check();
      // From here on synchronous: no other add() runs in between.
      if (size > 0 && size + need + 2 * BLOCK > capacity) flush();
      if (buf === undefined) {
        buf = spare ?? Buffer.allocUnsafe(capacity);
        spare = undefined;
        key = bundleKey(o.cluster, o.id, ++n);
      }
      const offset = size + BLOCK;
      header.copy(buf, size);
      stored.copy(buf, offset);
      buf.fill(0, offset + stored.length, offset + stored.length + pad);
      size += need;
      const ref = { key, offset };
      if (size >= target) flush();
      return ref;
    },
    async finish() {
      flush();
      await Promise.all(pending);
      check();
      return written;
    },
  };
}

/** A bundled file to read: its stored bytes' place. */
export interface SpanFile {
  bundle: BundleRef;
  storedSize: number;
}

/** Whether a manifest entry's bytes are in a bundle. */
export function isBundled<F extends { bundle?: BundleRef }>(f: F): f is F & { bundle: BundleRef } {
  return f.bundle !== undefined;
}

export interface SpanReader<F extends SpanFile = SpanFile> {
  /** The files in the order that keeps few spans alive. */
  readonly order: readonly F[];
  /** The stored bytes of `f` (one of the files given). */
  read(f: SpanFile): Promise<Buffer>;
  /** `f` will not be read (restore --delta kept it): its span may go sooner. */
  skip(f: SpanFile): void;
}

/** Neighbouring members closer than this are read in one request, the gap read over. */
export const SPAN_GAP = 256 * 1024;
/** A span is at most this long (unless one member alone is longer). */
export const SPAN_MAX = 8 * 1024 * 1024;

/**
 * Reads bundled files by span: members of one bundle that lie close together
 * are fetched with one ranged read, which every file of the span then slices.
 * A span is fetched when its first file asks, and dropped when its last one
 * has taken its bytes, so callers that go through the files in the order
 * `order` returns (by bundle and offset) hold a few spans at a time.
 */
export function createSpanReader<F extends SpanFile>(driver: StorageDriver, files: readonly F[], signal?: AbortSignal): SpanReader<F> {
  interface Span {
    key: string;
    start: number;
    end: number;
    left: number;
    data?: Promise<Buffer>;
  }
  // By place, not by object: callers may pass a copy of an entry.
  const placeOf = (f: SpanFile) => `${f.bundle.offset}@${f.bundle.key}`;
  const spanOf = new Map<string, Span>();
  const order = [...files].sort((a, b) => (a.bundle.key < b.bundle.key ? -1 : a.bundle.key > b.bundle.key ? 1 : a.bundle.offset - b.bundle.offset));
  let cur: Span | undefined;
  for (const f of order) {
    const start = f.bundle.offset;
    const end = start + f.storedSize;
    if (cur && cur.key === f.bundle.key && start - cur.end <= SPAN_GAP && end - cur.start <= SPAN_MAX) {
      cur.end = Math.max(cur.end, end);
      cur.left++;
    } else {
      cur = { key: f.bundle.key, start, end, left: 1 };
    }
    spanOf.set(placeOf(f), cur);
  }
  return {
    order,
    async read(f) {
      const s = spanOf.get(placeOf(f));
      if (s === undefined) throw new CairnError('INTERNAL', 'span reader: a file it was not given');
      s.data ??= readRange(driver, s.key, s.start, s.end - s.start, signal);
      try {
        const data = await s.data;
        const from = f.bundle.offset - s.start;
        return Buffer.from(data.subarray(from, from + f.storedSize));
      } finally {
        if (--s.left === 0) s.data = undefined;
      }
    },
    skip(f) {
      const s = spanOf.get(placeOf(f));
      if (s !== undefined && --s.left === 0) s.data = undefined;
    },
  };
}
