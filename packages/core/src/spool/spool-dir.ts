// Local spool directories (push-ahead records, prefetched WAL): private by
// construction (docs/design.md §4 rule 12, docs/threat-model.md). The default root is
// pg_wal/.cairn-spool of the data directory (WAL-G keeps pg_wal/.wal-g the
// same way): the server's own directory, on its file system, with no shared
// directory in the path. Below the root, one directory per invocation context
// (data directory, flags, CAIRN_* environment, config file), so what a fast
// path trusts was written for this repository set. The bin wrappers find the
// same directories in bash, from the same values (contract.ts, written into
// them by scripts/gen-spool-contract.mjs).

import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { link, lstat, mkdir, readdir, readFile, realpath, rm, unlink, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { Logger } from '../cli/log.js';
import { tempPathFor } from '../util/local-file.js';
import {
  CONTEXT_ABSENT, CONTEXT_ARG, CONTEXT_CONFIG, CONTEXT_CWD, CONTEXT_DEFAULT_CONFIG, CONTEXT_ENV, CONTEXT_FILE, CONTEXT_HEADER, CONTEXT_PRESENT,
  NOT_CONTEXT_ENV, SPOOL_DIR_NAME, WAL_DIR, type SpoolKind,
} from './contract.js';

const notContextEnv = new Set(NOT_CONTEXT_ENV);

/** A spool that fails a check: the tool then runs without it, with one warning. */
export class SpoolRefused extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`spool "${path}" ${reason}`);
  }
}

const euid = (): number => (typeof process.geteuid === 'function' ? process.geteuid() : 0);

/** What is wrong with an owner and mode, in words for the one warning line. */
function describeBad(st: { uid: number; mode: number }): string | undefined {
  if (st.uid !== euid()) return `is owned by uid ${st.uid}, not by this user (uid ${euid()})`;
  if ((st.mode & 0o022) !== 0) return `is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`;
  return undefined;
}

/**
 * lstat `path`: a real directory (or, with `file`, a regular file) owned by
 * the effective user, not writable by group or others. Throws SpoolRefused.
 */
export async function checkPrivate(path: string, want: 'dir' | 'file' = 'dir'): Promise<void> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    throw new SpoolRefused(path, `cannot be checked (${err.code ?? String(err)})`);
  });
  if (st.isSymbolicLink()) throw new SpoolRefused(path, 'is a symbolic link');
  if (want === 'dir' ? !st.isDirectory() : !st.isFile()) throw new SpoolRefused(path, `is not a ${want === 'dir' ? 'directory' : 'regular file'}`);
  const bad = describeBad(st);
  if (bad) throw new SpoolRefused(path, bad);
}

/** checkPrivate as a yes or no, for the places that skip what fails it. */
export function isPrivate(path: string, want: 'dir' | 'file' = 'dir'): Promise<boolean> {
  return checkPrivate(path, want).then(() => true, () => false);
}

/**
 * Every directory above a configured root (after resolving links) must be
 * owned by root or by us, and writable by others only with the sticky bit
 * (/tmp): otherwise another user could rename the spool away and plant one.
 */
async function checkAncestors(dir: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    const st = await lstat(d).catch((err: NodeJS.ErrnoException) => {
      throw new SpoolRefused(d, `cannot be checked (${err.code ?? String(err)})`);
    });
    if (st.uid !== 0 && st.uid !== euid()) throw new SpoolRefused(d, `lies in "${d}", owned by uid ${st.uid} (only root or this user may own the directories above a spool)`);
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) throw new SpoolRefused(d, `lies in "${d}", writable by others without the sticky bit`);
    if (dirname(d) === d) return;
  }
}

/** mkdir 0700 unless it exists; then the lstat check. True when it was made now. */
async function makePrivateDir(path: string): Promise<boolean> {
  const made = await mkdir(path, { mode: 0o700 }).then(() => true, (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw new SpoolRefused(path, `cannot be created (${err.code ?? String(err)})`);
    return false;
  });
  await checkPrivate(path);
  return made;
}

/** Context directories unused this long are removed when another is made (a changed config or command line leaves its old one behind). */
export const STALE_CONTEXT_MS = 7 * 24 * 3600_000;

/** Removes the context directories under `kindDir` but `keep` that nothing has touched for STALE_CONTEXT_MS. */
async function pruneStaleContexts(kindDir: string, keep: string): Promise<void> {
  const now = Date.now();
  for (const name of await readdir(kindDir).catch(() => [] as string[])) {
    if (name === keep || !/^[0-9a-f]{32}$/.test(name)) continue;
    const dir = join(kindDir, name);
    const st = await lstat(dir).catch(() => undefined);
    if (!st?.isDirectory() || now - st.mtimeMs < STALE_CONTEXT_MS) continue;
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

export type SpoolRootChoice = { root: string; configured: boolean } | { root: undefined; why: string };

/**
 * The spool root: the configured directory (--spool-dir / CAIRN_SPOOL_DIR /
 * config file), else pg_wal/.cairn-spool of the data directory `cwd`
 * (pg_wal resolved: initdb -X makes it a link). No root when `cwd` has no
 * pg_wal (a command run outside a data directory): no spool, no warning.
 */
export function chooseSpoolRoot(configured: string | undefined, cwd: string): SpoolRootChoice {
  if (configured) return { root: resolve(cwd, configured), configured: true };
  try {
    return { root: join(realpathSync(join(cwd, WAL_DIR)), SPOOL_DIR_NAME), configured: false };
  } catch {
    return { root: undefined, why: `no ${WAL_DIR} in "${cwd}"` };
  }
}

/**
 * Checks (and creates, 0700) the root and the directories below it down to
 * `<root>/<kind>/<key>` for `context`, writing the context file on first use.
 * Every call checks every component again with lstat: nothing is trusted from
 * an earlier run. Returns the context directory; throws SpoolRefused.
 */
export async function openContextDir(choice: { root: string; configured: boolean }, kind: SpoolKind, context: Buffer): Promise<string> {
  const { root } = choice;
  if (choice.configured) {
    // A link or planted directory at the root itself is refused by checkPrivate.
    const parent = await realpath(dirname(root)).catch((err: NodeJS.ErrnoException) => {
      throw new SpoolRefused(root, `cannot be used: its parent is missing (${err.code ?? String(err)})`);
    });
    await checkAncestors(parent);
  } else {
    // pg_wal (resolved) is the server's own directory: it must be private too.
    await checkPrivate(dirname(root));
  }
  await makePrivateDir(root);
  await makePrivateDir(join(root, kind));
  const key = contextKey(context);
  const dir = join(root, kind, key);
  if (await makePrivateDir(dir)) await pruneStaleContexts(join(root, kind), key);
  const file = join(dir, CONTEXT_FILE);
  const have = await readFile(file).catch(() => undefined);
  if (have === undefined) {
    // Whole or not at all (a temp name, then link, which never replaces): a
    // concurrent first call reads either nothing or the whole context.
    const tmp = tempPathFor(file);
    try {
      await writeFile(tmp, context, { mode: 0o600, flag: 'wx' });
      await link(tmp, file).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    } catch (err) {
      throw new SpoolRefused(file, `cannot be written (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }
  await checkPrivate(file, 'file');
  if (!(have ?? (await readFile(file))).equals(context)) throw new SpoolRefused(file, 'holds another context');
  return dir;
}

/** The name of a context's directory: 32 hex digits of its SHA-256. */
export function contextKey(context: Buffer): string {
  return createHash('sha256').update(context).digest('hex').slice(0, 32);
}

export interface SpoolInvocation {
  /** The physical working directory (PostgreSQL runs the commands in the data directory). */
  cwd: string;
  /** The command line as given. */
  argv: string[];
  /** Its positionals (%p %f or %f %p), left out of the context. */
  positionals: string[];
  env: NodeJS.ProcessEnv;
}

/**
 * The argv without its positionals: the trailing ones when they end the
 * command line (the wrappers' fast paths only handle that shape), else the
 * last occurrence of each.
 */
export function contextArgs(argv: string[], positionals: string[]): string[] {
  const n = positionals.length;
  if (n <= argv.length && positionals.every((p, i) => argv[argv.length - n + i] === p)) return argv.slice(0, argv.length - n);
  const out = [...argv];
  for (const p of positionals) {
    const i = out.lastIndexOf(p);
    if (i >= 0) out.splice(i, 1);
  }
  return out;
}

/** The config file a command line reads: the last --config, else CAIRN_CONFIG, else the default. */
export function contextConfigPath(args: string[], env: NodeJS.ProcessEnv): string {
  let path: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--config' && i + 1 < args.length) path = args[++i];
    else if (a.startsWith('--config=')) path = a.slice('--config='.length);
  }
  return path ?? env['CAIRN_CONFIG'] ?? CONTEXT_DEFAULT_CONFIG;
}

/**
 * The invocation context, byte for byte as the bin wrappers build it in bash
 * (the header and line prefixes are contract.ts's):
 *
 *   cairn spool context 1\n
 *   cwd=<physical cwd>\n
 *   arg=<each argument but the positionals, in order>\n
 *   env=<NAME>=<value>\n          every CAIRN_* variable, sorted by name
 *   config=<path>\n
 *   present\n<the config file's bytes> | absent\n
 *
 * Everything that picks the repositories, cluster and system is in it (flags,
 * environment, the config file's content), so a record or prefetched segment
 * made under one never answers another.
 */
export function spoolContext(inv: SpoolInvocation): Buffer {
  const args = contextArgs(inv.argv, inv.positionals);
  const lines = [CONTEXT_HEADER, CONTEXT_CWD + inv.cwd, ...args.map((a) => CONTEXT_ARG + a)];
  const names = Object.keys(inv.env).filter((k) => k.startsWith('CAIRN_') && !notContextEnv.has(k) && inv.env[k] !== undefined);
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const k of names) lines.push(`${CONTEXT_ENV}${k}=${inv.env[k]}`);
  const configPath = contextConfigPath(args, inv.env);
  lines.push(CONTEXT_CONFIG + configPath);
  let config: Buffer | undefined;
  try {
    config = readFileSync(isAbsolute(configPath) ? configPath : resolve(inv.cwd, configPath));
  } catch {
    config = undefined;
  }
  const head = Buffer.from(lines.join('\n') + '\n' + (config ? CONTEXT_PRESENT : CONTEXT_ABSENT) + '\n');
  return config ? Buffer.concat([head, config]) : head;
}

/** What a tool needs to open its spool: where the root is and the context it keys by. */
export interface SpoolPlan {
  choice: SpoolRootChoice;
  context: Buffer;
}

/** The plan for a call of wal-push or wal-get (the wrappers compute the same). */
export function planSpool(configured: string | undefined, inv: SpoolInvocation): SpoolPlan {
  return { choice: chooseSpoolRoot(configured, inv.cwd), context: spoolContext(inv) };
}

/**
 * The context directory to use, or undefined: a spool that cannot be used
 * safely never stops archiving or recovery, the tool runs without it (slower)
 * after ONE warning line naming what is wrong.
 */
export async function openSpool(plan: SpoolPlan, kind: SpoolKind, log: Logger): Promise<string | undefined> {
  if (plan.choice.root === undefined) {
    log.debug(`no spool: ${plan.choice.why}`);
    return undefined;
  }
  try {
    return await openContextDir(plan.choice, kind, plan.context);
  } catch (err) {
    const what = kind === 'push' ? 'archiving without push-ahead' : 'fetching without prefetch';
    log.warn(`${err instanceof SpoolRefused ? err.message : `spool "${plan.choice.root}": ${String(err)}`}: ${what}; remove it or set --spool-dir / CAIRN_SPOOL_DIR to a directory only this user can write`);
    return undefined;
  }
}
