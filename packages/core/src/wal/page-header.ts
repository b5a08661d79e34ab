// The long page header at the start of every WAL segment
// (XLogLongPageHeaderData, src/include/access/xlog_internal.h): it names the
// system the segment belongs to, its timeline and its position, which lets
// wal-push refuse a segment from another system or one that does not match
// its own file name, and wal-get and verify refuse a stored one (docs/design.md §4.12).

import { CairnError } from '../cli/errors.js';
import { formatLsn } from './lsn.js';
import { parseWalFileName } from './file-name.js';
import { formatSegmentSize, isValidSegmentSize, segmentName, segmentNumber } from './segment.js';
import { quote } from './quote.js';

/*
 * Layout (all fields in the server's byte order; x86 and ARM are little-endian):
 *
 *   offset  size  field
 *        0     2  xlp_magic        XLOG_PAGE_MAGIC, changes with the WAL format
 *        2     2  xlp_info         flag bits, XLP_LONG_HEADER = 0x0002
 *        4     4  xlp_tli          timeline of the first record on the page
 *        8     8  xlp_pageaddr     LSN of the page's first byte
 *       16     4  xlp_rem_len      bytes of a continued record
 *       20     4  (padding: xlp_sysid is uint64, aligned to 8)
 *       24     8  xlp_sysid        system identifier from pg_control
 *       32     4  xlp_seg_size     wal_segment_size, "just as a cross-check"
 *       36     4  xlp_xlog_blcksz  XLOG_BLCKSZ, "just as a cross-check"
 *
 * SizeOfXLogLongPHD = MAXALIGN(40) = 40 on every platform PostgreSQL supports.
 */
export const LONG_PAGE_HEADER_SIZE = 40;

/** XLP_LONG_HEADER and XLP_ALL_FLAGS (xlog_internal.h). */
const XLP_LONG_HEADER = 0x0002;
const XLP_ALL_FLAGS = 0x0007;

/**
 * XLOG_PAGE_MAGIC per major version (xlog_internal.h; the same table as
 * pgBackRest's postgres/interface/version.vendor.h). Used only to report the
 * version: the check below accepts any 0xD1xx so that a new major release
 * does not stop archiving, since the fields we read have not moved since 9.3.
 * (PG 17 betas used 0xD114 before the release settled on 0xD116.)
 */
const KNOWN_MAGICS: ReadonlyMap<number, number> = new Map([
  [0xd101, 12],
  [0xd106, 13],
  [0xd10d, 14],
  [0xd110, 15],
  [0xd113, 16],
  [0xd116, 17],
  [0xd118, 18],
]);

/**
 * Accepted magic range. PostgreSQL bumps XLOG_PAGE_MAGIC by a few per release
 * (0xD101 in 12 … 0xD118 in 18); versions before 12 (0xD098 in 11 and older)
 * are out of scope, and the top of the range leaves room for decades of
 * releases while still rejecting arbitrary data.
 */
const MIN_MAGIC = 0xd101;
const MAX_MAGIC = 0xd1ff;

export interface WalPageHeader {
  /** xlp_magic as a number, e.g. 0xD110 for PostgreSQL 15. */
  magic: number;
  /** The major version the magic belongs to, when it is a released one. */
  pgVersion: number | undefined;
  /** Byte order the segment was written in (of the server that wrote it). */
  byteOrder: 'LE' | 'BE';
  /** xlp_info flag bits. */
  info: number;
  /** xlp_tli: the timeline of the first record on the page. */
  timeline: number;
  /** xlp_pageaddr: the LSN of the segment's first byte. */
  pageAddress: bigint;
  /** xlp_rem_len: bytes of a record continued from the previous segment. */
  remainingLength: number;
  /** xlp_sysid in decimal, as pg_controldata prints "Database system identifier". */
  systemId: string;
  /** xlp_seg_size: the cluster's wal_segment_size in bytes. */
  segmentSize: number;
  /** xlp_xlog_blcksz: the WAL page size in bytes (8192 by default). */
  blockSize: number;
}

function notWal(label: string, why: string): CairnError {
  return new CairnError('FORMAT_INVALID', `${quote(label)} is not a WAL segment: ${why}`, {
    hint: 'only WAL segment files written by PostgreSQL 12 or later can be archived; check the path passed as %p',
  });
}

function isPowerOf2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/**
 * Reads and checks the long page header at the start of a segment (or
 * .partial). Needs at least the first 40 bytes. Throws FORMAT_INVALID naming
 * `label` when they cannot be the start of a WAL segment. The checks follow
 * XLogReaderValidatePageHeader (xlogreader.c) where they apply without
 * knowing the cluster: magic, defined info bits, long header present, valid
 * sizes, page address at a segment boundary.
 */
export function readWalPageHeader(buf: Buffer, label = 'WAL file'): WalPageHeader {
  const r = decodeWalPageHeader(buf);
  if (typeof r === 'string') throw notWal(label, r);
  return r;
}

/** The header, or why these bytes cannot start a WAL segment. */
function decodeWalPageHeader(buf: Buffer): WalPageHeader | string {
  if (buf.length < LONG_PAGE_HEADER_SIZE) {
    return buf.length === 0 ? 'it is empty' : `it is too short (${buf.length} bytes, a WAL page header has ${LONG_PAGE_HEADER_SIZE})`;
  }

  // The byte order is the writing server's, which is not necessarily ours
  // (the repository may be read on another machine): PostgreSQL itself only
  // reads its own order, so the magic read both ways tells which it was.
  let le: boolean;
  const magicLe = buf.readUInt16LE(0);
  const magicBe = buf.readUInt16BE(0);
  if (magicLe >= MIN_MAGIC && magicLe <= MAX_MAGIC) le = true;
  else if (magicBe >= MIN_MAGIC && magicBe <= MAX_MAGIC) le = false;
  else return `bad magic number 0x${magicLe.toString(16).toUpperCase().padStart(4, '0')} (PostgreSQL 12 and later write 0xD101 or higher)`;

  const u16 = (o: number) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const u64 = (o: number) => (le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o));

  const magic = u16(0);
  const info = u16(2);
  const timeline = u32(4);
  const pageAddress = u64(8);
  const remainingLength = u32(16);
  const sysid = u64(24);
  const segmentSize = u32(32);
  const blockSize = u32(36);

  // "invalid info bits" in XLogReaderValidatePageHeader.
  if ((info & ~XLP_ALL_FLAGS) !== 0) return `invalid info bits 0x${info.toString(16).toUpperCase().padStart(4, '0')} in its page header`;
  // The first page of every segment carries the long header (XLogWrite /
  // AdvanceXLInsertBuffer set XLP_LONG_HEADER when the page starts a
  // segment); without it this is not the start of a segment.
  if ((info & XLP_LONG_HEADER) === 0) return 'its first page has no long header (XLP_LONG_HEADER), so it is not the start of a segment';
  if (timeline === 0) return 'its page header names timeline 0';
  if (!isValidSegmentSize(segmentSize)) return `its page header gives an impossible segment size of ${segmentSize} bytes`;
  // XLOG_BLCKSZ is configure --with-wal-blocksize: a power of 2 from 1 kB to 64 kB.
  if (!isPowerOf2(blockSize) || blockSize < 1024 || blockSize > 65536 || blockSize > segmentSize) {
    return `its page header gives an impossible WAL block size of ${blockSize} bytes`;
  }
  if (pageAddress % BigInt(segmentSize) !== 0n) {
    return `its page address ${formatLsn(pageAddress)} is not at a ${formatSegmentSize(segmentSize)} segment boundary`;
  }
  // The system identifier comes from pg_control; initdb makes it from the
  // time of day and the pid, it is never 0 (BootStrapXLOG).
  if (sysid === 0n) return 'its page header has system identifier 0';

  return {
    magic,
    pgVersion: KNOWN_MAGICS.get(magic),
    byteOrder: le ? 'LE' : 'BE',
    info,
    timeline,
    pageAddress,
    remainingLength,
    systemId: sysid.toString(10),
    segmentSize,
    blockSize,
  };
}

export interface SegmentHeaderExpectations {
  /** The cluster's system identifier (decimal); a different one is refused. */
  systemId?: string;
  /** The cluster's segment size; a different one is refused. */
  segmentSize?: number;
}

/**
 * Reads the header of a segment or .partial file and checks that it is the
 * file its name says: the page address is the named segment's start and the
 * timeline agrees. Optionally checks system id and segment size. Returns the
 * header. Throws FORMAT_INVALID (or SYSTEM_MISMATCH for another system).
 *
 * Timeline rule: the header's timeline may be *lower* than the name's. When a
 * server switches timeline mid-segment, the first segment of the new timeline
 * starts as a copy of the old one up to the switch point (XLogInitNewTimeline
 * → XLogFileCopy in xlog.c), so its first page still says the old timeline.
 * A header timeline above the name's never happens.
 */
export function checkSegmentHeader(
  buf: Buffer,
  expectedName: string,
  label: string,
  expect: SegmentHeaderExpectations = {},
): WalPageHeader {
  const name = parseWalFileName(expectedName);
  if (name.kind !== 'segment' && name.kind !== 'partial') {
    throw new CairnError('INTERNAL', `checkSegmentHeader called for ${quote(expectedName)}, which is not a segment`);
  }
  const header = readWalPageHeader(buf, label);

  if (expect.segmentSize !== undefined && header.segmentSize !== expect.segmentSize) {
    throw new CairnError('FORMAT_INVALID', `${quote(label)} has ${formatSegmentSize(header.segmentSize)} segments, the cluster has ${formatSegmentSize(expect.segmentSize)}`, {
      hint: 'the file comes from another cluster (initdb --wal-segsize differs)',
    });
  }
  if (expect.systemId !== undefined && header.systemId !== expect.systemId) {
    throw new CairnError('SYSTEM_MISMATCH', `${quote(label)} belongs to system ${header.systemId}, not ${expect.systemId}`, {
      hint: 'archive_command points at a repository of another PostgreSQL system; check --cluster and --repo',
    });
  }

  let segno: bigint;
  try {
    segno = segmentNumber(name.name, header.segmentSize);
  } catch (err) {
    throw new CairnError('FORMAT_INVALID', `${quote(label)} cannot be WAL file ${quote(name.name)}: the name does not exist with its ${formatSegmentSize(header.segmentSize)} segments`, { cause: err });
  }
  const expectedAddress = segno * BigInt(header.segmentSize);
  if (header.pageAddress !== expectedAddress) {
    throw new CairnError('FORMAT_INVALID', `${quote(label)} is not WAL file ${quote(name.name)}: it starts at ${formatLsn(header.pageAddress)}, the name says ${formatLsn(expectedAddress)}`, {
      hint: 'the file was renamed or copied over another segment; do not archive it',
    });
  }
  if (header.timeline > name.timeline) {
    throw new CairnError('FORMAT_INVALID', `${quote(label)} is not WAL file ${quote(name.name)}: its page header is on timeline ${header.timeline}, the name says ${name.timeline}`, {
      hint: 'the file was renamed or copied over another segment; do not archive it',
    });
  }
  return header;
}

/** What a stored segment must be: the system whose directory holds it, and the bytes it decoded to. */
export interface StoredSegmentExpectations {
  systemId: string;
  /** Plaintext size: a segment is exactly one segment long, a .partial at most. */
  fileSize: number;
}

const STORED_MISMATCH_HINT =
  'another file is stored under this name (copied from another cluster, or renamed); do not restore from it: ' +
  'run cairn-verify, and archive the right file from the server\'s pg_wal or another repository';

/**
 * Checks a segment or .partial read back from a repository against the name
 * it is stored under and the system it is stored for: system identifier,
 * start address, timeline (the rule of checkSegmentHeader) and size. Throws
 * WAL_MISMATCH naming the file, `where` it came from and what its header
 * says instead: its SHA-256 matched, so it is whole, but it is another
 * segment, which PostgreSQL would reject ("WAL file is from different
 * database system") and then end recovery early.
 */
export function checkStoredSegment(head: Buffer, walName: string, where: string, expect: StoredSegmentExpectations): WalPageHeader {
  const name = parseWalFileName(walName);
  if (name.kind !== 'segment' && name.kind !== 'partial') {
    throw new CairnError('INTERNAL', `checkStoredSegment called for ${quote(walName)}, which is not a segment`);
  }
  const fail = (what: string) => new CairnError('WAL_MISMATCH', `WAL file ${quote(walName)} in ${where} ${what}`, { hint: STORED_MISMATCH_HINT });
  const header = decodeWalPageHeader(head);
  if (typeof header === 'string') throw fail(`is not a WAL segment: ${header}`);

  const segSize = header.segmentSize;
  const says = `system ${header.systemId}, timeline ${header.timeline}, ${formatSegmentSize(segSize)} segments, ` +
    `start ${formatLsn(header.pageAddress)} (${segmentName(header.timeline, header.pageAddress / BigInt(segSize), segSize)})`;
  const wrong: string[] = [];
  if (header.systemId !== expect.systemId) wrong.push(`the repository holds it for system ${expect.systemId}`);
  let expectedStart: bigint | undefined;
  try {
    expectedStart = segmentNumber(name.name, segSize) * BigInt(segSize);
  } catch {
    wrong.push(`the name does not exist with ${formatSegmentSize(segSize)} segments`);
  }
  if (expectedStart !== undefined && header.pageAddress !== expectedStart) wrong.push(`the name says start ${formatLsn(expectedStart)}`);
  // A lower timeline is the first segment of a new timeline (see checkSegmentHeader).
  if (header.timeline > name.timeline) wrong.push(`the name says timeline ${name.timeline}`);
  if (name.kind === 'segment' ? expect.fileSize !== segSize : expect.fileSize > segSize) {
    wrong.push(`the file is ${expect.fileSize} bytes`);
  }
  if (wrong.length > 0) throw fail(`is not that segment: its page header says ${says}; ${wrong.join(', ')}`);
  return header;
}
