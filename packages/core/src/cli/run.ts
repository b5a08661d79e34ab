// The shared command runner: strict flag parsing (unknown flags are usage
// errors, unlike citty's runMain), settings resolution, the tool context,
// and the mapping of errors to exit statuses. The process itself (argv, env,
// stdin, signals, exit) is bound in main.ts, which only the bins load.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Readable, type Writable } from 'node:stream';
import { CairnError, EXIT, toCairnError } from './errors.js';
import { redactSecrets, safeMessage } from './message.js';
import { createLogger, isLogLevel, type Logger, type LogLevel } from './log.js';
import { COMMON_SETTINGS, resolveSettings, type CommonSettings, type SettingDef, type SettingsOf } from '../config/settings.js';
import { CAIRN_VERSION } from '../version.js';

export interface PositionalDef {
  name: string;
  description: string;
  required: boolean;
}

/** A tool's resolved settings: the common ones and its own, typed from their declarations. */
export type ToolSettings<S extends readonly SettingDef[] = readonly SettingDef[]> = CommonSettings & SettingsOf<S>;

export interface ToolContext<S extends readonly SettingDef[] = readonly SettingDef[]> {
  tool: string;
  settings: ToolSettings<S>;
  positionals: string[];
  /** The command line as given (wal-push and wal-get key their spool by it). */
  argv: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The tool's standard input (a tar stream, a plan, SQL); isTTY when a terminal. */
  stdin: ToolStdin;
  stdout: Writable;
  stderr: Writable;
  log: Logger;
  signal: AbortSignal;
  now: () => Date;
}

export interface ToolDef<S extends readonly SettingDef[] = readonly SettingDef[]> {
  /** e.g. "wal-push"; the executable is cairn-<name>. */
  name: string;
  description: string;
  /** Tool-specific settings; COMMON_SETTINGS are added. */
  settings: S;
  positionals: PositionalDef[];
  /** Usage examples shown by --help. */
  examples?: string[];
  /** Does the work; returns the exit status. */
  run(ctx: ToolContext<S>): Promise<number>;
  /**
   * Maps an error to an exit status (wal-get: persistent errors → 126).
   * `settings` is undefined when the error came before they were resolved.
   */
  exitFor?(err: CairnError, settings: ToolSettings<S> | undefined, env: NodeJS.ProcessEnv): number;
  /**
   * How long the bin waits after SIGTERM/SIGINT for run() to clean up before
   * it exits anyway (default 2 s; drill stops a server and removes a scratch
   * directory, which may take longer).
   */
  signalGraceMs?: number;
}

/**
 * Declares a tool. The settings are read as a const tuple, so `ctx.settings`
 * is typed from them (docs/style.md §Shape of a tool): no casts in command.ts,
 * and a declared range or choice list is the only check of the value.
 */
export function defineTool<const S extends readonly SettingDef[]>(def: ToolDef<S>): ToolDef<S> {
  return def;
}

export function allSettings(def: ToolDef): SettingDef[] {
  const own = new Set(def.settings.map((s) => s.name));
  return [...COMMON_SETTINGS.filter((s) => !own.has(s.name)), ...def.settings];
}

export function renderHelp(def: ToolDef): string {
  const settings = allSettings(def);
  const pos = def.positionals.map((p) => (p.required ? `<${p.name}>` : `[${p.name}]`)).join(' ');
  const lines = [`cairn-${def.name} ${CAIRN_VERSION} — ${def.description}`, '', `usage: cairn-${def.name} [options] ${pos}`.trimEnd(), ''];
  if (def.positionals.length > 0) {
    lines.push('arguments:');
    for (const p of def.positionals) lines.push(`  ${p.name.padEnd(28)} ${p.description}`);
    lines.push('');
  }
  lines.push('options (flag > environment > config file > default):');
  for (const s of settings) {
    const flag = `--${s.name}${s.type === 'boolean' ? '' : ' ' + (s.valueHint ?? 'VALUE')}`;
    const env = s.flagOnly ? '' : ` [${(s.env ?? ['CAIRN_' + s.name.toUpperCase().replace(/-/g, '_')]).join(', ')}]`;
    const dflt = s.default !== undefined && s.default !== false ? ` (default: ${String(s.default)})` : '';
    lines.push(`  ${flag.padEnd(28)} ${s.description}${dflt}${env}`);
  }
  lines.push(`  ${'--help'.padEnd(28)} show this help`);
  lines.push(`  ${'--version'.padEnd(28)} print the version`);
  if (def.examples && def.examples.length > 0) {
    lines.push('', 'examples:', ...def.examples.map((e) => '  ' + e));
  }
  lines.push('', 'exit status: 0 ok, 1 not found / check failed, 2 usage, 3 configuration or connection,',
    '  4 data (checksum, format, duplicate), 5 lock held, 70 internal bug' + (def.name === 'wal-get' ? ', 126 persistent error (stops recovery)' : ''));
  return lines.join('\n') + '\n';
}

/** Standard input as a tool sees it: bytes, and whether it is a terminal. */
export type ToolStdin = Readable & { isTTY?: boolean };

export interface RunIO {
  argv: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Default: an empty stream (a tool run in a test reads nothing it was not given). */
  stdin?: ToolStdin;
  stdout: Writable;
  stderr: Writable;
  signal?: AbortSignal;
  now?: () => Date;
  /**
   * Refuse memory:// repositories (set by the bins): the in-memory driver is
   * the unit tests' double, and a tool given it "stores" WAL in a process
   * that exits a moment later (issue 11: wal-push exited 0, segment gone).
   */
  refuseTestRepositories?: boolean;
}

/** Parses argv strictly; throws USAGE errors. */
export function parseToolArgs(def: ToolDef, argv: string[]): { flags: Record<string, string | boolean | string[] | undefined>; positionals: string[]; help: boolean; version: boolean } {
  const settings = allSettings(def);
  const options: NonNullable<ParseArgsConfig['options']> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'V' },
  };
  for (const s of settings) {
    options[s.name] = { type: s.type === 'boolean' ? 'boolean' : 'string', multiple: s.type === 'list' };
    if (s.alias) options[s.name]!.short = s.alias;
    if (s.type === 'boolean') options['no-' + s.name] = { type: 'boolean' };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(argv, options), options, allowPositionals: true, strict: true });
  } catch (err) {
    const raw = (err as Error).message;
    // node:util words a missing value as three lines ("argument is ambiguous…")
    // that never say what is wrong; one line names the flag.
    const flag = /^Option '(-[^' ]+)(?: <value>)?' argument (?:is ambiguous|missing)/.exec(raw)?.[1];
    if (flag !== undefined) {
      throw new CairnError('USAGE', `option ${flag} needs a value`, { hint: `give ${flag} VALUE, or ${flag}=VALUE for a value that starts with "-"` });
    }
    const msg = raw.replace(/\. To specify a positional argument.*$/s, '').replace(/^Unknown option '/, "unknown option '").split('\n')[0]!;
    throw new CairnError('USAGE', msg.charAt(0).toLowerCase() + msg.slice(1).replace(/\.$/, ''), { hint: `see cairn-${def.name} --help` });
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const flags: Record<string, string | boolean | string[] | undefined> = {};
  for (const s of settings) {
    if (values[s.name] !== undefined) flags[s.name] = values[s.name];
    if (s.type === 'boolean' && values['no-' + s.name]) flags[s.name] = false;
  }
  const help = values['help'] === true;
  const version = values['version'] === true;
  if (!help && !version) {
    const required = def.positionals.filter((p) => p.required).length;
    if (parsed.positionals.length < required) {
      const missing = def.positionals[parsed.positionals.length]!;
      throw new CairnError('USAGE', `missing argument <${missing.name}>`, { hint: `usage: cairn-${def.name} ${def.positionals.map((p) => (p.required ? `<${p.name}>` : `[${p.name}]`)).join(' ')}` });
    }
    if (parsed.positionals.length > def.positionals.length) {
      throw new CairnError('USAGE', `unexpected argument "${parsed.positionals[def.positionals.length]}"`, { hint: `see cairn-${def.name} --help` });
    }
  }
  return { flags, positionals: parsed.positionals, help, version };
}

/**
 * `--jobs -4` → `--jobs=-4`: a negative number after a flag that takes a
 * value is that value (node:util would call it ambiguous), so the range check
 * can name the real problem ("invalid --jobs -4; use 1 to 256").
 */
function joinNegativeValues(argv: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const name = /^--([^=]+)$/.exec(a)?.[1];
    const next = argv[i + 1];
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function writeError(stderr: Writable, tool: string, err: CairnError, level: LogLevel): void {
  // One line: what is wrong, then what to do (the operator reads it in the
  // PostgreSQL log or a cron mail).
  // User input inside the message may hold a newline, an escape sequence or a
  // URL with a secret: safeMessage escapes and redacts them.
  stderr.write(`cairn-${tool}: error: ${safeMessage(err.message)}${err.hint ? `; ${safeMessage(err.hint)}` : ''}\n`);
  if (level === 'debug' && err.cause !== undefined) stderr.write(`cairn-${tool}: debug: cause: ${redactSecrets(String((err.cause as Error)?.stack ?? err.cause))}\n`);
}

/** Runs a tool the way its bin does; returns the exit status. */
export async function runTool(def: ToolDef, io: RunIO): Promise<number> {
  let level: LogLevel = 'warn';
  let resolved: ToolSettings | undefined;
  try {
    const { flags, positionals, help, version } = parseToolArgs(def, io.argv);
    if (help) {
      io.stdout.write(renderHelp(def));
      return EXIT.OK;
    }
    if (version) {
      io.stdout.write(`cairn-${def.name} ${CAIRN_VERSION}\n`);
      return EXIT.OK;
    }
    // resolveSettings checked every value against its declaration: the one
    // place the declared types (SettingsOf) are taken on trust.
    const settings = resolveSettings({ defs: allSettings(def), flags, env: io.env }) as ToolSettings;
    resolved = settings;
    if (io.refuseTestRepositories) {
      const test = settings.repo.find((u) => /^memory:/i.test(u));
      if (test !== undefined) {
        throw new CairnError('CONFIG_INVALID', `invalid repository URL "${test}": memory:// is a test double that keeps nothing`, {
          hint: 'use /abs/path, file:///abs/path or s3://bucket/prefix?endpoint=…&region=…',
        });
      }
    }
    const lvl = settings['log-level'];
    if (!isLogLevel(lvl)) throw new CairnError('USAGE', `invalid log level "${lvl}"`, { hint: 'use error, warn, info or debug' });
    level = lvl;
    const log = createLogger({ tool: `cairn-${def.name}`, level, json: settings.json, write: (l) => io.stderr.write(l) });
    const ctx: ToolContext = {
      tool: def.name,
      settings,
      positionals,
      argv: io.argv,
      env: io.env,
      cwd: io.cwd,
      stdin: io.stdin ?? Readable.from([]),
      stdout: io.stdout,
      stderr: io.stderr,
      log,
      signal: io.signal ?? new AbortController().signal,
      now: io.now ?? (() => new Date()),
    };
    return await def.run(ctx);
  } catch (thrown) {
    const err = toCairnError(thrown);
    writeError(io.stderr, def.name, err, level);
    return def.exitFor ? def.exitFor(err, resolved, io.env) : err.exitCode;
  }
}
