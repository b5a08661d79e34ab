// The config file: plain `key = value` lines, `[global]` and one section per
// cluster (like pgbackrest.conf). Repeated keys accumulate (for `repo`).
// Checked like flags: a key no cairn tool knows is an error naming the line.

import { CairnError } from '../cli/errors.js';
import { KNOWN_CONFIG_KEYS, nearestKey } from './known-keys.js';

export type ConfigSections = Map<string, Map<string, string[]>>;

/**
 * Drops an inline comment: `#` at the start of a value or after whitespace starts one (README
 * "Settings"). pgbackrest.conf has no inline comments, but there
 * `repo = /backup # nightly` silently became a path with the comment in it;
 * a `#` inside a word (`/srv/pg#1`) is kept.
 */
export function stripInlineComment(value: string): string {
  const m = /(?:^|\s)#/.exec(value);
  return (m === null ? value : value.slice(0, m.index)).trim();
}

/**
 * Parses the file. `known` (default: every key some tool reads) makes an
 * unknown key a CONFIG_INVALID naming the key, the file, the line and the
 * nearest known key.
 */
export function parseConfigFile(text: string, path: string, known: ReadonlySet<string> = new Set(KNOWN_CONFIG_KEYS)): ConfigSections {
  const sections: ConfigSections = new Map();
  let current = 'global';
  sections.set(current, new Map());
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[([A-Za-z0-9_.-]+)\]$/.exec(stripInlineComment(line));
    if (sec) {
      current = sec[1]!;
      if (!sections.has(current)) sections.set(current, new Map());
      continue;
    }
    const kv = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(line);
    if (!kv) {
      throw new CairnError('CONFIG_INVALID', `config file "${path}" line ${i + 1}: expected "key = value" or "[section]"`, {
        hint: 'fix the line or comment it out with #',
      });
    }
    const key = kv[1]!.replace(/_/g, '-').toLowerCase();
    if (!known.has(key)) {
      const near = nearestKey(key, known);
      throw new CairnError('CONFIG_INVALID', `config file "${path}" line ${i + 1}: unknown key "${kv[1]}"`, {
        hint: near !== undefined ? `did you mean "${near}"?` : 'fix or remove the line; cairn-<tool> --help lists the settings',
      });
    }
    const section = sections.get(current)!;
    const list = section.get(key) ?? [];
    list.push(stripInlineComment(kv[2]!));
    section.set(key, list);
  }
  return sections;
}
