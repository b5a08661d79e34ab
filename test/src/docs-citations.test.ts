// Every comment that cites the project's notes resolves: it names a file in
// docs/ (not the old DESIGN, STYLE, GOTCHAS outside the repository) and a
// section that file has, so "docs/design.md §4.12" leads to rule 12 of §4.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { citationProblems, sourceFiles } from './docs-check.js';

const root = new URL('../../', import.meta.url).pathname;
const docsDir = join(root, 'docs');
const docs = new Map(readdirSync(docsDir).filter((n) => n.endsWith('.md')).map((n) => [n, readFileSync(join(docsDir, n), 'utf8')]));

test('the citation check itself catches each kind of broken citation', () => {
  const bad = [
    '// the rule (DESIGN §4.5)',
    '// see GOTCHAS (s3rver)',
    '// as STYLE.md says',
    '// see docs/design.md §9',
    '// see docs/design.md §4.13',
    '// see docs/design.md §4.4 and §4.99',
    '// never rewritten, docs/design.md\n// §8.1)',
    '// see docs/nowhere.md',
    '// see docs/gotchas.md §nothing-like-this',
  ];
  for (const text of bad) assert.notDeepEqual(citationProblems(text, docs), [], text);
  const good = [
    '// the rule (docs/design.md §4.5)',
    '// docs/design.md §4.2–4.4',
    '// never rewritten, docs/design.md\n// §4.11)',
    '// docs/design.md §4 rule 12, docs/threat-model.md',
    '// (docs/gotchas.md §s3rver), docs/style.md §Streams',
    'const FORCE_PATH_STYLE = 1; // POSTGRES_USER',
  ];
  for (const text of good) assert.deepEqual(citationProblems(text, docs), [], text);
});

test('design.md keeps the numbering comments cite: §1–§7 and rules 1–12 of §4', () => {
  const design = docs.get('design.md')!;
  for (let s = 1; s <= 7; s++) assert.deepEqual(citationProblems(`docs/design.md §${s}`, docs), [], `§${s}`);
  for (let r = 1; r <= 12; r++) assert.deepEqual(citationProblems(`docs/design.md §4.${r}`, docs), [], `§4.${r}`);
  assert.match(design, /^12\. \*\*Trust nothing in a shared place/m);
});

test('every citation in the tree resolves to a file in docs/ and a section it has', () => {
  const tops = ['packages', 'tools', 'scripts', 'test/src', 'cron', 'k8s', '.ci', 'README.md'];
  // The checker and this file hold broken citations on purpose, as test cases.
  const own = new Set(['test/src/docs-check.ts', 'test/src/docs-citations.test.ts']);
  const files = sourceFiles(root, tops).filter((f) => !own.has(relative(root, f)));
  assert.ok(files.length > 100, `only ${files.length} files scanned`);
  const problems: string[] = [];
  for (const f of files) {
    for (const p of citationProblems(readFileSync(f, 'utf8'), docs)) problems.push(`${relative(root, f)}: ${p}`);
  }
  for (const [name, text] of docs) {
    for (const p of citationProblems(text, docs, true)) problems.push(`docs/${name}: ${p}`);
  }
  assert.deepEqual(problems, []);
});
