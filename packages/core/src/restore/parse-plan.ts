// Reading a restore plan back: what cairn-restore and cairn-drill do with the
// JSON cairn-restore-plan printed, which may come from a file, stdin or an
// operator's editor. Its own job beside planning: planner.ts decides, this
// file distrusts what it is handed.

import { CairnError } from '../cli/errors.js';
import { isBackupId } from '../backup/manifest.js';
import { isSegmentName } from '../wal/file-name.js';
import { isLsn } from '../wal/lsn.js';
import { quote } from '../wal/quote.js';
import { isValidSegmentSize } from '../wal/segment.js';
import { PLAN_FORMAT, type RestorePlan, type TargetKind } from './plan-format.js';
import { parseTargetTime, TARGET_ACTIONS } from './target.js';

const TARGET_KINDS: readonly TargetKind[] = ['time', 'xid', 'lsn', 'name', 'immediate', 'latest'];
const RECOVERY_SETTING_NAMES = new Set([
  'recovery_target',
  'recovery_target_time',
  'recovery_target_xid',
  'recovery_target_lsn',
  'recovery_target_name',
  'recovery_target_timeline',
  'recovery_target_action',
  'recovery_target_inclusive',
]);

/**
 * Reads a plan made by cairn-restore-plan (from a file, or stdin when
 * `where` is "-"). Throws USAGE when it is not JSON (the wrong file), and
 * FORMAT_INVALID when it is not a plan this cairn reads. Recovery settings
 * are limited to recovery_target*, so an edited plan cannot slip other
 * settings into postgresql.auto.conf.
 */
export function parsePlan(text: string, where: string): RestorePlan {
  const label = where === '-' ? 'on stdin' : quote(where);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new CairnError('USAGE', `restore plan ${label} is not JSON`, {
      hint: 'give the output of cairn-restore-plan, e.g. cairn-restore-plan --target-time … > plan.json',
    });
  }
  const bad = (what: string) =>
    new CairnError('FORMAT_INVALID', `restore plan ${label} is invalid: ${what}`, {
      hint: 'make a new plan with cairn-restore-plan; do not edit plans by hand',
    });
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('not an object');
  const p = v as Record<string, unknown>;
  if (p['format'] !== PLAN_FORMAT) {
    throw new CairnError('FORMAT_INVALID', `restore plan ${label} has format ${quote(String(p['format']))}, expected ${PLAN_FORMAT}`, {
      hint: 'make the plan with a cairn-restore-plan of the same cairn version as the tool reading it',
    });
  }
  const str = (o: Record<string, unknown>, k: string, what = k) => {
    if (typeof o[k] !== 'string' || o[k] === '') throw bad(`${what} is missing or not a string`);
    return o[k] as string;
  };
  const int = (o: Record<string, unknown>, k: string, what = k) => {
    if (typeof o[k] !== 'number' || !Number.isInteger(o[k]) || (o[k] as number) < 1) throw bad(`${what} is not a positive integer`);
    return o[k] as number;
  };
  const obj = (x: unknown, what: string) => {
    if (typeof x !== 'object' || x === null || Array.isArray(x)) throw bad(`${what} is missing or not an object`);
    return x as Record<string, unknown>;
  };
  const seg = (o: Record<string, unknown>, k: string, what: string) => {
    const s = str(o, k, what);
    if (!isSegmentName(s)) throw bad(`${what} is not a WAL segment name`);
    return s;
  };

  for (const k of ['createdAt', 'cluster', 'repo', 'systemId', 'pgMajor', 'walEnd']) str(p, k);
  if (!isSegmentName(p['walEnd'] as string)) throw bad('walEnd is not a WAL segment name');
  if (!isValidSegmentSize(p['walSegmentSize'] as number)) throw bad('walSegmentSize is not a WAL segment size');

  const backup = obj(p['backup'], 'backup');
  if (!isBackupId(str(backup, 'id', 'backup.id'))) throw bad('backup.id is not a backup id');
  if (!['full', 'diff', 'incr'].includes(backup['type'] as string)) throw bad('backup.type is not full, diff or incr');
  int(backup, 'timeline', 'backup.timeline');
  for (const k of ['startLsn', 'stopLsn']) if (!isLsn(str(backup, k, `backup.${k}`))) throw bad(`backup.${k} is not an LSN`);
  for (const k of ['startTime', 'stopTime']) str(backup, k, `backup.${k}`);
  for (const k of ['startWal', 'stopWal']) seg(backup, k, `backup.${k}`);

  const chain = p['chain'];
  if (!Array.isArray(chain) || chain.length === 0 || !chain.every((id) => typeof id === 'string' && isBackupId(id))) {
    throw bad('chain is not a list of backup ids');
  }
  if (chain.at(-1) !== backup['id']) throw bad('chain does not end with the backup');

  const target = obj(p['target'], 'target');
  if (!TARGET_KINDS.includes(target['kind'] as TargetKind)) throw bad('target.kind is unknown');
  const kind = target['kind'] as TargetKind;
  if (kind !== 'immediate' && kind !== 'latest') {
    const value = str(target, 'value', 'target.value');
    if (kind === 'lsn' && !isLsn(value)) throw bad('target.value is not an LSN');
    if (kind === 'time') {
      try {
        parseTargetTime(value);
      } catch {
        throw bad('target.value is not a time with a zone');
      }
    }
  }
  str(target, 'timeline', 'target.timeline');
  if (!(TARGET_ACTIONS as readonly string[]).includes(target['action'] as string)) throw bad('target.action is not promote, pause or shutdown');
  if (typeof target['inclusive'] !== 'boolean') throw bad('target.inclusive is not a boolean');

  int(p, 'targetTimeline');
  const timelines = p['timelines'];
  if (!Array.isArray(timelines) || timelines.length === 0 || !timelines.every((t) => Number.isInteger(t) && t >= 1)) {
    throw bad('timelines is not a list of timelines');
  }
  const wal = p['wal'];
  if (!Array.isArray(wal)) throw bad('wal is not a list');
  wal.forEach((r, i) => {
    const o = obj(r, `wal[${i}]`);
    int(o, 'timeline', `wal[${i}].timeline`);
    int(o, 'segments', `wal[${i}].segments`);
    seg(o, 'from', `wal[${i}].from`);
    seg(o, 'to', `wal[${i}].to`);
  });

  const settings = obj(p['recoverySettings'], 'recoverySettings');
  for (const [k, val] of Object.entries(settings)) {
    if (!RECOVERY_SETTING_NAMES.has(k)) throw bad(`recoverySettings names ${quote(k)}, which is not a recovery target setting`);
    // eslint-disable-next-line no-control-regex
    if (typeof val !== 'string' || /[\u0000-\u001f\u007f]/.test(val)) throw bad(`recoverySettings.${k} is not a one-line string`);
  }
  const warnings = p['warnings'];
  if (!Array.isArray(warnings) || !warnings.every((w) => typeof w === 'string')) throw bad('warnings is not a list of strings');
  return p as unknown as RestorePlan;
}
