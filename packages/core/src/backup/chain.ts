// Walking backup chains (full ← diff ← incr) over a catalog's parent links:
// ancestors, descendants, depth. The one home of this walk (issue 13). Every
// walk is loop-safe: a damaged catalog whose parents loop is visited once.

import { CairnError } from '../cli/errors.js';
import { quote } from '../wal/quote.js';
import type { BackupManifest } from './manifest.js';

export type ChainLink = Pick<BackupManifest, 'id' | 'parent'>;

/** Where a walk from a backup towards its full backup ended. */
export interface ChainWalk {
  /** The ancestors found, nearest first (the backup itself not included). */
  ancestors: string[];
  /** The parent that is not in the catalog, and the backup (`id` or an ancestor) that names it. */
  missing?: { parent: string; child: string };
  /** The backup at which the parents loop back. */
  loopsAt?: string;
}

/**
 * The one error for a backup whose chain lacks a parent (exit 4): a restore
 * of `id` cannot be made, whichever tool found it.
 */
export function missingParentError(id: string, parent: string): CairnError {
  return new CairnError('FORMAT_INVALID', `backup ${quote(parent)} needed by ${quote(id)} is missing from the repository`, {
    hint: 'restore from another backup (cairn-info lists them) and take a new full backup',
  });
}

/** Follows parent links from `id` until a full backup, a missing parent or a loop. */
export function walkChain(byId: ReadonlyMap<string, ChainLink>, id: string): ChainWalk {
  const ancestors: string[] = [];
  const seen = new Set([id]);
  for (let child = id, p = byId.get(id)?.parent ?? null; p !== null; child = p, p = byId.get(p)?.parent ?? null) {
    if (seen.has(p)) return { ancestors, loopsAt: p };
    if (!byId.has(p)) return { ancestors, missing: { parent: p, child } };
    seen.add(p);
    ancestors.push(p);
  }
  return { ancestors };
}

/**
 * The chain a backup restores from: full first, `id` last. Throws the
 * missing-parent error (or FORMAT_INVALID for a loop) when it is not whole.
 */
export function backupChain(byId: ReadonlyMap<string, ChainLink>, id: string): string[] {
  if (!byId.has(id)) throw missingParentError(id, id);
  const w = walkChain(byId, id);
  if (w.missing) throw missingParentError(id, w.missing.parent);
  if (w.loopsAt !== undefined) throw new CairnError('FORMAT_INVALID', `backup chain of ${quote(id)} loops at ${quote(w.loopsAt)}`);
  return [...w.ancestors.reverse(), id];
}

/** Parent links followed from `id` before the walk stopped (a missing parent counts: its link exists). */
export function chainDepth(byId: ReadonlyMap<string, ChainLink>, id: string): number {
  const w = walkChain(byId, id);
  return w.ancestors.length + (w.missing || w.loopsAt !== undefined ? 1 : 0);
}

/** The chains of one catalog, indexed once for many questions. */
export interface ChainIndex {
  byId: ReadonlyMap<string, ChainLink>;
  /** Ancestors nearest first, then the missing parent if one is (so what must stay is named even when gone). */
  ancestors(id: string): string[];
  /** Every backup that builds on `id`, directly or through others. */
  descendants(id: string): string[];
  depth(id: string): number;
}

export function indexChains(backups: Iterable<ChainLink>): ChainIndex {
  const byId = new Map<string, ChainLink>();
  const children = new Map<string, string[]>();
  for (const b of backups) {
    byId.set(b.id, b);
    if (b.parent !== null) children.set(b.parent, [...(children.get(b.parent) ?? []), b.id]); // few backups: copying is fine
  }
  return {
    byId,
    ancestors(id) {
      const w = walkChain(byId, id);
      return w.missing ? [...w.ancestors, w.missing.parent] : w.ancestors;
    },
    descendants(id) {
      const out: string[] = [];
      for (let todo = [...(children.get(id) ?? [])]; todo.length > 0; ) {
        const c = todo.pop()!;
        if (c === id || out.includes(c)) continue;
        out.push(c);
        todo.push(...(children.get(c) ?? []));
      }
      return out;
    },
    depth: (id) => chainDepth(byId, id),
  };
}

/**
 * Reads the links of `start`'s ancestors one at a time, parent after parent,
 * until a full backup, one `read` cannot give (undefined) or a loop; the map
 * then answers backupChain or walkChain.
 */
export async function readChainLinks<T extends ChainLink>(start: T, read: (id: string) => Promise<T | undefined>): Promise<Map<string, T>> {
  const byId = new Map([[start.id, start]]);
  for (let p = start.parent; p !== null && !byId.has(p); ) {
    const m = await read(p);
    if (m === undefined) break;
    byId.set(p, m);
    p = m.parent;
  }
  return byId;
}
