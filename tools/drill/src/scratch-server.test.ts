import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverLogProblem } from './scratch-server.js';

test('serverLogProblem: the FATAL lines with what made a configuration file fail, else the last line', () => {
  const log = [
    '2026-12-04 14:48:08.847 GMT [9202] LOG:  could not open configuration file "/etc/extra.conf": No such file or directory',
    '2026-12-04 14:48:08.848 GMT [9202] FATAL:  configuration file "/tmp/d/postgresql.conf" contains errors',
    '',
  ].join('\n');
  assert.equal(serverLogProblem(log), 'FATAL: configuration file "/tmp/d/postgresql.conf" contains errors (LOG: could not open configuration file "/etc/extra.conf": No such file or directory)');
  const many = ['LOG:  starting', 'FATAL:  one', 'FATAL:  two', 'LOG:  x', 'PANIC:  three', 'FATAL:  four'].join('\n');
  assert.equal(serverLogProblem(many), 'FATAL: two | PANIC: three | FATAL: four');
  assert.equal(serverLogProblem('postgres: could not access the server configuration file "/d/postgresql.conf": No such file or directory\n\n'), 'postgres: could not access the server configuration file "/d/postgresql.conf": No such file or directory');
  assert.equal(serverLogProblem(''), undefined);
});
