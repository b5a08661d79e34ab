// The restore plan: what cairn-restore-plan prints and cairn-restore (and
// cairn-drill) consume. Versioned; fields are only ever added. Documented in
// the README ("Restore plans").

export const PLAN_FORMAT = 'cairn.restore-plan/1';

export type TargetKind = 'time' | 'xid' | 'lsn' | 'name' | 'immediate' | 'latest';

export interface RecoveryTarget {
  kind: TargetKind;
  /**
   * The value as given, normalised: a time as "YYYY-MM-DD HH:MM:SS.ffffff+00" (UTC, what
   * PostgreSQL reads), an LSN as X/Y in uppercase hex; absent for immediate/latest.
   */
  value?: string;
  /** latest | current | a timeline number (as text). */
  timeline: string;
  action: 'promote' | 'pause' | 'shutdown';
  /** recovery_target_inclusive; default true. */
  inclusive: boolean;
}

export interface PlanWalRange {
  timeline: number;
  /** First and last segment restore needs from this timeline (inclusive). */
  from: string;
  to: string;
  segments: number;
}

export interface RestorePlan {
  format: typeof PLAN_FORMAT;
  /** When the plan was made (ISO 8601). */
  createdAt: string;
  cluster: string;
  /** The repository (URL without credentials) holding the chain. */
  repo: string;
  systemId: string;
  pgMajor: string;
  walSegmentSize: number;
  /** The backup restored (the last of the chain). */
  backup: {
    id: string;
    type: 'full' | 'diff' | 'incr';
    timeline: number;
    startLsn: string;
    stopLsn: string;
    startTime: string;
    stopTime: string;
    startWal: string;
    stopWal: string;
  };
  /** Full backup first, `backup.id` last. */
  chain: string[];
  target: RecoveryTarget;
  /** The timeline recovery ends on (resolved from target.timeline). */
  targetTimeline: number;
  /** Timelines from the backup's to targetTimeline, oldest first. */
  timelines: number[];
  /** The WAL checked to exist, per timeline, oldest first. */
  wal: PlanWalRange[];
  /** The last segment the check reached: the end of the archive, or the segment holding the target. */
  walEnd: string;
  /** Settings for postgresql.auto.conf besides restore_command (names are PostgreSQL's). */
  recoverySettings: Record<string, string>;
  /** Things the operator should know (e.g. a time target after the newest archived WAL). */
  warnings: string[];
}
