import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkSegmentHeader, checkStoredSegment, readWalPageHeader, LONG_PAGE_HEADER_SIZE } from './index.js';
import { throwsWith } from '../testing/errors.js';

interface Fields {
  magic?: number;
  info?: number;
  tli?: number;
  addr?: bigint;
  remLen?: number;
  sysid?: bigint;
  segSize?: number;
  blcksz?: number;
}

/** A synthetic XLogLongPageHeaderData (see the layout in page-header.ts). */
function header(f: Fields = {}, le = true): Buffer {
  const b = Buffer.alloc(8192);
  const w16 = (v: number, o: number) => (le ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o));
  const w32 = (v: number, o: number) => (le ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o));
  const w64 = (v: bigint, o: number) => (le ? b.writeBigUInt64LE(v, o) : b.writeBigUInt64BE(v, o));
  w16(f.magic ?? 0xd110, 0);
  w16(f.info ?? 0x0002, 2);
  w32(f.tli ?? 1, 4);
  w64(f.addr ?? 0x3000000n, 8);
  w32(f.remLen ?? 0, 16);
  w64(f.sysid ?? 7312345678901234567n, 24);
  w32(f.segSize ?? 16 * 1024 * 1024, 32);
  w32(f.blcksz ?? 8192, 36);
  return b;
}

const LABEL = 'pg_wal/000000010000000000000003';
const notWal = (why: string | RegExp) =>
  typeof why === 'string' ? `"${LABEL}" is not a WAL segment: ${why}` : new RegExp(`^"${LABEL.replace(/\//g, '\\/')}" is not a WAL segment: .*${why.source}`);

describe('readWalPageHeader on synthetic headers', () => {
  test('little-endian (x86, ARM)', () => {
    const h = readWalPageHeader(header({ info: 0x0003, remLen: 77 }), LABEL);
    assert.deepEqual(h, {
      magic: 0xd110,
      pgVersion: 15,
      byteOrder: 'LE',
      info: 3,
      timeline: 1,
      pageAddress: 0x3000000n,
      remainingLength: 77,
      systemId: '7312345678901234567',
      segmentSize: 16 * 1024 * 1024,
      blockSize: 8192,
    });
  });

  test('big-endian (s390x, POWER BE) is read in its own order', () => {
    const h = readWalPageHeader(header({ tli: 5, addr: 0x1_40000000n, sysid: 2n ** 63n + 5n, segSize: 1024 ** 3, blcksz: 32768 }, false), LABEL);
    assert.equal(h.byteOrder, 'BE');
    assert.equal(h.magic, 0xd110);
    assert.equal(h.timeline, 5);
    assert.equal(h.pageAddress, 0x1_40000000n);
    assert.equal(h.systemId, (2n ** 63n + 5n).toString());
    assert.equal(h.segmentSize, 1024 ** 3);
    assert.equal(h.blockSize, 32768);
  });

  test('known magics report their version; newer 0xD1xx are accepted without one', () => {
    const versions: [number, number | undefined][] = [
      [0xd101, 12], [0xd106, 13], [0xd10d, 14], [0xd110, 15], [0xd113, 16], [0xd116, 17], [0xd118, 18], [0xd114, undefined], [0xd130, undefined],
    ];
    for (const [magic, version] of versions) assert.equal(readWalPageHeader(header({ magic }), LABEL).pgVersion, version);
  });

  const bad: [string, Buffer, string | RegExp][] = [
    ['empty', Buffer.alloc(0), 'it is empty'],
    ['39 bytes', header().subarray(0, 39), 'it is too short (39 bytes, a WAL page header has 40)'],
    ['zeros', Buffer.alloc(8192), 'bad magic number 0x0000 (PostgreSQL 12 and later write 0xD101 or higher)'],
    ['PG 11 magic', header({ magic: 0xd098 }), /bad magic number 0xD098/],
    ['text', Buffer.from('this is a text file, certainly not WAL at all, no no no'), /bad magic number/],
    ['short header on first page', header({ info: 0x0001 }), /no long header/],
    ['undefined info bits', header({ info: 0x0012 }), 'invalid info bits 0x0012 in its page header'],
    ['timeline 0', header({ tli: 0 }), 'its page header names timeline 0'],
    ['3 MiB segments', header({ segSize: 3 * 1024 * 1024 }), 'its page header gives an impossible segment size of 3145728 bytes'],
    ['2 GiB segments', header({ segSize: 2 * 1024 ** 3 }), /impossible segment size/],
    ['block size 1000', header({ blcksz: 1000 }), 'its page header gives an impossible WAL block size of 1000 bytes'],
    ['block size 128 kB', header({ blcksz: 131072 }), /impossible WAL block size/],
    ['page address inside a segment', header({ addr: 0x3002000n }), 'its page address 0/3002000 is not at a 16 MiB segment boundary'],
    ['system id 0', header({ sysid: 0n }), 'its page header has system identifier 0'],
  ];
  for (const [name, buf, why] of bad) {
    test(`refuses: ${name}`, () => {
      throwsWith(() => readWalPageHeader(buf, LABEL), 'FORMAT_INVALID', notWal(why));
    });
  }
});

describe('checkSegmentHeader', () => {
  const buf = header({ tli: 2, addr: 0x1_03000000n });
  const name = '000000020000000100000003';

  test('a header that matches its name', () => {
    assert.equal(checkSegmentHeader(buf, name, LABEL).timeline, 2);
    assert.equal(checkSegmentHeader(buf, name + '.partial', LABEL).timeline, 2);
    assert.equal(checkSegmentHeader(buf, name, LABEL, { systemId: '7312345678901234567', segmentSize: 16 * 1024 * 1024 }).pageAddress, 0x1_03000000n);
  });

  test('the first segment of a new timeline keeps the old timeline in its header', () => {
    // XLogInitNewTimeline copies the old segment up to the switch point.
    assert.equal(checkSegmentHeader(buf, '000000030000000100000003', LABEL).timeline, 2);
  });

  test('mismatches are refused', () => {
    throwsWith(() => checkSegmentHeader(buf, '000000020000000100000004', LABEL), 'FORMAT_INVALID',
      `"${LABEL}" is not WAL file "000000020000000100000004": it starts at 1/3000000, the name says 1/4000000`);
    throwsWith(() => checkSegmentHeader(buf, '000000020000000000000003', LABEL), 'FORMAT_INVALID', /it starts at 1\/3000000, the name says 0\/3000000/);
    throwsWith(() => checkSegmentHeader(buf, '000000010000000100000003', LABEL), 'FORMAT_INVALID',
      `"${LABEL}" is not WAL file "000000010000000100000003": its page header is on timeline 2, the name says 1`);
    throwsWith(() => checkSegmentHeader(buf, name, LABEL, { systemId: '42' }), 'SYSTEM_MISMATCH', `"${LABEL}" belongs to system 7312345678901234567, not 42`);
    throwsWith(() => checkSegmentHeader(buf, name, LABEL, { segmentSize: 1024 ** 3 }), 'FORMAT_INVALID', `"${LABEL}" has 16 MiB segments, the cluster has 1 GiB`);
    // A seg part that cannot exist with the header's segment size.
    const big = header({ segSize: 1024 ** 3, addr: 0n });
    throwsWith(() => checkSegmentHeader(big, '000000010000000000000010', LABEL), 'FORMAT_INVALID', /the name does not exist with its 1 GiB segments/);
  });

  test('only segment and partial names', () => {
    throwsWith(() => checkSegmentHeader(buf, '00000002.history', LABEL), 'INTERNAL');
    throwsWith(() => checkSegmentHeader(buf, '../etc', LABEL), 'USAGE');
  });
});

describe('checkStoredSegment (wal-get and verify on what a repository holds)', () => {
  const SYS = '7312345678901234567';
  const SEG16 = 16 * 1024 * 1024;
  const buf = header({ tli: 2, addr: 0x1_03000000n });
  const name = '000000020000000100000003';
  const where = 'repository "/backup"';
  const head = `WAL file "${name}" in repository "/backup"`;
  const says = 'its page header says system 7312345678901234567, timeline 2, 16 MiB segments, start 1/3000000 (000000020000000100000003)';
  const check = (n: string, b: Buffer, expect: { systemId?: string; fileSize?: number } = {}) =>
    checkStoredSegment(b, n, where, { systemId: expect.systemId ?? SYS, fileSize: expect.fileSize ?? SEG16 });

  test('the segment its name and system say, .partial included', () => {
    assert.equal(check(name, buf).pageAddress, 0x1_03000000n);
    assert.equal(check(`${name}.partial`, buf, { fileSize: 8192 }).timeline, 2);
    // The first segment of a new timeline starts with the old one's header.
    assert.equal(check('000000030000000100000003', buf).timeline, 2);
  });

  test('another cluster\'s segment under the right name', () => {
    throwsWith(() => check(name, buf, { systemId: '42' }), 'WAL_MISMATCH',
      `${head} is not that segment: ${says}; the repository holds it for system 42`);
  });

  test('segment N+1 stored as N, and a segment stored under a lower timeline', () => {
    throwsWith(() => check('000000020000000100000002', buf), 'WAL_MISMATCH',
      `WAL file "000000020000000100000002" in repository "/backup" is not that segment: ${says}; the name says start 1/2000000`);
    throwsWith(() => check('000000010000000100000003', buf), 'WAL_MISMATCH', /; the name says timeline 1$/);
    // Several differences are all named.
    throwsWith(() => check('000000010000000000000004', buf, { systemId: '42' }), 'WAL_MISMATCH',
      /; the repository holds it for system 42, the name says start 0\/4000000, the name says timeline 1$/);
  });

  test('the size must fit the header: a segment exactly, a .partial at most', () => {
    throwsWith(() => check(name, buf, { fileSize: SEG16 - 8192 }), 'WAL_MISMATCH', /; the file is 16769024 bytes$/);
    throwsWith(() => check(`${name}.partial`, buf, { fileSize: SEG16 + 1 }), 'WAL_MISMATCH', /; the file is 16777217 bytes$/);
    const big = header({ segSize: 1024 ** 3, addr: 0n });
    throwsWith(() => check('000000010000000000000010', big, { fileSize: 1024 ** 3 }), 'WAL_MISMATCH', /the name does not exist with 1 GiB segments/);
  });

  test('not WAL at all', () => {
    throwsWith(() => check(name, Buffer.from('just text, whose sha256 matched, and then some more')), 'WAL_MISMATCH',
      `${head} is not a WAL segment: bad magic number 0x756A (PostgreSQL 12 and later write 0xD101 or higher)`);
    throwsWith(() => check(name, Buffer.alloc(0), { fileSize: 0 }), 'WAL_MISMATCH', `${head} is not a WAL segment: it is empty`);
  });

  test('only segment and partial names', () => {
    throwsWith(() => check('00000002.history', buf), 'INTERNAL');
  });
});

// A real segment from a real initdb: the layout above is checked against
// PostgreSQL itself, and the system id against pg_controldata.
const PG_BIN = '/usr/lib/postgresql/15/bin';
const haveInitdb = existsSync(join(PG_BIN, 'initdb'));

describe('readWalPageHeader on a segment made by initdb', { skip: haveInitdb ? false : `no ${PG_BIN}/initdb` }, () => {
  let dir = '';
  let controlData = '';
  let first: Buffer;

  const pgId = (flag: string) => execFileSync('id', [flag, 'postgres']).toString().trim();
  // PostgreSQL refuses to run as root; as root run the tools as "postgres".
  const asPg = (cmd: string, args: string[]) => {
    const env = { ...process.env, LC_ALL: 'C', LANG: 'C', TZ: 'UTC' };
    return process.getuid?.() === 0
      ? // setpriv lives in /usr/bin (runuser in /usr/sbin, often not on a CI PATH).
        execFileSync('setpriv', [`--reuid=${pgId('-u')}`, `--regid=${pgId('-g')}`, '--init-groups', '--', join(PG_BIN, cmd), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString()
      : execFileSync(join(PG_BIN, cmd), args, { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-wal-header-test-'));
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
      chownSync(dir, uid, gid);
    }
    // -k: data checksums, as the harness uses; --no-sync keeps it ~1 s.
    asPg('initdb', ['-k', '--no-sync', '--no-instructions', '-A', 'trust', '-U', 'postgres', '-D', join(dir, 'data')]);
    controlData = asPg('pg_controldata', [join(dir, 'data')]);
    const fd = openSync(join(dir, 'data', 'pg_wal', '000000010000000000000001'), 'r');
    try {
      first = Buffer.alloc(2 * 8192);
      assert.equal(readSync(fd, first, 0, first.length, 0), first.length);
    } finally {
      closeSync(fd);
    }
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const control = (field: string): string => {
    const m = new RegExp(`^${field}:\\s+(.+)$`, 'm').exec(controlData);
    assert.ok(m, `pg_controldata shows no "${field}"`);
    return m[1]!.trim();
  };

  test('fields agree with pg_controldata', () => {
    const h = readWalPageHeader(first, 'pg_wal/000000010000000000000001');
    assert.equal(h.systemId, control('Database system identifier'));
    assert.equal(h.segmentSize, Number(control('Bytes per WAL segment')));
    assert.equal(h.blockSize, Number(control('WAL block size')));
    assert.equal(h.timeline, Number(control("Latest checkpoint's TimeLineID")));
    assert.equal(h.magic, 0xd110);
    assert.equal(h.pgVersion, 15);
    assert.equal(h.byteOrder, 'LE');
    assert.equal(h.pageAddress, 0x1000000n); // segment 1 of 16 MiB
    assert.ok((h.info & 0x0002) !== 0);
  });

  test('checkSegmentHeader accepts it under its own name only', () => {
    const sysid = control('Database system identifier');
    checkSegmentHeader(first, '000000010000000000000001', 'real', { systemId: sysid, segmentSize: 16 * 1024 * 1024 });
    throwsWith(() => checkSegmentHeader(first, '000000010000000000000002', 'real'), 'FORMAT_INVALID');
    throwsWith(() => checkSegmentHeader(first, '000000010000000000000001', 'real', { systemId: '1' }), 'SYSTEM_MISMATCH');
    checkStoredSegment(first, '000000010000000000000001', 'real', { systemId: sysid, fileSize: 16 * 1024 * 1024 });
    throwsWith(() => checkStoredSegment(first, '000000010000000000000002', 'real', { systemId: sysid, fileSize: 16 * 1024 * 1024 }), 'WAL_MISMATCH');
  });

  test('only the first 40 bytes are needed; other files are refused', () => {
    readWalPageHeader(first.subarray(0, LONG_PAGE_HEADER_SIZE), 'real');
    // The second page has a short header (initdb's WAL spans it): a file
    // starting there is not a segment start.
    throwsWith(() => readWalPageHeader(first.subarray(8192), 'page 2'), 'FORMAT_INVALID', /no long header/);
    const fd = openSync(join(dir, 'data', 'global', 'pg_control'), 'r');
    const pgControl = Buffer.alloc(512);
    readSync(fd, pgControl, 0, 512, 0);
    closeSync(fd);
    // pg_control starts with the system identifier, whose low bits are the
    // microseconds and pid of initdb: about 1 in 130 of them read as a WAL
    // magic number (0xD1xx either way round), and the refusal then names the
    // next field. Refused it is, whatever the reason given.
    throwsWith(() => readWalPageHeader(pgControl, 'global/pg_control'), 'FORMAT_INVALID', /"global\/pg_control" is not a WAL segment: /);
    throwsWith(() => readWalPageHeader(Buffer.alloc(LONG_PAGE_HEADER_SIZE), 'zeros'), 'FORMAT_INVALID', /bad magic number 0x0000/);
  });
});
