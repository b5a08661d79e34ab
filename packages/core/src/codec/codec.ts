// Composing the stages in the one fixed order (docs/style.md §Streams):
//   write: plaintext → sha256 → compress → encrypt → count → sink
//   read:  source → decrypt → decompress → sha256 (re-checked) → sink
// The caller owns the sha256 and count stages and the pipeline; this module
// gives the middle. Decoders are chosen from the stored name, never from
// today's settings, so objects written under other settings still read.

import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CairnError } from '../cli/errors.js';
import { compressExtension, createCompressStage, createDecompressStages, type CompressAlg, type CompressSpec } from './compress.js';
import { createDecryptStage, createEncryptStage, type EncryptionKey } from './encrypt.js';
import { named } from './errors.js';

export interface EncodeSpec {
  compress: CompressSpec;
  /** Encrypt with this key; plain when absent. */
  key?: EncryptionKey;
}

/** The extension stored objects get: '', '.zst', '.gz', then '.enc' when encrypted ('.zst.enc'). */
export function encodedExtension(spec: EncodeSpec): string {
  return compressExtension(spec.compress.alg) + (spec.key === undefined ? '' : ENC_EXT);
}

const ENC_EXT = '.enc';

/** New stages (streams are single-use) for writing: compress, then encrypt. `size`: the exact plaintext length, when known. */
export function encodeStages(spec: EncodeSpec, size?: number): Transform[] {
  const stages: Transform[] = [];
  const compress = createCompressStage(spec.compress, size);
  if (compress) stages.push(compress);
  if (spec.key !== undefined) stages.push(createEncryptStage(spec.key));
  return stages;
}

export interface StoredEncoding {
  alg: CompressAlg;
  encrypted: boolean;
}

/**
 * What a stored name's extension says about its encoding. Only the last one
 * or two extensions count, in the one order encodedExtension writes them
 * ([.zst|.gz][.enc]). Anything else is no encoding: '.zst.enc' is
 * zstd+encrypted, '.enc.zst' is zstd only.
 */
export function storedEncoding(storedName: string): StoredEncoding {
  let rest = storedName;
  const encrypted = rest.endsWith(ENC_EXT);
  if (encrypted) rest = rest.slice(0, -ENC_EXT.length);
  const alg: CompressAlg = rest.endsWith('.zst') ? 'zstd' : rest.endsWith('.gz') ? 'gzip' : 'none';
  return { alg, encrypted };
}

/**
 * New stages that turn a stored object back into plaintext, chosen from the
 * stored name (a key or its last part): decrypt (for .enc), then decompress
 * (.zst or .gz). `label` names the object in errors. Throws KEY_INVALID when
 * the object is encrypted and no key was given.
 *
 * The name must end in exactly what encodedExtension returned: a plain
 * (compress none, unencrypted) object whose own name ends in ".gz" would be
 * taken for gzip. Callers that store arbitrary names should use
 * decodeStagesForExtension with the extension they recorded.
 */
export function decodeStagesFor(storedName: string, key: EncryptionKey | undefined, label: string): Transform[] {
  return stagesFor(storedEncoding(storedName), key, label);
}

const VALID_EXTENSIONS = new Set(['', '.zst', '.gz', '.enc', '.zst.enc', '.gz.enc']);

/** Like decodeStagesFor, from an extension as encodedExtension returned it. Throws INTERNAL for any other. */
export function decodeStagesForExtension(ext: string, key: EncryptionKey | undefined, label: string): Transform[] {
  if (!VALID_EXTENSIONS.has(ext)) throw new CairnError('INTERNAL', `unknown stored-object extension ${JSON.stringify(ext)}`);
  return stagesFor(storedEncoding(ext), key, label);
}

function stagesFor(enc: StoredEncoding, key: EncryptionKey | undefined, label: string): Transform[] {
  return [...decryptStages(enc, key, label), ...createDecompressStages(enc.alg, label)];
}

/**
 * The decrypt stage of an object whose encoding is `enc`, or none when it is
 * not encrypted: the one place that picks it, for decodeStagesFor and for
 * backup files (file-codec.ts), which decompress frames themselves.
 * Throws KEY_INVALID when the object is encrypted and no key was given.
 */
export function decryptStages(enc: StoredEncoding, key: EncryptionKey | undefined, label: string): Transform[] {
  if (!enc.encrypted) return [];
  if (key === undefined) {
    throw new CairnError('KEY_INVALID', `${named(label)} is encrypted and no encryption key is configured`, {
      hint: 'give the repository key with --encryption-key-file / CAIRN_ENCRYPTION_KEY_FILE',
    });
  }
  return [createDecryptStage(key, label)];
}

export interface BufferCodecOptions {
  signal?: AbortSignal;
  /** Refuse to produce more than this many bytes (FORMAT_INVALID): a guard against decompression bombs. */
  maxBytes?: number;
}

/** Encodes a small object (JSON, a history file) in memory with the same stages. */
export async function encodeBuffer(buf: Buffer, spec: EncodeSpec, opts: BufferCodecOptions = {}): Promise<Buffer> {
  return collect(Readable.from(buf.length > 0 ? [buf] : []), encodeStages(spec, buf.length), 'encoded object', opts);
}

/** Decodes a small stored object (Buffer or stream) to memory, choosing stages from `storedName`. */
export async function decodeToBuffer(
  stored: Buffer | Readable,
  storedName: string,
  key: EncryptionKey | undefined,
  label: string,
  opts: BufferCodecOptions = {},
): Promise<Buffer> {
  const source = Buffer.isBuffer(stored) ? Readable.from(stored.length > 0 ? [stored] : []) : stored;
  return collect(source, decodeStagesFor(storedName, key, label), label, opts);
}

async function collect(source: Readable, stages: Transform[], label: string, opts: BufferCodecOptions): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      total += chunk.length;
      if (opts.maxBytes !== undefined && total > opts.maxBytes) {
        cb(new CairnError('FORMAT_INVALID', `${named(label)} is larger than ${opts.maxBytes} bytes`, {
          hint: 'the stored object is not what its name says or is damaged',
        }));
        return;
      }
      parts.push(chunk);
      cb();
    },
  });
  await pipeline([source, ...stages, sink], opts.signal ? { signal: opts.signal } : {});
  return Buffer.concat(parts, total);
}
