// Manifests are input, not trusted code (docs/design.md §4.12, issue 11): the rules a
// backup manifest must keep before cairn-restore writes anything from it, the
// modes a restore gives its files and directories, and the findings that
// cairn-verify reports. One function decides for both.

import { CairnError } from '../cli/errors.js';
import { assertValidKey } from '../storage/driver.js';
import { quote } from '../wal/quote.js';
import { BLCKSZ } from '../pg/page-checksum.js';
import { countBlocks, decodeBlocks } from './pages.js';
import { isBackupId, type BackupManifest, type ConfigFileSetting, type ManifestFile } from './manifest.js';
import { comparePaths } from './manifest-stream.js';

export interface ManifestFinding {
  /**
   * refuse: restoring this manifest could write outside its roots or read
   * another backup's objects; nothing is written. mode: a mode PostgreSQL
   * never creates with a bit that matters (setuid, setgid, sticky, write for
   * group or others); restored masked, reported by verify.
   */
  kind: 'refuse' | 'mode';
  /** One line: what is wrong, the entry quoted (control characters escaped). */
  message: string;
}

/** Modes PostgreSQL creates (file_perm.h): 0600/0700, or 0640/0750 with group access. */
export const PG_FILE_MODE = 0o600;
export const PG_DIR_MODE = 0o700;
const PG_FILE_MODE_GROUP = 0o640;
const PG_DIR_MODE_GROUP = 0o750;

/** Bits whose presence in a recorded mode is a finding, not a harmless variation (a 0644 config file). */
const SUSPECT_BITS = 0o7022;

/**
 * Whether the backed-up cluster had group access (initdb -g): PostgreSQL
 * decides that from the data directory's mode, 0750; `global` is created
 * with the same mode and is what the manifest records.
 */
export function backupGroupAccess(m: Pick<BackupManifest, 'dirs'>): boolean {
  const g = m.dirs.find((d) => d.path === 'global');
  return g !== undefined && (g.mode & 0o777) === PG_DIR_MODE_GROUP;
}

/** A file's mode as restored: 0600, or 0640 when the backup had group access and the file group read. */
export function restoredFileMode(mode: number, groupAccess: boolean): number {
  return groupAccess && (mode & 0o040) !== 0 ? PG_FILE_MODE_GROUP : PG_FILE_MODE;
}

/** A directory's mode as restored: 0700, or 0750 with group access and group read and search. */
export function restoredDirMode(mode: number, groupAccess: boolean): number {
  return groupAccess && (mode & 0o050) === 0o050 ? PG_DIR_MODE_GROUP : PG_DIR_MODE;
}

/** Why `p` is not a normalised relative path, or undefined. */
function pathProblem(p: unknown): string | undefined {
  if (typeof p !== 'string') return 'is not a string';
  if (p === '') return 'is empty';
  if (p.includes('\0')) return 'holds a NUL byte';
  if (p.startsWith('/')) return 'is absolute';
  const segs = p.split('/');
  if (segs.includes('..')) return 'leaves its root ("..")';
  if (segs.some((s) => s === '' || s === '.')) return 'is not normalised (empty or "." segment)';
  return undefined;
}

/** A tablespace location: absolute, normalised, not the root, one line. */
function locationProblem(loc: unknown): string | undefined {
  if (typeof loc !== 'string' || !loc.startsWith('/')) return 'is not an absolute path';
  if (loc === '/') return 'is the root directory';
  // Control characters would forge lines of the tablespace_map restore writes.
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(loc)) return 'holds a control character';
  const inner = pathProblem(loc.slice(1));
  return inner === undefined ? undefined : inner.replace('its root', 'the file system root');
}

const TABLESPACE_LINK_RE = /^pg_tblspc\/([^/]+)$/;
const TABLESPACE_ENTRY_RE = /^pg_tblspc\/([^/]+)\/(.+)$/;
/** What a tablespace location holds: one directory per server version (TABLESPACE_VERSION_DIRECTORY). */
const TABLESPACE_VERSION_DIR_RE = /^PG_\d+_\d+(\/|$)/;

/** The backups whose objects `m` may read: itself and the references it names. */
export function backupChainIds(m: Pick<BackupManifest, 'id' | 'references'>): Set<string> {
  return new Set([m.id, ...m.references.filter((r) => typeof r === 'string' && isBackupId(r))]);
}

/**
 * Whether a file entry names an object under the data/ prefix of the backup
 * it says holds it (`ref`), that backup being in `chain` (backupChainIds).
 */
export function namesChainObject(f: Pick<ManifestFile, 'key' | 'ref' | 'bundle'>, cluster: string, chain: ReadonlySet<string>): boolean {
  if (typeof f.ref !== 'string' || !chain.has(f.ref) || !isKeyBelow(f.key, `${cluster}/backups/${f.ref}/data/`)) return false;
  // A bundled file's bytes are in a bundle of the same backup.
  return f.bundle === undefined || isKeyBelow(f.bundle.key, `${cluster}/backups/${f.ref}/bundles/`);
}

/**
 * Why the page layers of a page-level entry (backup/pages.ts) cannot be laid
 * down safely: objects outside the chain, sizes that are not whole pages,
 * block lists that are not ascending or do not match their object's size.
 */
export function pageChainProblem(f: ManifestFile, cluster: string, chain: ReadonlySet<string>): string | undefined {
  const pc = f.pages!;
  const isSize = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  const pieces = [pc.base, ...pc.layers];
  for (const p of pieces) {
    if (typeof p !== 'object' || p === null || typeof p.sha256 !== 'string' || !isSize(p.size) || !isSize(p.storedSize)) return 'a page layer is malformed';
    if (!namesChainObject(p, cluster, chain)) return `a page layer names object ${quote(String(p.bundle?.key ?? p.key))}, outside its chain`;
  }
  if (pc.base.size % BLCKSZ !== 0) return 'the base of its page layers is not whole pages';
  for (const l of pc.layers) {
    if (!isSize(l.fileSize) || l.fileSize % BLCKSZ !== 0 || typeof l.fileSha256 !== 'string' || typeof l.blocks !== 'string') return 'a page layer is malformed';
    let ranges: [number, number][];
    try {
      ranges = decodeBlocks(l.blocks, 'page layer');
    } catch (err) {
      return (err as Error).message;
    }
    if (countBlocks(ranges) * BLCKSZ !== l.size) return `a page layer's block list does not match its size (${l.size} bytes)`;
    if (ranges.length > 0 && ranges[ranges.length - 1]![1] * BLCKSZ >= l.fileSize) return 'a page layer writes past the size it records';
  }
  const last = pc.layers[pc.layers.length - 1]!;
  if (last.fileSize !== f.size || last.fileSha256 !== f.sha256 || last.key !== f.key || last.ref !== f.ref) return 'its newest page layer is not the file it describes';
  return undefined;
}

/** A valid object key below `prefix` (not the prefix itself). */
function isKeyBelow(key: unknown, prefix: string): boolean {
  if (typeof key !== 'string' || !key.startsWith(prefix) || key.length === prefix.length) return false;
  try {
    assertValidKey(key);
    return true;
  } catch {
    return false;
  }
}

/** Whether a configuration entry names an object under this backup's own config/ prefix (never another backup's). */
export function namesConfigObject(c: Pick<ManifestFile, 'key' | 'ref'>, cluster: string, id: string): boolean {
  return c?.ref === id && isKeyBelow(c.key, `${cluster}/backups/${id}/config/`);
}

const CONFIG_SETTINGS: readonly unknown[] = ['config_file', 'hba_file', 'ident_file', 'include'] satisfies ConfigFileSetting[];

function isMode(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0o7777;
}

function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

/** A manifest's rules checked one file record at a time (a streamed manifest, issue 19). */
export interface ManifestChecker {
  /** Every finding so far: those of the head at once, each record's as it is checked. */
  readonly findings: ManifestFinding[];
  /**
   * Checks the next file record; records come in comparePaths order
   * (backup/manifest-stream.ts), so a repeated path or one below a file is
   * found with one path of state. True when the record names objects of its
   * chain only (verify and restore may read them).
   */
  file(f: ManifestFile): boolean;
}

/**
 * The rules of a manifest whose head is `m`, read from cluster `cluster`,
 * for its file records one by one: bounded state (the head's directories
 * and tablespaces, the last path), whatever the number of files. No finding
 * at the end of the records: restore writes only inside the data directory
 * and the tablespace locations the backup describes, reads only objects of
 * its own chain, and gives each file and directory the mode PostgreSQL would.
 */
export function createManifestChecker(m: Omit<BackupManifest, 'files'>, cluster: string): ManifestChecker {
  const out: ManifestFinding[] = [];
  const refuse = (message: string) => out.push({ kind: 'refuse', message });

  // Tablespaces: numeric OIDs, each once, at a location the restore can name.
  const tablespaces = new Set<string>();
  if (!Array.isArray(m.tablespaces)) refuse('the tablespace list is not a list');
  for (const ts of Array.isArray(m.tablespaces) ? m.tablespaces : []) {
    const oid = String(ts?.oid);
    if (!/^[1-9]\d{0,9}$/.test(oid)) refuse(`tablespace OID ${quote(oid)} is not a number`);
    else if (tablespaces.has(oid)) refuse(`tablespace ${quote(oid)} is listed twice`);
    tablespaces.add(oid);
    const why = locationProblem(ts?.location);
    if (why !== undefined) refuse(`the location ${quote(String(ts?.location))} of tablespace ${quote(oid)} ${why}`);
  }

  // Backups whose objects this one may read: itself and the chain it names.
  for (const r of m.references) {
    if (typeof r !== 'string' || !isBackupId(r)) refuse(`referenced backup ${quote(String(r))} is not a backup id`);
  }
  const chain = backupChainIds(m);

  const groupAccess = backupGroupAccess(m);
  const dirs = new Set<string>();
  const checkEntry = (what: 'file' | 'directory', p: unknown, mode: unknown, twice: (path: string) => boolean): boolean => {
    const why = pathProblem(p);
    if (why !== undefined) {
      refuse(`${what} entry ${quote(String(p))} ${why}`);
      return false;
    }
    const path = p as string;
    if (twice(path)) refuse(`${what} entry ${quote(path)} is listed twice`);
    const link = TABLESPACE_LINK_RE.exec(path);
    const inTs = TABLESPACE_ENTRY_RE.exec(path);
    if (link && tablespaces.has(link[1]!) && what === 'file') refuse(`file entry ${quote(path)} is where tablespace ${quote(link[1]!)} is linked`);
    // A described tablespace's files go to its location: only under its version directory.
    if (inTs && tablespaces.has(inTs[1]!) && !TABLESPACE_VERSION_DIR_RE.test(inTs[2]!)) {
      refuse(`${what} entry ${quote(path)} is outside the PG_<version> directory of tablespace ${quote(inTs[1]!)}`);
    }
    if (!isMode(mode)) {
      refuse(`${what} entry ${quote(path)} has an invalid mode ${quote(String(mode))}`);
      return true;
    }
    if ((mode & SUSPECT_BITS) !== 0) {
      const to = what === 'file' ? restoredFileMode(mode, groupAccess) : restoredDirMode(mode, groupAccess);
      out.push({ kind: 'mode', message: `${what} entry ${quote(path)} has mode ${octal(mode)}, which PostgreSQL never creates (restored as ${octal(to)})` });
    }
    return true;
  };

  for (const d of m.dirs) {
    if (checkEntry('directory', d?.path, d?.mode, (p) => dirs.has(p))) dirs.add(d.path);
  }
  /** Every proper ancestor of a directory entry: a file there would have a directory below it. */
  const dirAncestors = new Set<string>();
  for (const d of dirs) for (let i = d.indexOf('/'); i > 0; i = d.indexOf('/', i + 1)) dirAncestors.add(d.slice(0, i));

  // Configuration files: written below --config-dir only, from this backup's config/ objects.
  if (m.config !== undefined) {
    if (!Array.isArray(m.config)) refuse('the configuration file list is not a list');
    const configPaths = new Set<string>();
    const configPrefix = `${cluster}/backups/${m.id}/config/`;
    for (const c of Array.isArray(m.config) ? m.config : []) {
      const why = pathProblem(c?.path);
      if (why !== undefined) {
        refuse(`configuration file entry ${quote(String(c?.path))} ${why}`);
        continue;
      }
      if (configPaths.has(c.path)) refuse(`configuration file entry ${quote(c.path)} is listed twice`);
      configPaths.add(c.path);
      if (!CONFIG_SETTINGS.includes(c.setting)) refuse(`configuration file entry ${quote(c.path)} names setting ${quote(String(c.setting))}`);
      if (typeof c.source !== 'string' || !c.source.startsWith('/')) refuse(`configuration file entry ${quote(c.path)} has no absolute source path`);
      if (!isMode(c.mode)) refuse(`configuration file entry ${quote(c.path)} has an invalid mode ${quote(String(c.mode))}`);
      if (!namesConfigObject(c, cluster, m.id)) refuse(`configuration file entry ${quote(c.path)} names object ${quote(String(c.key))}, outside ${quote(configPrefix)}`);
    }
    for (const p of configPaths) {
      for (let i = p.indexOf('/'); i > 0; i = p.indexOf('/', i + 1)) {
        if (configPaths.has(p.slice(0, i))) refuse(`configuration file entry ${quote(p)} lies below configuration file entry ${quote(p.slice(0, i))}`);
      }
    }
  }

  let last: string | undefined;
  // The file the next paths may lie below: in path order, every path below
  // a file follows it at once, so the last file nothing was found below.
  let anchor: string | undefined;
  return {
    findings: out,
    file(f: ManifestFile): boolean {
      if (!checkEntry('file', f?.path, f?.mode, (p) => p === last || dirs.has(p))) return false;
      last = f.path;
      // Nothing may live below a file: its parent would have to be a directory.
      if (anchor !== undefined && f.path.startsWith(`${anchor}/`)) refuse(`entry ${quote(f.path)} lies below file entry ${quote(anchor)}`);
      else anchor = f.path;
      if (dirAncestors.has(f.path)) {
        const below = [...dirs].find((d) => d.startsWith(`${f.path}/`))!;
        refuse(`entry ${quote(below)} lies below file entry ${quote(f.path)}`);
      }
      const ref = String(f.ref);
      let readable = true;
      if (!namesChainObject(f, cluster, chain)) {
        refuse(`file entry ${quote(f.path)} names object ${quote(String(f.bundle?.key ?? f.key))}, outside the prefix of backup ${quote(ref)}${chain.has(ref) ? '' : ', which is not in its chain'}`);
        readable = false;
      }
      if (f.pages !== undefined) {
        const why = pageChainProblem(f, cluster, chain);
        if (why !== undefined) {
          refuse(`file entry ${quote(f.path)}: ${why}`);
          readable = false;
        }
      }
      return readable;
    },
  };
}

/**
 * Every finding in `m` (held whole), read from cluster `cluster`: the
 * records checked in path order (an older manifest's list sorted first).
 */
export function checkManifestRules(m: BackupManifest, cluster: string): ManifestFinding[] {
  const check = createManifestChecker(m, cluster);
  const files = [...m.files].sort((a, b) => comparePaths(String(a?.path), String(b?.path)));
  for (const f of files) check.file(f);
  return check.findings;
}

/**
 * Throws FORMAT_INVALID (exit 4) naming the first rule `m` breaks that makes
 * it unsafe to restore; returns the mode findings (restored masked).
 */
export function assertManifestRestorable(m: BackupManifest, cluster: string, where: string): ManifestFinding[] {
  return refuseUnsafe(checkManifestRules(m, cluster), where);
}

/**
 * Throws FORMAT_INVALID (exit 4) naming the first of `findings` that makes
 * the manifest at `where` unsafe to restore; returns the mode findings.
 */
export function refuseUnsafe(findings: ManifestFinding[], where: string): ManifestFinding[] {
  const refused = findings.filter((f) => f.kind === 'refuse');
  if (refused.length > 0) {
    const more = refused.length > 1 ? ` (and ${refused.length - 1} more)` : '';
    throw new CairnError('FORMAT_INVALID', `backup manifest ${where} is unsafe to restore: ${refused[0]!.message}${more}`, {
      hint: 'the manifest was altered or damaged; nothing was written: restore another backup (cairn-info lists them) and run cairn-verify',
    });
  }
  return findings;
}
