// The cairn-info command: what a repository holds and how far back and
// forward it can restore; a table on stdout, or `cairn.info/1` JSON with
// --json. Exit 0 when every repository was read (an empty one too), 3 when
// one is unreachable or the key is wrong, 4 when its data is damaged.

import { defineTool } from '@cairn/core/cli/run';
import { repoSettingsFrom } from '@cairn/core/repo/repositories';
import { formatReport, info, infoExitStatus } from './info.js';

export const infoTool = defineTool({
  name: 'info',
  description: 'show what a repository holds: backups, dumps, WAL per timeline, size, the last verify and drill, and the window a restore can reach',
  positionals: [],
  settings: [],
  examples: [
    'cairn-info',
    'cairn-info --repo /srv/backup --repo "s3://bucket/pg?region=eu-west-1" --cluster main',
    'cairn-info --json | jq .repositories[0].recoverability',
    'exit status: 0 every repository read (an empty one too); 2 usage; 3 a repository unreachable or the key wrong;',
    '  4 damaged repository data (a manifest or history file); the other repositories are still reported',
  ],
  async run(ctx) {
    const repo = repoSettingsFrom(ctx.settings, ctx.log);
    const doc = await info({ repos: repo.repos, cluster: repo.cluster, keyFile: repo.keyFile, keyCommand: repo.keyCommand }, ctx);
    if (ctx.settings.json) {
      ctx.stdout.write(JSON.stringify(doc, null, 2) + '\n');
    } else {
      ctx.stdout.write(doc.repositories.map(formatReport).join('\n'));
    }
    for (const e of doc.errors) {
      const where = e.message.includes(e.repo) ? '' : `repository "${e.repo}": `;
      ctx.log.error(`${where}${e.message}${e.hint === null ? '' : `; ${e.hint}`}`);
    }
    return infoExitStatus(doc);
  },
});
