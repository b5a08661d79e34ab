// Timeline history files (TTTTTTTT.history): which timeline branched off
// which, and where. Parsing and the timeline list follow readTimeLineHistory
// and tliOfPointInHistory in src/backend/access/transam/timeline.c, and the
// per-segment choice XLogFileReadAnyTLI in xlogrecovery.c.

import { CairnError } from '../cli/errors.js';
import { assertTimeline } from './file-name.js';
import { formatLsn } from './lsn.js';
import { checkSegmentSize, lsnToSegmentNumber } from './segment.js';
import { quote } from './quote.js';

/** One line of a history file: `parentTLI<TAB>X/Y<TAB>reason`. */
export interface TimelineHistoryEntry {
  /** A parent timeline. */
  timeline: number;
  /** Where that timeline ended and its child began (the switch point). */
  switchLsn: bigint;
  /** Free text PostgreSQL wrote (e.g. "no recovery target specified"). */
  reason: string;
}

/** One timeline of a history, like PostgreSQL's TimeLineHistoryEntry. */
export interface TimelineSpan {
  timeline: number;
  /** First LSN on this timeline; 0n for the oldest one (from the beginning). */
  begin: bigint;
  /** First LSN no longer on this timeline; undefined for the newest (its tip). */
  end: bigint | undefined;
}

// PostgreSQL reads each line with sscanf("%u\t%X/%X") (timeline.c), where
// "\t" matches any run of whitespace; it ignores whatever follows. We accept
// the same, a little stricter: decimal TLI, 1–8 hex digits per LSN half.
const TLI_RE = /^\s*(\d+)(?=\s|$)(.*)$/;
const SWITCH_RE = /^\s+([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})(?:\s+(.*))?$/;

/**
 * Parses a history file's text into its entries, oldest first (file order).
 * Blank lines and lines starting with '#' (after whitespace) are skipped, as
 * timeline.c does. Throws FORMAT_INVALID naming `label` on a malformed line
 * or when timeline IDs do not increase.
 *
 * Note: PostgreSQL writes a blank line before each appended entry ("%s%u\t…"
 * with a "\n" prefix when the parent had a file, writeTimeLineHistory), so
 * blank lines between entries are normal.
 */
export function parseTimelineHistory(text: string, label = 'timeline history'): TimelineHistoryEntry[] {
  const entries: TimelineHistoryEntry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    const trimmed = line.trimStart();
    if (trimmed === '' || trimmed.startsWith('#')) continue;

    const bad = (why: string) =>
      new CairnError('FORMAT_INVALID', `invalid timeline history ${quote(label)}: line ${i + 1}: ${why}`, {
        hint: 'history files are written by PostgreSQL at promotion and never edited; restore the file from another repository',
      });

    // The two messages are PostgreSQL's own for the same two failures.
    const t = TLI_RE.exec(line);
    if (!t) throw bad('expected a numeric timeline ID');
    const m = SWITCH_RE.exec(t[2]!);
    if (!m) throw bad('expected a write-ahead log switchpoint location');

    const timeline = Number(t[1]);
    if (!Number.isSafeInteger(timeline) || timeline < 1 || timeline > 0xFFFF_FFFF) {
      throw bad(`timeline ID ${t[1]} is out of range`);
    }
    const last = entries.at(-1);
    // "Timeline IDs must be in increasing sequence." (timeline.c)
    if (last !== undefined && timeline <= last.timeline) {
      throw bad(`timeline IDs must be in increasing sequence (${timeline} after ${last.timeline})`);
    }
    // PostgreSQL does not check that switch points increase; neither do we,
    // so that we never refuse a history PostgreSQL itself would follow.
    const switchLsn = (BigInt('0x' + m[1]!) << 32n) | BigInt('0x' + m[2]!);
    entries.push({ timeline, switchLsn, reason: (m[3] ?? '').trimEnd() });
  }
  return entries;
}

/**
 * The timelines recovery to `targetTli` reads, newest first, with the LSN
 * range each covers: PostgreSQL's expectedTLEs (readTimeLineHistory). The
 * target itself comes first with no end (its tip); each parent ends at its
 * switch point and begins at the previous one. Timeline 1, which has no
 * history file, gives [{timeline: 1, begin: 0n, end: undefined}] for
 * entries = []. Throws FORMAT_INVALID when the history's newest parent is not
 * below `targetTli` ("Timeline IDs must be less than child timeline's ID").
 */
export function historyTimelines(entries: readonly TimelineHistoryEntry[], targetTli: number, label = 'timeline history'): TimelineSpan[] {
  assertTimeline(targetTli);
  const last = entries.at(-1);
  if (last !== undefined && targetTli <= last.timeline) {
    throw new CairnError('FORMAT_INVALID', `invalid timeline history ${quote(label)}: parent timeline ${last.timeline} is not below timeline ${targetTli}`, {
      hint: 'the history file does not belong to this timeline; restore it from another repository',
    });
  }
  const spans: TimelineSpan[] = [];
  let begin = 0n;
  for (const e of entries) {
    spans.push({ timeline: e.timeline, begin, end: e.switchLsn });
    begin = e.switchLsn;
  }
  spans.push({ timeline: targetTli, begin, end: undefined });
  return spans.reverse();
}

/**
 * The timeline an LSN lies on in this history (tliOfPointInHistory): the
 * span with begin <= lsn < end. A switch point itself belongs to the child.
 */
export function timelineForLsn(spans: readonly TimelineSpan[], lsn: bigint): number {
  for (const s of spans) {
    if (s.begin <= lsn && (s.end === undefined || lsn < s.end)) return s.timeline;
  }
  // Spans from historyTimelines cover 0 … ∞; anything else is a caller bug,
  // as PostgreSQL says ("timeline history was not contiguous").
  throw new CairnError('INTERNAL', `timeline history does not cover LSN ${formatLsn(lsn)}`);
}

/**
 * The timeline recovery fetches segment `segno` from: the newest timeline
 * whose first segment is at or before it (XLogFileReadAnyTLI skips timelines
 * that begin after the segment and takes the first, i.e. newest, that has the
 * file). The segment holding a switch point exists on both timelines; the
 * child's copy wins. A prefetcher should follow this rather than guess.
 */
export function timelineForSegment(spans: readonly TimelineSpan[], segno: bigint, segSize: number): number {
  checkSegmentSize(segSize);
  for (const s of spans) {
    if (s.begin === 0n || lsnToSegmentNumber(s.begin, segSize) <= segno) return s.timeline;
  }
  throw new CairnError('INTERNAL', `timeline history does not cover WAL segment number ${segno}`);
}

/**
 * All timelines recovery may try for segment `segno`, in the order it tries
 * them (newest first, skipping those that begin after the segment): the
 * candidate names for a restore_command request of that segment.
 */
export function timelinesForSegment(spans: readonly TimelineSpan[], segno: bigint, segSize: number): number[] {
  checkSegmentSize(segSize);
  return spans
    .filter((s) => s.begin === 0n || lsnToSegmentNumber(s.begin, segSize) <= segno)
    .map((s) => s.timeline);
}
