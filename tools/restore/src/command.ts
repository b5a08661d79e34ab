// The cairn-restore command: a plan (--plan FILE|-, or made here from the
// target flags) in, a data directory ready to start out; or, with --dump, a
// logical dump restored into a database (restore-dump.ts).

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buffer } from 'node:stream/consumers';
import { CairnError, EXIT, isCairnError } from '@cairn/core/cli/errors';
import { defineTool, type ToolContext } from '@cairn/core/cli/run';
import { formatBytes } from '@cairn/core/cli/format';
import type { SettingDef, Settings } from '@cairn/core/config/settings';
import { PG_BIN_SETTING } from '@cairn/core/pg/binaries';
import { closeRepositories, keySourceArgs, loadKey, openRepositories, repoSettingsFrom } from '@cairn/core/repo/repositories';
import { TARGET_SETTINGS, parseTarget } from '@cairn/core/restore/target';
import { parsePlan } from '@cairn/core/restore/parse-plan';
import { makePlanFromRepositories } from '@cairn/core/restore/load-plan';
import type { RestorePlan } from '@cairn/core/restore/plan-format';
import { restore } from './restore.js';
import { shellWord } from '@cairn/core/util/literals';
import { restoreDump, type DumpRestoreResult } from './restore-dump.js';
import { assertUsableDirectory } from '@cairn/core/util/user-path';
import { parseDuration } from '@cairn/core/util/duration';
import { DEFAULT_RESTORE_LEASE_LIFETIME, isReaderLeaseId } from '@cairn/core/repo/reader-lease';
import { takeRestoreLease } from './restore-lease.js';
import { checkWalSource } from '@cairn/core/repo/wal-source';
import type { EncryptionKey } from '@cairn/core/codec/index';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { quote } from '@cairn/core/wal/quote';

/** Settings of a logical restore (--dump); the rest are a physical restore's. */
const DUMP_SETTINGS = [
  { name: 'dump', type: 'string', description: 'restore this logical dump (ID or DATABASE/ID from cairn-dump) through pg_restore instead of a backup', valueHint: 'ID', flagOnly: true },
  { name: 'dbname', type: 'string', description: '--dump: the database to restore into (the server comes from PGHOST/PGPORT/PGUSER)', valueHint: 'NAME' },
  { name: 'create', type: 'boolean', description: '--dump: create the database first (from template0); it is dropped again if the restore fails', default: false, flagOnly: true },
  { name: 'table', type: 'list', description: '--dump: restore only this table (pg_restore --table, repeatable)', valueHint: 'NAME', flagOnly: true },
  { name: 'list', type: 'boolean', description: '--dump: print the table of contents (pg_restore --list) instead of restoring', default: false, flagOnly: true },
  { name: 'globals', type: 'boolean', description: '--dump: restore the roles and tablespaces of that id\'s cairn-dump --all run through psql', default: false, flagOnly: true },
  { name: 'no-owner', type: 'boolean', description: '--dump: leave out ownership and privileges (pg_restore --no-owner --no-privileges)', default: false, flagOnly: true },
  { name: 'tmp-dir', type: 'string', description: '--dump with --jobs, --table or a directory-format dump: where the dump is fetched and checked before pg_restore reads it (default: $TMPDIR or /tmp)', valueHint: 'DIR' },
  PG_BIN_SETTING,
] as const satisfies readonly SettingDef[];
// These are flags only (never from the environment or the config file, where
// settings meant for other tools live); dbname, pg-bin and tmp-dir are left
// out: a config file set up for cairn-dump may well hold them, and a
// physical restore ignores them.
const DUMP_ONLY = ['create', 'table', 'list', 'globals', 'no-owner'];
const PHYSICAL_ONLY = ['plan', 'delta', 'force', 'tablespace-map', 'restore-command', 'config-dir', 'lease', 'lease-lifetime', ...TARGET_SETTINGS.map((d) => d.name)];

/** A duration in ms from `now` (months vary in length): the clock read once, so 30s is 30000 ms. */
function lifetimeMs(d: { after(date: Date): Date }, now: Date): number {
  return d.after(now).getTime() - now.getTime();
}

/** Settings of `names` that differ from their defaults. */
function givenSettings(settings: Settings, names: string[], defs: readonly SettingDef[]): string[] {
  return names.filter((n) => {
    const v = settings[n];
    const def = defs.find((d) => d.name === n)?.default;
    if (v === undefined || (Array.isArray(v) && v.length === 0)) return false;
    return JSON.stringify(v) !== JSON.stringify(def);
  });
}

/**
 * The installed cairn-wal-get beside this tool (node_modules/.bin in a
 * checkout, bin/ in a package: scripts/package.mjs), else the one on PATH.
 */
function walGetPath(): string {
  // Climb from this file (in dist/ or a bundle chunk) to the installation root.
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    for (const sub of ['node_modules/.bin', 'bin']) {
      const candidate = join(dir, sub, 'cairn-wal-get');
      if (existsSync(candidate)) return candidate;
    }
  }
  return 'cairn-wal-get';
}

const RESTORE_SETTINGS = [
  ...TARGET_SETTINGS,
  { name: 'pgdata', type: 'string', description: 'the data directory to restore into', env: ['CAIRN_PGDATA', 'PGDATA'], valueHint: 'DIR' },
  { name: 'plan', type: 'string', description: 'a plan from cairn-restore-plan (FILE, or - for stdin) instead of target flags', valueHint: 'FILE|-' },
  { name: 'delta', type: 'boolean', description: 'restore into a non-empty data directory (PG_VERSION, or an interrupted restore): keep files whose checksum matches, fetch the rest, remove what the backup lacks', default: false },
  { name: 'force', type: 'boolean', description: 'restore into a non-empty data directory (PG_VERSION, or an interrupted restore), removing what is there', default: false },
  { name: 'tablespace-map', type: 'list', description: 'put tablespace OLD (its OID or old location) at NEW (repeatable)', valueHint: 'OLD=NEW' },
  { name: 'jobs', type: 'integer', description: 'files fetched at once (default: the number of cores)', valueHint: 'N', min: 1, max: 256 },
  { name: 'restore-command', type: 'string', description: 'restore_command to write (default: this installation\'s cairn-wal-get with the same repository settings, the reader lease and the WAL the plan found)', valueHint: 'CMD' },
  {
    name: 'lease-lifetime', type: 'string', valueHint: 'DURATION', default: DEFAULT_RESTORE_LEASE_LIFETIME,
    description: 'how long the reader lease keeps what this recovery needs from cairn-expire without renewal (cairn-wal-get renews it while recovery fetches WAL)',
  },
  { name: 'config-dir', type: 'string', description: 'write the configuration files the backup kept from outside the data directory (a packaged server\'s /etc/postgresql/… files) here; never over existing files without --force', valueHint: 'DIR' },
  { name: 'lease', type: 'string', description: 'use this reader lease (cairn-drill\'s) instead of taking one', valueHint: 'ID', flagOnly: true },
  ...DUMP_SETTINGS,
] as const satisfies readonly SettingDef[];

export const restoreTool = defineTool({
  name: 'restore',
  description:
    'restore a backup into a data directory, configured to recover to the target through cairn-wal-get. ' +
    'Takes a plan from cairn-restore-plan (--plan FILE|-) or the same target flags. ' +
    'With several repositories, a file missing or damaged in the plan\'s is taken from the next one holding the same backup with the same SHA-256 (a warning names both), and the restore_command lists them all. ' +
    'With --dump ID --dbname NAME it restores a logical dump from cairn-dump through pg_restore instead (checksum checked before anything commits). ' +
    'Exit: 0 ready to start (or dump restored), 1 no backup/WAL reaches the target or no such dump, 2 usage, 3 configuration (e.g. a non-empty --pgdata, --force/--delta on a directory without PG_VERSION; pg_restore failed), 4 a stored file fails its checksum or the backup manifest is unsafe (a path outside its root, an object outside its chain).',
  positionals: [],
  settings: RESTORE_SETTINGS,
  examples: [
    'cairn-restore --pgdata /var/lib/postgresql/15/main --target-time "2026-11-21 14:03:00+00" --target-action promote',
    'cairn-restore-plan --target-name before_migration > plan.json && cairn-restore --pgdata /srv/pg --plan plan.json',
    'cairn-restore --dump app/20261121-020000L --dbname app_copy --create',
    'cairn-restore --dump 20261121-020000L --globals && cairn-restore --dump app/20261121-020000L --dbname app --create',
  ],
  async run(ctx) {
    const s = ctx.settings;
    if (s.dump !== undefined) return runDumpRestore(ctx, s.dump);
    const stray = givenSettings(s, DUMP_ONLY, DUMP_SETTINGS);
    if (stray.length > 0) throw new CairnError('USAGE', `--${stray[0]} applies to a logical restore only`, { hint: 'give --dump ID, or leave it out for a physical restore' });
    const repo = repoSettingsFrom(s, ctx.log);
    const pgdataSetting = s.pgdata;
    if (!pgdataSetting) throw new CairnError('USAGE', 'no data directory: give --pgdata DIR', { hint: 'e.g. cairn-restore --pgdata /var/lib/postgresql/15/main' });
    const pgdata = isAbsolute(pgdataSetting) ? pgdataSetting : resolve(ctx.cwd, pgdataSetting);
    const jobs = s.jobs ?? availableParallelism();
    const tsMap = new Map<string, string>();
    for (const m of s['tablespace-map']) {
      const eq = m.indexOf('=');
      if (eq <= 0 || !isAbsolute(m.slice(eq + 1))) throw new CairnError('USAGE', `invalid --tablespace-map "${m}"`, { hint: 'use OLD=NEW with NEW an absolute path, e.g. 16385=/srv/ts1' });
      tsMap.set(m.slice(0, eq), m.slice(eq + 1));
    }
    const planArg = s.plan;
    const lifetime = parseDuration(s['lease-lifetime'], '--lease-lifetime');
    const adopt = s.lease;
    if (adopt !== undefined && !isReaderLeaseId(adopt)) throw new CairnError('USAGE', `invalid --lease ${JSON.stringify(adopt)}`, { hint: 'give the id of a reader lease (cairn-info lists them), or leave --lease out' });
    // Flag mistakes exit 2 before any repository is opened.
    const parsed = planArg === undefined ? parseTarget(s) : undefined;
    const key = await loadKey(repo, ctx.env, ctx.signal);
    const drivers = await openRepositories(repo.repos, ctx.env);
    try {
      let plan: RestorePlan;
      if (planArg !== undefined) {
        const text = planArg === '-' ? (await buffer(ctx.stdin)).toString('utf8') : await readFile(planArg, 'utf8').catch((err: NodeJS.ErrnoException) => {
          throw new CairnError('FILE_UNREADABLE', `cannot read plan "${planArg}": ${err.code ?? err.message}`, { hint: 'give the file cairn-restore-plan wrote, or - to read it from stdin' });
        });
        plan = parsePlan(text, planArg);
      } else {
        const { target, set } = parsed!;
        plan = await makePlanFromRepositories({ drivers, cluster: repo.cluster, key, target, ...(set ? { set } : {}), now: ctx.now(), signal: ctx.signal });
      }
      if (plan.cluster !== repo.cluster) {
        throw new CairnError('CONFIG_INVALID', `the plan is for cluster "${plan.cluster}", not "${repo.cluster}"`, { hint: `give --cluster ${plan.cluster}` });
      }
      const driver = drivers.find((d) => d.url === plan.repo);
      if (!driver) {
        throw new CairnError('CONFIG_INVALID', `the plan's repository "${plan.repo}" is not configured`, { hint: 'give the same --repo the plan was made with' });
      }
      for (const w of plan.warnings) ctx.log.warn(w);
      // What this recovery needs stays in the repository while it runs (issue 12).
      const lease = await takeRestoreLease({ driver, cluster: repo.cluster, plan, pgdata, adopt, lifetimeMs: lifetimeMs(lifetime, ctx.now()) }, ctx);
      let r;
      try {
        const others = drivers.filter((d) => d !== driver);
        const args = ['%f', '%p', ...(await walRepoArgs(driver, others, repo.cluster, plan.systemId, key, ctx)), '--cluster', repo.cluster];
        args.push(...keySourceArgs(repo, (p) => resolve(ctx.cwd, p)));
        const cfg = s.config;
        if (cfg) args.push('--config', resolve(ctx.cwd, cfg));
        args.push(...lease.restoreCommandArgs);
        const restoreCommand = s['restore-command'] ?? [shellWord(walGetPath()), ...args.map((a) => (a.startsWith('%') ? a : shellWord(a)))].join(' ');
        r = await restore({ plan, driver, key, pgdata, delta: s.delta, force: s.force, tablespaceMap: tsMap, jobs, restoreCommand, keyFile: repo.keyFile, keyCommand: repo.keyCommand, others, configDir: s['config-dir'] === undefined ? undefined : resolve(ctx.cwd, s['config-dir']) }, ctx);
      } catch (err) {
        await lease.abandon();
        throw err;
      }
      const mb = (r.bytesWritten / 1e6).toFixed(1);
      ctx.stderr.write(
        `cairn-restore: backup ${r.backup} restored to "${r.pgdata}" in ${r.seconds.toFixed(1)} s: ${r.filesFetched} files fetched (${mb} MB, ${(r.bytesWritten / 1e6 / Math.max(r.seconds, 0.001)).toFixed(0)} MB/s)` +
          `${s.delta ? `, ${r.filesKept} kept (${(r.bytesKept / 1e6).toFixed(1)} MB), ${r.removed} removed` : ''}; ` +
          `recovery: ${Object.entries(plan.recoverySettings).map(([k, v]) => `${k}=${v}`).join(' ') || 'to the end of the archive'}; ` +
          `${lease.id !== undefined ? `reader lease ${lease.id} keeps its backup and WAL from cairn-expire (renewed while it fetches WAL, else lapses after ${lifetime.text}); ` : ''}start PostgreSQL to recover\n`,
      );
      if (s.json) ctx.stdout.write(JSON.stringify({ ...r, lease: lease.id ?? null, plan }) + '\n');
      return EXIT.OK;
    } finally {
      await closeRepositories(drivers);
    }
  },
});

/**
 * The --repo flags of the restore_command: the plan's repository first, then
 * every other configured one that holds the plan's system, so cairn-wal-get
 * takes a segment missing or damaged in one from the next (issue 18 item 3).
 * One that does not hold it is left out: to wal-get it would turn the end of
 * the archive into an error (docs/design.md §4.12).
 */
async function walRepoArgs(first: StorageDriver, others: StorageDriver[], cluster: string, systemId: string, key: EncryptionKey | undefined, ctx: ToolContext): Promise<string[]> {
  const args = ['--repo', first.url];
  for (const d of others) {
    try {
      await checkWalSource(d, cluster, systemId, key, ctx.signal);
      args.push('--repo', d.url);
    } catch (err) {
      ctx.signal.throwIfAborted();
      ctx.log.info(`repository ${quote(d.url)} is not in the restore_command: ${(err as Error).message}`);
    }
  }
  return args;
}

/** cairn-restore --dump: flags checked, restoreDump() run, a summary on stderr. */
async function runDumpRestore(ctx: ToolContext<typeof RESTORE_SETTINGS>, ref: string): Promise<number> {
  const s = ctx.settings;
  const allDefs = [...TARGET_SETTINGS, ...RESTORE_SETTINGS];
  // --pgdata is not among them: PGDATA and the config file's pgdata are
  // there for the other tools, and a logical restore has no use for it.
  const physical = givenSettings(s, PHYSICAL_ONLY, allDefs);
  if (physical.length > 0) throw new CairnError('USAGE', `--${physical[0]} applies to a physical restore, not to --dump`, { hint: 'a dump restores into a database: give --dump ID --dbname NAME' });
  const repo = repoSettingsFrom(s, ctx.log);
  const { list, globals, dbname, table: tables, create } = s;
  if (!list && !globals && !dbname) throw new CairnError('USAGE', '--dump needs --dbname NAME (the database to restore into)', { hint: 'e.g. cairn-restore --dump app/20261121-020000L --dbname app --create; --list prints its contents' });
  if (globals && (create || tables.length > 0)) throw new CairnError('USAGE', '--globals restores roles and tablespaces: --create and --table do not apply', { hint: 'restore the globals, then each database with --dump DATABASE/ID --dbname NAME' });
  if (list && (create || tables.length > 0)) throw new CairnError('USAGE', '--list prints the table of contents: --create and --table do not apply', { hint: 'leave out --list to restore' });
  const jobs = s.jobs ?? 1;
  const tmpDir = resolve(ctx.cwd, s['tmp-dir'] ?? ctx.env['TMPDIR'] ?? tmpdir());
  if (s['tmp-dir'] !== undefined) assertUsableDirectory(tmpDir, '--tmp-dir', { writable: true });
  const key = await loadKey(repo, ctx.env, ctx.signal);
  const drivers = await openRepositories(repo.repos, ctx.env);
  try {
    // The first repository that has the dump.
    let r: DumpRestoreResult | undefined;
    for (const [i, driver] of drivers.entries()) {
      try {
        r = await restoreDump({
          driver, cluster: repo.cluster, key, ref, globals, list, dbname, create, jobs, tables,
          noOwner: s['no-owner'], pgBin: s['pg-bin'], tmpDir,
        }, ctx);
        break;
      } catch (err) {
        if (!isCairnError(err, 'NOT_FOUND') || i === drivers.length - 1) throw err;
      }
    }
    if (!r) throw new CairnError('INTERNAL', 'no repository tried');
    if (r.mode !== 'list') {
      ctx.stderr.write(
        `cairn-restore: dump ${r.dump} ${r.mode === 'globals' ? `run through psql on database "${r.database}"${r.sqlErrors ? ` (${r.sqlErrors} statements failed)` : ''}` : `restored into database "${r.database}"`}: ` +
          `${formatBytes(r.bytes)} in ${r.seconds.toFixed(1)} s, checksum verified\n`,
      );
      if (s.json) ctx.stdout.write(JSON.stringify(r) + '\n');
    }
    return EXIT.OK;
  } finally {
    await closeRepositories(drivers);
  }
}
