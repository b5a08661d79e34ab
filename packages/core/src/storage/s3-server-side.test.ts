// S3 server-side options (issue 18 item 5): parsed from the URL with one
// clear error for a bad value, and sent on every object written. s3rver
// ignores these headers, so the requests are captured from a fake client.

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { isCairnError } from '../cli/errors.js';
import { parseRepoUrl } from './open.js';
import { S3Driver, type S3Options } from './s3.js';

const BASE = 's3://bkt/pre?endpoint=http://127.0.0.1:9&region=r&';

test('SSE and Object Lock parameters parse, and bad ones are one clear error', () => {
  const loc = parseRepoUrl(`${BASE}sse=aws:kms&sse-kms-key-id=arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab&object-lock-mode=governance&object-lock-days=30`, { env: {} }) as S3Options;
  assert.deepEqual(loc.sse, { algorithm: 'aws:kms', kmsKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab' });
  assert.deepEqual(loc.objectLock, { mode: 'GOVERNANCE', days: 30 });
  assert.deepEqual((parseRepoUrl(`${BASE}sse=AES256`, { env: {} }) as S3Options).sse, { algorithm: 'AES256' });
  assert.equal((parseRepoUrl(`${BASE}region=r`.replace('&region=r&region=r', '&region=r'), { env: {} }) as S3Options).sse, undefined);
  for (const [q, msg] of [
    ['sse=kms', /sse "kms" is not aws:kms or AES256/],
    ['sse=AES256&sse-kms-key-id=k', /sse-kms-key-id needs sse=aws:kms/],
    ['sse-kms-key-id=k', /sse-kms-key-id needs sse=aws:kms/],
    ['sse=aws:kms&sse-kms-key-id=a%20b', /is not a KMS key id/],
    ['object-lock-mode=governance', /go together/],
    ['object-lock-days=3', /go together/],
    ['object-lock-mode=strict&object-lock-days=3', /"strict" is not governance or compliance/],
    ['object-lock-mode=compliance&object-lock-days=0', /object-lock-days" must be a whole number from 1/],
  ] as const) {
    assert.throws(() => parseRepoUrl(`${BASE}${q}`, { env: {} }), (e: unknown) => isCairnError(e, 'CONFIG_INVALID') && msg.test(e.message), q);
  }
});

test('every object written carries the SSE and retention headers: PutObject and CreateMultipartUpload', async () => {
  const sent: { name: string; input: Record<string, unknown> }[] = [];
  const client = {
    config: { requestChecksumCalculation: async () => 'WHEN_REQUIRED' },
    send: async (cmd: { constructor: { name: string }; input: Record<string, unknown> }) => {
      sent.push({ name: cmd.constructor.name, input: cmd.input });
      if (cmd.constructor.name === 'HeadObjectCommand') throw Object.assign(new Error('not found'), { name: 'NotFound', $metadata: { httpStatusCode: 404 } });
      if (cmd.constructor.name === 'CreateMultipartUploadCommand') return { UploadId: 'u1' };
      if (cmd.constructor.name === 'UploadPartCommand') return { ETag: '"e"' };
      return { ETag: '"e"', Location: 'x' };
    },
  } as unknown as S3Client;
  const opts = parseRepoUrl(`${BASE}sse=aws:kms&sse-kms-key-id=alias/cairn&object-lock-mode=compliance&object-lock-days=7`, { env: {} }) as S3Options;
  const d = new S3Driver(opts, { client });
  const t0 = Date.now();
  await d.write('main/repo.json', Buffer.from('{}'), { ifAbsent: true });
  await d.write('main/big.zst', Readable.from([Buffer.alloc(6 * 1024 * 1024, 1), Buffer.alloc(1024, 2)]));
  const writes = sent.filter((s) => s.name === 'PutObjectCommand' || s.name === 'CreateMultipartUploadCommand');
  assert.deepEqual(writes.map((w) => w.name), ['PutObjectCommand', 'CreateMultipartUploadCommand']);
  for (const w of writes) {
    assert.equal(w.input['ServerSideEncryption'], 'aws:kms', w.name);
    assert.equal(w.input['SSEKMSKeyId'], 'alias/cairn', w.name);
    assert.equal(w.input['ObjectLockMode'], 'COMPLIANCE', w.name);
    const until = (w.input['ObjectLockRetainUntilDate'] as Date).getTime();
    assert.ok(until >= t0 + 7 * 86_400_000 && until <= Date.now() + 7 * 86_400_000, w.name);
  }
  // Without the parameters nothing is added.
  sent.length = 0;
  await new S3Driver(parseRepoUrl(`${BASE}region=r`.replace('&region=r&region=r', '&region=r'), { env: {} }) as S3Options, { client }).write('k', Buffer.from('x'));
  const put = sent.find((s) => s.name === 'PutObjectCommand')!;
  assert.ok(!('ServerSideEncryption' in put.input) && !('ObjectLockMode' in put.input));
});
