// cairn-prom-export as functions: read each repository's report (core/info/
// read), turn it into metric families (core/metrics, pure) and render the
// exposition text; then write it to stdout, to a node_exporter textfile
// (atomically), or serve it on /metrics with prom-client's process metrics.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { CairnError, toCairnError } from '@cairn/core/cli/errors';
import type { EncryptionKey } from '@cairn/core/codec/index';
import { infoExitStatus, readRepositoryReport, type InfoReadError } from '@cairn/core/info/read';
import { INFO_FORMAT, type InfoReport } from '@cairn/core/info/report';
import { renderExposition, type MetricFamily } from '@cairn/core/metrics/exposition';
import { repositoryMetrics, unreadableRepositoryMetrics } from '@cairn/core/metrics/repository-metrics';
import { writeBufferAtomic } from '@cairn/core/util/local-file';

export interface PromExportOptions {
  repos: string[];
  cluster: string;
  key: EncryptionKey | undefined;
}

export interface ExportContext {
  now: () => Date;
  signal: AbortSignal;
  env: NodeJS.ProcessEnv;
  log: { warn: (line: string) => void; error: (line: string) => void };
}

export interface ExportResult {
  /** The exposition text of every repository (an unreadable one as scrape_success 0). */
  text: string;
  errors: InfoReadError[];
  /** 0; 3 or 4 when a repository could not be read (its error's status); 4 when manifests are damaged. */
  status: number;
}

/** Reads every repository and renders their metrics; errors are told on stderr and in the metrics, not thrown. */
export async function exportMetrics(opts: PromExportOptions, ctx: ExportContext): Promise<ExportResult> {
  const families: MetricFamily[][] = [];
  const reports: InfoReport[] = [];
  const errors: InfoReadError[] = [];
  for (const url of opts.repos) {
    const t0 = ctx.now();
    const r = await readRepositoryReport(url, opts.cluster, opts.key, t0, ctx.signal, (l) => ctx.log.warn(l), ctx.env);
    // Measured on the tool's clock, so a test with a fixed clock gets a fixed value.
    const took = Math.max(0, (ctx.now().getTime() - t0.getTime()) / 1000);
    if ('report' in r) {
      reports.push(r.report);
      families.push(repositoryMetrics(r.report, { cluster: opts.cluster, repo: r.report.repo }, took));
    } else {
      errors.push(r.error);
      families.push(unreadableRepositoryMetrics({ cluster: opts.cluster, repo: r.error.repo }, took));
      const where = r.error.message.includes(r.error.repo) ? '' : `repository "${r.error.repo}": `;
      ctx.log.error(`${where}${r.error.message}${r.error.hint === null ? '' : `; ${r.error.hint}`}`);
    }
  }
  const status = infoExitStatus({ format: INFO_FORMAT, createdAt: ctx.now().toISOString(), repositories: reports, errors });
  return { text: renderExposition(families.flat()), errors, status };
}

// ---- --textfile ------------------------------------------------------------

/** `cairn_<cluster>.prom`: one file per cluster, so exporters of several clusters on one node do not overwrite each other. */
export function textfileName(cluster: string): string {
  return `cairn_${cluster}.prom`;
}

/** Fails before any repository is read when the directory is not one. */
export async function checkTextfileDir(dir: string): Promise<void> {
  const s = await stat(dir).catch(() => undefined);
  if (s === undefined || !s.isDirectory()) {
    throw new CairnError('CONFIG_INVALID', `textfile directory "${dir}" does not exist or is not a directory`, {
      hint: "give node_exporter's --collector.textfile.directory, e.g. --textfile /var/lib/node_exporter/textfile_collector",
    });
  }
}

/**
 * Writes the text as DIR/cairn_<cluster>.prom atomically: a temp name in the
 * same directory that does not end in `.prom` (node_exporter reads only
 * `*.prom`, so it never sees the partial file), fsync, rename. Mode 0644:
 * node_exporter usually runs as another user.
 */
export async function writeTextfile(dir: string, cluster: string, text: string): Promise<string> {
  const path = join(dir, textfileName(cluster));
  try {
    await writeBufferAtomic(path, text, { mode: 0o644 });
  } catch (err) {
    throw new CairnError('CONFIG_INVALID', `cannot write "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      hint: 'check that the textfile directory is writable by this user',
      cause: err,
    });
  }
  return path;
}

// ---- --listen --------------------------------------------------------------

export interface ListenAddress {
  /** undefined: every interface. */
  host: string | undefined;
  port: number;
}

/** `PORT`, `:PORT`, `HOST:PORT` or `[IPv6]:PORT`. */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]*):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) {
    throw new CairnError('USAGE', `invalid --listen "${text}"`, { hint: 'give [HOST:]PORT, e.g. --listen 9188 or --listen 127.0.0.1:9188' });
  }
  const host = m[1] === undefined || m[1] === '' ? undefined : m[1].replace(/^\[|\]$/g, '');
  return { host, port };
}

/** prom-client is CommonJS and needs Node built-ins by require(): loaded at run time, not bundled. */
type PromClient = typeof import('prom-client');
function loadPromClient(): PromClient {
  const load = createRequire(import.meta.url);
  return load('prom-client') as PromClient;
}

export interface ServeOptions extends PromExportOptions {
  listen: ListenAddress;
  /** Reuse a read this long (reading a big repository per scrape is costly). */
  cacheSeconds: number;
}

/**
 * One read of the repositories for every caller while it runs, then reused
 * for maxAgeMs after it finished. Even with --cache-seconds 0, 100 concurrent
 * scrapes share one read instead of each listing the whole repository
 * (issue 11: RSS 84 → 299 MB). A read that fails as a whole (a bug) is not kept.
 */
export function sharedRead<T>(read: () => Promise<T>, maxAgeMs: number, now: () => number): () => Promise<T> {
  let cached: { finishedAt: number | undefined; result: Promise<T> } | undefined;
  return () => {
    if (cached === undefined || (cached.finishedAt !== undefined && now() - cached.finishedAt >= maxAgeMs)) {
      const entry: { finishedAt: number | undefined; result: Promise<T> } = { finishedAt: undefined, result: read() };
      cached = entry;
      entry.result.then(
        () => { entry.finishedAt = now(); },
        () => { if (cached === entry) cached = undefined; },
      );
    }
    return cached.result;
  };
}

/**
 * Serves GET /metrics until the signal aborts (SIGTERM, SIGINT): the
 * repositories' metrics, read at most once per cacheSeconds (concurrent
 * scrapes share one read), followed by prom-client's default process and
 * Node.js metrics. Other paths answer 404. Resolves once the server is closed.
 */
export async function serveMetrics(opts: ServeOptions, ctx: ExportContext & { stderr: Writable }): Promise<void> {
  const client = loadPromClient();
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });

  const current = sharedRead(() => exportMetrics(opts, ctx), opts.cacheSeconds * 1000, () => ctx.now().getTime());

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    try {
      const body = (await current()).text + (await registry.metrics());
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      const e = toCairnError(err);
      ctx.log.error(`scrape failed: ${e.message}`);
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${e.message}\n`);
    }
  };

  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new CairnError('CONFIG_INVALID', `cannot listen on ${formatAddress(opts.listen)}: ${err.code ?? err.message}`, {
        hint: 'choose another --listen port, or stop what holds it',
        cause: err,
      }));
    });
    server.listen({ port: opts.listen.port, ...(opts.listen.host === undefined ? {} : { host: opts.listen.host }) }, resolve);
  });
  const bound = server.address();
  const addr = typeof bound === 'object' && bound !== null ? { host: bound.address, port: bound.port } : opts.listen;
  // Always told (not a log line): with port 0 the caller learns the port here.
  ctx.stderr.write(`cairn-prom-export: listening on http://${formatAddress(addr)}/metrics\n`);

  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function formatAddress(a: ListenAddress): string {
  const host = a.host === undefined ? '0.0.0.0' : a.host.includes(':') ? `[${a.host}]` : a.host;
  return `${host}:${a.port}`;
}
