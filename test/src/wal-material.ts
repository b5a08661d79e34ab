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
  await c.stop();
  const dir = await makeTempDir(`${name}-pgdata`);
  await mkdir(join(dir, 'global'), { recursive: true });
  await mkdir(join(dir, 'pg_wal', 'archive_status'), { recursive: true });
  await copyFile(join(c.pgdata, 'global', 'pg_control'), join(dir, 'global', 'pg_control'));
  const segments = (await readdir(join(c.pgdata, 'pg_wal'))).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  for (const s of segments) await copyFile(join(c.pgdata, 'pg_wal', s), join(dir, 'pg_wal', s));
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
