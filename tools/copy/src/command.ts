// The cairn-copy command: --from and --to in, copyRepository() under the
// target's backup and dump leases, a summary line on stderr (the result as
// JSON on stdout with --json), a progress line when stderr is a terminal.
// Exit 0 done, 4 something could not be copied (named on stderr), 5 a lease
// of the target is held.

import { CairnError, EXIT } from '@cairn/core/cli/errors';
import { defineTool } from '@cairn/core/cli/run';
import { createProgress } from '@cairn/core/cli/progress';
import { acquireLeases, leaseOptionsFor, LOCK_WAIT_SETTING } from '@cairn/core/repo/lease';
import { assertClusterName } from '@cairn/core/repo/layout';
import { closeRepositories, keySourceFrom, loadKey, openRepositories } from '@cairn/core/repo/repositories';
import { parseRepoUrl } from '@cairn/core/storage/open';
import { checkRepositories, copyRepository, formatSummary, holdSourceLease } from './copy.js';

export const copyTool = defineTool({
  name: 'copy',
  description:
    'copy what the target repository lacks from the source: backups with every object their chains need, dumps, WAL and history files, ' +
    'verify and drill results. Stored bytes are copied as they are (encrypted again for a target with its own data key) and checked against their recorded SHA-256 on the way; manifests are written last. ' +
    'A rerun (also after a kill) copies only what is still missing. Retention stays per repository (cairn-expire --repo …).',
  positionals: [],
  settings: [
    { name: 'from', type: 'string', description: 'the source repository URL', valueHint: 'URL', flagOnly: true },
    { name: 'to', type: 'string', description: 'the target repository URL (empty, or encrypted as the source is and opened by the same key)', valueHint: 'URL', flagOnly: true },
    { name: 'dry-run', type: 'boolean', description: 'list what would be copied and write nothing', default: false, flagOnly: true },
    { name: 'jobs', type: 'integer', description: 'objects copied at once (default 4)', valueHint: 'N', min: 1, max: 256 },
    LOCK_WAIT_SETTING,
  ],
  examples: [
    'cairn-copy --from /backup --to "s3://bucket/cairn?region=eu-west-1"',
    'cairn-copy --from /backup --to /mnt/offsite --dry-run',
    'exit status: 0 done; 2 usage; 3 configuration, wrong key or a target with other encryption settings;',
    '  4 something could not be copied (a checksum mismatch, a WAL file stored with other content); 5 a lease of the target is held',
  ],
  async run(ctx) {
    const s = ctx.settings;
    const fromUrl = s.from;
    const toUrl = s.to;
    if (fromUrl === undefined || fromUrl === '' || toUrl === undefined || toUrl === '') {
      throw new CairnError('USAGE', 'cairn-copy needs --from URL and --to URL', { hint: 'e.g. cairn-copy --from /backup --to "s3://bucket/cairn?region=eu-west-1"' });
    }
    parseRepoUrl(fromUrl, { env: {} });
    parseRepoUrl(toUrl, { env: {} });
    if (fromUrl === toUrl) throw new CairnError('USAGE', '--from and --to name the same repository', { hint: 'give two different repositories' });
    const cluster = s.cluster;
    assertClusterName(cluster);
    const key = await loadKey(keySourceFrom(s, ctx.log), ctx.env, ctx.signal);
    const dryRun = s['dry-run'];
    const drivers = await openRepositories([fromUrl, toUrl], ctx.env);
    const [from, to] = drivers as [NonNullable<(typeof drivers)[0]>, NonNullable<(typeof drivers)[1]>];
    const progress = createProgress(ctx, 'cairn-copy');
    let planned = 0;
    try {
      // The target's backup and dump leases: expire there would take the
      // objects of a backup whose manifest is not copied yet for debris, and
      // a second copy or a basebackup into it would collide with this one.
      // A dry run writes nothing and takes none.
      await checkRepositories({ from, to, cluster, key }, ctx.signal);
      const leases = dryRun ? undefined : await acquireLeases(to, cluster, leaseOptionsFor('copy', s['lock-wait'] * 1000, ctx));
      let result;
      let reader: Awaited<ReturnType<typeof holdSourceLease>> | undefined;
      try {
        const signal = leases ? AbortSignal.any([ctx.signal, leases.signal]) : ctx.signal;
        // And a reader lease on the source, so its cairn-expire keeps what is being copied.
        reader = dryRun ? undefined : await holdSourceLease(from, cluster, { now: () => new Date(), signal, log: ctx.log });
        result = await copyRepository(
          { from, to, cluster, key, dryRun, jobs: s.jobs ?? 4, sourceWal: reader?.wal },
          {
            signal,
            log: ctx.log,
            onBytes: (n) => progress.add(n),
            onPlanned: (n) => {
              planned += n;
              progress.total(planned);
            },
          },
        );
      } finally {
        progress.done();
        await reader?.lease.release();
        await leases?.release();
      }
      if (s.json) ctx.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else if (dryRun) {
        for (const id of result.backups.copied) ctx.stdout.write(`backup ${id}\n`);
        for (const id of result.dumps.copied) ctx.stdout.write(`dump ${id}\n`);
        if (result.wal.copied > 0) ctx.stdout.write(`wal ${result.wal.copied} file(s)\n`);
        if (result.results.copied > 0) ctx.stdout.write(`results ${result.results.copied}\n`);
      }
      for (const p of result.problems) ctx.stderr.write(`cairn-copy: ${p}\n`);
      ctx.stderr.write(formatSummary(result));
      return result.problems.length > 0 ? EXIT.DATA : EXIT.OK;
    } finally {
      await closeRepositories(drivers);
    }
  },
});
