// Physical backups in the repository (docs/design.md §3): ids, object keys, and the
// manifest that is written last and makes a backup exist. The manifest holds
// everything restore and verify need without PostgreSQL running.
//
// Layout:
//   <cluster>/backups/<id>/data/<pgdata-relative path><ext>   one object per file
//   <cluster>/backups/<id>/manifest.json                      written last
// A file unchanged since the parent backup is not stored again: its entry
// names the backup whose object holds it (`ref`) and that object's key.

import type { BundleRef } from './bundle.js';
import type { PageChain } from './pages.js';
import { CairnError } from '../cli/errors.js';
import type { StorageDriver } from '../storage/driver.js';
import { readWholeManifest } from './manifest-stream.js';
import { utcStamp } from '../util/time-id.js';
import { quote } from '../wal/quote.js';

export const MANIFEST_FORMAT = 'cairn.backup/1';
/**
 * A manifest with page-level entries (ManifestFile.pages): a cairn that
 * predates them must refuse it (exit 4, "written by a newer cairn") rather
 * than restore a layer as if it were the whole file.
 */
export const MANIFEST_FORMAT_PAGES = 'cairn.backup/2';
/**
 * A streamed manifest (backup/manifest-stream.ts, issue 19): a header line,
 * one line per file, an end line; page-level entries allowed. Older cairns
 * cannot read it (they read the object as one JSON document and fail).
 */
export const MANIFEST_FORMAT_STREAM = 'cairn.backup/3';
const FORMATS: readonly string[] = [MANIFEST_FORMAT, MANIFEST_FORMAT_PAGES, MANIFEST_FORMAT_STREAM];

export type BackupType = 'full' | 'diff' | 'incr';

const TYPE_LETTER: Record<BackupType, string> = { full: 'F', diff: 'D', incr: 'I' };
const LETTER_TYPE: Record<string, BackupType> = { F: 'full', D: 'diff', I: 'incr' };

/** `20261121-020000F`: UTC start time to the second, then the type letter. Sorts by time. */
const BACKUP_ID_RE = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})([FDI])$/;

export function backupId(start: Date, type: BackupType): string {
  return `${utcStamp(start)}${TYPE_LETTER[type]}`;
}

export function isBackupId(id: string): boolean {
  return BACKUP_ID_RE.test(id);
}

export function parseBackupId(id: string): { time: Date; type: BackupType } {
  const m = BACKUP_ID_RE.exec(id);
  if (!m) {
    throw new CairnError('USAGE', `invalid backup id ${quote(id)}`, {
      hint: 'backup ids look like 20261121-020000F (F full, D differential, I incremental); cairn-info lists them',
    });
  }
  const [, y, mo, d, h, mi, s, t] = m;
  return { time: new Date(Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!)), type: LETTER_TYPE[t!]! };
}

export function backupsPrefix(cluster: string): string {
  return `${cluster}/backups/`;
}

export function backupPrefix(cluster: string, id: string): string {
  return `${cluster}/backups/${id}/`;
}

export function manifestKey(cluster: string, id: string): string {
  return `${backupPrefix(cluster, id)}manifest.json`;
}

/** Key of the object holding a file of backup `id` (path relative to PGDATA, '/'-separated). */
export function backupFileKey(cluster: string, id: string, path: string, ext: string): string {
  return `${backupPrefix(cluster, id)}data/${path}${ext}`;
}

export interface ManifestFile {
  /** Relative to PGDATA, '/'-separated; tablespace files as pg_tblspc/<oid>/<PG_…>/… */
  path: string;
  /** Plaintext size in bytes. */
  size: number;
  /** Permission bits (e.g. 0o600). */
  mode: number;
  /** Modification time, seconds since the epoch (fractional where the source has it). */
  mtime: number;
  /** SHA-256 of the plaintext, hex. */
  sha256: string;
  /** The backup whose object holds the bytes: this backup's id, or an ancestor's. */
  ref: string;
  /** The object's key, relative to the repository root. */
  key: string;
  /** Bytes the object takes in the repository. */
  storedSize: number;
  /**
   * Set when the stored bytes are a member of a bundle (backup/bundle.ts):
   * storedSize bytes from `offset` of object `key`, which lies below the
   * bundles/ prefix of backup `ref`. `key` above is then the key the file
   * would have had alone (the member's name); no object has it.
   */
  bundle?: BundleRef;
  /** Block numbers whose page checksum failed (absent when none or not checked). */
  badPages?: number[];
  /** Inode number on the backed-up server (local backups): a different one means another file under the same name. */
  ino?: number;
  /**
   * Page-level (backup/pages.ts): the file is `pages.base` with each layer's
   * pages laid over it, oldest first, cut to `size`. ref, key, storedSize and
   * bundle above are then those of the newest layer; sha256 and size are the
   * whole file's.
   */
  pages?: PageChain;
}

/**
 * A configuration file the server read from outside its data directory
 * (Debian's /etc/postgresql/<v>/<name>/, NixOS's -c config_file=): stored in
 * the backup like a data file, under backups/<id>/config/, never referenced
 * from a parent (they are small). `path` is where a restore writes it below
 * --config-dir: relative to the directory of config_file when it lies there,
 * else the file's name.
 */
export interface ManifestConfigFile extends ManifestFile {
  /** Which setting named it: config_file, hba_file, ident_file, or include (a file pg_file_settings read). */
  setting: ConfigFileSetting;
  /** Where the server read it, absolute. */
  source: string;
}

export type ConfigFileSetting = 'config_file' | 'hba_file' | 'ident_file' | 'include';

/** The object key of a stored configuration file. */
export function backupConfigKey(cluster: string, id: string, path: string, ext: string): string {
  return `${backupPrefix(cluster, id)}config/${path}${ext}`;
}

export interface ManifestDir {
  path: string;
  mode: number;
}

export interface ManifestTablespace {
  /** The OID, i.e. the name of the link in pg_tblspc/. */
  oid: string;
  /** Where the link pointed on the backed-up server. */
  location: string;
}

export interface WalPosition {
  /** ISO 8601, UTC. */
  time: string;
  /** X/Y */
  lsn: string;
  /** The WAL segment holding `lsn` on `timeline`. */
  wal: string;
}

export interface BackupManifest {
  format: typeof MANIFEST_FORMAT | typeof MANIFEST_FORMAT_PAGES | typeof MANIFEST_FORMAT_STREAM;
  tool: { name: string; version: string };
  id: string;
  type: BackupType;
  /** The backup this one is relative to (null for full). */
  parent: string | null;
  /** Every backup whose objects this one references, oldest first (its chain without itself). */
  references: string[];
  /** local: read PGDATA with pg_backup_start/stop; stream: split a pg_basebackup tar. */
  source: 'local' | 'stream';
  cluster: string;
  systemId: string;
  /** server_version_num, e.g. 150004. */
  pgVersionNum: number;
  /** PG_VERSION, e.g. "15". */
  pgMajor: string;
  /**
   * The bootstrap superuser (the role with oid 10) as the server names it:
   * the role a drill connects as when neither --db-user nor PGUSER says one.
   * Absent in stream backups (cairn never connects) and older manifests.
   */
  superuser?: string;
  walSegmentSize: number;
  timeline: number;
  start: WalPosition;
  stop: WalPosition;
  /** The checkpoint redo starts from (backup_label's CHECKPOINT LOCATION). */
  checkpointLsn: string;
  /** zstd:3, gzip:6, none: how the objects this backup stored were encoded. */
  compress: string;
  encrypted: boolean;
  dataChecksums: boolean;
  /** The server's backup_label, byte for byte. */
  backupLabel: string;
  /** The server's tablespace_map; null when the cluster has no tablespaces. */
  tablespaceMap: string | null;
  tablespaces: ManifestTablespace[];
  dirs: ManifestDir[];
  files: ManifestFile[];
  /** Configuration files read from outside PGDATA (local backups; absent when none or not readable). */
  config?: ManifestConfigFile[];
  totals: {
    /** Sum of file sizes (the restored size). */
    size: number;
    /** Bytes stored by this backup (not counting references). */
    storedSize: number;
    filesStored: number;
    filesReferenced: number;
    /** Pages whose checksum failed. */
    badPages: number;
  };
  /** Wall time of the whole backup, seconds. */
  durationSeconds: number;
}

/** A manifest's summary for catalogs and plans (no file list). */
export type BackupSummary = Omit<BackupManifest, 'files' | 'dirs' | 'backupLabel' | 'tablespaceMap' | 'config'>;

export function summarize(m: Omit<BackupManifest, 'files'>): BackupSummary {
  // A whole manifest has its files too: left out with the rest.
  const { files: _f, dirs: _d, backupLabel: _b, tablespaceMap: _t, config: _c, ...rest } = m as BackupManifest;
  return rest;
}

export function manifestInvalid(what: string, where: string): CairnError {
  return new CairnError('FORMAT_INVALID', `backup manifest ${where} is invalid: ${what}`, {
    hint: 'the repository is damaged or written by a newer cairn; run cairn-verify and use another backup',
  });
}

/** Checks everything but the file records (a streamed manifest's header); throws FORMAT_INVALID naming the problem. */
export function checkManifestHead(m: unknown, where: string): Omit<BackupManifest, 'files'> {
  if (typeof m !== 'object' || m === null) throw manifestInvalid('not an object', where);
  const o = m as Partial<BackupManifest>;
  if (!FORMATS.includes(o.format as string)) throw manifestInvalid(`format ${quote(String(o.format))}, expected ${FORMATS.join(', ')}`, where);
  if (typeof o.id !== 'string' || !isBackupId(o.id)) throw manifestInvalid('bad id', where);
  if (o.type !== 'full' && o.type !== 'diff' && o.type !== 'incr') throw manifestInvalid('bad type', where);
  if (o.type !== 'full' && (typeof o.parent !== 'string' || !isBackupId(o.parent))) throw manifestInvalid('a diff/incr backup without parent', where);
  if (!Array.isArray(o.dirs) || !Array.isArray(o.references)) throw manifestInvalid('missing file list', where);
  if (typeof o.systemId !== 'string' || typeof o.timeline !== 'number' || !o.start || !o.stop) throw manifestInvalid('missing WAL positions', where);
  return o as Omit<BackupManifest, 'files'>;
}

/** Checks one file record of a manifest of format `format`; throws FORMAT_INVALID naming it. */
export function checkFileEntry(f: ManifestFile, format: BackupManifest['format'], where: string): void {
  if (typeof f !== 'object' || f === null || typeof f.path !== 'string' || typeof f.key !== 'string' || typeof f.sha256 !== 'string' || typeof f.size !== 'number') {
    throw manifestInvalid(`bad file entry ${quote(String(f?.path))}`, where);
  }
  if (f.bundle !== undefined && (typeof f.bundle !== 'object' || f.bundle === null || typeof f.bundle.key !== 'string' || !Number.isSafeInteger(f.bundle.offset) || f.bundle.offset < 0 || !Number.isSafeInteger(f.storedSize) || f.storedSize < 0)) {
    throw manifestInvalid(`bad bundle of file entry ${quote(f.path)}`, where);
  }
  if (f.pages !== undefined && format === MANIFEST_FORMAT) throw manifestInvalid(`file entry ${quote(f.path)} has page layers, which ${MANIFEST_FORMAT} does not have`, where);
  if (f.pages !== undefined && (typeof f.pages !== 'object' || f.pages === null || typeof f.pages.base !== 'object' || f.pages.base === null || !Array.isArray(f.pages.layers) || f.pages.layers.length === 0)) {
    throw manifestInvalid(`bad page layers of file entry ${quote(f.path)}`, where);
  }
}

/** Checks the shape that restore relies on (a manifest read whole); throws FORMAT_INVALID naming the problem. */
export function checkManifest(m: unknown, where: string): BackupManifest {
  const o = checkManifestHead(m, where) as Partial<BackupManifest>;
  if (!Array.isArray(o.files)) throw manifestInvalid('missing file list', where);
  for (const f of o.files) checkFileEntry(f, o.format!, where);
  return o as BackupManifest;
}

/**
 * Backup `id`'s manifest with every file record in memory (any format):
 * for callers that need it whole. Walking a backup's files reads them as a
 * stream instead (openManifest in backup/manifest-stream.ts).
 */
export async function readManifest(driver: StorageDriver, cluster: string, id: string, signal?: AbortSignal): Promise<BackupManifest | undefined> {
  return readWholeManifest(driver, cluster, id, signal);
}

/**
 * The ids of every backup that exists (has a manifest), oldest first. Objects
 * of a backup without a manifest are debris of an interrupted run.
 */
export async function listBackupIds(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<string[]> {
  const prefix = backupsPrefix(cluster);
  const ids: string[] = [];
  for await (const obj of driver.list(prefix, signal)) {
    const rest = obj.key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash < 0) continue;
    const id = rest.slice(0, slash);
    if (rest.slice(slash + 1) === 'manifest.json' && isBackupId(id)) ids.push(id);
  }
  return ids.sort();
}
