// Writing one backup file back to disk from its stored object, streaming and
// checked: the path for files bigger than one piece, shared by cairn-restore
// and its worker threads.

import { createWriteStream } from 'node:fs';
import { chmod, chown, unlink, utimes } from 'node:fs/promises';
import type { EncryptionKey } from '../codec/index.js';
import type { StorageDriver } from '../storage/driver.js';
import { decodeFileInto, decodeFileStages } from './file-codec.js';

export interface FileToRestore {
  /** The stored object. */
  key: string;
  /** Absolute path to write. */
  path: string;
  sha256: string;
  size: number;
  mode: number;
  mtime: number;
  /** Names the file in errors. */
  label: string;
  owner?: { uid: number; gid: number };
}

/**
 * Streams the object through its decoders (up to `window` frames decoded at
 * once) into `f.path`, checks size and SHA-256, then sets mode, mtime and
 * owner. A file that fails its check is removed: bytes that failed never stay
 * where PostgreSQL could read them.
 */
export async function restoreFile(driver: StorageDriver, key: EncryptionKey | undefined, f: FileToRestore, window: number, signal?: AbortSignal): Promise<void> {
  const source = await driver.read(f.key, signal);
  const sink = createWriteStream(f.path, { flags: 'w', mode: f.mode, highWaterMark: 1024 * 1024 });
  try {
    await decodeFileInto(source, decodeFileStages(f.key, key, f.label, window), sink, { sha256: f.sha256, size: f.size, label: f.label }, signal);
  } catch (err) {
    await unlink(f.path).catch(() => {});
    throw err;
  }
  await chmod(f.path, f.mode);
  await utimes(f.path, f.mtime, f.mtime);
  if (f.owner) await chown(f.path, f.owner.uid, f.owner.gid).catch(() => {});
}
