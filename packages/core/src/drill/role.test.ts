import { test } from 'node:test';
import assert from 'node:assert/strict';
import { drillRole } from './role.js';

test('the drill role: --db-user, else PGUSER, else the manifest\'s superuser, else the OS user', () => {
  const base = { flag: undefined, env: {}, superuser: undefined, osUser: 'backup' };
  assert.deepEqual(drillRole(base), { name: 'backup', from: 'the OS user' });
  assert.deepEqual(drillRole({ ...base, superuser: 'postgres' }), { name: 'postgres', from: 'the backup manifest' });
  assert.deepEqual(drillRole({ ...base, superuser: 'postgres', env: { PGUSER: 'dba' } }), { name: 'dba', from: 'PGUSER' });
  assert.deepEqual(drillRole({ ...base, superuser: 'postgres', env: { PGUSER: 'dba' }, flag: 'checker' }), { name: 'checker', from: '--db-user' });
  // An empty PGUSER is unset, as libpq reads it.
  assert.deepEqual(drillRole({ ...base, superuser: 'postgres', env: { PGUSER: '' } }), { name: 'postgres', from: 'the backup manifest' });
});
