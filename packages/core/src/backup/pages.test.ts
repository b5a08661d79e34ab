import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createSlots, encodeFile, encodeWhole, PIECE_SIZE } from '../codec/file-codec.js';
import { encryptionKeyFromBytes, parseCompress } from '../codec/index.js';
import { BLCKSZ, pageChecksum } from '../pg/page-checksum.js';
import { MemoryDriver } from '../storage/memory.js';
import type { ManifestFile } from './manifest.js';
import { decodeBlocks, encodeBlocks, objectEntries, pageLevelBlocker, pageUnchanged, selectChangedPages, storeChangedPages, type PageLayer, type PageSelection } from './pages.js';
import { chainStateOf, pageSources, restorePaged, restorePagedFile } from './restore-pages.js';

const PARENT_START = 0x1_0000_0100n; // 1/100

/**
 * A heap page as PostgreSQL lays it out (bufpage.h): header, one line
 * pointer, one tuple at the end, pd_checksum set for block `block`.
 */
function page(lsn: bigint, block: number, fill = 7): Buffer {
  const p = Buffer.alloc(BLCKSZ);
  p.writeUInt32LE(Number(lsn >> 32n), 0);
  p.writeUInt32LE(Number(lsn & 0xffff_ffffn), 4);
  p.writeUInt16LE(0, 10); // pd_flags
  p.writeUInt16LE(28, 12); // pd_lower: header + one line pointer
  p.writeUInt16LE(BLCKSZ - 64, 14); // pd_upper
  p.writeUInt16LE(BLCKSZ, 16); // pd_special
  p.writeUInt16LE(BLCKSZ | 4, 18); // page size | layout version 4
  p.writeUInt32LE(((BLCKSZ - 64) | (1 << 15) | (64 << 17)) >>> 0, 24); // lp_off, LP_NORMAL, lp_len
  p.fill(fill, BLCKSZ - 64);
  p.writeUInt16LE(pageChecksum(p, block), 8);
  return p;
}

const unchanged = (p: Buffer, block: number) => pageUnchanged(p, 0, block, Number(PARENT_START >> 32n), Number(PARENT_START & 0xffff_ffffn));

describe('the page rule', () => {
  it('keeps a valid page whose LSN is older than the parent start', () => {
    assert.equal(unchanged(page(PARENT_START - 1n, 3), 3), true);
    assert.equal(unchanged(page(0x0_0000_0001n, 3), 3), true);
  });
  it('stores a page whose LSN is exactly the parent start, or later', () => {
    assert.equal(unchanged(page(PARENT_START, 3), 3), false);
    assert.equal(unchanged(page(PARENT_START + 1n, 3), 3), false);
    assert.equal(unchanged(page(0x2_0000_0000n, 3), 3), false);
  });
  it('stores zeroed and new pages, and pages with LSN 0', () => {
    assert.equal(unchanged(Buffer.alloc(BLCKSZ), 0), false);
    const fresh = page(PARENT_START - 10n, 0);
    fresh.writeUInt16LE(0, 14); // pd_upper 0: PageIsNew
    assert.equal(unchanged(fresh, 0), false);
    assert.equal(unchanged(page(0n, 0), 0), false);
  });
  it('stores a page with an unreadable header', () => {
    const bad = (f: (p: Buffer) => void) => {
      const p = page(PARENT_START - 5n, 2);
      f(p);
      p.writeUInt16LE(pageChecksum(p, 2), 8); // the checksum still right: the header alone decides
      return unchanged(p, 2);
    };
    assert.equal(bad(() => {}), true);
    assert.equal(bad((p) => p.writeUInt16LE(BLCKSZ - 32, 12)), false, 'pd_lower above pd_upper');
    assert.equal(bad((p) => p.writeUInt16LE(8, 12)), false, 'pd_lower inside the header');
    assert.equal(bad((p) => p.writeUInt16LE(BLCKSZ + 8, 16)), false, 'pd_special past the page');
    assert.equal(bad((p) => p.writeUInt16LE(4096 | 4, 18)), false, 'another page size');
    assert.equal(bad((p) => p.writeUInt16LE(BLCKSZ | 3, 18)), false, 'another layout version');
    assert.equal(bad((p) => p.writeUInt16LE(0x0100, 10)), false, 'unknown pd_flags');
  });
  it('stores a torn page: an old header over new bytes fails its checksum', () => {
    const old = page(PARENT_START - 1n, 9, 1);
    const newer = page(PARENT_START + 500n, 9, 2);
    const torn = Buffer.concat([old.subarray(0, 4096), newer.subarray(4096)]);
    assert.equal(unchanged(old, 9), true);
    assert.equal(unchanged(torn, 9), false);
  });
  it('checks the checksum at the page\'s block number in its relation', () => {
    assert.equal(unchanged(page(PARENT_START - 1n, 131072 + 4), 131072 + 4), true);
    assert.equal(unchanged(page(PARENT_START - 1n, 4), 131072 + 4), false, 'a page written at the wrong place');
  });
});

describe('page-level eligibility', () => {
  const parent = { id: '20260101-000000F', systemId: '1', timeline: 1, dataChecksums: true, start: { lsn: '1/100' } } as unknown as Parameters<typeof pageLevelBlocker>[0];
  const cur = { systemId: '1', timeline: 1, startLsn: 0x1_0000_1000n, dataChecksums: true, source: 'local' as const };
  it('needs the same system and timeline, data checksums on both, a later start and local mode', () => {
    assert.equal(pageLevelBlocker(parent, cur), undefined);
    assert.match(pageLevelBlocker(parent, { ...cur, timeline: 2 })!, /timeline changed/);
    assert.match(pageLevelBlocker(parent, { ...cur, systemId: '2' })!, /another system/);
    assert.match(pageLevelBlocker(parent, { ...cur, dataChecksums: false })!, /no data checksums/);
    assert.match(pageLevelBlocker({ ...parent!, dataChecksums: false }, cur)!, /without data checksums/);
    assert.match(pageLevelBlocker(parent, { ...cur, startLsn: PARENT_START })!, /starts at or before/);
    assert.match(pageLevelBlocker(parent, { ...cur, source: 'stream' })!, /stream/);
    assert.equal(pageLevelBlocker(undefined, cur), 'no parent');
  });
});

describe('block lists', () => {
  it('round-trip as ascending ranges', () => {
    assert.equal(encodeBlocks([0, 1, 2, 3, 17, 20, 21]), '0-3,17,20-21');
    assert.deepEqual(decodeBlocks('0-3,17,20-21', 't'), [[0, 3], [17, 17], [20, 21]]);
    assert.equal(encodeBlocks([]), '');
    assert.deepEqual(decodeBlocks('', 't'), []);
  });
  it('refuse lists that are not ascending or not numbers', () => {
    for (const bad of ['3-1', '5,2', '1,1', '1-2,2', 'x', '-1', '1,,2', '01', '99999999999']) assert.throws(() => decodeBlocks(bad, 't'), /not ascending block numbers/, bad);
  });
});

async function* piecesOf(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < buf.length; at += size) yield Buffer.from(buf.subarray(at, at + size));
}

describe('selecting changed pages', () => {
  it('yields the changed pages in order, and every page past the parent\'s size', async () => {
    const file = Buffer.concat([page(1n, 0), page(PARENT_START, 1), page(2n, 2), Buffer.alloc(BLCKSZ), page(3n, 4), page(4n, 5)]);
    const sel: PageSelection = { blocks: [], bad: [], fileSize: 0 };
    const out: Buffer[] = [];
    for await (const p of selectChangedPages(piecesOf(file, 3 * BLCKSZ), { firstBlock: 0, parentStartLsn: PARENT_START, startLsn: PARENT_START + 100n, parentBlocks: 5, pieceSize: 2 * BLCKSZ }, sel)) out.push(Buffer.from(p));
    assert.deepEqual(sel.blocks, [1, 3, 5]);
    assert.deepEqual(sel.bad, []);
    assert.equal(sel.fileSize, file.length);
    assert.deepEqual(out.map((b) => b.length), [2 * BLCKSZ, BLCKSZ]);
    assert.ok(Buffer.concat(out).equals(Buffer.concat([file.subarray(BLCKSZ, 2 * BLCKSZ), file.subarray(3 * BLCKSZ, 4 * BLCKSZ), file.subarray(5 * BLCKSZ)])));
  });
  it('gives up on a file that is not whole pages', async () => {
    const sel: PageSelection = { blocks: [], bad: [], fileSize: 0 };
    await assert.rejects(async () => {
      for await (const _ of selectChangedPages(piecesOf(Buffer.alloc(BLCKSZ + 100), BLCKSZ), { firstBlock: 0, parentStartLsn: PARENT_START, startLsn: PARENT_START, parentBlocks: 1, pieceSize: BLCKSZ }, sel)) { /* drain */ }
    }, (err: Error) => err.constructor.name === 'NotWholePages');
  });
  it('reports a page whose checksum fails before this backup began as bad, in the same pass, and stores it', async () => {
    const start = PARENT_START + 1000n;
    const damaged = page(PARENT_START - 7n, 131072 + 1);
    damaged[5000] = damaged[5000]! ^ 0xff; // a flipped byte, LSN and header intact
    const torn = page(start + 5n, 131072 + 2);
    torn[6000] = torn[6000]! ^ 0xff; // changed since this backup began: may be torn, replay rewrites it
    const file = Buffer.concat([page(PARENT_START - 9n, 131072), damaged, torn]);
    const sel: PageSelection = { blocks: [], bad: [], fileSize: 0 };
    for await (const _ of selectChangedPages(piecesOf(file, 4 * BLCKSZ), { firstBlock: 131072, parentStartLsn: PARENT_START, startLsn: start, parentBlocks: 3, pieceSize: 4 * BLCKSZ }, sel)) { /* drain */ }
    assert.deepEqual(sel.blocks, [1, 2]);
    assert.deepEqual(sel.bad, [131072 + 1]);
  });
});

describe('laying down a page chain', () => {
  const spec = { compress: parseCompress('zstd:1') };
  const id = (n: number) => `2026010${n}-000000${n === 1 ? 'F' : 'I'}`;

  /** Stores `file` page-level over `parent`'s state in backup `n`; returns the entry. */
  async function layer(d: MemoryDriver, n: number, file: Buffer, parentEntry: ManifestFile): Promise<ManifestFile> {
    const key = `main/backups/${id(n)}/data/base/5/16384.zst`;
    const r = await storeChangedPages(piecesOf(file, 4 * BLCKSZ), { firstBlock: 0, parentStartLsn: BigInt(n) << 32n, startLsn: (BigInt(n) << 32n) + 1000n, parentBlocks: parentEntry.size / BLCKSZ, pieceSize: 4 * BLCKSZ }, {
      async small(buf) {
        const e = await encodeWhole(buf, spec);
        await d.write(key, e.stored);
        return { size: e.size, sha256: e.sha256, storedSize: e.stored.length };
      },
      stream: () => assert.fail('one piece'),
    });
    const l = r.layer ?? (await (async () => {
      const e = await encodeWhole(Buffer.alloc(0), spec);
      await d.write(key, e.stored);
      return { size: 0, sha256: e.sha256, storedSize: e.stored.length };
    })());
    const L: PageLayer = { ref: id(n), key, storedSize: l.storedSize, size: l.size, sha256: l.sha256, blocks: encodeBlocks(r.blocks), fileSize: r.fileSize, fileSha256: r.fileSha256 };
    const base = parentEntry.pages?.base ?? { ref: parentEntry.ref, key: parentEntry.key, storedSize: parentEntry.storedSize, size: parentEntry.size, sha256: parentEntry.sha256 };
    return { ...parentEntry, size: r.fileSize, sha256: r.fileSha256, ref: id(n), key, storedSize: l.storedSize, pages: { base, layers: [...(parentEntry.pages?.layers ?? []), L] } };
  }

  it('truncates, extends and overlays across layers, and --delta writes only what is newer', async () => {
    const d = new MemoryDriver('pages-chain');
    // Backup 1 (full): 6 pages, LSNs in 0/…
    const v1 = Array.from({ length: 6 }, (_, b) => page(0x10n + BigInt(b), b, b));
    const f1 = Buffer.concat(v1);
    const e1 = await encodeWhole(f1, spec);
    const fullKey = `main/backups/${id(1)}/data/base/5/16384.zst`;
    await d.write(fullKey, e1.stored);
    const full: ManifestFile = { path: 'base/5/16384', size: f1.length, mode: 0o600, mtime: 1, sha256: e1.sha256, ref: id(1), key: fullKey, storedSize: e1.stored.length };
    // Backup 2: page 1 changed, cut to 4 pages (VACUUM).
    const v2 = [v1[0]!, page((2n << 32n) + 1n, 1, 21), v1[2]!, v1[3]!];
    const incr2 = await layer(d, 2, Buffer.concat(v2), full);
    assert.equal(incr2.pages!.layers[0]!.blocks, '1');
    // Backup 3: extended to 7 pages again (new pages 4-6), page 2 changed.
    const v3 = [v2[0]!, v2[1]!, page((3n << 32n) + 2n, 2, 32), v2[3]!, page((3n << 32n) + 4n, 4, 34), Buffer.alloc(BLCKSZ), page((3n << 32n) + 6n, 6, 36)];
    const incr3 = await layer(d, 3, Buffer.concat(v3), incr2);
    assert.equal(incr3.pages!.layers[1]!.blocks, '2,4-6');
    // Backup 4: nothing changed but a cut to 3 pages: a layer without pages.
    const v4 = v3.slice(0, 3);
    const incr4 = await layer(d, 4, Buffer.concat(v4), incr3);
    assert.equal(incr4.pages!.layers[2]!.blocks, '');
    for (const [entry, pages] of [[incr2, v2], [incr3, v3], [incr4, v4]] as const) {
      assert.equal(entry.sha256, createHash('sha256').update(Buffer.concat(pages)).digest('hex'));
    }
    // Page 4 of the restored incr3 comes from layer 2, not from the full's page 4 (cut away by layer 1).
    assert.deepEqual([...pageSources(incr3, 't').src], [0, 1, 2, 0, 2, 2, 2]);
    assert.equal(objectEntries(incr3).length, 3);

    const dir = mkdtempSync(join(tmpdir(), 'cairn-pages-'));
    try {
      const path = join(dir, '16384');
      const target = { path, mode: 0o600, mtime: 5, label: 't' };
      for (const [entry, pages] of [[incr2, v2], [incr3, v3], [incr4, v4]] as const) {
        await restorePagedFile(d, undefined, entry, target);
        assert.ok(readFileSync(path).equals(Buffer.concat(pages)), `${entry.ref} restores its pages`);
      }
      // --delta: the file is the full's; only the newer pages are written.
      writeFileSync(path, f1);
      assert.equal(chainStateOf(incr3, { size: f1.length, sha256: e1.sha256 }), 0);
      const written = await restorePagedFile(d, undefined, incr3, target, 0);
      assert.equal(written, 5 * BLCKSZ, 'pages 1, 2, 4, 5, 6');
      assert.ok(readFileSync(path).equals(Buffer.concat(v3)));
      // A file in incr2's state: only layer 2's pages.
      writeFileSync(path, Buffer.concat(v2));
      assert.equal(chainStateOf(incr3, { size: v2.length * BLCKSZ, sha256: incr2.sha256 }), 1);
      assert.equal(await restorePagedFile(d, undefined, incr3, target, 1), 4 * BLCKSZ);
      assert.ok(readFileSync(path).equals(Buffer.concat(v3)));
      // A layer whose bytes are not what its manifest says: the file goes, the error says why.
      const bad = { ...incr3, sha256: 'f'.repeat(64) };
      await assert.rejects(restorePagedFile(d, undefined, bad, target), /SHA-256|sha256|checksum/i);
      assert.throws(() => readFileSync(path), /ENOENT/);
      // A damaged chain (a page nobody holds) is refused before anything is written.
      const holed = { ...incr3, pages: { ...incr3.pages!, layers: [incr3.pages!.layers[0]!, { ...incr3.pages!.layers[1]!, blocks: '2,4-5', size: 3 * BLCKSZ }] } };
      assert.throws(() => pageSources(holed, 't'), /page 6 is in none of its page layers/);
      assert.equal(chainStateOf(incr3, { size: 1, sha256: randomBytes(32).toString('hex') }), -1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('laying down big page objects', () => {
  for (const encrypted of [false, true]) {
    it(`streams base and layers of several frames each, in one pass${encrypted ? ' (encrypted)' : ''}`, async () => {
      const key = encrypted ? encryptionKeyFromBytes(Buffer.from('a test key of enough bytes for AES-256-GCM, tests only')) : undefined;
      const spec = { compress: parseCompress('zstd:1'), ...(key ? { key } : {}) };
      const ext = encrypted ? '.zst.enc' : '.zst';
      const d = new MemoryDriver('pages-big');
      const store = async (name: string, data: Buffer) => {
        const k = `main/backups/${name}/data/base/5/16384${ext}`;
        const r = await encodeFile(piecesOf(data, PIECE_SIZE), spec, createSlots(4), (body) => d.write(k, body));
        return { ref: name, key: k, storedSize: r.storedSize, size: r.size, sha256: r.sha256 };
      };
      const n = 1500; // ~11.7 MiB: three frames
      const base = randomBytes(n * BLCKSZ);
      const b = await store('20260101-000000F', base);
      assert.ok(b.storedSize > PIECE_SIZE, 'the base is read as a stream');
      // Layer: every third page, and the file grows by 700 pages.
      const blocks = Array.from({ length: n + 700 }, (_, i) => i).filter((i) => i % 3 === 0 || i >= n);
      const layerData = randomBytes(blocks.length * BLCKSZ);
      const final = Buffer.concat([base, Buffer.alloc(700 * BLCKSZ)]);
      blocks.forEach((blk, k) => layerData.copy(final, blk * BLCKSZ, k * BLCKSZ, (k + 1) * BLCKSZ));
      const l = await store('20260102-000000I', layerData);
      assert.ok(l.storedSize > PIECE_SIZE);
      const sha = createHash('sha256').update(final).digest('hex');
      const f: ManifestFile = {
        path: 'base/5/16384', size: final.length, mode: 0o600, mtime: 1, sha256: sha, ref: l.ref, key: l.key, storedSize: l.storedSize,
        pages: { base: b, layers: [{ ...l, blocks: encodeBlocks(blocks), fileSize: final.length, fileSha256: sha }] },
      };
      const dir = mkdtempSync(join(tmpdir(), 'cairn-pages-big-'));
      try {
        const path = join(dir, '16384');
        const t = { path, mode: 0o600, mtime: 5, label: 't' };
        assert.equal(await restorePagedFile(d, key, f, t), final.length);
        assert.ok(readFileSync(path).equals(final));
        // --delta over the base: only the layer's pages are written.
        writeFileSync(path, base);
        assert.equal(await restorePagedFile(d, key, f, t, chainStateOf(f, { size: base.length, sha256: b.sha256 })), blocks.length * BLCKSZ);
        assert.ok(readFileSync(path).equals(final));
        // --delta on a file with the base's size and mtime, as a restore of the base leaves it: one pass, the layer's pages only.
        const withMtime = { ...f, pages: { base: { ...b, mtime: 1_700_000_000.5 }, layers: f.pages!.layers } };
        writeFileSync(path, base);
        utimesSync(path, 1_700_000_000.5, 1_700_000_000.5);
        assert.deepEqual(await restorePaged(d, key, withMtime, t, true), { written: blocks.length * BLCKSZ, kept: false });
        assert.ok(readFileSync(path).equals(final));
        // The same size and mtime over other bytes: the guess fails its SHA-256 and the file is restored whole.
        const other = randomBytes(base.length);
        writeFileSync(path, other);
        utimesSync(path, 1_700_000_000.5, 1_700_000_000.5);
        assert.deepEqual(await restorePaged(d, key, withMtime, t, true), { written: final.length, kept: false });
        assert.ok(readFileSync(path).equals(final));
        assert.deepEqual(await restorePaged(d, key, withMtime, t, true), { written: 0, kept: true });
        // A layer that ends before its block list does: refused, the file removed.
        const short = await store('20260103-000000I', layerData.subarray(0, 800 * BLCKSZ));
        const bad = { ...f, pages: { base: b, layers: [{ ...f.pages!.layers[0]!, ...short, size: layerData.length }] } };
        await assert.rejects(restorePagedFile(d, key, bad, t), /ends before the pages its block list names/);
        assert.throws(() => readFileSync(path), /ENOENT/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
