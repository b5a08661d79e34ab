// Small JSON documents in the repository (repo.json, systems/*.json): read,
// and create once (never rewritten, docs/design.md §4.11).

import { buffer } from 'node:stream/consumers';
import { CairnError } from '../cli/errors.js';
import { ObjectNotFoundError, WriteConflictError, type StorageDriver } from '../storage/driver.js';

export async function readJsonObject<T>(driver: StorageDriver, key: string, signal?: AbortSignal): Promise<T | undefined> {
  return (await readJsonBytes<T>(driver, key, signal))?.value;
}

/** readJsonObject, with the bytes it parsed (cairn-copy writes exactly what it checked). */
export async function readJsonBytes<T>(driver: StorageDriver, key: string, signal?: AbortSignal): Promise<{ value: T; bytes: Buffer } | undefined> {
  const body = await readObjectBytes(driver, key, signal);
  if (body === undefined) return undefined;
  try {
    return { value: JSON.parse(body.toString('utf8')) as T, bytes: body };
  } catch {
    throw new CairnError('FORMAT_INVALID', `"${key}" in repository "${driver.url}" is not valid JSON`, {
      hint: 'the repository is damaged; restore the file from a copy or ask for help before changing anything',
    });
  }
}

/** An object's bytes, or undefined when it is not there. */
export async function readObjectBytes(driver: StorageDriver, key: string, signal?: AbortSignal): Promise<Buffer | undefined> {
  try {
    return await buffer(await driver.read(key, signal));
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}

/** Creates `key` unless it exists; returns what is stored afterwards (ours or the winner's). */
export async function createJsonObject<T>(driver: StorageDriver, key: string, value: T, signal?: AbortSignal): Promise<T> {
  try {
    await driver.write(key, Buffer.from(JSON.stringify(value, null, 2) + '\n'), { ifAbsent: true, ...(signal ? { signal } : {}) });
    return value;
  } catch (err) {
    if (!(err instanceof WriteConflictError)) throw err;
    const stored = await readJsonObject<T>(driver, key, signal);
    if (stored === undefined) throw err;
    return stored;
  }
}
