// The generated repository of the files simulation (issue 19): one full
// backup of N relation files as basebackup would describe them, its WAL
// (start and stop segment), repo.json-less like a cluster made before repo.json.
// Written as a stream, so generating a million entries holds little.

import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { finished } from 'node:stream/promises';
import { zstdCompressSync } from 'node:zlib';

/**
 * What every relation file of the simulation holds: one 8 KiB heap page (a
 * header, then the same row again and again), and its stored object, a zstd
 * frame as basebackup writes it. The data objects are not on disk: the sim's
 * driver serves STORED_FILE for every one of them, so the restore scheduler
 * decodes and checks real objects (files-sim.mjs).
 */
export const FILE_DATA = (() => {
  const b = Buffer.alloc(8192);
  b.writeUInt16LE(24 + 4 * 64, 12);
  for (let off = 8192 - 128; off >= 24 + 4 * 64; off -= 128) b.write(`row at ${off} of a simulated relation `.padEnd(128, '.'), off);
  return b;
})();
export const STORED_FILE = zstdCompressSync(FILE_DATA);
const FILE_SHA256 = createHash('sha256').update(FILE_DATA).digest('hex');

export const SIM = {
  cluster: 'main',
  id: '20261201-020000F',
  systemId: '7312345678901234567',
  mtime: 1764554400,
  storedSize: STORED_FILE.length,
  now: '2026-12-02T00:00:00Z',
};

/** Relation file i: base/16384/<1000000+i> (keys sort as the numbers do). */
export const FILE_PATH = (i) => `base/16384/${1_000_000 + i}`;
export const DATA_KEY = (i) => `${SIM.cluster}/backups/${SIM.id}/data/${FILE_PATH(i)}.zst`;
const sha = (i) => createHash('sha256').update(String(i)).digest('hex');

const START_WAL = '000000010000000000000002';
const STOP_WAL = '000000010000000000000003';

/** The manifest's fields other than the file list, as basebackup writes them. */
export function simHeader(n) {
  return {
    format: 'cairn.backup/2',
    tool: { name: 'cairn', version: 'sim' },
    id: SIM.id,
    type: 'full',
    parent: null,
    references: [],
    source: 'local',
    cluster: SIM.cluster,
    systemId: SIM.systemId,
    pgVersionNum: 150004,
    pgMajor: '15',
    walSegmentSize: 16777216,
    timeline: 1,
    start: { time: '2026-12-01T02:00:00.000Z', lsn: '0/2000028', wal: START_WAL },
    stop: { time: '2026-12-01T02:10:00.000Z', lsn: '0/3000100', wal: STOP_WAL },
    checkpointLsn: '0/2000060',
    compress: 'zstd:1',
    encrypted: false,
    dataChecksums: true,
    backupLabel: `START WAL LOCATION: 0/2000028 (file ${START_WAL})\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-12-01 02:00:00 UTC\nLABEL: sim\nSTART TIMELINE: 1\n`,
    tablespaceMap: null,
    tablespaces: [],
    dirs: [{ path: 'base', mode: 0o700 }, { path: 'base/16384', mode: 0o700 }, { path: 'global', mode: 0o700 }],
    totals: { size: FILE_DATA.length * n, storedSize: SIM.storedSize * n, filesStored: n, filesReferenced: 0, badPages: 0 },
    durationSeconds: 600,
  };
}

/** File entry i of the manifest. */
export function simFile(i) {
  return { path: FILE_PATH(i), size: FILE_DATA.length, mode: 0o600, mtime: SIM.mtime, sha256: FILE_SHA256, ref: SIM.id, key: DATA_KEY(i), storedSize: SIM.storedSize };
}

async function writeLines(path, lines) {
  mkdirSync(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  for (const line of lines) if (!out.write(line)) await new Promise((r) => out.once('drain', r));
  out.end();
  await finished(out);
}

/** The manifest as cairn.backup/2 writes it: one JSON document. */
function* legacyManifest(n) {
  const head = JSON.stringify({ ...simHeader(n), files: [] });
  // Everything up to the empty file list, then the entries, then the rest.
  const at = head.indexOf('"files":[]') + '"files":['.length;
  yield head.slice(0, at);
  for (let i = 0; i < n; i++) yield (i ? ',' : '') + JSON.stringify(simFile(i));
  yield head.slice(at) + '\n';
}

/**
 * Writes the repository of `n` files under `dir`; `writeManifest(path, header,
 * files)` writes the manifest (the product's streamed writer) when given,
 * else it is written as cairn.backup/2.
 */
export async function generateRepo(dir, n, writeManifest) {
  const c = join(dir, SIM.cluster);
  mkdirSync(join(c, 'systems'), { recursive: true });
  writeFileSync(join(c, 'systems', `${SIM.systemId}.json`), JSON.stringify({ systemId: SIM.systemId, pgVersionNum: 150004, firstSeen: '2026-12-01T00:00:00Z', registeredBy: 'sim' }));
  for (const w of [START_WAL, STOP_WAL]) {
    const p = join(c, 'wal', SIM.systemId, w.slice(0, 16), `${w}-${sha(w)}`);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, '');
  }
  const manifest = join(c, 'backups', SIM.id, 'manifest.json');
  const files = function* () {
    for (let i = 0; i < n; i++) yield simFile(i);
  };
  if (writeManifest) await writeManifest(manifest, simHeader(n), files());
  else await writeLines(manifest, legacyManifest(n));
  return manifest;
}
