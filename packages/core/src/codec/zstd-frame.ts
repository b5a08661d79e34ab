// A pass-through stage in front of the zstd decoder that walks the frame
// structure (RFC 8878 §3.1) without decompressing, so that a stored object is
// exactly one complete zstd frame and nothing else.
//
// Why: Node's zstd decoder (node:zlib, Node 24) ends its output at the end of
// the first frame and silently drops whatever follows in the same input chunk
// (appended garbage, a second frame), yet decodes a second frame that starts
// on a chunk boundary: the result would depend on how the bytes were chunked.
// cairn writes one frame per object, so anything else is corruption.

import { Transform, type TransformCallback } from 'node:stream';
import { CairnError } from '../cli/errors.js';

const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50 … 0x184D2A5F. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

type State =
  | 'magic' // 4 bytes
  | 'descriptor' // Frame_Header_Descriptor, 1 byte
  | 'header-rest' // window descriptor, dictionary id, content size
  | 'block-header' // 3 bytes
  | 'block-body' // skipped
  | 'checksum' // 4 bytes, when Content_Checksum_Flag
  | 'done';

export function createZstdFrameCheck(label: string): Transform {
  let state: State = 'magic';
  // Small fields may straddle chunk boundaries: gather them here (≤ 13 bytes).
  let field = Buffer.alloc(16);
  let fieldLen = 0;
  let need = 4; // bytes still wanted for the current field or body
  let hasChecksum = false;
  let lastBlock = false;
  // Node's zstd stream (Node 24) ends the frame twice when end() comes while
  // the last chunk is still queued: a second, empty frame follows. Objects
  // written so are whole (the empty frame decodes to nothing however it is
  // chunked), so frames after the first are accepted as long as they are
  // empty; cairn's compress stage no longer writes them (compress.ts).
  let extraFrame = false;

  const corrupt = (why: string) =>
    new CairnError('FORMAT_INVALID', `corrupt zstd data in "${label}": ${why}`, {
      hint: 'the stored object is damaged or not what its name says; restore it from another repository',
    });

  /** Consumes the state's bytes from chunk[pos..]; returns the new position. */
  const step = (chunk: Buffer, pos: number): number => {
    if (state === 'done') {
      extraFrame = true;
      want('magic', 4);
      return pos;
    }
    if (state === 'block-body') {
      const take = Math.min(need, chunk.length - pos);
      need -= take;
      if (need === 0) enterAfterBlock();
      return pos + take;
    }
    const take = Math.min(need, chunk.length - pos);
    chunk.copy(field, fieldLen, pos, pos + take);
    fieldLen += take;
    need -= take;
    if (need === 0) completeField();
    return pos + take;
  };

  const want = (s: State, n: number) => {
    state = s;
    need = n;
    fieldLen = 0;
  };

  const enterAfterBlock = () => {
    if (!lastBlock) want('block-header', 3);
    else if (hasChecksum) want('checksum', 4);
    else want('done', 0);
  };

  const completeField = () => {
    switch (state) {
      case 'magic': {
        const magic = field.readUInt32LE(0);
        if (extraFrame && magic !== ZSTD_MAGIC) throw corrupt('unexpected data after the end of the zstd frame');
        if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) throw corrupt('skippable frames are not supported');
        if (magic !== ZSTD_MAGIC) throw corrupt('not a zstd frame (bad magic number)');
        want('descriptor', 1);
        return;
      }
      case 'descriptor': {
        const fhd = field[0]!;
        const fcsFlag = fhd >> 6;
        const singleSegment = (fhd & 0x20) !== 0;
        if ((fhd & 0x08) !== 0) throw corrupt('reserved bit set in the frame header');
        hasChecksum = (fhd & 0x04) !== 0;
        const didSize = [0, 1, 2, 4][fhd & 0x03]!;
        const fcsSize = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
        const rest = (singleSegment ? 0 : 1) + didSize + fcsSize;
        if (rest > 0) want('header-rest', rest);
        else want('block-header', 3);
        return;
      }
      case 'header-rest':
        want('block-header', 3);
        return;
      case 'block-header': {
        const bh = field[0]! | (field[1]! << 8) | (field[2]! << 16);
        lastBlock = (bh & 1) === 1;
        const type = (bh >> 1) & 3;
        const size = bh >>> 3;
        if (type === 3) throw corrupt('reserved block type');
        // Block_Maximum_Size is 128 KiB (RFC 8878 §3.1.1.2.4).
        if (size > 128 * 1024) throw corrupt('block larger than 128 KiB');
        if (extraFrame && (size > 0 || type !== 0)) throw corrupt('unexpected data after the end of the zstd frame');
        // An RLE block stores one byte however many it stands for.
        const body = type === 1 ? 1 : size;
        if (body > 0) {
          state = 'block-body';
          need = body;
        } else enterAfterBlock();
        return;
      }
      case 'checksum':
        want('done', 0);
        return;
      default:
        throw new CairnError('INTERNAL', `zstd frame check in impossible state ${state}`);
    }
  };

  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      try {
        let pos = 0;
        while (pos < chunk.length) pos = step(chunk, pos);
      } catch (err) {
        cb(err as Error);
        return;
      }
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      if (state !== 'done' && extraFrame) {
        cb(corrupt('unexpected data after the end of the zstd frame'));
        return;
      }
      if (state !== 'done') {
        cb(corrupt(state === 'magic' && fieldLen === 0 ? 'no zstd frame (empty object)' : 'unexpected end of data (truncated)'));
        return;
      }
      field = Buffer.alloc(0);
      cb();
    },
  });
}
