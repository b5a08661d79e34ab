// Compression, encryption and checksums as composable stream stages, in the
// fixed order plaintext → sha256 → compress → encrypt → count → sink.

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
  keyCheck,
  keyMatches,
  createEncryptStage,
  createDecryptStage,
} from './encrypt.js';
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
