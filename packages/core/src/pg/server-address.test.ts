import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { pgClientConfig } from './connect.js';
import { describeAddress, libpqEnv, serverAddress } from './server-address.js';

const dirs: string[] = [];
const servers: Server[] = [];
test.after(() => {
  for (const s of servers) s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), 'cairn-addr-'));
  dirs.push(d);
  return d;
};
/** A directory with a live socket `.s.PGSQL.<port>` in it, as a server's socket directory has. */
async function socketDir(port: number): Promise<string> {
  const d = dir();
  const server = createServer();
  servers.push(server);
  await new Promise<void>((res) => server.listen(join(d, `.s.PGSQL.${port}`), res));
  return d;
}
/** A data directory whose postmaster.pid says what a running server writes there. */
function pgdataWithPid(port: number, socket: string, listen: string): string {
  const d = dir();
  writeFileSync(join(d, 'postmaster.pid'), `4242\n${d}\n1764800000\n${port}\n${socket}\n${listen}\n  5432001  32768\nready   \n`);
  return d;
}

test('PGHOST and PGPORT win: the operator chose the server', async () => {
  const pgdata = pgdataWithPid(5440, '/var/run/postgresql', 'localhost');
  assert.deepEqual(serverAddress({ PGHOST: 'db.example', PGPORT: '6000' }, { pgdata }), { host: 'db.example', port: 6000, from: 'PGHOST' });
  assert.deepEqual(serverAddress({ PGHOST: '/run/pg' }), { host: '/run/pg', port: 5432, from: 'PGHOST' });
});

test('with --pgdata and no PGHOST: the socket directory and port of the server that owns it, over PGPORT', () => {
  const pgdata = pgdataWithPid(5440, '/var/run/postgresql', 'localhost');
  assert.deepEqual(serverAddress({ PGPORT: '5432' }, { pgdata }), { host: '/var/run/postgresql', port: 5440, from: 'postmaster.pid' });
  // No socket (unix_socket_directories = ''): its listen address, a wildcard as localhost.
  assert.deepEqual(serverAddress({}, { pgdata: pgdataWithPid(5441, '', '*') }), { host: 'localhost', port: 5441, from: 'postmaster.pid' });
  assert.deepEqual(serverAddress({}, { pgdata: pgdataWithPid(5442, '', '10.0.0.5,127.0.0.1') }), { host: '10.0.0.5', port: 5442, from: 'postmaster.pid' });
});

test('no server in --pgdata (no or a torn postmaster.pid): the default socket directories, in order', async () => {
  const empty = dir();
  const torn = dir();
  writeFileSync(join(torn, 'postmaster.pid'), '4242\n');
  const first = await socketDir(5999);
  const second = await socketDir(5999);
  assert.deepEqual(serverAddress({ PGPORT: '5999' }, { pgdata: empty, socketDirs: [dir(), first, second] }), { host: first, port: 5999, from: 'socket' });
  assert.deepEqual(serverAddress({ PGPORT: '5999' }, { pgdata: torn, socketDirs: [second] }), { host: second, port: 5999, from: 'socket' });
  // A socket of another port is not the server asked for.
  assert.deepEqual(serverAddress({ PGPORT: '6001' }, { socketDirs: [first] }), { host: 'localhost', port: 6001, from: 'localhost' });
});

test('libpqEnv hands a found address to libpq programs, and leaves libpq its own default otherwise', async () => {
  const pgdata = pgdataWithPid(5443, '/srv/sock', '');
  assert.deepEqual(libpqEnv({ PATH: '/bin' }, { pgdata }), { PATH: '/bin', PGHOST: '/srv/sock', PGPORT: '5443' });
  assert.deepEqual(libpqEnv({ PATH: '/bin' }, { socketDirs: [dir()] }), { PATH: '/bin' });
  assert.equal(describeAddress({ host: '/srv/sock', port: 5443, from: 'postmaster.pid' }), 'socket /srv/sock port 5443 (from postmaster.pid)');
});

test('pgClientConfig takes every setting from the given environment, not process.env', () => {
  const saved = { ...process.env };
  try {
    Object.assign(process.env, { PGHOST: 'wrong.example', PGPORT: '1', PGUSER: 'wrong', PGDATABASE: 'wrong', PGSSLMODE: 'require' });
    const c = pgClientConfig({ env: { PGHOST: 'db.example', PGPORT: '6000', PGUSER: 'backup', PGPASSWORD: 's3cret', PGSSLMODE: 'disable' }, application: 'cairn-test' });
    assert.deepEqual({ ...c }, { host: 'db.example', port: 6000, user: 'backup', database: 'backup', application_name: 'cairn-test', ssl: false, password: 's3cret' });
    // Without PGPASSWORD, the password file (pgpass.ts), never process.env's PGPASSWORD.
    process.env['PGPASSWORD'] = 'wrong';
    assert.equal(typeof pgClientConfig({ env: { PGHOST: 'db.example' }, application: 'x' }).password, 'function');
    // The user is the effective OS user when PGUSER is unset; no TLS over a socket.
    const s = pgClientConfig({ env: { PGHOST: '/run/pg', PGSSLMODE: 'require' }, application: 'cairn-test', database: 'postgres' });
    assert.equal(s.user, userInfo().username);
    assert.equal(s.database, 'postgres');
    assert.equal(s.ssl, false);
    assert.equal(pgClientConfig({ env: { PGHOST: 'db.example', PGSSLMODE: 'require' }, application: 'x' }).ssl, true);
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
});
