// The cairn-restore-plan command: target flags in, the plan as JSON on stdout
// and a summary on stderr. Exit 0 with a plan, 1 when none can be made.

import { defineTool } from '@cairn/core/cli/run';
import { EXIT } from '@cairn/core/cli/errors';
import { repoSettingsFrom } from '@cairn/core/repo/repositories';
import { parseTarget, TARGET_SETTINGS } from '@cairn/core/restore/target';
import { formatPlanSummary, restorePlan } from './restore-plan.js';

export const restorePlanTool = defineTool({
  name: 'restore-plan',
  description: 'plan a restore: choose the backup for a recovery target, check that the WAL recovery needs is archived, print the plan (JSON) for cairn-restore and cairn-drill',
  positionals: [],
  settings: TARGET_SETTINGS,
  examples: [
    'cairn-restore-plan --target-time "2026-11-21 14:03:00+00" > plan.json',
    'cairn-restore-plan --target-lsn 0/5000028 --target-timeline current',
    'cairn-restore-plan --target immediate --set 20261121-020000F',
    'cairn-restore-plan --target-name before-upgrade --target-action promote | cairn-restore --pgdata /srv/pg --plan -',
    'exit status: 0 plan printed; 1 no plan (no backup reaches the target, or a WAL segment is missing: it is named);',
    '  2 usage; 3 configuration or repository unreachable; 4 damaged repository data',
  ],
  async run(ctx) {
    const s = ctx.settings;
    // Flags first: a typo is told before any repository is touched.
    const { target, set } = parseTarget(s);
    const repo = repoSettingsFrom(s, ctx.log);
    const plan = await restorePlan({ repos: repo.repos, cluster: repo.cluster, keyFile: repo.keyFile, keyCommand: repo.keyCommand, target, ...(set === undefined ? {} : { set }) }, ctx);
    ctx.stdout.write(JSON.stringify(plan, null, 2) + '\n');
    if (s.json) {
      for (const w of plan.warnings) ctx.log.warn(w);
    } else if (ctx.log.level !== 'error') {
      ctx.stderr.write(formatPlanSummary(plan));
    }
    return EXIT.OK;
  },
});
