// Segment arithmetic: segment numbers, names and LSNs for a given WAL segment
// size, as xlog_internal.h does it (XLogSegmentsPerXLogId, XLogFileName,
// XLogFromFileName, XLByteToSeg, XLByteToPrevSeg, XLogSegNoOffsetToRecPtr).

import { CairnError } from '../cli/errors.js';
import { assertTimeline, hex8, parseWalFileName, type WalFileName } from './file-name.js';
import { assertLsn } from './lsn.js';
import { quote } from './quote.js';

/** initdb's default --wal-segsize (DEFAULT_XLOG_SEG_SIZE, pg_config_manual.h). */
export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;
/** WalSegMinSize and WalSegMaxSize in xlog_internal.h. */
export const MIN_SEGMENT_SIZE = 1024 * 1024;
export const MAX_SEGMENT_SIZE = 1024 * 1024 * 1024;

/** IsValidWalSegSize (xlog_internal.h): a power of 2 from 1 MiB to 1 GiB. */
export function isValidSegmentSize(segSize: number): boolean {
  return (
    Number.isInteger(segSize) &&
    segSize >= MIN_SEGMENT_SIZE &&
    segSize <= MAX_SEGMENT_SIZE &&
    (segSize & (segSize - 1)) === 0
  );
}

/** Returns segSize, or throws CONFIG_INVALID when it is not a valid WAL segment size. */
export function checkSegmentSize(segSize: number): number {
  if (!isValidSegmentSize(segSize)) {
    throw new CairnError('CONFIG_INVALID', `invalid WAL segment size "${String(segSize)}"`, {
      hint: 'a WAL segment size is a power of 2 from 1 MiB to 1 GiB in bytes (pg_controldata: "Bytes per WAL segment"), 16777216 by default',
    });
  }
  return segSize;
}

/** "16 MiB", "1 GiB": for messages. */
export function formatSegmentSize(segSize: number): string {
  return segSize >= 1024 ** 3 ? `${segSize / 1024 ** 3} GiB` : `${segSize / 1024 ** 2} MiB`;
}

/**
 * XLogSegmentsPerXLogId: how many segments make one "log" (the middle 8 hex
 * digits of a name), i.e. 2^32 / segSize: 256 for 16 MiB, 4 for 1 GiB.
 */
export function segmentsPerLogId(segSize: number): number {
  checkSegmentSize(segSize);
  return 0x1_0000_0000 / segSize;
}

function segmentPart(name: string): WalFileName & { log: number; seg: number; segment: string } {
  const parsed = parseWalFileName(name);
  if (parsed.segment === undefined || parsed.log === undefined || parsed.seg === undefined) {
    throw new CairnError('USAGE', `${quote(name)} is not a WAL segment name`, {
      hint: 'expected a segment (24 hex digits), <segment>.partial or <segment>.XXXXXXXX.backup',
    });
  }
  return parsed as WalFileName & { log: number; seg: number; segment: string };
}

/**
 * The segment number (XLogSegNo) of a segment, .partial or .backup name:
 * log * segmentsPerLogId + seg, as XLogFromFileName computes it. Throws USAGE
 * when the seg part cannot exist with this segment size (e.g. ...00000100 with
 * 16 MiB segments, where seg runs 00..FF).
 */
export function segmentNumber(segmentName: string, segSize: number): bigint {
  const perLog = segmentsPerLogId(segSize);
  const p = segmentPart(segmentName);
  // XLogFromFileName does not check this; PostgreSQL never writes such a name,
  // and accepting it would alias it onto the next log's segment numbers.
  if (p.seg >= perLog) {
    throw new CairnError('USAGE', `invalid WAL segment name ${quote(segmentName)} for a ${formatSegmentSize(segSize)} segment size`, {
      hint: `with ${formatSegmentSize(segSize)} segments the last 8 hex digits run from 00000000 to ${hex8(perLog - 1)}; check the cluster's WAL segment size`,
    });
  }
  return BigInt(p.log) * BigInt(perLog) + BigInt(p.seg);
}

/** The largest segment number whose name still fits: log is 32 bits. */
function maxSegmentNumber(segSize: number): bigint {
  return 0x1_0000_0000n * BigInt(segmentsPerLogId(segSize)) - 1n;
}

/** XLogFileName: "%08X%08X%08X" of timeline, segno / perLog, segno % perLog. */
export function segmentName(timeline: number, segno: bigint, segSize: number): string {
  assertTimeline(timeline);
  const perLog = BigInt(segmentsPerLogId(segSize));
  if (typeof segno !== 'bigint' || segno < 0n || segno > maxSegmentNumber(segSize)) {
    throw new CairnError('INTERNAL', `WAL segment number out of range: ${String(segno)}`);
  }
  return hex8(timeline) + hex8(segno / perLog) + hex8(segno % perLog);
}

/**
 * The segment n positions after (n < 0: before) a segment on the same
 * timeline, carrying across log boundaries (…000000FF → …0000000100000000 with
 * 16 MiB segments). Only plain segment names are accepted.
 */
export function nextSegmentName(name: string, segSize: number, n: number | bigint = 1): string {
  const p = parseWalFileName(name);
  if (p.kind !== 'segment') {
    throw new CairnError('USAGE', `${quote(name)} is not a WAL segment name`, {
      hint: 'expected a segment name of 24 hex digits',
    });
  }
  const step = typeof n === 'bigint' ? n : BigInt(n);
  const next = segmentNumber(name, segSize) + step;
  if (next < 0n || next > maxSegmentNumber(segSize)) {
    throw new CairnError('USAGE', `cannot move ${String(step)} segments from ${quote(name)}: out of the range of WAL file names`, {
      hint: 'segment numbers run from 0 to the last one whose log part fits in 8 hex digits',
    });
  }
  return segmentName(p.timeline, next, segSize);
}

/**
 * The repository directory of a segment-like name: its first 16 hex digits
 * (timeline + log), as pgBackRest groups its archive, so one directory holds
 * at most one log's worth (256 segments of 16 MiB) per kind.
 */
export function segmentDirName(segmentName: string): string {
  return segmentPart(segmentName).segment.slice(0, 16);
}

/**
 * Orders segment-like names by their 24-hex part, which, being fixed-width
 * uppercase hex, is the order of (timeline, segment number): the order
 * PostgreSQL's own archive tools sort in. Ties (a segment and its .partial or
 * .backup files) fall back to the whole name, so the order is total.
 */
export function compareSegments(a: string, b: string): number {
  const sa = segmentPart(a).segment;
  const sb = segmentPart(b).segment;
  if (sa !== sb) return sa < sb ? -1 : 1;
  return a === b ? 0 : a < b ? -1 : 1;
}

export interface LsnToSegmentOptions {
  /**
   * Treat `lsn` as the end of a range (XLByteToPrevSeg): an LSN exactly on a
   * segment boundary then belongs to the segment before it. Use it for end
   * positions such as a backup's stop LSN or a record's end; pg_walfile_name()
   * did the same up to PostgreSQL 16 (from 17 it names the segment starting
   * there: docs/gotchas.md §Real hosts).
   */
  end?: boolean;
}

/** XLByteToSeg (or XLByteToPrevSeg with `end`). */
export function lsnToSegmentNumber(lsn: bigint, segSize: number, opts: LsnToSegmentOptions = {}): bigint {
  assertLsn(lsn);
  const size = BigInt(checkSegmentSize(segSize));
  if (opts.end) {
    if (lsn === 0n) throw new CairnError('INTERNAL', 'LSN 0/0 ends no WAL segment');
    return (lsn - 1n) / size;
  }
  return lsn / size;
}

/** The name of the segment on `timeline` that holds `lsn`. */
export function lsnToSegmentName(timeline: number, lsn: bigint, segSize: number, opts: LsnToSegmentOptions = {}): string {
  return segmentName(timeline, lsnToSegmentNumber(lsn, segSize, opts), segSize);
}

/** The LSN of a segment's first byte (XLogSegNoOffsetToRecPtr with offset 0). */
export function segmentStartLsn(segmentName: string, segSize: number): bigint {
  return segmentNumber(segmentName, segSize) * BigInt(segSize);
}

/** The LSN just past a segment's last byte (the next segment's start). */
export function segmentEndLsn(segmentName: string, segSize: number): bigint {
  return segmentStartLsn(segmentName, segSize) + BigInt(segSize);
}
