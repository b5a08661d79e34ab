// The configuration a backup kept from outside PGDATA (issue 14 item 2):
// written below --config-dir, never over a file there without --force, and
// without --config-dir not written at all: restore says where each was, so
// a Debian user puts them back in /etc/postgresql/<v>/<name>.

import { chown, lstat, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { CairnError } from '@cairn/core/cli/errors';
import type { Logger } from '@cairn/core/cli/log';
import type { EncryptionKey } from '@cairn/core/codec/index';
import { decodeWhole } from '@cairn/core/codec/file-codec';
import type { ManifestConfigFile, ManifestFile } from '@cairn/core/backup/manifest';
import type { FileCopy } from '@cairn/core/backup/other-copies';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { localWriteError } from '@cairn/core/util/local-file';
import { quote } from '@cairn/core/wal/quote';
import { ensureRealDir, writeFileNoFollow } from './target-dir.js';

/** Config files are read by the server's user and often by admins: never writable by others, never executable. */
const CONFIG_MODE_MASK = 0o644;

/**
 * Before anything is written: with --config-dir, a file already at a
 * target is refused without --force (exit 3), as is a target that is no
 * regular file at all.
 */
export async function checkConfigTargets(config: readonly ManifestConfigFile[], configDir: string, force: boolean): Promise<void> {
  for (const c of config) {
    const path = join(resolve(configDir), c.path);
    const st = await lstat(path).catch(() => undefined);
    if (st === undefined) continue;
    if (!st.isFile()) {
      throw new CairnError('CONFIG_INVALID', `cannot write configuration file ${quote(path)}: something other than a file is there`, { hint: 'give --config-dir an empty directory, or remove it' });
    }
    if (!force) {
      throw new CairnError('CONFIG_INVALID', `configuration file ${quote(path)} exists; cairn-restore does not overwrite it`, {
        hint: 'give --config-dir an empty directory, or --force to overwrite the configuration files there',
      });
    }
  }
}

/** Writes each file (decoded, SHA-256 checked) below `configDir`; returns the paths written. */
export async function writeConfigFiles(
  o: {
    driver: StorageDriver; key: EncryptionKey | undefined; configDir: string; owner: { uid: number; gid: number } | undefined; signal: AbortSignal;
    /** A copy that is missing or damaged: the same file from another repository (backup/other-copies.ts), else the error again. */
    heal?: (err: unknown, c: ManifestConfigFile, read: (copy: FileCopy) => Promise<Buffer>) => Promise<Buffer>;
  },
  config: readonly ManifestConfigFile[],
): Promise<string[]> {
  const root = resolve(o.configDir);
  await mkdir(root, { recursive: true, mode: 0o755 });
  const made = new Set<string>();
  const written: string[] = [];
  for (const c of config) {
    const read = async (driver: StorageDriver, key: EncryptionKey | undefined, f: ManifestFile): Promise<Buffer> => {
      const label = `configuration file "${c.path}" of backup ${f.ref} (${f.key})`;
      const stored = driver.readSmall ? await driver.readSmall(f.key, o.signal) : await buffer(await driver.read(f.key, o.signal));
      return decodeWhole(stored, f.key, key, { sha256: f.sha256, size: f.size, label });
    };
    const data = await read(o.driver, o.key, c).catch((err: unknown) => {
      if (o.heal === undefined) throw err;
      return o.heal(err, c, (copy) => read(copy.driver, copy.key, copy.file));
    });
    const rel = dirname(c.path);
    await ensureRealDir(root, rel === '.' ? '' : rel, 0o755, made);
    const path = join(root, c.path);
    try {
      writeFileNoFollow(path, data, c.mode & CONFIG_MODE_MASK);
    } catch (err) {
      throw localWriteError(err, path);
    }
    if (o.owner) await chown(path, o.owner.uid, o.owner.gid).catch(() => {});
    written.push(path);
  }
  return written;
}

/** Without --config-dir: one line naming where the files were and how to get them. */
export function reportUnwrittenConfig(config: readonly ManifestConfigFile[], log: Logger): void {
  if (config.length === 0) return;
  log.warn(
    `the backup holds ${config.length} configuration file${config.length > 1 ? 's' : ''} from outside the data directory, not written: ` +
      `${config.map((c) => c.source).join(', ')}; give --config-dir DIR to write them (e.g. the directory of ${quote(config.find((c) => c.setting === 'config_file')?.source ?? config[0]!.source)})`,
  );
}
