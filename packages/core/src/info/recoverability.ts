// The recoverability window of the info report: the earliest and latest
// point a restore reaches, per system and over all, and the stretches between
// that none reaches, as the restore planner decides it (planRestore with
// targets immediate and latest for each backup, core restore/planner.ts).

import { CairnError, isCairnError } from '../cli/errors.js';
import type { BackupSummary } from '../backup/manifest.js';
import type { RepoCatalog } from '../repo/catalog.js';
import type { RecoveryTarget, RestorePlan } from '../restore/plan-format.js';
import { planRestore, type PlanInput } from '../restore/planner.js';
import { timelineOf } from '../wal/file-name.js';
import { historyTimelines, timelineForSegment } from '../wal/history.js';
import { formatLsn, parseLsn } from '../wal/lsn.js';
import { segmentEndLsn, segmentName, segmentNumber } from '../wal/segment.js';

/** A point a restore can reach. */
export interface InfoPoint {
  systemId: string;
  /** The backup restored to get there. */
  backup: string;
  timeline: number;
  lsn: string;
  /** The WAL segment holding `lsn` (the last one replayed). */
  wal: string;
  time: string;
  /**
   * true: `time` is when the last segment was archived, which is after the
   * last change it holds (an upper bound); false: the backup's own stop time.
   */
  timeIsUpperBound: boolean;
}

export interface InfoRecoverabilitySystem {
  systemId: string;
  earliest: InfoPoint | null;
  latest: InfoPoint | null;
  /** Stretches between earliest and latest that no restore reaches (a WAL gap between backups). */
  unreachable: { from: InfoPoint; to: InfoPoint }[];
  restorableBackups: number;
  /** What limits the window, one line each (a gap, nothing restorable). */
  notes: string[];
}

export interface InfoRecoverability {
  /** Over all systems; null when nothing can be restored. */
  earliest: InfoPoint | null;
  latest: InfoPoint | null;
  /** Seconds from latest.time to the report's time: at least this much recent change a restore cannot bring back. */
  latestAgeSeconds: number | null;
  systems: InfoRecoverabilitySystem[];
}

const IMMEDIATE = (timeline: string): RecoveryTarget => ({ kind: 'immediate', timeline, action: 'promote', inclusive: true });
const LATEST = (timeline: string): RecoveryTarget => ({ kind: 'latest', timeline, action: 'promote', inclusive: true });

/** How far a restore of one backup gets: its stop, and the end of the WAL it can replay. */
interface Reach {
  backup: BackupSummary;
  stop: InfoPoint;
  end: InfoPoint;
  /** The segment missing right after `end`, when a gap (not the archive's end) stops it. */
  gapAt: string | undefined;
}

/** The window over the catalog's backups and WAL, and in `problems` why each backup that cannot be restored cannot (by id). */
export function describeRecoverability(
  catalog: RepoCatalog,
  histories: PlanInput['histories'],
  now: Date,
): { report: InfoRecoverability; problems: Map<string, string> } {
  const wal = new Map<string, ReadonlyMap<string, { mtime: Date }>>();
  for (const [id, listing] of catalog.wal) wal.set(id, listing.segments);
  const base: Omit<PlanInput, 'target'> = {
    cluster: catalog.cluster,
    repo: catalog.repo,
    backups: catalog.backups,
    wal,
    histories,
    now,
  };
  const problems = new Map<string, string>();
  const systems: InfoRecoverabilitySystem[] = [];
  const systemIds = [...new Set(catalog.backups.map((b) => b.systemId))].sort();
  for (const systemId of systemIds) {
    // Oldest first by stop time: the first restorable one is the earliest point.
    const backups = catalog.backups
      .filter((b) => b.systemId === systemId)
      .sort((a, b) => compareTimes(a.stop.time, b.stop.time) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const restorable: { b: BackupSummary; own: RestorePlan }[] = [];
    for (const b of backups) {
      const own = tryPlan({ ...base, target: IMMEDIATE('current'), set: b.id });
      if (own instanceof CairnError) problems.set(b.id, own.message);
      else restorable.push({ b, own });
    }
    const reaches: Reach[] = [];
    let covered: InfoPoint | undefined;
    restorable.forEach(({ b, own }, i) => {
      // A backup that stops inside WAL an older restore already replays
      // through reaches the same end (same segments, same gaps): skipping its
      // walk keeps a long archive from being walked once per backup. The
      // newest is always walked: the latest point names the backup to restore.
      const stop = stopPoint(b);
      if (covered !== undefined && i < restorable.length - 1 && stop.timeline === covered.timeline && comparePoints(stop, covered) <= 0) return;
      const r = reachOf(base, b, own);
      reaches.push(r);
      if (covered === undefined || comparePoints(r.end, covered) > 0) covered = r.end;
    });
    systems.push(describeSystemWindow(systemId, backups.length, restorable.length, reaches));
  }
  const pick = (which: 'earliest' | 'latest') => {
    let best: InfoPoint | null = null;
    for (const s of systems) {
      const p = s[which];
      if (p === null) continue;
      const c = best === null ? 0 : compareTimes(p.time, best.time);
      if (best === null || (which === 'earliest' ? c < 0 : c > 0)) best = p;
    }
    return best;
  };
  const latest = pick('latest');
  return {
    report: {
      earliest: pick('earliest'),
      latest,
      latestAgeSeconds: latest === null ? null : Math.max(0, Math.round((now.getTime() - Date.parse(latest.time)) / 1000)),
      systems,
    },
    problems,
  };
}

function describeSystemWindow(systemId: string, backupCount: number, restorableCount: number, reaches: Reach[]): InfoRecoverabilitySystem {
  const notes: string[] = [];
  if (reaches.length === 0) {
    notes.push(backupCount === 0 ? 'no backups' : `none of its ${backupCount} backup${backupCount === 1 ? '' : 's'} can be restored (see each backup's problem)`);
    return { systemId, earliest: null, latest: null, unreachable: [], restorableBackups: 0, notes };
  }
  // The farthest any restore gets (normally the newest backup's; an older
  // one on another timeline may go farther).
  let farthest = reaches[reaches.length - 1]!;
  for (const r of reaches) if (comparePoints(r.end, farthest.end) > 0) farthest = r;
  if (farthest.gapAt !== undefined) {
    notes.push(`WAL segment ${farthest.gapAt} is missing: recovery from backup ${farthest.backup.id} cannot replay past ${farthest.end.wal}, though newer WAL is archived`);
  }
  // Walking the backups by stop: a backup whose stop lies beyond what the
  // restores so far reach starts a new stretch; the points between are lost.
  const unreachable: { from: InfoPoint; to: InfoPoint }[] = [];
  let covered = reaches[0]!.end;
  for (const r of reaches.slice(1)) {
    if (comparePoints(r.stop, covered) > 0) unreachable.push({ from: covered, to: r.stop });
    if (comparePoints(r.end, covered) > 0) covered = r.end;
  }
  return { systemId, earliest: reaches[0]!.stop, latest: farthest.end, unreachable, restorableBackups: restorableCount, notes };
}

/** By LSN on one timeline; across timelines by time (LSNs of branches are not comparable). */
function comparePoints(a: InfoPoint, b: InfoPoint): number {
  if (a.timeline !== b.timeline) return compareTimes(a.time, b.time);
  const x = parseLsn(a.lsn);
  const y = parseLsn(b.lsn);
  return x < y ? -1 : x > y ? 1 : 0;
}

function compareTimes(a: string, b: string): number {
  return Date.parse(a) - Date.parse(b);
}

/** A backup's end: where a restore of it becomes consistent. */
function stopPoint(b: BackupSummary): InfoPoint {
  return { systemId: b.systemId, backup: b.id, timeline: b.timeline, lsn: b.stop.lsn, wal: b.stop.wal, time: b.stop.time, timeIsUpperBound: false };
}

function tryPlan(input: PlanInput): RestorePlan | CairnError {
  try {
    return planRestore(input);
  } catch (err) {
    // Not found (a missing segment, timeline trouble) and a damaged manifest
    // both mean "not restorable this way"; anything else is a bug.
    if (isCairnError(err, 'NOT_FOUND') || isCairnError(err, 'FORMAT_INVALID')) return err;
    throw err;
  }
}

/**
 * Where a restore of restorable backup `b` gets (`own`: its plan with
 * target immediate on its own timeline, which checked its chain and its WAL
 * from start to stop): from its stop to the end of the WAL it can replay. That end is what planRestore with target latest reaches, following
 * the newest timeline when `b` lies in its history, else `b`'s own. When
 * planRestore refuses latest because a segment is missing, recovery still
 * replays up to the gap before it ends: the walk below finds that end the
 * way the planner reads segments (timelineForSegment).
 */
function reachOf(base: Omit<PlanInput, 'target'>, b: BackupSummary, own: RestorePlan): Reach {
  const stored = base.wal.get(b.systemId) ?? new Map<string, { mtime: Date }>();
  const stop = stopPoint(b);
  const endAt = (name: string): InfoPoint => ({
    systemId: b.systemId,
    backup: b.id,
    timeline: timelineOf(name),
    lsn: formatLsn(segmentEndLsn(name, b.walSegmentSize)),
    wal: name,
    time: stored.get(name)!.mtime.toISOString(),
    timeIsUpperBound: true,
  });
  for (const timeline of ['latest', 'current']) {
    const latest = tryPlan({ ...base, target: LATEST(timeline), set: b.id });
    if (!(latest instanceof CairnError)) return { backup: b, stop, end: endAt(latest.walEnd), gapAt: undefined };
    const first = timeline === 'current' ? own : tryPlan({ ...base, target: IMMEDIATE(timeline), set: b.id });
    if (first instanceof CairnError) continue; // b is not in the newest timeline's history: try its own
    const tli = first.targetTimeline;
    const spans = historyTimelines(base.histories.get(b.systemId)?.get(tli) ?? [], tli);
    const nameAt = (segno: bigint) => segmentName(timelineForSegment(spans, segno, b.walSegmentSize), segno, b.walSegmentSize);
    let segno = segmentNumber(first.walEnd, b.walSegmentSize);
    while (stored.has(nameAt(segno + 1n))) segno++;
    return { backup: b, stop, end: endAt(nameAt(segno)), gapAt: nameAt(segno + 1n) };
  }
  // Unreachable: the 'current' immediate plan succeeded, so the walk above ran.
  throw new CairnError('INTERNAL', `no reach computed for backup ${b.id}`);
}
