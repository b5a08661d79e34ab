import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseBackupLabel, segmentSizeFrom } from './label.js';
import { streamPgData } from './pgdata-walk.js';
import { comparePaths } from '@cairn/core/backup/manifest-stream';

test('the walk leaves out what PostgreSQL says to leave out, and follows tablespaces', async () => {
  const root = await mkdtemp(join(tmpdir(), 'walk-'));
  const ts = await mkdtemp(join(tmpdir(), 'walk-ts-'));
  try {
    const pg = join(root, 'data');
    const files: Record<string, string> = {
      PG_VERSION: '15\n', 'postgresql.auto.conf': '', 'postmaster.pid': '1', 'postmaster.opts': 'x', backup_label: 'x', tablespace_map: 'x',
      'recovery.signal': '', 'standby.signal': '', 'postgresql.auto.conf.tmp': 'x', 'global/pg_control': 'c', 'base/1/1259': 'r',
      'base/1/pg_internal.init': 'x', 'base/5/t3_16400': 'temp', 'base/5/16401': 'keep', 'base/pgsql_tmp/pgsql_tmp1.0': 'x',
      'pg_wal/000000010000000000000001': 'w', 'pg_wal/archive_status/000000010000000000000001.done': '', 'pg_replslot/s/state': 'x',
      'pg_stat_tmp/global.stat': 'x', 'pg_subtrans/0000': 'x', 'pg_notify/0000': 'x', 'pg_stat/pgstat.stat': 'keep', 'log/postgresql.log': 'keep',
    };
    for (const [p, c] of Object.entries(files)) {
      await mkdir(join(pg, p, '..'), { recursive: true });
      await writeFile(join(pg, p), c);
    }
    await mkdir(join(ts, 'PG_15_202209061/5'), { recursive: true });
    await writeFile(join(ts, 'PG_15_202209061/5/16500'), 'ts');
    await mkdir(join(pg, 'pg_tblspc'));
    await symlink(ts, join(pg, 'pg_tblspc/16499'));
    const walk = streamPgData(pg);
    const w = { files: [] as { path: string }[], dirs: walk.dirs, tablespaces: walk.tablespaces };
    for await (const f of walk.files) w.files.push(f.info);
    assert.deepEqual(w.files.map((f) => f.path).sort(), [
      'PG_VERSION', 'base/1/1259', 'base/5/16401', 'global/pg_control', 'log/postgresql.log', 'pg_stat/pgstat.stat',
      'pg_tblspc/16499/PG_15_202209061/5/16500', 'postgresql.auto.conf',
    ]);
    const dirs = w.dirs.map((d) => d.path);
    for (const d of ['pg_wal', 'pg_wal/archive_status', 'pg_replslot', 'pg_stat_tmp', 'pg_subtrans', 'pg_notify', 'pg_tblspc/16499']) assert.ok(dirs.includes(d), d);
    assert.ok(!dirs.includes('base/pgsql_tmp'));
    assert.deepEqual(w.tablespaces, [{ oid: '16499', location: ts }]);
  } finally {
    await rm(root, { recursive: true, force: true });
    await rm(ts, { recursive: true, force: true });
  }
});

test('backup_label: positions, time and timeline', () => {
  const l = parseBackupLabel(
    'START WAL LOCATION: 0/9000028 (file 000000020000000000000009)\nCHECKPOINT LOCATION: 0/9000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-21 15:22:00 UTC\nLABEL: x\nSTART TIMELINE: 2\n',
  );
  assert.equal(l.startLsn, 0x9000028n);
  assert.equal(l.checkpointLsn, 0x9000060n);
  assert.equal(l.timeline, 2);
  assert.equal(l.startTime.toISOString(), '2026-11-21T15:22:00.000Z');
  assert.equal(segmentSizeFrom(0x9000028n, '000000020000000000000009', 0), 16 * 1024 * 1024);
  assert.equal(segmentSizeFrom(0x9000028n, '000000020000000000000002', 0), 64 * 1024 * 1024);
  assert.throws(() => parseBackupLabel('LABEL: x\n'), { code: 'FORMAT_INVALID' });
});

test('the streamed walk yields files in the manifest order (comparePaths), whatever the names', async () => {
  const root = await mkdtemp(join(tmpdir(), 'walk-order-'));
  try {
    const names = ['a/x', 'a.b', 'a-b/y', 'ab', 'a/b/c', 'a/b.c', 'a0/z', 'B', 'base/1/1259', 'base/1/1259.1', 'base/1/1259_fsm', 'base/10/1', 'base/1x'];
    for (const p of names) {
      await mkdir(join(root, p, '..'), { recursive: true });
      await writeFile(join(root, p), p);
    }
    const seen: string[] = [];
    for await (const f of streamPgData(root).files) seen.push(f.info.path);
    assert.deepEqual(seen, [...names].sort(comparePaths));
    assert.equal(new Set(seen).size, names.length);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
