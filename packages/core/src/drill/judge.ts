// The pure half of a drill's verdict: did recovery stop where it was asked
// to (read from the scratch server's log, which cairn-drill runs with
// lc_messages = 'C'), and how old the newest recovered data is.

import { parseTargetTime } from '../restore/target.js';

export interface TargetLike {
  kind: string;
  value?: string | undefined;
}

/**
 * PostgreSQL logs where targeted recovery stopped (xlogrecovery.c
 * recoveryStopsBefore/After): "recovery stopping before commit of
 * transaction 745, time …", "… at restore point …", "… after WAL location
 * (LSN) …", "… after reaching consistency". Without a target it replays to
 * the end of the archive and logs "archive recovery complete". Since PG 13 a
 * target that is never reached is FATAL, so a promoted server with the
 * stopping line reached its target; the time target is also checked against
 * the newest commit recovered (inclusive: at or before the target).
 */
export function judgeRecoveryTarget(target: TargetLike, serverLog: string, newestCommit: Date | null): { ok: boolean; message: string } {
  const line = (re: RegExp) => serverLog.split('\n').map((l) => l.replace(/^.*?\bLOG:\s+/, '')).find((l) => re.test(l));
  if (target.kind === 'latest') {
    const done = line(/^archive recovery complete/) ?? line(/^selected new timeline ID/);
    return done ? { ok: true, message: 'replayed the archived WAL to its end and promoted' } : { ok: false, message: 'the server log does not show the end of archive recovery ("archive recovery complete")' };
  }
  const stop = line(/^recovery stopping /);
  if (!stop) return { ok: false, message: `the server log does not show recovery stopping at the target (${target.kind}${target.value ? ` ${target.value}` : ''})` };
  if (target.kind === 'time' && target.value && newestCommit) {
    const t = parseTargetTime(target.value).micros;
    if (BigInt(newestCommit.getTime()) * 1000n > t + 999n) {
      return { ok: false, message: `${stop}, but a commit of ${newestCommit.toISOString()} (after the target ${target.value}) was recovered` };
    }
  }
  return { ok: true, message: stop };
}

/**
 * Seconds between the reference and the newest commit recovered: for a time
 * target the target time (how much of what was asked for is missing), for
 * every other target the drill's start (how much would be lost restoring
 * now). null when no commit was replayed or recorded.
 */
export function dataAgeSeconds(target: TargetLike | null, drillStart: Date, newestCommit: Date | null): number | null {
  if (newestCommit === null) return null;
  const refMs = target?.kind === 'time' && target.value ? Number(parseTargetTime(target.value).micros / 1000n) : drillStart.getTime();
  // A latest drill replays WAL archived after it started (the source keeps
  // committing while the backup is restored): newer than the start is no
  // data lost, age 0, not a negative age (CI once saw -1.5 s).
  return Math.max(0, Math.round(refMs - newestCommit.getTime()) / 1000);
}
