import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pgClientConfig } from './connect.js';
import { lookupPgpass, pgpassPath } from './pgpass.js';

const dir = mkdtempSync(join(tmpdir(), 'cairn-pgpass-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (text: string, mode = 0o600) => {
  const p = join(dir, `pgpass-${++n}`);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
};
const at = (host: string, port = 5432, database = 'app', user = 'backup') => ({ host, port, database, user });

test('the first matching line wins; * matches any field; comments and blank lines are skipped', () => {
  const p = file(['# a comment', '', 'db1:5432:app:backup:first', 'db1:5432:app:backup:second', '*:*:*:backup:any-host', 'db2:6000:*:*:port-6000', ''].join('\n'));
  assert.equal(lookupPgpass(p, at('db1')).password, 'first');
  assert.equal(lookupPgpass(p, at('db3')).password, 'any-host');
  assert.equal(lookupPgpass(p, at('db2', 6000, 'other', 'someone')).password, 'port-6000');
  assert.equal(lookupPgpass(p, at('db2', 5432, 'other', 'someone')).password, undefined);
  // A field that only starts like the value does not match.
  assert.equal(lookupPgpass(file('db1:5432:app:backupX:no\n'), at('db1')).password, undefined);
  assert.equal(lookupPgpass(file('db1:5432:app:back:no\n'), at('db1')).password, undefined);
});

test('backslashes escape : and \\ in fields and in the password; CRLF lines read', () => {
  const p = file('db\\:1:5432:app:backup:pa\\:ss\\\\word:ignored\r\n');
  assert.equal(lookupPgpass(p, at('db:1')).password, 'pa:ss\\word');
  // An unescaped ':' in a field matches a ':' of the value (an IPv6 address), as in libpq.
  assert.equal(lookupPgpass(file('::1:5432:app:backup:v6\n'), at('::1')).password, 'v6');
  // Fewer than five fields, or a trailing backslash: no match.
  assert.equal(lookupPgpass(file('db1:5432:app\n'), at('db1')).password, undefined);
  assert.equal(lookupPgpass(file('db1:5432:app:backup\\'), at('db1')).password, undefined);
  assert.equal(lookupPgpass(file('db1:5432:app:backup:'), at('db1')).password, '');
});

test('a connection over a default socket directory matches "localhost"; another socket directory only itself', () => {
  const p = file('localhost:5432:*:*:local\n/srv/sock:5432:*:*:srv\n');
  assert.equal(lookupPgpass(p, at('/var/run/postgresql')).password, 'local');
  assert.equal(lookupPgpass(p, at('/tmp')).password, 'local');
  assert.equal(lookupPgpass(p, at('/srv/sock')).password, 'srv');
  assert.equal(lookupPgpass(p, at('/elsewhere')).password, undefined);
});

test('a file others may read, or not a plain file, is ignored with the reason; a missing one is nothing', () => {
  const open = lookupPgpass(file('*:*:*:*:pw\n', 0o640), at('db1'));
  assert.equal(open.password, undefined);
  assert.match(open.ignored!, /has group or world access; permissions should be u=rw \(0600\) or less/);
  const d = join(dir, 'a-dir');
  mkdirSync(d);
  assert.match(lookupPgpass(d, at('db1')).ignored!, /is not a plain file/);
  assert.deepEqual(lookupPgpass(join(dir, 'none'), at('db1')), {});
});

test('PGPASSFILE names the file; pg asks for the password only through our reader', async () => {
  assert.equal(pgpassPath({ PGPASSFILE: '/x/y' }), '/x/y');
  assert.match(pgpassPath({}), /\/\.pgpass$/);
  const p = file('db.example:6000:app:backup:from-file\n');
  const ignored: string[] = [];
  const c = pgClientConfig({ env: { PGHOST: 'db.example', PGPORT: '6000', PGUSER: 'backup', PGDATABASE: 'app', PGPASSFILE: p }, application: 'x' }, ignored);
  assert.equal(typeof c.password, 'function');
  assert.equal(await (c.password as () => Promise<string>)(), 'from-file');
  const loose = file('*:*:*:*:pw\n', 0o644);
  const c2 = pgClientConfig({ env: { PGHOST: 'db.example', PGPASSFILE: loose }, application: 'x' }, ignored);
  assert.equal(await (c2.password as () => Promise<string>)(), undefined);
  assert.equal(ignored.length, 1);
});
