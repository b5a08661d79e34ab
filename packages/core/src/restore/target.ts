// The recovery target flags shared by restore-plan, restore and drill
// (docs/design.md §7), their validation, and the PostgreSQL settings they become
// (docs: "Recovery Target" in runtime-config-wal; at most one target).

import { CairnError } from '../cli/errors.js';
import type { SettingDef, Settings } from '../config/settings.js';
import { parseBackupId } from '../backup/manifest.js';
import { formatLsn, parseLsn } from '../wal/lsn.js';
import { quote } from '../wal/quote.js';
import type { RecoveryTarget, TargetKind } from './plan-format.js';

export const TARGET_ACTIONS = ['promote', 'pause', 'shutdown'] as const;

const TARGET_DEFS = [
  {
    name: 'target-time',
    type: 'string',
    description: 'recover up to this time, with a zone: "2026-11-21 14:03:00+00" or 2026-11-21T14:03:00Z',
    valueHint: 'TS',
  },
  { name: 'target-xid', type: 'string', description: 'recover up to this transaction id', valueHint: 'XID' },
  { name: 'target-lsn', type: 'string', description: 'recover up to this WAL location, e.g. 0/5000028', valueHint: 'LSN' },
  { name: 'target-name', type: 'string', description: 'recover up to this restore point (pg_create_restore_point)', valueHint: 'NAME' },
  {
    name: 'target',
    type: 'string',
    // No default on purpose: an explicit --target latest next to --target-time
    // is a conflict to report, which a default would hide.
    description: 'immediate (stop as soon as the backup is consistent) or latest (replay all archived WAL); latest when no target is given',
    valueHint: 'immediate|latest',
  },
  {
    name: 'target-timeline',
    type: 'string',
    description: 'timeline to recover along: latest (the newest in the repository), current (the backup\'s) or a number',
    default: 'latest',
    valueHint: 'TIMELINE',
  },
  {
    name: 'target-action',
    type: 'string',
    description: 'what the server does at the target: promote, pause (like PostgreSQL) or shutdown',
    default: 'pause',
    valueHint: 'ACTION',
  },
  {
    name: 'target-exclusive',
    type: 'boolean',
    description: 'stop just before the target instead of just after it (recovery_target_inclusive = off; time, xid and lsn targets)',
    default: false,
  },
  { name: 'set', type: 'string', description: 'restore this backup (default: the newest that can reach the target)', valueHint: 'BACKUP_ID' },
] as const satisfies readonly SettingDef[];

/** Settings every tool that restores takes; the names are the interface operators script against. */
export const TARGET_SETTINGS: readonly ((typeof TARGET_DEFS)[number] & SettingDef)[] = TARGET_DEFS;

const TARGET_FLAGS: { setting: string; kind: TargetKind }[] = [
  { setting: 'target-time', kind: 'time' },
  { setting: 'target-xid', kind: 'xid' },
  { setting: 'target-lsn', kind: 'lsn' },
  { setting: 'target-name', kind: 'name' },
];

const TARGET_HINT = 'give one of --target-time, --target-xid, --target-lsn, --target-name or --target immediate|latest';

/**
 * Reads the target settings into a RecoveryTarget (and the --set backup id).
 * Throws USAGE for an invalid value or more than one target (PostgreSQL
 * accepts at most one recovery_target* setting).
 */
export function parseTarget(settings: Settings): { target: RecoveryTarget; set?: string } {
  const given: { flag: string; kind: TargetKind; raw?: string }[] = [];
  for (const { setting, kind } of TARGET_FLAGS) {
    const v = settings[setting];
    if (v !== undefined) given.push({ flag: `--${setting}`, kind, raw: String(v) });
  }
  const t = settings['target'];
  if (t !== undefined) {
    const v = String(t);
    if (v !== 'immediate' && v !== 'latest') {
      throw new CairnError('USAGE', `invalid --target ${quote(v)}`, {
        hint: 'use --target immediate or --target latest; for a time, xid, LSN or restore point use --target-time, --target-xid, --target-lsn or --target-name',
      });
    }
    given.push({ flag: `--target ${v}`, kind: v });
  }
  if (given.length > 1) {
    throw new CairnError('USAGE', `more than one recovery target: ${given.map((g) => g.flag).join(' and ')}`, {
      hint: `${TARGET_HINT} (PostgreSQL stops at one target); check CAIRN_TARGET_* and the config file too`,
    });
  }
  const chosen = given[0] ?? { flag: '', kind: 'latest' as const };

  let value: string | undefined;
  switch (chosen.kind) {
    case 'time':
      value = parseTargetTime(chosen.raw!).text;
      break;
    case 'xid':
      value = parseTargetXid(chosen.raw!);
      break;
    case 'lsn':
      value = formatLsn(parseTargetLsn(chosen.raw!));
      break;
    case 'name':
      value = parseTargetName(chosen.raw!);
      break;
    default:
      value = undefined;
  }

  const timeline = parseTargetTimeline(String(settings['target-timeline'] ?? 'latest'));
  const action = String(settings['target-action'] ?? 'pause');
  if (!(TARGET_ACTIONS as readonly string[]).includes(action)) {
    throw new CairnError('USAGE', `invalid --target-action ${quote(action)}`, { hint: 'use promote, pause or shutdown' });
  }
  // recovery_target_inclusive only means something for time, xid and lsn;
  // PostgreSQL ignores it otherwise, and so do we rather than fail a restore
  // over a setting left in the environment.
  const exclusive = settings['target-exclusive'] === true && (chosen.kind === 'time' || chosen.kind === 'xid' || chosen.kind === 'lsn');

  const target: RecoveryTarget = {
    kind: chosen.kind,
    ...(value === undefined ? {} : { value }),
    timeline,
    action: action as RecoveryTarget['action'],
    inclusive: !exclusive,
  };
  const set = settings['set'];
  if (set === undefined) return { target };
  parseBackupId(String(set)); // USAGE on a malformed id
  return { target, set: String(set) };
}

/**
 * PostgreSQL's names for a target (the settings besides restore_command that
 * go into postgresql.auto.conf). The timeline is written as the number the
 * plan resolved, so recovery follows exactly the timeline whose WAL was
 * checked. Values are raw: the writer quotes them for postgresql.conf.
 */
export function recoverySettingsFor(target: RecoveryTarget, resolvedTimeline: number | string): Record<string, string> {
  const out: Record<string, string> = {};
  switch (target.kind) {
    case 'time':
      out['recovery_target_time'] = target.value!;
      break;
    case 'xid':
      out['recovery_target_xid'] = target.value!;
      break;
    case 'lsn':
      out['recovery_target_lsn'] = target.value!;
      break;
    case 'name':
      out['recovery_target_name'] = target.value!;
      break;
    case 'immediate':
      out['recovery_target'] = 'immediate';
      break;
    case 'latest':
      break;
  }
  out['recovery_target_timeline'] = String(resolvedTimeline);
  // Without a target PostgreSQL ignores recovery_target_action and promotes
  // at the end of the WAL; writing it would only mislead a reader.
  if (target.kind !== 'latest') out['recovery_target_action'] = target.action;
  if (!target.inclusive && (target.kind === 'time' || target.kind === 'xid' || target.kind === 'lsn')) {
    out['recovery_target_inclusive'] = 'off';
  }
  return out;
}

/** "time 2026-11-21 14:03:00.000000+00", "LSN 0/5000028", …: the target in messages. */
export function describeTarget(target: Pick<RecoveryTarget, 'kind' | 'value'>): string {
  switch (target.kind) {
    case 'time':
      return `time ${target.value}`;
    case 'xid':
      return `transaction ${target.value}`;
    case 'lsn':
      return `LSN ${target.value}`;
    case 'name':
      return `restore point ${quote(target.value ?? '')}`;
    case 'immediate':
      return 'the end of the backup (immediate)';
    case 'latest':
      return 'the end of the archived WAL (latest)';
  }
}

// ---- values ---------------------------------------------------------------

const TIME_HINT = 'e.g. "2026-11-21 14:03:00+00", "2026-11-21 14:03:00.5-05:00" or 2026-11-21T14:03:00Z';

// What PostgreSQL's timestamptz input accepts in practice for a target:
// ISO 8601 / SQL date and time, 'T' or spaces between, optional seconds and
// fraction, then a zone: Z, UTC/GMT or a numeric offset (+HH, +HHMM, +HH:MM).
const TIME_RE =
  /^(\d{4})-(\d{2})-(\d{2})(?:T|t|\s+)(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(?:(Z|z|UTC|utc|GMT|gmt)|([+-])(\d{1,2})(?::?(\d{2}))?)?$/;
const DATE_ONLY_RE = /^\d{4}-\d{2}-\d{2}$/;
const NAMED_ZONE_RE = /^(\d{4}-\d{2}-\d{2}(?:T|t|\s+)\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*([A-Za-z][A-Za-z0-9_/+-]*)$/;

export interface TargetTime {
  /** Microseconds since 1970-01-01 00:00:00 UTC. */
  micros: bigint;
  /** For PostgreSQL: "YYYY-MM-DD HH:MM:SS.ffffff+00" (UTC). */
  text: string;
}

/**
 * Parses a target time. A zone (Z, UTC or an offset) is required: without
 * one PostgreSQL reads recovery_target_time in the restored server's
 * TimeZone setting, which need not be the zone the operator meant, and the
 * plan (made on another host) could not check the same instant.
 */
export function parseTargetTime(text: string): TargetTime {
  const raw = text.trim();
  const m = TIME_RE.exec(raw);
  if (!m) {
    if (DATE_ONLY_RE.test(raw)) {
      throw new CairnError('USAGE', `target time ${quote(text)} has no time of day and no time zone`, {
        hint: `give both, e.g. "${raw} 00:00:00+00" or ${raw}T00:00:00Z: without a zone PostgreSQL would read it in the restored server's TimeZone`,
      });
    }
    const named = NAMED_ZONE_RE.exec(raw);
    if (named) {
      throw new CairnError('USAGE', `target time ${quote(text)} names the time zone ${quote(named[2]!)}; only a numeric offset, Z or UTC is accepted`, {
        hint: `write the offset in force at that time, e.g. "${named[1]}+01" (named zones and their daylight-saving rules differ between hosts)`,
      });
    }
    throw new CairnError('USAGE', `invalid target time ${quote(text)}`, { hint: TIME_HINT });
  }
  const [, y, mo, d, h, mi, s, frac, utc, sign, oh, om] = m;
  if (utc === undefined && sign === undefined) {
    throw new CairnError('USAGE', `target time ${quote(text)} has no time zone`, {
      hint: `add an offset or Z, e.g. "${raw}+00" or "${raw}Z": without one PostgreSQL reads the time in the restored server's TimeZone setting, which need not be the zone you mean`,
    });
  }
  const year = +y!, month = +mo!, day = +d!, hour = +h!, minute = +mi!, second = s === undefined ? 0 : +s;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(ms);
  if (
    month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 ||
    check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day
  ) {
    throw new CairnError('USAGE', `invalid target time ${quote(text)}: no such date or time`, { hint: TIME_HINT });
  }
  let offsetMinutes = 0;
  if (sign !== undefined) {
    const ohn = +oh!, omn = om === undefined ? 0 : +om;
    // PostgreSQL's own limit on a numeric zone offset.
    if (ohn > 15 || omn > 59) {
      throw new CairnError('USAGE', `invalid target time ${quote(text)}: time zone offset out of range`, { hint: 'offsets run from -15:59 to +15:59' });
    }
    offsetMinutes = (sign === '-' ? -1 : 1) * (ohn * 60 + omn);
  }
  const micros = BigInt(ms) * 1000n + fractionMicros(frac ?? '') - BigInt(offsetMinutes) * 60_000_000n;
  return { micros, text: formatTargetTime(micros) };
}

/** Fractional seconds to microseconds, rounded to the nearest as PostgreSQL does. */
function fractionMicros(digits: string): bigint {
  if (digits === '') return 0n;
  const six = BigInt(digits.slice(0, 6).padEnd(6, '0'));
  return digits.length > 6 && digits[6]! >= '5' ? six + 1n : six;
}

/** "YYYY-MM-DD HH:MM:SS.ffffff+00", the UTC form written for PostgreSQL and shown in messages. */
export function formatTargetTime(micros: bigint): string {
  let ms = micros / 1000n;
  let rest = micros % 1000n;
  if (rest < 0n) {
    rest += 1000n;
    ms -= 1n;
  }
  const iso = new Date(Number(ms)).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}${String(rest).padStart(3, '0')}+00`;
}

/** Accepts "X/Y"; USAGE otherwise. */
export function parseTargetLsn(text: string): bigint {
  try {
    return parseLsn(text.trim());
  } catch {
    throw new CairnError('USAGE', `invalid target LSN ${quote(text)}`, {
      hint: 'expected X/Y in hex, e.g. 0/5000028 (pg_current_wal_lsn() prints one)',
    });
  }
}

/**
 * A transaction id as recovery_target_xid takes it. PostgreSQL accepts a
 * 64-bit full id (pg_current_xact_id) and keeps its low 32 bits; ids below 3
 * are the bootstrap and frozen ids, which no transaction commits under.
 */
export function parseTargetXid(text: string): string {
  const t = text.trim();
  if (/^\d{1,20}$/.test(t)) {
    const n = BigInt(t);
    if (n >= 3n && n <= 0xFFFF_FFFF_FFFF_FFFFn) return n.toString();
  }
  throw new CairnError('USAGE', `invalid target transaction id ${quote(text)}`, {
    hint: 'give a transaction id in decimal, 3 or more, e.g. --target-xid 1234 (txid_current() or pg_current_xact_id() prints one)',
  });
}

/** A restore point name: what pg_create_restore_point accepts (1–63 bytes). */
export function parseTargetName(text: string): string {
  const bytes = Buffer.byteLength(text, 'utf8');
  // eslint-disable-next-line no-control-regex
  if (bytes === 0 || bytes > 63 || /[\u0000-\u001f\u007f]/.test(text)) {
    throw new CairnError('USAGE', `invalid restore point name ${quote(text)}`, {
      hint: 'restore point names are 1 to 63 bytes without control characters, as pg_create_restore_point() takes them',
    });
  }
  return text;
}

/** latest | current | a timeline number in decimal, normalised. */
export function parseTargetTimeline(text: string): string {
  const t = text.trim();
  if (t === 'latest' || t === 'current') return t;
  if (/^\d{1,10}$/.test(t)) {
    const n = Number(t);
    if (n >= 1 && n <= 0xFFFF_FFFF) return String(n);
  }
  throw new CairnError('USAGE', `invalid --target-timeline ${quote(text)}`, {
    hint: 'use latest, current or a timeline number in decimal (the file 0000000A.history is timeline 10)',
  });
}
