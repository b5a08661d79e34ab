// cairn-info as a function: read each repository (catalog, history files,
// one listing of the cluster for sizes, the last verify and drill result),
// describe it (core/info, pure), and render the report for a person.

import { ERROR_CODES, EXIT, isCairnError, toCairnError, type ErrorCode } from '@cairn/core/cli/errors';
import { formatBytes, formatTable } from '@cairn/core/cli/format';
import type { EncryptionKey } from '@cairn/core/codec/index';
import {
  describeRepository,
  emptyUsage,
  INFO_FORMAT,
  tallyObject,
  type InfoDamaged,
  type InfoDocument,
  type InfoPoint,
  type InfoReport,
} from '@cairn/core/info/report';
import { readHistories, readRepoCatalog } from '@cairn/core/repo/catalog';
import { readJsonObject } from '@cairn/core/repo/json-object';
import { checkKeyAgainst, readRepoConfig } from '@cairn/core/repo/repo-config';
import { closeRepositories, loadKey, openRepositories } from '@cairn/core/repo/repositories';
import { readSystem, type SystemRecord } from '@cairn/core/repo/systems';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { readLatestVerifyResult } from '@cairn/core/verify/result-format';
import type { TimelineHistoryEntry } from '@cairn/core/wal/history';

export interface InfoOptions {
  repos: string[];
  cluster: string;
  keyFile: string | undefined;
}

/**
 * One report per repository, in the order given. A repository that cannot
 * be read (unreachable, wrong key, damaged) is listed in `errors` and the
 * others are still reported; an internal error stops everything.
 */
export async function info(opts: InfoOptions, ctx: { now: () => Date; signal: AbortSignal; log: { warn: (line: string) => void } }): Promise<InfoDocument> {
  const key = await loadKey(opts.keyFile);
  const now = ctx.now();
  const doc: InfoDocument = { format: INFO_FORMAT, createdAt: now.toISOString(), repositories: [], errors: [] };
  for (const url of opts.repos) {
    let drivers: StorageDriver[] = [];
    try {
      drivers = await openRepositories([url]);
      doc.repositories.push(await readInfoReport(drivers[0]!, opts.cluster, key, now, ctx.signal, (l) => ctx.log.warn(l)));
    } catch (thrown) {
      ctx.signal.throwIfAborted();
      const err = toCairnError(thrown);
      if (err.code === 'INTERNAL') throw err;
      doc.errors.push({ repo: drivers[0]?.url ?? url, code: err.code, message: err.message, hint: err.hint ?? null });
    } finally {
      await closeRepositories(drivers);
    }
  }
  return doc;
}

const DRILL_KEY_RE = /\/drills\/([^/]+)\.json$/;

/** Reads what the report needs from one repository and describes it. */
export async function readInfoReport(
  driver: StorageDriver,
  cluster: string,
  key: EncryptionKey | undefined,
  now: Date,
  signal?: AbortSignal,
  warn: (line: string) => void = () => {},
): Promise<InfoReport> {
  const cfg = await readRepoConfig(driver, cluster, signal);
  // A wrong or missing key is told before any history file fails to decode.
  if (cfg !== undefined) checkKeyAgainst(cfg, key, driver.url, cluster);
  // A damaged manifest leaves its backup or dump out of the report, listed
  // in `damaged` and told on stderr, rather than hiding the whole repository;
  // the exit status is still 4.
  const damaged: InfoDamaged[] = [];
  const catalog = await readRepoCatalog(driver, cluster, {
    ...(signal ? { signal } : {}),
    onInvalid: (bad) => {
      damaged.push({ kind: bad.kind, id: bad.id, key: bad.key, message: bad.error.message });
      warn(`${bad.kind} ${bad.id} left out: its manifest ${JSON.stringify(bad.key)} is damaged (${bad.error.message}); run cairn-verify`);
    },
  });

  const histories = new Map<string, Map<number, TimelineHistoryEntry[]>>();
  for (const [systemId, listing] of catalog.wal) histories.set(systemId, await readHistories(driver, listing, key, signal));
  const systems: SystemRecord[] = [];
  for (const id of catalog.systems) {
    const r = await readSystem(driver, cluster, id, signal);
    if (r) systems.push(r);
  }

  // One listing of the whole cluster for its size; the newest drill result
  // is found on the way (drill ids sort by time, like verify's).
  const usage = emptyUsage();
  let drillKey: string | undefined;
  for await (const obj of driver.list(`${cluster}/`, signal)) {
    tallyObject(usage, cluster, obj.key, obj.size);
    if (obj.key.startsWith(`${cluster}/drills/`) && DRILL_KEY_RE.test(obj.key) && (drillKey === undefined || obj.key > drillKey)) drillKey = obj.key;
  }
  let lastDrill: { id: string; body: unknown } | undefined;
  if (drillKey !== undefined) {
    let body: unknown;
    try {
      body = await readJsonObject<unknown>(driver, drillKey, signal);
    } catch (err) {
      // A damaged drill result must not hide the rest of the report.
      if (!isCairnError(err, 'FORMAT_INVALID')) throw err;
      body = null;
    }
    lastDrill = { id: DRILL_KEY_RE.exec(drillKey)![1]!, body };
  }

  const report = describeRepository(
    catalog,
    {
      usage,
      encrypted: cfg === undefined ? undefined : cfg.cipher !== 'none',
      systems,
      histories,
      lastVerify: await readLatestVerifyResult(driver, cluster, signal).catch((err: unknown) => {
        // A damaged verify result must not hide the rest of the report either.
        if (!isCairnError(err, 'FORMAT_INVALID')) throw err;
        return undefined;
      }),
      lastDrill,
    },
    now,
  );
  return damaged.length > 0 ? { ...report, damaged } : report;
}

/** The exit status for a document: 0, or the first unreadable repository's. */
export function infoExitStatus(doc: InfoDocument): number {
  const first = doc.errors[0];
  if (first === undefined) return doc.repositories.some((r) => (r.damaged?.length ?? 0) > 0) ? EXIT.DATA : EXIT.OK;
  return first.code in ERROR_CODES ? ERROR_CODES[first.code as ErrorCode] : EXIT.CONFIG;
}

// ---- the table ----------------------------------------------------------------

/** `2026-11-21T02:00:10.123Z` → `2026-11-21 02:00:10Z`: what a person scans for. */
function shortTime(iso: string | null): string {
  if (iso === null) return '-';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

function describePoint(p: InfoPoint): string {
  const when = p.timeIsUpperBound ? `at or before ${shortTime(p.time)}` : shortTime(p.time);
  const where = p.timeIsUpperBound ? `end of WAL segment ${p.wal}, LSN ${p.lsn}` : `end of backup ${p.backup}, LSN ${p.lsn}`;
  return `${when}  (${where}, timeline ${p.timeline}${p.timeIsUpperBound ? `, from backup ${p.backup}` : ''})`;
}

/** The report of one repository as aligned text sections. */
export function formatReport(r: InfoReport): string {
  const out: string[] = [];
  const repo = r.repository;
  out.push(`repository ${repo.url}, cluster "${r.cluster}"`);

  out.push('', 'backups');
  if (r.backups.length === 0) out.push('  no backups');
  else {
    out.push(
      formatTable(
        ['ID', 'TYPE', 'PARENT', 'TL', 'START LSN', 'STOP LSN', 'START', 'STOP', 'SIZE', 'STORED', 'RESTORABLE'],
        r.backups.map((b) => [
          b.id, b.type, b.parent ?? '-', String(b.timeline), b.start.lsn, b.stop.lsn,
          shortTime(b.start.time), shortTime(b.stop.time), formatBytes(b.size), formatBytes(b.storedSize), b.restorable ? 'yes' : 'no',
        ]),
      ).trimEnd(),
    );
    for (const b of r.backups) if (b.problem !== null) out.push(`  ${b.id}: ${b.problem}`);
  }

  out.push('', 'dumps');
  if (r.dumps.length === 0) out.push('  no dumps');
  else {
    out.push(
      formatTable(
        ['DATABASE', 'ID', 'FORMAT', 'STOP', 'SIZE', 'STORED'],
        r.dumps.map((d) => [d.database ?? '(globals)', d.id, d.dumpFormat, shortTime(d.stopTime), formatBytes(d.size), formatBytes(d.storedSize)]),
      ).trimEnd(),
    );
  }

  out.push('', 'wal');
  const rows = r.wal.flatMap((s) =>
    s.timelines.map((t) => [s.systemId, String(t.timeline), t.first, t.last, String(t.segments), formatBytes(t.bytes), String(t.gapCount), shortTime(t.newestArchived)]),
  );
  if (rows.length === 0) out.push('  no WAL archived');
  else out.push(formatTable(['SYSTEM', 'TL', 'FIRST', 'LAST', 'SEGMENTS', 'SIZE', 'GAPS', 'NEWEST ARCHIVED'], rows).trimEnd());
  for (const s of r.wal) {
    for (const t of s.timelines) {
      if (t.gapCount === 0) continue;
      const listed = t.gaps.map((g) => (g.segments === 1 ? g.from : `${g.from}…${g.to} (${g.segments})`)).join(', ');
      const more = t.gapCount > t.gaps.length ? `, and ${t.gapCount - t.gaps.length} more` : '';
      out.push(`  timeline ${t.timeline} of system ${s.systemId}: ${plural(t.missingSegments, 'segment')} missing: ${listed}${more}`);
    }
    if (!s.registered) out.push(`  system ${s.systemId} has WAL but is not registered (no systems/${s.systemId}.json)`);
    if (s.foreignObjects > 0) out.push(`  system ${s.systemId}: ${plural(s.foreignObjects, 'object')} under its WAL prefix that cairn did not write`);
  }

  out.push('', 'repository');
  const a = repo.areas;
  out.push(`  size         ${formatBytes(repo.bytes)} in ${plural(repo.objects, 'object')} (backups ${formatBytes(a.backups.bytes)}, wal ${formatBytes(a.wal.bytes)}, dumps ${formatBytes(a.dumps.bytes)}, other ${formatBytes(a.other.bytes)})`);
  out.push(`  encrypted    ${repo.encrypted === null ? '- (no repo.json yet)' : repo.encrypted ? 'yes' : 'no'}`);
  const v = r.lastVerify;
  out.push(`  last verify  ${v === null ? 'never' : `${v.id} ${v.ok ? 'ok' : `FAILED (${plural(v.problems, 'problem')})`}, ${v.scope}, finished ${shortTime(v.time)}`}`);
  const d = r.lastDrill;
  out.push(
    `  last drill   ${d === null ? 'never' : `${d.id} ${d.ok === null ? 'result unknown' : d.ok ? 'ok' : 'FAILED'}` +
      `${d.rtoSeconds === null ? '' : `, RTO ${d.rtoSeconds} s`}${d.dataAgeSeconds === null ? '' : `, data age ${d.dataAgeSeconds} s`}${d.time === null ? '' : `, finished ${shortTime(d.time)}`}`}`,
  );

  out.push('', 'recoverability');
  const rec = r.recoverability;
  if (rec.earliest === null || rec.latest === null) {
    out.push(r.backups.length === 0 ? '  nothing can be restored: no backups' : '  nothing can be restored: no backup is complete with its WAL');
  } else {
    out.push(`  earliest  ${describePoint(rec.earliest)}`);
    out.push(`  latest    ${describePoint(rec.latest)}`);
    if (rec.latestAgeSeconds !== null) out.push(`  the latest point is at least ${rec.latestAgeSeconds} s old`);
  }
  const several = rec.systems.length > 1;
  for (const s of rec.systems) {
    if (several && s.earliest !== null && s.latest !== null) {
      out.push(`  system ${s.systemId}: ${shortTime(s.earliest.time)} … ${shortTime(s.latest.time)}, ${plural(s.restorableBackups, 'restorable backup')}`);
    }
    for (const u of s.unreachable) out.push(`  unreachable: from ${u.from.lsn} (${shortTime(u.from.time)}) to ${u.to.lsn} (${shortTime(u.to.time)}) on system ${s.systemId}: WAL is missing between backups`);
    for (const n of s.notes) out.push(`  ${several ? `system ${s.systemId}: ` : ''}${n}`);
  }
  if (r.damaged !== undefined && r.damaged.length > 0) {
    out.push('', 'damaged (left out above; run cairn-verify)');
    for (const d of r.damaged) out.push(`  ${d.kind} ${d.id}: ${d.message}`);
  }
  return out.join('\n') + '\n';
}
