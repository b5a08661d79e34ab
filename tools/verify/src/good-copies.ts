// Where a good copy is (issue 18 item 3): after every configured repository
// has been verified, each damaged or missing object of one is looked for in
// the others — the same backup recording the same file with the same SHA-256,
// or the same WAL file with the same SHA-256 — that the same run found
// sound. That is the copy cairn-restore, cairn-wal-get and cairn-drill would
// take instead; the problem says so, and which repository holds it.

import { objectEntries } from '@cairn/core/backup/pages';
import { readManifest, type ManifestFile } from '@cairn/core/backup/manifest';
import type { StorageDriver } from '@cairn/core/storage/driver';
import type { VerifyProblem, VerifyResult } from '@cairn/core/verify/result-format';
import { quote } from '@cairn/core/wal/quote';

/** Problems about one stored copy, which another repository's copy can stand in for. */
const REPLACEABLE = new Set<VerifyProblem['kind']>(['object-missing', 'object-corrupt', 'wal-corrupt', 'wal-mismatch']);

/** The key prefix every copy of a WAL file with one SHA-256 has (walObjectKey: `<walName>-<sha256><ext>`), or undefined. */
function walCopyPrefix(p: VerifyProblem): string | undefined {
  if (p.key === undefined) return undefined;
  const at = p.key.lastIndexOf(`/${p.subject}-`);
  if (at < 0) return undefined;
  const end = at + 1 + p.subject.length + 1 + 64;
  return p.key.length >= end ? p.key.slice(0, end) : undefined;
}

/**
 * Sets `goodCopy` (and prefixes the hint) on each problem of `results[i]`
 * that another result of the same scope has a sound copy for. `drivers[i]`
 * is the repository `results[i]` verified. Lookups that fail leave the
 * problem as it was.
 */
export async function findGoodCopies(results: readonly VerifyResult[], drivers: readonly StorageDriver[], cluster: string, signal: AbortSignal): Promise<void> {
  const manifests = new Map<string, Promise<ManifestFile[] | undefined>>();
  const filesOf = (j: number, id: string) => {
    const k = `${j}/${id}`;
    let p = manifests.get(k);
    if (p === undefined) {
      p = readManifest(drivers[j]!, cluster, id, signal).then((m) => m && [...m.files.flatMap(objectEntries), ...(m.config ?? [])], () => undefined);
      manifests.set(k, p);
    }
    return p;
  };
  const holds = async (j: number, p: VerifyProblem): Promise<boolean> => {
    const other = results[j]!;
    if (p.path !== undefined && p.sha256 !== undefined) {
      const f = (await filesOf(j, p.subject))?.find((e) => e.path === p.path && e.sha256 === p.sha256);
      if (f === undefined) return false;
      // Sound: no problem of that backup names its object, and its manifest was read.
      return !other.problems.some((q) => q.subject === p.subject && (q.kind === 'manifest-invalid' || q.key === f.key || (f.bundle !== undefined && q.key === f.bundle.key)));
    }
    const prefix = walCopyPrefix(p);
    if (prefix === undefined) return false;
    if (other.problems.some((q) => q.subject === p.subject)) return false;
    for await (const _ of drivers[j]!.list(prefix, signal)) return true;
    return false;
  };
  for (const [i, r] of results.entries()) {
    for (const p of r.problems) {
      if (!REPLACEABLE.has(p.kind)) continue;
      for (const [j, other] of results.entries()) {
        if (j === i || other.scope !== r.scope || other.cluster !== r.cluster) continue;
        if (!(await holds(j, p).catch(() => false))) continue;
        p.goodCopy = other.repo;
        p.hint = `repository ${quote(other.repo)} holds a good copy (same ${p.path !== undefined ? 'backup' : 'WAL file'}, same SHA-256): cairn-restore, cairn-wal-get and cairn-drill take it from there; ${p.hint}`;
        break;
      }
    }
  }
}
