// Real WAL for tests that drive wal-push and wal-get directly: a cluster is
// made, switched a few times and stopped; its segments and pg_control are
// copied into a pg-owned directory laid out like a data directory.

import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCluster } from '@cairn/testkit/pg-cluster';
import { chownToPgUser, makeTempDir } from '@cairn/testkit/tmp';

export interface WalMaterial {
  /** A directory with global/pg_control and pg_wal/<segments>, owned by the pg user. */
  pgdata: string;
  segments: string[];
  systemId: string;
}

export async function makeWalMaterial(name: string, switches = 3): Promise<WalMaterial> {
  const c = await createCluster({ name });
  await c.start();
  await c.psql('create table t(i int)');
  for (let i = 0; i < switches; i++) {
    await c.psql(`insert into t select generate_series(1, 1000); select pg_switch_wal()`);
  }
  const systemId = await c.psql('select system_identifier::text from pg_control_system()');
  // Only finished segments: later names in pg_wal/ are recycled files that
  // still hold old WAL (their headers name another segment).
  // (After a switch the current LSN names the previous segment: write first.)
  const current = await c.psql('insert into t values (0); select pg_walfile_name(pg_current_wal_lsn())');
  // Copy while the server runs: its shutdown checkpoint would recycle them.
  const dir = await makeTempDir(`${name}-pgdata`);
  await mkdir(join(dir, 'global'), { recursive: true });
  await mkdir(join(dir, 'pg_wal', 'archive_status'), { recursive: true });
  const segments = (await readdir(join(c.pgdata, 'pg_wal'))).filter((n) => /^[0-9A-F]{24}$/.test(n) && n < current).sort();
  for (const s of segments) await copyFile(join(c.pgdata, 'pg_wal', s), join(dir, 'pg_wal', s));
  await c.stop();
  await copyFile(join(c.pgdata, 'global', 'pg_control'), join(dir, 'global', 'pg_control'));
  await chownToPgUser(dir, { recursive: true });
  await c.destroy();
  return { pgdata: dir, segments, systemId };
}

/** Writes a file into the material's pg_wal/ as the pg user's. */
export async function putWalFile(m: WalMaterial, name: string, data: Buffer | string): Promise<string> {
  const p = join(m.pgdata, 'pg_wal', name);
  await writeFile(p, data, { mode: 0o600 });
  await chownToPgUser(p);
  return p;
}
