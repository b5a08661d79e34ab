import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MANIFEST_FORMAT, type BackupManifest, type ManifestFile } from './manifest.js';
import { assertManifestRestorable, backupGroupAccess, checkManifestRules, restoredDirMode, restoredFileMode } from './manifest-rules.js';
import { screenManifest } from '../verify/manifest-rules.js';
import type { VerifyProblem } from '../verify/result-format.js';

const ID = '20261121-030000I';
const PARENT = '20261121-020000F';

function file(path: string, over: Partial<ManifestFile> = {}): ManifestFile {
  return { path, size: 1, mode: 0o600, mtime: 0, sha256: 'a'.repeat(64), ref: ID, key: `main/backups/${ID}/data/${path}.zst`, storedSize: 1, ...over };
}

/** A manifest as cairn-basebackup writes it: a chain of two, one tablespace. */
function manifest(over: Partial<BackupManifest> = {}): BackupManifest {
  return {
    format: MANIFEST_FORMAT, tool: { name: 'cairn', version: '0' }, id: ID, type: 'incr', parent: PARENT, references: [PARENT], source: 'local',
    cluster: 'main', systemId: '1', pgVersionNum: 150004, pgMajor: '15', walSegmentSize: 16 << 20, timeline: 1,
    start: { time: '', lsn: '0/2000028', wal: '000000010000000000000002' }, stop: { time: '', lsn: '0/2000100', wal: '000000010000000000000002' },
    checkpointLsn: '0/2000060', compress: 'zstd:3', encrypted: false, dataChecksums: true, backupLabel: '', tablespaceMap: '16385 /srv/ts\n',
    tablespaces: [{ oid: '16385', location: '/srv/ts' }],
    dirs: [
      { path: 'base', mode: 0o700 }, { path: 'base/1', mode: 0o700 }, { path: 'global', mode: 0o700 }, { path: 'pg_tblspc', mode: 0o700 },
      { path: 'pg_tblspc/16385', mode: 0o700 }, { path: 'pg_tblspc/16385/PG_15_202209061', mode: 0o700 },
    ],
    files: [
      file('PG_VERSION'), file('global/pg_control'), file('base/1/1259', { ref: PARENT, key: `main/backups/${PARENT}/data/base/1/1259.zst` }),
      file('pg_tblspc/16385/PG_15_202209061/16384/16386'),
    ],
    totals: { size: 0, storedSize: 0, filesStored: 0, filesReferenced: 0, badPages: 0 },
    durationSeconds: 1,
    ...over,
  };
}

const withFile = (f: ManifestFile) => manifest({ files: [...manifest().files, f] });

test('a manifest as cairn-basebackup writes it keeps every rule', () => {
  assert.deepEqual(checkManifestRules(manifest(), 'main'), []);
  assert.deepEqual(assertManifestRestorable(manifest(), 'main', 'm'), []);
});

test('paths that leave their root, are not normalised, or clash are refused', () => {
  const cases: [BackupManifest, RegExp][] = [
    [withFile(file('../x')), /file entry "\.\.\/x" leaves its root/],
    [withFile(file('base/../../x')), /leaves its root/],
    [withFile(file('/etc/cron.d/x')), /"\/etc\/cron.d\/x" is absolute/],
    [withFile(file('base//1')), /not normalised/],
    [withFile(file('./PG_VERSION')), /not normalised/],
    [withFile(file('base/1/')), /not normalised/],
    [withFile(file('')), /is empty/],
    [withFile(file('base/\0x')), /NUL/],
    [withFile(file('PG_VERSION')), /"PG_VERSION" is listed twice/],
    [withFile(file('base')), /"base" is listed twice/],
    [withFile(file('PG_VERSION/x')), /"PG_VERSION\/x" lies below file entry "PG_VERSION"/],
    [manifest({ dirs: [...manifest().dirs, { path: 'global/pg_control/d', mode: 0o700 }] }), /lies below file entry "global\/pg_control"/],
    [manifest({ dirs: [...manifest().dirs, { path: '../d', mode: 0o700 }] }), /directory entry "\.\.\/d" leaves its root/],
    // Tablespaces: numeric OIDs at an absolute, normalised, one-line location; entries under PG_<version>/.
    [manifest({ tablespaces: [{ oid: '../1', location: '/srv/ts' }] }), /tablespace OID "\.\.\/1" is not a number/],
    [manifest({ tablespaces: [{ oid: '16385', location: 'srv/ts' }] }), /location "srv\/ts" of tablespace "16385" is not an absolute path/],
    [manifest({ tablespaces: [{ oid: '16385', location: '/srv/../etc' }] }), /leaves the file system root/],
    [manifest({ tablespaces: [{ oid: '16385', location: '/' }] }), /is the root directory/],
    [manifest({ tablespaces: [{ oid: '16385', location: '/srv/ts\n16386 /etc' }] }), /"\/srv\/ts\\n16386 \/etc" of tablespace "16385" holds a control character/],
    [manifest({ tablespaces: [{ oid: '16385', location: '/a' }, { oid: '16385', location: '/b' }] }), /tablespace "16385" is listed twice/],
    [withFile(file('pg_tblspc/16385/authorized_keys')), /outside the PG_<version> directory of tablespace "16385"/],
    [withFile(file('pg_tblspc/16385')), /is where tablespace "16385" is linked/],
    [withFile(file('pg_tblspc/16385/PG_15_202209061/../../x')), /leaves its root/],
    [withFile(file('x', { mode: 0o10000 })), /invalid mode "4096"/],
  ];
  for (const [m, re] of cases) {
    const refused = checkManifestRules(m, 'main').filter((f) => f.kind === 'refuse');
    assert.ok(refused.some((f) => re.test(f.message)), `${re}: ${JSON.stringify(refused)}`);
    assert.throws(() => assertManifestRestorable(m, 'main', '"k"'), { code: 'FORMAT_INVALID', message: /^backup manifest "k" is unsafe to restore: / });
  }
});

test('object keys stay under the data/ prefix of the backup that holds them, in the chain', () => {
  const cases: [Partial<ManifestFile>, RegExp][] = [
    [{ key: 'main/wal/1/000000010000000000000001.zst' }, /names object "main\/wal\/1\/000000010000000000000001.zst", outside the prefix of backup "20261121-030000I"$/],
    [{ key: `other/backups/${ID}/data/x.zst` }, /outside the prefix/],
    [{ key: `main/backups/${ID}/manifest.json` }, /outside the prefix/],
    [{ key: `main/backups/${ID}/data/../../../wal/x` }, /outside the prefix/],
    [{ key: `main/backups/${ID}/data/` }, /outside the prefix/],
    [{ ref: PARENT }, /outside the prefix of backup "20261121-020000F"$/],
    [{ ref: '20261120-020000F', key: 'main/backups/20261120-020000F/data/x.zst' }, /which is not in its chain/],
  ];
  for (const [over, re] of cases) {
    const refused = checkManifestRules(withFile(file('base/1/9', over)), 'main');
    assert.equal(refused.length, 1, JSON.stringify(refused));
    assert.match(refused[0]!.message, re);
  }
  assert.match(checkManifestRules(manifest({ references: ['../../x'] }), 'main')[0]!.message, /referenced backup "\.\.\/\.\.\/x" is not a backup id/);
});

test('modes are masked to what PostgreSQL creates; setuid, sticky and group/other write are findings', () => {
  assert.equal(restoredFileMode(0o4777, false), 0o600);
  assert.equal(restoredFileMode(0o644, false), 0o600);
  assert.equal(restoredFileMode(0o400, false), 0o600);
  assert.equal(restoredFileMode(0o640, true), 0o640);
  assert.equal(restoredFileMode(0o600, true), 0o600);
  assert.equal(restoredDirMode(0o777, false), 0o700);
  assert.equal(restoredDirMode(0o1777, true), 0o750);
  assert.equal(restoredDirMode(0o750, false), 0o700);
  assert.equal(restoredDirMode(0o740, true), 0o700);
  // Group access: the cluster's global/ is 0750 (initdb -g), nothing else.
  assert.equal(backupGroupAccess(manifest()), false);
  assert.equal(backupGroupAccess({ dirs: [{ path: 'global', mode: 0o750 }] }), true);
  assert.equal(backupGroupAccess({ dirs: [{ path: 'global', mode: 0o777 }] }), false);

  const m = manifest({ dirs: [...manifest().dirs, { path: 'base/2', mode: 0o777 }], files: [...manifest().files, file('base/1/2', { mode: 0o4777 }), file('postgresql.conf', { mode: 0o644 })] });
  const findings = checkManifestRules(m, 'main');
  assert.deepEqual(findings.map((f) => [f.kind, f.message]), [
    ['mode', 'directory entry "base/2" has mode 0777, which PostgreSQL never creates (restored as 0700)'],
    ['mode', 'file entry "base/1/2" has mode 04777, which PostgreSQL never creates (restored as 0600)'],
  ]);
  assert.equal(assertManifestRestorable(m, 'main', 'm').length, 2, 'restored masked, not refused');
});

test('verify: each finding is a problem with control characters escaped; objects outside the chain are not read', () => {
  const bad = file('base/1/3\nproblem: forged', { key: 'main/wal/x.zst' });
  const m = manifest({ files: [...manifest().files, bad, file('base/1/4', { mode: 0o6755 })] });
  const problems: VerifyProblem[] = [];
  const screened = screenManifest(m, 'main', problems);
  assert.equal(problems.length, 2);
  assert.ok(problems.every((p) => p.kind === 'manifest-invalid' && p.subject === ID && p.key === `main/backups/${ID}/manifest.json`));
  assert.match(problems[0]!.message, /^backup "20261121-030000I": manifest file entry "base\/1\/3\\nproblem: forged" names object "main\/wal\/x.zst"/);
  assert.ok(!problems[0]!.message.includes('\n'), 'one line');
  assert.match(problems[1]!.message, /"base\/1\/4" has mode 06755/);
  assert.ok(!screened.files.includes(bad), 'the foreign object is not read');
  assert.equal(screened.files.length, m.files.length - 1);
  const none: VerifyProblem[] = [];
  const good = manifest();
  assert.equal(screenManifest(good, 'main', none), good);
  assert.deepEqual(none, []);
});

test('configuration files from outside PGDATA: relative, once, a known setting, an object of this backup', () => {
  const conf = (path: string, over: Record<string, unknown> = {}) => ({
    setting: 'config_file', source: `/etc/postgresql/16/main/${path}`, path, size: 1, mode: 0o644, mtime: 0, sha256: 'a'.repeat(64),
    ref: ID, key: `main/backups/${ID}/config/${path}.zst`, storedSize: 1, ...over,
  }) as unknown as NonNullable<BackupManifest['config']>[number];
  const withConf = (...c: NonNullable<BackupManifest['config']>) => manifest({ config: c });
  assert.deepEqual(checkManifestRules(withConf(conf('postgresql.conf'), conf('conf.d/a.conf', { setting: 'include' })), 'main'), []);
  const cases: [BackupManifest, RegExp][] = [
    [withConf(conf('../postgresql.conf')), /configuration file entry "\.\.\/postgresql\.conf" leaves its root/],
    [withConf(conf('/etc/passwd')), /is absolute/],
    [withConf(conf('a.conf'), conf('a.conf')), /"a\.conf" is listed twice/],
    [withConf(conf('a.conf'), conf('a.conf/b.conf')), /lies below configuration file entry "a\.conf"/],
    [withConf(conf('a.conf', { setting: 'data_directory' })), /names setting "data_directory"/],
    [withConf(conf('a.conf', { source: 'a.conf' })), /no absolute source path/],
    [withConf(conf('a.conf', { mode: 0o10000 })), /invalid mode/],
    [withConf(conf('a.conf', { key: `main/backups/${ID}/data/a.conf.zst` })), /outside "main\/backups\/20261121-030000I\/config\/"/],
    [withConf(conf('a.conf', { ref: PARENT, key: `main/backups/${PARENT}/config/a.conf.zst` })), /outside/],
    [manifest({ config: 'x' as unknown as BackupManifest['config'] }), /not a list/],
  ];
  for (const [m, re] of cases) {
    const found = checkManifestRules(m, 'main').map((f) => f.message).join('\n');
    assert.match(found, re);
    assert.throws(() => assertManifestRestorable(m, 'main', 'm'), /unsafe to restore: (the )?configuration file/);
  }
});

test('page layers must name chain objects, whole pages and ascending blocks that match their sizes', () => {
  const key = (id: string) => `main/backups/${id}/data/base/1/16384.zst`;
  const base = { ref: PARENT, key: key(PARENT), storedSize: 10, size: 4 * 8192, sha256: 'b'.repeat(64) };
  const layer = { ref: ID, key: key(ID), storedSize: 5, size: 2 * 8192, sha256: 'c'.repeat(64), blocks: '1,3', fileSize: 4 * 8192, fileSha256: 'a'.repeat(64) };
  const paged = (pages: unknown, over: Partial<ManifestFile> = {}) => withFile(file('base/1/16384', { size: 4 * 8192, key: key(ID), pages: pages as ManifestFile['pages'], ...over }));
  assert.deepEqual(checkManifestRules(paged({ base, layers: [layer] }), 'main'), []);
  const cases: [BackupManifest, RegExp][] = [
    [paged({ base: { ...base, ref: '20261121-010000F', key: key('20261121-010000F') }, layers: [layer] }), /names object .* outside its chain/],
    [paged({ base: { ...base, key: 'main/backups/x/../../etc' }, layers: [layer] }), /outside its chain/],
    [paged({ base: { ...base, size: 100 }, layers: [layer] }), /not whole pages/],
    [paged({ base, layers: [{ ...layer, blocks: '3,1' }] }), /not ascending/],
    [paged({ base, layers: [{ ...layer, blocks: '1-3' }] }), /does not match its size/],
    [paged({ base, layers: [{ ...layer, blocks: '1,4' }] }), /past the size it records/],
    [paged({ base, layers: [{ ...layer, fileSha256: 'd'.repeat(64) }] }), /newest page layer is not the file/],
    [paged({ base, layers: [{ ...layer, fileSize: 100 }] }), /malformed/],
  ];
  for (const [m, re] of cases) {
    assert.throws(() => assertManifestRestorable(m, 'main', 'm'), re);
    const problems: VerifyProblem[] = [];
    const kept = screenManifest(m, 'main', problems);
    assert.ok(problems.length > 0 && !kept.files.some((f) => f.path === 'base/1/16384'), `verify reports ${re} and reads nothing of the entry`);
  }
});
