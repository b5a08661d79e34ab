// Planning a restore from the catalog, without I/O: which backup reaches the
// target, along which timelines, and whether every WAL segment PostgreSQL
// will ask for is in the repository. Choice of backup as pgBackRest makes it
// (restore.c, restoreBackupSet); timelines and segments as PostgreSQL reads
// them (timeline.c, xlogrecovery.c; see wal/history.ts).

import { CairnError, isCairnError } from '../cli/errors.js';
import { backupChain } from '../backup/chain.js';
import type { BackupSummary } from '../backup/manifest.js';
import { historyFileName, isSegmentName, timelineOf } from '../wal/file-name.js';
import { formatLsn, isLsn, parseLsn } from '../wal/lsn.js';
import { quote } from '../wal/quote.js';
import { isValidSegmentSize, lsnToSegmentNumber, segmentName, segmentNumber } from '../wal/segment.js';
import { historyTimelines, timelineForSegment, type TimelineHistoryEntry, type TimelineSpan } from '../wal/history.js';
import { PLAN_FORMAT, type PlanWalRange, type RecoveryTarget, type RestorePlan, type TargetKind } from './plan-format.js';
import { describeTarget, formatTargetTime, parseTargetTime, recoverySettingsFor } from './target.js';

export interface PlanInput {
  cluster: string;
  /** The repository's URL (no credentials), for the plan and messages. */
  repo: string;
  /** Every backup of the cluster in this repository. */
  backups: readonly BackupSummary[];
  /** Stored WAL per system id: segment name → when it was archived. Other names are ignored. */
  wal: ReadonlyMap<string, ReadonlyMap<string, { mtime: Date }>>;
  /** Decoded history files per system id, by timeline. */
  histories: ReadonlyMap<string, ReadonlyMap<number, readonly TimelineHistoryEntry[]>>;
  target: RecoveryTarget;
  /** Restore this backup instead of choosing one. */
  set?: string;
  now: Date;
}

/** A backup and the timelines recovery follows from it. */
interface Route {
  backup: BackupSummary;
  startLsn: bigint;
  stopLsn: bigint;
  stopMicros: bigint;
  /** The resolved target timeline. */
  timeline: number;
  /** historyTimelines of the target timeline: newest first. */
  spans: TimelineSpan[];
  /** From the backup's timeline to the target's, oldest first. */
  path: number[];
  warnings: string[];
}

/**
 * Makes the restore plan for `input.target`, or throws: NOT_FOUND when no
 * backup can reach the target or a WAL segment on the way is missing (the
 * first one is named), FORMAT_INVALID for a damaged catalog.
 */
export function planRestore(input: PlanInput): RestorePlan {
  const { target } = input;
  const where = `cluster ${quote(input.cluster)} of repository ${quote(input.repo)}`;
  if (input.backups.length === 0) {
    throw new CairnError('NOT_FOUND', `no backups in ${where}`, {
      hint: 'take one with cairn-basebackup, or check --repo and --cluster (cairn-info lists what a repository holds)',
    });
  }
  const byId = new Map(input.backups.map((b) => [b.id, b]));
  const targetMicros = target.kind === 'time' ? parseTargetTime(target.value ?? '').micros : undefined;
  const targetLsn = target.kind === 'lsn' ? parseLsn(target.value ?? '') : undefined;

  let route: Route;
  if (input.set !== undefined) {
    const b = byId.get(input.set);
    if (!b) {
      throw new CairnError('NOT_FOUND', `backup ${quote(input.set)} is not in ${where}`, {
        hint: 'cairn-info lists the backups; leave out --set to take the newest that reaches the target',
      });
    }
    route = routeFor(input, b);
    const late = endsAfterTarget(route, target, targetMicros, targetLsn);
    if (late !== undefined) {
      throw new CairnError('NOT_FOUND', `backup ${quote(b.id)} ends at ${late}, after the target ${describeTarget(target)}`, {
        hint: 'PostgreSQL cannot stop before the end of the backup ("requested recovery stop point is before consistent recovery point"): choose an older backup or a later target',
      });
    }
  } else {
    route = chooseRoute(input, target, targetMicros, targetLsn);
  }

  const chain = backupChain(byId, route.backup.id);
  const walCheck = checkWal(input, route, targetMicros, targetLsn);
  const b = route.backup;
  return {
    format: PLAN_FORMAT,
    createdAt: input.now.toISOString(),
    cluster: input.cluster,
    repo: input.repo,
    systemId: b.systemId,
    pgMajor: b.pgMajor,
    walSegmentSize: b.walSegmentSize,
    backup: {
      id: b.id,
      type: b.type,
      timeline: b.timeline,
      startLsn: b.start.lsn,
      stopLsn: b.stop.lsn,
      startTime: b.start.time,
      stopTime: b.stop.time,
      startWal: b.start.wal,
      stopWal: b.stop.wal,
    },
    chain,
    target,
    targetTimeline: route.timeline,
    timelines: route.path,
    wal: walCheck.ranges,
    walEnd: walCheck.end,
    // A numeric recovery_target_timeline above 1 makes PostgreSQL require that
    // timeline's history file (validateRecoveryParameters: "recovery target
    // timeline N does not exist"), which a cluster promoted without archiving
    // never stored. Staying on the backup's own timeline needs no history:
    // say 'current' for it.
    recoverySettings: recoverySettingsFor(target, route.timeline === b.timeline && b.timeline !== 1 ? 'current' : route.timeline),
    warnings: [...route.warnings, ...walCheck.warnings],
  };
}

/** Newest first: by stop time, then by id (start time). */
function newestFirst(a: Route, b: Route): number {
  if (a.stopMicros !== b.stopMicros) return a.stopMicros > b.stopMicros ? -1 : 1;
  return a.backup.id < b.backup.id ? 1 : a.backup.id > b.backup.id ? -1 : 0;
}

/** The newest backup that can reach the target on its target timeline. */
function chooseRoute(input: PlanInput, target: RecoveryTarget, targetMicros: bigint | undefined, targetLsn: bigint | undefined): Route {
  const routes: Route[] = [];
  const refused: CairnError[] = [];
  for (const b of input.backups) {
    try {
      routes.push(routeFor(input, b));
    } catch (err) {
      // Timeline trouble rules a backup out; anything else (a damaged
      // history file) is the repository's problem and stops the plan.
      if (!isCairnError(err, 'NOT_FOUND')) throw err;
      refused.push(err);
    }
  }
  routes.sort(newestFirst);
  if (routes.length === 0) {
    const newest = input.backups.reduce((a, b) => (b.id > a.id ? b : a));
    const reason = refused.find((e) => e.message.includes(quote(newest.id))) ?? refused[0]!;
    throw new CairnError('NOT_FOUND', `no backup can be restored along target timeline ${input.target.timeline}: ${reason.message}`, {
      hint: reason.hint ?? 'cairn-info lists the backups and timelines',
    });
  }
  const fit = routes.find((r) => endsAfterTarget(r, target, targetMicros, targetLsn) === undefined);
  if (fit) return fit;
  const oldest = target.kind === 'lsn'
    ? routes.reduce((a, b) => (b.stopLsn < a.stopLsn ? b : a))
    : routes[routes.length - 1]!;
  const when = target.kind === 'time' ? `at ${formatTargetTime(oldest.stopMicros)}` : `at ${oldest.backup.stop.lsn}`;
  throw new CairnError('NOT_FOUND', `no backup ends before ${describeTarget(target)}; the oldest ends ${when} (backup ${quote(oldest.backup.id)})`, {
    hint: 'PostgreSQL cannot stop before the end of a backup: choose a later target, or --target immediate to stop at the oldest backup\'s end',
  });
}

/**
 * For time and LSN targets: the backup's end (formatted) when it lies after
 * the target, so recovery could not stop there; undefined when it fits.
 * Other targets lie in WAL we cannot see, so any backup fits.
 */
function endsAfterTarget(r: Route, target: RecoveryTarget, targetMicros: bigint | undefined, targetLsn: bigint | undefined): string | undefined {
  if (targetMicros !== undefined) {
    // An exclusive target stops before a commit at exactly the target time,
    // so the backup must end strictly before it; inclusive, at it will do
    // (pgBackRest: backupTimestampStop <= target).
    const fits = target.inclusive ? r.stopMicros <= targetMicros : r.stopMicros < targetMicros;
    return fits ? undefined : formatTargetTime(r.stopMicros);
  }
  if (targetLsn !== undefined) {
    return r.stopLsn <= targetLsn ? undefined : `LSN ${r.backup.stop.lsn}`;
  }
  return undefined;
}

/**
 * Resolves the target timeline for backup `b` and checks that recovery from
 * `b` can follow it: `b`'s timeline must be in the target's history and its
 * whole backup (start to stop) before the point where the target branched
 * off it, or PostgreSQL refuses ("requested timeline is not a child of this
 * server's history") or, worse, replays onto pages from another branch.
 * Throws NOT_FOUND saying why not.
 */
function routeFor(input: PlanInput, b: BackupSummary): Route {
  const startLsn = manifestLsn(b, 'start', b.start.lsn);
  const stopLsn = manifestLsn(b, 'stop', b.stop.lsn);
  const stopMicros = manifestTime(b, b.stop.time);
  const hist = input.histories.get(b.systemId) ?? new Map<number, readonly TimelineHistoryEntry[]>();
  const spec = input.target.timeline;
  const warnings: string[] = [];

  let tli: number;
  if (spec === 'current') {
    tli = b.timeline;
  } else if (spec === 'latest') {
    // The newest timeline of this system. PostgreSQL's 'latest' probes
    // <TLI+1>.history upwards and stops at the first miss; naming the number
    // in the plan instead makes recovery follow the timeline checked here.
    tli = b.timeline;
    for (const t of hist.keys()) if (t > tli) tli = t;
    for (const o of input.backups) if (o.systemId === b.systemId && o.timeline > tli) tli = o.timeline;
  } else {
    tli = Number(spec);
    if (!Number.isInteger(tli) || tli < 1) {
      throw new CairnError('USAGE', `invalid target timeline ${quote(spec)}`, { hint: 'use latest, current or a timeline number' });
    }
    // Timeline 1 never has a history file (it is where initdb starts).
    if (tli !== b.timeline && tli !== 1 && !hist.has(tli)) {
      throw new CairnError('NOT_FOUND', `timeline ${tli} has no history file ${quote(historyFileName(tli))} in repository ${quote(input.repo)} (backup ${quote(b.id)} is on timeline ${b.timeline})`, {
        hint: 'PostgreSQL archives a history file at each promotion; check --target-timeline (cairn-info lists the timelines)',
      });
    }
  }

  const entries = hist.get(tli);
  if (entries === undefined && tli > 1) {
    warnings.push(`timeline ${tli} has no history file in repository ${quote(input.repo)}: recovery can only follow timeline ${tli} itself`);
  }
  const spans = historyTimelines(entries ?? [], tli, `${historyFileName(tli)} in repository ${quote(input.repo)}`);
  const place = placeOnTimeline(spans, b.timeline, startLsn, stopLsn);
  const other = tli === b.timeline ? '' : ` or --target-timeline current to stay on timeline ${b.timeline}`;
  if (place.where === 'not-in-history') {
    throw new CairnError('NOT_FOUND', `backup ${quote(b.id)} on timeline ${b.timeline} is not in the history of timeline ${tli}`, {
      hint: `restore a backup taken on timeline ${tli} or one of its parents (cairn-info lists them)${other}`,
    });
  }
  if (place.where !== 'on-path') {
    const [when, which] = place.where === 'branched-before' ? [`before backup ${quote(b.id)} started at ${b.start.lsn}`, 'started'] : [`while backup ${quote(b.id)} was running (${b.start.lsn} to ${b.stop.lsn})`, 'ended'];
    throw new CairnError('NOT_FOUND', `timeline ${tli} branched off timeline ${b.timeline} at ${formatLsn(place.branch)}, ${when}`, {
      hint: `restore a backup that ${which} before the branch, or one taken on timeline ${tli}${other}`,
    });
  }
  const at = place.at;
  const path = spans.slice(0, at + 1).map((s) => s.timeline).reverse();
  return { backup: b, startLsn, stopLsn, stopMicros, timeline: tli, spans, path, warnings };
}

export type TimelinePlace =
  | { where: 'on-path'; at: number }
  | { where: 'not-in-history' }
  | { where: 'branched-before' | 'branched-during'; branch: bigint };

/**
 * Whether recovery along a timeline (its history `spans`, newest first) can
 * start from a backup taken on `timeline` from `startLsn` to `stopLsn`: the
 * backup must lie on that history, and the timeline must not have branched
 * off before or while it ran. `at` indexes the backup's span.
 */
export function placeOnTimeline(spans: readonly TimelineSpan[], timeline: number, startLsn: bigint, stopLsn: bigint): TimelinePlace {
  const at = spans.findIndex((s) => s.timeline === timeline);
  const span = spans[at];
  if (span === undefined || startLsn < span.begin) return { where: 'not-in-history' };
  if (span.end !== undefined && startLsn >= span.end) return { where: 'branched-before', branch: span.end };
  if (span.end !== undefined && stopLsn > span.end) return { where: 'branched-during', branch: span.end };
  return { where: 'on-path', at };
}

function manifestLsn(b: BackupSummary, which: string, text: string): bigint {
  if (!isLsn(text)) {
    throw new CairnError('FORMAT_INVALID', `backup ${quote(b.id)} has an invalid ${which} LSN ${quote(String(text))}`, {
      hint: 'the manifest is damaged; run cairn-verify and restore another backup (--set)',
    });
  }
  return parseLsn(text);
}

function manifestTime(b: BackupSummary, text: string): bigint {
  try {
    return parseTargetTime(text).micros;
  } catch {
    const ms = Date.parse(text);
    if (Number.isNaN(ms)) {
      throw new CairnError('FORMAT_INVALID', `backup ${quote(b.id)} has an invalid stop time ${quote(String(text))}`, {
        hint: 'the manifest is damaged; run cairn-verify and restore another backup (--set)',
      });
    }
    return BigInt(ms) * 1000n;
  }
}


/**
 * Checks that every segment PostgreSQL will read is stored, and says which.
 * From the backup's start segment, each segment is read from the newest
 * timeline of the path that has begun by then (timelineForSegment, as
 * XLogFileReadAnyTLI does): the segment holding a switch point comes from
 * the new timeline. The check ends, on the last timeline read, at:
 *   immediate  the backup's stop segment;
 *   lsn        the segment holding the target LSN;
 *   time       the first segment archived after the target time (its WAL
 *              reaches past it), else the end of the archive, with a warning;
 *   xid, name, latest  the end of the archive (the newest stored segment of
 *              the path; a gap before it is an error).
 * Never before the backup's stop segment: without it nothing is consistent.
 */
function checkWal(input: PlanInput, r: Route, targetMicros: bigint | undefined, targetLsn: bigint | undefined): { ranges: PlanWalRange[]; end: string; warnings: string[] } {
  const b = r.backup;
  const segSize = b.walSegmentSize;
  if (!isValidSegmentSize(segSize)) {
    throw new CairnError('FORMAT_INVALID', `backup ${quote(b.id)} has an invalid WAL segment size ${quote(String(segSize))}`, {
      hint: 'the manifest is damaged; run cairn-verify and restore another backup (--set)',
    });
  }
  const stored = input.wal.get(b.systemId) ?? new Map<string, { mtime: Date }>();
  const startSeg = lsnToSegmentNumber(r.startLsn, segSize);
  // The stop LSN ends the backup's last record: on a segment boundary it is
  // still in the segment before (XLByteToPrevSeg, like pg_walfile_name up to 16).
  const stopSeg = r.stopLsn > r.startLsn ? lsnToSegmentNumber(r.stopLsn, segSize, { end: true }) : startSeg;
  const nameAt = (segno: bigint) => segmentName(timelineForSegment(r.spans, segno, segSize), segno, segSize);
  const onPath = new Set(r.path);
  const warnings: string[] = [];
  const kind: TargetKind = input.target.kind;

  // The newest stored segment recovery along this path would read.
  let newest: bigint | undefined;
  if (kind !== 'immediate' && kind !== 'lsn') {
    for (const name of stored.keys()) {
      if (!isSegmentName(name)) continue;
      const tli = timelineOf(name);
      if (!onPath.has(tli)) continue;
      let segno: bigint;
      try {
        segno = segmentNumber(name, segSize);
      } catch {
        continue; // not a name of this segment size: not ours to read
      }
      if (segno < startSeg || (newest !== undefined && segno <= newest)) continue;
      if (timelineForSegment(r.spans, segno, segSize) === tli) newest = segno;
    }
  }

  const missing = (segno: bigint): CairnError => {
    const name = nameAt(segno);
    const inBackup = segno <= stopSeg;
    return new CairnError('NOT_FOUND', `WAL segment ${quote(name)} needed to restore backup ${quote(b.id)} to ${describeTarget(input.target)} on timeline ${r.timeline} is missing from repository ${quote(input.repo)}`, {
      hint: inBackup
        ? 'the backup cannot become consistent without it: restore another backup (--set), and run cairn-verify'
        : 'the archive ends or has a gap there: choose an earlier target or check archiving (pg_stat_archiver) and run cairn-verify',
    });
  };

  let end: bigint;
  if (kind === 'immediate') {
    end = stopSeg;
  } else if (kind === 'lsn') {
    // The segment holding the target: PostgreSQL reads the record there
    // before it decides to stop (recoveryStopsBefore/After).
    const seg = lsnToSegmentNumber(targetLsn!, segSize);
    end = seg > stopSeg ? seg : stopSeg;
  } else if (kind === 'time') {
    const targetUs = targetMicros!;
    let found: bigint | undefined;
    for (let segno = startSeg; ; segno++) {
      const entry = stored.get(nameAt(segno));
      if (entry === undefined) {
        if (segno <= stopSeg || (newest !== undefined && segno < newest)) throw missing(segno);
        found = segno - 1n;
        warnings.push(
          `no WAL archived after the target time was found: the target may lie beyond the newest archived segment ${quote(nameAt(found))}; ` +
          'if it does, PostgreSQL stops recovery with an error (PostgreSQL 13 and later) instead of reaching it',
        );
        break;
      }
      // The archive time of a segment is after all the WAL it holds was
      // written; the first one archived after the target therefore holds
      // WAL past it. Archive lag can make it the segment before the one
      // being written at the target time (completed just before it, archived
      // just after), so one more segment is checked when the archive has it
      // or anything newer. (Beyond that, PostgreSQL asks for more and fails
      // loudly rather than stop short.)
      if (segno >= stopSeg && BigInt(entry.mtime.getTime()) * 1000n > targetUs) {
        found = newest !== undefined && newest > segno ? segno + 1n : segno;
        break;
      }
    }
    end = found;
  } else {
    end = newest !== undefined && newest > stopSeg ? newest : stopSeg;
  }

  const ranges: PlanWalRange[] = [];
  for (let segno = startSeg; segno <= end; segno++) {
    const name = nameAt(segno);
    if (!stored.has(name)) throw missing(segno);
    const tli = timelineOf(name);
    const last = ranges.at(-1);
    if (last !== undefined && last.timeline === tli) {
      last.to = name;
      last.segments++;
    } else {
      ranges.push({ timeline: tli, from: name, to: name, segments: 1 });
    }
  }
  return { ranges, end: nameAt(end), warnings };
}
