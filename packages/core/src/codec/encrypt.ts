// Authenticated, chunked, truncation-detecting encryption of stored objects.
//
// Keys
//   The key file's bytes, minus one trailing newline, are input keying
//   material (at least 16 bytes; `head -c 32 /dev/urandom | base64 > key`
//   gives 44). They are never used directly:
//     master     = HKDF-SHA256(ikm = material, salt = "cairn", info = "cairn master key v1", 32)
//     key id     = first 8 bytes of HMAC-SHA256(master, "cairn key id v1"), hex: a
//                  short fingerprint for messages and `cairn-info`
//     key check  = HMAC-SHA256(master, "cairn key check v1"), hex: stored in
//                  repo.json so a wrong key is told apart from corrupt data
//     object key = HKDF-SHA256(ikm = master, salt = <16 random bytes per object>,
//                  info = "cairn object key v1", 32)
//   HMAC and HKDF are one-way: none of these reveal the master key, and the
//   distinct info strings keep the derived values independent.
//
// Stream format, version 1
//   header  "CAIRNENC" (8) | version 0x01 (1) | salt (16)          = 25 bytes
//   chunks  AES-256-GCM(object key, nonce, AAD, plaintext) | tag (16)
//           plaintext is exactly 64 KiB in every chunk but the last, which
//           holds 0..64 KiB; the last is present even for empty input.
//           nonce = 0x00000000 | uint64 BE chunk index           (12 bytes)
//           AAD   = header | uint64 BE chunk index | final flag  (34 bytes;
//                   final = 0x01 on the last chunk, 0x00 otherwise)
//
//   This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár,
//   "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance",
//   2015; the same idea as age's payload): because each chunk authenticates
//   its position and whether it is the last, reordering or dropping chunks,
//   cutting the stream at a chunk boundary (the new last chunk was sealed as
//   non-final), cutting it inside a chunk, and appending data (the real last
//   chunk then sits in a non-final position) all fail authentication. The
//   header is in every AAD, so the version byte cannot be swapped either.
//
//   Nonces never repeat under one key: each object has its own key (random
//   128-bit salt) and the counter is unique within an object. So the GCM
//   limits apply per object (2^32 chunks = 256 TiB), not per repository.
//
//   A reader knows where chunks end without length fields: every chunk but
//   the last is exactly 64 KiB + 16 bytes, so it holds back up to one chunk
//   and decides "last" only at end of input.
//
// A plaintext chunk is released only after its tag verified, but earlier
// chunks have been released by the time a later one fails (that is what
// streaming means): a reader must treat its output as valid only once the
// whole pipeline succeeded, as every cairn reader does.

import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { inspect } from 'node:util';
import { CairnError } from '../cli/errors.js';
import { named } from './errors.js';

const MAGIC = Buffer.from('CAIRNENC', 'ascii');
const VERSION = 1;
const SALT_SIZE = 16;
export const ENCRYPTION_HEADER_SIZE = MAGIC.length + 1 + SALT_SIZE;
/** Plaintext bytes per chunk. */
export const ENCRYPTION_CHUNK_SIZE = 64 * 1024;
const TAG_SIZE = 16;
const SEALED_CHUNK_SIZE = ENCRYPTION_CHUNK_SIZE + TAG_SIZE;
const NONCE_SIZE = 12;

/** Less than 128 bits of material cannot be a strong key, however it is derived. */
const MIN_KEY_MATERIAL = 16;
/** A key file is a few dozen bytes; refuse to slurp /dev/urandom or a backup by mistake. */
const MAX_KEY_FILE_SIZE = 64 * 1024;

const KEY_HINT = 'make a key with: head -c 32 /dev/urandom | base64 > key && chmod 600 key';

const secrets = new WeakMap<EncryptionKey, Buffer>();

/**
 * An encryption key, opaque: only its non-secret fingerprint is visible. The
 * key bytes live in a module-private WeakMap, so no property, JSON.stringify,
 * util.inspect or structured clone of this object can reveal them.
 */
export interface EncryptionKey {
  /** A short non-secret fingerprint (16 hex digits), for messages. */
  readonly id: string;
}

class Key implements EncryptionKey {
  readonly id: string;
  constructor(id: string) {
    this.id = id;
  }
  toJSON(): { id: string } {
    return { id: this.id };
  }
  [inspect.custom](): string {
    return `EncryptionKey { id: '${this.id}' }`;
  }
}

function masterOf(key: EncryptionKey | undefined): Buffer {
  const master = key === undefined ? undefined : secrets.get(key);
  if (master === undefined) {
    throw new CairnError('INTERNAL', 'not an encryption key made by loadEncryptionKey');
  }
  return master;
}

function hmac(master: Buffer, label: string): Buffer {
  return createHmac('sha256', master).update(label, 'utf8').digest();
}

/**
 * Makes a key from raw material (the key file's contents without the trailing
 * newline). Throws KEY_INVALID for fewer than 16 bytes. `source` names where
 * the material came from, for the message.
 */
export function encryptionKeyFromBytes(material: Buffer, source = 'encryption key'): EncryptionKey {
  if (material.length < MIN_KEY_MATERIAL) {
    throw new CairnError('KEY_INVALID', `encryption key "${source}" is too short: ${material.length} bytes, at least ${MIN_KEY_MATERIAL} are needed`, {
      hint: KEY_HINT,
    });
  }
  return keyFromMaster(Buffer.from(hkdfSync('sha256', material, 'cairn', 'cairn master key v1', 32)));
}

/**
 * Reads a key file (--encryption-key-file / CAIRN_ENCRYPTION_KEY_FILE).
 * Throws FILE_UNREADABLE when it cannot be read, KEY_INVALID when it holds
 * fewer than 16 bytes (after one trailing newline is removed) or more than
 * 64 KiB. The contents are used as they are (not base64-decoded), so any
 * text or binary key works.
 */
export async function loadEncryptionKey(path: string): Promise<EncryptionKey> {
  let material: Buffer;
  try {
    // Read at most MAX+1 bytes: a FIFO, /dev/stdin or a process substitution
    // works, and a mistaken /dev/urandom does not hang or fill memory.
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(MAX_KEY_FILE_SIZE + 1);
      let len = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, len, buf.length - len, null);
        if (bytesRead === 0) break;
        len += bytesRead;
        if (len === buf.length) break;
      }
      if (len > MAX_KEY_FILE_SIZE) {
        buf.fill(0);
        throw new CairnError('KEY_INVALID', `encryption key file "${path}" is larger than ${MAX_KEY_FILE_SIZE / 1024} KiB`, {
          hint: `check the path; ${KEY_HINT}`,
        });
      }
      material = Buffer.from(buf.subarray(0, len));
      buf.fill(0);
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof CairnError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new CairnError('FILE_UNREADABLE', `cannot read encryption key file "${path}": ${code}`, {
      hint: `check --encryption-key-file / CAIRN_ENCRYPTION_KEY_FILE and that this user can read the file; ${KEY_HINT}`,
      cause: err,
    });
  }
  // One trailing newline is what `echo`, editors and `base64` add; strip
  // exactly one (and a CR before it) so the same key typed or generated
  // either way derives the same master key. Other bytes are key material.
  let end = material.length;
  if (end > 0 && material[end - 1] === 0x0a) {
    end--;
    if (end > 0 && material[end - 1] === 0x0d) end--;
  }
  try {
    return encryptionKeyFromBytes(material.subarray(0, end), path);
  } finally {
    material.fill(0);
  }
}

/** A non-secret value to store in repo.json that identifies the key. */
export function keyCheck(key: EncryptionKey): string {
  return hmac(masterOf(key), 'cairn key check v1').toString('hex');
}

/** True when `check` (from repo.json) was made by keyCheck with this key. */
export function keyMatches(key: EncryptionKey, check: string): boolean {
  const expected = Buffer.from(keyCheck(key), 'hex');
  if (typeof check !== 'string' || !/^[0-9a-f]{64}$/i.test(check)) return false;
  return timingSafeEqual(expected, Buffer.from(check, 'hex'));
}

function objectKey(master: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', master, salt, 'cairn object key v1', 32));
}

function nonceOf(index: number): Buffer {
  const nonce = Buffer.alloc(NONCE_SIZE);
  nonce.writeBigUInt64BE(BigInt(index), 4);
  return nonce;
}

function aadOf(header: Buffer, index: number, final: boolean): Buffer {
  const aad = Buffer.alloc(header.length + 9);
  header.copy(aad, 0);
  aad.writeBigUInt64BE(BigInt(index), header.length);
  aad[header.length + 8] = final ? 1 : 0;
  return aad;
}

/** Buffers written chunks and hands out exact-size pieces without quadratic copying. */
class ByteQueue {
  #parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    if (b.length === 0) return;
    this.#parts.push(b);
    this.length += b.length;
  }
  /** Removes and returns the first n bytes (n <= length). */
  take(n: number): Buffer {
    const first = this.#parts[0];
    if (first !== undefined && first.length >= n) {
      // Common case: no copy.
      const out = first.subarray(0, n);
      if (first.length === n) this.#parts.shift();
      else this.#parts[0] = first.subarray(n);
      this.length -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const part = this.#parts[0]!;
      const k = Math.min(part.length, n - filled);
      part.copy(out, filled, 0, k);
      filled += k;
      if (k === part.length) this.#parts.shift();
      else this.#parts[0] = part.subarray(k);
    }
    this.length -= n;
    return out;
  }
}

/** The encrypting stage (compress → encrypt). Each call makes a new salt. */
export function createEncryptStage(key: EncryptionKey): Transform {
  const master = masterOf(key);
  const salt = randomBytes(SALT_SIZE);
  const header = Buffer.concat([MAGIC, Buffer.from([VERSION]), salt]);
  const subkey = objectKey(master, salt);
  const queue = new ByteQueue();
  let index = 0;
  let headerSent = false;

  const seal = (stream: Transform, plain: Buffer, final: boolean) => {
    if (!headerSent) {
      stream.push(header);
      headerSent = true;
    }
    const cipher = createCipheriv('aes-256-gcm', subkey, nonceOf(index), { authTagLength: TAG_SIZE });
    cipher.setAAD(aadOf(header, index, final));
    const body = cipher.update(plain);
    const rest = cipher.final(); // empty for GCM, but part of the contract
    stream.push(rest.length === 0 ? body : Buffer.concat([body, rest]));
    stream.push(cipher.getAuthTag());
    index++;
  };

  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      queue.push(chunk);
      // Strictly more than one chunk's worth: with exactly 64 KiB buffered we
      // cannot yet know whether it is the last chunk.
      while (queue.length > ENCRYPTION_CHUNK_SIZE) seal(this, queue.take(ENCRYPTION_CHUNK_SIZE), false);
      cb();
    },
    flush(cb: TransformCallback) {
      seal(this, queue.take(queue.length), true);
      subkey.fill(0);
      cb();
    },
  });
}

/**
 * The decrypting stage. Throws DECRYPT_FAILED (wrong key, or any change,
 * truncation or addition to the data) and FORMAT_INVALID (not a cairn
 * encrypted object at all, or a newer format), naming `label`.
 */
export function createDecryptStage(key: EncryptionKey, label: string): Transform {
  const master = masterOf(key);
  const queue = new ByteQueue();
  let header: Buffer | undefined;
  let subkey: Buffer | undefined;
  let index = 0;

  const failed = (cause?: unknown) =>
    new CairnError('DECRYPT_FAILED', `cannot decrypt ${named(label)}: wrong encryption key or corrupted data`, {
      hint: 'check that --encryption-key-file is the key this repository was written with; if it is, the stored object is damaged: restore it from another repository',
      cause,
    });

  const readHeader = () => {
    const h = Buffer.from(queue.take(ENCRYPTION_HEADER_SIZE));
    if (!h.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new CairnError('FORMAT_INVALID', `${named(label)} is not an encrypted cairn object (bad header)`, {
        hint: 'the stored object is damaged or not what its name says; restore it from another repository',
      });
    }
    const version = h[MAGIC.length]!;
    if (version !== VERSION) {
      throw new CairnError('FORMAT_INVALID', `${named(label)} uses encryption format version ${version}, which this cairn cannot read`, {
        hint: 'upgrade cairn to read it (or, if no cairn wrote such a version, the object is damaged)',
      });
    }
    header = h;
    subkey = objectKey(master, h.subarray(MAGIC.length + 1));
  };

  const openChunk = (stream: Transform, sealed: Buffer, final: boolean) => {
    if (sealed.length < TAG_SIZE) throw failed();
    const decipher = createDecipheriv('aes-256-gcm', subkey!, nonceOf(index), { authTagLength: TAG_SIZE });
    decipher.setAAD(aadOf(header!, index, final));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
    const body = decipher.update(sealed.subarray(0, sealed.length - TAG_SIZE));
    try {
      decipher.final(); // throws unless the tag verifies
    } catch (err) {
      throw failed(err);
    }
    index++;
    // Only now, authenticated, does the chunk leave this stage.
    if (body.length > 0) stream.push(body);
  };

  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      try {
        queue.push(chunk);
        if (header === undefined) {
          if (queue.length < ENCRYPTION_HEADER_SIZE) return cb();
          readHeader();
        }
        // Hold back the last (up to) one sealed chunk: only end of input
        // tells whether it is the final one.
        while (queue.length > SEALED_CHUNK_SIZE) openChunk(this, queue.take(SEALED_CHUNK_SIZE), false);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback) {
      try {
        if (header === undefined) {
          // Fewer bytes than a header: truncated, or not encrypted at all.
          throw queue.length === 0
            ? new CairnError('FORMAT_INVALID', `${named(label)} is empty, but an encrypted object is never empty`, {
                hint: 'the stored object is damaged; restore it from another repository',
              })
            : failed();
        }
        // Missing final chunk (truncated at a boundary): sealed as non-final,
        // it fails here; less than a tag left: truncated inside a chunk.
        openChunk(this, queue.take(queue.length), true);
        subkey!.fill(0);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}

// Envelope encryption (issue 18 item 4): a cluster's objects are encrypted
// under a data key (32 random bytes, used as the master key above), stored
// in the repository wrapped by the operator's key (repo/data-key.ts). A
// rotation wraps the same data key with a new operator key: one small object,
// no re-encryption. The wrapping is AES-256-GCM under
//   wrap key = HKDF-SHA256(ikm = operator master, salt = 16 random bytes,
//                          info = "cairn data key wrap v1", 32)
// with a random 96-bit nonce (one encryption per wrap key: the salt is new
// each time) and the caller's associated data (the object's format, cluster
// and version), so a wrapped key cannot be moved to another name unnoticed.

/** A fresh random data key. */
export function randomEncryptionKey(): EncryptionKey {
  return keyFromMaster(randomBytes(32));
}

function keyFromMaster(master: Buffer): EncryptionKey {
  const key = new Key(hmac(master, 'cairn key id v1').subarray(0, 8).toString('hex'));
  secrets.set(key, master);
  return key;
}

export interface WrappedKey {
  /** base64: HKDF salt (16), GCM nonce (12), sealed data key (32) + tag (16). */
  salt: string;
  nonce: string;
  sealed: string;
}

function wrapKeyOf(wrapping: EncryptionKey, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', masterOf(wrapping), salt, 'cairn data key wrap v1', 32));
}

/** Seals `data`'s secret under `wrapping`, binding `aad`. */
export function wrapEncryptionKey(data: EncryptionKey, wrapping: EncryptionKey, aad: Buffer): WrappedKey {
  const salt = randomBytes(SALT_SIZE);
  const nonce = randomBytes(NONCE_SIZE);
  const k = wrapKeyOf(wrapping, salt);
  try {
    const cipher = createCipheriv('aes-256-gcm', k, nonce, { authTagLength: TAG_SIZE });
    cipher.setAAD(aad);
    const sealed = Buffer.concat([cipher.update(masterOf(data)), cipher.final(), cipher.getAuthTag()]);
    return { salt: salt.toString('base64'), nonce: nonce.toString('base64'), sealed: sealed.toString('base64') };
  } finally {
    k.fill(0);
  }
}

/**
 * Opens a wrapped key; undefined when `wrapping` is not the key it was
 * sealed with or the object was changed (GCM cannot tell these apart: the
 * caller's key check can).
 */
export function unwrapEncryptionKey(w: WrappedKey, wrapping: EncryptionKey, aad: Buffer): EncryptionKey | undefined {
  const salt = Buffer.from(String(w.salt), 'base64');
  const nonce = Buffer.from(String(w.nonce), 'base64');
  const sealed = Buffer.from(String(w.sealed), 'base64');
  if (salt.length !== SALT_SIZE || nonce.length !== NONCE_SIZE || sealed.length !== 32 + TAG_SIZE) return undefined;
  const k = wrapKeyOf(wrapping, salt);
  try {
    const decipher = createDecipheriv('aes-256-gcm', k, nonce, { authTagLength: TAG_SIZE });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(32));
    const master = decipher.update(sealed.subarray(0, 32));
    decipher.final();
    return keyFromMaster(Buffer.from(master));
  } catch {
    return undefined;
  } finally {
    k.fill(0);
  }
}
