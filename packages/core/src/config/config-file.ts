// The config file: plain `key = value` lines, `[global]` and one section per
// cluster (like pgbackrest.conf). Repeated keys accumulate (for `repo`).

import { CairnError } from '../cli/errors.js';

export type ConfigSections = Map<string, Map<string, string[]>>;

export function parseConfigFile(text: string, path: string): ConfigSections {
  const sections: ConfigSections = new Map();
  let current = 'global';
  sections.set(current, new Map());
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[([A-Za-z0-9_.-]+)\]$/.exec(line);
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
    const section = sections.get(current)!;
    const list = section.get(key) ?? [];
    list.push(kv[2]!);
    section.set(key, list);
  }
  return sections;
}
