// The two planners of the files simulation that are not a function of their
// own in the tools yet: verify's planning (tools/verify/src/verify.ts, the
// part before any object is read) and restore's file scheduler
// (tools/restore/src/restore.ts) with a writer that writes nothing. They
// call the same core functions in the same way, so they hold what the tools hold.

import { objectEntries } from '@cairn/core/backup/pages';
import { createSpanReader, isBundled } from '@cairn/core/backup/bundle';
import { readManifest } from '@cairn/core/backup/manifest';
import { assertManifestRestorable } from '@cairn/core/backup/manifest-rules';
import { SMALL_FILE } from '@cairn/core/codec/file-codec';
import { eachBackupManifest } from '@cairn/core/repo/catalog';
import { screenManifest } from '@cairn/core/verify/manifest-rules';
import { forEachLimit } from '@cairn/core/util/limit';

/** verify --all up to the reads: screened manifests, objects once each, small and big apart. */
export async function planVerifyObjects(driver, cluster, signal) {
  const problems = [];
  const seen = new Map();
  let small = 0;
  let big = 0;
  for await (const raw of eachBackupManifest(driver, cluster, { signal })) {
    const m = screenManifest(raw, cluster, problems);
    const todo = [];
    for (const f of [...m.files.flatMap(objectEntries), ...(m.config ?? [])]) {
      if (!seen.has(f.key)) {
        seen.set(f.key, f.sha256);
        todo.push(f);
      }
    }
    const spans = createSpanReader(driver, todo.filter(isBundled), signal);
    const alone = todo.filter((f) => !isBundled(f));
    small += [...alone.filter((f) => f.size <= SMALL_FILE), ...spans.order].length;
    big += alone.filter((f) => f.size > SMALL_FILE).length;
  }
  // The listing verify compares against (debris, foreign objects).
  let listed = 0;
  for await (const _ of driver.list(`${cluster}/backups/`, signal)) listed++;
  return { small, big, listed, problems: problems.length };
}

/** restore's path from manifest to per-file jobs, each job a no-op. */
export async function scheduleRestoreStub(driver, cluster, id, signal) {
  const manifest = await readManifest(driver, cluster, id, signal);
  assertManifestRestorable(manifest, cluster, id);
  const made = new Set();
  for (const f of manifest.files) {
    const slash = f.path.lastIndexOf('/');
    if (slash > 0) made.add(f.path.slice(0, slash));
  }
  const spans = createSpanReader(driver, manifest.files.filter((f) => isBundled(f) && !f.pages), signal);
  let jobs = 0;
  let bytes = 0;
  await forEachLimit(manifest.files, driver.features.requests, async (f) => {
    jobs++;
    bytes += f.size;
  }, signal);
  return { jobs, bytes, spans: spans.order.length };
}
