// The repository's key layout (docs/design.md §3), in one place. Every key a tool
// reads or writes is built here.
//
// WAL objects carry the SHA-256 of their plaintext in the key, as pgBackRest's
// archive does (<segment>-<sha1>.gz): deciding "already archived with the same
// content" is then a listing, not a download, for every codec and driver, and
// a reader knows the checksum to verify before it reads a byte.

import { CairnError } from '../cli/errors.js';

const CLUSTER_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function assertClusterName(cluster: string): void {
  if (!CLUSTER_RE.test(cluster)) {
    throw new CairnError('CONFIG_INVALID', `invalid cluster name "${cluster}"`, {
      hint: 'use letters, digits, "_", "-" and "." (up to 63 characters), e.g. --cluster main',
    });
  }
}

export function repoConfigKey(cluster: string): string {
  return `${cluster}/repo.json`;
}

/** The wrapped data keys (repo/data-key.ts): one object per version, never rewritten. */
export function dataKeysPrefix(cluster: string): string {
  return `${cluster}/keys/`;
}

export function dataKeyKey(cluster: string, version: number): string {
  return `${cluster}/keys/datakey-${String(version).padStart(6, '0')}.json`;
}

/** The version in a data key object's name, or undefined for another object. */
export function parseDataKeyKey(cluster: string, key: string): number | undefined {
  const m = /^datakey-(\d{6,})\.json$/.exec(key.slice(dataKeysPrefix(cluster).length));
  return key.startsWith(dataKeysPrefix(cluster)) && m ? Number(m[1]) : undefined;
}

export function systemsPrefix(cluster: string): string {
  return `${cluster}/systems/`;
}

export function systemKey(cluster: string, systemId: string): string {
  return `${cluster}/systems/${systemId}.json`;
}

export function walSystemPrefix(cluster: string, systemId: string): string {
  return `${cluster}/wal/${systemId}/`;
}

/**
 * The prefix all stored copies of one WAL file share. Segments, partials and
 * .backup files live in a directory per TLI+LOG (first 16 hex digits), like
 * pgBackRest, so no directory grows past 256 entries per segment type with
 * 16 MiB segments; history files sit at the system level.
 */
export function walFilePrefix(cluster: string, systemId: string, walName: string): string {
  const dir = walName.endsWith('.history') ? '' : walName.slice(0, 16) + '/';
  return `${walSystemPrefix(cluster, systemId)}${dir}${walName}-`;
}

export function walObjectKey(cluster: string, systemId: string, walName: string, sha256: string, ext: string): string {
  return `${walFilePrefix(cluster, systemId, walName)}${sha256}${ext}`;
}

export interface WalObjectName {
  walName: string;
  sha256: string;
  /** '', '.zst', '.gz', '.enc', '.zst.enc', … */
  ext: string;
}

const WAL_OBJECT_RE = /^([0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)-([0-9a-f]{64})((?:\.[a-z0-9]+)*)$/;

/** Parses the last path segment of a WAL object key; undefined if it is not one. */
export function parseWalObjectName(key: string): WalObjectName | undefined {
  const base = key.slice(key.lastIndexOf('/') + 1);
  const m = WAL_OBJECT_RE.exec(base);
  if (!m) return undefined;
  return { walName: m[1]!, sha256: m[2]!, ext: m[3]! };
}

/**
 * Where pushes of one WAL file announce themselves while they decide who
 * stores it (wal-archive.ts, docs/storage-consistency.md): outside wal/, so
 * readers of the archive never meet them.
 */
export function walIntentPrefix(cluster: string, systemId: string, walName: string): string {
  return `${walIntentsRoot(cluster)}${systemId}/${walName}.`;
}

export function walIntentKey(cluster: string, systemId: string, walName: string, nonce: string, sha256: string): string {
  return `${walIntentPrefix(cluster, systemId, walName)}${nonce}.${sha256}`;
}

const WAL_INTENT_RE = /\.([0-9a-f]{16})\.([0-9a-f]{64})$/;

/** The nonce and checksum of an intent key; undefined for anything else. */
export function parseWalIntentKey(key: string): { nonce: string; sha256: string } | undefined {
  const m = WAL_INTENT_RE.exec(key);
  return m ? { nonce: m[1]!, sha256: m[2]! } : undefined;
}

/** Where every intent of a cluster lives (for expire and verify, which judge them by age). */
export function walIntentsRoot(cluster: string): string {
  return `${cluster}/locks/wal/`;
}

/** Whether `key` is an intent object: `<cluster>/locks/wal/<system>/<name>.<nonce>.<sha256>`. */
export function isWalIntentKey(cluster: string, key: string): boolean {
  const root = walIntentsRoot(cluster);
  if (!key.startsWith(root)) return false;
  const rest = key.slice(root.length);
  const slash = rest.indexOf('/');
  return slash > 0 && rest.indexOf('/', slash + 1) === -1 && parseWalIntentKey(rest.slice(slash + 1)) !== undefined && rest.length - slash - 1 > 81;
}

/**
 * cairn-check's probe objects: under locks/, which a cluster without
 * repo.json may hold (repo-config.ts), so a probe a killed check left never
 * makes the repository look orphaned; the next check removes it.
 */
export function probesPrefix(cluster: string): string {
  return `${cluster}/locks/check/`;
}

export function probeKey(cluster: string, id: string): string {
  return `${probesPrefix(cluster)}${id}.json`;
}
