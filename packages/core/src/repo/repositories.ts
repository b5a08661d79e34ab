// Opening the configured repositories and the encryption key from settings.

import { CairnError } from '../cli/errors.js';
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

/** Validates the repository settings every repository tool shares. */
export function repoSettingsFrom(settings: Settings): RepoSettings {
  const repos = (settings['repo'] as string[] | undefined) ?? [];
  if (repos.length === 0) {
    throw new CairnError('CONFIG_INVALID', 'no repository configured', {
      hint: 'give --repo URL, set CAIRN_REPO, or add "repo = URL" to the config file (/etc/cairn/cairn.conf)',
    });
  }
  for (const url of repos) {
    // Fail before any work on a malformed URL. memory:// is the unit tests'
    // double (they open it through openStorage): a tool given it would
    // "store" WAL in a process that exits a moment later.
    if (parseRepoUrl(url).kind === 'memory') {
      throw new CairnError('CONFIG_INVALID', `invalid repository URL "${url}": memory:// is a test double that keeps nothing`, {
        hint: 'use /abs/path, file:///abs/path or s3://bucket/prefix?endpoint=…&region=…',
      });
    }
  }
  const cluster = String(settings['cluster'] ?? 'main');
  assertClusterName(cluster);
  const keyFile = settings['encryption-key-file'] as string | undefined;
  return { repos, cluster, keyFile: keyFile === '' ? undefined : keyFile };
}

export async function loadKey(keyFile: string | undefined): Promise<EncryptionKey | undefined> {
  return keyFile === undefined ? undefined : loadEncryptionKey(keyFile);
}

export async function openRepositories(urls: string[]): Promise<StorageDriver[]> {
  const drivers: StorageDriver[] = [];
  try {
    for (const url of urls) drivers.push(await openStorage(url));
  } catch (err) {
    await closeRepositories(drivers);
    throw err;
  }
  return drivers;
}

export async function closeRepositories(drivers: StorageDriver[]): Promise<void> {
  await Promise.allSettled(drivers.map((d) => d.close()));
}
