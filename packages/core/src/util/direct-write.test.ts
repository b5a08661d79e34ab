import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openFileSink, writeWholeDirect } from './direct-write.js';

const FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
const MiB = 1024 * 1024;

/**
 * Writes `data` in `chunk`-byte calls, waiting where the sink asks to;
 * `inPlace`: into the sink's room() wherever it has room for the chunk, as
 * a decoder does.
 */
async function writeAll(path: string, data: Buffer, chunk: number, direct: boolean, inPlace = false): Promise<boolean> {
  const sink = openFileSink(path, FLAGS, 0o600, direct);
  const wasDirect = sink.direct;
  for (let off = 0; off < data.length; off += chunk) {
    const part = data.subarray(off, Math.min(data.length, off + chunk));
    const room = inPlace ? sink.room() : undefined;
    if (room !== undefined && part.length <= room.length) {
      part.copy(room);
      await sink.commit(part.length);
    } else {
      await sink.write(part);
    }
  }
  await sink.finish();
  return wasDirect;
}

// Sizes around the 4 KiB alignment and the 4 MiB stage, and past the three
// stages that can be in flight at once.
const SIZES = [0, 1, 4095, 4096, 4097, 4 * MiB - 1, 4 * MiB, 4 * MiB + 8192, 13 * MiB + 5];

for (const [where, dir] of [['a disk file system', tmpdir()], ['tmpfs', '/dev/shm']] as const) {
  test(`openFileSink writes exactly the bytes given, at every size and chunking, on ${where}`, async (t) => {
    let root: string;
    try {
      root = mkdtempSync(join(dir, 'cairn-direct-'));
    } catch {
      t.skip(`${dir} is not writable here`);
      return;
    }
    try {
      const data = randomBytes(13 * MiB + 5);
      for (const size of SIZES) {
        for (const chunk of [1000, 4 * MiB, 5 * MiB + 3]) {
          for (const inPlace of [false, true]) {
            const p = join(root, `f-${size}-${chunk}-${inPlace}`);
            await writeAll(p, data.subarray(0, size), chunk, true, inPlace);
            const how = `${size} in chunks of ${chunk}${inPlace ? ', into room()' : ''}`;
            assert.equal(statSync(p).size, size, `size ${how}`);
            assert.ok(readFileSync(p).equals(data.subarray(0, size)), `bytes ${how}`);
          }
        }
      }
      // The same file again (O_TRUNC), shorter: nothing of the longer one stays.
      const p = join(root, 'again');
      await writeAll(p, data, 4 * MiB, true);
      await writeAll(p, data.subarray(0, 5000), 4 * MiB, true);
      assert.ok(readFileSync(p).equals(data.subarray(0, 5000)));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
}

test('openFileSink goes around the page cache unless asked not to, and writes the same bytes either way', async (t) => {
  const disk = mkdtempSync(join(tmpdir(), 'cairn-direct-'));
  try {
    const data = randomBytes(8 * MiB);
    assert.equal(await writeAll(join(disk, 'plain'), data, MiB, false), false);
    const direct = await writeAll(join(disk, 'direct'), data, MiB, true);
    // ext4 and xfs take O_DIRECT; tmpfs only since Linux 6.6: either way the bytes are the same.
    if (!direct) t.diagnostic(`${tmpdir()} refuses O_DIRECT here: the page cache was used`);
    assert.ok(readFileSync(join(disk, 'plain')).equals(data));
    assert.ok(readFileSync(join(disk, 'direct')).equals(data));
  } finally {
    rmSync(disk, { recursive: true, force: true });
  }
});

test('a second file opened while the first is still being written gets the page cache, and both are whole', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cairn-direct-'));
  try {
    const a = randomBytes(9 * MiB);
    const b = randomBytes(5 * MiB + 1);
    const sa = openFileSink(join(root, 'a'), FLAGS, 0o600, true);
    const sb = openFileSink(join(root, 'b'), FLAGS, 0o600, true);
    assert.equal(sb.direct, false, 'the staging buffers belong to the first file');
    const aDirect = sa.direct;
    await sa.write(a.subarray(0, 4 * MiB));
    await sb.write(b);
    await sa.write(a.subarray(4 * MiB));
    await sb.finish();
    await sa.finish();
    assert.ok(readFileSync(join(root, 'a')).equals(a));
    assert.ok(readFileSync(join(root, 'b')).equals(b));
    // Released: the next file may use them again.
    const sc = openFileSink(join(root, 'c'), FLAGS, 0o600, true);
    assert.equal(sc.direct, aDirect);
    await sc.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a write error is reported, not swallowed', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cairn-direct-'));
  try {
    // A sink whose descriptor is closed under it: the next stage's write fails with EBADF.
    const s = openFileSink(join(root, 'x'), FLAGS, 0o600, true);
    await s.close();
    await assert.rejects(async () => {
      await s.write(randomBytes(4 * MiB));
      await s.finish();
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('writeWholeDirect writes exactly the buffer at every size, with more writers than stages at once', async (t) => {
  for (const dir of [tmpdir(), '/dev/shm']) {
    let root: string;
    try {
      root = mkdtempSync(join(dir, 'cairn-direct-'));
    } catch {
      continue;
    }
    try {
      const data = randomBytes(3 * MiB + 7);
      // Around the 4 KiB alignment and the 512 KiB stage; ten at once share four stages.
      const sizes = [0, 1, 4095, 4096, 4097, 512 * 1024 - 1, 512 * 1024, 512 * 1024 + 1, 2 * MiB + 4095, 3 * MiB + 7];
      const results = await Promise.all(
        sizes.map(async (size) => {
          const p = join(root, `w-${size}`);
          // The file exists and is empty, as the fs driver's temp file is; it was bigger once here.
          writeFileSync(p, randomBytes(size + 9000), { mode: 0o600 });
          writeFileSync(p, '');
          // Held open without O_DIRECT, as the fs driver holds its temp file.
          const fd = openSync(p, 'r+');
          try {
            return { p, size, direct: await writeWholeDirect(p, fd, data.subarray(0, size)) };
          } finally {
            closeSync(fd);
          }
        }),
      );
      for (const { p, size, direct } of results) {
        if (!direct) {
          t.diagnostic(`${dir}: O_DIRECT refused here for ${size} bytes; the fs driver then writes through the page cache`);
          continue;
        }
        assert.equal(statSync(p).size, size, `size ${size} on ${dir}`);
        assert.ok(readFileSync(p).equals(data.subarray(0, size)), `bytes ${size} on ${dir}`);
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
});

test('writeWholeDirect reports an error that is not about alignment', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cairn-direct-'));
  try {
    await assert.rejects(writeWholeDirect(join(root, 'missing'), -1, randomBytes(MiB)), { code: 'ENOENT' });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
