// The streamed backup manifest (cairn.backup/3, issue 19): read and written
// one file record at a time, so no tool holds a backup's file list. The
// object keeps its name (manifest.json, written last: a backup exists iff it
// exists) and is JSON Lines:
//
//   line 1      the header: every field of the manifest but `files`, plus
//               `fileCount` (its totals are what catalogs, info and
//               prom-export read; they read this line only)
//   lines 2…    one ManifestFile per line, paths strictly ascending in
//               comparePaths order (so a path listed twice is seen with one
//               record of state)
//   last line   {"end":{"files":N,"sha256":HEX}}: the record count and the
//               SHA-256 of every byte before this line
//
// A reader trusts the records only once it has met the end line and both
// agree: a truncated or altered manifest fails (FORMAT_INVALID) at its end, so
// a consumer that acts on records must finish a pass before it writes
// (restore checks, then restores). Older manifests (cairn.backup/1 and /2, one
// JSON document) read through the same functions.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { CairnError } from '../cli/errors.js';
import { ObjectNotFoundError, type StorageDriver } from '../storage/driver.js';
import { quote } from '../wal/quote.js';
import {
  checkFileEntry,
  checkManifest,
  checkManifestHead,
  manifestInvalid,
  manifestKey,
  MANIFEST_FORMAT_STREAM,
  summarize,
  type BackupManifest,
  type BackupSummary,
  type ManifestFile,
} from './manifest.js';

/** Everything a manifest says but its file records. */
export type ManifestHead = Omit<BackupManifest, 'files'>;

/** The first line of a cairn.backup/3 manifest. */
export interface StreamHeader extends Omit<ManifestHead, 'format'> {
  format: typeof MANIFEST_FORMAT_STREAM;
  /** How many file records follow. */
  fileCount: number;
}

/** No record line is this long; a longer one is damage, not a file. */
const MAX_LINE_BYTES = 64 * 1024 * 1024;

/**
 * Order of paths in a streamed manifest: component by component, as a
 * depth-first walk that reads each directory in name order meets them
 * ('/' sorts before every other character).
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x === 47) return -1;
    if (y === 47) return 1;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * The bytes of a cairn.backup/3 manifest, produced as `files` is consumed.
 * Throws (failing the write, so no manifest appears) when the records are
 * not in comparePaths order or not `head.fileCount` of them.
 */
export async function* manifestLines(head: Omit<StreamHeader, 'format'>, files: Iterable<ManifestFile> | AsyncIterable<ManifestFile>): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  const emit = (value: unknown): Buffer => {
    const line = Buffer.from(JSON.stringify(value) + '\n');
    hash.update(line);
    return line;
  };
  const { fileCount } = head;
  // The header's own fields first, whatever order the caller built them in.
  yield emit({ format: MANIFEST_FORMAT_STREAM, ...head, fileCount });
  let count = 0;
  let last: string | undefined;
  // Lines are gathered into pieces of about 64 KiB: a write per record would cost more than the record.
  let piece: Buffer[] = [];
  let pieceBytes = 0;
  for await (const f of files) {
    if (last !== undefined && comparePaths(last, f.path) >= 0) {
      throw new CairnError('INTERNAL', `manifest records out of order: ${quote(f.path)} after ${quote(last)}`);
    }
    last = f.path;
    count++;
    const line = emit(f);
    piece.push(line);
    pieceBytes += line.length;
    if (pieceBytes >= 65536) {
      yield Buffer.concat(piece);
      piece = [];
      pieceBytes = 0;
    }
  }
  if (piece.length > 0) yield Buffer.concat(piece);
  if (count !== fileCount) throw new CairnError('INTERNAL', `manifest of backup ${quote(head.id)} announced ${fileCount} files and had ${count}`);
  yield Buffer.from(JSON.stringify({ end: { files: count, sha256: hash.digest('hex') } }) + '\n');
}

/** The manifest `m` (files sorted here) as cairn.backup/3 bytes: for callers that hold it whole anyway. */
export function manifestStreamOf(m: ManifestHead & { files: readonly ManifestFile[] }): Readable {
  const { files, format: _f, ...head } = m;
  const sorted = [...files].sort((a, b) => comparePaths(a.path, b.path));
  return Readable.from(manifestLines({ ...head, fileCount: sorted.length }, sorted), { objectMode: false });
}

/** Splits a byte stream into lines (without '\n'); a final piece without '\n' is yielded too (and fails the end check). */
async function* lines(body: AsyncIterable<Buffer>, where: string): AsyncGenerator<Buffer> {
  let carry: Buffer[] = [];
  let carryBytes = 0;
  for await (const chunk of body) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      const part = chunk.subarray(start, nl);
      if (carry.length > 0) {
        carry.push(part);
        yield Buffer.concat(carry);
        carry = [];
        carryBytes = 0;
      } else {
        yield part;
      }
      start = nl + 1;
    }
    if (start < chunk.length) {
      carry.push(chunk.subarray(start));
      carryBytes += chunk.length - start;
      if (carryBytes > MAX_LINE_BYTES) throw manifestInvalid(`a line longer than ${MAX_LINE_BYTES} bytes`, where);
    }
  }
  if (carry.length > 0) yield Buffer.concat(carry);
}

function parseLine(line: Buffer, what: string, where: string): unknown {
  try {
    return JSON.parse(line.toString('utf8'));
  } catch {
    throw manifestInvalid(`${what} is not JSON`, where);
  }
}

/** A manifest opened for reading: its head now, its records on demand. */
export interface OpenedManifest {
  head: ManifestHead;
  /** The file count the manifest announces (legacy: its list's length). */
  fileCount: number;
  /**
   * The file records in order, each checked as checkManifest checks them; a
   * new read of the object per call. Throws FORMAT_INVALID when the manifest
   * turns out damaged (truncated, altered, out of order), at the latest when
   * the last record has been handed out: act on records only after a pass
   * that ended without error.
   */
  files(signal?: AbortSignal): AsyncGenerator<ManifestFile>;
}

function whereOf(driver: StorageDriver, key: string): string {
  return `"${key}" in repository "${driver.url}"`;
}

/** An older manifest: one JSON document, checked whole. */
function parseWhole(all: Buffer, where: string): BackupManifest {
  let m: unknown;
  try {
    m = JSON.parse(all.toString('utf8'));
  } catch {
    throw new CairnError('FORMAT_INVALID', `${where} is not valid JSON`, {
      hint: 'the repository is damaged; restore the file from a copy or ask for help before changing anything',
    });
  }
  return checkManifest(m, where);
}

async function openRead(driver: StorageDriver, key: string, signal?: AbortSignal): Promise<Readable | undefined> {
  try {
    return await driver.read(key, signal);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}

/** The head of a streamed manifest's first line; undefined when the object is not one (an older manifest). */
function streamHeadOf(first: Buffer, where: string): StreamHeader | undefined {
  // An older manifest is one pretty-printed document: its first line is "{".
  if (!first.subarray(0, 40).toString('latin1').includes(`"format":"${MANIFEST_FORMAT_STREAM}"`)) return undefined;
  const h = parseLine(first, 'the header line', where) as Partial<StreamHeader>;
  if (typeof h !== 'object' || h === null || !Number.isSafeInteger(h.fileCount) || h.fileCount! < 0) throw manifestInvalid('bad header line (file count)', where);
  return checkManifestHead(h, where) as StreamHeader;
}

/**
 * Opens backup `id`'s manifest: undefined when it does not exist. A streamed
 * manifest costs the read of its first line here; an older one is read and
 * checked whole (it was written whole).
 */
export async function openManifest(driver: StorageDriver, cluster: string, id: string, signal?: AbortSignal): Promise<OpenedManifest | undefined> {
  const key = manifestKey(cluster, id);
  return openManifestFrom((s) => openRead(driver, key, s), id, whereOf(driver, key), signal);
}

/**
 * openManifest over bytes already read: cairn-copy checks a manifest and
 * writes exactly the bytes it checked.
 */
export async function openManifestBytes(bytes: Buffer, id: string, where: string): Promise<OpenedManifest> {
  return (await openManifestFrom(async () => Readable.from([bytes], { objectMode: false }), id, where))!;
}

/**
 * The manifest `open` reads, which must be backup `id`'s (not another's
 * stored under its name). `open` is called once for the head (an older
 * manifest: read whole there) and once per files() pass: cairn-copy hashes
 * each read to know that every pass read the same bytes.
 */
export async function openManifestFrom(open: (signal?: AbortSignal) => Promise<Readable | undefined>, id: string, where: string, signal?: AbortSignal): Promise<OpenedManifest | undefined> {
  const body = await open(signal);
  if (body === undefined) return undefined;
  const [first, rest] = await peekFirstLine(body, where);
  const header = streamHeadOf(first, where);
  if (header === undefined) {
    // cairn.backup/1 or /2: one JSON document, checked whole as before.
    const all = Buffer.concat([first, Buffer.from('\n'), await buffer(rest)]);
    const { files, ...head } = parseWhole(all, where);
    if (head.id !== id) throw manifestInvalid(`it names backup ${quote(head.id)}, not ${quote(id)}`, where);
    return {
      head,
      fileCount: files.length,
      async *files() {
        yield* files;
      },
    };
  }
  rest.destroy();
  const { fileCount, ...head } = header;
  if (head.id !== id) throw manifestInvalid(`it names backup ${quote(head.id)}, not ${quote(id)}`, where);
  return {
    head: head as ManifestHead,
    fileCount,
    files: (s?: AbortSignal) => streamRecords(open, header, where, s ?? signal),
  };
}

/** The first line of `body`, and a stream of what follows it (unread). */
async function peekFirstLine(body: Readable, where: string): Promise<[Buffer, Readable]> {
  const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const seen: Buffer[] = [];
  let bytes = 0;
  for (;;) {
    const r = await it.next();
    if (r.done) return [Buffer.concat(seen), Readable.from([])];
    const nl = r.value.indexOf(10);
    if (nl < 0) {
      seen.push(r.value);
      bytes += r.value.length;
      if (bytes > MAX_LINE_BYTES) throw manifestInvalid(`a line longer than ${MAX_LINE_BYTES} bytes`, where);
      continue;
    }
    seen.push(r.value.subarray(0, nl));
    const tail = r.value.subarray(nl + 1);
    const rest = Readable.from((async function* () {
      if (tail.length > 0) yield tail;
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield n.value;
      }
    })(), { objectMode: false });
    rest.once('close', () => body.destroy());
    return [Buffer.concat(seen), rest];
  }
}

/** The records of a streamed manifest, checked record by record and at the end. */
async function* streamRecords(open: (signal?: AbortSignal) => Promise<Readable | undefined>, header: StreamHeader, where: string, signal?: AbortSignal): AsyncGenerator<ManifestFile> {
  const body = await open(signal);
  if (body === undefined) throw manifestInvalid('it disappeared while being read', where);
  const hash = createHash('sha256');
  let n = 0;
  let last: string | undefined;
  let ended = false;
  try {
    let first = true;
    for await (const line of lines(body, where)) {
      if (ended) throw manifestInvalid('lines after its end line', where);
      if (first) {
        first = false;
        hash.update(line).update('\n');
        continue;
      }
      if (line.subarray(0, 7).toString('latin1') === '{"end":') {
        const e = (parseLine(line, 'the end line', where) as { end?: { files?: unknown; sha256?: unknown } }).end;
        if (e?.files !== n || e.files !== header.fileCount) throw manifestInvalid(`it holds ${n} file records, its ${e?.files !== n ? 'end line' : 'header'} says ${e?.files !== n ? String(e?.files) : header.fileCount}`, where);
        if (e.sha256 !== hash.digest('hex')) throw manifestInvalid('its checksum does not match (altered or damaged)', where);
        ended = true;
        continue;
      }
      hash.update(line).update('\n');
      const f = parseLine(line, `file record ${n + 1}`, where) as ManifestFile;
      checkFileEntry(f, header.format, where);
      if (last !== undefined && comparePaths(last, f.path) >= 0) {
        throw manifestInvalid(last === f.path ? `file entry ${quote(f.path)} is listed twice` : `file entry ${quote(f.path)} is out of order`, where);
      }
      last = f.path;
      n++;
      if (n > header.fileCount) throw manifestInvalid(`more file records than the ${header.fileCount} its header says`, where);
      yield f;
    }
    if (!ended) throw manifestInvalid(`it ends after ${n} of ${header.fileCount} file records without its end line (truncated)`, where);
  } finally {
    body.destroy();
  }
}

/** Backup `id`'s summary, reading as little as its format allows (a streamed manifest: one line). */
export async function readManifestSummary(driver: StorageDriver, cluster: string, id: string, signal?: AbortSignal): Promise<BackupSummary | undefined> {
  const opened = await openManifest(driver, cluster, id, signal);
  if (opened === undefined) return undefined;
  return summarize(opened.head);
}

/** Backup `id`'s manifest whole (every record in memory): for callers not yet streamed. Any format. */
export async function readWholeManifest(driver: StorageDriver, cluster: string, id: string, signal?: AbortSignal): Promise<BackupManifest | undefined> {
  const opened = await openManifest(driver, cluster, id, signal);
  if (opened === undefined) return undefined;
  const files: ManifestFile[] = [];
  for await (const f of opened.files(signal)) files.push(f);
  return { ...opened.head, files };
}

/**
 * Writes backup `m.id`'s manifest as cairn.backup/3, the records in path
 * order, without making one document of it: the object that makes the backup
 * exist, so it is created once (ifAbsent) and appears whole or not at all.
 */
export async function writeManifest(driver: StorageDriver, m: ManifestHead & { files: readonly ManifestFile[] }, signal?: AbortSignal): Promise<void> {
  await driver.write(manifestKey(m.cluster, m.id), manifestStreamOf(m), { ifAbsent: true, ...(signal ? { signal } : {}) });
}

/**
 * writeManifest from records that are already in comparePaths order and
 * counted (a backup's spool, issue 19): never a list of them in memory. Out
 * of order or miscounted, the write fails and no manifest appears.
 */
export async function writeManifestRecords(driver: StorageDriver, head: ManifestHead, fileCount: number, files: Iterable<ManifestFile> | AsyncIterable<ManifestFile>, signal?: AbortSignal): Promise<void> {
  const { format: _f, ...h } = head;
  const body = Readable.from(manifestLines({ ...h, fileCount }, files), { objectMode: false });
  await driver.write(manifestKey(head.cluster, head.id), body, { ifAbsent: true, ...(signal ? { signal } : {}) });
}

/**
 * The records of `opened` in comparePaths order: a streamed manifest's as
 * they come (one record held); an older manifest's, held whole already,
 * sorted here. Walks that go beside another manifest or a directory tree
 * (a merge by path) read records through this.
 */
export async function* recordsInPathOrder(opened: OpenedManifest, signal?: AbortSignal): AsyncGenerator<ManifestFile> {
  if (opened.head.format === MANIFEST_FORMAT_STREAM) {
    yield* opened.files(signal);
    return;
  }
  const held: ManifestFile[] = [];
  for await (const f of opened.files(signal)) held.push(f);
  yield* held.sort((a, b) => comparePaths(String(a?.path), String(b?.path)));
}

/** One pass over records in comparePaths order, asked for by path in that order too. */
export interface RecordCursor {
  /** The record of `path`, or undefined; paths asked in ascending comparePaths order, one call at a time. */
  at(path: string): Promise<ManifestFile | undefined>;
  /** Reads what is left, so a streamed manifest's end line is checked: throws FORMAT_INVALID when it does not check out. */
  finish(): Promise<void>;
  /** Stops reading (the object's read is closed) without checking the rest. */
  close(): Promise<void>;
}

export function createRecordCursor(records: AsyncIterable<ManifestFile>): RecordCursor {
  const it = records[Symbol.asyncIterator]();
  let cur: IteratorResult<ManifestFile> | undefined;
  return {
    async at(path) {
      cur ??= await it.next();
      while (!cur.done && comparePaths(cur.value.path, path) < 0) cur = await it.next();
      return !cur.done && cur.value.path === path ? cur.value : undefined;
    },
    async finish() {
      cur ??= await it.next();
      while (!cur.done) cur = await it.next();
    },
    async close() {
      await it.return?.();
    },
  };
}
