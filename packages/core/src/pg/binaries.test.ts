import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { dbnameConninfo, quoteIdent } from './connect.js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CairnError } from '../cli/errors.js';
import { dumpReaderMajor, findPgProgram, parseProgramMajor } from './binaries.js';

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

describe('findPgProgram: the major each program must have', () => {
  /** A bin directory whose programs print `version` (and pg_config prints the directory). */
  const fakeBin = async (root: string, name: string, version: string): Promise<string> => {
    const dir = join(root, name);
    await mkdir(dir);
    for (const p of ['pg_ctl', 'initdb', 'pg_dump', 'pg_amcheck']) {
      await writeFile(join(dir, p), `#!/bin/sh\necho "${p} (PostgreSQL) ${version}"\n`, { mode: 0o755 });
    }
    await writeFile(join(dir, 'pg_config'), `#!/bin/sh\necho "${dir}"\n`, { mode: 0o755 });
    return dir;
  };

  it('passes over pg_config\'s pg_ctl of another major for the one on PATH; --pg-bin is the only candidate', async () => {
    const root = await mkdtemp(join(tmpdir(), 'cairn-pgbin-'));
    try {
      const v15 = await fakeBin(root, 'v15', '15.14');
      const v96 = await fakeBin(root, 'v96', '96.1');
      // pg_config (first on PATH) names v15, as Debian's names its newest
      // server; PATH's pg_ctl is v96's (a major no /usr/lib/postgresql holds).
      await writeFile(join(v96, 'pg_config'), `#!/bin/sh\necho "${v15}"\n`, { mode: 0o755 });
      const env = { PATH: `${v96}:${v15}` };
      const found = await findPgProgram('pg_ctl', 96, { env });
      assert.equal(found.major, 96);
      assert.equal(found.path, 'pg_ctl', 'the PATH candidate, after pg_config\'s 15');

      // Same major only for pg_ctl and initdb, newer or older alike.
      await assert.rejects(findPgProgram('pg_ctl', 16, { pgBin: v15, env }), (e: CairnError) =>
        e.exitCode === 3 && /^pg_ctl ".*\/v15\/pg_ctl" is version 15, not the server's 16$/.test(e.message) && /PostgreSQL 16's/.test(e.hint ?? ''));
      await assert.rejects(findPgProgram('initdb', 15, { pgBin: v96, env }), /initdb ".*\/v96\/initdb" is version 96, not the server's 15/);
      // pg_dump: that major or newer; pg_amcheck: any from 14.
      assert.equal((await findPgProgram('pg_dump', 15, { pgBin: v96, env })).major, 96);
      await assert.rejects(findPgProgram('pg_dump', 16, { pgBin: v15, env }), /pg_dump ".*\/v15\/pg_dump" is version 15, older than the server \(16\)/);
      assert.equal((await findPgProgram('pg_amcheck', 18, { pgBin: v15, env })).major, 15);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
