import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { BLCKSZ, RELSEG_BLOCKS, findBadPages, firstBlockOf, isChecksummedRelationFile, pageChecksum } from './page-checksum.js';
import { MAX_LSN } from '../wal/lsn.js';
import { throwsWith } from '../testing/errors.js';

/** Random contents with a plausible header: LSN `lsn`, pd_upper set, checksum right for `block`. */
function page(block: number, lsn = 0x1_0000_0028n, seed?: number): Buffer {
  const p = Buffer.alloc(BLCKSZ);
  if (seed === undefined) randomFillSync(p);
  else for (let i = 0; i < BLCKSZ; i++) p[i] = (i * 31 + seed) & 0xff;
  p.writeUInt32LE(Number(lsn >> 32n), 0);
  p.writeUInt32LE(Number(lsn & 0xffff_ffffn), 4);
  p.writeUInt16LE(0x1f00, 14); // pd_upper
  p.writeUInt16LE(pageChecksum(p, block), 8);
  return p;
}

/** `buf` at byte offset `shift` of a fresh ArrayBuffer, to exercise the unaligned path. */
function shifted(buf: Uint8Array, shift: number): Uint8Array {
  const out = new Uint8Array(buf.length + shift).subarray(shift);
  out.set(buf);
  return out;
}

describe('pageChecksum', () => {
  test('a page whose checksum was set with it verifies; one changed byte does not', () => {
    const p = page(7);
    assert.deepEqual(findBadPages(p, 0, 7, MAX_LSN), []);
    p[4000]! ^= 0x01;
    assert.deepEqual(findBadPages(p, 0, 7, MAX_LSN), [7]);
  });

  test('known answers (the algorithm matches PostgreSQL in testkit/page-checksum-pg.test.ts)', () => {
    const p = page(0, 0x1_0000_0028n, 1);
    assert.equal(pageChecksum(p, 0), 63734);
    assert.equal(pageChecksum(p, 0xffff_fffe), 1802);
  });

  test('the stored pd_checksum does not take part, the rest of the header does', () => {
    const p = page(0);
    const sum = pageChecksum(p, 0);
    p.writeUInt16LE(0xbeef, 8);
    assert.equal(pageChecksum(p, 0), sum);
    p[10]! ^= 0x80; // pd_flags, next to pd_checksum in the same word
    assert.notEqual(pageChecksum(p, 0), sum);
  });

  test('the block number changes the checksum', () => {
    const p = page(0, 0x1_0000_0028n, 1);
    // Only xored in at the end (checksum_impl.h), so blocks 2 and 131072 may well agree; each differs from 0.
    for (const b of [1, 2, 131072, 0xffff_fffe]) assert.notEqual(pageChecksum(p, b), pageChecksum(p, 0), `block ${b}`);
    assert.deepEqual(findBadPages(p, 0, 1, MAX_LSN), [1], 'a page moved to another block fails');
  });

  test('result is in 1..65535', () => {
    for (let i = 0; i < 200; i++) {
      const c = pageChecksum(page(i), i);
      assert.ok(c >= 1 && c <= 65535, String(c));
    }
  });

  test('unaligned input gives the same checksums', () => {
    const p = page(3, 0x1_0000_0028n, 9);
    for (const shift of [1, 2, 3]) assert.equal(pageChecksum(shifted(p, shift), 3), pageChecksum(p, 3));
  });

  test('wrong sizes and block numbers are bugs in the caller', () => {
    throwsWith(() => pageChecksum(new Uint8Array(4096), 0), 'INTERNAL', /4096 bytes/);
    throwsWith(() => pageChecksum(new Uint8Array(BLCKSZ), -1), 'INTERNAL', /block number out of range/);
    throwsWith(() => pageChecksum(new Uint8Array(BLCKSZ), 2 ** 32), 'INTERNAL', /block number out of range/);
  });
});

describe('findBadPages', () => {
  test('all-zero pages and other new pages are skipped', () => {
    assert.deepEqual(findBadPages(new Uint8Array(3 * BLCKSZ), 0, 0, MAX_LSN), []);
    const p = page(0);
    p.writeUInt16LE(0, 14); // pd_upper = 0: PageIsNew
    p[100]! ^= 0xff;
    assert.deepEqual(findBadPages(p, 0, 0, MAX_LSN), []);
  });

  test('pages changed at or after the start LSN are skipped: WAL replay rewrites them', () => {
    const lsn = 0x2_0000_1000n;
    const p = page(0, lsn);
    p[5000]! ^= 0x10;
    assert.deepEqual(findBadPages(p, 0, 0, lsn), [], 'lsn == start');
    assert.deepEqual(findBadPages(p, 0, 0, lsn - 1n), [], 'lsn > start (same xlogid)');
    assert.deepEqual(findBadPages(p, 0, 0, 0x1_ffff_ffffn), [], 'lsn > start (lower xlogid, higher xrecoff)');
    assert.deepEqual(findBadPages(p, 0, 0, lsn + 1n), [0]);
    assert.deepEqual(findBadPages(p, 0, 0, 0x3_0000_0000n), [0], 'higher xlogid');
  });

  test('block numbers count from firstBlock plus the file offset', () => {
    const first = 2 * RELSEG_BLOCKS;
    const pages = [0, 1, 2, 3, 4].map((i) => page(first + 8 + i));
    pages[1]![300]! ^= 1;
    pages[4]![8191]! ^= 1;
    const buf = Buffer.concat(pages);
    assert.deepEqual(findBadPages(buf, 8 * BLCKSZ, first, MAX_LSN), [first + 9, first + 12]);
    assert.deepEqual(findBadPages(shifted(buf, 1), 8 * BLCKSZ, first, MAX_LSN), [first + 9, first + 12], 'unaligned');
    assert.deepEqual(findBadPages(new Uint8Array(0), 0, 0, MAX_LSN), []);
  });

  test('unaligned input longer than the scratch buffer', () => {
    const pages = Array.from({ length: 70 }, (_, i) => page(i));
    pages[33]![2000]! ^= 4;
    pages[69]![2]! ^= 4; // in pd_lsn: still below the start LSN
    assert.deepEqual(findBadPages(shifted(Buffer.concat(pages), 2), 0, 0, MAX_LSN), [33, 69]);
  });

  test('partial pages are a bug in the caller', () => {
    throwsWith(() => findBadPages(new Uint8Array(100), 0, 0, MAX_LSN), 'INTERNAL', /not whole pages/);
    throwsWith(() => findBadPages(new Uint8Array(BLCKSZ), 512, 0, MAX_LSN), 'INTERNAL', /not whole pages/);
  });

  test('speed over 256 MiB of pages', (t) => {
    const n = 1024; // 8 MiB of distinct pages, checked 32 times
    const buf = Buffer.concat(Array.from({ length: n }, (_, i) => page(i)));
    assert.deepEqual(findBadPages(buf, 0, 0, MAX_LSN), []);
    const rounds = 32;
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < rounds; r++) {
      if (findBadPages(buf, 0, 0, MAX_LSN).length !== 0) assert.fail('bad pages');
    }
    const ns = Number(process.hrtime.bigint() - t0);
    const mb = (buf.length * rounds) / 1e6;
    t.diagnostic(`page checksums: ${(mb / (ns / 1e9)).toFixed(0)} MB/s over ${mb.toFixed(0)} MB`);
  });
});

describe('relation files', () => {
  const cases: [string, boolean, number?][] = [
    ['base/1/1259', true, 0],
    ['base/1/1259_fsm', true, 0],
    ['base/1/1259_vm', true, 0],
    ['base/16384/16397_init', true, 0],
    ['base/1/1259.1', true, 131072],
    ['base/1/1259_fsm.2', true, 262144],
    ['global/1262', true, 0],
    ['global/pg_control', false],
    ['global/pg_filenode.map', false],
    ['base/1/PG_VERSION', false],
    ['base/1/pg_filenode.map', false],
    ['base/1/pg_internal.init', false],
    ['pg_tblspc/16385/PG_15_202209061/5/16386', true, 0],
    ['pg_tblspc/16385/PG_15_202209061/5/16386.3', true, 3 * 131072],
    ['base/5/t3_1234', false],
    ['base/5/t3_1234.1', false],
    ['base/1/1259_main', false],
    ['base/1/1259.0', false],
    ['base/1/01259', false],
    ['base/1/1259.', false],
    ['base/1259', false],
    ['pg_wal/000000010000000000000001', false],
    ['pg_xact/0000', false],
    ['pg_tblspc/16385', false],
    ['./base/1/1259', false],
    ['backup_label', false],
  ];
  for (const [path, yes, first] of cases) {
    test(`${path}: ${yes ? `checksummed, first block ${first}` : 'no checksums'}`, () => {
      assert.equal(isChecksummedRelationFile(path), yes);
      if (yes) assert.equal(firstBlockOf(path), first);
      else throwsWith(() => firstBlockOf(path), 'INTERNAL', /not a relation file/);
    });
  }

  test('a segment number past the last block is not a relation segment', () => {
    throwsWith(() => firstBlockOf('base/1/1259.32768'), 'FORMAT_INVALID', '"base/1/1259.32768" is not a relation segment: segment 32768 is past the largest block number');
    assert.equal(firstBlockOf('base/1/1259.32767'), 32767 * RELSEG_BLOCKS);
  });
});
