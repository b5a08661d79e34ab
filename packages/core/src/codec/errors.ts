// The errors of reading a stored object back, worded once: damaged compressed
// data (FORMAT_INVALID) and plaintext that is not what was recorded
// (CHECKSUM_MISMATCH). tools/verify classifies them by code, not by text.

import { CairnError } from '../cli/errors.js';

/**
 * `label` as messages show it: labels that already quote their names
 * (`"base/1/1259" ("main/backups/…")`, `WAL file "…" in repository "…"`)
 * stay as they are, a bare name gets quotes.
 */
export function named(label: string): string {
  return label.includes('"') ? label : `"${label}"`;
}

/** Damaged zstd or gzip data; `why` says what is wrong, lowercase. */
export function corruptData(alg: string, label: string, why: string, cause?: unknown): CairnError {
  return new CairnError('FORMAT_INVALID', `corrupt ${alg} data in ${named(label)}: ${why}`, {
    hint: 'the stored object is damaged, truncated or not what its name says; restore it from another repository',
    cause,
  });
}

/** corruptData for an error the zlib/zstd engine raised (its message, first letter lowered). */
export function corruptDataFrom(alg: string, label: string, err: unknown): CairnError {
  const m = err instanceof Error ? err.message : String(err);
  return corruptData(alg, label, m.charAt(0).toLowerCase() + m.slice(1), err);
}

/** What to do about an object that fails its checksum, by what it is. */
const CHECKSUM_HINTS = {
  backup: 'the stored object is damaged; run cairn-verify, and restore another backup or from another repository',
  wal: 'the stored object is damaged; run cairn-verify, and restore from another repository if you have one',
  dump: 'the stored object is damaged; restore another dump (cairn-info lists them) and run cairn-verify',
} as const;

/**
 * Plaintext whose SHA-256 or size is not what the manifest (or, for WAL, the
 * object's name) records. `subject` names the object, quotes included.
 */
export function checksumMismatch(
  kind: keyof typeof CHECKSUM_HINTS,
  subject: string,
  expected: { sha256: string; size?: number },
  got: { sha256: string; size: number },
): CairnError {
  const of = (size: number | undefined) => (size === undefined ? '' : ` of ${size} bytes`);
  return new CairnError(
    'CHECKSUM_MISMATCH',
    `${subject} fails its checksum: expected SHA-256 ${expected.sha256.slice(0, 12)}…${of(expected.size)}, got ${got.sha256.slice(0, 12)}…${of(got.size)}`,
    { hint: CHECKSUM_HINTS[kind] },
  );
}
