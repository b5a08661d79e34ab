import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rejectsWith, throwsWith } from '../testing/errors.js';
import { encryptionKeyFromBytes } from './encrypt.js';
import { parseKeyCommand, runKeyCommand } from './key-command.js';

const ENV = { PATH: '/usr/bin:/bin' };
const MATERIAL = 'a-key-from-a-command-0123456789abcdef';

test('a key command is split into words without a shell', () => {
  assert.deepEqual(parseKeyCommand('vault kv get -field=key secret/cairn'), ['vault', 'kv', 'get', '-field=key', 'secret/cairn']);
  assert.deepEqual(parseKeyCommand("  gpg --decrypt '/etc/cairn/key file.gpg'  "), ['gpg', '--decrypt', '/etc/cairn/key file.gpg']);
  assert.deepEqual(parseKeyCommand('a "b \\"c\\" \\\\ d" e\\ f'), ['a', 'b "c" \\ d', 'e f']);
  assert.deepEqual(parseKeyCommand("x 'a'\"b\"c ''"), ['x', 'abc', '']);
  // Shell syntax is literal: no pipes, variables or globs.
  assert.deepEqual(parseKeyCommand('cat $HOME/k | base64 -d > /tmp/x *'), ['cat', '$HOME/k', '|', 'base64', '-d', '>', '/tmp/x', '*']);
  assert.deepEqual(parseKeyCommand('["aws", "kms", "decrypt", "--ciphertext-blob", "fileb:///etc/cairn/key.enc"]'), ['aws', 'kms', 'decrypt', '--ciphertext-blob', 'fileb:///etc/cairn/key.enc']);
});

test('a key command that cannot be parsed is a configuration error', () => {
  for (const [cmd, msg] of [
    ['', /is empty/],
    ['   ', /is empty/],
    ["gpg 'unterminated", /unterminated ' quote/],
    ['gpg "unterminated', /unterminated " quote/],
    ['gpg \\', /lone backslash/],
    ['[not json', /not a JSON array/],
    ['[]', /non-empty array of strings/],
    ['["a", 1]', /non-empty array of strings/],
  ] as const) {
    const e = throwsWith(() => parseKeyCommand(cmd), 'CONFIG_INVALID', msg);
    assert.equal(e.exitCode, 3);
  }
});

test('the key is what the command prints, less one trailing newline', async () => {
  const expected = encryptionKeyFromBytes(Buffer.from(MATERIAL)).id;
  assert.equal((await runKeyCommand(`printf %s ${MATERIAL}`, ENV)).id, expected);
  assert.equal((await runKeyCommand(`echo ${MATERIAL}`, ENV)).id, expected);
  assert.equal((await runKeyCommand(JSON.stringify(['printf', '%s\\r\\n', MATERIAL]), ENV)).id, expected);
  // No shell: "$HOME" is passed as it is, not expanded.
  const literal = '$HOME-is-not-expanded-here';
  assert.equal((await runKeyCommand(`printf %s ${literal}`, { ...ENV, HOME: '/root' })).id, encryptionKeyFromBytes(Buffer.from(literal)).id);
  // The command sees the environment it is given (VAULT_TOKEN, AWS_PROFILE, …).
  assert.equal((await runKeyCommand(JSON.stringify(['sh', '-c', 'printf %s "$K"']), { ...ENV, K: MATERIAL })).id, expected);
});

test('a failing command is one line with its status and stderr, exit 3, and never shows its output', async () => {
  const e = await rejectsWith(
    runKeyCommand(JSON.stringify(['sh', '-c', `printf %s ${MATERIAL}; echo 'permission denied' >&2; echo 'token expired' >&2; exit 7`]), ENV),
    'KEY_INVALID',
    'encryption key command "sh" failed (exit status 7): permission denied / token expired',
  );
  assert.equal(e.exitCode, 3);
  assert.ok(!e.message.includes(MATERIAL) && !(e.hint ?? '').includes(MATERIAL));

  await rejectsWith(runKeyCommand('/nonexistent/vault read x', ENV), 'KEY_INVALID', /^encryption key command "\/nonexistent\/vault" could not run: .*ENOENT/);
  await rejectsWith(runKeyCommand('true', ENV), 'KEY_INVALID', 'encryption key command "true" printed no key');
  await rejectsWith(runKeyCommand('echo', ENV), 'KEY_INVALID', 'encryption key command "echo" printed no key');
  await rejectsWith(runKeyCommand('printf short', ENV), 'KEY_INVALID', /is too short: 5 bytes/);
  await rejectsWith(runKeyCommand('sleep 5', ENV, { timeoutMs: 200 }), 'KEY_INVALID', 'encryption key command "sleep" did not finish within 0 s');
  await rejectsWith(runKeyCommand('head -c 100000 /dev/zero', ENV), 'KEY_INVALID', /printed more than 64 KiB/);
  // Arguments are left out of messages: they may carry a token.
  const t = await rejectsWith(runKeyCommand('sh -c "exit 1" --token=s3cr3t', ENV), 'KEY_INVALID');
  assert.ok(!t.message.includes('s3cr3t'));
});

test('a long stderr is cut to its tail', async () => {
  const e = await rejectsWith(runKeyCommand(JSON.stringify(['sh', '-c', 'head -c 5000 /dev/zero | tr "\\0" x >&2; echo >&2; echo the-real-reason >&2; exit 1']), ENV), 'KEY_INVALID');
  assert.ok(e.message.length < 600, e.message);
  assert.match(e.message, /…x+ \/ the-real-reason$/);
});
