// Configuration outside PGDATA (issue 14 item 2): Debian keeps
// postgresql.conf, pg_hba.conf and pg_ident.conf in /etc/postgresql/<v>/<name>,
// NixOS starts the server with -c config_file=/nix/store/…, so a copy of
// PGDATA alone starts nowhere. A local backup asks the server which files it
// read and stores those outside PGDATA beside the data files, encoded the
// same way (compressed, encrypted, checksummed) and listed in the manifest.

import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize, relative } from 'node:path';
import type { Logger } from '@cairn/core/cli/log';
import { encodedExtension, type EncodeSpec } from '@cairn/core/codec/index';
import { encodeWhole } from '@cairn/core/codec/file-codec';
import { backupConfigKey, type ConfigFileSetting, type ManifestConfigFile } from '@cairn/core/backup/manifest';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { quote } from '@cairn/core/wal/quote';

/** What the server says it read: current_setting() of the three, and pg_file_settings' source files. */
export interface ServerConfigPaths {
  config_file: string;
  hba_file: string;
  ident_file: string;
  /** Every file pg_file_settings lists (postgresql.conf, includes, postgresql.auto.conf). */
  includes: readonly string[];
}

export interface ConfigFileToStore {
  setting: ConfigFileSetting;
  source: string;
  /** Where a restore writes it, below --config-dir. */
  path: string;
}

/**
 * The files to store: those outside every name of the data directory, each
 * once, config_file's first. Each keeps its place relative to config_file's
 * directory (so `include_dir 'conf.d'` still resolves); a file elsewhere is
 * stored by its name, numbered when two names meet.
 */
export function configFilesToStore(dataDirs: readonly string[], p: ServerConfigPaths): ConfigFileToStore[] {
  const inside = (f: string) => dataDirs.some((d) => f === d || f.startsWith(normalize(d) + '/'));
  const base = dirname(normalize(p.config_file));
  const candidates: [ConfigFileSetting, string][] = [
    ['config_file', p.config_file], ['hba_file', p.hba_file], ['ident_file', p.ident_file],
    ...p.includes.map((f): [ConfigFileSetting, string] => ['include', f]),
  ];
  const out: ConfigFileToStore[] = [];
  const sources = new Set<string>();
  const paths = new Set<string>();
  for (const [setting, raw] of candidates) {
    if (!raw.startsWith('/')) continue;
    const source = normalize(raw);
    if (inside(source) || sources.has(source)) continue;
    sources.add(source);
    let path = source.startsWith(base + '/') ? relative(base, source) : basename(source);
    for (let n = 2; paths.has(path); n++) path = `${n}-${basename(source)}`;
    paths.add(path);
    out.push({ setting, source, path });
  }
  return out;
}

/** `include 'f'`, `include_if_exists 'f'`, `include_dir 'd'` (an `=` is allowed, as for any setting). */
const INCLUDE_LINE = /^\s*(include|include_if_exists|include_dir)\s*=?\s*'((?:[^']|'')*)'/gm;

/**
 * The files a configuration file includes, followed as PostgreSQL does
 * (relative to the including file's directory; include_dir takes the
 * directory's `*.conf` files not starting with a dot), recursively.
 * pg_file_settings lists only files that set something: a file holding
 * nothing but include lines is found here. What cannot be read is left out
 * (the server's own list still names what it read); a file that does not
 * exist (include_if_exists) is none.
 */
export async function includedFiles(configFile: string, limit = 10): Promise<string[]> {
  const seen = new Set<string>([configFile]);
  const out: string[] = [];
  const visit = async (file: string, depth: number): Promise<void> => {
    if (depth > limit) return;
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const m of text.matchAll(INCLUDE_LINE)) {
      const target = m[2]!.replaceAll("''", "'");
      if (target === '') continue;
      const abs = normalize(isAbsolute(target) ? target : join(dirname(file), target));
      const files = m[1] === 'include_dir'
        ? (await readdir(abs).catch(() => [] as string[])).filter((n) => n.endsWith('.conf') && !n.startsWith('.')).sort().map((n) => join(abs, n))
        : [abs];
      for (const f of files) {
        if (seen.has(f)) continue;
        seen.add(f);
        // include_if_exists of nothing is no file to keep.
        if ((await stat(f).catch((err: NodeJS.ErrnoException) => err.code)) === 'ENOENT') continue;
        out.push(f);
        await visit(f, depth + 1);
      }
    }
  };
  await visit(configFile, 0);
  return out;
}

export interface StoreConfigOptions {
  driver: StorageDriver;
  cluster: string;
  id: string;
  spec: EncodeSpec;
  log: Logger;
  signal: AbortSignal;
}

/**
 * Reads and stores each file; one the backup's user cannot read is left out
 * with a warning (the backup of the data itself must not fail for it).
 */
export async function storeConfigFiles(o: StoreConfigOptions, files: readonly ConfigFileToStore[]): Promise<ManifestConfigFile[]> {
  const ext = encodedExtension(o.spec);
  const out: ManifestConfigFile[] = [];
  for (const f of files) {
    let buf: Buffer;
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(f.source);
      buf = await readFile(f.source);
    } catch (err) {
      o.log.warn(`configuration file ${quote(f.source)} (${f.setting}) is not in the backup: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; a restore must bring its own`);
      continue;
    }
    const key = backupConfigKey(o.cluster, o.id, f.path, ext);
    const e = await encodeWhole(buf, o.spec);
    await o.driver.write(key, e.stored, { signal: o.signal, durable: false });
    out.push({
      setting: f.setting, source: f.source, path: f.path,
      size: e.size, mode: st.mode & 0o7777, mtime: st.mtimeMs / 1000, sha256: e.sha256, ref: o.id, key, storedSize: e.stored.length,
    });
  }
  if (out.length > 0) o.log.info(`stored ${out.length} configuration file${out.length > 1 ? 's' : ''} from outside the data directory: ${out.map((c) => c.source).join(', ')}`);
  return out;
}
