// The cairn-prom-export command: the repositories' state as Prometheus
// metrics, on stdout, in a node_exporter textfile (--textfile DIR, written
// atomically) or served on /metrics (--listen [HOST:]PORT).

import { defineTool } from '@cairn/core/cli/run';
import { CairnError, EXIT } from '@cairn/core/cli/errors';
import { loadKey, repoSettingsFrom } from '@cairn/core/repo/repositories';
import { checkTextfileDir, exportMetrics, parseListen, serveMetrics, writeTextfile } from './prom-export.js';

export const promExportTool = defineTool({
  name: 'prom-export',
  description: 'export what the repository holds as Prometheus metrics: backup, dump, verify and drill times, sizes, WAL archiving, the recoverability window',
  positionals: [],
  settings: [
    { name: 'textfile', type: 'string', description: "write DIR/cairn_<cluster>.prom atomically for node_exporter's textfile collector", valueHint: 'DIR' },
    { name: 'listen', type: 'string', description: 'serve GET /metrics over HTTP on [HOST:]PORT until SIGTERM (port 0: any free port, told on stderr)', valueHint: '[HOST:]PORT' },
    { name: 'cache-seconds', type: 'integer', description: 'with --listen: reuse a read of the repositories for this many seconds', default: 30, valueHint: 'N' },
  ],
  examples: [
    'cairn-prom-export                                   # the metrics on stdout',
    'cairn-prom-export --textfile /var/lib/node_exporter/textfile_collector   # from cron, every few minutes',
    'cairn-prom-export --listen 127.0.0.1:9188 --cache-seconds 60',
    'exit status: 0 every repository read; 2 usage; 3 a repository unreachable or the key wrong (its metrics say',
    '  cairn_exporter_scrape_success 0 and the file is still written); 4 damaged repository data.',
    '  With --listen: 0 after SIGTERM/SIGINT, 3 when the address cannot be bound; read errors go to stderr per read.',
  ],
  async run(ctx) {
    const s = ctx.settings;
    const { textfile, listen } = s;
    // Flags first: a mistake is told before any repository is touched.
    if (textfile !== undefined && listen !== undefined) {
      throw new CairnError('USAGE', '--textfile and --listen exclude each other', { hint: 'run one cairn-prom-export per output' });
    }
    const cacheSeconds = s['cache-seconds'];
    const address = listen === undefined ? undefined : parseListen(listen);
    if (textfile !== undefined) await checkTextfileDir(textfile);
    const repo = repoSettingsFrom(s, ctx.log);
    const opts = { repos: repo.repos, cluster: repo.cluster, key: await loadKey(repo, ctx.env, ctx.signal) };

    if (address !== undefined) {
      await serveMetrics({ ...opts, listen: address, cacheSeconds }, ctx);
      return EXIT.OK;
    }
    const result = await exportMetrics(opts, ctx);
    if (textfile !== undefined) {
      const path = await writeTextfile(textfile, repo.cluster, result.text);
      ctx.log.info(`wrote ${path}`);
    } else {
      ctx.stdout.write(result.text);
    }
    return result.status;
  },
});
