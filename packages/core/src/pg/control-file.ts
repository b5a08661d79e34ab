// Reads the database system identifier from PGDATA/global/pg_control, so
// wal-get (run by PostgreSQL with cwd = PGDATA) and wal-push (for history
// files, which carry no identifier) know which system they serve.

import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * ControlFileData starts with `uint64 system_identifier` then
 * `uint32 pg_control_version` (pg_control.h); both little-endian here.
 * Returns undefined when there is no readable pg_control.
 */
export async function readSystemIdFromPgData(pgdata: string): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(join(pgdata, 'global', 'pg_control'), 'r');
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(16);
    const { bytesRead } = await fh.read(buf, 0, 16, 0);
    if (bytesRead < 16) return undefined;
    const version = buf.readUInt32LE(8);
    // pg_control_version is 1300 for PostgreSQL 13–16 and 1700 for 17; a value
    // outside a sane range means another byte order or not a control file.
    if (version < 900 || version > 9999) return undefined;
    const id = buf.readBigUInt64LE(0);
    return id === 0n ? undefined : id.toString();
  } finally {
    await fh.close();
  }
}

/**
 * The system of the data directory `path` lies in: the nearest directory at
 * or above it holding a readable global/pg_control (walked by name, so a
 * symlinked pg_wal still leads to its data directory). pg_rewind runs
 * restore_command outside the data directory with an absolute %p inside it.
 */
export async function findSystemIdAbove(path: string): Promise<{ pgdata: string; systemId: string } | undefined> {
  for (let dir = path; ; dir = dirname(dir)) {
    const systemId = await readSystemIdFromPgData(dir);
    if (systemId !== undefined) return { pgdata: dir, systemId };
    if (dirname(dir) === dir) return undefined;
  }
}
