import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readTarEntries, type TarHeader } from './tar-reader.js';
import { rejectsWith } from '../testing/errors.js';

const LABEL = 'pg_basebackup of "main"';
const MTIME = 1700000123;
const PAX_MTIME = 1700000456;
const LONG_PATH = `${'a'.repeat(80)}/${'b'.repeat(60)}`; // 141 bytes: ustar splits it into prefix and name
const LONG_NAME = `d/${'c'.repeat(150)}`; // a 150-byte file name: only pax and GNU can store it
const LONG_TARGET = `../${'t'.repeat(120)}`;

let dir: string;
const content = new Map<string, Buffer>([
  ['d/empty', Buffer.alloc(0)],
  ['d/one', Buffer.from('x')],
  ['d/block', randomBytes(512)],
  ['d/big', randomBytes(70_000)], // more than one 64 KiB chunk
  [LONG_PATH, randomBytes(1000)],
  [LONG_NAME, randomBytes(513)],
]);

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tar-reader-'));
  mkdirSync(join(dir, 'd'));
  mkdirSync(join(dir, 'a'.repeat(80)));
  for (const [p, data] of content) {
    writeFileSync(join(dir, p), data);
    chmodSync(join(dir, p), 0o640);
  }
  chmodSync(join(dir, 'd/one'), 0o600);
  chmodSync(join(dir, 'd'), 0o750);
  symlinkSync('one', join(dir, 'd/link'));
  symlinkSync(LONG_TARGET, join(dir, 'd/longlink'));
  linkSync(join(dir, 'd/block'), join(dir, 'd/hard'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

type Format = 'ustar' | 'pax' | 'gnu';

/** GNU tar's output with one 512-byte block per record: the archive ends right after its two zero blocks. */
function makeTar(format: Format, extra: string[] = [], members?: string[]): Buffer {
  const names = members ?? (format === 'ustar' ? ['d/empty', 'd/one', 'd/block', 'd/big', 'd/link', 'd/hard', LONG_PATH] : ['d', LONG_PATH]);
  return execFileSync(
    'tar',
    ['-c', '-b1', `--format=${format}`, '--sort=name', `--mtime=@${MTIME}`, '--owner=0', '--group=0', '--numeric-owner', ...extra, '-C', dir, ...names],
    { maxBuffer: 64 * 1024 * 1024 },
  );
}

async function* chunked(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

interface Read {
  header: TarHeader;
  data: Buffer;
}

async function readAll(source: AsyncIterable<Buffer>): Promise<Map<string, Read>> {
  const out = new Map<string, Read>();
  for await (const e of readTarEntries(source, LABEL)) {
    const parts: Buffer[] = [];
    for await (const part of e.body()) parts.push(Buffer.from(part));
    assert.equal(out.has(e.header.path), false, `${e.header.path} twice`);
    out.set(e.header.path, { header: e.header, data: Buffer.concat(parts) });
  }
  return out;
}

function file(path: string, mode = 0o640, mtime = MTIME): [string, TarHeader] {
  return [path, { path, type: 'file', size: content.get(path)!.length, mode, mtime, linkname: '' }];
}

function expected(format: Format, mtime = MTIME): Map<string, TarHeader> {
  const e = new Map<string, TarHeader>([
    file('d/empty', 0o640, mtime),
    file('d/one', 0o600, mtime),
    file('d/block', 0o640, mtime),
    file('d/big', 0o640, mtime),
    ['d/link', { path: 'd/link', type: 'symlink', size: 0, mode: 0o777, mtime, linkname: 'one' }],
    ['d/hard', { path: 'd/hard', type: 'hardlink', size: 0, mode: 0o640, mtime, linkname: 'd/block' }],
    file(LONG_PATH, 0o640, mtime),
  ]);
  if (format !== 'ustar') {
    e.set('d', { path: 'd', type: 'dir', size: 0, mode: 0o750, mtime, linkname: '' });
    e.set(LONG_NAME, file(LONG_NAME, 0o640, mtime)[1]);
    e.set('d/longlink', { path: 'd/longlink', type: 'symlink', size: 0, mode: 0o777, mtime, linkname: LONG_TARGET });
  }
  return e;
}

function assertEntries(got: Map<string, Read>, want: Map<string, TarHeader>): void {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [path, h] of want) {
    const r = got.get(path)!;
    assert.deepEqual(r.header, h, path);
    const bytes = h.type === 'file' ? content.get(path)! : Buffer.alloc(0);
    assert.ok(r.data.equals(bytes), `bytes of ${path}`);
  }
}

/** The 512-byte block a header starts at, found by its name (for corrupting it). */
function headerOffset(tar: Buffer, name: string): number {
  for (let o = 0; o < tar.length; o += 512) {
    if (tar.toString('latin1', o, o + name.length + 1) === `${name}\0`) return o;
  }
  throw new Error(`no header for ${name}`);
}

describe('archives written by GNU tar', () => {
  for (const format of ['ustar', 'pax', 'gnu'] as const) {
    test(`--format=${format} in chunks of 1, 511, 513 and 65536 bytes and whole`, async () => {
      const tar = makeTar(format);
      for (const size of [511, 513, 65536, tar.length]) {
        assertEntries(await readAll(chunked(tar, size)), expected(format));
      }
      // Byte by byte without d/big: 1-byte chunks are slow under node:test (tens of µs a byte).
      const small = expected(format);
      small.delete('d/big');
      assertEntries(await readAll(chunked(makeTar(format, ['--exclude=d/big']), 1)), small);
    });
  }

  test('pax per-file mtime wins over the ustar field; a global header is ignored', async () => {
    const tar = makeTar('pax', ['--pax-option=comment=global', `--pax-option=mtime:=${PAX_MTIME}.25`]);
    assert.ok(tar.includes('comment=global'), 'tar wrote a global header');
    assertEntries(await readAll(chunked(tar, 4096)), expected('pax', PAX_MTIME));
  });

  test('a leading ./ is stripped, the archive root is "."', async () => {
    const tar = makeTar('gnu', [], ['.']);
    const got = await readAll(chunked(tar, 1000));
    assert.equal(got.get('.')?.header.type, 'dir');
    assert.ok(got.get('d/big')?.data.equals(content.get('d/big')!));
    assert.equal(got.get('d')?.header.type, 'dir');
    assert.equal(got.get(LONG_NAME)?.header.size, 513);
    for (const p of got.keys()) assert.ok(!p.startsWith('./') && !p.endsWith('/'), p);
  });

  test('bodies left unread, or read in part, are skipped', async () => {
    const tar = makeTar('pax');
    for (const size of [7, 513, 65536]) {
      const headers: TarHeader[] = [];
      let n = 0;
      for await (const e of readTarEntries(chunked(tar, size), LABEL)) {
        headers.push(e.header);
        if (n++ % 2 === 1) {
          for await (const part of e.body()) {
            assert.ok(part.length > 0);
            break;
          }
        }
      }
      assert.deepEqual(new Map(headers.map((h) => [h.path, h])), expected('pax'));
    }
  });

  test('body chunks are views of the input, not copies', async () => {
    const tar = makeTar('ustar');
    const input = new Set<ArrayBufferLike>();
    const source = (async function* () {
      for await (const c of chunked(Buffer.from(tar), 65536)) {
        input.add(c.buffer);
        yield c;
      }
    })();
    for await (const e of readTarEntries(source, LABEL)) {
      for await (const part of e.body()) assert.ok(input.has(part.buffer));
    }
  });

  test('a plain Uint8Array source works', async () => {
    const tar = makeTar('ustar');
    const source = (async function* () {
      yield new Uint8Array(tar.buffer, tar.byteOffset, tar.length) as Buffer;
    })();
    assertEntries(await readAll(source), expected('ustar'));
  });

  test('trailing zeros after the end marker are fine', async () => {
    const tar = Buffer.concat([makeTar('ustar'), Buffer.alloc(9216 + 17)]);
    assertEntries(await readAll(chunked(tar, 700)), expected('ustar'));
  });
});

describe('damaged archives', () => {
  test('a stream cut anywhere before the end marker is complete does not pass', async () => {
    const tar = makeTar('gnu');
    const big = headerOffset(tar, 'd/big');
    const cuts: [number, RegExp][] = [
      [0, /it ends before the end-of-archive marker \(byte 0\)/],
      [100, /it ends inside a header \(byte 100\)/],
      [big + 512, /it ends inside "d\/big" after 0 of 70000 bytes/],
      [big + 512 + 40_000, /it ends inside "d\/big" after 40000 of 70000 bytes/],
      [big + 512 + 70_000, /it ends inside the padding after "d\/big"/],
      [big, /it ends before the end-of-archive marker/],
      [tar.length - 1024, /it ends before the end-of-archive marker/],
      [tar.length - 1000, /it ends inside a header/],
      [tar.length - 512, /it ends after the first of the two zero blocks that end an archive/],
      [tar.length - 1, /it ends after the first of the two zero blocks that end an archive/],
    ];
    for (const [cut, message] of cuts) {
      // 1-byte chunks are slow under node:test (tens of µs a byte): only up to the start of d/big.
      for (const size of cut <= big + 512 ? [1, 513, 65536] : [513, 65536]) {
        const err = await rejectsWith(readAll(chunked(tar.subarray(0, cut), size)), 'FORMAT_INVALID', message);
        assert.match(err.message, /^"pg_basebackup of \\"main\\"" is not a complete tar archive: /);
        assert.match(err.hint ?? '', /not usable/);
      }
    }
  });

  test('a cut stream fails even when the bodies are skipped', async () => {
    const tar = makeTar('ustar');
    const cut = headerOffset(tar, 'd/big') + 512 + 1000;
    await rejectsWith(
      (async () => {
        for await (const e of readTarEntries(chunked(tar.subarray(0, cut), 4096), LABEL)) void e;
      })(),
      'FORMAT_INVALID',
      /it ends inside "d\/big" after 1000 of 70000 bytes/,
    );
  });

  test('a header whose checksum does not match', async () => {
    const tar = makeTar('ustar');
    const at = headerOffset(tar, 'd/one');
    const renamed = Buffer.from(tar);
    renamed[at + 2] = 'p'.charCodeAt(0); // d/one -> d/ope
    await rejectsWith(readAll(chunked(renamed, 4096)), 'FORMAT_INVALID', new RegExp(`header checksum mismatch \\(stored \\d+, computed \\d+\\) \\(byte ${at}\\)$`));
    const sum = Buffer.from(tar);
    sum[at + 150] = sum[at + 150] === 0x30 ? 0x31 : 0x30;
    await rejectsWith(readAll(chunked(sum, 4096)), 'FORMAT_INVALID', /header checksum mismatch/);
  });

  test('random bytes are not a tar archive', async () => {
    await rejectsWith(readAll(chunked(randomBytes(4096), 4096)), 'FORMAT_INVALID', /is not a valid tar archive: /);
  });

  test('data after the end marker, and a lone zero block', async () => {
    const tar = makeTar('ustar');
    const junk = Buffer.concat([tar, Buffer.alloc(100), Buffer.from('more')]);
    await rejectsWith(readAll(chunked(junk, 4096)), 'FORMAT_INVALID', new RegExp(`data after the end-of-archive marker \\(byte ${tar.length + 100}\\)`));
    const withoutEnd = tar.subarray(0, tar.length - 1024);
    const lone = Buffer.concat([withoutEnd, Buffer.alloc(512), makeTar('ustar', [], ['d/one'])]);
    await rejectsWith(readAll(chunked(lone, 4096)), 'FORMAT_INVALID', /a lone zero block before more entries/);
  });

  test('misuse of body() is a bug in the caller', async () => {
    const it = readTarEntries(chunked(makeTar('ustar'), 4096), LABEL);
    const first = (await it.next()).value!;
    first.body();
    assert.throws(() => first.body(), /asked for twice/);
    await it.next();
    assert.throws(() => first.body(), /after the reader moved to the next entry/);
    await it.return(undefined);
  });
});

/** A ustar header block with the given fields written raw and a correct checksum (unless `sum` is given). */
function rawHeader(f: { name?: string; size?: Buffer | string; mode?: string; mtime?: Buffer | string; type?: string; gnu?: boolean; sum?: string }): Buffer {
  const b = Buffer.alloc(512);
  b.write(f.name ?? 'file', 0, 'utf8');
  b.write(f.mode ?? '0000644\0', 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  const size = f.size ?? '00000000000\0';
  if (typeof size === 'string') b.write(size, 124, 'latin1');
  else size.copy(b, 124);
  const mtime = f.mtime ?? '14524770573\0';
  if (typeof mtime === 'string') b.write(mtime, 136, 'latin1');
  else mtime.copy(b, 136);
  b.write(f.type ?? '0', 156, 'latin1');
  b.write(f.gnu ? 'ustar  \0' : 'ustar\x0000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(f.sum ?? `${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

function body(data: Buffer | string): Buffer {
  const d = Buffer.from(data);
  return Buffer.concat([d, Buffer.alloc((512 - (d.length % 512)) % 512)]);
}

function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  let len = rest.length + 1;
  if (String(len).length + rest.length !== len) len++;
  return `${len}${rest}`;
}

const END = Buffer.alloc(1024);

describe('headers other tars write', () => {
  test('octal fields led by spaces and ended by space or NUL', async () => {
    const tar = Buffer.concat([
      rawHeader({ name: './old', size: '         14 ', mode: '  644 \0', mtime: ' 14524770573' }),
      body('hello, world'),
      END,
    ]);
    const got = await readAll(chunked(tar, 7));
    assert.deepEqual(got.get('old')?.header, { path: 'old', type: 'file', size: 12, mode: 0o644, mtime: MTIME, linkname: '' });
    assert.equal(got.get('old')?.data.toString(), 'hello, world');
  });

  test('a non-octal size field is rejected', async () => {
    await rejectsWith(readAll(chunked(Buffer.concat([rawHeader({ size: '0000000001x\0' }), END]), 512)), 'FORMAT_INVALID', /size field "0000000001x\\u0000" is not octal \(byte 0\)/);
  });

  test('base-256 sizes: small, and past 8 GiB', async () => {
    const small = Buffer.alloc(12);
    small[0] = 0x80;
    small[11] = 5;
    const got = await readAll(chunked(Buffer.concat([rawHeader({ name: 'b256', size: small, gnu: true }), body('abcde'), END]), 3));
    assert.equal(got.get('b256')?.data.toString(), 'abcde');

    const huge = Buffer.alloc(12);
    huge[0] = 0x80;
    huge.writeBigUInt64BE(9n * 1024n ** 3n + 7n, 4);
    const mtime = Buffer.alloc(12);
    mtime[0] = 0x80;
    mtime.writeUInt32BE(MTIME, 8);
    const it = readTarEntries(chunked(Buffer.concat([rawHeader({ name: 'base/1/huge', size: huge, mtime, gnu: true }), Buffer.alloc(4096)]), 1024), LABEL);
    const e = (await it.next()).value!;
    assert.deepEqual(e.header, { path: 'base/1/huge', type: 'file', size: 9 * 1024 ** 3 + 7, mode: 0o644, mtime: MTIME, linkname: '' });
    // 4 KiB of the 9 GiB body, then the stream ends.
    await rejectsWith(it.next(), 'FORMAT_INVALID', /it ends inside "base\/1\/huge" after 4096 of 9663676423 bytes/);
  });

  test('a base-256 size beyond 2^53 is rejected', async () => {
    const size = Buffer.alloc(12, 0xee);
    size[0] = 0x80;
    await rejectsWith(readAll(chunked(Buffer.concat([rawHeader({ size }), END]), 512)), 'FORMAT_INVALID', /size \d+ is out of range/);
  });

  test('pax size and path override the ustar fields', async () => {
    const pax = paxRecord('path', 'base/16384/2619_fsm') + paxRecord('size', '700') + paxRecord('mtime', '1700000000.999') + paxRecord('uname', 'postgres');
    const tar = Buffer.concat([
      rawHeader({ name: 'PaxHeaders/x', type: 'x', size: `${pax.length.toString(8).padStart(11, '0')}\0` }),
      body(pax),
      rawHeader({ name: 'truncated-name', size: '00000000000\0' }),
      body(Buffer.alloc(700, 7)),
      END,
    ]);
    const got = await readAll(chunked(tar, 100));
    assert.deepEqual(got.get('base/16384/2619_fsm')?.header, { path: 'base/16384/2619_fsm', type: 'file', size: 700, mode: 0o644, mtime: 1700000000, linkname: '' });
    assert.ok(got.get('base/16384/2619_fsm')?.data.equals(Buffer.alloc(700, 7)));
  });

  test('malformed pax records are rejected', async () => {
    for (const pax of ['5 path=x\n', '12 path=x\n', 'abc', '9 pathx\n']) {
      const tar = Buffer.concat([rawHeader({ type: 'x', size: `${pax.length.toString(8).padStart(11, '0')}\0` }), body(pax), rawHeader({}), END]);
      await rejectsWith(readAll(chunked(tar, 512)), 'FORMAT_INVALID', /malformed pax extended header record/);
    }
  });

  test('an extended header with no entry after it', async () => {
    const pax = paxRecord('path', 'x');
    const tar = Buffer.concat([rawHeader({ type: 'x', size: `${pax.length.toString(8).padStart(11, '0')}\0` }), body(pax), END]);
    await rejectsWith(readAll(chunked(tar, 512)), 'FORMAT_INVALID', /an extended header with no entry after it/);
  });
});

test('speed: about 1 GiB in 1 MiB chunks', async (t) => {
  // 64 MiB of entries of assorted sizes, sent 16 times, then the end marker.
  const parts: Buffer[] = [];
  let len = 0;
  const region = 64 * 1024 * 1024;
  for (let i = 0; len < region - 4 * 1024 * 1024; i++) {
    const size = [8192 * 131, 3 * 1024 * 1024 + 77, 1, 0, 8192, 600_000][i % 6]!;
    parts.push(rawHeader({ name: `base/5/${16384 + i}`, size: `${size.toString(8).padStart(11, '0')}\0` }), Buffer.alloc(size + ((512 - (size % 512)) % 512), i));
    len += 512 + size + ((512 - (size % 512)) % 512);
  }
  const filler = region - len - 512;
  parts.push(rawHeader({ name: 'filler', size: `${filler.toString(8).padStart(11, '0')}\0` }), Buffer.alloc(filler));
  const unit = Buffer.concat(parts);
  assert.equal(unit.length, region);
  const rounds = 16;
  const source = (async function* () {
    for (let r = 0; r < rounds; r++) yield* chunked(unit, 1024 * 1024);
    yield END;
  })();
  const t0 = process.hrtime.bigint();
  let bytes = 0;
  let entries = 0;
  for await (const e of readTarEntries(source, LABEL)) {
    entries++;
    for await (const part of e.body()) bytes += part.length;
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const mb = (region * rounds) / 1e6;
  t.diagnostic(`tar reader: ${(mb / s).toFixed(0)} MB/s over ${mb.toFixed(0)} MB (${entries} entries, ${bytes} body bytes)`);
});
