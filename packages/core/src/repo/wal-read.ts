// Reading a stored WAL file with every check a restore relies on (docs/design.md
// §4.3, §4.12): its SHA-256, and for a segment or .partial its page header
// against the name it is stored under and the system whose directory holds
// it. wal-get (and its prefetch worker) and verify read WAL through this.

import { finished, Writable } from 'node:stream';
import type { EncryptionKey } from '../codec/index.js';
import type { StorageDriver } from '../storage/driver.js';
import { parseWalFileName } from '../wal/file-name.js';
import { checkStoredSegment, LONG_PAGE_HEADER_SIZE, type WalPageHeader } from '../wal/page-header.js';
import { quote } from '../wal/quote.js';
import { readWalInto, type StoredWal } from './wal-archive.js';

/**
 * Streams `stored`, decoded, into `sink` (readWalInto), then checks what it
 * was. Throws CHECKSUM_MISMATCH, WAL_MISMATCH (another segment under this
 * name) or a storage/codec error; the caller must not use what the sink
 * received unless this resolves. `header` is absent for history and .backup
 * files, which have none.
 */
export async function readWalChecked(
  driver: StorageDriver,
  stored: StoredWal,
  systemId: string,
  key: EncryptionKey | undefined,
  sink: Writable,
  signal?: AbortSignal,
): Promise<{ bytes: number; header?: WalPageHeader }> {
  const kind = parseWalFileName(stored.walName).kind;
  if (kind !== 'segment' && kind !== 'partial') return readWalInto(driver, stored, key, sink, signal);
  const tap = headTap(sink, LONG_PAGE_HEADER_SIZE);
  const { bytes } = await readWalInto(driver, stored, key, tap.sink, signal);
  const header = checkStoredSegment(tap.head(), stored.walName, `repository ${quote(driver.url)}`, { systemId, fileSize: bytes });
  return { bytes, header };
}

/**
 * A Writable that passes everything on to `target` and keeps its first `size`
 * bytes, so the header is checked without reading the file back. It finishes
 * only when `target` has (the caller renames the file after that).
 */
function headTap(target: Writable, size: number): { sink: Writable; head: () => Buffer } {
  const parts: Buffer[] = [];
  let kept = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (kept < size) {
        parts.push(chunk.subarray(0, size - kept));
        kept += Math.min(chunk.length, size - kept);
      }
      if (target.write(chunk)) cb();
      else target.once('drain', () => cb());
    },
    final(cb) {
      target.end();
      finished(target, (err) => cb(err));
    },
    destroy(err, cb) {
      target.destroy(err ?? undefined);
      cb(err);
    },
  });
  target.on('error', (err) => sink.destroy(err));
  return { sink, head: () => Buffer.concat(parts) };
}
