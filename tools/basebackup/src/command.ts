// The cairn-basebackup command: flags and settings in, basebackup() called,
// the id on stdout and a one-line summary on stderr.

import { CairnError, EXIT } from '@cairn/core/cli/errors';
import { defineTool } from '@cairn/core/cli/run';
import { COMPRESS_SETTING } from '@cairn/core/config/settings';
import { summarize } from '@cairn/core/backup/manifest';
import { acquireLeasesEach, leaseOptionsFor, LOCK_WAIT_SETTING, releaseLeasesEach, type LeaseOutcome } from '@cairn/core/repo/lease';
import { closeRepositories, loadKey, notEverywhere, openRepositories, pickRepositories, REPO_ONLY_SETTING, repoSettingsFrom } from '@cairn/core/repo/repositories';
import { basebackup, prepareBackup, defaultJobs, streamInput } from './basebackup.js';
import { formatBytes } from '@cairn/core/cli/format';
import { assertReadableFile, assertUsableDirectory } from '@cairn/core/util/user-path';
import { resolve } from 'node:path';

export const basebackupTool = defineTool({
  name: 'basebackup',
  description:
    'take a physical backup into the repository: from PGDATA on this host (--pgdata, pg_backup_start/stop), ' +
    'or from a `pg_basebackup -D - -Ft -X none` stream (--from-tar FILE|-, or --remote to run pg_basebackup). ' +
    'With several repositories the backup goes to every one from one read of the source; one that fails keeps none of it, the others keep it whole, and the run exits with that repository\'s error naming it (--repo-only picks one). ' +
    'Prints the backup id. Exit: 0 done, 2 usage, 3 configuration/connection, 4 data error, 5 another backup or expire of the cluster holds the lease, 1 the backup\'s WAL never reached the repository.',
  positionals: [],
  settings: [
    COMPRESS_SETTING,
    { name: 'pgdata', type: 'string', description: 'the data directory (local mode); the server is reached through PGHOST/PGPORT/PGUSER', env: ['CAIRN_PGDATA', 'PGDATA'], valueHint: 'DIR' },
    { name: 'type', type: 'string', description: 'full, diff (against the newest full) or incr (against the newest backup)', default: 'full', valueHint: 'TYPE', choices: ['full', 'diff', 'incr'] },
    { name: 'from-tar', type: 'string', description: 'read a pg_basebackup -Ft tar stream from FILE or - (stdin)', valueHint: 'FILE|-' },
    { name: 'remote', type: 'boolean', description: 'run pg_basebackup -D - -Ft -X none against the server in PGHOST/PGPORT and store its stream', default: false },
    { name: 'pg-bin', type: 'string', description: 'directory of pg_basebackup (default: PATH)', valueHint: 'DIR' },
    { name: 'checksum-delta', type: 'boolean', description: 'diff/incr: compare file contents with the parent (SHA-256), not only size and mtime', default: false },
    { name: 'page-level', type: 'boolean', description: 'diff/incr: store only the pages of relation files that changed since the parent (needs data checksums; otherwise files are compared whole); --no-page-level stores every changed file whole', default: true },
    { name: 'jobs', type: 'integer', description: 'files and pieces processed at once (default: the number of cores)', valueHint: 'N', min: 1, max: 256 },
    { name: 'checkpoint', type: 'string', description: 'fast (start at once) or spread (wait for the next checkpoint)', default: 'fast', valueHint: 'MODE', choices: ['fast', 'spread'] },
    { name: 'archive-timeout', type: 'integer', description: 'seconds to wait for the backup\'s last WAL segment to reach the repository', default: 120, valueHint: 'SECONDS', min: 1 },
    LOCK_WAIT_SETTING,
    REPO_ONLY_SETTING,
    { name: 'label', type: 'string', description: 'backup label passed to PostgreSQL', valueHint: 'TEXT' },
  ],
  examples: [
    'cairn-basebackup --pgdata /var/lib/postgresql/15/main --repo /backup --type full',
    'pg_basebackup -D - -Ft -X none | cairn-basebackup --from-tar - --repo s3://bucket/pg?region=eu-west-1',
    'cairn-basebackup --remote --type incr',
  ],
  async run(ctx) {
    const s = ctx.settings;
    const repo = repoSettingsFrom(s, ctx.log);
    const { type, checkpoint, compress, remote, pgdata } = s;
    const jobs = s.jobs ?? defaultJobs();
    const fromTar = s['from-tar'];
    const modes = [fromTar !== undefined, remote].filter(Boolean).length;
    if (modes > 1) throw new CairnError('USAGE', '--from-tar and --remote exclude each other', { hint: 'choose one source' });
    if (modes === 0 && !pgdata) {
      throw new CairnError('USAGE', 'no source: give --pgdata DIR (on the database host), --from-tar FILE|- or --remote', {
        hint: 'e.g. cairn-basebackup --pgdata "$PGDATA", or pg_basebackup -D - -Ft -X none | cairn-basebackup --from-tar -',
      });
    }
    if (fromTar === '-' && ctx.stdin.isTTY) {
      throw new CairnError('USAGE', '--from-tar - reads a tar stream from stdin, which is a terminal', { hint: 'pipe pg_basebackup -D - -Ft -X none into it' });
    }
    // A missing --from-tar file was an unhandled stream error (exit 1, a trace).
    if (fromTar !== undefined && fromTar !== '-') assertReadableFile(resolve(ctx.cwd, fromTar), '--from-tar', { allowFifo: true, mustExist: true });
    if (modes === 0) assertUsableDirectory(resolve(ctx.cwd, pgdata!), '--pgdata');
    const urls = pickRepositories(repo.repos, s['repo-only']);
    const key = await loadKey(repo, ctx.env, ctx.signal);
    const drivers = await openRepositories(urls, ctx.env);
    try {
      const source =
        modes === 0
          ? { kind: 'local' as const, pgdata: pgdata!, fastCheckpoint: checkpoint === 'fast' }
          : { kind: 'stream' as const, ...streamInput(fromTar, remote, s['pg-bin'], checkpoint === 'fast', ctx) };
      // The backup lease keeps a second backup (same parent, same id) and
      // expire out: one per repository, and a repository whose lease cannot
      // be taken drops out (the run then fails, naming it).
      const leaseOpts = leaseOptionsFor('basebackup', s['lock-wait'] * 1000, ctx);
      const repos = drivers.map((driver) => ({ driver }));
      const prep = prepareBackup({ repos, cluster: repo.cluster, key, source }, ctx);
      let r;
      let leases: LeaseOutcome[] = [];
      try {
        leases = await acquireLeasesEach(drivers, repo.cluster, leaseOpts);
        r = await basebackup({
          repos: drivers.map((driver, i) => {
            const l = leases[i]!;
            return l.ok ? { driver, signal: AbortSignal.any([ctx.signal, l.leases.signal]) } : { driver, failed: l.error };
          }),
          cluster: repo.cluster, key, keyFile: repo.keyFile, keyCommand: repo.keyCommand, compress, type, checksumDelta: s['checksum-delta'], pageLevel: s['page-level'],
          jobs, archiveTimeoutMs: s['archive-timeout'] * 1000, source, label: s.label ?? '', prep,
        }, ctx);
      } finally {
        prep.abandon();
        await releaseLeasesEach(leases);
      }
      const m = r.manifest;
      const secs = m.durationSeconds;
      const t = m.totals;
      ctx.stderr.write(
        `cairn-basebackup: ${m.id} (${m.type}${m.parent ? ` of ${m.parent}` : ''}): ${formatBytes(t.size)} in ${secs.toFixed(1)} s ` +
          `(${formatBytes(t.size / Math.max(secs, 0.001))}/s), stored ${formatBytes(t.storedSize)}` +
          `${t.storedSize > 0 ? ` (${((t.size - r.referencedSize) / t.storedSize).toFixed(1)}x)` : ''}, ` +
          `${t.filesStored} files stored, ${t.filesReferenced} referenced${t.badPages > 0 ? `, ${t.badPages} bad pages` : ''}\n`,
      );
      ctx.stdout.write(s.json ? JSON.stringify(summarize(m)) + '\n' : m.id + '\n');
      if (r.failed.length > 0) throw notEverywhere(`backup ${m.id}`, r.stored.map((x) => x.url), r.failed);
      return EXIT.OK;
    } finally {
      await closeRepositories(drivers);
    }
  },
});
