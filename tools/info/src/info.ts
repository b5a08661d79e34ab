// cairn-info as a function: read each repository (core/info/read: catalog,
// history files, one listing of the cluster for sizes, the last verify and
// drill result, reader leases, described by core/info/report) and render the
// report for a person.

import { formatBytes, formatTable } from '@cairn/core/cli/format';
import type { InfoPoint } from '@cairn/core/info/recoverability';
import type { InfoReport } from '@cairn/core/info/report';

export { infoExitStatus, readInfoDocument as info, readInfoReport, type InfoOptions } from '@cairn/core/info/read';

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
      `${d.rtoSeconds === null ? '' : `, RTO ${d.rtoSeconds} s`}${d.dataAgeSeconds === null ? '' : `, data age ${d.dataAgeSeconds} s`}` +
      `${d.durationSeconds === null ? '' : `, took ${d.durationSeconds} s`}${d.time === null ? '' : `, finished ${shortTime(d.time)}`}`}`,
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
  // Shown only when there are some: a repository no restore or drill reads reads as before.
  if (r.readers.length > 0 || r.readersUnreadable.length > 0) {
    out.push('', 'reader leases (cairn-expire keeps what a live one needs)');
    const live = r.readers.filter((x) => x.live);
    for (const x of live) out.push(`  ${x.description}, expires ${shortTime(x.expiresAt)}`);
    if (live.length === 0) out.push('  none live');
    const lapsed = r.readers.length - live.length;
    if (lapsed > 0) out.push(`  ${plural(lapsed, 'lapsed lease')} (protecting nothing; cairn-expire removes them once lapsed longer than its --debris-grace)`);
    for (const u of r.readersUnreadable) out.push(`  unreadable ${u.key}: ${u.problem} (protects nothing; remove it by hand once no restore uses it)`);
  }
  if (r.damaged !== undefined && r.damaged.length > 0) {
    out.push('', 'damaged (left out above; run cairn-verify)');
    for (const d of r.damaged) out.push(`  ${d.kind} ${d.id}: ${d.message}`);
  }
  return out.join('\n') + '\n';
}
