// Reading what a backup_label says (xlogrecovery.c read_backup_label):
//   START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
//   CHECKPOINT LOCATION: 0/2000060
//   BACKUP METHOD: streamed
//   BACKUP FROM: primary
//   START TIME: 2026-11-21 15:22:00 UTC
//   LABEL: …
//   START TIMELINE: 1

import { CairnError } from '@cairn/core/cli/errors';
import { timelineOf } from '@cairn/core/wal/file-name';
import { parseLsn } from '@cairn/core/wal/lsn';
import { isValidSegmentSize, lsnToSegmentName } from '@cairn/core/wal/segment';

export interface BackupLabel {
  startLsn: bigint;
  startWal: string;
  checkpointLsn: bigint;
  startTime: Date;
  timeline: number;
  from: string;
}

export function parseBackupLabel(text: string): BackupLabel {
  const get = (re: RegExp) => re.exec(text);
  const start = get(/^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+) \(file ([0-9A-F]{24})\)$/m);
  const ckpt = get(/^CHECKPOINT LOCATION: ([0-9A-F]+\/[0-9A-F]+)$/m);
  const time = get(/^START TIME: (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) ([A-Za-z0-9+:-]+)$/m);
  const tli = get(/^START TIMELINE: (\d+)$/m);
  const from = get(/^BACKUP FROM: (\w+)$/m);
  if (!start || !ckpt || !time) {
    throw new CairnError('FORMAT_INVALID', 'backup_label lacks START WAL LOCATION, CHECKPOINT LOCATION or START TIME', {
      hint: 'the backup stream is not from pg_basebackup of PostgreSQL 12 or later',
    });
  }
  const zone = time[2]!;
  // PostgreSQL writes the zone as an abbreviation (log_timezone); UTC/GMT or a numeric offset parse exactly.
  let startTime = new Date(`${time[1]!.replace(' ', 'T')}${zone === 'UTC' || zone === 'GMT' ? 'Z' : /^[+-]\d{2}(:?\d{2})?$/.test(zone) ? zone : 'Z'}`);
  if (Number.isNaN(startTime.getTime())) startTime = new Date();
  return {
    startLsn: parseLsn(start[1]!),
    startWal: start[2]!,
    checkpointLsn: parseLsn(ckpt[1]!),
    startTime,
    timeline: tli ? Number(tli[1]) : timelineOf(start[2]!),
    from: from?.[1] ?? 'primary',
  };
}

/** The WAL segment size that makes `lsn` fall in segment file `name` (a backup_label names both). */
export function segmentSizeFrom(lsn: bigint, name: string, fallback: number): number {
  const tli = timelineOf(name);
  for (let size = 1024 * 1024; size <= 1024 * 1024 * 1024; size *= 2) {
    if (!isValidSegmentSize(size)) continue;
    if (lsnToSegmentName(tli, lsn, size) === name) return size;
  }
  return fallback;
}
