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
import { eachOpenedManifest } from '@cairn/core/repo/catalog';
import { screenManifestStream } from '@cairn/core/verify/manifest-rules';
import { forEachLimit } from '@cairn/core/util/limit';

/**
 * verify --all up to the reads, as tools/verify/src/verify.ts does it: each
 * manifest opened as a stream, its records screened by the manifest rules as
 * they pass, gathered in batches of VERIFY_BATCH and split into small and
 * big (the reads left out).
 */
export async function planVerifyObjects(driver, cluster, signal) {
  const problems = [];
  const walked = new Set();
  let small = 0;
  let big = 0;
  const plan = (todo) => {
    const spans = createSpanReader(driver, todo.filter(isBundled), signal);
    const alone = todo.filter((f) => !isBundled(f));
    small += [...alone.filter((f) => f.size <= SMALL_FILE), ...spans.order].length;
    big += alone.filter((f) => f.size > SMALL_FILE).length;
  };
  for await (const m of eachOpenedManifest(driver, cluster, { signal })) {
    const id = m.head.id;
    const screen = screenManifestStream(m, cluster, problems, signal);
    let batch = [...screen.config];
    for await (const f of screen.files()) {
      for (const o of objectEntries(f)) if (o.ref === id || !walked.has(o.ref)) batch.push(o);
      if (batch.length >= 4096) {
        plan(batch);
        batch = [];
      }
    }
    plan(batch);
    screen.end();
    walked.add(id);
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
