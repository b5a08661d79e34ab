// The names of files PostgreSQL hands to archive_command and asks of
// restore_command: segments, timeline history files, .partial segments and
// backup history (.backup) files. Formats: XLogFileName, TLHistoryFileName,
// BackupHistoryFileName and IsXLogFileName & co in
// src/include/access/xlog_internal.h.

import { CairnError } from '../cli/errors.js';
import { quote } from './quote.js';

export type WalFileKind = 'segment' | 'history' | 'partial' | 'backup';

export interface WalFileName {
  /** The name as given (validated, so safe to use as a path component). */
  name: string;
  kind: WalFileKind;
  /** Timeline ID, 1..0xFFFFFFFF. */
  timeline: number;
  /** The 24-hex segment part ("%08X%08X%08X" = TLI, log, seg) for segment/partial/backup. */
  segment?: string;
  /** The "log" (high 32 bits of segno / segments per log id) for segment/partial/backup. */
  log?: number;
  /** The segment within the log for segment/partial/backup. */
  seg?: number;
  /** The 8-hex offset of a .backup file (its start LSN's offset in the segment). */
  backupOffset?: string;
}

// Exactly the four shapes PostgreSQL writes. Uppercase only: XLogFileName
// prints "%08X", and IsXLogFileName (xlog_internal.h) uses strspn over
// "0123456789ABCDEF", so a lowercase name never comes from PostgreSQL. The
// anchors keep '/', '..' and anything else out, which makes a validated name
// safe as a path component and as part of a storage key.
const SEGMENT_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const HISTORY_RE = /^([0-9A-F]{8})\.history$/;
const PARTIAL_RE = /^(([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8}))\.partial$/;
const BACKUP_RE = /^(([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8}))\.([0-9A-F]{8})\.backup$/;

/**
 * The largest possible "seg" part: segments per log id is 2^32 / segment size
 * and the smallest segment size is 1 MiB (WalSegMinSize, xlog_internal.h), so
 * seg < 4096 for every valid segment size. A larger one is never written by
 * PostgreSQL; the exact bound for a given size is checked by segmentNumber.
 */
const MAX_SEG_ANY_SIZE = 0x1000;

const NAME_HINT =
  'expected a segment (24 hex digits), TTTTTTTT.history, <segment>.partial or <segment>.XXXXXXXX.backup';

function invalidName(name: string, hint = NAME_HINT): CairnError {
  return new CairnError('USAGE', `invalid WAL file name ${quote(name)}`, { hint });
}

/**
 * Parses and validates a WAL file name. Throws USAGE for anything that is not
 * exactly one of the four shapes PostgreSQL writes (including paths, '..',
 * lowercase hex, timeline 0 and empty strings).
 */
export function parseWalFileName(name: string): WalFileName {
  if (typeof name !== 'string') throw invalidName(String(name));

  let m = SEGMENT_RE.exec(name);
  if (m) return segmentLike(name, 'segment', m[1]!, m[2]!, m[3]!, name);

  m = PARTIAL_RE.exec(name);
  if (m) return segmentLike(name, 'partial', m[2]!, m[3]!, m[4]!, m[1]!);

  m = BACKUP_RE.exec(name);
  if (m) {
    const parsed = segmentLike(name, 'backup', m[2]!, m[3]!, m[4]!, m[1]!);
    parsed.backupOffset = m[5]!;
    return parsed;
  }

  m = HISTORY_RE.exec(name);
  if (m) {
    const timeline = checkTimeline(name, m[1]!);
    return { name, kind: 'history', timeline };
  }

  throw invalidName(name);
}

function checkTimeline(name: string, hex: string): number {
  const timeline = parseInt(hex, 16);
  // Timeline 0 is InvalidTimeLineID; the first timeline is 1 (BootStrapXLOG).
  if (timeline === 0) {
    throw invalidName(name, 'timeline 00000000 does not exist: PostgreSQL timelines start at 00000001');
  }
  return timeline;
}

function segmentLike(
  name: string,
  kind: WalFileKind,
  tliHex: string,
  logHex: string,
  segHex: string,
  segment: string,
): WalFileName {
  const timeline = checkTimeline(name, tliHex);
  const seg = parseInt(segHex, 16);
  if (seg >= MAX_SEG_ANY_SIZE) {
    throw invalidName(name, 'the last 8 hex digits of a segment name are below 00001000 for every WAL segment size');
  }
  return { name, kind, timeline, segment, log: parseInt(logHex, 16), seg };
}

/** True when `name` is a WAL file name parseWalFileName accepts. */
export function isWalFileName(name: string): boolean {
  try {
    parseWalFileName(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether `name` has the shape of a segment name: 24 uppercase hex digits
 * (XLogFileName). Cheap, for filtering listings; whether it fits a segment
 * size is segmentNumber's question, full validation parseWalFileName's.
 */
export function isSegmentName(name: string): boolean {
  return SEGMENT_RE.test(name);
}

/**
 * The timeline a WAL file name starts with (its first 8 hex digits), for a
 * name already known to be a segment, .partial, .backup or .history name.
 */
export function timelineOf(name: string): number {
  return parseInt(name.slice(0, 8), 16);
}

/** Whether two WAL file names are on the same timeline. */
export function sameTimeline(a: string, b: string): boolean {
  return a.slice(0, 8) === b.slice(0, 8);
}

/** Groups items by the timeline of their WAL file name, each list in the order met. */
export function groupByTimeline<T>(items: Iterable<T>, nameOf: (item: T) => string): Map<number, T[]> {
  const out = new Map<number, T[]>();
  for (const item of items) {
    const tli = timelineOf(nameOf(item));
    const list = out.get(tli);
    if (list) list.push(item);
    else out.set(tli, [item]);
  }
  return out;
}

/** "%08X.history", TLHistoryFileName in xlog_internal.h. */
export function historyFileName(timeline: number): string {
  assertTimeline(timeline);
  return `${hex8(timeline)}.history`;
}

/** Throws INTERNAL for a timeline that cannot exist (a bug in the caller). */
export function assertTimeline(timeline: number): void {
  if (!Number.isInteger(timeline) || timeline < 1 || timeline > 0xFFFF_FFFF) {
    throw new CairnError('INTERNAL', `timeline out of range: ${String(timeline)}`);
  }
}

/** Uppercase, zero-padded, 8 hex digits ("%08X"). */
export function hex8(n: number | bigint): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}
