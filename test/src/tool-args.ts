// Flag validation for the command lines that crontabs, systemd units and
// Kubernetes manifests hold: each is parsed with the tool's own ToolDef, the
// way its bin parses argv, without running the job. A renamed or misspelt
// flag then fails a test, not a production night.
//
// Why not `cairn-<tool> <args> --help`: parseToolArgs does reject unknown
// flags before --help is honoured, but it skips the positional count and
// converts no values with --help; the ToolDef route checks both, in-process.

import { TOOLS } from '@cairn/cli/tools';
import { allSettings, parseToolArgs, type ToolDef } from '@cairn/core/cli/run';
import { CairnError } from '@cairn/core/cli/errors';
import { resolveSettings } from '@cairn/core/config/settings';
import { parseCompress } from '@cairn/core/codec/compress';
import { parseDuration } from '@cairn/core/util/duration';

/** The value `$VAR` / `${VAR}` placeholders stand for while parsing. */
export const PLACEHOLDER_VALUE = 'placeholder';

/** Replaces `$VAR` and `${VAR}` (shell, systemd and Kubernetes `$(VAR)`) with a dummy value. */
export function expandPlaceholders(arg: string): string {
  return arg.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$\([A-Za-z_][A-Za-z0-9_]*\)|\$[A-Za-z_][A-Za-z0-9_]*/g, PLACEHOLDER_VALUE);
}

/** `cairn-basebackup` or `/usr/bin/cairn-dump` → the tool name; undefined for anything else. */
export function toolOfExecutable(path: string): string | undefined {
  const base = path.slice(path.lastIndexOf('/') + 1);
  const m = /^cairn-([a-z-]+)$/.exec(base);
  return m ? m[1] : undefined;
}

const defs = new Map<string, ToolDef>();

async function loadDef(tool: string): Promise<ToolDef> {
  const known = TOOLS[tool];
  if (known === undefined) throw new Error(`"cairn-${tool}" is not a cairn tool (known: ${Object.keys(TOOLS).join(', ')})`);
  let def = defs.get(tool);
  if (def === undefined) {
    def = await known.load();
    defs.set(tool, def);
  }
  return def;
}

// --type and --checkpoint declare their choices; resolveSettings checks them.
const CHOICES: Record<string, string[]> = {
  'log-level': ['error', 'warn', 'info', 'debug'],
  target: ['immediate', 'latest'],
  'target-action': ['promote', 'pause', 'shutdown'],
};

function checkValue(name: string, hint: string | undefined, value: unknown): void {
  const values = Array.isArray(value) ? value : [value];
  for (const v of values) {
    if (typeof v !== 'string') continue;
    const choices = CHOICES[name];
    if (choices !== undefined && !choices.includes(v)) throw new Error(`--${name} "${v}" is not one of ${choices.join(', ')}`);
    if (name === 'compress') parseCompress(v);
    if (name === 'listen' && !/^(?:[^:]+:)?\d{1,5}$/.test(v)) throw new Error(`--listen "${v}" is not [HOST:]PORT`);
    if (hint === 'DURATION') parseDuration(v, `--${name}`);
    if (hint === 'N' && !/^\d+$/.test(v)) throw new Error(`--${name} "${v}" is not a whole number`);
  }
}

/**
 * Throws (CairnError USAGE or Error) unless `cairn-<tool> argv…` would get
 * past flag parsing and setting conversion. Placeholders are expanded first.
 */
export async function checkInvocation(tool: string, argv: string[]): Promise<void> {
  const def = await loadDef(tool);
  const args = argv.map(expandPlaceholders);
  const parsed = parseToolArgs(def, args);
  // Convert the flags the way runTool does (integers, booleans), with no
  // environment and no config file: only the command line is under test.
  const settingDefs = allSettings(def);
  resolveSettings({ defs: settingDefs, flags: parsed.flags, env: {}, readConfig: () => undefined });
  for (const s of settingDefs) {
    if (parsed.flags[s.name] !== undefined) checkValue(s.name, s.valueHint, parsed.flags[s.name]);
  }
}

/** checkInvocation's failure as one line, or undefined when the command line is accepted. */
export async function invocationProblem(tool: string, argv: string[]): Promise<string | undefined> {
  try {
    await checkInvocation(tool, argv);
    return undefined;
  } catch (err) {
    if (err instanceof CairnError) return `cairn-${tool} ${argv.join(' ')}: ${err.message}`;
    return `cairn-${tool} ${argv.join(' ')}: ${(err as Error).message}`;
  }
}

/**
 * Splits a shell command line into words (single and double quotes, no
 * expansion) and returns the words of its first simple command: up to the
 * first `|`, `;`, `&&`, `||` or redirection.
 */
export function firstSimpleCommand(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i]!)) i++;
    if (i >= line.length) break;
    if (/^(\|\||&&|[|;&]|\d*>|<)/.test(line.slice(i))) break;
    let word = '';
    while (i < line.length && !/[\s|;&<>]/.test(line[i]!)) {
      const c = line[i]!;
      if (c === "'" || c === '"') {
        const end = line.indexOf(c, i + 1);
        if (end < 0) throw new Error(`unbalanced ${c} in: ${line}`);
        word += line.slice(i + 1, end);
        i = end + 1;
      } else if (c === '\\' && i + 1 < line.length) {
        word += line[i + 1];
        i += 2;
      } else {
        word += c;
        i++;
      }
    }
    words.push(word);
  }
  return words;
}
