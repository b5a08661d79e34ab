import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveSettings, COMMON_SETTINGS, type SettingDef } from './settings.js';
import { CairnError } from '../cli/errors.js';

const defs: SettingDef[] = [
  ...COMMON_SETTINGS,
  { name: 'compress', type: 'string', description: '', default: 'zstd:3' },
  { name: 'push-ahead', type: 'integer', description: '', default: 32 },
  { name: 'register-system', type: 'boolean', description: '', default: false },
];

const file = `
# comment
[global]
repo = /var/lib/cairn
compress = gzip
push_ahead = 8

[prod]
repo = s3://b/p?region=x
repo = /mnt/nas
compress = none
`;

test('precedence: flag > env > cluster section > global section > default', () => {
  const read = () => file;
  const base = { defs, readConfig: read };
  let s = resolveSettings({ ...base, flags: {}, env: {} });
  assert.deepEqual(s['repo'], ['/var/lib/cairn']);
  assert.equal(s['compress'], 'gzip');
  assert.equal(s['push-ahead'], 8);
  assert.equal(s['cluster'], 'main');
  assert.equal(s['register-system'], false);

  s = resolveSettings({ ...base, flags: {}, env: { CAIRN_CLUSTER: 'prod' } });
  assert.deepEqual(s['repo'], ['s3://b/p?region=x', '/mnt/nas']);
  assert.equal(s['compress'], 'none');
  assert.equal(s['push-ahead'], 8, 'falls back to [global]');

  s = resolveSettings({ ...base, flags: { compress: 'zstd:1' }, env: { CAIRN_CLUSTER: 'prod', CAIRN_COMPRESS: 'gzip:9', CAIRN_REPO: '/a, /b' } });
  assert.equal(s['compress'], 'zstd:1');
  assert.deepEqual(s['repo'], ['/a', '/b']);

  s = resolveSettings({ ...base, flags: { repo: ['/x', '/y'], 'register-system': true }, env: {} });
  assert.deepEqual(s['repo'], ['/x', '/y']);
  assert.equal(s['register-system'], true);
});

test('bad values name the source', () => {
  assert.throws(
    () => resolveSettings({ defs, flags: {}, env: { CAIRN_PUSH_AHEAD: 'lots' }, readConfig: () => undefined }),
    (e: unknown) => e instanceof CairnError && e.code === 'CONFIG_INVALID' && /CAIRN_PUSH_AHEAD/.test(e.message),
  );
  assert.throws(
    () => resolveSettings({ defs, flags: {}, env: {}, readConfig: () => 'repo /x\n' }),
    (e: unknown) => e instanceof CairnError && e.code === 'CONFIG_INVALID' && /line 1/.test(e.message),
  );
});

test('a missing default config file is fine, an explicit one is not', () => {
  const s = resolveSettings({ defs, flags: {}, env: {} });
  assert.equal(s['cluster'], 'main');
  assert.throws(
    () => resolveSettings({ defs, flags: { config: '/nonexistent/cairn.conf' }, env: {} }),
    (e: unknown) => e instanceof CairnError && e.code === 'CONFIG_INVALID' && /nonexistent/.test(e.message),
  );
});

test('a declared choice list is the one check of a value: exit 2 from a flag, 3 from the environment or the file', () => {
  const typed: SettingDef[] = [...COMMON_SETTINGS, { name: 'type', type: 'string', description: '', default: 'full', choices: ['full', 'diff', 'incr'] }];
  const none = () => undefined;
  assert.equal(resolveSettings({ defs: typed, flags: { type: 'incr' }, env: {}, readConfig: none })['type'], 'incr');
  assert.throws(
    () => resolveSettings({ defs: typed, flags: { type: 'ful' }, env: {}, readConfig: none }),
    (e: unknown) => e instanceof CairnError && e.code === 'USAGE' && e.message === 'invalid --type "ful"' && e.hint === 'use full, diff or incr',
  );
  assert.throws(
    () => resolveSettings({ defs: typed, flags: {}, env: { CAIRN_TYPE: 'ful' }, readConfig: none }),
    (e: unknown) => e instanceof CairnError && e.code === 'CONFIG_INVALID' && e.message === 'environment variable CAIRN_TYPE: invalid type "ful"' && e.hint === 'use full, diff or incr',
  );
  assert.throws(
    () => resolveSettings({ defs: typed, flags: {}, env: {}, readConfig: () => 'type = ful\n' }),
    (e: unknown) => e instanceof CairnError && e.code === 'CONFIG_INVALID' && /^config file "[^"]+": invalid type "ful"$/.test(e.message),
  );
});

test('a list nobody set is empty, not undefined', () => {
  const s = resolveSettings({ defs, flags: {}, env: {}, readConfig: () => undefined });
  assert.deepEqual(s['repo'], []);
});
