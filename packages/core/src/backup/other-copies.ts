// Self-healing reads of backup files (issue 18 item 3): a file whose stored
// object is missing or fails its checks in the repository a restore reads is
// taken from the next configured repository that holds the same backup with
// the same SHA-256 (and size) recorded for that file. Never on a name alone: a
// backup with the same id whose manifest records other bytes for the file is
// not used for it. Each repository's objects decode with that repository's
// own data key.

import { CairnError, isCairnError, toCairnError, type ErrorCode } from '../cli/errors.js';
import type { EncryptionKey } from '../codec/index.js';
import { openCluster } from '../repo/repo-config.js';
import type { StorageDriver } from '../storage/driver.js';
import { quote } from '../wal/quote.js';
import { manifestKey, readManifest, type ManifestFile } from './manifest.js';
import { assertManifestRestorable } from './manifest-rules.js';

/**
 * Errors that say the stored copy is gone or damaged (not that the local
 * disk, the key or the storage service failed): another repository's copy
 * may then be read instead.
 */
const DAMAGED: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['CHECKSUM_MISMATCH', 'FORMAT_INVALID', 'DECRYPT_FAILED', 'OBJECT_MISSING', 'NOT_FOUND']);

/** Whether `err` is a stored object that is missing or fails its checks. */
export function isDamagedCopy(err: unknown): boolean {
  return isCairnError(err) && DAMAGED.has(err.code);
}

/** Which list of the manifest a file is in: the data directory's files, or the configuration kept from outside it (paths of the two may coincide). */
export type BackupPart = 'files' | 'config';

/** A good candidate: the entry another repository's manifest of the same backup has for the file, and that repository's key. */
export interface FileCopy {
  driver: StorageDriver;
  /** The key this repository's objects decrypt with (its data key). */
  key: EncryptionKey | undefined;
  file: ManifestFile;
}

export interface OtherCopies {
  /**
   * The repositories, in the order configured, whose manifest of the backup
   * records `want.path` with `want`'s SHA-256 and size. A repository that
   * cannot be opened, lacks the backup, or records other bytes is skipped;
   * why is in `skipped(path)`. Never throws.
   */
  find(want: ManifestFile, part?: BackupPart): Promise<FileCopy[]>;
  /** Why each repository had no copy of `path`, for the error when none did. */
  skipped(path: string, part?: BackupPart): string[];
}

interface Opened {
  driver: StorageDriver;
  key: EncryptionKey | undefined;
  files: Map<string, ManifestFile> | undefined;
  config: Map<string, ManifestFile> | undefined;
  /** Why this repository cannot serve any file (unopenable, no such backup, unsafe manifest). */
  reason?: string;
}

/**
 * Other copies of backup `backupId` in `drivers` (the configured
 * repositories other than the one read). Each is opened (repo.json, its data
 * key from the operator's `key`) and its manifest read once, on first need.
 */
export function otherCopies(o: { drivers: readonly StorageDriver[]; cluster: string; key: EncryptionKey | undefined; backupId: string; signal?: AbortSignal }): OtherCopies {
  const opened = new Map<StorageDriver, Promise<Opened>>();
  const open = (driver: StorageDriver): Promise<Opened> => {
    let p = opened.get(driver);
    if (p === undefined) {
      p = (async (): Promise<Opened> => {
        try {
          const cfg = await openCluster(driver, o.cluster, o.key, o.signal);
          if (cfg === undefined) return { driver, key: undefined, files: undefined, config: undefined, reason: `holds no cluster ${quote(o.cluster)}` };
          const m = await readManifest(driver, o.cluster, o.backupId, o.signal);
          if (m === undefined) return { driver, key: undefined, files: undefined, config: undefined, reason: `holds no backup ${o.backupId}` };
          // Manifests are input (issue 11), in every repository.
          assertManifestRestorable(m, o.cluster, `${quote(manifestKey(o.cluster, m.id))} in repository ${quote(driver.url)}`);
          return { driver, key: cfg.dataKey ?? o.key, files: new Map(m.files.map((f) => [f.path, f])), config: new Map((m.config ?? []).map((f) => [f.path, f])) };
        } catch (err) {
          o.signal?.throwIfAborted();
          return { driver, key: undefined, files: undefined, config: undefined, reason: toCairnError(err).message };
        }
      })();
      opened.set(driver, p);
    }
    return p;
  };
  const why = new Map<string, string[]>();
  return {
    async find(want, part = 'files') {
      const found: FileCopy[] = [];
      const reasons: string[] = [];
      for (const driver of o.drivers) {
        const r = await open(driver);
        const f = r[part]?.get(want.path);
        if (r[part] === undefined) reasons.push(`repository ${quote(driver.url)} ${r.reason}`);
        else if (f === undefined) reasons.push(`repository ${quote(driver.url)} has no ${quote(want.path)} in backup ${o.backupId}`);
        else if (f.sha256 !== want.sha256 || f.size !== want.size) reasons.push(`repository ${quote(driver.url)} records other bytes for ${quote(want.path)} in backup ${o.backupId}`);
        else found.push({ driver, key: r.key, file: f });
      }
      why.set(`${part}:${want.path}`, reasons);
      return found;
    },
    skipped: (path, part = 'files') => why.get(`${part}:${path}`) ?? [],
  };
}

/**
 * Restores one file from the first good copy elsewhere after `err` (a
 * damaged or missing copy in `bad`): `write` is tried with each copy in turn;
 * `warn` gets one line naming the damaged repository, the object and the
 * repository used. Throws `err` (with what was tried in its hint) when no
 * copy worked, or when `err` is not about the stored copy.
 */
export async function restoreFromOtherCopy<T>(
  err: unknown,
  o: { bad: StorageDriver; file: ManifestFile; part?: BackupPart; backupId: string; copies: OtherCopies | undefined; warn: (line: string) => void },
  write: (copy: FileCopy) => Promise<T>,
): Promise<T> {
  if (o.copies === undefined || !isDamagedCopy(err)) throw err;
  const first = toCairnError(err);
  const tried: string[] = [];
  for (const copy of await o.copies.find(o.file, o.part)) {
    try {
      const r = await write(copy);
      o.warn(
        `repository ${quote(o.bad.url)}: ${first.message}; ${o.part === 'config' ? 'configuration file ' : ''}${quote(o.file.path)} of backup ${o.backupId} was restored from repository ${quote(copy.driver.url)} instead ` +
          `(same backup, same SHA-256 ${o.file.sha256.slice(0, 12)}…); run cairn-verify on ${quote(o.bad.url)}`,
      );
      return r;
    } catch (e) {
      if (!isDamagedCopy(e)) throw e;
      tried.push(`repository ${quote(copy.driver.url)}: ${toCairnError(e).message}`);
    }
  }
  const others = [...o.copies.skipped(o.file.path, o.part), ...tried];
  throw new CairnError(first.code, first.message, {
    hint: others.length === 0 ? (first.hint ?? 'restore it from another repository') : `no other configured repository has a good copy (${others.join('; ')}); ${first.hint ?? ''}`.replace(/; $/, ''),
    cause: err,
  });
}
