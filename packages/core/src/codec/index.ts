// Compression, encryption and checksums as composable stream stages, in the
// fixed order plaintext → sha256 → compress → encrypt → count → sink.
//
// How each kind of object is stored (the extension says the encoding, and
// readers choose decoders from it, never from today's settings):
//   WAL segments, history files  one zstd frame (its size in the header when
//                                wal-push encodes from memory, and from the
//                                push-ahead worker's threads: segment-encoder.ts),
//                                or one gzip member
//   dump objects                 one zstd frame of unknown size, or one gzip
//                                member; encodeStages, streamed
//   backup files                 4 MiB pieces, each its own zstd frame or gzip
//                                member, concatenated (file-codec.ts); a
//                                file of one piece (or empty) is one frame
//   JSON (manifests, repo.json,  plain, never compressed or encrypted
//     systems, drill results)
// zstd frames carry an XXH64 of their content (zstdParams); a zstd object
// decodes with `zstd -d`, a gzip one with `gzip -d` (concatenated members are
// one stream). Extensions: '.zst' or '.gz', then '.enc' when encrypted; ''
// for compress none. Reading checks the frames (zstd-frames.ts): exactly one
// frame (plus empty ones) for WAL, history and dumps; split into frames of at
// most 64 MiB for backup files.
// Encryption (encrypt.ts) wraps the compressed stream: a 25-byte header
// ("CAIRNENC", version 1, 16-byte salt), then AES-256-GCM chunks of 64 KiB
// plaintext + 16-byte tag, the last chunk marked final (0..64 KiB, present
// even for empty input), so truncation and reordering fail to decrypt.

export {
  type CompressAlg,
  type CompressSpec,
  parseCompress,
  formatCompress,
  compressExtension,
  createCompressStage,
  createDecompressStages,
  zstdParams,
} from './compress.js';
export {
  type EncryptionKey,
  ENCRYPTION_CHUNK_SIZE,
  ENCRYPTION_HEADER_SIZE,
  loadEncryptionKey,
  encryptionKeyFromBytes,
  randomEncryptionKey,
  wrapEncryptionKey,
  unwrapEncryptionKey,
  type WrappedKey,
  keyCheck,
  keyMatches,
  createEncryptStage,
  createDecryptStage,
} from './encrypt.js';
export { named, corruptData, corruptDataFrom, checksumMismatch } from './errors.js';
export { type HashStage, type CountStage, createHashStage, createCountStage, sha256Hex } from './hash.js';
export {
  type EncodeSpec,
  type StoredEncoding,
  type BufferCodecOptions,
  encodedExtension,
  encodeStages,
  storedEncoding,
  decodeStagesFor,
  decodeStagesForExtension,
  decryptStages,
  encodeBuffer,
  decodeToBuffer,
} from './codec.js';
