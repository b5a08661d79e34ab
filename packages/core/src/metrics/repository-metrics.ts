// What cairn-prom-export exposes about one repository, computed without I/O
// from the info report (core/info/report.ts): the newest backup of each type,
// the newest dump of each database, the last verify and drill, sizes, the WAL
// archive per system and timeline, the recoverability window, and the live
// reader leases of restores and drills in progress. Every
// sample carries `cluster` and `repo` (the URL without credentials). The
// names are an interface (alert rules, dashboards): documented in the README,
// only ever added to.

import type { InfoReport } from '../info/report.js';
import type { MetricFamily, Sample } from './exposition.js';

export interface RepositoryLabels {
  cluster: string;
  /** The repository URL as the storage driver names it (no credentials). */
  repo: string;
}

/** Every metric name prom-export can emit, with its help text (the README's table lists the same). */
export const METRIC_HELP = {
  cairn_exporter_scrape_success: 'Whether the repository could be read (1) or not (0; the error is on stderr).',
  cairn_exporter_scrape_duration_seconds: 'Seconds reading the repository took.',
  cairn_backups: 'Backups in the repository, by type.',
  cairn_backups_unrestorable: 'Backups whose chain or WAL from start to stop is incomplete, by type.',
  cairn_backup_last_success_timestamp_seconds: 'Stop time of the newest backup of the type (Unix seconds).',
  cairn_backup_last_duration_seconds: 'Wall time of the newest backup of the type.',
  cairn_backup_last_size_bytes: 'Restored size of the newest backup of the type.',
  cairn_backup_last_stored_bytes: 'Bytes the newest backup of the type stored itself.',
  cairn_dumps: 'Logical dumps in the repository, by database (the globals dump has no database label).',
  cairn_dump_last_success_timestamp_seconds: 'Stop time of the newest dump of the database (Unix seconds).',
  cairn_dump_last_duration_seconds: 'Wall time of the newest dump of the database.',
  cairn_dump_last_size_bytes: 'Plaintext size of the newest dump of the database.',
  cairn_dump_last_stored_bytes: 'Stored size of the newest dump of the database.',
  cairn_verify_last_timestamp_seconds: 'When the last cairn-verify run finished (Unix seconds); 0 when verify never ran.',
  cairn_verify_last_success: 'Whether the last cairn-verify run found no problem (1) or some (0).',
  cairn_verify_last_problems: 'Problems the last cairn-verify run found.',
  cairn_verify_last_duration_seconds: 'Wall time of the last cairn-verify run.',
  cairn_drill_last_timestamp_seconds: 'When the last cairn-drill finished (Unix seconds); 0 when no drill ran.',
  cairn_drill_last_success: 'Whether the last cairn-drill succeeded (1) or failed or left an unreadable result (0).',
  cairn_drill_last_rto_seconds: 'Seconds the last drill took from start to a database answering queries (recovery time).',
  cairn_drill_last_data_age_seconds: 'Age of the newest data the last drill restored, when it finished.',
  cairn_drill_last_duration_seconds: 'Wall time of the last drill as a whole (restore, recovery and checks).',
  cairn_repository_size_bytes: 'Stored bytes under the cluster, by area (backups, dumps, wal, other).',
  cairn_repository_objects: 'Stored objects under the cluster, by area.',
  cairn_repository_encrypted: 'Whether the cluster is encrypted (from repo.json; absent before the first write).',
  cairn_repository_damaged_manifests: 'Backups and dumps left out because their manifest cannot be read.',
  cairn_wal_last_archived_timestamp_seconds: 'When the newest WAL segment of the timeline was stored (Unix seconds).',
  cairn_wal_last_segment_info: 'The highest WAL segment archived on the timeline (value always 1).',
  cairn_wal_segments: 'WAL segments archived on the timeline.',
  cairn_wal_size_bytes: 'Stored bytes of the WAL segments of the timeline.',
  cairn_wal_gaps: 'Stretches of missing segments between the first and last archived segment of the timeline.',
  cairn_wal_missing_segments: 'Segments missing between the first and last archived segment of the timeline.',
  cairn_recoverable: 'Whether some point can be restored (1) or nothing (0).',
  cairn_recoverability_earliest_timestamp_seconds: 'The earliest point a restore reaches (Unix seconds).',
  cairn_recoverability_latest_timestamp_seconds: 'The latest point a restore reaches (Unix seconds; an upper bound: when its last WAL segment was stored).',
  cairn_recoverability_window_seconds: 'Seconds between the earliest and the latest point a restore reaches.',
  cairn_recoverability_unreachable_ranges: 'Stretches between earliest and latest that no restore reaches (WAL missing between backups).',
  cairn_reader_leases: 'Live reader leases: restores and drills in progress, whose backups, dumps and WAL cairn-expire keeps.',
  cairn_reader_lease_expiry_timestamp_seconds: 'When a live reader lease lapses unless its reader renews it (Unix seconds), by lease id, purpose, host and backup.',
} as const;

export type MetricName = keyof typeof METRIC_HELP;

const seconds = (iso: string): number => Date.parse(iso) / 1000;

/** Collects samples by family; every family is a gauge (counts can go down: expire deletes). */
class FamilySet {
  private readonly byName = new Map<MetricName, Sample[]>();
  constructor(private readonly base: RepositoryLabels) {}

  add(name: MetricName, value: number, labels: Record<string, string> = {}): void {
    let list = this.byName.get(name);
    if (list === undefined) this.byName.set(name, (list = []));
    list.push({ labels: { cluster: this.base.cluster, repo: this.base.repo, ...labels }, value });
  }

  families(): MetricFamily[] {
    return [...this.byName].map(([name, samples]) => ({ name, help: METRIC_HELP[name], type: 'gauge', samples }));
  }
}

/** The newest of `items` by `key` (ISO times compare as text only within one format: parse). */
function newestBy<T>(items: readonly T[], time: (t: T) => string): T | undefined {
  let best: T | undefined;
  for (const t of items) if (best === undefined || Date.parse(time(t)) >= Date.parse(time(best))) best = t;
  return best;
}

/**
 * The metrics of one repository's report. `scrapeSeconds` is how long reading
 * it took (measured by the caller's clock). Counts of backups are given for
 * every type, 0 included, so "no backup at all" is a sample an alert can see.
 */
export function repositoryMetrics(report: InfoReport, labels: RepositoryLabels, scrapeSeconds: number): MetricFamily[] {
  const m = new FamilySet(labels);
  m.add('cairn_exporter_scrape_success', 1);
  m.add('cairn_exporter_scrape_duration_seconds', scrapeSeconds);

  for (const type of ['full', 'diff', 'incr'] as const) {
    const all = report.backups.filter((b) => b.type === type);
    m.add('cairn_backups', all.length, { type });
    m.add('cairn_backups_unrestorable', all.filter((b) => !b.restorable).length, { type });
    const last = newestBy(all, (b) => b.stop.time);
    if (last === undefined) continue;
    m.add('cairn_backup_last_success_timestamp_seconds', seconds(last.stop.time), { type });
    m.add('cairn_backup_last_duration_seconds', last.durationSeconds, { type });
    m.add('cairn_backup_last_size_bytes', last.size, { type });
    m.add('cairn_backup_last_stored_bytes', last.storedSize, { type });
  }

  const byDatabase = new Map<string, typeof report.dumps>();
  for (const d of report.dumps) {
    // The globals dump gets an empty database label, which the exposition
    // leaves out: no database name can collide with it.
    const k = d.database ?? '';
    byDatabase.set(k, [...(byDatabase.get(k) ?? []), d]);
  }
  for (const [database, dumps] of byDatabase) {
    const l = { database };
    m.add('cairn_dumps', dumps.length, l);
    const last = newestBy(dumps, (d) => d.stopTime)!;
    m.add('cairn_dump_last_success_timestamp_seconds', seconds(last.stopTime), l);
    m.add('cairn_dump_last_duration_seconds', last.durationSeconds, l);
    m.add('cairn_dump_last_size_bytes', last.size, l);
    m.add('cairn_dump_last_stored_bytes', last.storedSize, l);
  }

  // Never verified / never drilled is time 0, so "older than N days" fires
  // for a repository nobody checks, as it should.
  const v = report.lastVerify;
  m.add('cairn_verify_last_timestamp_seconds', v === null ? 0 : seconds(v.time));
  if (v !== null) {
    m.add('cairn_verify_last_success', v.ok ? 1 : 0);
    m.add('cairn_verify_last_problems', v.problems);
    m.add('cairn_verify_last_duration_seconds', v.durationSeconds);
  }
  const d = report.lastDrill;
  const drillTime = d === null ? 0 : d.time !== null && !Number.isNaN(Date.parse(d.time)) ? seconds(d.time) : drillIdSeconds(d.id);
  m.add('cairn_drill_last_timestamp_seconds', drillTime);
  if (d !== null) {
    // An unreadable result counts as failed: nobody can tell it worked.
    m.add('cairn_drill_last_success', d.ok === true ? 1 : 0);
    if (d.rtoSeconds !== null) m.add('cairn_drill_last_rto_seconds', d.rtoSeconds);
    if (d.dataAgeSeconds !== null) m.add('cairn_drill_last_data_age_seconds', d.dataAgeSeconds);
    if (d.durationSeconds !== null) m.add('cairn_drill_last_duration_seconds', d.durationSeconds);
  }

  const repo = report.repository;
  for (const area of ['backups', 'dumps', 'wal', 'other'] as const) {
    m.add('cairn_repository_size_bytes', repo.areas[area].bytes, { area });
    m.add('cairn_repository_objects', repo.areas[area].objects, { area });
  }
  if (repo.encrypted !== null) m.add('cairn_repository_encrypted', repo.encrypted ? 1 : 0);
  m.add('cairn_repository_damaged_manifests', report.damaged?.length ?? 0);

  for (const s of report.wal) {
    for (const t of s.timelines) {
      const l = { system_id: s.systemId, timeline: String(t.timeline) };
      m.add('cairn_wal_last_archived_timestamp_seconds', seconds(t.newestArchived), l);
      m.add('cairn_wal_last_segment_info', 1, { ...l, segment: t.last });
      m.add('cairn_wal_segments', t.segments, l);
      m.add('cairn_wal_size_bytes', t.bytes, l);
      m.add('cairn_wal_gaps', t.gapCount, l);
      m.add('cairn_wal_missing_segments', t.missingSegments, l);
    }
  }

  const rec = report.recoverability;
  m.add('cairn_recoverable', rec.earliest !== null && rec.latest !== null ? 1 : 0);
  if (rec.earliest !== null && rec.latest !== null) {
    m.add('cairn_recoverability_earliest_timestamp_seconds', seconds(rec.earliest.time));
    m.add('cairn_recoverability_latest_timestamp_seconds', seconds(rec.latest.time));
    // Both ends are millisecond times: a difference in milliseconds has no float noise.
    m.add('cairn_recoverability_window_seconds', (Date.parse(rec.latest.time) - Date.parse(rec.earliest.time)) / 1000);
  }
  m.add('cairn_recoverability_unreachable_ranges', rec.systems.reduce((n, s) => n + s.unreachable.length, 0));

  // Lapsed leases protect nothing: only live ones are samples. A lease id is
  // unique, so each gives one series, gone when the lease lapses.
  const live = report.readers.filter((r) => r.live);
  m.add('cairn_reader_leases', live.length);
  for (const r of live) {
    m.add('cairn_reader_lease_expiry_timestamp_seconds', seconds(r.expiresAt), { lease: r.id, purpose: r.purpose, host: r.host, backup: r.backup ?? '' });
  }
  return m.families();
}

/** The metrics of a repository that could not be read: scrape_success 0 and nothing that would look like data. */
export function unreadableRepositoryMetrics(labels: RepositoryLabels, scrapeSeconds: number): MetricFamily[] {
  const m = new FamilySet(labels);
  m.add('cairn_exporter_scrape_success', 0);
  m.add('cairn_exporter_scrape_duration_seconds', scrapeSeconds);
  return m.families();
}

/** A drill id is its UTC start as `YYYYMMDD-HHMMSS…` (ids sort by time); 0 when it is not one. */
function drillIdSeconds(id: string): number {
  const x = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})/.exec(id);
  return x ? Date.UTC(+x[1]!, +x[2]! - 1, +x[3]!, +x[4]!, +x[5]!, +x[6]!) / 1000 : 0;
}
