// Writing a big file that is synced before it is used, bypassing the page
// cache (O_DIRECT). Why: a restore writes gigabytes that PostgreSQL reads
// back once, after everything has been made durable. Through the page cache
// every byte is copied into a page the kernel must first find (measured here,
// on a paravirtualised VM whose free memory goes back to the host: 1.6 GB
// written with dd took 0.2 to 3.6 s of system time depending on which pages
// the kernel handed out, and syncfs then wrote it all out again in ~1 s);
// straight to the device it took 1.3 s and 0.2 s of system time, and the
// final syncfs has only metadata left to do.
//
// O_DIRECT wants the memory, the file offset and the length aligned to the
// device's logical block (512 B or 4 KiB). Node gives no aligned allocation,
// but a WebAssembly.Memory is page-aligned: bytes are staged there and
// written in whole 4 MiB blocks; of the last one, its whole 4 KiB blocks go
// the same way and the bytes after them through the page cache. Where the file system refuses O_DIRECT
// (tmpfs, some FUSE and network file systems) or a write is refused for its
// alignment (EINVAL), the file is written through the page cache instead,
// from the same position: the bytes are the same either way.

import { closeSync, constants, openSync, write as fsWrite, writeSync } from 'node:fs';

const ALIGN = 4096;
/** Bytes staged per write(2). */
const STAGE_SIZE = 4 * 1024 * 1024;
/**
 * Stages per thread: one filling while the others are written on the
 * threadpool (a direct write waits for the device; done in line, it left the
 * CPUs idle 40% of a restore here).
 */
const STAGES = 3;
/** write(2) size through the page cache, as pgBackRest's buffer. */
const BUFFERED_WRITE = 1024 * 1024;

// The compiler's libs here (ES2023, no DOM) do not describe WebAssembly; Node has it.
declare const WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };

/** `count` page-aligned buffers of `size` bytes; undefined when there is no address space for them (ulimit -v). */
function pageAligned(count: number, size: number): Buffer[] | undefined {
  try {
    const pages = (count * size) / 65536;
    const mem = new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
    return Array.from({ length: count }, (_, i) => Buffer.from(mem, i * size, size));
  } catch {
    return undefined; // the page cache it is
  }
}

let stages: Buffer[] | undefined;
let stagesFailed = false;

/** This thread's page-aligned staging buffers; undefined when they cannot be had. */
function alignedStages(): Buffer[] | undefined {
  if (stages === undefined && !stagesFailed) {
    stages = pageAligned(STAGES, STAGE_SIZE);
    stagesFailed = stages === undefined;
  }
  return stages;
}

/** One file open at a time per thread uses the stages. */
let stagesInUse = false;

export interface FileSink {
  /** Appends bytes (any length); when it returns a promise, wait for it before the next call. */
  write(bytes: Buffer): Promise<void> | undefined;
  /**
   * The staging buffer the next bytes go to, to be filled in place (a
   * decoder writing straight into it saves the copy write() makes): an
   * empty stage of a direct file; undefined when there is none (use write()).
   */
  room(): Buffer | undefined;
  /** Appends the first `len` bytes of room() as write() would have (after room() and nothing else). */
  commit(len: number): Promise<void> | undefined;
  /** Writes what is staged, waits for every write, sets the exact size and closes. */
  finish(): Promise<void>;
  /** Closes without finishing (the caller removes the file); waits for writes in flight. */
  close(): Promise<void>;
  /** Whether the bytes went around the page cache (for tests and logs). */
  readonly direct: boolean;
}

function writeAt(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fsWrite(fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/**
 * Opens `path` with `flags` (which must create or truncate it) and `mode`,
 * and returns a sink that appends to it, with O_DIRECT when `direct` and the
 * platform and file system allow it.
 */
export function openFileSink(path: string, flags: number, mode: number, direct: boolean): FileSink {
  const bufs = direct && constants.O_DIRECT !== undefined && !stagesInUse ? alignedStages() : undefined;
  let fd: number | undefined;
  let isDirect = false;
  let wasDirect = false;
  if (bufs !== undefined) {
    try {
      fd = openSync(path, flags | constants.O_DIRECT, mode);
      isDirect = wasDirect = true;
      stagesInUse = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    }
  }
  fd ??= openSync(path, flags, mode);
  /** Where the next stage goes in the file. */
  let pos = 0;
  /** The stage being filled, and how much it holds. */
  let cur = 0;
  let staged = 0;
  /** Writes in flight, one per stage (index = stage). */
  const inFlight: (Promise<void> | undefined)[] = [];
  let failed: unknown;

  const writeBuffered = (bytes: Buffer, start: number, end: number) => {
    if (staged > 0) {
      // Switched to the page cache with bytes still staged: they come first.
      const held = staged;
      staged = 0;
      writeBuffered(bufs![cur]!, 0, held);
    }
    for (let off = start; off < end; ) {
      const n = writeSync(fd!, bytes, off, Math.min(BUFFERED_WRITE, end - off), pos);
      off += n;
      pos += n;
    }
  };

  /** Writes stage `i` (`len` bytes, at `at`) straight to the device; on EINVAL, through the page cache instead. */
  const writeStage = async (i: number, len: number, at: number): Promise<void> => {
    // Whole 4 KiB blocks: full stages, and of the last one only its whole blocks (finish).
    const buf = bufs![i]!;
    let off = 0;
    try {
      while (off < len) off += await writeAt(fd!, buf.subarray(off), len - off, at + off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      // The device wants more alignment than 4 KiB, or a short write left
      // the rest unaligned: these bytes through the page cache (positioned
      // writes, so the other stages in flight are not disturbed).
      if (isDirect) await switchToBuffered();
      for (let o = Math.min(off, len); o < len; ) o += writeSync(fd!, buf, o, Math.min(BUFFERED_WRITE, len - o), at + o);
    }
  };

  let switching: Promise<void> | undefined;
  /** From here on through the page cache: the same file, reopened without creating or truncating it. */
  const switchToBuffered = (): Promise<void> =>
    (switching ??= (async () => {
      isDirect = false;
      await Promise.allSettled(inFlight.filter((p) => p !== undefined));
      const keep = flags & ~(constants.O_CREAT | constants.O_TRUNC | constants.O_EXCL);
      const old = fd!;
      fd = openSync(path, keep, mode);
      closeSync(old);
    })());

  /** Starts writing the current stage; returns a wait when the next stage is still being written. */
  const flushStage = (): Promise<void> | undefined => {
    const i = cur;
    const len = staged;
    const at = pos;
    pos += len;
    staged = 0;
    cur = (cur + 1) % bufs!.length;
    const p = writeStage(i, len, at).then(
      () => {
        if (inFlight[i] === p) inFlight[i] = undefined;
      },
      (err: unknown) => {
        failed ??= err;
      },
    );
    inFlight[i] = p;
    return inFlight[cur];
  };

  const settle = async () => {
    for (const p of inFlight) if (p) await p;
    if (failed !== undefined) throw failed;
  };

  const release = () => {
    if (wasDirect) stagesInUse = false;
    wasDirect = false;
  };

  return {
    get direct() {
      return isDirect;
    },
    write(bytes) {
      if (failed !== undefined) return Promise.reject(failed);
      if (!isDirect) {
        writeBuffered(bytes, 0, bytes.length);
        return undefined;
      }
      let off = 0;
      const fill = (): Promise<void> | undefined => {
        while (off < bytes.length) {
          if (!isDirect) {
            writeBuffered(bytes, off, bytes.length);
            return undefined;
          }
          const n = bytes.copy(bufs![cur]!, staged, off, Math.min(bytes.length, off + STAGE_SIZE - staged));
          staged += n;
          off += n;
          if (staged === STAGE_SIZE) {
            const wait = flushStage();
            if (wait) return wait.then(() => (failed !== undefined ? Promise.reject(failed) : fill()));
          }
        }
        return undefined;
      };
      return fill();
    },
    room() {
      return isDirect && staged === 0 && failed === undefined ? bufs![cur] : undefined;
    },
    commit(len) {
      if (!isDirect || staged !== 0 || len > STAGE_SIZE) throw new Error('FileSink.commit without room()');
      staged = len;
      return staged === STAGE_SIZE ? flushStage() : undefined;
    },
    async finish() {
      try {
        // The last stage's whole 4 KiB blocks go straight to the device, the
        // bytes after them through the page cache: padded and cut back with
        // ftruncate, ext4 read that last block back from the device first.
        let tail: { buf: Buffer; from: number; len: number; at: number } | undefined;
        if (isDirect && staged > 0) {
          const len = staged % ALIGN;
          if (len > 0) tail = { buf: bufs![cur]!, from: staged - len, len, at: pos + staged - len };
          staged -= len;
          if (staged > 0) flushStage();
        }
        await settle();
        if (!isDirect && staged > 0) writeBuffered(bufs![cur]!, 0, 0);
        if (tail !== undefined) {
          if (isDirect) await switchToBuffered();
          for (let o = 0; o < tail.len; ) o += writeSync(fd!, tail.buf, tail.from + o, tail.len - o, tail.at + o);
          pos = tail.at + tail.len;
        }
        closeSync(fd!);
        fd = undefined;
      } finally {
        release();
      }
    },
    async close() {
      await Promise.allSettled(inFlight.filter((p) => p !== undefined));
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      release();
    },
  };
}

// ---- whole buffers ----------------------------------------------------------
//
// A durable object given as one buffer (a compressed WAL segment, ~2 MB) is
// copied into the page cache only to be written out by the fsync right
// after. On this VM that copy is the expensive part: the kernel hands out
// pages the host must first back, and a 2 MB write(2) took ~4.6 ms of system
// time, a tenth of the CPU a push-ahead drain spends per segment. Staged
// through a few hot aligned buffers and written with O_DIRECT, the copy is
// a memcpy into memory already faulted in.

/** Bytes per direct write of a whole buffer, and how many such stages there are (shared by every file in flight). */
const WHOLE_STAGE = 512 * 1024;
const WHOLE_STAGES = 4;

let wholeStages: Buffer[] | undefined;
let wholeFailed = false;
const wholeWaiting: ((b: Buffer) => void)[] = [];

function wholePool(): Buffer[] | undefined {
  if (wholeStages === undefined && !wholeFailed) {
    wholeStages = pageAligned(WHOLE_STAGES, WHOLE_STAGE);
    wholeFailed = wholeStages === undefined;
  }
  return wholeStages;
}

function takeStage(pool: Buffer[]): Promise<Buffer> | Buffer {
  return pool.pop() ?? new Promise<Buffer>((resolve) => wholeWaiting.push(resolve));
}

function giveStage(pool: Buffer[], b: Buffer): void {
  const next = wholeWaiting.shift();
  if (next) next(b);
  else pool.push(b);
}

/**
 * Writes `body` from offset 0 into the existing, empty file `path`, which
 * the caller holds open without O_DIRECT as `fd`: its whole 4 KiB blocks
 * with O_DIRECT, the bytes past the last whole block through `fd` (padding
 * them and cutting the file back made ftruncate read that block back from
 * the device first). It does not sync: the caller's fsync follows. Returns
 * false when O_DIRECT cannot be used here (no aligned memory, the file
 * system or the device refuses it), having written nothing past
 * body.length: the caller then writes the whole body through `fd` from
 * offset 0.
 */
export async function writeWholeDirect(path: string, fd: number, body: Buffer): Promise<boolean> {
  const pool = constants.O_DIRECT !== undefined ? wholePool() : undefined;
  if (pool === undefined) return false;
  const whole = body.length - (body.length % ALIGN);
  let direct: number;
  try {
    direct = openSync(path, constants.O_WRONLY | constants.O_DIRECT | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw err;
  }
  try {
    for (let at = 0; at < whole; ) {
      const stage = await takeStage(pool);
      try {
        const n = body.copy(stage, 0, at, Math.min(whole, at + WHOLE_STAGE));
        for (let off = 0; off < n; ) {
          const wrote = await writeAt(direct, stage.subarray(off), n - off, at + off);
          // A short write leaves the next one unaligned: the page cache it is.
          if (wrote % ALIGN !== 0) return false;
          off += wrote;
        }
        at += n;
      } finally {
        giveStage(pool, stage);
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw err;
  } finally {
    closeSync(direct);
  }
  for (let off = whole; off < body.length; ) off += writeSync(fd, body, off, body.length - off, off);
  return true;
}
