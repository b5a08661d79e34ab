import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { CairnError } from '../cli/errors.js';
import { encodeBuffer, encryptionKeyFromBytes, parseCompress, sha256Hex, type EncryptionKey } from '../codec/index.js';
import { decodeWhole } from '../codec/file-codec.js';
import { ensureRepoConfig } from '../repo/repo-config.js';
import { MemoryDriver } from '../storage/memory.js';
import { MANIFEST_FORMAT, manifestKey, type BackupManifest, type ManifestFile } from './manifest.js';
import { isDamagedCopy, otherCopies, restoreFromOtherCopy, type FileCopy } from './other-copies.js';

const ID = '20261121-020000F';
const PATH = 'base/1/1259';
const data = Buffer.from('a relation page, '.repeat(500));
const operator = encryptionKeyFromBytes(randomBytes(32));
const now = new Date('2026-11-21T02:00:00Z');

function manifest(file: ManifestFile): BackupManifest {
  return {
    format: MANIFEST_FORMAT, tool: { name: 'cairn', version: '0' }, id: ID, type: 'full', parent: null, references: [], source: 'local',
    cluster: 'main', systemId: '1', pgVersionNum: 150004, pgMajor: '15', walSegmentSize: 16 << 20, timeline: 1,
    start: { time: '', lsn: '0/2000028', wal: '000000010000000000000002' }, stop: { time: '', lsn: '0/2000100', wal: '000000010000000000000002' },
    checkpointLsn: '0/2000060', compress: 'zstd:1', encrypted: true, dataChecksums: true, backupLabel: '', tablespaceMap: null,
    tablespaces: [], dirs: [{ path: 'base', mode: 0o700 }, { path: 'base/1', mode: 0o700 }], files: [file],
    totals: { size: 0, storedSize: 0, filesStored: 0, filesReferenced: 0, badPages: 0 }, durationSeconds: 1,
  };
}

/** An encrypted repository (its own data key under `operator`) holding backup ID with PATH stored as `content`, recorded as `recorded`. */
async function repo(name: string, content: Buffer, recorded = sha256Hex(content)): Promise<{ d: MemoryDriver; dataKey: EncryptionKey }> {
  const d = new MemoryDriver(name);
  const dataKey = (await ensureRepoConfig(d, 'main', operator, now)).dataKey!;
  const key = `main/backups/${ID}/data/${PATH}.zst.enc`;
  const stored = await encodeBuffer(content, { compress: parseCompress('zstd:1'), key: dataKey });
  await d.write(key, stored);
  const f: ManifestFile = { path: PATH, size: content.length, mode: 0o600, mtime: 0, sha256: recorded, ref: ID, key, storedSize: stored.length };
  await d.write(manifestKey('main', ID), Buffer.from(JSON.stringify(manifest(f))));
  return { d, dataKey };
}

const want: ManifestFile = { path: PATH, size: data.length, mode: 0o600, mtime: 0, sha256: sha256Hex(data), ref: ID, key: `main/backups/${ID}/data/${PATH}.zst.enc`, storedSize: 0 };
const damaged = new CairnError('CHECKSUM_MISMATCH', `"${PATH}" of backup ${ID} fails its checksum`);
const readCopy = async (c: FileCopy) => decodeWhole(await buffer(await c.driver.read(c.file.key)), c.file.key, c.key, { sha256: c.file.sha256, size: c.file.size, label: PATH });

test('a damaged copy is restored from the next repository with the same backup and SHA-256, decrypted with that repository\'s data key', async () => {
  const bad = new MemoryDriver('first');
  const other = await repo('other', Buffer.from('other bytes under the same backup id'));
  const good = await repo('good', data);
  const copies = otherCopies({ drivers: [other.d, good.d], cluster: 'main', key: operator, backupId: ID });
  const warnings: string[] = [];
  const got = await restoreFromOtherCopy(damaged, { bad, file: want, backupId: ID, copies, warn: (l) => warnings.push(l) }, readCopy);
  assert.ok(got.equals(data));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /^repository "memory:\/\/first": "base\/1\/1259" of backup 20261121-020000F fails its checksum; "base\/1\/1259" of backup 20261121-020000F was restored from repository "memory:\/\/good" instead \(same backup, same SHA-256 [0-9a-f]{12}…\)/);
  // The same backup id with other bytes recorded is never a candidate.
  assert.deepEqual(copies.skipped(PATH), ['repository "memory://other" records other bytes for "base/1/1259" in backup 20261121-020000F']);
  // Each repository has its own data key: the other one's would not open it.
  assert.notEqual(good.dataKey.id, other.dataKey.id);
  const stored = await buffer(await good.d.read(want.key));
  await assert.rejects(decodeWhole(stored, want.key, other.dataKey, { sha256: want.sha256, size: want.size, label: PATH }), (e: unknown) => isDamagedCopy(e));
});

test('no good copy: the first error, with what each repository lacked in its hint', async () => {
  const bad = new MemoryDriver('first2');
  const none = new MemoryDriver('empty');
  const corrupt = await repo('corrupt', Buffer.from('x'.repeat(data.length)), sha256Hex(data));
  const copies = otherCopies({ drivers: [none, corrupt.d], cluster: 'main', key: operator, backupId: ID });
  const err = await restoreFromOtherCopy(damaged, { bad, file: want, backupId: ID, copies, warn: () => assert.fail('no warning without a copy') }, readCopy).then(() => undefined, (e: unknown) => e as CairnError);
  assert.ok(err);
  assert.equal(err.code, 'CHECKSUM_MISMATCH');
  assert.equal(err.message, damaged.message);
  assert.match(err.hint ?? '', /repository "memory:\/\/empty" holds no cluster "main"; repository "memory:\/\/corrupt": .*fails its checksum/);
});

test('an error that is not about the stored copy (a full disk) is not healed', async () => {
  const good = await repo('good2', data);
  const copies = otherCopies({ drivers: [good.d], cluster: 'main', key: operator, backupId: ID });
  const disk = new CairnError('FILE_UNWRITABLE', 'cannot write "/srv/pg/base/1/1259": ENOSPC');
  await assert.rejects(restoreFromOtherCopy(disk, { bad: new MemoryDriver(), file: want, backupId: ID, copies, warn: () => {} }, () => assert.fail('not tried')), (e) => e === disk);
  assert.equal(isDamagedCopy(disk), false);
  for (const code of ['CHECKSUM_MISMATCH', 'FORMAT_INVALID', 'DECRYPT_FAILED', 'OBJECT_MISSING'] as const) assert.equal(isDamagedCopy(new CairnError(code, 'x')), true, code);
});

test('a configuration file is matched among the configuration files, not a data file of the same path', async () => {
  const d = new MemoryDriver('with-config');
  const dataKey = (await ensureRepoConfig(d, 'main', operator, now)).dataKey!;
  const conf = Buffer.from("shared_buffers = '128MB'\n");
  const key = `main/backups/${ID}/config/postgresql.conf.zst.enc`;
  const stored = await encodeBuffer(conf, { compress: parseCompress('zstd:1'), key: dataKey });
  await d.write(key, stored);
  const c = { path: 'postgresql.conf', size: conf.length, mode: 0o644, mtime: 0, sha256: sha256Hex(conf), ref: ID, key, storedSize: stored.length, setting: 'config_file' as const, source: '/etc/postgresql/15/main/postgresql.conf' };
  // PGDATA's own postgresql.conf, other bytes under the same path.
  const m = manifest({ ...want, path: 'postgresql.conf' });
  await d.write(manifestKey('main', ID), Buffer.from(JSON.stringify({ ...m, config: [c] })));
  const copies = otherCopies({ drivers: [d], cluster: 'main', key: operator, backupId: ID });
  assert.deepEqual(await copies.find(c), [], 'not the data file');
  assert.deepEqual(copies.skipped(c.path), ['repository "memory://with-config" records other bytes for "postgresql.conf" in backup 20261121-020000F']);
  const warnings: string[] = [];
  const got = await restoreFromOtherCopy(damaged, { bad: new MemoryDriver('first3'), file: c, part: 'config', backupId: ID, copies, warn: (l) => warnings.push(l) }, readCopy);
  assert.ok(got.equals(conf));
  assert.match(warnings[0]!, /; configuration file "postgresql\.conf" of backup 20261121-020000F was restored from repository "memory:\/\/with-config" instead/);
});
