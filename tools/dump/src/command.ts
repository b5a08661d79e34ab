// The cairn-dump command: flags in, dump() called under the cluster's dump
// lease, one `DATABASE/ID` line per dump on stdout (or --json summaries) and
// a one-line summary per dump on stderr.

import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { CairnError, EXIT } from '@cairn/core/cli/errors';
import { formatBytes } from '@cairn/core/cli/format';
import { defineTool } from '@cairn/core/cli/run';
import { COMPRESS_SETTING } from '@cairn/core/config/settings';
import { summarizeDump, type DumpManifest } from '@cairn/core/dump/manifest';
import { PG_BIN_SETTING } from '@cairn/core/pg/binaries';
import { acquireLeasesEach, leaseOptionsFor, LOCK_WAIT_SETTING, releaseLeasesEach } from '@cairn/core/repo/lease';
import { closeRepositories, loadKey, notEverywhere, openRepositories, pickRepositories, REPO_ONLY_SETTING, repoSettingsFrom } from '@cairn/core/repo/repositories';
import { dump } from './dump.js';
import { assertUsableDirectory } from '@cairn/core/util/user-path';

/** `DATABASE/ID`, or `@globals/ID`: what stdout prints and cairn-restore --dump accepts. */
function dumpName(m: DumpManifest): string {
  return `${m.database ?? m.dir}/${m.id}`;
}

export const dumpTool = defineTool({
  name: 'dump',
  description:
    'take logical dumps (pg_dump custom format, compressed and checksummed by cairn) of --dbname NAME… or --all ' +
    '(every connectable database plus roles and tablespaces) into the repository. Prints one DATABASE/ID line per dump. ' +
    'With several repositories each dump goes to every one from one run of pg_dump; one that fails keeps none, the others keep it whole, and the run exits with that repository\'s error naming it (--repo-only picks one). ' +
    'Exit: 0 done, 2 usage, 3 configuration/connection or pg_dump failed, 4 data error, 5 another dump or expire of the cluster holds the lease.',
  positionals: [],
  settings: [
    COMPRESS_SETTING,
    { name: 'dbname', type: 'list', description: 'database to dump (repeatable); the server comes from PGHOST/PGPORT/PGUSER', valueHint: 'NAME' },
    { name: 'all', type: 'boolean', description: 'dump every connectable non-template database and the globals (pg_dumpall --globals-only)', default: false },
    { name: 'schema', type: 'list', description: 'dump only this schema (pg_dump --schema, repeatable)', valueHint: 'PATTERN' },
    { name: 'table', type: 'list', description: 'dump only this table (pg_dump --table, repeatable)', valueHint: 'PATTERN' },
    { name: 'exclude-table', type: 'list', description: 'leave out this table (pg_dump --exclude-table, repeatable)', valueHint: 'PATTERN' },
    { name: 'jobs', type: 'integer', description: 'above 1: pg_dump -Fd -j N through a local directory (needs free space about the database\'s size in --tmp-dir)', default: 1, valueHint: 'N', min: 1, max: 256 },
    { name: 'tmp-dir', type: 'string', description: 'where --jobs writes pg_dump\'s directory before it is stored (default: $TMPDIR or /tmp)', valueHint: 'DIR' },
    PG_BIN_SETTING,
    LOCK_WAIT_SETTING,
    REPO_ONLY_SETTING,
  ],
  examples: [
    'cairn-dump --dbname app --repo /backup',
    'cairn-dump --all --repo s3://bucket/pg?region=eu-west-1',
    'cairn-dump --dbname big --jobs 4 --tmp-dir /srv/scratch',
    'cairn-restore --dump app/20261121-020000L --dbname app_copy --create',
  ],
  async run(ctx) {
    const s = ctx.settings;
    const repo = repoSettingsFrom(s, ctx.log);
    const { dbname: names, all, jobs, compress } = s;
    if (all && names.length > 0) throw new CairnError('USAGE', '--all and --dbname exclude each other', { hint: 'give --dbname NAME (repeatable) or --all' });
    if (!all && names.length === 0) throw new CairnError('USAGE', 'nothing to dump: give --dbname NAME (repeatable) or --all', { hint: 'e.g. cairn-dump --dbname app' });
    const filters = { schemas: s.schema, tables: s.table, excludeTables: s['exclude-table'] };
    if (all && filters.schemas.length + filters.tables.length + filters.excludeTables.length > 0) {
      throw new CairnError('USAGE', '--schema, --table and --exclude-table apply to --dbname dumps, not --all', { hint: 'dump the database with --dbname NAME and the filters' });
    }
    const tmpDir = resolve(ctx.cwd, s['tmp-dir'] ?? ctx.env['TMPDIR'] ?? tmpdir());
    if (jobs > 1) assertUsableDirectory(tmpDir, '--tmp-dir', { writable: true });
    const urls = pickRepositories(repo.repos, s['repo-only']);
    const key = await loadKey(repo, ctx.env, ctx.signal);
    const drivers = await openRepositories(urls, ctx.env);
    const json = s.json;
    try {
      // The dump lease keeps a second run (same ids) and expire (which would
      // take our manifest-less objects for debris) out: one per repository,
      // and one whose lease cannot be taken drops out (the run then fails,
      // naming it).
      const leaseOpts = leaseOptionsFor('dump', s['lock-wait'] * 1000, ctx);
      const leases = await acquireLeasesEach(drivers, repo.cluster, leaseOpts);
      const { manifests, failed, stored } = await dump({
        repos: drivers.map((driver, i) => {
          const l = leases[i]!;
          return l.ok ? { driver, signal: AbortSignal.any([ctx.signal, l.leases.signal]) } : { driver, failed: l.error };
        }),
        cluster: repo.cluster, key, compress, databases: all ? 'all' : names, jobs, filters,
        pgBin: s['pg-bin'], tmpDir,
        onDump: (m) => {
          ctx.stderr.write(
            `cairn-dump: ${dumpName(m)}: ${formatBytes(m.totals.size)} in ${m.durationSeconds.toFixed(1)} s, stored ${formatBytes(m.totals.storedSize)}` +
              `${m.totals.storedSize > 0 ? ` (${(m.totals.size / m.totals.storedSize).toFixed(1)}x)` : ''}, ${m.objects.length} object(s)\n`,
          );
          // Each id as soon as its dump exists: a later database failing leaves these valid.
          if (!json) ctx.stdout.write(dumpName(m) + '\n');
        },
      }, ctx).finally(() => releaseLeasesEach(leases));
      if (json) ctx.stdout.write(JSON.stringify(manifests.map(summarizeDump)) + '\n');
      if (failed.length > 0) throw notEverywhere(`dump ${manifests.map(dumpName).join(', ')}`, stored, failed);
      return EXIT.OK;
    } finally {
      await closeRepositories(drivers);
    }
  },
});
