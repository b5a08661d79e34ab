// The cairn-check command: after a configuration change, from a systemd
// timer, or as a Kubernetes probe. Exit 0 when everything works, 1 with one
// line per problem on stderr; the checks on stdout, or cairn.check/1 JSON.

import { defineTool } from '@cairn/core/cli/run';
import { repoSettingsFrom } from '@cairn/core/repo/repositories';
import { EXIT } from '@cairn/core/cli/errors';
import { check } from './check.js';

export const checkTool = defineTool({
  name: 'check',
  description:
    'check that archiving into cairn works: every repository takes and gives back a probe object, archive_mode, wal_level and archive_command are right, ' +
    'a WAL switch reaches every repository (--archive-timeout), and pg_stat_archiver reports no failure. ' +
    'Exit: 0 all well, 1 a problem (one line each on stderr), 2 usage, 3 configuration.',
  positionals: [],
  settings: [
    { name: 'pgdata', type: 'string', description: 'the local data directory: the server is the one its postmaster.pid names (else PGHOST, else the default socket)', env: ['CAIRN_PGDATA', 'PGDATA'], valueHint: 'DIR' },
    { name: 'archive-timeout', type: 'integer', description: 'seconds the switched WAL segment may take to reach every repository', default: 60, valueHint: 'SECONDS', min: 1 },
    { name: 'switch-wal', type: 'boolean', description: 'switch WAL and follow the segment (--no-switch-wal for a frequent probe: each switch archives a segment)', default: true, flagOnly: true },
  ],
  examples: [
    'cairn-check --pgdata /var/lib/postgresql/16/main',
    'cairn-check --json | jq .problems',
    'cairn-check --no-switch-wal        # a Kubernetes probe every minute: repositories, settings, pg_stat_archiver',
  ],
  async run(ctx) {
    const s = ctx.settings;
    const repo = repoSettingsFrom(s, ctx.log);
    const r = await check({
      repos: repo.repos,
      cluster: repo.cluster,
      pgdata: s.pgdata,
      timeoutMs: s['archive-timeout'] * 1000,
      switchWal: s['switch-wal'],
    }, ctx);
    if (s.json) ctx.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else ctx.stdout.write(r.items.map((i) => `${i.ok ? 'ok     ' : 'PROBLEM'}  ${i.message}\n`).join(''));
    for (const p of r.problems) ctx.log.error(p);
    return r.problems.length === 0 ? EXIT.OK : EXIT.CHECK_FAILED;
  },
});
