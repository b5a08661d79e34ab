// Splits a stream of concatenated zstd frames (RFC 8878 §3.1) into one Buffer
// per frame, without decompressing. Backup files are stored as one frame per
// 4 MiB of input so that frames compress and decompress in parallel on the
// libuv threadpool; `zstd -d` decodes the concatenation as one file.

import { Transform, type TransformCallback } from 'node:stream';
import { CairnError } from '../cli/errors.js';

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** No frame we write is near this; a bigger one is corruption, not data to buffer. */
const MAX_FRAME = 64 * 1024 * 1024;

type State = 'magic' | 'descriptor' | 'header-rest' | 'block-header' | 'skip' | 'checksum' | 'skippable-size';

/** A Transform: bytes in, one Buffer per complete zstd frame out (objectMode readable side). */
export function createZstdFrameSplitter(label: string): Transform {
  let state: State = 'magic';
  const field = Buffer.alloc(16);
  let fieldLen = 0;
  let need = 4;
  let hasChecksum = false;
  let lastBlock = false;
  let skippable = false;
  let afterSkip: State = 'block-header';
  // Bytes of the frame in progress.
  let parts: Buffer[] = [];
  let frameLen = 0;

  const corrupt = (why: string) =>
    new CairnError('FORMAT_INVALID', `corrupt zstd data in ${label}: ${why}`, {
      hint: 'the stored object is damaged or truncated; restore it from another repository',
    });

  const endFrame = (stream: Transform) => {
    if (!skippable) stream.push(parts.length === 1 ? parts[0] : Buffer.concat(parts, frameLen));
    parts = [];
    frameLen = 0;
    skippable = false;
    state = 'magic';
    need = 4;
    fieldLen = 0;
  };

  /** A field of `need` bytes is complete in `field`: act on it. */
  const onField = (stream: Transform): void => {
    switch (state) {
      case 'magic': {
        const magic = field.readUInt32LE(0);
        if (magic === ZSTD_MAGIC) {
          state = 'descriptor';
          need = 1;
        } else if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
          skippable = true;
          state = 'skippable-size';
          need = 4;
        } else {
          throw corrupt('not a zstd frame');
        }
        break;
      }
      case 'descriptor': {
        const fhd = field[0]!;
        const fcsFlag = fhd >> 6;
        const single = (fhd >> 5) & 1;
        if ((fhd >> 3) & 1) throw corrupt('reserved bit set in a frame header');
        hasChecksum = ((fhd >> 2) & 1) === 1;
        const didSize = [0, 1, 2, 4][fhd & 3]!;
        const fcsSize = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag]!;
        need = (single ? 0 : 1) + didSize + fcsSize;
        state = 'header-rest';
        if (need === 0) {
          state = 'block-header';
          need = 3;
        }
        break;
      }
      case 'header-rest':
        state = 'block-header';
        need = 3;
        break;
      case 'block-header': {
        const h = field[0]! | (field[1]! << 8) | (field[2]! << 16);
        lastBlock = (h & 1) === 1;
        const type = (h >> 1) & 3;
        const size = h >>> 3;
        if (type === 3) throw corrupt('reserved block type');
        const body = type === 1 ? 1 : size;
        afterSkip = lastBlock ? (hasChecksum ? 'checksum' : 'magic') : 'block-header';
        if (body > 0) {
          state = 'skip';
          need = body;
        } else {
          afterBody(stream);
        }
        break;
      }
      case 'checksum':
        endFrame(stream);
        break;
      case 'skippable-size':
        state = 'skip';
        need = field.readUInt32LE(0);
        afterSkip = 'magic';
        if (need === 0) endFrame(stream);
        break;
      default:
        break;
    }
    fieldLen = 0;
  };

  const afterBody = (stream: Transform) => {
    if (afterSkip === 'magic') {
      endFrame(stream);
      return;
    }
    state = afterSkip;
    need = afterSkip === 'checksum' ? 4 : 3;
  };

  return new Transform({
    readableObjectMode: true,
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      try {
        let pos = 0;
        while (pos < chunk.length) {
          const take = Math.min(need, chunk.length - pos);
          if (state !== 'skip') chunk.copy(field, fieldLen, pos, pos + take);
          fieldLen += take;
          const piece = chunk.subarray(pos, pos + take);
          parts.push(piece);
          frameLen += take;
          if (frameLen > MAX_FRAME) throw corrupt('a frame larger than 64 MiB');
          pos += take;
          need -= take;
          if (need > 0) continue;
          if (state === 'skip') {
            fieldLen = 0;
            afterBody(this);
          } else {
            onField(this);
          }
        }
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback) {
      if (frameLen > 0 || state !== 'magic') cb(corrupt('truncated (the data ends inside a frame)'));
      else cb();
    },
  });
}
