// The cairn-expire command: retention flags in; the plan as JSON on stdout
// (--dry-run, or --json) and a one-line summary per repository on stderr.

import { defineTool } from '@cairn/core/cli/run';
import { EXIT } from '@cairn/core/cli/errors';
import type { SettingDef } from '@cairn/core/config/settings';
import { LOCK_WAIT_SETTING } from '@cairn/core/repo/lease';
import { closeRepositories, loadKey, openRepositories, repoSettingsFrom } from '@cairn/core/repo/repositories';
import { COUNT_FLAGS, DEFAULT_DEBRIS_GRACE, expire, formatSummary, policyFrom, WINDOW_FLAGS } from './expire.js';

const HELP_ORDER = ['keep-full', 'keep-diff', 'keep-within', 'keep-daily', 'keep-weekly', 'keep-monthly', 'keep-yearly',
  'keep-dumps', 'keep-dumps-within', 'keep-dumps-daily', 'keep-dumps-weekly', 'keep-dumps-monthly', 'keep-dumps-yearly'];
// Counts are read as text so that a bad value is a usage error (exit 2) with
// the flag's own message, wherever it came from.
const POLICY_SETTINGS: SettingDef[] = [...COUNT_FLAGS, ...WINDOW_FLAGS]
  .map(([name, , description]): SettingDef => ({ name, type: 'string', description, valueHint: name.endsWith('within') ? 'DURATION' : 'N' }))
  // --help lists each window beside its counts.
  .sort((a, b) => HELP_ORDER.indexOf(a.name) - HELP_ORDER.indexOf(b.name));

export const expireTool = defineTool({
  name: 'expire',
  description:
    'delete backups, dumps and WAL that no retention policy keeps. Policies combine: whatever any of them keeps stays, with everything it needs to restore ' +
    '(its chain, and the WAL from the oldest kept backup on). What a live reader lease needs (a restore or drill in progress) stays too; lapsed leases go after --debris-grace. ' +
    'Debris of interrupted backups and dumps goes too. Durations: s, min, h, d, w, mo, y (e.g. 14d, 36mo, 1d12h)',
  positionals: [],
  settings: [
    ...POLICY_SETTINGS,
    { name: 'debris-grace', type: 'string', description: 'remove objects of a backup or dump without manifest once their newest is this old, and reader leases lapsed this long ago', default: DEFAULT_DEBRIS_GRACE, valueHint: 'DURATION' },
    { name: 'dry-run', type: 'boolean', description: 'print the plan (JSON, cairn.expire-plan/1) and delete nothing', default: false },
    LOCK_WAIT_SETTING,
  ],
  examples: [
    'cairn-expire --keep-full 2 --dry-run',
    'cairn-expire --keep-within 14d --keep-monthly 12',
    'cairn-expire --keep-full 4 --keep-diff 7 --keep-dumps-monthly 36 --keep-dumps-within 14d',
    'exit status: 0 done (or planned); 2 usage (no policy, N < 1, bad duration); 3 configuration or repository unreachable;',
    '  4 damaged repository data; 5 another basebackup, dump or expire holds the lease',
  ],
  async run(ctx) {
    const s = ctx.settings;
    // Flags first: a typo is told before any repository is touched.
    const policy = policyFrom(s);
    const repo = repoSettingsFrom(s, ctx.log);
    const dryRun = s['dry-run'];
    const key = await loadKey(repo, ctx.env, ctx.signal);
    const drivers = await openRepositories(repo.repos, ctx.env);
    try {
      await expire(
        {
          drivers, cluster: repo.cluster, key, policy, dryRun, lockWaitMs: s['lock-wait'] * 1000,
          onRepository: (o) => {
            // One line of JSON per repository.
            if (dryRun || s.json) ctx.stdout.write(JSON.stringify(o.plan) + '\n');
            if (ctx.log.level !== 'error') ctx.stderr.write(formatSummary(o, dryRun));
          },
        },
        ctx,
      );
      return EXIT.OK;
    } finally {
      await closeRepositories(drivers);
    }
  },
});
