// cairn-verify as a function: read every object a restore would read — backup
// files, dump objects, WAL — decode it and compare its SHA-256 (and size) with
// what was recorded, without writing anything to disk; check the WAL archive
// as a whole (core verify/wal-continuity); parse each dump's TOC with
// pg_restore --list. Problems are results, not exceptions: only a repository
// that cannot be read at all (or a wrong key) throws.

import { CairnError, isCairnError } from '@cairn/core/cli/errors';
import { formatBytes } from '@cairn/core/cli/format';
import { createCountStage, type EncryptionKey } from '@cairn/core/codec/index';
import { createSpanReader, isBundled, type SpanReader } from '@cairn/core/backup/bundle';
import { objectEntries } from '@cairn/core/backup/pages';
import { decodeFileInto, decodeFileStages, decodeWhole, PIECE_SIZE, SMALL_FILE } from '@cairn/core/codec/file-codec';
import { readChainLinks, walkChain } from '@cairn/core/backup/chain';
import { backupsPrefix, listBackupIds, manifestKey, summarize, type BackupSummary, type ManifestFile } from '@cairn/core/backup/manifest';
import type { OpenedManifest } from '@cairn/core/backup/manifest-stream';
import { listDumps, resolveDumpRef, type DumpRef } from '@cairn/core/dump/manifest';
import { describeRepoDebris, listRepoDebris } from '@cairn/core/repo/debris';
import { eachOpenedManifest, eachDumpManifest, listWalArchive, readHistoryText, type ReadManifestsOptions, type WalListing } from '@cairn/core/repo/catalog';
import { openCluster } from '@cairn/core/repo/repo-config';
import { readSystem } from '@cairn/core/repo/systems';
import type { StoredWal } from '@cairn/core/repo/wal-archive';
import { readWalChecked } from '@cairn/core/repo/wal-read';
import { walMismatchProblem } from '@cairn/core/verify/wal-header';
import { WriteConflictError, type StorageDriver } from '@cairn/core/storage/driver';
import { parseTimelineHistory, type TimelineHistoryEntry } from '@cairn/core/wal/history';
import { forEachLimit } from '@cairn/core/util/limit';
import { utcStamp } from '@cairn/core/util/time-id';
import { quote } from '@cairn/core/wal/quote';
import { DEFAULT_SEGMENT_SIZE, isValidSegmentSize, segmentName } from '@cairn/core/wal/segment';
import { backupWalRange, checkWalContinuity } from '@cairn/core/verify/wal-continuity';
import { screenManifestStream } from '@cairn/core/verify/manifest-rules';
import { VERIFY_RESULT_FORMAT, verifyResultKey, type VerifyProblem, type VerifyResult } from '@cairn/core/verify/result-format';
import { discard, findingOf } from './read-check.js';
import { dumpName, verifyDump } from './verify-dumps.js';

export type VerifyScope = { kind: 'all' } | { kind: 'set'; id: string } | { kind: 'dump'; ref: string };

export interface VerifyOptions {
  driver: StorageDriver;
  cluster: string;
  key: EncryptionKey | undefined;
  scope: VerifyScope;
  /** Objects read and decoded at once. */
  jobs: number;
  /** Directory of pg_restore; else /usr/lib/postgresql/<dump's major>/bin, else PATH. */
  pgBin: string | undefined;
  /** A WAL gap whose next segment was stored this recently is "not archived yet" (a note); default 10 min. */
  walGapGraceMs?: number;
}

export const DEFAULT_WAL_GAP_GRACE_MS = 600_000;

export interface VerifyContext {
  now: () => Date;
  signal: AbortSignal;
  env: NodeJS.ProcessEnv;
  log: { info(msg: string): void; warn(msg: string): void; debug(msg: string): void };
  /** Called once with the live counters and problem list (for a progress line). */
  watch?: (counters: Readonly<Counters>, problems: readonly VerifyProblem[]) => void;
}

export interface Counters {
  objects: number;
  bytes: number;
  storedBytes: number;
  walSegments: number;
  historyFiles: number;
}

/** `20261121-020000`: the run's id and the name of its stored result (UTC start). */
export function verifyRunId(start: Date): string {
  return utcStamp(start);
}

/** File records verified per batch: what verify holds of a backup's file list. */
const VERIFY_BATCH = 4096;

/** Frames decoded at once per large object; jobs × this × 4 MiB bounds memory. */
const FRAME_WINDOW = 2;

/**
 * Directories under `prefix` (one level: a backup id) holding objects but no
 * manifest: what an interrupted run leaves. Not a problem — cairn-expire
 * removes them — but worth a note.
 */
async function describeDebris(driver: StorageDriver, prefix: string, withManifest: ReadonlySet<string>, what: string, signal: AbortSignal): Promise<string[]> {
  const counts = new Map<string, number>();
  for await (const o of driver.list(prefix, signal)) {
    const rest = o.key.slice(prefix.length);
    const id = rest.slice(0, rest.indexOf('/'));
    if (id !== '' && !withManifest.has(id)) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return [...counts].map(([id, count]) => `${what} ${quote(id)} has ${count} object${count === 1 ? '' : 's'} and no manifest (an interrupted run; cairn-expire removes them)`);
}

async function hasAnyObject(driver: StorageDriver, prefix: string, signal: AbortSignal): Promise<boolean> {
  for await (const _ of driver.list(prefix, signal)) return true;
  return false;
}

/** Verifies one repository's cluster; the result is not stored (storeVerifyResult does that). */
/** Backup ids and `DIR/ID` of dumps that have a manifest now. */
async function catalogIds(driver: StorageDriver, cluster: string, signal: AbortSignal): Promise<Set<string>> {
  const ids = new Set(await listBackupIds(driver, cluster, signal));
  for (const d of await listDumps(driver, cluster, signal)) ids.add(dumpName(d));
  return ids;
}

/**
 * Verifies the repository (see verifyOnce). Verify takes no lease, so an
 * expire may delete a backup, a dump or WAL below them while they are read:
 * their objects then look missing. When the run found problems and a backup
 * or dump that was there at the start has gone by the end, it runs once
 * more, on what is left, and says so in a note.
 */
export async function verifyRepository(opts: VerifyOptions, ctx: VerifyContext): Promise<VerifyResult> {
  const before = await catalogIds(opts.driver, opts.cluster, ctx.signal);
  const first = await verifyOnce(opts, ctx);
  if (first.ok) return first;
  const after = await catalogIds(opts.driver, opts.cluster, ctx.signal);
  const gone = [...before].filter((id) => !after.has(id));
  if (gone.length === 0) return first;
  const again = await verifyOnce(opts, ctx);
  again.start = first.start;
  again.id = first.id;
  again.durationSeconds = (Date.parse(again.stop.time) - Date.parse(first.start.time)) / 1000;
  again.notes = [...(again.notes ?? []), `${gone.join(', ')} went while verify ran (cairn-expire?); verified what is left again`];
  return again;
}

async function verifyOnce(opts: VerifyOptions, ctx: VerifyContext): Promise<VerifyResult> {
  const { driver, cluster, scope } = opts;
  const { signal } = ctx;
  const started = ctx.now();
  const problems: VerifyProblem[] = [];
  const notes: string[] = [];
  const n: Counters = { objects: 0, bytes: 0, storedBytes: 0, walSegments: 0, historyFiles: 0 };
  const where = `repository ${quote(driver.url)}`;
  ctx.watch?.(n, problems);

  // A wrong or missing key is a configuration error, not a thousand corrupt objects.
  const cfg = await openCluster(driver, cluster, opts.key, signal);
  // The cluster's data key, or (clusters without one) the operator's key.
  const key = cfg?.dataKey ?? opts.key;
  if (cfg === undefined && !(await hasAnyObject(driver, `${cluster}/`, signal))) {
    // Nothing to verify is not "no problems": a wrong --cluster or --repo would pass silently.
    throw new CairnError('CONFIG_INVALID', `cluster ${quote(cluster)} is not in ${where}`, {
      hint: 'check --repo and --cluster (cairn-info lists what a repository holds)',
    });
  }

  let backups = 0;
  let dumps = 0;
  /** Summaries of readable backup manifests, for the WAL check. */
  const summaries: BackupSummary[] = [];
  let walScope: { systemId: string; backup: BackupSummary } | undefined;

  // A damaged manifest is a problem found, not the end of the run.
  const readOpts: ReadManifestsOptions = {
    signal,
    onInvalid: (bad) => problems.push(bad.dump
      ? { kind: 'manifest-invalid', subject: dumpName(bad.dump), key: bad.key, message: bad.error.message, hint: 'this dump cannot be restored: take a new one with cairn-dump' }
      : { kind: 'manifest-invalid', subject: bad.id, key: bad.key, message: bad.error.message, hint: 'this backup cannot be restored: take a new full backup, and restore from another one meanwhile' }),
  };

  if (scope.kind !== 'dump') {
    const ids = await listBackupIds(driver, cluster, signal);
    if (scope.kind === 'set' && !ids.includes(scope.id)) {
      throw new CairnError('NOT_FOUND', `backup ${quote(scope.id)} is not in cluster ${quote(cluster)} of ${where}`, {
        hint: 'cairn-info lists the backups; leave out --set to verify the whole repository',
      });
    }
    const manifests = new Map<string, BackupSummary>();
    const readOne = async (id: string): Promise<OpenedManifest | undefined> => {
      for await (const m of eachOpenedManifest(driver, cluster, { ...readOpts, ids: [id] })) return m;
      return undefined;
    };

    // Each stored object is read once however many backups reference it:
    // an entry whose object an older backup stored (ref) is left to that
    // backup when its manifest was walked whole in this run (oldest first),
    // and read here otherwise (its manifest gone or damaged). State is a set
    // of backup ids and one batch of records, never a file list (issue 19).
    const walked = new Set<string>();
    const verifyBackupFiles = async (m: OpenedManifest) => {
      const id = m.head.id;
      const screen = screenManifestStream(m, cluster, problems, signal);
      backups++;
      ctx.log.info(`backup ${id}: verifying ${m.fileCount} files`);
      const verifyBatch = async (todo: ManifestFile[]) => {
        // Small objects are one request each: as many in flight as the store
        // takes (tens for an object store), beside --jobs big ones.
        // Bundled files a span of neighbours at a time (backup/bundle.ts).
        const spans = createSpanReader(driver, todo.filter(isBundled), signal);
        const alone = todo.filter((f) => !isBundled(f));
        const small = [...alone.filter((f) => f.size <= SMALL_FILE), ...spans.order];
        const big = alone.filter((f) => f.size > SMALL_FILE);
        const one = async (f: ManifestFile) => {
          const label = `"${f.path}" (${quote(f.key)})`;
          try {
            const r = await verifyBackupObject(driver, f, key, label, signal, spans);
            n.objects++;
            n.bytes += r.bytes;
            n.storedBytes += r.storedBytes;
          } catch (err) {
            const finding = findingOf(err);
            if (finding === undefined) throw err;
            problems.push(backupObjectProblem(finding, id, f, err as Error));
          }
        };
        // Both pools finish (or fail) before the first error is thrown.
        const runs = await Promise.allSettled([
          forEachLimit(small, Math.max(opts.jobs, driver.features.requests), one, signal),
          forEachLimit(big, opts.jobs, one, signal),
        ]);
        for (const r of runs) if (r.status === 'rejected') throw r.reason;
      };
      // The configuration kept from outside PGDATA is read back like the data.
      let batch: ManifestFile[] = [...screen.config];
      try {
        for await (const f of screen.files()) {
          // A page-level file is its base and layers, each an object (backup/pages.ts).
          for (const o of objectEntries(f)) if (o.ref === id || !walked.has(o.ref)) batch.push(o);
          if (batch.length >= VERIFY_BATCH) {
            await verifyBatch(batch);
            batch = [];
          }
        }
      } catch (err) {
        // A manifest that turns out damaged part-way (truncated, altered) is a problem found.
        if (!isCairnError(err, 'FORMAT_INVALID')) throw err;
        problems.push({ kind: 'manifest-invalid', subject: id, key: manifestKey(cluster, id), message: (err as CairnError).message, hint: 'this backup cannot be restored: take a new full backup, and restore from another one meanwhile' });
        await verifyBatch(batch);
        screen.end();
        return;
      }
      await verifyBatch(batch);
      walked.add(id);
      screen.end();
    };

    if (scope.kind === 'all') {
      for await (const m of eachOpenedManifest(driver, cluster, { ...readOpts, ids })) {
        const s = summarize(m.head);
        manifests.set(s.id, s);
        summaries.push(s);
        await verifyBackupFiles(m);
      }
      for (const b of summaries) checkChain(b, manifests, ids, problems);
      notes.push(...(await describeDebris(driver, backupsPrefix(cluster), new Set(ids), 'backup', signal)));
      notes.push(...describeRepoDebris(await listRepoDebris(driver, cluster, signal)));
    } else {
      const m = await readOne(scope.id);
      if (m !== undefined) {
        const s = summarize(m.head);
        summaries.push(s);
        walScope = { systemId: s.systemId, backup: s };
        // The chain's manifests: each must exist and read.
        const links = await readChainLinks(s, async (p) => {
          const pm = ids.includes(p) ? await readOne(p) : undefined;
          return pm && summarize(pm.head);
        });
        for (const [id, l] of links) manifests.set(id, l);
        checkChain(s, manifests, ids, problems);
        await verifyBackupFiles(m);
      }
    }
  }

  if (scope.kind !== 'set') {
    let refs: DumpRef[] = await listDumps(driver, cluster, signal);
    if (scope.kind === 'dump') refs = [resolveDumpRef(refs, scope.ref)];
    for await (const m of eachDumpManifest(driver, cluster, { ...readOpts, refs })) {
      dumps++;
      await verifyDump(driver, m, key, opts, ctx, n, problems);
    }
  }

  // --set of an unreadable manifest: no WAL range to check.
  if (scope.kind === 'all' || (scope.kind === 'set' && walScope !== undefined)) {
    await verifyWal(driver, cluster, key, summaries, walScope, opts, ctx, n, problems, notes);
  }

  const stopped = ctx.now();
  return {
    format: VERIFY_RESULT_FORMAT,
    id: verifyRunId(started),
    cluster,
    repo: driver.url,
    scope: scope.kind === 'all' ? 'all' : scope.kind === 'set' ? `set:${scope.id}` : `dump:${scope.ref}`,
    start: { time: started.toISOString() },
    stop: { time: stopped.toISOString() },
    durationSeconds: (stopped.getTime() - started.getTime()) / 1000,
    ok: problems.length === 0,
    checked: { backups, dumps, ...n },
    problems,
    notes,
  };
}

/** Reports a backup whose chain (parents) is not whole. */
function checkChain(b: BackupSummary, manifests: ReadonlyMap<string, BackupSummary>, ids: readonly string[], problems: VerifyProblem[]): void {
  const w = walkChain(manifests, b.id);
  if (w.loopsAt !== undefined) {
    problems.push({ kind: 'parent-missing', subject: b.id, message: `the chain of backup ${quote(b.id)} loops at ${quote(w.loopsAt)}`, hint: 'the manifests are damaged: take a new full backup' });
  } else if (w.missing) {
    const { parent: p, child } = w.missing;
    problems.push({
      kind: 'parent-missing',
      subject: b.id,
      message: ids.includes(p)
        ? `backup ${quote(b.id)} builds on backup ${quote(p)}${child === b.id ? '' : ` (through ${quote(child)})`}, whose manifest cannot be read`
        : `backup ${quote(b.id)} builds on backup ${quote(p)}${child === b.id ? '' : ` (through ${quote(child)})`}, which is not in the repository`,
      hint: 'this backup cannot be restored: take a new full backup',
    });
  }
}

/** Decodes one backup object and checks its plaintext size and SHA-256; throws on a finding. */
async function verifyBackupObject(driver: StorageDriver, f: ManifestFile, key: EncryptionKey | undefined, label: string, signal: AbortSignal, spans: SpanReader): Promise<{ bytes: number; storedBytes: number }> {
  const expect = { sha256: f.sha256, size: f.size, label };
  if (isBundled(f)) {
    const buf = await spans.read(f);
    await decodeWhole(buf, f.key, key, expect);
    return { bytes: f.size, storedBytes: buf.length };
  }
  // Most files of a cluster are a few kB: one read and one decode in memory.
  if (f.size <= PIECE_SIZE && f.storedSize <= PIECE_SIZE && driver.readSmall) {
    const buf = await driver.readSmall(f.key, signal);
    await decodeWhole(buf, f.key, key, expect);
    return { bytes: f.size, storedBytes: buf.length };
  }
  const count = createCountStage();
  const source = await driver.read(f.key, signal);
  await decodeFileInto(source, [count.stage, ...decodeFileStages(f.key, key, label, FRAME_WINDOW)], discard(), expect, signal);
  return { bytes: f.size, storedBytes: count.bytes() };
}

function backupObjectProblem(finding: 'missing' | 'corrupt', id: string, f: ManifestFile, err: Error): VerifyProblem {
  const shared = f.ref === id ? '' : ` (stored by backup ${quote(f.ref)}, so every backup referencing it is affected)`;
  const where = f.bundle ? `bundle ${quote(f.bundle.key)}` : `object ${quote(f.key)}`;
  return finding === 'missing'
    ? { kind: 'object-missing', subject: id, key: f.bundle?.key ?? f.key, path: f.path, sha256: f.sha256, message: `backup ${quote(id)}: ${where} of "${f.path}" is missing${shared}`, hint: 'this backup cannot be restored: take a new full backup, and restore another one meanwhile (cairn-restore --set)' }
    : { kind: 'object-corrupt', subject: id, key: f.key, path: f.path, sha256: f.sha256, message: `backup ${quote(id)}: ${err.message}${shared}`, hint: 'this backup cannot be restored from this repository: take a new full backup; restore another backup or from another repository meanwhile' };
}

// ---- WAL --------------------------------------------------------------------

async function verifyWal(
  driver: StorageDriver,
  cluster: string,
  key: EncryptionKey | undefined,
  backups: readonly BackupSummary[],
  only: { systemId: string; backup: BackupSummary } | undefined,
  opts: VerifyOptions,
  ctx: VerifyContext,
  n: Counters,
  problems: VerifyProblem[],
  notes: string[],
): Promise<void> {
  const archive = await listWalArchive(driver, cluster, ctx.signal);
  const systems = only ? [only.systemId] : [...new Set([...archive.keys(), ...backups.map((b) => b.systemId)])].sort();
  for (const systemId of systems) {
    const listing: WalListing = archive.get(systemId) ?? { systemId, segments: new Map(), histories: new Map(), others: [], all: [], foreign: [] };
    const ofSystem = backups.filter((b) => b.systemId === systemId);
    // The segment size names segments: from a backup, else the system's registration.
    let segSize = ofSystem.find((b) => isValidSegmentSize(b.walSegmentSize))?.walSegmentSize;
    if (segSize === undefined) {
      const registered = (await readSystem(driver, cluster, systemId, ctx.signal).catch(() => undefined))?.walSegmentSize;
      segSize = registered !== undefined && isValidSegmentSize(registered) ? registered : DEFAULT_SEGMENT_SIZE;
    }
    for (const f of listing.foreign) notes.push(`${quote(f.key)} is not a WAL object cairn writes (left alone)`);

    // The WAL objects to read: the whole archive, or the backup's own range.
    let toRead: StoredWal[];
    if (only) {
      const b = only.backup;
      toRead = [];
      const range = backupWalRange(b, segSize);
      if (range !== undefined) {
        for (let s = range.startSeg; s <= range.stopSeg; s++) {
          const stored = listing.segments.get(segmentName(b.timeline, s, segSize));
          if (stored) toRead.push(stored);
        }
      }
    } else {
      // Every stored copy (a segment may be stored in two encodings): each is one a restore may read.
      toRead = listing.all.filter((w) => !w.walName.endsWith('.history'));
    }

    // History files first (they are few and the continuity check needs them).
    const histories = new Map<number, TimelineHistoryEntry[]>();
    const unreadable = new Set<number>();
    if (!only) {
      for (const [tli, stored] of listing.histories) {
        try {
          const text = await readHistoryText(driver, stored, key, ctx.signal);
          n.historyFiles++;
          n.bytes += Buffer.byteLength(text);
          n.storedBytes += stored.size;
          histories.set(tli, parseTimelineHistory(text, `${stored.walName} in repository "${driver.url}"`));
        } catch (err) {
          const finding = findingOf(err);
          if (finding === undefined) throw err;
          unreadable.add(tli);
          problems.push(walObjectProblem(finding, stored, err as Error, true));
        }
      }
    }

    ctx.log.info(`system ${systemId}: verifying ${toRead.length} WAL objects`);
    await forEachLimit(toRead, opts.jobs, async (stored) => {
      try {
        const { bytes } = await readWalChecked(driver, stored, systemId, key, discard(), ctx.signal);
        n.walSegments++;
        n.bytes += bytes;
        n.storedBytes += stored.size;
      } catch (err) {
        if (isCairnError(err, 'WAL_MISMATCH')) return void problems.push(walMismatchProblem(stored, err));
        const finding = findingOf(err);
        if (finding === undefined) throw err;
        problems.push(walObjectProblem(finding, stored, err as Error, false));
      }
    }, ctx.signal);

    const { problems: found, notes: pending } = checkWalContinuity({
      systemId,
      segSize,
      segments: listing.segments.keys(),
      storedAt: new Map([...listing.segments].map(([name, w]) => [name, w.mtime])),
      now: ctx.now(),
      gapGraceMs: opts.walGapGraceMs ?? DEFAULT_WAL_GAP_GRACE_MS,
      partials: listing.others.map((o) => o.walName),
      histories,
      unreadableHistories: unreadable,
      backups: ofSystem,
      ...(only ? { checkBackups: new Set([only.backup.id]) } : {}),
      archive: !only,
    });
    problems.push(...found);
    notes.push(...pending);
  }
}

function walObjectProblem(finding: 'missing' | 'corrupt', stored: StoredWal, err: Error, history: boolean): VerifyProblem {
  const what = history ? 'timeline history' : 'WAL file';
  if (finding === 'missing') {
    return { kind: 'object-missing', subject: stored.walName, key: stored.key, message: `${what} ${quote(stored.walName)} vanished while verifying (${quote(stored.key)})`, hint: 'was cairn-expire running? run cairn-verify again' };
  }
  // A parse failure of a history whose checksum matched: it never was a valid history.
  const kind = history && isCairnError(err, 'FORMAT_INVALID') && /invalid timeline history/.test(err.message) ? 'history-mismatch' : 'wal-corrupt';
  return {
    kind,
    subject: stored.walName,
    key: stored.key,
    message: err.message,
    hint: history
      ? 'restores cannot follow this timeline: copy the history file from the server\'s pg_wal (or another repository) and archive it with cairn-wal-push after removing the damaged object'
      : 'point-in-time recovery cannot pass this segment: archive a good copy from the server\'s pg_wal or another repository after removing the damaged object, and take a new full backup',
  };
}

// ---- the stored result ------------------------------------------------------

/**
 * Stores the result as a new object (never rewritten). Returns a warning
 * instead of throwing: a read-only repository still gets verified.
 */
export async function storeVerifyResult(driver: StorageDriver, result: VerifyResult, signal?: AbortSignal): Promise<string | undefined> {
  const key = verifyResultKey(result.cluster, result.id);
  try {
    await driver.write(key, Buffer.from(JSON.stringify(result, null, 2) + '\n'), { ifAbsent: true, ...(signal ? { signal } : {}) });
    return undefined;
  } catch (err) {
    if (err instanceof WriteConflictError) return `a verify result ${quote(key)} of the same second exists in repository ${quote(driver.url)}; this run's result was not stored`;
    return `could not store the result in repository ${quote(driver.url)} (${(err as Error).message}); cairn-prom-export will not see this run`;
  }
}

// ---- output -----------------------------------------------------------------

/** The progress line shown on a terminal while verify runs. */
export function formatProgress(c: Readonly<Counters>, problems: number, seconds: number): string {
  return `verify: ${c.objects} objects, ${c.walSegments} WAL files, ${formatBytes(c.bytes)} (${formatBytes(c.bytes / Math.max(seconds, 0.001))}/s), ${problems} problem${problems === 1 ? '' : 's'}`;
}

/** The human report: one problem and its hint per two lines, the notes, then a summary line. */
export function formatReport(r: VerifyResult): string {
  const lines: string[] = [];
  for (const p of r.problems) lines.push(`problem: ${p.message}`, `  hint: ${p.hint}`);
  for (const note of r.notes ?? []) lines.push(`note: ${note}`);
  const c = r.checked;
  const secs = Math.max(r.durationSeconds, 0.001);
  lines.push(
    `verify ${r.scope} of cluster "${r.cluster}" in repository "${r.repo}": ${c.backups} backup${c.backups === 1 ? '' : 's'}, ${c.dumps} dump${c.dumps === 1 ? '' : 's'}, ` +
    `${c.objects} objects and ${c.walSegments} WAL files (${c.historyFiles} history) read: ${formatBytes(c.bytes)} (${formatBytes(c.storedBytes)} stored) in ${r.durationSeconds.toFixed(1)} s, ` +
    `${formatBytes(c.bytes / secs)}/s; ${r.problems.length === 0 ? 'no problems' : `${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`}`,
  );
  return lines.join('\n') + '\n';
}
