import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeArchiveSettings, type ArchiveSettings } from './archive-settings.js';

const good: ArchiveSettings = { archive_mode: 'on', wal_level: 'replica', archive_command: 'cairn-wal-push %p', archive_library: '', inRecovery: false };
const settingsOf = (over: Partial<ArchiveSettings>) => judgeArchiveSettings({ ...good, ...over }).map((p) => p.setting);

test('a cairn archive_command in its usual spellings is right', () => {
  for (const cmd of ['cairn-wal-push %p', 'cairn-wal-push %p %f', '/usr/bin/cairn-wal-push %p', "/opt/cairn/bin/cairn-wal-push --repo /backup '%p'", 'cairn wal-push %p', 'test ! -f /stop && cairn-wal-push %p']) {
    assert.deepEqual(judgeArchiveSettings({ ...good, archive_command: cmd }), [], cmd);
  }
  assert.deepEqual(judgeArchiveSettings({ ...good, archive_mode: 'always', wal_level: 'logical', inRecovery: true }), []);
});

test('each wrong setting is named once, with its fix', () => {
  assert.deepEqual(settingsOf({ archive_mode: 'off' }), ['archive_mode']);
  assert.deepEqual(settingsOf({ inRecovery: true }), ['archive_mode']);
  assert.deepEqual(settingsOf({ wal_level: 'minimal', archive_mode: 'off' }), ['archive_mode', 'wal_level']);
  assert.deepEqual(settingsOf({ archive_command: '' }), ['archive_command']);
  assert.deepEqual(settingsOf({ archive_command: '(disabled)' }), ['archive_command']);
  assert.deepEqual(settingsOf({ archive_command: 'aws s3 cp %p s3://bucket/wal/%f' }), ['archive_command']);
  assert.deepEqual(settingsOf({ archive_command: 'cairn-wal-push-old %p' }), ['archive_command']);
  assert.deepEqual(settingsOf({ archive_command: 'cairn-wal-push' }), ['archive_command']);
  assert.deepEqual(settingsOf({ archive_library: 'basic_archive' }), ['archive_library']);
  const [p] = judgeArchiveSettings({ ...good, archive_command: '/bin/true' });
  assert.match(p!.message, /archive_command "\/bin\/true" does not run cairn-wal-push; set archive_command = 'cairn-wal-push %p'/);
});
