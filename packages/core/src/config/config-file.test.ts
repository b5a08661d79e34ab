import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigFile, stripInlineComment } from './config-file.js';
import { nearestKey, KNOWN_CONFIG_KEYS } from './known-keys.js';
import { resolveSettings, COMMON_SETTINGS } from './settings.js';
import { CairnError } from '../cli/errors.js';

const configError = (re: RegExp, hint?: RegExp) => (e: unknown) =>
  e instanceof CairnError && e.code === 'CONFIG_INVALID' && re.test(e.message) && (hint === undefined || hint.test(e.hint ?? ''));

test('an unknown key is an error naming the key, the file, the line and the nearest known key', () => {
  const text = '[global]\nrepo = /backup\nencryption-keyfile = /etc/cairn/key\n';
  assert.throws(() => parseConfigFile(text, '/etc/cairn/cairn.conf'),
    configError(/^config file "\/etc\/cairn\/cairn.conf" line 3: unknown key "encryption-keyfile"$/, /did you mean "encryption-key-file"\?/));
  assert.throws(() => parseConfigFile('[main]\nfrobnicate = 1\n', 'c.conf'), configError(/line 2: unknown key "frobnicate"/, /--help lists the settings/));
  assert.equal(nearestKey('keep_ful'.replace('_', '-'), KNOWN_CONFIG_KEYS), 'keep-full');
  assert.equal(nearestKey('compres', KNOWN_CONFIG_KEYS), 'compress');
  assert.equal(nearestKey('zzzzzzzzzz', KNOWN_CONFIG_KEYS), undefined);
});

test('a key of another tool is accepted: one file serves every tool', () => {
  const s = parseConfigFile('push-ahead = 8\nkeep-full = 2\nscratch-dir = /srv/scratch\ncache-seconds = 60\n', 'c.conf');
  assert.deepEqual(s.get('global')?.get('push-ahead'), ['8']);
  const settings = resolveSettings({ defs: COMMON_SETTINGS, flags: {}, env: {}, readConfig: () => 'push_ahead = 8\nrepo = /r\n' });
  assert.deepEqual(settings['repo'], ['/r']);
});

test('the running tool\'s own keys are known even if the shared list lags', () => {
  const defs = [...COMMON_SETTINGS, { name: 'brand-new', type: 'string' as const, description: '' }];
  const s = resolveSettings({ defs, flags: {}, env: {}, readConfig: () => 'brand-new = yes\n' });
  assert.equal(s['brand-new'], 'yes');
});

test('inline comments: "#" at the start of a value or after whitespace', () => {
  const s = parseConfigFile('repo = /backup # nightly copy\nrepo = /srv/pg#1\n[main] # production\ncluster = main\t# tab\nlabel = #\n', 'c.conf');
  assert.deepEqual(s.get('global')?.get('repo'), ['/backup', '/srv/pg#1']);
  assert.deepEqual(s.get('main')?.get('cluster'), ['main']);
  assert.deepEqual(s.get('main')?.get('label'), ['']);
  assert.equal(stripInlineComment('s3://b/p?region=r # eu'), 's3://b/p?region=r');
});

test('bad values: usage error (2) on the command line, configuration error (3) elsewhere', () => {
  const defs = [...COMMON_SETTINGS, { name: 'jobs', type: 'integer' as const, description: '', min: 1, max: 256 },
    { name: 'lock-wait', type: 'integer' as const, description: '' },
    { name: 'compress', type: 'string' as const, description: '', validate: (v: string) => { if (v !== 'zstd') throw new CairnError('CONFIG_INVALID', `invalid compression "${v}"`); } }];
  const usage = (re: RegExp) => (e: unknown) => e instanceof CairnError && e.code === 'USAGE' && re.test(e.message);
  assert.throws(() => resolveSettings({ defs, flags: { jobs: '-4' }, env: {}, readConfig: () => undefined }), usage(/^invalid --jobs -4$/));
  assert.throws(() => resolveSettings({ defs, flags: { jobs: '2.5' }, env: {}, readConfig: () => undefined }), usage(/"2.5" is not a whole number for --jobs/));
  assert.throws(() => resolveSettings({ defs, flags: { 'lock-wait': '-1' }, env: {}, readConfig: () => undefined }), usage(/^invalid --lock-wait -1$/));
  assert.throws(() => resolveSettings({ defs, flags: { compress: 'lz5' }, env: {}, readConfig: () => undefined }), usage(/invalid compression "lz5"/));
  assert.throws(() => resolveSettings({ defs, flags: {}, env: { CAIRN_COMPRESS: 'lz5' }, readConfig: () => undefined }),
    configError(/^environment variable CAIRN_COMPRESS: invalid compression "lz5"$/));
  assert.throws(() => resolveSettings({ defs, flags: {}, env: {}, readConfig: () => 'jobs = 0\n' }), configError(/config file ".*": invalid jobs 0/));
});
