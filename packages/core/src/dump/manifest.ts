// Logical dumps in the repository (docs/design.md §3): ids, object keys, and the
// manifest that is written last and makes a dump exist.
//
// Layout:
//   <cluster>/dumps/<database dir>/<id>/dump.pgdump<ext>        custom format (one object)
//   <cluster>/dumps/<database dir>/<id>/data/<file><ext>       directory format (--jobs): one object per file
//   <cluster>/dumps/<database dir>/<id>/manifest.json           written last
// The globals of `cairn-dump --all` (pg_dumpall --globals-only, SQL text) are
// a dump of their own under the database dir "@globals", with the same id as
// the databases dumped in that run. Database names may hold any character
// but NUL, so the directory is the name with every byte outside
// [A-Za-z0-9_.-] written %XX (and a leading '.' too): '@' never appears
// unescaped in a real database's directory.

import { CairnError } from '../cli/errors.js';
import { assertValidKey, type StorageDriver } from '../storage/driver.js';
import { readJsonObject } from '../repo/json-object.js';
import { utcStamp } from '../util/time-id.js';
import { quote } from '../wal/quote.js';

export const DUMP_MANIFEST_FORMAT = 'cairn.dump/1';

/** The database dir of the globals dump. */
export const GLOBALS_DIR = '@globals';

/** custom: pg_dump -Fc (one object); directory: pg_dump -Fd (--jobs); globals: pg_dumpall --globals-only SQL. */
export type DumpFormat = 'custom' | 'directory' | 'globals';

/** `20261121-020000L`: UTC start time to the second, then L (logical). Sorts by time. */
const DUMP_ID_RE = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})L$/;

export function dumpId(start: Date): string {
  return `${utcStamp(start)}L`;
}

export function isDumpId(id: string): boolean {
  return DUMP_ID_RE.test(id);
}

export function parseDumpId(id: string): Date {
  const m = DUMP_ID_RE.exec(id);
  if (!m) {
    throw new CairnError('USAGE', `invalid dump id ${quote(id)}`, {
      hint: 'dump ids look like 20261121-020000L, or DATABASE/20261121-020000L when several databases share one; cairn-info lists them',
    });
  }
  const [, y, mo, d, h, mi, s] = m;
  return new Date(Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!));
}

/** The key-safe directory name of a database. */
export function databaseDir(database: string): string {
  if (database === '' || database.includes('\0')) throw new CairnError('USAGE', `invalid database name ${quote(database)}`);
  let out = '';
  for (const byte of Buffer.from(database, 'utf8')) {
    const c = String.fromCharCode(byte);
    const plain = /[A-Za-z0-9_.-]/.test(c) && !(out === '' && c === '.');
    out += plain ? c : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** The database name a directory stands for; undefined for GLOBALS_DIR or a name databaseDir never makes. */
export function databaseFromDir(dir: string): string | undefined {
  if (dir === GLOBALS_DIR || !/^(?:[A-Za-z0-9_.-]|%[0-9A-F]{2})+$/.test(dir) || dir.startsWith('.')) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < dir.length; i++) {
    if (dir[i] === '%') {
      bytes.push(parseInt(dir.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(dir.charCodeAt(i));
  }
  const name = Buffer.from(bytes).toString('utf8');
  return databaseDir(name) === dir ? name : undefined;
}

export function dumpsPrefix(cluster: string): string {
  return `${cluster}/dumps/`;
}

/** `dir` is databaseDir(name) or GLOBALS_DIR. */
export function dumpPrefix(cluster: string, dir: string, id: string): string {
  return `${cluster}/dumps/${dir}/${id}/`;
}

export function dumpManifestKey(cluster: string, dir: string, id: string): string {
  return `${dumpPrefix(cluster, dir, id)}manifest.json`;
}

/** The stored name of a dump's object (before its codec extension): dump.pgdump, data/<file> or globals.sql. */
export function dumpObjectName(format: DumpFormat, file?: string): string {
  if (format === 'custom') return 'dump.pgdump';
  if (format === 'globals') return 'globals.sql';
  if (file === undefined || !/^[A-Za-z0-9_.-]+$/.test(file) || file.startsWith('.')) throw new CairnError('INTERNAL', `unexpected file ${quote(String(file))} in a pg_dump directory`);
  return file;
}

/** Key of an object: `name` from dumpObjectName, `ext` from encodedExtension. */
export function dumpObjectKey(cluster: string, dir: string, id: string, format: DumpFormat, name: string, ext: string): string {
  return `${dumpPrefix(cluster, dir, id)}${format === 'directory' ? 'data/' : ''}${name}${ext}`;
}

export interface DumpObject {
  /** custom: 'dump.pgdump'; directory: the file's name in pg_dump's directory (toc.dat, 3456.dat); globals: 'globals.sql'. */
  name: string;
  /** Key of the stored object (its extension names its codecs). */
  key: string;
  /** Plaintext size and SHA-256 (hex). */
  size: number;
  sha256: string;
  storedSize: number;
}

export interface DumpManifest {
  format: typeof DUMP_MANIFEST_FORMAT;
  /** cairn's version that wrote it. */
  cairnVersion: string;
  id: string;
  /** The database dumped; null for the globals dump. */
  database: string | null;
  /** databaseDir(database) or GLOBALS_DIR: where the dump's objects live. */
  dir: string;
  dumpFormat: DumpFormat;
  /** The server's system identifier, server_version_num and major ("15"). */
  systemId: string;
  serverVersionNum: number;
  pgMajor: string;
  /** `pg_dump --version` (or pg_dumpall's) as it printed it. */
  pgDumpVersion: string;
  /** --schema/--table/--exclude-table as given; empty for a whole database. */
  filters: { schemas: string[]; tables: string[]; excludeTables: string[] };
  /** zstd:3, gzip:6, none… as stored. */
  compress: string;
  encrypted: boolean;
  start: { time: string };
  stop: { time: string };
  durationSeconds: number;
  /** One object for custom and globals; every file of the directory for directory format. */
  objects: DumpObject[];
  totals: { size: number; storedSize: number };
}

/** A dump without its object list: what catalogs, expire and info need. */
export type DumpSummary = Omit<DumpManifest, 'objects'>;

export function summarizeDump(m: DumpManifest): DumpSummary {
  const { objects: _objects, ...rest } = m;
  return rest;
}

function invalid(what: string, where: string): CairnError {
  return new CairnError('FORMAT_INVALID', `${where}: ${what}`, {
    hint: 'the dump manifest is damaged; cairn-verify reports which dumps are affected',
  });
}

export function checkDumpManifest(m: unknown, where: string): DumpManifest {
  const o = m as DumpManifest;
  if (!o || typeof o !== 'object' || o.format !== DUMP_MANIFEST_FORMAT) throw invalid(`not a ${DUMP_MANIFEST_FORMAT} manifest`, where);
  if (!isDumpId(o.id) || typeof o.dir !== 'string' || !Array.isArray(o.objects) || !['custom', 'directory', 'globals'].includes(o.dumpFormat)) {
    throw invalid('missing id, dir, format or objects', where);
  }
  for (const f of o.objects) {
    if (typeof f?.name !== 'string' || typeof f.key !== 'string' || typeof f.sha256 !== 'string' || typeof f.size !== 'number') {
      throw invalid(`bad object entry ${quote(String(f?.name))}`, where);
    }
  }
  return o;
}

export async function readDumpManifest(driver: StorageDriver, cluster: string, dir: string, id: string, signal?: AbortSignal): Promise<DumpManifest | undefined> {
  const key = dumpManifestKey(cluster, dir, id);
  const m = await readJsonObject<unknown>(driver, key, signal);
  return m === undefined ? undefined : checkDumpManifestAt(m, cluster, dir, id, `"${key}" in repository "${driver.url}"`);
}

/**
 * checkDumpManifest, and the manifest is dump `dir/id`'s: its id and
 * directory are those it is stored under, and every object it names lies
 * below that dump's prefix (a copied manifest never sends a reader, or
 * cairn-copy's writes, to another object).
 */
export function checkDumpManifestAt(m: unknown, cluster: string, dir: string, id: string, where: string): DumpManifest {
  const o = checkDumpManifest(m, where);
  if (o.id !== id || o.dir !== dir) throw invalid(`it names dump ${quote(`${o.dir}/${o.id}`)}, not ${quote(`${dir}/${id}`)}`, where);
  const prefix = dumpPrefix(cluster, dir, id);
  for (const f of o.objects) {
    let valid = f.key.startsWith(prefix) && f.key.length > prefix.length && f.key !== dumpManifestKey(cluster, dir, id);
    try {
      assertValidKey(f.key);
    } catch {
      valid = false;
    }
    if (!valid) throw invalid(`object ${quote(f.name)} is stored as ${quote(f.key)}, outside the dump`, where);
  }
  return o;
}

export interface DumpRef {
  dir: string;
  id: string;
}

/**
 * Every dump that exists (has a manifest), oldest first (then by dir). Objects
 * of a dump without a manifest are debris of an interrupted run.
 */
export async function listDumps(driver: StorageDriver, cluster: string, signal?: AbortSignal): Promise<DumpRef[]> {
  const prefix = dumpsPrefix(cluster);
  const refs: DumpRef[] = [];
  for await (const obj of driver.list(prefix, signal)) {
    const parts = obj.key.slice(prefix.length).split('/');
    if (parts.length === 3 && parts[2] === 'manifest.json' && isDumpId(parts[1]!)) refs.push({ dir: parts[0]!, id: parts[1]! });
  }
  return refs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
}

/**
 * Finds the dump `ref` names: `ID` (must be unique across databases, the
 * globals dump not counted) or `DATABASE/ID`; with `globals`, the globals
 * dump of that id. Throws NOT_FOUND or USAGE (ambiguous) with a hint.
 */
export function resolveDumpRef(refs: readonly DumpRef[], ref: string, opts: { globals?: boolean } = {}): DumpRef {
  const slash = ref.lastIndexOf('/');
  const id = slash < 0 ? ref : ref.slice(slash + 1);
  parseDumpId(id);
  const dir = opts.globals ? GLOBALS_DIR : slash < 0 ? undefined : databaseDir(ref.slice(0, slash));
  const matches = refs.filter((r) => r.id === id && (dir === undefined ? r.dir !== GLOBALS_DIR : r.dir === dir));
  if (matches.length === 0) {
    throw new CairnError('NOT_FOUND', `no ${opts.globals ? 'globals dump' : 'dump'} ${quote(ref)} in the repository`, {
      hint: opts.globals ? 'globals are stored by cairn-dump --all; cairn-info lists the dumps' : 'cairn-info lists the dumps and their ids',
    });
  }
  if (matches.length > 1) {
    const names = matches.map((m) => `${databaseFromDir(m.dir) ?? m.dir}/${m.id}`).join(', ');
    throw new CairnError('USAGE', `dump id ${quote(id)} names ${matches.length} dumps (${names})`, { hint: 'give --dump DATABASE/ID' });
  }
  return matches[0]!;
}
