// The README's "Where things are" stays true: every folder of
// packages/core/src has a row, every tool has one that names its source files
// and exactly the core areas its sources import.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { coreRows, importedAreas, toolRows, whereSection } from './docs-check.js';

const root = new URL('../../', import.meta.url).pathname;
const section = whereSection(readFileSync(join(root, 'README.md'), 'utf8'));
const dirs = (p: string): string[] => readdirSync(p).filter((n) => statSync(join(p, n)).isDirectory()).sort();

test('the table parsers see a missing row (so the checks below can fail)', () => {
  const fake = '\n## Where things are\n| `core/wal/` | x |\n| `wal-get` | `fetch.ts` (x) | `cli` `wal` |\n## Next\n| `core/repo/` | y |\n';
  const s = whereSection(fake);
  assert.deepEqual(coreRows(s), ['wal']);
  assert.deepEqual([...toolRows(s)], [['wal-get', { files: ['fetch.ts'], areas: ['cli', 'wal'] }]]);
});

test('README "Where things are" has a row for every folder of packages/core/src, and none other', () => {
  assert.notEqual(section, '', 'README.md has no "## Where things are" section');
  const listed = coreRows(section).sort();
  const actual = dirs(join(root, 'packages/core/src'));
  assert.deepEqual(
    { missing: actual.filter((d) => !listed.includes(d)), unknown: listed.filter((d) => !actual.includes(d)) },
    { missing: [], unknown: [] },
    'add (or remove) a "| `core/<folder>/` | what it holds |" row in README "Where things are"',
  );
});

test('README "Where things are" lists every tool with its files and the core areas it imports', () => {
  const rows = toolRows(section);
  const tools = dirs(join(root, 'tools'));
  assert.deepEqual([...rows.keys()].sort(), tools);
  for (const tool of tools) {
    const src = join(root, 'tools', tool, 'src');
    const row = rows.get(tool)!;
    assert.deepEqual([...row.areas].sort(), importedAreas(src), `${tool}: the core areas its sources import`);
    const files = readdirSync(src).filter((n) => n.endsWith('.ts') && !n.endsWith('.test.ts') && n !== 'cli.ts' && n !== 'command.ts');
    assert.deepEqual([...row.files].sort(), files.sort(), `${tool}: its source files`);
  }
});
