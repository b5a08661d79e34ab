// The cairn-verify command: flags in, verifyRepository() per repository, the
// result stored in the repository (for cairn-prom-export), problems and a
// summary on stderr, the result as JSON on stdout with --json.
// Exit 0 clean, 1 any problem.

import { availableParallelism } from 'node:os';
import { parseDuration } from '@cairn/core/util/duration';
import { CairnError, EXIT } from '@cairn/core/cli/errors';
import { defineTool } from '@cairn/core/cli/run';
import { isBackupId } from '@cairn/core/backup/manifest';
import { PG_BIN_SETTING } from '@cairn/core/pg/binaries';
import { closeRepositories, loadKey, openRepositories, repoSettingsFrom } from '@cairn/core/repo/repositories';
import type { VerifyResult } from '@cairn/core/verify/result-format';
import { formatProgress, formatReport, storeVerifyResult, verifyRepository, type Counters, type VerifyScope } from './verify.js';
import { findGoodCopies } from './good-copies.js';

export const verifyTool = defineTool({
  name: 'verify',
  description:
    'check the repository: every object of every backup and dump decodes and matches its SHA-256, each backup\'s WAL is there, ' +
    'the WAL archive is continuous on every timeline and agrees with the history files, each dump\'s table of contents reads with pg_restore --list. ' +
    'Stores the result in the repository for cairn-prom-export. Exit 0 clean, 1 problems found.',
  positionals: [],
  settings: [
    { name: 'set', type: 'string', description: 'verify one backup (its objects, wherever in its chain they are stored, and its own WAL)', valueHint: 'BACKUP_ID', flagOnly: true },
    { name: 'dump', type: 'string', description: 'verify one dump: ID, or DATABASE/ID when several databases share the id', valueHint: 'ID', flagOnly: true },
    { name: 'jobs', type: 'integer', description: 'objects read and checked at once (default: the number of cores)', valueHint: 'N', min: 1, max: 256 },
    { name: 'wal-gap-grace', type: 'string', description: 'a WAL gap whose next segment was stored this recently is "not archived yet" (a note), not missing WAL (push-ahead drains a backlog out of order)', default: '10min', valueHint: 'DURATION' },
    PG_BIN_SETTING,
  ],
  examples: [
    'cairn-verify --repo /backup',
    'cairn-verify --set 20261121-020000F',
    'cairn-verify --dump appdb/20261121-030000L --json',
    'exit status: 0 no problems; 1 problems found (each printed with what to do, and stored in <cluster>/verify/);',
    '  2 usage; 3 configuration, wrong key or repository unreachable',
  ],
  async run(ctx) {
    const s = ctx.settings;
    const { set, dump } = s;
    if (set !== undefined && dump !== undefined) throw new CairnError('USAGE', '--set and --dump exclude each other', { hint: 'verify one backup or one dump, or leave both out for the whole repository' });
    if (set !== undefined && !isBackupId(set)) {
      throw new CairnError('USAGE', `invalid backup id "${set}"`, { hint: 'backup ids look like 20261121-020000F; cairn-info lists them' });
    }
    if (dump !== undefined && dump === '') throw new CairnError('USAGE', 'empty --dump', { hint: 'give a dump id, e.g. --dump 20261121-030000L' });
    const jobs = s.jobs ?? availableParallelism();
    const pgBin = s['pg-bin'];
    const now = ctx.now();
    const walGapGraceMs = now.getTime() - parseDuration(s['wal-gap-grace'], '--wal-gap-grace').before(now).getTime();
    const scope: VerifyScope = set !== undefined ? { kind: 'set', id: set } : dump !== undefined ? { kind: 'dump', ref: dump } : { kind: 'all' };
    const repo = repoSettingsFrom(s, ctx.log);
    const key = await loadKey(repo, ctx.env, ctx.signal);
    const drivers = await openRepositories(repo.repos, ctx.env);
    let failed = false;
    // docs/design.md §4.10: a progress line on a terminal, redrawn every second.
    const tty = (ctx.stderr as { isTTY?: boolean }).isTTY === true && !s.json;
    let timer: NodeJS.Timeout | undefined;
    const watch = (c: Readonly<Counters>, problems: readonly unknown[]) => {
      const t0 = Date.now();
      timer = setInterval(() => ctx.stderr.write(`\r\x1b[K${formatProgress(c, problems.length, (Date.now() - t0) / 1000)}`), 1000);
      timer.unref();
    };
    const endProgress = () => {
      if (timer === undefined) return;
      clearInterval(timer);
      timer = undefined;
      ctx.stderr.write('\r\x1b[K');
    };
    try {
      const results: VerifyResult[] = [];
      for (const driver of drivers) {
        try {
          results.push(await verifyRepository(
            { driver, cluster: repo.cluster, key, scope, jobs, pgBin: pgBin === '' ? undefined : pgBin, walGapGraceMs },
            { now: ctx.now, signal: ctx.signal, env: ctx.env, log: ctx.log, ...(tty ? { watch } : {}) },
          ));
        } finally {
          endProgress();
        }
      }
      // Each damaged copy: where a good one is (issue 18 item 3).
      if (drivers.length > 1) await findGoodCopies(results, drivers, repo.cluster, ctx.signal);
      for (const [i, driver] of drivers.entries()) {
        const result = results[i]!;
        const warning = await storeVerifyResult(driver, result, ctx.signal);
        if (warning !== undefined) ctx.log.warn(warning);
        if (s.json) ctx.stdout.write(JSON.stringify(result, null, 2) + '\n');
        else ctx.stderr.write(formatReport(result));
        if (!result.ok) failed = true;
      }
    } finally {
      await closeRepositories(drivers);
    }
    return failed ? EXIT.CHECK_FAILED : EXIT.OK;
  },
});
