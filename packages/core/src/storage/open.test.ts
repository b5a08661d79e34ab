// Repository URL parsing: what is accepted, what each form means, and the
// error (code, message, hint) for what is not. Also: opening a non-S3 URL
// must not load the AWS SDK (start-up time, once per WAL segment).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isCairnError } from '../cli/errors.js';
import { FsDriver } from './fs.js';
import { MemoryDriver } from './memory.js';
import { S3_DEFAULTS, openStorage, parseRepoUrl, type RepoLocation } from './open.js';

const S3_BASE = {
  kind: 's3',
  region: 'us-east-1',
  forcePathStyle: false,
  connectTimeoutMs: S3_DEFAULTS.connectTimeoutMs,
  requestTimeoutMs: S3_DEFAULTS.requestTimeoutMs,
  maxAttempts: S3_DEFAULTS.maxAttempts,
  conditionalWrites: false,
  requests: S3_DEFAULTS.requests,
} as const;

describe('parseRepoUrl', () => {
  const good: [string, RepoLocation, Record<string, string>?][] = [
    ['/var/lib/cairn', { kind: 'fs', root: '/var/lib/cairn' }],
    ['/var/lib/cairn/', { kind: 'fs', root: '/var/lib/cairn' }],
    ['/var//lib/./cairn', { kind: 'fs', root: '/var/lib/cairn' }],
    ['file:///var/lib/cairn', { kind: 'fs', root: '/var/lib/cairn' }],
    ['file://localhost/var/lib/cairn', { kind: 'fs', root: '/var/lib/cairn' }],
    ['file:///srv/with%20space', { kind: 'fs', root: '/srv/with space' }],
    ['memory://t1', { kind: 'memory', name: 't1' }],
    ['s3://bucket', { ...S3_BASE, bucket: 'bucket', prefix: '' }],
    ['s3://bucket/', { ...S3_BASE, bucket: 'bucket', prefix: '' }],
    ['s3://my.bucket-1/a/b/', { ...S3_BASE, bucket: 'my.bucket-1', prefix: 'a/b' }],
    ['s3://bucket/with%20space', { ...S3_BASE, bucket: 'bucket', prefix: 'with space' }],
    [
      's3://bucket/pg?endpoint=http://127.0.0.1:9000&region=eu-west-3&force-path-style=true',
      { ...S3_BASE, bucket: 'bucket', prefix: 'pg', endpoint: 'http://127.0.0.1:9000', region: 'eu-west-3', forcePathStyle: true },
    ],
    [
      's3://bucket/pg?endpoint=https%3A%2F%2Fs3.example.com%2F&connect-timeout-ms=500&request-timeout-ms=2000&max-attempts=5&conditional-writes=true',
      {
        ...S3_BASE,
        bucket: 'bucket',
        prefix: 'pg',
        endpoint: 'https://s3.example.com',
        connectTimeoutMs: 500,
        requestTimeoutMs: 2000,
        maxAttempts: 5,
        conditionalWrites: true,
      },
    ],
    // Region: the URL wins over the environment, AWS_REGION over AWS_DEFAULT_REGION.
    ['s3://bucket/p', { ...S3_BASE, bucket: 'bucket', prefix: 'p', region: 'ap-south-1' }, { AWS_REGION: 'ap-south-1', AWS_DEFAULT_REGION: 'x-y-1' }],
    ['s3://bucket/p', { ...S3_BASE, bucket: 'bucket', prefix: 'p', region: 'ca-central-1' }, { AWS_DEFAULT_REGION: 'ca-central-1' }],
    ['s3://bucket/p?region=us-west-2', { ...S3_BASE, bucket: 'bucket', prefix: 'p', region: 'us-west-2' }, { AWS_REGION: 'ap-south-1' }],
  ];
  for (const [url, expected, env] of good) {
    it(`accepts ${url}${env ? ` with ${JSON.stringify(env)}` : ''}`, () => {
      assert.deepEqual(parseRepoUrl(url, { env: env ?? {} }), expected);
    });
  }

  const bad: [string, string][] = [
    ['', 'empty'],
    ['relative/path', 'a relative path; give an absolute one'],
    ['./repo', 'a relative path; give an absolute one'],
    ['ftp://host/x', 'unsupported scheme "ftp:"'],
    ['gs://bucket/x', 'unsupported scheme "gs:"'],
    ['file://otherhost/x', 'host "otherhost" is not this machine; use file:///abs/path'],
    ['file:///x?y', 'a file URL takes no query or fragment'],
    ['s3://', 'no bucket name'],
    ['s3:///prefix', 'no bucket name'],
    ['s3://ab/x', `"ab" is not a valid bucket name (3-63 letters, digits, '.', '-', '_')`],
    ['s3://bucket/a//b', 'prefix "a//b" has an empty, "." or ".." segment or a backslash'],
    ['s3://bucket/a/../b', 'prefix "a/../b" has an empty, "." or ".." segment or a backslash'],
    ['s3://bucket/x#frag', 'an s3 URL takes no fragment'],
    ['s3://bucket/x?endpoint=not-a-url', 'endpoint "not-a-url" is not a URL (use http://host:port)'],
    ['s3://bucket/x?endpoint=ftp://h:21', 'endpoint "ftp://h:21" is not http:// or https://'],
    ['s3://bucket/x?endpoint=http://h:9000/path', 'endpoint "http://h:9000/path" must be just http(s)://host[:port]'],
    ['s3://bucket/x?region=a&region=b', 'parameter "region" given twice'],
    ['s3://bucket/x?region=eu west', '"eu west" is not a valid region'],
    ['s3://bucket/x?force-path-style=yes', 'parameter "force-path-style" must be true or false, not "yes"'],
    ['s3://bucket/x?max-attempts=0', 'parameter "max-attempts" must be a whole number from 1 to 100, not "0"'],
    ['s3://bucket/x?request-timeout-ms=1.5', 'parameter "request-timeout-ms" must be a whole number from 1 to 86400000, not "1.5"'],
    ['memory://', 'use memory://name (letters, digits, ".", "-", "_")'],
  ];
  for (const [url, reason] of bad) {
    it(`rejects ${JSON.stringify(url)}`, () => {
      assert.throws(
        () => parseRepoUrl(url, { env: {} }),
        (err: unknown) => {
          assert.ok(isCairnError(err, 'CONFIG_INVALID'), String(err));
          assert.equal(err.message, `invalid repository URL "${url}": ${reason}`);
          assert.equal(err.hint, 'use /abs/path, file:///abs/path or s3://bucket/prefix?endpoint=…&region=…');
          return true;
        },
      );
    });
  }

  for (const [url, shown] of [
    ['s3://AKIAXXXX:s3cr3t@bucket/x', 's3://***@bucket/x'],
    ['s3://bucket/x?endpoint=http://user:s3cr3t@host:9000', 's3://bucket/x?endpoint=http://***@host:9000'],
    ['s3://bucket/x?endpoint=http%3A%2F%2Fuser%3As3cr3t%40host', 's3://bucket/x?endpoint=http%3A%2F%2F***%40host'],
  ] as const) {
    it(`rejects credentials in ${shown} without echoing them`, () => {
      assert.throws(
        () => parseRepoUrl(url, { env: {} }),
        (err: unknown) => {
          assert.ok(isCairnError(err, 'CONFIG_INVALID'), String(err));
          assert.equal(err.message, `invalid repository URL "${shown}": credentials do not belong in the URL`);
          assert.match(err.hint ?? '', /AWS default chain/);
          assert.ok(!err.message.includes('s3cr3t'));
          return true;
        },
      );
    });
  }
});

describe('unknown query parameters', () => {
  it('are named, their values never echoed (a token may sit there)', () => {
    assert.throws(
      () => parseRepoUrl('s3://bucket/x?region=eu-west-1&regoin=eu-west-1&secret=hunter2', { env: {} }),
      (err: unknown) => {
        assert.ok(isCairnError(err, 'CONFIG_INVALID'), String(err));
        assert.equal(err.message, 'invalid repository URL "s3://bucket/x?region=eu-west-1&regoin=***&secret=***": unknown parameter "regoin" (known: endpoint, region, force-path-style, connect-timeout-ms, request-timeout-ms, max-attempts, conditional-writes, requests, sse, sse-kms-key-id, object-lock-mode, object-lock-days)');
        return true;
      },
    );
  });
});

describe('openStorage', () => {
  it('opens fs and memory drivers', async () => {
    const fs = await openStorage('file:///tmp/cairn-open-test', { env: {} });
    assert.ok(fs instanceof FsDriver);
    assert.equal(fs.url, 'file:///tmp/cairn-open-test');
    assert.equal((fs as FsDriver).root, '/tmp/cairn-open-test');
    assert.equal(fs.features.atomicIfAbsent, true);
    const mem = await openStorage('memory://open-test', { env: {} });
    assert.ok(mem instanceof MemoryDriver);
  });

  it('opens an s3 driver with the URL for messages and features from the URL', async () => {
    const url = 's3://bucket/p?endpoint=http://127.0.0.1:1&conditional-writes=true';
    const d = await openStorage(url, { env: {} });
    try {
      assert.equal(d.url, url);
      assert.equal(d.features.atomicIfAbsent, true);
    } finally {
      await d.close();
    }
    const plain = await openStorage('s3://bucket/p', { env: {} });
    assert.equal(plain.features.atomicIfAbsent, false);
    assert.equal(plain.features.requests, 32, 'tens of requests in flight to an object store by default');
    await plain.close();
    const few = await openStorage('s3://bucket/p?requests=4', { env: {} });
    assert.equal(few.features.requests, 4);
    await few.close();
    await assert.rejects(openStorage('s3://bucket/p?requests=0', { env: {} }), /requests/);
    const local = await openStorage('/tmp/cairn-open-test', { env: {} });
    assert.equal(local.features.requests, 8);
  });

  it('does not load the AWS SDK for file and memory URLs', () => {
    const openJs = fileURLToPath(new URL('./open.js', import.meta.url));
    // Records every module URL resolved while opening and using an fs repository.
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.push(r.url); return r; } });
      const { openStorage } = await import(${JSON.stringify(openJs)});
      const d = await openStorage('/tmp/cairn-open-sdk-test', { env: {} });
      await d.stat('k');
      const m = await openStorage('memory://x', { env: {} });
      await m.stat('k');
      const sdk = seen.filter((u) => /@aws-sdk|@smithy|\\/s3\\.js$/.test(u));
      const s3 = await openStorage('s3://bucket/p?endpoint=http://127.0.0.1:1', { env: {} });
      await s3.close();
      console.log(JSON.stringify({ sdk, loadsForS3: seen.some((u) => u.includes('@aws-sdk')) }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { sdk: string[]; loadsForS3: boolean };
    assert.deepEqual(out.sdk, []);
    assert.equal(out.loadsForS3, true);
  });
});
