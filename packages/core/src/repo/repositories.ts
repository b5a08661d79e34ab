// Opening the configured repositories and the encryption key from settings.

import { statSync } from 'node:fs';
import { CairnError } from '../cli/errors.js';
import type { Logger } from '../cli/log.js';
import { loadEncryptionKey, type EncryptionKey } from '../codec/index.js';
import type { Settings } from '../config/settings.js';
import type { StorageDriver } from '../storage/driver.js';
import { openStorage, parseRepoUrl } from '../storage/open.js';
import { assertClusterName } from './layout.js';

export interface RepoSettings {
  repos: string[];
  cluster: string;
  keyFile: string | undefined;
}

/**
 * Validates the repository settings every repository tool shares; with a
 * logger, warns about a key file other users can read.
 */
export function repoSettingsFrom(settings: Settings, log?: Logger): RepoSettings {
  const repos = (settings['repo'] as string[] | undefined) ?? [];
  if (repos.length === 0) {
    throw new CairnError('CONFIG_INVALID', 'no repository configured', {
      hint: 'give --repo URL, set CAIRN_REPO, or add "repo = URL" to the config file (/etc/cairn/cairn.conf)',
    });
  }
  // Fail before any work on a malformed URL (only the URL is checked here: the
  // region the environment may give is read when the repository is opened).
  for (const url of repos) parseRepoUrl(url, { env: {} });
  const cluster = String(settings['cluster'] ?? 'main');
  assertClusterName(cluster);
  const keyFile = settings['encryption-key-file'] as string | undefined;
  if (keyFile !== undefined && keyFile !== '' && log !== undefined) warnOpenKeyFile(keyFile, log);
  return { repos, cluster, keyFile: keyFile === '' ? undefined : keyFile };
}

/**
 * One warning, as ssh and pgBackRest give, when others may read the key:
 * whoever reads it reads every backup. Not an error, because a key file on a
 * Kubernetes secret volume is 0644 unless defaultMode says otherwise.
 * A missing or unreadable file is left to loadEncryptionKey's error.
 */
function warnOpenKeyFile(path: string, log: Logger): void {
  let mode: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) return;
    mode = st.mode & 0o777;
  } catch {
    return;
  }
  if ((mode & 0o007) !== 0) {
    log.warn(`encryption key file "${path}" is accessible by other users (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 it`);
  }
}

export async function loadKey(keyFile: string | undefined): Promise<EncryptionKey | undefined> {
  return keyFile === undefined ? undefined : loadEncryptionKey(keyFile);
}

/** Opens each URL; `env` is the tool context's environment (AWS_REGION). */
export async function openRepositories(urls: string[], env: Record<string, string | undefined>): Promise<StorageDriver[]> {
  const drivers: StorageDriver[] = [];
  try {
    for (const url of urls) drivers.push(await openStorage(url, { env }));
  } catch (err) {
    await closeRepositories(drivers);
    throw err;
  }
  return drivers;
}

export async function closeRepositories(drivers: StorageDriver[]): Promise<void> {
  await Promise.allSettled(drivers.map((d) => d.close()));
}
