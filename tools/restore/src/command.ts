// The cairn-restore command: a plan (--plan FILE|-, or made here from the
// target flags) in, a data directory ready to start out.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buffer } from 'node:stream/consumers';
import { CairnError, EXIT } from '@cairn/core/cli/errors';
import { defineTool } from '@cairn/core/cli/run';
import { closeRepositories, loadKey, openRepositories, repoSettingsFrom } from '@cairn/core/repo/repositories';
import { TARGET_SETTINGS, parseTarget } from '@cairn/core/restore/target';
import { parsePlan } from '@cairn/core/restore/planner';
import { makePlanFromRepositories } from '@cairn/core/restore/load-plan';
import type { RestorePlan } from '@cairn/core/restore/plan-format';
import { restore, shellWord } from './restore.js';

/** The installed cairn-wal-get beside this tool (node_modules/.bin), else the one on PATH. */
function walGetPath(): string {
  // Climb from this file (in dist/ or a bundle chunk) to the installation root.
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules/.bin/cairn-wal-get');
    if (existsSync(candidate)) return candidate;
  }
  return 'cairn-wal-get';
}

export const restoreTool = defineTool({
  name: 'restore',
  description:
    'restore a backup into a data directory, configured to recover to the target through cairn-wal-get. ' +
    'Takes a plan from cairn-restore-plan (--plan FILE|-) or the same target flags. ' +
    'Exit: 0 ready to start, 1 no backup/WAL reaches the target, 2 usage, 3 configuration (e.g. a non-empty --pgdata), 4 a stored file fails its checksum.',
  positionals: [],
  settings: [
    ...TARGET_SETTINGS,
    { name: 'pgdata', type: 'string', description: 'the data directory to restore into', env: ['CAIRN_PGDATA', 'PGDATA'], valueHint: 'DIR' },
    { name: 'plan', type: 'string', description: 'a plan from cairn-restore-plan (FILE, or - for stdin) instead of target flags', valueHint: 'FILE|-' },
    { name: 'delta', type: 'boolean', description: 'restore into a non-empty directory: keep files whose checksum matches, fetch the rest, remove what the backup lacks', default: false },
    { name: 'force', type: 'boolean', description: 'restore into a non-empty directory, removing what is there', default: false },
    { name: 'tablespace-map', type: 'list', description: 'put tablespace OLD (its OID or old location) at NEW (repeatable)', valueHint: 'OLD=NEW' },
    { name: 'jobs', type: 'integer', description: 'files fetched at once (default: the number of cores)', valueHint: 'N' },
    { name: 'restore-command', type: 'string', description: 'restore_command to write (default: this installation\'s cairn-wal-get with the same repository settings)', valueHint: 'CMD' },
  ],
  examples: [
    'cairn-restore --pgdata /var/lib/postgresql/15/main --target-time "2026-11-21 14:03:00+00" --target-action promote',
    'cairn-restore-plan --target-name before_migration > plan.json && cairn-restore --pgdata /srv/pg --plan plan.json',
  ],
  async run(ctx) {
    const s = ctx.settings;
    const repo = repoSettingsFrom(s);
    const pgdataSetting = s['pgdata'] as string | undefined;
    if (!pgdataSetting) throw new CairnError('USAGE', 'no data directory: give --pgdata DIR', { hint: 'e.g. cairn-restore --pgdata /var/lib/postgresql/15/main' });
    const pgdata = isAbsolute(pgdataSetting) ? pgdataSetting : resolve(ctx.cwd, pgdataSetting);
    const jobs = (s['jobs'] as number | undefined) ?? availableParallelism();
    if (jobs < 1 || jobs > 256) throw new CairnError('USAGE', `invalid --jobs ${jobs}`, { hint: 'use 1 to 256' });
    const tsMap = new Map<string, string>();
    for (const m of (s['tablespace-map'] as string[] | undefined) ?? []) {
      const eq = m.indexOf('=');
      if (eq <= 0 || !isAbsolute(m.slice(eq + 1))) throw new CairnError('USAGE', `invalid --tablespace-map "${m}"`, { hint: 'use OLD=NEW with NEW an absolute path, e.g. 16385=/srv/ts1' });
      tsMap.set(m.slice(0, eq), m.slice(eq + 1));
    }
    const planArg = s['plan'] as string | undefined;
    // Flag mistakes exit 2 before any repository is opened.
    const parsed = planArg === undefined ? parseTarget(s) : undefined;
    const key = await loadKey(repo.keyFile);
    const drivers = await openRepositories(repo.repos);
    try {
      let plan: RestorePlan;
      if (planArg !== undefined) {
        const text = planArg === '-' ? (await buffer(process.stdin)).toString('utf8') : await readFile(planArg, 'utf8').catch((err: NodeJS.ErrnoException) => {
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
      const args = ['%f', '%p', '--repo', plan.repo, '--cluster', repo.cluster];
      if (repo.keyFile) args.push('--encryption-key-file', resolve(ctx.cwd, repo.keyFile));
      const cfg = s['config'] as string | undefined;
      if (cfg) args.push('--config', resolve(ctx.cwd, cfg));
      const restoreCommand = (s['restore-command'] as string | undefined) ?? [shellWord(walGetPath()), ...args.map((a) => (a.startsWith('%') ? a : shellWord(a)))].join(' ');
      for (const w of plan.warnings) ctx.log.warn(w);
      const r = await restore({ plan, driver, key, pgdata, delta: s['delta'] === true, force: s['force'] === true, tablespaceMap: tsMap, jobs, restoreCommand, keyFile: repo.keyFile }, ctx);
      const mb = (r.bytesWritten / 1e6).toFixed(1);
      ctx.stderr.write(
        `cairn-restore: backup ${r.backup} restored to "${r.pgdata}" in ${r.seconds.toFixed(1)} s: ${r.filesFetched} files fetched (${mb} MB, ${(r.bytesWritten / 1e6 / Math.max(r.seconds, 0.001)).toFixed(0)} MB/s)` +
          `${s['delta'] === true ? `, ${r.filesKept} kept (${(r.bytesKept / 1e6).toFixed(1)} MB), ${r.removed} removed` : ''}; ` +
          `recovery: ${Object.entries(plan.recoverySettings).map(([k, v]) => `${k}=${v}`).join(' ') || 'to the end of the archive'}; start PostgreSQL to recover\n`,
      );
      if (s['json'] === true) ctx.stdout.write(JSON.stringify({ ...r, plan }) + '\n');
      return EXIT.OK;
    } finally {
      await closeRepositories(drivers);
    }
  },
});
