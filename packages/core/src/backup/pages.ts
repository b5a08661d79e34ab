// Page-level diff and incr backups (issue 17 items 1-2): for a relation's
// main fork, a backup stores only the 8 KiB pages that changed since its
// parent, in one object per changed file, and the manifest says which.
//
// The rule ("changed"), decided page by page from the page alone, never from
// mtime or the WAL summarizer:
//
//   a page is UNCHANGED since the parent iff
//     - it lies below the parent's copy's size,
//     - its header is valid (bufpage.h: pd_lower >= 24, pd_lower <= pd_upper
//       <= pd_special <= 8192, page size 8192, layout version 4, no unknown
//       flags) and it is not new (pd_upper != 0, which covers zeroed pages),
//     - 0 < pd_lsn < the parent's start LSN (the redo point of the parent's
//       pg_backup_start checkpoint), and
//     - its data checksum is right.
//   Every other page is stored.
//
// Why that is enough: pg_backup_start's checkpoint wrote every page changed
// before the parent's start LSN before the parent copied anything, and any
// change after it moves pd_lsn to at least that LSN. With data checksums
// (required below) that holds for hint bits too: the first hint-bit change
// after a checkpoint is WAL-logged with a full-page image and moves pd_lsn,
// so a page whose LSN is older than the parent's start is byte for byte the
// page the parent copied. Without checksums (and no wal_log_hints) a page
// can change without its LSN moving; pg_probackup refuses LSN-based restore
// there for the same reason, and so does cairn: such clusters keep the
// file-level rule. A page read while PostgreSQL writes it (torn) has either
// a new LSN (stored) or an old header over new bytes, which fails its
// checksum (stored); replay from this backup's start rewrites it either way.
//
// Whole-file, not page-level, whenever the parent's copy might not be this
// file's past: another system, another timeline (a PITR or promotion may
// have reused LSNs below the parent's start), data checksums switched on or
// off (pg_checksums rewrites every page without moving its LSN), a start LSN
// not after the parent's, a file whose inode changed (dropped and recreated
// under the same name, CREATE DATABASE copying a template's pages with their
// old LSNs), a size that is not whole pages. The manifest keeps the SHA-256
// of the file as read, so a restore that rebuilds anything else fails its
// check instead of handing PostgreSQL a wrong file.
//
// A page-level entry (ManifestFile.pages) is self-contained, as pgBackRest's
// block map is: the whole-file object the pages lie over (`base`, kept by an
// older backup) and every layer of pages since, oldest first. A layer's
// object is its pages one after the other in block order, encoded like any
// file (zstd frames, then encryption): `zstd -d` gives the pages, and
// `blocks` ("0-3,17") says where each goes. Restore lays down the newest
// version of each page, cuts the file to its size and checks its SHA-256.

import { createHash } from 'node:crypto';
import { CairnError } from '../cli/errors.js';
import { BLCKSZ, pageChecksum } from '../pg/page-checksum.js';
import { parseLsn } from '../wal/lsn.js';
import { quote } from '../wal/quote.js';
import type { BundleRef } from './bundle.js';
import type { BackupManifest, ManifestFile } from './manifest.js';

/** One stored object a file is rebuilt from. */
export interface StoredPiece {
  /** The backup whose object it is. */
  ref: string;
  key: string;
  storedSize: number;
  bundle?: BundleRef;
  /** Plaintext size and SHA-256 of the object. */
  size: number;
  sha256: string;
  /**
   * The file's mtime when this was stored. A --delta restore takes a file on
   * disk with this state's size and mtime (as a restore of it leaves it) to
   * be in this state, and proves it with the SHA-256 when the file is whole.
   */
  mtime?: number;
}

/** Pages stored by one backup: `blocks` of the file, in that order, and the file as it then was. */
export interface PageLayer extends StoredPiece {
  /** Block numbers relative to the file, ascending: "0-3,17,20-21". */
  blocks: string;
  /** The file's size and SHA-256 after this layer (a --delta restore recognises a file in that state). */
  fileSize: number;
  fileSha256: string;
}

export interface PageChain {
  base: StoredPiece;
  layers: PageLayer[];
}

/** Layers a file may have before it is stored whole again. */
export const MAX_LAYERS = 16;

// A main fork segment: <relfilenode>[.<segno>] under base/<db>/ or a
// tablespace's database directory. Free space and visibility maps and init
// forks stay file-level (small; the VM's changes are not always LSN-marked
// the way heap pages are), as do global/ (shared catalogs, small).
const OID = '[1-9][0-9]*';
const MAIN_FORK_RE = new RegExp(`^(?:base/${OID}|pg_tblspc/${OID}/PG_[^/]+/${OID})/${OID}(?:\\.[1-9][0-9]*)?$`);

export function isMainForkFile(path: string): boolean {
  return MAIN_FORK_RE.test(path);
}

/** Why a backup with `parent` cannot be page-level, or undefined when it can. */
export function pageLevelBlocker(parent: Omit<BackupManifest, 'files'> | undefined, cur: { systemId: string; timeline: number; startLsn: bigint; dataChecksums: boolean; source: 'local' | 'stream' }): string | undefined {
  if (parent === undefined) return 'no parent';
  if (cur.source !== 'local') return 'a stream backup reads each file once, in tar order';
  if (!cur.dataChecksums) return 'the cluster has no data checksums (initdb -k), so a page can change without its LSN moving';
  if (!parent.dataChecksums) return `parent ${parent.id} was taken without data checksums`;
  if (parent.systemId !== cur.systemId) return `parent ${parent.id} is of another system`;
  if (parent.timeline !== cur.timeline) return `the timeline changed since parent ${parent.id} (${parent.timeline} → ${cur.timeline})`;
  let pStart: bigint;
  try {
    pStart = parseLsn(parent.start.lsn);
  } catch {
    return `parent ${parent.id} has no readable start LSN`;
  }
  if (cur.startLsn <= pStart) return `this backup starts at or before parent ${parent.id}'s start LSN`;
  return undefined;
}

/** The whole-file object behind a manifest entry that is not page-level. */
export function pieceOf(f: ManifestFile): StoredPiece {
  return { ref: f.ref, key: f.key, storedSize: f.storedSize, ...(f.bundle ? { bundle: f.bundle } : {}), size: f.size, sha256: f.sha256, mtime: f.mtime };
}

/** Every object a file is rebuilt from, in the order they are laid down. */
export function fileObjects(f: ManifestFile): StoredPiece[] {
  return f.pages ? [f.pages.base, ...f.pages.layers] : [pieceOf(f)];
}

/**
 * One entry per stored object a file is rebuilt from, each shaped like a
 * whole file's entry (its object's key, ref, size and SHA-256): what verify
 * reads back object by object.
 */
export function objectEntries(f: ManifestFile): ManifestFile[] {
  if (!f.pages) return [f];
  return fileObjects(f).map((p) => {
    const { pages: _p, bundle: _b, badPages: _bad, ...rest } = f;
    return { ...rest, ref: p.ref, key: p.key, storedSize: p.storedSize, size: p.size, sha256: p.sha256, ...(p.bundle ? { bundle: p.bundle } : {}) };
  });
}

// ---- block lists ------------------------------------------------------------

/** "0-3,17,20-21" from ascending block numbers. */
export function encodeBlocks(blocks: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < blocks.length; ) {
    let j = i;
    while (j + 1 < blocks.length && blocks[j + 1] === blocks[j]! + 1) j++;
    out.push(j === i ? String(blocks[i]) : `${blocks[i]}-${blocks[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

/**
 * Ranges [first, last] of an encoded block list; throws FORMAT_INVALID for a
 * list that is not ascending, overlaps or reaches `limit` (the layer's page count).
 */
export function decodeBlocks(s: string, where: string): [number, number][] {
  const out: [number, number][] = [];
  if (s === '') return out;
  let next = 0;
  for (const part of s.split(',')) {
    const m = /^(0|[1-9][0-9]{0,9})(?:-(0|[1-9][0-9]{0,9}))?$/.exec(part);
    const a = m ? Number(m[1]) : NaN;
    const b = m ? (m[2] === undefined ? a : Number(m[2])) : NaN;
    if (!m || b < a || a < next || b > 0xffff_fffe) throw new CairnError('FORMAT_INVALID', `${where}: block list ${quote(s.length > 60 ? `${s.slice(0, 60)}…` : s)} is not ascending block numbers`);
    out.push([a, b]);
    next = b + 1;
  }
  return out;
}

export function countBlocks(ranges: readonly [number, number][]): number {
  let n = 0;
  for (const [a, b] of ranges) n += b - a + 1;
  return n;
}

// ---- the rule ---------------------------------------------------------------

const PD_VALID_FLAG_BITS = 0x0007;
const SIZE_OF_PAGE_HEADER = 24;
const PG_PAGE_LAYOUT_VERSION = 4;

/** classifyPage: the page is stored. */
export const PAGE_CHANGED = 1;
/** classifyPage: its data checksum failed although its LSN is before this backup's start. */
export const PAGE_BAD = 2;

/**
 * The page at `o` of `buf` (block `block` of its relation fork), against the
 * parent's start LSN and this backup's (each split in uint32 halves): stored
 * (PAGE_CHANGED) unless certainly the page the parent copied (the rule at the
 * top of this file), and PAGE_BAD when its checksum fails, as the page check
 * of a full backup decides (pg/page-checksum.ts: new pages and pages changed
 * since this backup began are not checked). One checksum per page for both.
 */
export function classifyPage(buf: Uint8Array, o: number, block: number, parentHi: number, parentLo: number, startHi: number, startLo: number): number {
  const u16 = (at: number) => buf[o + at]! | (buf[o + at + 1]! << 8);
  const upper = u16(14);
  if (upper === 0) return PAGE_CHANGED; // new or zeroed
  const hi = (buf[o]! | (buf[o + 1]! << 8) | (buf[o + 2]! << 16) | (buf[o + 3]! << 24)) >>> 0;
  const lo = (buf[o + 4]! | (buf[o + 5]! << 8) | (buf[o + 6]! << 16) | (buf[o + 7]! << 24)) >>> 0;
  if (hi > startHi || (hi === startHi && lo >= startLo)) return PAGE_CHANGED; // may be torn; replay rewrites it
  if (pageChecksum(buf.subarray(o, o + BLCKSZ), block) !== u16(8)) return PAGE_CHANGED | PAGE_BAD;
  const lower = u16(12);
  const special = u16(16);
  const sizeVersion = u16(18);
  if ((u16(10) & ~PD_VALID_FLAG_BITS) !== 0) return PAGE_CHANGED;
  if (lower < SIZE_OF_PAGE_HEADER || lower > upper || upper > special || special > BLCKSZ) return PAGE_CHANGED;
  if ((sizeVersion & 0xff00) !== BLCKSZ || (sizeVersion & 0xff) !== PG_PAGE_LAYOUT_VERSION) return PAGE_CHANGED;
  if (hi === 0 && lo === 0) return PAGE_CHANGED;
  if (hi > parentHi || (hi === parentHi && lo >= parentLo)) return PAGE_CHANGED;
  return 0;
}

/** Whether the page is certainly the one a backup that started at the parent's LSN copied (classifyPage). */
export function pageUnchanged(buf: Uint8Array, o: number, block: number, parentHi: number, parentLo: number): boolean {
  return (classifyPage(buf, o, block, parentHi, parentLo, 0xffff_ffff, 0xffff_ffff) & PAGE_CHANGED) === 0;
}

/** Thrown out of selectChangedPages when the file turned out not to be whole pages: store it whole. */
export class NotWholePages extends Error {}

export interface PageSelection {
  /** Block numbers (relative to the file) of the pages yielded. */
  blocks: number[];
  /** Block numbers (of the relation fork) whose checksum failed (PAGE_BAD). */
  bad: number[];
  /** Bytes of the file read. */
  fileSize: number;
}

/**
 * Reads `pieces` (the file in order, each a multiple of BLCKSZ but the last)
 * and yields the changed pages packed into pieces of at most `pieceSize`.
 * `each` sees every input piece first (whole-file hash). Pages whose
 * checksum fails are collected in `sel.bad`, as a full backup reports them.
 * `sel` is filled in as pages go.
 */
export async function* selectChangedPages(
  pieces: AsyncIterable<Buffer>,
  o: { firstBlock: number; parentStartLsn: bigint; startLsn: bigint; parentBlocks: number; pieceSize: number; each?: (piece: Buffer, offset: number) => void },
  sel: PageSelection,
): AsyncGenerator<Buffer> {
  const hi = Number(o.parentStartLsn >> 32n);
  const lo = Number(o.parentStartLsn & 0xffff_ffffn);
  const sHi = Number(o.startLsn >> 32n);
  const sLo = Number(o.startLsn & 0xffff_ffffn);
  // Grown as pages come, up to one piece: most relation files are a page
  // or two, and a piece allocated per file (4 MiB) for each of 20,000 small
  // tables kept the collector busy for most of an incremental (issue 19).
  let out = Buffer.alloc(0);
  let used = 0;
  let offset = 0;
  for await (const piece of pieces) {
    if (offset % BLCKSZ !== 0) throw new NotWholePages();
    o.each?.(piece, offset);
    const whole = piece.length - (piece.length % BLCKSZ);
    for (let at = 0; at < whole; at += BLCKSZ) {
      const rel = (offset + at) / BLCKSZ;
      const c = classifyPage(piece, at, o.firstBlock + rel, hi, lo, sHi, sLo);
      if ((c & PAGE_BAD) !== 0) sel.bad.push(o.firstBlock + rel);
      if (c === 0 && rel < o.parentBlocks) continue;
      if (used === out.length) {
        // Whole pieces go out as they fill; a partial one grows.
        if (used === o.pieceSize) {
          yield out;
          out = Buffer.alloc(0);
          used = 0;
        }
        const grown = Buffer.allocUnsafe(Math.min(o.pieceSize, Math.max(2 * out.length, whole - at)));
        out.copy(grown, 0, 0, used);
        out = grown;
      }
      piece.copy(out, used, at, at + BLCKSZ);
      used += BLCKSZ;
      sel.blocks.push(rel);
    }
    offset += piece.length;
  }
  sel.fileSize = offset;
  if (offset % BLCKSZ !== 0) throw new NotWholePages();
  if (used > 0) yield out.subarray(0, used);
}

/** What storing one file page-level gave. */
export interface ChangedPages {
  /** The file as read: size and SHA-256. */
  fileSize: number;
  fileSha256: string;
  /** Block numbers stored, ascending. */
  blocks: number[];
  /** Block numbers whose page checksum failed. */
  badPages: number[];
  /** The layer object, when `store` was called (there were pages to store). */
  layer?: { size: number; sha256: string; storedSize: number; bundle?: BundleRef };
}

/**
 * Reads a file, hashes all of it, and hands its changed pages to `store`:
 * `small` with one buffer when they fit one piece, else `stream`. Nothing is
 * stored when no page changed. Throws NotWholePages for a file that is not
 * whole pages (the caller stores it whole).
 */
export async function storeChangedPages(
  pieces: AsyncIterable<Buffer>,
  o: { firstBlock: number; parentStartLsn: bigint; startLsn: bigint; parentBlocks: number; pieceSize: number; inspect?: (piece: Buffer, offset: number) => void },
  store: {
    small(buf: Buffer): Promise<{ size: number; sha256: string; storedSize: number; bundle?: BundleRef }>;
    stream(pieces: AsyncIterable<Buffer>): Promise<{ size: number; sha256: string; storedSize: number }>;
  },
): Promise<ChangedPages> {
  const hash = createHash('sha256');
  const sel: PageSelection = { blocks: [], bad: [], fileSize: 0 };
  const gen = selectChangedPages(pieces, {
    ...o,
    each: (piece, offset) => {
      hash.update(piece);
      o.inspect?.(piece, offset);
    },
  }, sel);
  const first = await gen.next();
  let layer: ChangedPages['layer'];
  if (!first.done) {
    const second = await gen.next();
    if (second.done) {
      layer = await store.small(first.value);
    } else {
      async function* all(): AsyncGenerator<Buffer> {
        yield first.value as Buffer;
        yield second.value as Buffer;
        yield* gen;
      }
      layer = await store.stream(all());
    }
  }
  return { fileSize: sel.fileSize, fileSha256: hash.digest('hex'), blocks: sel.blocks, badPages: sel.bad, ...(layer ? { layer } : {}) };
}
