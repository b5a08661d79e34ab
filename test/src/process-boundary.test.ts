// Below a tool's cli.ts nothing reads process.env, process.argv or
// process.stdin or calls process.exit (docs/style.md §Shape of a tool): a tool
// run by runTool in a test, or by the dispatcher, sees only its context, and a
// module that reached around it would read the test runner's environment.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { sourceFiles } from './docs-check.js';

const root = new URL('../../', import.meta.url).pathname;

/** The process's own entries: the bins, core's binding of a tool to the process, detached workers' entries. */
const ENTRY = [/^tools\/[^/]+\/src\/cli\.ts$/, /^packages\/cli\/src\/cli\.ts$/, /^packages\/core\/src\/cli\/main\.ts$/, /^tools\/[^/]+\/src\/[^/]+-main\.ts$/];

/** The code of a TypeScript file without its comments (strings stay: a string that names process.env is still a reach for it). */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

/** `file:line: text` for every use of process.env/argv/stdin/exit in `text`. */
export function processUses(file: string, text: string): string[] {
  const out: string[] = [];
  code(text).split('\n').forEach((line, i) => {
    const reach = /\bprocess\s*\.\s*(env|argv|stdin|exit)\b|\bprocess\s*\[\s*['"`](env|argv|stdin|exit)['"`]\s*\]/;
    const destructure = /\{[^}]*\b(env|argv|stdin|exit)\b[^}]*\}\s*=\s*process\b/;
    if (reach.test(line) || destructure.test(line)) out.push(`${file}:${i + 1}: ${line.trim()}`);
  });
  return out;
}

test('the check finds each way of reaching the process and ignores comments', () => {
  for (const bad of ['const h = process.env.PGHOST;', 'x(process.argv.slice(2))', 'for await (const c of process.stdin) {}', 'process.exit(1);', "const e = process['env'];", 'const { env } = process;', 'process .exit(2)']) {
    assert.notDeepEqual(processUses('f.ts', bad), [], bad);
  }
  for (const good of ['// pg reads process.env otherwise', '/* process.exit is the bin\'s */', '/**\n * nothing reads process.stdin\n */', 'process.exitCode = 1;', 'const url = "file:///x"; // process.env']) {
    assert.deepEqual(processUses('f.ts', good), [], good);
  }
});

test('no module below a tool\'s cli.ts reads process.env, process.argv or process.stdin or calls process.exit', () => {
  const files = sourceFiles(root, ['packages/core/src', 'packages/cli/src', 'tools'])
    .map((p) => relative(root, p))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.d.ts') && !f.startsWith('packages/core/src/testing/'))
    .filter((f) => !/^tools\/[^/]+\/bin\//.test(f));
  assert.ok(files.length > 100, `found only ${files.length} source files: the walk is broken`);
  const uses = files.filter((f) => !ENTRY.some((re) => re.test(f))).flatMap((f) => processUses(f, readFileSync(`${root}${f}`, 'utf8')));
  assert.deepEqual(uses, [], 'pass the value in through the ToolContext (ctx.env, ctx.stdin) or a parameter, or return an exit status');
});
