import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { dbnameConninfo, quoteIdent } from './connect.js';
import { dumpReaderMajor, parseProgramMajor } from './binaries.js';

describe('pg programs', () => {
  it('reads the major of a --version line', () => {
    assert.equal(parseProgramMajor('pg_dump (PostgreSQL) 15.14 (Ubuntu 15.14-1.pgdg24.04+1)'), 15);
    assert.equal(parseProgramMajor('pg_restore (PostgreSQL) 17.2'), 17);
    assert.equal(parseProgramMajor('psql (PostgreSQL) 18beta1'), 18);
    assert.equal(parseProgramMajor('pg_dump (PostgreSQL) 9.6.24'), 9.6);
    assert.equal(parseProgramMajor('no version here'), undefined);
  });

  it('quotes database names for libpq and SQL', () => {
    assert.equal(dbnameConninfo("it's a\\b"), "dbname='it\\'s a\\\\b'");
    assert.equal(dbnameConninfo('host=evil'), "dbname='host=evil'");
    assert.equal(quoteIdent('My "db"'), '"My ""db"""');
  });
});

test('dumpReaderMajor: the pg_dump that wrote a dump decides, else the server', () => {
  assert.equal(dumpReaderMajor({ pgDumpVersion: 'pg_dump (PostgreSQL) 17.2', pgMajor: '15' }), 17);
  assert.equal(dumpReaderMajor({ pgDumpVersion: 'pg_dumpall (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)', pgMajor: '15' }), 15);
  assert.equal(dumpReaderMajor({ pgDumpVersion: '', pgMajor: '16' }), 16);
});
