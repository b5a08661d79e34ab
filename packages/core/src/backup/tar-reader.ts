// A streaming reader of the tar archive `pg_basebackup -D - -Ft -X none` writes
// to stdout: entries one at a time, bodies as subarrays of the input chunks, in
// bounded memory, and a stream that ends early never passes as a whole backup.

import { CairnError } from '../cli/errors.js';
import { quote } from '../wal/quote.js';

export interface TarHeader {
  /** Relative path without a leading `./`; directories without a trailing `/`. */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';
  /** Bytes of the body; 0 for links, directories, devices and FIFOs, which have none. */
  size: number;
  /** Permission bits (& 0o7777). */
  mode: number;
  /** Seconds since the epoch (a pax mtime's fraction is dropped). */
  mtime: number;
  /** Target of a symlink or hard link; '' otherwise. */
  linkname: string;
}

export interface TarEntry {
  header: TarHeader;
  /**
   * The entry's bytes, as subarrays of the input chunks (not copies: do not
   * modify them). Call at most once, and only before asking for the next
   * entry; whatever is left unread then is skipped.
   */
  body(): AsyncGenerator<Buffer>;
}

/*
 * The ustar header (POSIX pax, "ustar Interchange Format"; PostgreSQL writes it
 * in src/port/tar.c, tarCreateHeader):
 *
 *   offset  size  field
 *        0   100  name        NUL-terminated unless it fills the field
 *      100     8  mode        octal
 *      124    12  size        octal, or base-256 when the high bit of the first byte is set
 *      136    12  mtime       octal (or base-256)
 *      148     8  chksum      octal sum of the header's bytes, this field counted as spaces
 *      156     1  typeflag
 *      157   100  linkname
 *      257     6  magic       "ustar\0" (POSIX) or "ustar " (GNU, with version " \0")
 *      345   155  prefix      POSIX only: path = prefix + "/" + name; GNU puts atime/ctime here
 */
const BLOCK = 512;
const CHKSUM_OFFSET = 148;
const CHKSUM_LENGTH = 8;

/** Cap on a pax extended header or GNU long name/link body: they are held in memory. */
const MAX_META_BYTES = 1024 * 1024;

const EMPTY = Buffer.alloc(0);

/** What a pax 'x' header or GNU 'L'/'K' says about the next entry. */
interface Pending {
  paxPath?: string | undefined;
  paxLinkpath?: string | undefined;
  paxSize?: number | undefined;
  paxMtime?: number | undefined;
  gnuPath?: string | undefined;
  gnuLinkpath?: string | undefined;
}

/** Where the reader is inside the current entry. */
interface EntryState {
  path: string;
  size: number;
  /** Body bytes not yet read (by the caller or by a skip). */
  remaining: number;
  bodyTaken: boolean;
  /** The reader has moved on: the body can no longer be read. */
  closed: boolean;
}

/** The input as a cursor over its chunks; tracks the stream offset for error messages. */
class ChunkCursor {
  private readonly it: AsyncIterator<Buffer>;
  private chunk: Buffer = EMPTY;
  private pos = 0;
  /** Bytes of the stream consumed so far. */
  offset = 0;
  ended = false;

  constructor(source: AsyncIterable<Buffer>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** True when chunk[pos] is a byte; false at the end of the stream. */
  private async fill(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      if (this.ended) return false;
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        this.chunk = EMPTY;
        this.pos = 0;
        return false;
      }
      const v: Uint8Array = r.value;
      // A plain Uint8Array would make subarray() return one too: wrap it, without copying.
      this.chunk = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.pos = 0;
    }
    return true;
  }

  /** Up to `max` (> 0) bytes from the current chunk, not copied; undefined at the end. */
  async take(max: number): Promise<Buffer | undefined> {
    if (this.pos >= this.chunk.length && !(await this.fill())) return undefined;
    const n = Math.min(max, this.chunk.length - this.pos);
    const out = this.chunk.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return out;
  }

  /** Exactly `n` bytes (copied only when they span chunks), or fewer if the stream ends first. */
  async read(n: number): Promise<Buffer> {
    const first = await this.take(n);
    if (first === undefined) return EMPTY;
    if (first.length === n) return first;
    const parts = [first];
    let got = first.length;
    while (got < n) {
      const part = await this.take(n - got);
      if (part === undefined) break;
      parts.push(part);
      got += part.length;
    }
    return Buffer.concat(parts, got);
  }

  /** Drops `n` bytes; returns how many there were (fewer only at the end). */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      const part = await this.take(left);
      if (part === undefined) break;
      left -= part.length;
    }
    return n - left;
  }

  /** Releases the source (destroys a Readable) when we stop before its end. */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    try {
      await this.it.return?.();
    } catch {
      // the source failing to close must not hide why we stopped
    }
  }
}

function truncated(label: string, where: string, offset: number): CairnError {
  return new CairnError('FORMAT_INVALID', `${quote(label)} is not a complete tar archive: it ends ${where} (byte ${offset})`, {
    hint: 'the stream stopped early (pg_basebackup failed or was killed); this backup is not usable, take it again',
  });
}

function invalid(label: string, why: string, offset: number): CairnError {
  return new CairnError('FORMAT_INVALID', `${quote(label)} is not a valid tar archive: ${why} (byte ${offset})`, {
    hint: 'the stream is corrupt or not the tar output of pg_basebackup -Ft; take the backup again',
  });
}

function isZero(buf: Uint8Array): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** A NUL-terminated (or field-filling) string. */
function cString(buf: Buffer, off: number, len: number): string {
  const nul = buf.indexOf(0, off);
  const end = nul === -1 || nul > off + len ? off + len : nul;
  return buf.toString('utf8', off, end);
}

/**
 * A numeric field: octal digits, optionally led by spaces or NULs and ended by
 * a space or NUL (old tars write " 644 \0"), or, when the first byte has its
 * high bit set, a big-endian base-256 number (GNU and star, and PostgreSQL's
 * print_tar_number, for values that do not fit: sizes of 8 GiB and more).
 */
function parseNumber(block: Buffer, off: number, len: number, field: string, label: string, at: number): number {
  const lead = block[off]!;
  if (lead & 0x80) {
    // 0x80: positive, the remaining 7 bits and bytes are the value; 0xff: negative, two's complement.
    let v = BigInt(lead & 0x7f);
    for (let i = off + 1; i < off + len; i++) v = (v << 8n) | BigInt(block[i]!);
    if (lead === 0xff) v -= 1n << BigInt(len * 8 - 1);
    else if (lead !== 0x80) throw invalid(label, `bad base-256 ${field} field`, at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw invalid(label, `${field} ${v} is out of range`, at);
    }
    return Number(v);
  }
  let i = off;
  const end = off + len;
  while (i < end && (block[i] === 0x20 || block[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) {
    if (block[i] !== 0x20 && block[i] !== 0) {
      throw invalid(label, `${field} field ${JSON.stringify(block.toString('latin1', off, end))} is not octal`, at);
    }
  }
  // An empty field is 0 (GNU tar reads it so, and it only occurs in fields we do not use).
  return digits === 0 ? 0 : v;
}

/**
 * The stored checksum against both sums tar implementations have used: of
 * unsigned bytes (POSIX, PostgreSQL's tarChecksum) and of signed chars (old
 * Sun and GNU tar); GNU tar also accepts either.
 */
function checkHeaderSum(block: Buffer, label: string, at: number): void {
  const stored = parseNumber(block, CHKSUM_OFFSET, CHKSUM_LENGTH, 'checksum', label, at);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= CHKSUM_OFFSET && i < CHKSUM_OFFSET + CHKSUM_LENGTH ? 0x20 : block[i]!;
    unsigned += b;
    signed += b >= 0x80 ? b - 0x100 : b;
  }
  if (stored !== unsigned && stored !== signed) {
    throw invalid(label, `header checksum mismatch (stored ${stored}, computed ${unsigned})`, at);
  }
}

/** Applies the records of a pax extended header ("<len> <key>=<value>\n"; POSIX pax, "pax Extended Header"). */
function parsePax(body: Buffer, pending: Pending, label: string, at: number): void {
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0 && isZero(body.subarray(pos))) break; // NUL padding some writers leave
    const space = body.indexOf(0x20, pos);
    const lenText = space === -1 ? '' : body.toString('latin1', pos, space);
    const len = /^[1-9][0-9]{0,8}$/.test(lenText) ? Number(lenText) : NaN;
    if (!(len > 0) || pos + len > body.length || body[pos + len - 1] !== 0x0a) {
      throw invalid(label, 'malformed pax extended header record', at);
    }
    const record = body.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq === -1) throw invalid(label, 'malformed pax extended header record', at);
    const key = record.toString('utf8', 0, eq);
    const value = record.toString('utf8', eq + 1);
    // An empty value cancels the keyword: the ustar field counts again (pax, "keyword=").
    switch (key) {
      case 'path':
        pending.paxPath = value === '' ? undefined : value;
        break;
      case 'linkpath':
        pending.paxLinkpath = value === '' ? undefined : value;
        break;
      case 'size': {
        if (value !== '' && !/^[0-9]{1,16}$/.test(value)) throw invalid(label, `pax size ${quote(value)} is not a number`, at);
        const n = Number(value);
        if (!Number.isSafeInteger(n)) throw invalid(label, `pax size ${value} is out of range`, at);
        pending.paxSize = value === '' ? undefined : n;
        break;
      }
      case 'mtime': {
        // Decimal seconds with an optional fraction (e.g. "1700000000.123456789").
        const m = /^(-?[0-9]{1,15})(?:\.[0-9]*)?$/.exec(value);
        if (value !== '' && !m) throw invalid(label, `pax mtime ${quote(value)} is not a number`, at);
        pending.paxMtime = m ? Number(m[1]) : undefined;
        break;
      }
      default:
        // uid, uname, atime, ctime, comment, GNU.*, SCHILY.*: nothing a restore of PGDATA needs.
        break;
    }
    pos += len;
  }
}

function entryType(flag: number): TarHeader['type'] {
  switch (flag) {
    case 0x30: // '0'
    case 0x00: // '\0', pre-POSIX regular file
    case 0x37: // '7', contiguous file: a regular file everywhere that matters
      return 'file';
    case 0x31:
      return 'hardlink';
    case 0x32:
      return 'symlink';
    case 0x35:
      return 'dir';
    default:
      return 'other';
  }
}

/** Types stored without data records whatever the size field says (ustar: "no data logical records are stored for types 1, 2, or 5"; also 3, 4, 6). */
function hasNoData(flag: number): boolean {
  return flag >= 0x31 && flag <= 0x36;
}

function normalizePath(path: string, type: TarHeader['type']): string {
  let p = path;
  while (p.startsWith('./')) p = p.slice(2);
  if (type === 'dir') while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p === '' ? '.' : p;
}

/** Reads a metadata entry's body (pax header, GNU long name) into memory, then its padding. */
async function readMetaBody(cur: ChunkCursor, size: number, what: string, label: string, at: number): Promise<Buffer> {
  if (size > MAX_META_BYTES) throw invalid(label, `${what} of ${size} bytes is larger than ${MAX_META_BYTES}`, at);
  const body = await cur.read(size);
  if (body.length < size) throw truncated(label, `inside a ${what}`, cur.offset);
  // Copy: the body may be a view of a chunk, and the entry it describes comes later.
  const own = Buffer.from(body);
  if ((await cur.skip(padding(size))) < padding(size)) throw truncated(label, `inside the padding of a ${what}`, cur.offset);
  return own;
}

async function* readBody(cur: ChunkCursor, state: EntryState, label: string): AsyncGenerator<Buffer> {
  while (state.remaining > 0) {
    if (state.closed) {
      throw new CairnError('INTERNAL', `body of ${quote(state.path)} read after the reader moved to the next entry`);
    }
    const part = await cur.take(state.remaining);
    if (part === undefined) {
      throw truncated(label, `inside ${quote(state.path)} after ${state.size - state.remaining} of ${state.size} bytes`, cur.offset);
    }
    // Before the yield: if the caller stops here, the reader knows how much is left to skip.
    state.remaining -= part.length;
    yield part;
  }
}

/** Skips what the caller left of the entry's body, then its padding. */
async function finishEntry(cur: ChunkCursor, state: EntryState, label: string): Promise<void> {
  state.closed = true;
  const left = state.remaining + padding(state.size);
  const skipped = await cur.skip(left);
  if (skipped < state.remaining) {
    throw truncated(label, `inside ${quote(state.path)} after ${state.size - state.remaining + skipped} of ${state.size} bytes`, cur.offset);
  }
  state.remaining = 0;
  if (skipped < left) throw truncated(label, `inside the padding after ${quote(state.path)}`, cur.offset);
}

/**
 * After the first zero block: the second must follow, and anything after it
 * (GNU tar pads to its 10 KiB record size) must be zeros too, since data there
 * would be a second archive we would silently ignore.
 */
async function readEndOfArchive(cur: ChunkCursor, label: string): Promise<void> {
  const at = cur.offset;
  const second = await cur.read(BLOCK);
  if (second.length < BLOCK) throw truncated(label, 'after the first of the two zero blocks that end an archive', cur.offset);
  if (!isZero(second)) throw invalid(label, 'a lone zero block before more entries', at - BLOCK);
  for (;;) {
    const start = cur.offset;
    const part = await cur.take(1024 * 1024);
    if (part === undefined) return;
    if (!isZero(part)) throw invalid(label, 'data after the end-of-archive marker', start + part.findIndex((b) => b !== 0));
  }
}

/**
 * Entries of the tar archive in `source`, in order. Handles ustar (with its
 * prefix field), pax extended headers ('x'; 'g' ignored), GNU long names and
 * links ('L', 'K') and base-256 numbers. Throws FORMAT_INVALID naming `label`
 * on a bad header checksum and on a stream that ends anywhere but after the
 * two zero blocks that close an archive. Not safe to drive concurrently: read
 * a body to its end (or abandon it) before asking for the next entry.
 */
export async function* readTarEntries(source: AsyncIterable<Buffer>, label = 'tar stream'): AsyncGenerator<TarEntry> {
  const cur = new ChunkCursor(source);
  let pending: Pending = {};
  let current: EntryState | undefined;
  try {
    for (;;) {
      if (current !== undefined) await finishEntry(cur, current, label);
      current = undefined;
      const at = cur.offset;
      const block = await cur.read(BLOCK);
      if (block.length === 0) throw truncated(label, 'before the end-of-archive marker', at);
      if (block.length < BLOCK) throw truncated(label, 'inside a header', cur.offset);
      if (isZero(block)) {
        if (Object.keys(pending).length > 0) throw invalid(label, 'an extended header with no entry after it', at);
        await readEndOfArchive(cur, label);
        return;
      }
      checkHeaderSum(block, label, at);
      const flag = block[156]!;
      const size = parseNumber(block, 124, 12, 'size', label, at);
      if (size < 0) throw invalid(label, `negative size ${size}`, at);

      // Metadata entries describe the next header.
      if (flag === 0x78 /* x */ || flag === 0x58 /* X, pre-POSIX Solaris */) {
        parsePax(await readMetaBody(cur, size, 'pax extended header', label, at), pending, label, at);
        continue;
      }
      if (flag === 0x67 /* g */) {
        // Global pax headers hold defaults for the whole archive; pg_basebackup writes none.
        if ((await cur.skip(size + padding(size))) < size + padding(size)) throw truncated(label, 'inside a pax global header', cur.offset);
        continue;
      }
      if (flag === 0x4c /* L */ || flag === 0x4b /* K */) {
        const body = await readMetaBody(cur, size, 'GNU long name', label, at);
        const name = cString(body, 0, body.length);
        if (flag === 0x4c) pending.gnuPath = name;
        else pending.gnuLinkpath = name;
        continue;
      }

      const type = entryType(flag);
      // POSIX ustar only: GNU headers use bytes 345.. for atime and ctime, not a prefix.
      const posix = block.toString('latin1', 257, 263) === 'ustar\0';
      const prefix = posix ? cString(block, 345, 155) : '';
      const name = cString(block, 0, 100);
      const rawPath = pending.paxPath ?? pending.gnuPath ?? (prefix === '' ? name : `${prefix}/${name}`);
      const dataSize = hasNoData(flag) ? 0 : (pending.paxSize ?? size);
      const header: TarHeader = {
        path: normalizePath(rawPath, type),
        type,
        size: dataSize,
        mode: parseNumber(block, 100, 8, 'mode', label, at) & 0o7777,
        mtime: pending.paxMtime ?? parseNumber(block, 136, 12, 'mtime', label, at),
        linkname: pending.paxLinkpath ?? pending.gnuLinkpath ?? cString(block, 157, 100),
      };
      pending = {};
      const state: EntryState = { path: header.path, size: dataSize, remaining: dataSize, bodyTaken: false, closed: false };
      current = state;
      yield {
        header,
        body(): AsyncGenerator<Buffer> {
          if (state.closed) throw new CairnError('INTERNAL', `body of ${quote(state.path)} asked for after the reader moved to the next entry`);
          if (state.bodyTaken) throw new CairnError('INTERNAL', `body of ${quote(state.path)} asked for twice`);
          state.bodyTaken = true;
          return readBody(cur, state, label);
        },
      };
    }
  } finally {
    if (current !== undefined) current.closed = true;
    await cur.close();
  }
}
