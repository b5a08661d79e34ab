// The WAL half of cairn-verify, without I/O: from one system's archive listing,
// its parsed history files and its backups, the problems a restore would run
// into — a backup's own WAL missing, gaps on a timeline, a timeline without
// its history file, a history that disagrees with the archive. Like wal-g's
// wal-verify, but following timelines the way PostgreSQL reads them
// (wal/history.ts: a child timeline's first segment holds the parent's WAL up
// to the switch point, so recovery reads that segment from the child).

import type { BackupSummary } from '../backup/manifest.js';
import { historyFileName, isSegmentName, timelineOf } from '../wal/file-name.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { formatLsn, isLsn, parseLsn } from '../wal/lsn.js';
import { quote } from '../wal/quote.js';
import { isValidSegmentSize, lsnToSegmentNumber, segmentName, segmentNumber } from '../wal/segment.js';
import type { VerifyProblem } from './result-format.js';

/** What a backup contributes to the WAL check. */
export type WalBackup = Pick<BackupSummary, 'id' | 'timeline' | 'start' | 'stop'>;

export interface WalContinuityInput {
  systemId: string;
  segSize: number;
  /** Names of the stored segments (24 hex digits); other names are ignored. */
  segments: Iterable<string>;
  /** Names of the stored `<segment>.partial` files. */
  partials: Iterable<string>;
  /** History files that decoded and parsed, by timeline. */
  histories: ReadonlyMap<number, readonly TimelineHistoryEntry[]>;
  /** Timelines whose history file is stored but could not be read (reported elsewhere; not "missing"). */
  unreadableHistories?: ReadonlySet<number>;
  /** Every backup of this system: their starts bound the archive that must be whole. */
  backups: readonly WalBackup[];
  /** Check only these backups' own WAL (start to stop); every backup when absent. */
  checkBackups?: ReadonlySet<string>;
  /**
   * Check the archive as a whole: continuity on every timeline from the
   * oldest backup's start, history files present and agreeing. False for a
   * run scoped to one backup or dump.
   */
  archive: boolean;
  /**
   * When each stored segment was stored (name → mtime), with `now` and
   * `gapGraceMs`: a gap whose next stored segment is younger than the grace
   * period is "not archived yet" (a note), not "lost" (a problem).
   */
  storedAt?: ReadonlyMap<string, Date>;
  now?: Date;
  gapGraceMs?: number;
}

export interface WalContinuityResult {
  problems: VerifyProblem[];
  /** Gaps that are likely only not archived yet (see storedAt). */
  notes: string[];
  /** Timelines seen (segments, backups or history files), ascending. */
  timelines: number[];
}

interface Range {
  from: bigint;
  to: bigint;
}

/** Consecutive numbers of `missing` (ascending) as ranges. */
function ranges(missing: bigint[]): Range[] {
  const out: Range[] = [];
  for (const n of missing) {
    const last = out.at(-1);
    if (last !== undefined && last.to + 1n === n) last.to = n;
    else out.push({ from: n, to: n });
  }
  return out;
}

function describeRange(tli: number, r: Range, segSize: number): string {
  const a = segmentName(tli, r.from, segSize);
  if (r.from === r.to) return quote(a);
  return `${quote(a)} to ${quote(segmentName(tli, r.to, segSize))} (${String(r.to - r.from + 1n)} segments)`;
}

/**
 * The segment numbers a backup needs on its timeline, start to stop (the
 * stop LSN ends the last record: on a segment boundary it is still in the
 * segment before, as pg_backup_stop means it); undefined when its LSNs are bad.
 */
export function backupWalRange(b: WalBackup, segSize: number): { startSeg: bigint; stopSeg: bigint } | undefined {
  if (!isLsn(b.start.lsn) || !isLsn(b.stop.lsn) || !isValidSegmentSize(segSize)) return undefined;
  const start = parseLsn(b.start.lsn);
  const stop = parseLsn(b.stop.lsn);
  const startSeg = lsnToSegmentNumber(start, segSize);
  return { startSeg, stopSeg: stop > start ? lsnToSegmentNumber(stop, segSize, { end: true }) : startSeg };
}

/**
 * The problems of one system's WAL archive. Pure: everything comes from
 * `input`; the caller has listed the archive and decoded the histories.
 */
export function checkWalContinuity(input: WalContinuityInput): WalContinuityResult {
  const { segSize, systemId } = input;
  const problems: VerifyProblem[] = [];
  const notes: string[] = [];
  const where = `system ${systemId}`;
  if (!isValidSegmentSize(segSize)) {
    return { problems, notes, timelines: [] };
  }

  // Stored segment numbers per timeline; names that cannot exist with this
  // segment size are not segments of this system.
  const byTli = new Map<number, Set<bigint>>();
  const addTo = (map: Map<number, Set<bigint>>, name: string) => {
    const tli = timelineOf(name);
    let segno: bigint;
    try {
      segno = segmentNumber(name, segSize);
    } catch {
      return;
    }
    let set = map.get(tli);
    if (!set) map.set(tli, (set = new Set()));
    set.add(segno);
  };
  for (const name of input.segments) if (isSegmentName(name)) addTo(byTli, name);
  const partialByTli = new Map<number, Set<bigint>>();
  for (const name of input.partials) if (name.endsWith('.partial') && isSegmentName(name.slice(0, -'.partial'.length))) addTo(partialByTli, name.slice(0, 24));
  const has = (tli: number, segno: bigint) => byTli.get(tli)?.has(segno) === true;

  // Backups with LSNs we can read; a manifest with bad LSNs is reported by
  // the manifest check, not here.
  const backups = input.backups.flatMap((b) => {
    const range = backupWalRange(b, segSize);
    return range ? [{ b, ...range }] : [];
  });

  // 1. Each backup's own WAL: start to stop on its timeline. Without it the
  // backup never becomes consistent.
  for (const { b, startSeg, stopSeg } of backups) {
    if (input.checkBackups && !input.checkBackups.has(b.id)) continue;
    const missing: bigint[] = [];
    for (let s = startSeg; s <= stopSeg; s++) if (!has(b.timeline, s)) missing.push(s);
    for (const r of ranges(missing)) {
      problems.push({
        kind: 'backup-wal-missing',
        subject: b.id,
        message: `WAL ${describeRange(b.timeline, r, segSize)} of backup ${quote(b.id)} (${b.start.lsn} to ${b.stop.lsn} on timeline ${b.timeline}) is missing`,
        hint: 'the backup cannot be restored without it: take a new backup, and check archiving (pg_stat_archiver, the server log)',
      });
    }
  }

  const timelines = new Set<number>([...byTli.keys(), ...partialByTli.keys(), ...input.histories.keys(), ...(input.unreadableHistories ?? [])]);
  for (const { b } of backups) timelines.add(b.timeline);
  for (const entries of input.histories.values()) for (const e of entries) timelines.add(e.timeline);
  const sorted = [...timelines].sort((a, b) => a - b);
  if (!input.archive) return { problems, notes, timelines: sorted };

  // The archive must be whole from the oldest backup's start (expire removes
  // WAL below it, docs/design.md §4.6); with no backup, from each timeline's first
  // stored segment.
  const oldestStart = backups.reduce<bigint | undefined>((m, x) => (m === undefined || x.startSeg < m ? x.startSeg : m), undefined);
  const historyOf = (tli: number) => input.histories.get(tli);
  const hasHistoryFile = (tli: number) => input.histories.has(tli) || input.unreadableHistories?.has(tli) === true;

  for (const tli of sorted) {
    const stored = byTli.get(tli) ?? new Set<bigint>();
    const entries = historyOf(tli);
    const last = entries?.at(-1);

    // 2. A timeline above 1 needs its history file: without it, recovery
    // cannot tell where the timeline branched ("recovery target timeline N
    // does not exist") and 'latest' stops below it.
    if (tli > 1 && !hasHistoryFile(tli)) {
      const why = [
        stored.size > 0 ? `${stored.size} segment${stored.size === 1 ? '' : 's'}` : '',
        backups.some((x) => x.b.timeline === tli) ? 'backups' : '',
        [...input.histories.values()].some((h) => h.some((e) => e.timeline === tli)) ? 'a child timeline' : '',
      ].filter((w) => w !== '').join(', ');
      problems.push({
        kind: 'history-missing',
        subject: `timeline ${tli}`,
        message: `timeline ${tli} of ${where} has ${why || 'WAL'} but no history file ${quote(historyFileName(tli))}`,
        hint: `copy ${historyFileName(tli)} from the server's pg_wal into the archive with cairn-wal-push (PostgreSQL archives it at promotion); until then restores cannot follow timeline ${tli}`,
      });
    }

    // Where this timeline begins: at its parent's switch point.
    const begin = last !== undefined ? lsnToSegmentNumber(last.switchLsn, segSize) : undefined;

    // 3. Segments of this timeline before it began: the history and the
    // archive disagree (another server's timeline of the same number?).
    if (begin !== undefined) {
      const early = [...stored].filter((s) => s < begin).sort((a, b) => (a < b ? -1 : 1));
      if (early.length > 0) {
        problems.push({
          kind: 'history-mismatch',
          subject: `timeline ${tli}`,
          message: `${historyFileName(tli)} says timeline ${tli} began at ${formatLsn(last!.switchLsn)}, but ${where} has segment ${quote(segmentName(tli, early[0]!, segSize))}${early.length > 1 ? ` and ${early.length - 1} more` : ''} of timeline ${tli} before it`,
          hint: 'two servers may have promoted to the same timeline: check which one archives here, and keep one system per --cluster',
        });
      }
    }

    // 4. Gaps: every segment from the lower bound to the newest stored one.
    if (stored.size > 0) {
      let newest = 0n;
      let lowest: bigint | undefined;
      for (const s of stored) {
        if (s > newest) newest = s;
        if (lowest === undefined || s < lowest) lowest = s;
      }
      // A timeline above 1 without a readable history begins we do not know
      // where: from its first stored segment.
      const start = begin ?? (tli > 1 ? lowest! : 0n);
      let lo = oldestStart ?? lowest!;
      if (start > lo) lo = start;
      // A child timeline branched off this one later than its newest full
      // segment (the last one may be archived only as .partial): a restore
      // that crosses to the child reads every segment up to the switch.
      let upTo = newest;
      let child: number | undefined;
      for (const [c, h] of input.histories) {
        const fork = h.at(-1);
        if (fork === undefined || fork.timeline !== tli || fork.switchLsn === 0n) continue;
        const prevSeg = lsnToSegmentNumber(fork.switchLsn, segSize, { end: true });
        if (prevSeg > upTo) {
          upTo = prevSeg;
          child = c;
        }
      }
      const missing: bigint[] = [];
      for (let s = lo; s < upTo; s++) if (!stored.has(s)) missing.push(s);
      const reach = child === undefined
        ? `the archive goes on to ${quote(segmentName(tli, newest, segSize))}`
        : `timeline ${child} branches off in ${quote(segmentName(tli, upTo, segSize))}`;
      for (const r of ranges(missing)) {
        if (isRecentGap(input, tli, r)) {
          notes.push(`WAL ${describeRange(tli, r, segSize)} on timeline ${tli} of ${where} is not archived yet (${reach}, stored less than ${Math.round(input.gapGraceMs! / 1000)} s ago: archiving out of order, as push-ahead draining a backlog does); verify again later`);
          continue;
        }
        problems.push({
          kind: 'wal-gap',
          subject: segmentName(tli, r.from, segSize),
          message: `WAL ${describeRange(tli, r, segSize)} on timeline ${tli} of ${where} is missing (${reach})`,
          hint: 'point-in-time recovery cannot cross the gap: if the server still has the files in pg_wal, archive them with cairn-wal-push; take a new full backup so restores after the gap work',
        });
      }
    }

    // 5. The history against the archive.
    if (entries !== undefined && last !== undefined) {
      const parent = last.timeline;
      // 5a. The parent's WAL up to the switch point: the segment holding the
      // byte before it (XLByteToPrevSeg, as PostgreSQL names the .partial it
      // archives at promotion), full or .partial. Only where the archive must
      // be whole: below the oldest backup, expire may have removed it.
      if (last.switchLsn > 0n) {
        const prevSeg = lsnToSegmentNumber(last.switchLsn, segSize, { end: true });
        const parentStored = byTli.get(parent);
        const bound = oldestStart ?? (parentStored && parentStored.size > 0 ? [...parentStored].reduce((a, b) => (b < a ? b : a)) : undefined);
        const present = has(parent, prevSeg) || partialByTli.get(parent)?.has(prevSeg) === true;
        if (!present && bound !== undefined && prevSeg >= bound) {
          problems.push({
            kind: 'timeline-break',
            subject: `timeline ${tli}`,
            message: `timeline ${tli} of ${where} branched off timeline ${parent} at ${formatLsn(last.switchLsn)}, but segment ${quote(segmentName(parent, prevSeg, segSize))} of timeline ${parent} (full or .partial) is not in the archive`,
            hint: `restores that cross from timeline ${parent} to ${tli} stop there: archive the segment from the old server's pg_wal with cairn-wal-push if it still has it, and take a new full backup on timeline ${tli}`,
          });
        }
      }
      // 5b. A child's history repeats its parent's and adds one line
      // (writeTimeLineHistory): the parent's own file must agree.
      const parentEntries = parent > 1 ? historyOf(parent) : [];
      if (parentEntries !== undefined) {
        const prefix = entries.slice(0, -1);
        const same = prefix.length === parentEntries.length && prefix.every((e, i) => e.timeline === parentEntries[i]!.timeline && e.switchLsn === parentEntries[i]!.switchLsn);
        if (!same) {
          problems.push({
            kind: 'history-mismatch',
            subject: `timeline ${tli}`,
            message: `${historyFileName(tli)} of ${where} does not continue ${parent > 1 ? historyFileName(parent) : 'timeline 1'}: it lists ${describeEntries(prefix)} before timeline ${parent}, the parent's history ${describeEntries(parentEntries)}`,
            hint: 'history files are written by PostgreSQL and never edited: restore the right one from another repository or from the server\'s pg_wal',
          });
        }
      }
      // A parent above 1 without a history file is in `sorted` (added from
      // the entries), so step 2 reports it.
    }
  }
  return { problems, notes, timelines: sorted };
}

/**
 * Whether a gap is likely only "not archived yet": the segment right after
 * it was stored within the grace period. PostgreSQL archives in order, but
 * push-ahead drains a backlog out of order, so while it does the segments
 * after a hole are young; after a real loss they grow old (issue 11: a cron'ed
 * verify during a drain reported missing WAL). Without the timestamps, never.
 */
function isRecentGap(input: WalContinuityInput, tli: number, r: Range): boolean {
  const { storedAt, now, gapGraceMs } = input;
  if (storedAt === undefined || now === undefined || gapGraceMs === undefined || gapGraceMs <= 0) return false;
  const next = storedAt.get(segmentName(tli, r.to + 1n, input.segSize));
  return next !== undefined && now.getTime() - next.getTime() < gapGraceMs;
}

function describeEntries(entries: readonly TimelineHistoryEntry[]): string {
  if (entries.length === 0) return 'no parents';
  return entries.map((e) => `${e.timeline}@${formatLsn(e.switchLsn)}`).join(', ');
}
