// Opening the configured repositories and the encryption key from settings.

import { statSync } from 'node:fs';
import { CairnError } from '../cli/errors.js';
import type { Logger } from '../cli/log.js';
import { loadEncryptionKey, type EncryptionKey } from '../codec/index.js';
import type { SettingDef, Settings } from '../config/settings.js';
import type { StorageDriver } from '../storage/driver.js';
import { openStorage, parseRepoUrl } from '../storage/open.js';
import { assertClusterName } from './layout.js';

/** Where the operator's encryption key comes from: a file or a command (never both). */
export interface KeySource {
  keyFile: string | undefined;
  /** --encryption-key-command: run without a shell (codec/key-command.ts). */
  keyCommand?: string | undefined;
}

export interface RepoSettings extends KeySource {
  repos: string[];
  cluster: string;
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
  return { repos, cluster, ...keySourceFrom(settings, log) };
}

/**
 * The operator key's source from the settings (a file or a command, never
 * both); with a logger, warns about a key file other users can read.
 */
export function keySourceFrom(settings: Settings, log?: Logger): KeySource {
  const keyFile = settings['encryption-key-file'] as string | undefined;
  const command = settings['encryption-key-command'] as string | undefined;
  const keyCommand = command !== undefined && command.trim() !== '' ? command : undefined;
  if (keyFile !== undefined && keyFile !== '' && keyCommand !== undefined) {
    throw new CairnError('CONFIG_INVALID', 'both an encryption key file and an encryption key command are configured', {
      hint: 'keep one of --encryption-key-file / CAIRN_ENCRYPTION_KEY_FILE / encryption-key-file and --encryption-key-command / CAIRN_ENCRYPTION_KEY_COMMAND / encryption-key-command',
    });
  }
  if (keyFile !== undefined && keyFile !== '' && log !== undefined) warnOpenKeyFile(keyFile, log);
  return { keyFile: keyFile === '' ? undefined : keyFile, ...(keyCommand !== undefined ? { keyCommand } : {}) };
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

/**
 * The operator's key from its source: undefined when none is configured.
 * `env` is the environment a key command runs in (the tool context's).
 * The command's module (and execa) loads only when a command is configured:
 * wal-push starts once per segment.
 */
export async function loadKey(src: KeySource, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<EncryptionKey | undefined> {
  if (src.keyCommand !== undefined) {
    const { runKeyCommand } = await import('../codec/key-command.js');
    return runKeyCommand(src.keyCommand, env, signal ? { signal } : {});
  }
  return src.keyFile === undefined ? undefined : loadEncryptionKey(src.keyFile);
}

/** The flags that hand the same key source to a child cairn tool (restore_command, drill). */
export function keySourceArgs(src: KeySource, resolvePath: (p: string) => string = (p) => p): string[] {
  if (src.keyCommand !== undefined) return ['--encryption-key-command', src.keyCommand];
  return src.keyFile === undefined ? [] : ['--encryption-key-file', resolvePath(src.keyFile)];
}

/**
 * `--repo-only URL|N`: the one configured repository a run that writes to
 * every repository (basebackup, dump) is limited to, named by its URL as
 * configured or by its position (1 = the first); all of them without it.
 */
export function pickRepositories(repos: string[], only: string | undefined): string[] {
  if (only === undefined || only === '') return repos;
  const n = /^[0-9]+$/.test(only) ? Number(only) : undefined;
  if (n !== undefined) {
    if (n >= 1 && n <= repos.length) return [repos[n - 1]!];
  } else {
    const plain = (u: string) => u.replace(/^file:\/\//, '').replace(/\/+$/, '');
    const hit = repos.find((r) => r === only || plain(r) === plain(only));
    if (hit !== undefined) return [hit];
  }
  throw new CairnError('USAGE', `--repo-only "${only}" is none of the ${repos.length} configured repositories`, {
    hint: `give one of the --repo URLs as configured, or its position 1-${repos.length}`,
  });
}

/** `--repo-only`, the setting of the tools that write to every repository. */
export const REPO_ONLY_SETTING = {
  name: 'repo-only',
  type: 'string',
  description: 'write to this one of the configured repositories only: its URL as configured, or its position (1 = the first); default: every repository, from one read',
  valueHint: 'URL|N',
} as const satisfies SettingDef;

/**
 * The error of a run that wrote to some repositories and failed in others:
 * names each that failed and why, with the status of the first failure
 * (a CairnError's; otherwise 3, storage).
 */
export function notEverywhere(what: string, stored: readonly string[], failed: readonly { url: string; error: unknown }[]): CairnError {
  const first = failed[0]?.error;
  const why = failed.map((f) => `"${f.url}" (${(f.error as Error)?.message ?? String(f.error)})`).join('; ');
  return new CairnError(first instanceof CairnError ? first.code : 'STORAGE_UNAVAILABLE', `${what} is not in repository ${why}`, {
    hint: `${stored.length > 0 ? `it is whole in ${stored.map((u) => `"${u}"`).join(', ')}; ` : ''}fix the repository and run again, or with --repo-only for it alone`,
    cause: first,
  });
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
