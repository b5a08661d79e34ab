// The cairn-drill command: a restore test. Flags in; the drill's summary on
// stderr, its result (cairn.drill/1) on stdout with --json and in the
// repository. Exit 0 when every check passed, 1 when one failed (or recovery
// failed or timed out), the failing step's status otherwise.

import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { CairnError } from '@cairn/core/cli/errors';
import { defineTool, type ToolContext } from '@cairn/core/cli/run';
import type { SettingDef } from '@cairn/core/config/settings';
import { parseCheckSql, type CheckStatement } from '@cairn/core/drill/check-sql';
import type { DrillResult } from '@cairn/core/drill/result-format';
import { PG_BIN_SETTING } from '@cairn/core/pg/binaries';
import { repoSettingsFrom } from '@cairn/core/repo/repositories';
import { describeTarget, parseTarget, TARGET_SETTINGS } from '@cairn/core/restore/target';
import { parseDuration } from '@cairn/core/util/duration';
import { drill, lookupOsUser, type DrillOutcome, type DrillSource } from './drill.js';
import { assertUsableDirectory } from '@cairn/core/util/user-path';

// --target-action is not offered: a drill always promotes (it checks a
// writable server); the rest of the target flags are restore-plan's.
const DRILL_TARGET_SETTINGS = TARGET_SETTINGS.filter((s) => s.name !== 'target-action');

const SETTINGS = [
  ...DRILL_TARGET_SETTINGS,
  { name: 'plan', type: 'string', description: 'drill this plan from cairn-restore-plan (FILE, or - for stdin) instead of target flags', valueHint: 'FILE|-', flagOnly: true },
  { name: 'dump', type: 'string', description: 'drill a logical dump (DATABASE/ID or ID) instead of a backup: restored into a scratch cluster', valueHint: 'ID', flagOnly: true },
  { name: 'check-sql', type: 'string', description: 'SQL checks: statements ending with ";" at a line end, each returning one row whose first column is true (or "-- expect: N rows" before it)', valueHint: 'FILE' },
  { name: 'check-db', type: 'string', description: 'the database the checks connect to (a backup drill; a dump drill uses the dump\'s database)', default: 'postgres', valueHint: 'NAME' },
  { name: 'db-user', type: 'string', description: 'the role the checks connect as (default: PGUSER, else the superuser the backup recorded, else the OS user the scratch server runs as)', valueHint: 'ROLE' },
  { name: 'amcheck', type: 'boolean', description: 'run pg_amcheck on the restored databases when it is installed (--no-amcheck: skip)', default: true },
  { name: 'timeout', type: 'string', description: 'how long PostgreSQL may take from start to promotion (recovery)', default: '1h', valueHint: 'DURATION' },
  { name: 'scratch-dir', type: 'string', description: 'where the scratch directory cairn-drill-<id>-XXXXXX is made (default: $TMPDIR, else /tmp); needs room for the restored backup', valueHint: 'DIR' },
  { name: 'keep', type: 'boolean', description: 'leave the scratch server running and its directory in place (they are printed) instead of removing them', default: false, flagOnly: true },
  { name: 'run-as', type: 'string', description: 'started as root: the OS user PostgreSQL runs as (default postgres)', valueHint: 'USER' },
  // pg_ctl and initdb must be the backup's major (core/pg/binaries.ts fits()).
  { ...PG_BIN_SETTING, description: "directory of pg_ctl, initdb and pg_amcheck; pg_ctl and initdb must be the backup's major version (default: /usr/lib/postgresql/N/bin for the backup's major N, pg_config --bindir, then PATH: the first of that major)" },
] as const satisfies readonly SettingDef[];

export const drillTool = defineTool({
  name: 'drill',
  // After SIGTERM: stop the scratch server and remove the scratch directory,
  // which for a large restore takes longer than the default 2 s.
  signalGraceMs: 60_000,
  description:
    'restore test: restore a backup to a target (or a logical dump) into a scratch directory, start PostgreSQL there, wait until recovery reaches the target and promotes, ' +
    'run checks (connections, recovery target, pg_amcheck, --check-sql), record restore/replay time, RTO and data age in the repository, clean up',
  positionals: [],
  settings: SETTINGS,
  examples: [
    'cairn-drill --target-time "2026-11-21 14:03:00+00" --check-sql checks.sql',
    'cairn-drill                                   # latest: every archived WAL segment replayed',
    'cairn-restore-plan --target-name before-upgrade | cairn-drill --plan - --json',
    'cairn-drill --dump app/20261121-020000L --check-sql app-checks.sql',
    'sudo cairn-drill --run-as postgres --scratch-dir /srv/scratch --keep',
    'exit status: 0 every check passed; 1 a check failed, recovery failed or timed out, or no backup reaches the target;',
    '  2 usage; 3 configuration; 4 damaged data (cairn-restore\'s status: a stored file fails its checksum); 70 interrupted',
  ],
  async run(ctx) {
    const s = ctx.settings;
    const { plan: planArg, dump: dumpArg } = s;
    const targetGiven = DRILL_TARGET_SETTINGS.filter((d) => d.name !== 'target-timeline' && d.name !== 'target-exclusive' && s[d.name] !== undefined).map((d) => `--${d.name}`);
    const chosen = [planArg !== undefined ? '--plan' : undefined, dumpArg !== undefined ? '--dump' : undefined].filter((x) => x !== undefined);
    if (chosen.length > 1 || (chosen.length === 1 && targetGiven.length > 0)) {
      throw new CairnError('USAGE', `${[...chosen, ...targetGiven].slice(0, 2).join(' and ')} do not go together`, {
        hint: 'give target flags, or --plan FILE|-, or --dump ID',
      });
    }
    const repo = repoSettingsFrom(s, ctx.log);
    const timeout = parseDuration(s.timeout, '--timeout');
    if (timeout.months > 0) throw new CairnError('USAGE', `invalid --timeout ${JSON.stringify(timeout.text)}: too long`, { hint: 'give hours or days, e.g. 6h' });

    let source: DrillSource;
    if (dumpArg !== undefined) source = { kind: 'dump', ref: dumpArg };
    else if (planArg !== undefined) source = { kind: 'plan', text: await readInput(planArg, 'plan', ctx), from: planArg };
    else source = { kind: 'target', ...parseTarget({ ...s, 'target-action': 'promote' }) };

    const checkFile = s['check-sql'];
    const checks: CheckStatement[] = checkFile === undefined ? [] : parseCheckSql(await readInput(checkFile, 'check file', ctx), checkFile);

    const root = process.getuid?.() === 0;
    const runAsName = s['run-as'];
    if (!root && runAsName !== undefined && runAsName !== (await import('node:os')).userInfo().username) {
      throw new CairnError('USAGE', '--run-as needs cairn-drill to be started as root', { hint: 'leave --run-as out to run PostgreSQL as yourself, or start cairn-drill as root' });
    }
    const runAs = root ? await lookupOsUser(runAsName ?? 'postgres', ctx.env) : undefined;
    const scratchParent = resolve(ctx.cwd, s['scratch-dir'] ?? ctx.env['TMPDIR'] ?? tmpdir());
    // Before the drill starts: a typo here is the operator's, not a failed
    // drill (a stored failure would fire the drill alert).
    assertUsableDirectory(scratchParent, s['scratch-dir'] !== undefined ? '--scratch-dir' : 'the scratch directory ($TMPDIR)', { writable: true });
    const keyFile = repo.keyFile === undefined ? undefined : resolve(ctx.cwd, repo.keyFile);
    const config = s.config;

    const out = await drill({
      repos: repo.repos, cluster: repo.cluster, keyFile, keyCommand: repo.keyCommand, configFile: config ? resolve(ctx.cwd, config) : undefined,
      source, checks, scratchParent, keep: s.keep, timeoutMs: timeout.ms, runAs,
      dbUser: s['db-user'], checkDb: s['check-db'], amcheck: s.amcheck,
      pgBin: s['pg-bin'],
    }, ctx);
    if (ctx.log.level !== 'error') ctx.stderr.write(formatDrillSummary(out));
    if (s.json) ctx.stdout.write(JSON.stringify(out.result, null, 2) + '\n');
    return out.status;
  },
});

async function readInput(path: string, what: string, ctx: ToolContext): Promise<string> {
  if (path === '-') return (await buffer(ctx.stdin)).toString('utf8');
  return readFile(resolve(ctx.cwd, path), 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new CairnError('FILE_UNREADABLE', `cannot read ${what} ${JSON.stringify(path)}: ${err.code ?? err.message}`, { hint: `check the path and that this user may read it` });
  });
}

const secs = (v: number | null) => (v === null ? '-' : `${v.toFixed(1)} s`);

/** The drill in a few lines for stderr. */
export function formatDrillSummary(out: DrillOutcome): string {
  const r: DrillResult = out.result;
  const what = r.kind === 'dump' ? `dump ${r.dump}` : `backup ${r.backup ?? '(none)'}${r.target ? ` to ${describeTarget({ kind: r.target.kind as never, ...(r.target.value === null ? {} : { value: r.target.value }) })}` : ''}`;
  const lines = [`cairn-drill: drill ${r.id} of ${what}: ${r.ok ? 'ok' : 'FAILED'}`];
  if (r.error) lines.push(`  error: ${r.error}`);
  lines.push(`  restore ${secs(r.restoreSeconds)}, replay ${secs(r.replaySeconds)}, RTO ${secs(r.rtoSeconds)}, data age ${secs(r.dataAgeSeconds)}${r.newestCommit ? ` (newest commit ${r.newestCommit})` : ''}`);
  for (const c of r.checks) lines.push(`  check ${c.name}: ${c.skipped ? 'skipped' : c.ok ? 'ok' : 'FAILED'}: ${c.message}`);
  lines.push('stored' in out && 'error' in out.stored ? `  warning: ${out.stored.error}` : `  result stored as ${JSON.stringify((out.stored as { key: string }).key)} in ${JSON.stringify((out.stored as { repo: string }).repo)}`);
  if (out.kept) lines.push(`  kept: the scratch server runs on socket ${out.kept.socketDir} port ${out.kept.port} (psql -h ${out.kept.socketDir} -p ${out.kept.port}); data in ${out.kept.pgdata}; stop it with pg_ctl -D ${out.kept.pgdata} stop and remove ${out.kept.dir}`);
  return lines.join('\n') + '\n';
}
