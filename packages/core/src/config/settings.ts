// Settings shared by every tool, resolved as flag > CAIRN_* env > config file
// (section of the cluster, then [global]) > default (docs/design.md §7).

import { readFileSync } from 'node:fs';
import { CairnError, type ErrorCode } from '../cli/errors.js';
import { parseCompress } from '../codec/compress.js';
import { parseConfigFile, type ConfigSections } from './config-file.js';
import { KNOWN_CONFIG_KEYS } from './known-keys.js';

export type SettingType = 'string' | 'boolean' | 'integer' | 'list';

export interface SettingDef {
  /** kebab-case; also the flag (`--name`) and the config-file key. */
  name: string;
  type: SettingType;
  description: string;
  /** Environment variables read, first set wins (default: CAIRN_<NAME>). */
  env?: readonly string[];
  default?: string | boolean | number | string[];
  /** Short flag alias. */
  alias?: string;
  /** Value placeholder for --help. */
  valueHint?: string;
  /** Not read from env or config file (e.g. --help). */
  flagOnly?: boolean;
  /** integer: the smallest (default 0) and largest value accepted. */
  min?: number;
  max?: number;
  /** string: the values accepted; the setting's type is their union. */
  choices?: readonly string[];
  /** Checks a string value; throws a CairnError whose message names the value. */
  validate?: (value: string) => void;
}

export type SettingValue = string | boolean | number | string[] | undefined;
export type Settings = Record<string, SettingValue>;

/**
 * The value a resolved setting has, from its declaration: a tool reads
 * `ctx.settings.jobs` as `number | undefined` without a cast. A list is never
 * undefined (resolveSettings gives [] for none); a setting without a default
 * may be unset.
 */
export type SettingValueOf<D extends SettingDef> = SettingType extends D['type'] ? SettingValue
  : D['type'] extends 'list'
  ? string[]
  : D extends { default: NonNullable<SettingValue> } ? BaseValueOf<D> : BaseValueOf<D> | undefined;
type BaseValueOf<D extends SettingDef> = D['type'] extends 'boolean' ? boolean
  : D['type'] extends 'integer' ? number
  : D extends { choices: readonly (infer C extends string)[] } ? C : string;

/** The resolved settings of a list of declarations, keyed by name. */
export type SettingsOf<S extends readonly SettingDef[]> = { [D in S[number] as D['name']]: SettingValueOf<D> };


export const DEFAULT_CONFIG_PATH = '/etc/cairn/cairn.conf';

/** Settings every tool has. */
export const COMMON_SETTINGS = [
  { name: 'config', type: 'string', description: 'config file', env: ['CAIRN_CONFIG'], valueHint: 'FILE', flagOnly: false },
  { name: 'repo', type: 'list', description: 'repository URL (repeatable): /path, file:///path or s3://bucket/prefix?endpoint=…&region=…&force-path-style=true', valueHint: 'URL' },
  { name: 'cluster', type: 'string', description: 'cluster name inside the repository', default: 'main', valueHint: 'NAME' },
  { name: 'encryption-key-file', type: 'string', description: 'file holding the repository encryption key', valueHint: 'FILE' },
  { name: 'encryption-key-command', type: 'string', description: 'command that prints the repository encryption key (run without a shell; e.g. vault, aws kms decrypt, gpg -d, age -d)', valueHint: 'CMD' },
  { name: 'log-level', type: 'string', description: 'error, warn, info or debug', default: 'warn', valueHint: 'LEVEL' },
  { name: 'json', type: 'boolean', description: 'machine-readable output', default: false },
] as const satisfies readonly SettingDef[];

/** The settings every tool's context has. */
export type CommonSettings = SettingsOf<typeof COMMON_SETTINGS>;

export function envNames(def: SettingDef): readonly string[] {
  return def.env ?? ['CAIRN_' + def.name.toUpperCase().replace(/-/g, '_')];
}

/**
 * Converts one raw value. A bad value on the command line is a usage error
 * (exit 2), in the environment or the config file a configuration error (3).
 */
function convert(def: SettingDef, raw: string, source: Source): SettingValue {
  switch (def.type) {
    case 'string':
      if (def.choices !== undefined && !def.choices.includes(raw)) {
        throw new CairnError(source.code, source.flag ? `invalid --${def.name} ${JSON.stringify(raw)}` : `${source.name}: invalid ${def.name} ${JSON.stringify(raw)}`, {
          hint: `use ${def.choices.slice(0, -1).join(', ')} or ${def.choices[def.choices.length - 1]}`,
        });
      }
      if (def.validate !== undefined) {
        try {
          def.validate(raw);
        } catch (err) {
          if (!(err instanceof CairnError)) throw err;
          throw new CairnError(source.code, source.flag ? err.message : `${source.name}: ${err.message}`, err.hint === undefined ? {} : { hint: err.hint });
        }
      }
      return raw;
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    case 'boolean': {
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on', 'y'].includes(v)) return true;
      if (['0', 'false', 'no', 'off', 'n', ''].includes(v)) return false;
      throw new CairnError(source.code, `${source.flag ? '' : `${source.name}: `}${JSON.stringify(raw)} is not a boolean for --${def.name}`, { hint: 'use true or false' });
    }
    case 'integer': {
      // No cairn count, size or time is negative: 0 is the least by default.
      const min = def.min ?? 0;
      const range = def.max !== undefined ? `use ${min} to ${def.max}` : `use ${min} or more`;
      const n = /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
      if (!Number.isSafeInteger(n)) {
        throw new CairnError(source.code, `${source.flag ? '' : `${source.name}: `}${JSON.stringify(raw)} is not a whole number for --${def.name}`, { hint: range });
      }
      if (n < min || (def.max !== undefined && n > def.max)) {
        throw new CairnError(source.code, source.flag ? `invalid --${def.name} ${n}` : `${source.name}: invalid ${def.name} ${n}`, { hint: range });
      }
      return n;
    }
  }
}

interface Source {
  /** "--jobs", "environment variable CAIRN_JOBS", 'config file "/etc/cairn/cairn.conf"' */
  name: string;
  flag: boolean;
  code: ErrorCode;
}

const flagSource = (def: SettingDef): Source => ({ name: `--${def.name}`, flag: true, code: 'USAGE' });
const otherSource = (name: string): Source => ({ name, flag: false, code: 'CONFIG_INVALID' });

export interface ResolveInput {
  defs: readonly SettingDef[];
  /** Flag values as parsed (strings, booleans, or string[] for repeated flags). */
  flags: Record<string, string | boolean | string[] | undefined>;
  env: NodeJS.ProcessEnv;
  /** Override for reading the config file (tests). */
  readConfig?: (path: string) => string | undefined;
}

function defaultReadConfig(path: string, explicit: boolean): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) return undefined;
    throw new CairnError('CONFIG_INVALID', `cannot read config file "${path}": ${code ?? String(err)}`, {
      hint: 'check --config / CAIRN_CONFIG and the file permissions',
    });
  }
}

export function resolveSettings(input: ResolveInput): Settings {
  const { defs, flags, env } = input;
  const out: Settings = {};

  const configFlag = flags['config'] as string | undefined;
  const configPath = configFlag ?? env['CAIRN_CONFIG'] ?? DEFAULT_CONFIG_PATH;
  const explicit = configFlag !== undefined || env['CAIRN_CONFIG'] !== undefined;
  const text = input.readConfig ? input.readConfig(configPath) : defaultReadConfig(configPath, explicit);
  // Keys of every tool are fine (one file serves them all), and the running
  // tool's own even if the shared list lags behind.
  const known = new Set([...KNOWN_CONFIG_KEYS, ...defs.filter((d) => !d.flagOnly).map((d) => d.name)]);
  const sections: ConfigSections = text === undefined ? new Map() : parseConfigFile(text, configPath, known);
  out['config'] = text === undefined ? undefined : configPath;

  const fromFile = (key: string, cluster: string | undefined): string[] | undefined =>
    (cluster !== undefined ? sections.get(cluster)?.get(key) : undefined) ?? sections.get('global')?.get(key);

  // The cluster picks the config-file section, so resolve it first.
  const ordered = [...defs].sort((a, b) => (a.name === 'cluster' ? -1 : b.name === 'cluster' ? 1 : 0));
  for (const def of ordered) {
    if (def.name === 'config') continue;
    const flag = flags[def.name];
    if (flag !== undefined) {
      if (def.type === 'list') {
        const items = (Array.isArray(flag) ? flag : [String(flag)]).flatMap((s) => convert(def, s, flagSource(def)) as string[]);
        out[def.name] = items;
      } else if (def.type === 'boolean') {
        out[def.name] = typeof flag === 'boolean' ? flag : convert(def, String(flag), flagSource(def));
      } else {
        const last = Array.isArray(flag) ? flag[flag.length - 1]! : String(flag);
        out[def.name] = convert(def, last, flagSource(def));
      }
      continue;
    }
    if (def.flagOnly) {
      out[def.name] = defaultOf(def);
      continue;
    }
    const envName = envNames(def).find((n) => env[n] !== undefined && env[n] !== '');
    if (envName !== undefined) {
      out[def.name] = convert(def, env[envName]!, otherSource(`environment variable ${envName}`));
      continue;
    }
    const file = fromFile(def.name, out['cluster'] as string | undefined);
    if (file !== undefined) {
      out[def.name] = def.type === 'list'
        ? file.flatMap((s) => convert(def, s, otherSource(`config file "${configPath}"`)) as string[])
        : convert(def, file[file.length - 1]!, otherSource(`config file "${configPath}"`));
      continue;
    }
    out[def.name] = defaultOf(def);
  }
  return out;
}

/** A list nobody set is empty, so that its type (SettingsOf) is string[]. */
function defaultOf(def: SettingDef): SettingValue {
  const d = def.default;
  return typeof d === 'object' ? [...d] : d ?? (def.type === 'list' ? [] : undefined);
}

/** Settings of tools that write to the repository. */
export const COMPRESS_SETTING = {
  name: 'compress',
  type: 'string',
  description: 'zstd[:1-19], gzip[:1-9] or none',
  default: 'zstd:3',
  valueHint: 'ALG[:LEVEL]',
  validate: (v) => void parseCompress(v),
} as const satisfies SettingDef;

export const SPOOL_SETTING = {
  name: 'spool-dir',
  type: 'string',
  description: 'private local directory for push-ahead records and prefetched WAL (default: pg_wal/.cairn-spool of the data directory)',
  valueHint: 'DIR',
} as const satisfies SettingDef;

export const SYSTEM_ID_SETTING = {
  name: 'system-id',
  type: 'string',
  description: 'database system identifier, when it cannot be read from PGDATA/global/pg_control',
  valueHint: 'ID',
  // It becomes part of repository keys (wal/<system-id>/): only the decimal
  // number pg_controldata prints, never "../x".
  validate: (v) => {
    if (!/^[0-9]{1,20}$/.test(v)) {
      throw new CairnError('CONFIG_INVALID', `invalid system identifier ${JSON.stringify(v)}`, { hint: 'give the decimal "Database system identifier" pg_controldata prints' });
    }
  },
} as const satisfies SettingDef;
