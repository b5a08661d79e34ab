// Shared by unit tests: a WAL segment whose long page header says what a real
// one would (see wal/page-header.ts), the rest zeros, so tests that store and
// read "WAL" pass the header check wal-get and verify make.

import { DEFAULT_SEGMENT_SIZE } from '../wal/segment.js';

export function syntheticSegment(opts: { systemId: string; timeline: number; segno: number | bigint; segSize?: number }): Buffer {
  const segSize = opts.segSize ?? DEFAULT_SEGMENT_SIZE;
  const b = Buffer.alloc(segSize);
  b.writeUInt16LE(0xd110, 0); // XLOG_PAGE_MAGIC of PostgreSQL 15
  b.writeUInt16LE(0x0002, 2); // XLP_LONG_HEADER
  b.writeUInt32LE(opts.timeline, 4);
  b.writeBigUInt64LE(BigInt(opts.segno) * BigInt(segSize), 8);
  b.writeBigUInt64LE(BigInt(opts.systemId), 24);
  b.writeUInt32LE(segSize, 32);
  b.writeUInt32LE(8192, 36);
  return b;
}
