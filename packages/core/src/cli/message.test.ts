import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escapeControl, redactSecrets, safeMessage } from './message.js';

test('URLs lose credentials and the values of unknown query parameters', () => {
  const cases: [string, string][] = [
    ['repository "s3://b/p?region=eu-west-1&secret=hunter2" unreachable', 'repository "s3://b/p?region=eu-west-1&secret=***" unreachable'],
    ['s3://AKIA:pw@bucket/x failed', 's3://***@bucket/x failed'],
    ['"s3://b/x?endpoint=http://u:pw@h:9000&X-Amz-Signature=abc"', '"s3://b/x?endpoint=http://***@h:9000&X-Amz-Signature=***"'],
    ['"s3://b/x?endpoint=http%3A%2F%2Fu%3Apw%40h"', '"s3://b/x?endpoint=http%3A%2F%2F***%40h"'],
    ['https://user:tok@example.com/a?token=t1&region=r', 'https://***@example.com/a?token=***&region=r'],
    ['plain /var/lib/cairn and no URL', 'plain /var/lib/cairn and no URL'],
    ['"s3://b/p?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=us-east-1&force-path-style=true"', '"s3://b/p?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=us-east-1&force-path-style=true"'],
  ];
  for (const [input, want] of cases) assert.equal(redactSecrets(input), want, input);
});

test('control characters are escaped, so a message stays one line', () => {
  assert.equal(escapeControl('a\nb\r\x1b[31mc\x00\u2028'), 'a\\x0ab\\x0d\\x1b[31mc\\x00\\u2028');
  assert.equal(escapeControl('ünïcode stays'), 'ünïcode stays');
  assert.equal(safeMessage('bad "s3://b/x?k=v\nfake line"'), 'bad "s3://b/x?k=***\\x0afake line"');
});
