// What a backup keeps per file while it runs, kept flat in the number of
// files (issue 19): the parents' records are read as streams beside the
// walk, and the new manifest's records go into a compressed spool as they
// are made, with the totals its header needs.

import { MANIFEST_FORMAT_STREAM, type ManifestFile } from '@cairn/core/backup/manifest';
import { comparePaths } from '@cairn/core/backup/manifest-stream';
import { createManifestSpool, type Hole, type ManifestSpool } from '@cairn/core/backup/manifest-spool';
import type { ParentRecords, StoreTarget } from './store.js';

export interface ParentLookup {
  /** Each target's parent record of `path`. Called in comparePaths order, one call at a time, when `ordered`. */
  at(path: string): Promise<ParentRecords>;
  /**
   * Reads what is left of each parent manifest: a streamed manifest is
   * trusted only once its end line checked out, so this runs before the
   * new manifest is written (and fails the backup if the parent's does).
   */
  finish(): Promise<void>;
}

const NONE: ParentRecords = new Map();

/**
 * The parents' records of each target. `ordered`: the caller asks in
 * comparePaths order (the streamed walk), and a streamed parent manifest is
 * read beside it, one record held per target. Otherwise (a tar stream's
 * order, or an older manifest, whose records are in another order and held
 * whole anyway) each parent's records are put in a map.
 */
export function parentLookup(targets: readonly StoreTarget[], ordered: boolean, signal: AbortSignal): ParentLookup {
  const withParent = targets.filter((t) => t.parentManifest !== undefined);
  if (withParent.length === 0) return { at: async () => NONE, finish: async () => {} };
  type Cursor = { t: StoreTarget; it: AsyncIterator<ManifestFile>; cur: ManifestFile | undefined; done: boolean; map?: Map<string, ManifestFile> };
  const cursors: Cursor[] = withParent.map((t) => ({ t, it: t.parentManifest!.files(t.signal ?? signal)[Symbol.asyncIterator](), cur: undefined, done: false }));
  let ready: Promise<void> | undefined;
  const start = async () => {
    for (const c of cursors) {
      if (!ordered || c.t.parentManifest!.head.format !== MANIFEST_FORMAT_STREAM) {
        c.map = new Map();
        for (;;) {
          const r = await c.it.next();
          if (r.done) break;
          c.map.set(r.value.path, r.value);
        }
        c.done = true;
        continue;
      }
      const r = await c.it.next();
      c.cur = r.done ? undefined : r.value;
      c.done = r.done === true;
    }
  };
  return {
    async at(path) {
      await (ready ??= start());
      const out = new Map<StoreTarget, ManifestFile>();
      for (const c of cursors) {
        if (c.map) {
          const f = c.map.get(path);
          if (f) out.set(c.t, f);
          continue;
        }
        while (!c.done && c.cur !== undefined && comparePaths(c.cur.path, path) < 0) {
          const r = await c.it.next();
          c.cur = r.done ? undefined : r.value;
          c.done = r.done === true;
        }
        if (c.cur !== undefined && c.cur.path === path) out.set(c.t, c.cur);
      }
      return out;
    },
    async finish() {
      await (ready ??= start());
      for (const c of cursors) {
        while (!c.done) c.done = (await c.it.next()).done === true;
        c.cur = undefined;
        c.map = undefined;
      }
    },
  };
}

/** One target's records of the new backup and the totals of its manifest's header. */
export interface Records {
  spool: ManifestSpool;
  size: number;
  /** Plain bytes of the files this backup stored (the rest it references). */
  storedFilesSize: number;
  storedSize: number;
  filesStored: number;
  filesReferenced: number;
  badPages: number;
  /** Objects this backup stored alone (not in a bundle): made durable before the manifest. */
  alone: string[];
  add(f: ManifestFile): void;
  hole(): Hole;
  fill(h: Hole, f: ManifestFile): void;
}

export function createRecords(id: string): Records {
  const spool = createManifestSpool();
  const count = (f: ManifestFile) => {
    r.size += f.size;
    if (f.ref === id) {
      r.storedSize += f.storedSize;
      r.storedFilesSize += f.size;
      r.filesStored++;
      r.badPages += f.badPages?.length ?? 0;
      if (f.bundle === undefined) r.alone.push(f.key);
    } else {
      r.filesReferenced++;
    }
  };
  const r: Records = {
    spool, size: 0, storedFilesSize: 0, storedSize: 0, filesStored: 0, filesReferenced: 0, badPages: 0, alone: [],
    add(f) {
      count(f);
      spool.add(f);
    },
    hole: () => spool.hole(),
    fill(h, f) {
      count(f);
      spool.fill(h, f);
    },
  };
  return r;
}
