// verify's planning for the files simulation (issue 19): the one planner of
// the simulation that is not a function of its own in the tools. It mirrors
// the part of verifyOnce (tools/verify/src/verify.ts) that runs with
// `--all` before any object is read, calling the same core functions the
// same way, so it holds what verify holds:
// - the ids (listBackupIds), each manifest opened as a stream
//   (eachOpenedManifest with those ids) and screened as it passes
//   (screenManifestStream);
// - verifyBackupFiles: the configuration first, then each record's objects
//   (objectEntries) unless an older backup walked whole in this run stored
//   them (`walked`), gathered VERIFY_BATCH at a time;
// - verifyBatch: each batch's bundled files through a span reader
//   (createSpanReader), split into small (≤ SMALL_FILE, and the spans) and big;
//   the reads (verifyBackupObject through forEachLimit) are left out;
// - describeDebris: the listing of the backups' prefix, objects counted by
//   backup id when the id has no manifest.
// The WAL check (verifyWal) is left out. Check it against verifyOnce when
// verify.ts changes.

import { objectEntries } from '@cairn/core/backup/pages';
import { createSpanReader, isBundled } from '@cairn/core/backup/bundle';
import { backupsPrefix, listBackupIds } from '@cairn/core/backup/manifest';
import { SMALL_FILE } from '@cairn/core/codec/file-codec';
import { eachOpenedManifest } from '@cairn/core/repo/catalog';
import { screenManifestStream } from '@cairn/core/verify/manifest-rules';

/** verify.ts's VERIFY_BATCH. */
const VERIFY_BATCH = 4096;

/** verify --all up to the reads (see the top of this file). */
export async function planVerifyObjects(driver, cluster, signal) {
  const problems = [];
  const ids = await listBackupIds(driver, cluster, signal);
  const walked = new Set();
  let small = 0;
  let big = 0;
  // verifyBatch, without the reads.
  const plan = (todo) => {
    const spans = createSpanReader(driver, todo.filter(isBundled), signal);
    const alone = todo.filter((f) => !isBundled(f));
    small += [...alone.filter((f) => f.size <= SMALL_FILE), ...spans.order].length;
    big += alone.filter((f) => f.size > SMALL_FILE).length;
  };
  // verifyBackupFiles, for each manifest as scope 'all' takes them.
  for await (const m of eachOpenedManifest(driver, cluster, { signal, ids })) {
    const id = m.head.id;
    const screen = screenManifestStream(m, cluster, problems, signal);
    let batch = [...screen.config];
    for await (const f of screen.files()) {
      for (const o of objectEntries(f)) if (o.ref === id || !walked.has(o.ref)) batch.push(o);
      if (batch.length >= VERIFY_BATCH) {
        plan(batch);
        batch = [];
      }
    }
    plan(batch);
    walked.add(id);
    screen.end();
  }
  // describeDebris: every object under the backups' prefix listed.
  const prefix = backupsPrefix(cluster);
  const withManifest = new Set(ids);
  const debris = new Map();
  let listed = 0;
  for await (const o of driver.list(prefix, signal)) {
    listed++;
    const rest = o.key.slice(prefix.length);
    const id = rest.slice(0, rest.indexOf('/'));
    if (id !== '' && !withManifest.has(id)) debris.set(id, (debris.get(id) ?? 0) + 1);
  }
  return { small, big, listed, debris: debris.size, problems: problems.length };
}
