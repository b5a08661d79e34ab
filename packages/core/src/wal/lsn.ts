// Log sequence numbers: 64-bit WAL positions, written as two 32-bit hex halves
// "X/Y" by PostgreSQL (pg_lsn type, pg_walfile_name, backup_label).

import { CairnError } from '../cli/errors.js';
import { quote } from './quote.js';

/** The largest LSN (PostgreSQL's XLogRecPtr is a uint64). */
export const MAX_LSN = 0xFFFF_FFFF_FFFF_FFFFn;

// Same acceptance as PostgreSQL's pg_lsn_in_internal (utils/adt/pg_lsn.c):
// 1–8 hex digits, "/", 1–8 hex digits, either case, nothing before or after.
const LSN_RE = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses "16/B374D848" into a bigint. */
export function parseLsn(text: string): bigint {
  const m = typeof text === 'string' ? LSN_RE.exec(text) : null;
  if (!m) {
    throw new CairnError('USAGE', `invalid LSN ${quote(String(text))}`, {
      hint: 'expected X/Y in hex, e.g. 0/3000028',
    });
  }
  return (BigInt('0x' + m[1]!) << 32n) | BigInt('0x' + m[2]!);
}

/** Formats like PostgreSQL's LSN_FORMAT_ARGS with "%X/%X": uppercase, no padding. */
export function formatLsn(lsn: bigint): string {
  assertLsn(lsn);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xFFFF_FFFFn).toString(16).toUpperCase()}`;
}

export function isLsn(text: string): boolean {
  return typeof text === 'string' && LSN_RE.test(text);
}

/** Throws INTERNAL for a value that cannot be an LSN (a bug in the caller). */
export function assertLsn(lsn: bigint): void {
  if (typeof lsn !== 'bigint' || lsn < 0n || lsn > MAX_LSN) {
    throw new CairnError('INTERNAL', `LSN out of range: ${String(lsn)}`);
  }
}
