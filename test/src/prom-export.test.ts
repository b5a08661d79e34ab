// cairn-prom-export against a real cluster archiving through cairn-wal-push
// into a file repository with a full backup: the samples on stdout agree with
// the manifest and with cairn-info; --textfile replaces its file atomically
// while a reader polls the directory; --listen serves /metrics over HTTP
// (with process metrics, a cache, 404 elsewhere) and stops cleanly on
// SIGTERM; an unreachable repository is scrape_success 0 and exit 3.

import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCleanups } from '@cairn/testkit/cleanup';
import { binPath } from '@cairn/testkit/paths';
import { createCluster, type Cluster } from '@cairn/testkit/pg-cluster';
import { spawnAsPg } from '@cairn/testkit/run-as';
import { makeTempDir } from '@cairn/testkit/tmp';
import type { InfoDocument } from '@cairn/core/info/report';
import { parseExposition } from '@cairn/core/metrics/exposition';
import { makeRepo, type RepoFixture } from './repo-fixture.js';
import { cairnOk, readStoredManifest, sleep, switchAndWaitArchived, takeBackup, walPushCommand } from './pitr-harness.js';
import { runCairn } from './tools.js';

after(runCleanups);

interface State {
  repo: RepoFixture;
  src: Cluster;
  full: string;
  /** The last segment archived. */
  lastWal: string;
}

let st: State | undefined;
const state = (): State => {
  assert.ok(st, 'the setup step failed; see the first failure');
  return st;
};

/** `name{cluster="main",repo="<repo>",…extra}` as the exposition spells it (label names sorted). */
function sampleKey(name: string, repo: string, extra: Record<string, string> = {}): string {
  const labels: Record<string, string> = { cluster: 'main', repo, ...extra };
  return `${name}{${Object.keys(labels).sort().map((k) => `${k}="${labels[k]}"`).join(',')}}`;
}

describe('cairn-prom-export (fs repository)', { timeout: 300_000 }, () => {
  it('exports a repository with a full backup: the samples agree with the manifest and cairn-info', async () => {
    const repo = await makeRepo('fs', false);
    const src = await createCluster({ name: 'prom-src', archiveCommand: walPushCommand(), env: repo.env });
    await src.start();
    await src.psql("create table marker(v text); insert into marker values ('x')");
    const full = await takeBackup(src, repo, 'full');
    await src.psql("insert into marker values ('after')");
    const lastWal = await switchAndWaitArchived(src);
    st = { repo, src, full, lastWal };

    const r = await cairnOk('prom-export', [], repo.env);
    const m = parseExposition(r.stdout);
    const at = (name: string, extra?: Record<string, string>) => m.get(sampleKey(name, repo.url, extra));
    const manifest = await readStoredManifest(repo, full);
    const info = (JSON.parse((await cairnOk('info', ['--json'], repo.env)).stdout) as InfoDocument).repositories[0]!;
    const sys = info.wal[0]!;
    const tl = { system_id: sys.systemId, timeline: '1' };

    assert.equal(at('cairn_exporter_scrape_success'), 1);
    assert.deepEqual([at('cairn_backups', { type: 'full' }), at('cairn_backups', { type: 'incr' }), at('cairn_backups', { type: 'diff' })], [1, 0, 0]);
    assert.equal(at('cairn_backup_last_success_timestamp_seconds', { type: 'full' }), Date.parse(manifest.stop.time) / 1000);
    assert.equal(at('cairn_backup_last_size_bytes', { type: 'full' }), manifest.totals.size);
    assert.equal(at('cairn_wal_last_segment_info', { ...tl, segment: sys.timelines[0]!.last }), 1);
    assert.ok(sys.timelines[0]!.last >= lastWal, `the newest archived segment ${sys.timelines[0]!.last} reaches ${lastWal}`);
    assert.equal(at('cairn_wal_last_archived_timestamp_seconds', tl), Date.parse(sys.timelines[0]!.newestArchived) / 1000);
    assert.equal(at('cairn_wal_missing_segments', tl), 0);
    assert.equal(at('cairn_recoverable'), 1);
    assert.equal(at('cairn_recoverability_earliest_timestamp_seconds'), Date.parse(manifest.stop.time) / 1000);
    assert.equal(at('cairn_recoverability_latest_timestamp_seconds'), Date.parse(info.recoverability.latest!.time) / 1000);
    assert.equal(at('cairn_repository_size_bytes', { area: 'backups' }), info.repository.areas.backups.bytes);
    assert.equal(at('cairn_verify_last_timestamp_seconds'), 0, 'never verified');
    assert.equal(at('cairn_drill_last_timestamp_seconds'), 0, 'never drilled');
    assert.equal(r.stderr, '');
  });

  it('--textfile replaces cairn_main.prom atomically: a reader polling the directory never sees a partial .prom', async () => {
    const { repo, src } = state();
    const dir = await makeTempDir('textfile');
    let writing = true;
    const seen = new Set<string>();
    let reads = 0;
    const reader = (async () => {
      while (writing) {
        for (const name of await readdir(dir)) {
          seen.add(name);
          if (!name.endsWith('.prom')) continue; // node_exporter reads only *.prom
          const text = await readFile(join(dir, name), 'utf8');
          reads++;
          assert.ok(text.endsWith('\n') && text.includes('cairn_exporter_scrape_success{'), `a whole file, read ${reads}: ${text.length} bytes`);
          parseExposition(text);
        }
        await sleep(2);
      }
    })();
    try {
      for (let i = 0; i < 4; i++) {
        // Growing the archive between runs changes the text each time.
        await src.psql(`insert into marker values ('textfile ${i}')`);
        await switchAndWaitArchived(src);
        await cairnOk('prom-export', ['--textfile', dir], repo.env);
      }
    } finally {
      writing = false;
      await reader;
    }
    assert.deepEqual(await readdir(dir), ['cairn_main.prom'], 'no temp file left behind');
    assert.ok(reads > 0, 'the reader read the file');
    for (const name of seen) assert.ok(name === 'cairn_main.prom' || !name.endsWith('.prom'), `a temp name ending in .prom: ${name}`);
    assert.equal((await stat(join(dir, 'cairn_main.prom'))).mode & 0o777, 0o644, 'readable by node_exporter');
    const m = parseExposition(await readFile(join(dir, 'cairn_main.prom'), 'utf8'));
    assert.equal(m.get(sampleKey('cairn_exporter_scrape_success', repo.url)), 1);
    assert.equal(m.get(sampleKey('cairn_backups', repo.url, { type: 'full' })), 1);
  });

  it('--listen serves /metrics over HTTP with process metrics and a cache, 404 elsewhere, and exits 0 on SIGTERM', async () => {
    const { repo, src } = state();
    const child = spawnAsPg(binPath('prom-export'), ['--listen', '127.0.0.1:0', '--cache-seconds', '2'], { env: repo.env });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let url: string | undefined;
    for (let i = 0; i < 200 && url === undefined; i++) {
      url = /listening on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(stderr)?.[1];
      if (url === undefined) await sleep(25);
    }
    assert.ok(url, `the bound address on stderr: ${stderr}`);

    const scrape = async () => {
      const res = await fetch(url!);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      return res.text();
    };
    const first = await scrape();
    const m = parseExposition(first);
    assert.equal(m.get(sampleKey('cairn_exporter_scrape_success', repo.url)), 1);
    assert.ok(m.has('process_cpu_seconds_total'), 'prom-client process metrics');
    assert.ok([...m.keys()].some((k) => k.startsWith('nodejs_heap_size_used_bytes')), 'prom-client Node.js metrics');
    const walSamples = (text: string) => text.split('\n').filter((l) => l.startsWith('cairn_wal_last_segment_info{')).join('\n');

    // A segment archived now shows only after the cache expires.
    const newSeg = await switchAndWaitArchived(src);
    assert.equal(walSamples(await scrape()), walSamples(first), 'within --cache-seconds: the same read');
    await sleep(2100);
    assert.match(walSamples(await scrape()), new RegExp(`segment="${newSeg}"`), 'after --cache-seconds: a fresh read');

    const notFound = await fetch(url.replace(/\/metrics$/, '/'));
    assert.equal(notFound.status, 404);
    await notFound.text();

    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
  });

  it('an unreachable repository: scrape_success 0 beside the readable one, its error on stderr, exit 3', async () => {
    const { repo } = state();
    const down = 's3://nobucket/pg?endpoint=http://127.0.0.1:1&region=us-east-1&force-path-style=true&max-attempts=1&connect-timeout-ms=500';
    const env = { ...repo.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
    const dir = await makeTempDir('textfile-down');
    const r = await runCairn('prom-export', ['--repo', repo.url, '--repo', down, '--textfile', dir], { env });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^cairn-prom-export: error: repository "s3:\/\/nobucket\/pg\?.*ECONNREFUSED/m);
    const m = parseExposition(await readFile(join(dir, 'cairn_main.prom'), 'utf8'));
    assert.equal(m.get(sampleKey('cairn_exporter_scrape_success', repo.url)), 1);
    assert.equal(m.get(sampleKey('cairn_exporter_scrape_success', down)), 0, 'the file is written with what could be read');
    const u = await runCairn('prom-export', ['--textfile', dir, '--listen', '0'], { env: repo.env });
    assert.equal(u.code, 2);
    assert.match(u.stderr, /^cairn-prom-export: error: --textfile and --listen exclude each other/m);
  });
});
