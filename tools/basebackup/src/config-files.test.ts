import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { configFilesToStore, includedFiles } from './config-files.js';

test('configFilesToStore: only what lies outside PGDATA, once, relative to postgresql.conf\'s directory, else by name', () => {
  const got = configFilesToStore(['/var/lib/postgresql/16/main', '/srv/pg'], {
    config_file: '/etc/postgresql/16/main/postgresql.conf',
    hba_file: '/etc/postgresql/16/main/pg_hba.conf',
    ident_file: '/var/lib/postgresql/16/main/pg_ident.conf',
    includes: [
      '/etc/postgresql/16/main/postgresql.conf', '/etc/postgresql/16/main/conf.d/a.conf', '/var/lib/postgresql/16/main/postgresql.auto.conf',
      '/srv/pg/x.conf', '/opt/one/extra.conf', '/opt/two/extra.conf', '/etc/postgresql/16/main/../../common.conf', 'relative.conf',
    ],
  });
  assert.deepEqual(got.map((f) => `${f.setting} ${f.path} ${f.source}`), [
    'config_file postgresql.conf /etc/postgresql/16/main/postgresql.conf',
    'hba_file pg_hba.conf /etc/postgresql/16/main/pg_hba.conf',
    'include conf.d/a.conf /etc/postgresql/16/main/conf.d/a.conf',
    'include extra.conf /opt/one/extra.conf',
    'include 2-extra.conf /opt/two/extra.conf',
    'include common.conf /etc/postgresql/common.conf',
  ]);
  // The official Docker image and initdb layout: everything is in PGDATA.
  assert.deepEqual(configFilesToStore(['/var/lib/postgresql/data'], {
    config_file: '/var/lib/postgresql/data/postgresql.conf', hba_file: '/var/lib/postgresql/data/pg_hba.conf', ident_file: '/var/lib/postgresql/data/pg_ident.conf', includes: [],
  }), []);
});

test('includedFiles follows include, include_if_exists and include_dir as PostgreSQL does, loop-safe', async () => {
  const d = await mkdtemp(join(tmpdir(), 'cairn-inc-'));
  try {
    await mkdir(join(d, 'conf.d'));
    await mkdir(join(d, 'other'));
    await writeFile(join(d, 'postgresql.conf'), [
      "work_mem = '4MB'  # include 'not-this.conf'",
      "include_dir 'conf.d'",
      "include_if_exists = 'maybe.conf'",
      `include '${join(d, 'other', 'abs.conf')}'`,
      "#include 'commented.conf'",
      "include 'it''s.conf'",
      '',
    ].join('\n'));
    await writeFile(join(d, 'conf.d', 'b.conf'), "include '../postgresql.conf'\n");
    await writeFile(join(d, 'conf.d', 'a.conf'), "shared_buffers = '1GB'\n");
    await writeFile(join(d, 'conf.d', '.hidden.conf'), '');
    await writeFile(join(d, 'conf.d', 'notes.txt'), '');
    await writeFile(join(d, 'other', 'abs.conf'), "include 'nested.conf'\n");
    await writeFile(join(d, 'other', 'nested.conf'), '');
    await writeFile(join(d, "it's.conf"), '');
    const got = (await includedFiles(join(d, 'postgresql.conf'))).map((f) => f.slice(d.length + 1));
    assert.deepEqual(got, ['conf.d/a.conf', 'conf.d/b.conf', 'other/abs.conf', 'other/nested.conf', "it's.conf"]);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});
