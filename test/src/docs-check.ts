// Checks that keep the docs true to the tree: every citation of the project's
// notes names a file in docs/ and a section it has, and the README's "Where
// things are" tables list every core folder, every tool, its files and the
// core areas it imports. Pure functions over texts; the tests feed the tree.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Notes that lived outside the repository; a citation must name docs/<file>.md instead. */
const OLD_NOTES = /(?<![\w/.-])(DESIGN|STYLE|GOTCHAS|POSTGRES|INCREMENTAL)(\.md)?\b/g;
/** A section token after §: `4`, `4.12`, `4.2–4.4`, or the first word of a heading (`Streams`, `s3rver`). */
const SECTION = String.raw`§\s?([0-9]+(?:\.[0-9]+)?(?:[–-][0-9]+(?:\.[0-9]+)?)?|[A-Za-z][\w-]*)`;
const SECTION_RE = new RegExp(SECTION, 'g');

/** Comment continuation lines joined, so a citation broken over two comment lines reads as one. */
function joinComments(text: string): string {
  return text.replace(/\n[ \t]*(?:\/\/|\*|#)[ \t]*/g, ' ');
}

/** The sections of a markdown file: heading texts, and for numbered headings their numbered list items (rules). */
export function sectionsOf(markdown: string): { headings: string[]; items: Map<string, Set<string>> } {
  const headings: string[] = [];
  const items = new Map<string, Set<string>>();
  let current: string | undefined;
  for (const line of markdown.split('\n')) {
    const h = /^#{1,6}\s+(.*)$/.exec(line);
    if (h) {
      headings.push(h[1]!.trim());
      const n = /^([0-9]+)\./.exec(h[1]!.trim());
      current = n ? n[1]! : undefined;
      if (current && !items.has(current)) items.set(current, new Set());
      continue;
    }
    const item = /^([0-9]+)\.\s/.exec(line);
    if (item && current) items.get(current)!.add(item[1]!);
  }
  return { headings, items };
}

/** Whether `token` (what follows §) names a section of the file. */
export function hasSection(markdown: string, token: string): boolean {
  const { headings, items } = sectionsOf(markdown);
  if (/^[0-9]/.test(token)) {
    return token.split(/[–-]/).every((part) => {
      const [sec, rule] = part.split('.');
      if (!items.has(sec!)) return false;
      return rule === undefined || items.get(sec!)!.has(rule);
    });
  }
  const word = token.toLowerCase();
  return headings.some((h) => h.toLowerCase().replace(/^[0-9.]+\s*/, '').split(/[\s,:;()]+/)[0] === word);
}

/**
 * The broken citations in one file's text: a note cited by its old name, a
 * docs/*.md that is not there, a § the file does not have. `docs` maps a file
 * name in docs/ to its text. In a file inside docs/, `name.md` is relative.
 */
export function citationProblems(text: string, docs: Map<string, string>, inDocs = false): string[] {
  const problems: string[] = [];
  const joined = joinComments(text);
  for (const m of joined.matchAll(OLD_NOTES)) {
    problems.push(`cites "${m[0]}": cite docs/${m[1]!.toLowerCase()}.md instead`);
  }
  const ref = new RegExp(
    String.raw`${inDocs ? String.raw`(?<![\w./-])(?:docs/)?` : String.raw`(?<![\w.-])docs/`}([a-z0-9-]+\.md)((?:[\s,]*(?:and\s+)?${SECTION})*)`,
    'g',
  );
  for (const m of joined.matchAll(ref)) {
    const file = m[1]!;
    const body = docs.get(file);
    if (body === undefined) {
      problems.push(`cites docs/${file}, which does not exist`);
      continue;
    }
    for (const s of (m[2] ?? '').matchAll(SECTION_RE)) {
      if (!hasSection(body, s[1]!)) problems.push(`cites docs/${file} §${s[1]}, which that file does not have`);
    }
  }
  return problems;
}

/** Every text file under the given roots of the repository, without node_modules, build output or bundles. */
export function sourceFiles(root: string, tops: string[]): string[] {
  const out: string[] = [];
  const skip = new Set(['node_modules', 'dist', 'bundle', '.turbo']);
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      if (skip.has(n)) continue;
      const p = join(dir, n);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (/\.(ts|mjs|js|sh|md|ya?ml|service|timer|example)$|^cairn[-\w]*$|^Dockerfile|^crontab$|^run$/.test(n)) out.push(p);
    }
  };
  for (const t of tops) {
    const p = join(root, t);
    if (statSync(p, { throwIfNoEntry: false })?.isDirectory()) walk(p);
    else if (statSync(p, { throwIfNoEntry: false })?.isFile()) out.push(p);
  }
  return out;
}

/** The README's "Where things are" section. */
export function whereSection(readme: string): string {
  const start = readme.indexOf('\n## Where things are\n');
  if (start < 0) return '';
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

export interface ToolRow {
  files: string[];
  areas: string[];
}

/** The tools table: tool → the .ts files its row names, and the core areas of its last column. */
export function toolRows(section: string): Map<string, ToolRow> {
  const rows = new Map<string, ToolRow>();
  for (const line of section.split('\n')) {
    const m = /^\| `([a-z-]+)` \| (.*) \| ((?:`[a-z-]+` ?)+) \|$/.exec(line);
    if (!m) continue;
    rows.set(m[1]!, {
      files: [...m[2]!.matchAll(/`([\w-]+\.ts)`/g)].map((f) => f[1]!),
      areas: [...m[3]!.matchAll(/`([a-z-]+)`/g)].map((a) => a[1]!),
    });
  }
  return rows;
}

/** The folders the core table names (`core/<folder>/`). */
export function coreRows(section: string): string[] {
  return [...section.matchAll(/^\| `core\/([a-z0-9-]+)\/` \|/gm)].map((m) => m[1]!);
}

/** The core areas (first path segment under @cairn/core/) a tool's non-test sources import, statically or lazily. */
export function importedAreas(srcDir: string): string[] {
  const areas = new Set<string>();
  for (const n of readdirSync(srcDir)) {
    if (!n.endsWith('.ts') || n.endsWith('.test.ts')) continue;
    for (const m of readFileSync(join(srcDir, n), 'utf8').matchAll(/['"]@cairn\/core\/([a-z0-9-]+)/g)) areas.add(m[1]!);
  }
  return [...areas].sort();
}
