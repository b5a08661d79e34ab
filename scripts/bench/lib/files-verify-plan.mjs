// The two planners of the files simulation that are not a function of their
// own in the tools yet: verify's planning (tools/verify/src/verify.ts, the
// part before any object is read) and restore's file scheduler
// (tools/restore/src/restore.ts) with a writer that writes nothing. They
// call the same core functions in the same way, so they hold what the tools hold.

import { objectEntries } from '@cairn/core/backup/pages';
import { createSpanReader, isBundled } from '@cairn/core/backup/bundle';
import { openManifest } from '@cairn/core/backup/manifest-stream';
import { createManifestChecker, refuseUnsafe } from '@cairn/core/backup/manifest-rules';
import { SMALL_FILE } from '@cairn/core/codec/file-codec';
import { eachOpenedManifest } from '@cairn/core/repo/catalog';
import { screenManifestStream } from '@cairn/core/verify/manifest-rules';
import { createLimiter } from '@cairn/core/util/limit';

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

/**
 * restore's path from manifest to per-file jobs, as tools/restore/src/restore.ts
 * takes it, each job a no-op: a first pass checking every record (the
 * manifest rules) and noting pg_control, the big files and the parent
 * directories, then a second pass in batches of RESTORE_BATCH, each batch's
 * bundled files through a span reader, the jobs through the store's limiter.
 */
export async function scheduleRestoreStub(driver, cluster, id, signal) {
  const opened = await openManifest(driver, cluster, id, signal);
  const where = id;
  const checker = createManifestChecker(opened.head, cluster);
  const big = [];
  const parents = new Set();
  for await (const f of opened.files(signal)) {
    checker.file(f);
    if (f.size > SMALL_FILE && (!isBundled(f) || f.pages)) big.push(f);
    const slash = f.path.lastIndexOf('/');
    if (slash > 0) parents.add(f.path.slice(0, slash));
  }
  refuseUnsafe(checker.findings, where);
  const many = createLimiter(driver.features.requests);
  let jobs = 0;
  let bytes = 0;
  const run = (files) => Promise.all(files.map((f) => many(async () => {
    jobs++;
    bytes += f.size;
  })));
  await run(big);
  const again = createManifestChecker(opened.head, cluster);
  let batch = [];
  let spansOrdered = 0;
  const flush = async () => {
    const spans = createSpanReader(driver, batch.filter((f) => isBundled(f) && !f.pages), signal);
    spansOrdered += spans.order.length;
    await run([...batch.filter((f) => !isBundled(f) || f.pages), ...spans.order]);
    batch = [];
  };
  for await (const f of opened.files(signal)) {
    again.file(f);
    if (f.size > SMALL_FILE && (!isBundled(f) || f.pages)) continue;
    batch.push(f);
    if (batch.length >= 4096) await flush();
  }
  await flush();
  return { jobs, bytes, spans: spansOrdered, parents: parents.size };
}
