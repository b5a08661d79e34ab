// The one table of error codes, their exit statuses (DESIGN §4.7) and the
// error class every layer throws. Messages: lowercase, name the object in
// quotes, no trailing period; the hint says what to do.

import { pathErrorToCairn } from './fs-error.js';

export const EXIT = {
  OK: 0,
  NOT_FOUND: 1,
  CHECK_FAILED: 1,
  USAGE: 2,
  CONFIG: 3,
  DATA: 4,
  LOCK: 5,
  INTERNAL: 70,
  WAL_GET_PERSISTENT: 126,
} as const;

export const ERROR_CODES = {
  USAGE: EXIT.USAGE,
  CONFIG_INVALID: EXIT.CONFIG,
  KEY_INVALID: EXIT.CONFIG,
  KEY_MISMATCH: EXIT.CONFIG,
  PG_CONNECT: EXIT.CONFIG,
  STORAGE_UNAVAILABLE: EXIT.CONFIG,
  STORAGE_DENIED: EXIT.CONFIG,
  FILE_UNREADABLE: EXIT.CONFIG,
  NOT_FOUND: EXIT.NOT_FOUND,
  CHECKSUM_MISMATCH: EXIT.DATA,
  FORMAT_INVALID: EXIT.DATA,
  WAL_DUPLICATE: EXIT.DATA,
  SYSTEM_MISMATCH: EXIT.DATA,
  DECRYPT_FAILED: EXIT.DATA,
  LOCK_HELD: EXIT.LOCK,
  INTERNAL: EXIT.INTERNAL,
  WAL_MISMATCH: EXIT.DATA,
  FILE_UNWRITABLE: EXIT.CONFIG,
  /** A stored object something names is gone (the repository is damaged). */
  OBJECT_MISSING: EXIT.DATA,
  /** Create-if-absent found an object already there. */
  WRITE_CONFLICT: EXIT.DATA,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface CairnErrorOptions {
  hint?: string;
  /** A retry may succeed (network blip, 5xx, throttling). */
  transient?: boolean;
  cause?: unknown;
}

export class CairnError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly transient: boolean;

  constructor(code: ErrorCode, message: string, opts: CairnErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CairnError';
    this.code = code;
    this.hint = opts.hint;
    this.transient = opts.transient ?? false;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code];
  }
}

export function isCairnError(err: unknown, code?: ErrorCode): err is CairnError {
  return err instanceof CairnError && (code === undefined || err.code === code);
}

/** Turns anything thrown into a CairnError; unknown errors are internal bugs. */
export function toCairnError(err: unknown): CairnError {
  if (err instanceof CairnError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && typeof e === 'object' && (e.name === 'AbortError' || e.code === 'ABORT_ERR')) {
    return new CairnError('INTERNAL', 'interrupted', { cause: err });
  }
  const pathError = pathErrorToCairn(err);
  if (pathError !== undefined) return pathError;
  const msg = e instanceof Error ? e.message : String(err);
  return new CairnError('INTERNAL', `internal error: ${msg}`, {
    hint: 'this is a bug in cairn; please report it with the command line and --log-level debug output',
    cause: err,
  });
}
