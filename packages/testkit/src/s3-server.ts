// A real S3 endpoint on 127.0.0.1 for tests: s3rver in a child node process,
// with its own temp directory and buckets. See docs/gotchas.md §s3rver for its holes.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onCleanup } from './cleanup.js';

export const DEFAULT_TEST_BUCKET = 'cairn-test';

export interface S3Server {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  port: number;
  /** Where s3rver keeps the buckets (removed by stop). */
  dir: string;
  /** Kills the server and removes its directory; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * The environment the SDK (and the tools spawned by tests) need to talk to
 * the server: s3rver's fixed keys, and checksums only when required (with
 * the SDK default, stream bodies are sent aws-chunked and s3rver stores the
 * framing — docs/gotchas.md §s3rver).
 */
export function s3TestEnv(): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
  };
}

// Runs in the child (CommonJS, via -e). Port 0: the kernel picks a free port
// and the child reports it, so two suites never race for one. The child
// exits, removing its directory, when its stdin closes: when the test process
// dies, however it dies.
const CHILD_SCRIPT = `
const cfg = JSON.parse(process.env.CAIRN_S3RVER_CONFIG);
const S3rver = require(cfg.module);
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  directory: cfg.dir,
  silent: true,
  configureBuckets: cfg.buckets.map((name) => ({ name, configs: [] })),
});
// The server died once under the racing-push suite (every later request got
// ECONNREFUSED; the cause was not caught). An exception outside a request
// must not end a test double shared by a whole suite: keep serving and say
// so; the request concerned fails on its own, as a real store's 500 would.
const report = (what) => (err) => process.stderr.write('s3rver: ' + what + ': ' + String((err && err.stack) || err) + '\\n');
process.on('uncaughtException', report('uncaught exception'));
process.on('unhandledRejection', report('unhandled rejection'));
server.run().then(
  (addr) => process.stdout.write(JSON.stringify({ port: addr.port }) + '\\n'),
  (err) => { process.stderr.write(String((err && err.stack) || err) + '\\n'); process.exit(1); },
);
const orphaned = () => {
  // The test process is gone (even SIGKILLed): take the data with us.
  try { require('node:fs').rmSync(cfg.dir, { recursive: true, force: true }); } catch {}
  process.exit(0);
};
process.stdin.on('end', orphaned);
process.stdin.on('error', orphaned);
process.stdin.resume();
`;

const START_TIMEOUT_MS = 15_000;

export async function startS3Server(opts: { buckets?: string[] } = {}): Promise<S3Server> {
  const buckets = opts.buckets ?? [DEFAULT_TEST_BUCKET];
  for (const b of buckets) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(b)) throw new Error(`bucket name "${b}" is not valid for s3rver (3-63 chars)`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'cairn-s3rver-'));
  const module = createRequire(import.meta.url).resolve('s3rver');

  const env: NodeJS.ProcessEnv = { ...process.env, CAIRN_S3RVER_CONFIG: JSON.stringify({ module, dir, buckets }) };
  // Neither the test runner's context nor its NODE_OPTIONS belong in the server.
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  const child = spawn(
    process.execPath,
    // s3rver signs ListObjectsV2 continuation tokens with DES: without the
    // legacy provider, every listing past 1000 keys answers 500 (docs/gotchas.md §s3rver).
    ['--openssl-legacy-provider', '-e', CHILD_SCRIPT],
    { env, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stopped = false;
  const unregister = onCleanup(() => {
    // Synchronous on purpose: also runs on 'exit'.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    stderr = (stderr + s).slice(-8192);
  });

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    unregister();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    }
    child.stdin.destroy();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (s: string) => {
        out += s;
        const nl = out.indexOf('\n');
        if (nl < 0) return;
        clearTimeout(timer);
        try {
          resolve((JSON.parse(out.slice(0, nl)) as { port: number }).port);
        } catch (err) {
          reject(err);
        }
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited (${signal ?? code}) before listening: ${stderr.trim()}`));
      });
    });
    const endpoint = `http://127.0.0.1:${port}`;
    await waitUntilAnswering(endpoint);
    return { endpoint, port, dir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Any HTTP answer (s3rver says 403 to an unsigned GET /) means it is serving. */
async function waitUntilAnswering(endpoint: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = request(endpoint + '/', { method: 'GET', timeout: 1_000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
      req.end();
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`s3rver at ${endpoint} does not answer`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
