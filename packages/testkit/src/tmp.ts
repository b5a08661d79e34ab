// Temporary directories for tests, all under one per-process base that the pg
// user can traverse, each removed by runCleanups() and, failing that, at exit.
import { chmodSync, existsSync, lchownSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { chown, mkdtemp, chmod, readdir, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { onCleanup } from './cleanup.js';
import { pgUser } from './run-as.js';

export interface TempDirOptions {
  /**
   * Who owns the directory (mode 0700). 'pg' (the default): the user PostgreSQL
   * and archive/restore commands run as, so a data dir, socket dir, file
   * repository or spool dir works for the server; root can use it anyway.
   * 'me': this process's user. The two are the same user when not running as root.
   */
  owner?: 'pg' | 'me';
  /**
   * Default true: removal registered with onCleanup. false: the caller removes
   * it (removeTempDir) in the right order, e.g. only after stopping a server
   * that runs in it; the exit handler still removes it as a last resort.
   */
  register?: boolean;
}

let base: string | undefined;
const exitHooks: Array<() => void> = [];
let exitHandlerInstalled = false;

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Can `uid`/`gid` search (x) every directory from / down to `dir`? Mode bits only; enough for tmp dirs. */
function traversable(dir: string, uid: number, gid: number): boolean {
  for (let d = dir; ; d = dirname(d)) {
    let st;
    try {
      st = statSync(d);
    } catch {
      return false;
    }
    const bit = st.uid === uid ? 0o100 : st.gid === gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return false;
    if (dirname(d) === d) return true;
  }
}

/**
 * The per-process base directory: a fresh `cairn-test-*` under os.tmpdir()
 * (or /tmp if the pg user could not reach os.tmpdir()), mode 0711 so the pg
 * user can reach the dirs inside but not list the base.
 */
export function tempBase(): string {
  if (base !== undefined && existsSync(base)) return base;
  const u = pgUser();
  const parent = traversable(tmpdir(), u.uid, u.gid) ? tmpdir() : '/tmp';
  base = mkdtempSync(join(parent, 'cairn-test-'));
  chmodSync(base, 0o711);
  installExitHandler();
  return base;
}

/**
 * A fresh directory `<base>/<prefix>-XXXXXX`, mode 0700, owned per `opts.owner`
 * (default the pg user). Registered with onCleanup for recursive removal; the
 * returned path is absolute.
 */
export async function makeTempDir(prefix: string, opts: TempDirOptions = {}): Promise<string> {
  const safe = prefix.replace(/[^\w.-]/g, '_') || 'tmp';
  const root = tempBase();
  const dir = await mkdtemp(join(root, `${safe}-`));
  await chmod(dir, 0o700);
  if ((opts.owner ?? 'pg') === 'pg') await chownToPgUser(dir);
  if (opts.register !== false) onCleanup(() => removeTempDir(dir));
  return dir;
}

/** Remove a temp dir (and the base once it is empty). Safe to call twice. */
export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  const root = dirname(dir);
  if (root === base) {
    try {
      await rmdir(root); // only succeeds once the last dir inside is gone
      base = undefined;
    } catch {
      // not empty yet, or already gone
    }
  }
}

/**
 * Give `path` (recursively, not following symlinks) to the pg user. A no-op
 * when not running as root: then the pg user is this process's user.
 */
export async function chownToPgUser(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
  if (!isRoot()) return;
  const { uid, gid } = pgUser();
  await chown(path, uid, gid);
  if (opts.recursive === false) return;
  let entries;
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch {
    return; // not a directory
  }
  for (const e of entries) {
    const p = join(path, e.name);
    if (e.isDirectory()) await chownToPgUser(p, opts);
    else lchownSync(p, uid, gid);
  }
}

/**
 * Register a synchronous last-resort step for process exit, run before the
 * temp base is removed (e.g. killing servers still running in it). Only what
 * runCleanups() did not already handle is left for it.
 */
export function onExitSync(fn: () => void): void {
  exitHooks.push(fn);
  installExitHandler();
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.once('exit', () => {
    for (const fn of exitHooks) {
      try {
        fn();
      } catch {
        // best effort: the next hook and the removal still run
      }
    }
    if (base !== undefined) {
      try {
        rmSync(base, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        // nothing more can be done at exit
      }
    }
  });
}
