import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeRepository, emptyUsage, type InfoExtras } from '../info/report.js';
import type { RepoCatalog } from '../repo/catalog.js';
import { READER_LEASE_FORMAT, type ReaderLease } from '../repo/reader-lease.js';
import { parseExposition, renderExposition } from './exposition.js';
import { METRIC_HELP, repositoryMetrics, unreadableRepositoryMetrics } from './repository-metrics.js';

const NOW = new Date('2026-11-22T00:00:00Z');
const LABELS = { cluster: 'main', repo: '/srv/backup' };
const EMPTY: RepoCatalog = { cluster: 'main', repo: '/srv/backup', backups: [], dumps: [], systems: [], wal: new Map() };

function metricsOf(extras: Partial<InfoExtras> = {}): Map<string, number> {
  const report = describeRepository(EMPTY, { usage: emptyUsage(), encrypted: undefined, systems: [], histories: new Map(), lastVerify: undefined, lastDrill: undefined, ...extras }, NOW);
  return parseExposition(renderExposition(repositoryMetrics(report, LABELS, 1.5)));
}

const L = 'cluster="main",repo="/srv/backup"';

test('an empty repository: counts of 0 for every backup type, never verified or drilled (time 0), nothing recoverable', () => {
  const m = metricsOf();
  assert.deepEqual(
    [...m].filter(([k]) => !k.startsWith('cairn_repository_')),
    [
      [`cairn_backups{${L},type="diff"}`, 0], [`cairn_backups{${L},type="full"}`, 0], [`cairn_backups{${L},type="incr"}`, 0],
      [`cairn_backups_unrestorable{${L},type="diff"}`, 0], [`cairn_backups_unrestorable{${L},type="full"}`, 0], [`cairn_backups_unrestorable{${L},type="incr"}`, 0],
      [`cairn_drill_last_timestamp_seconds{${L}}`, 0],
      [`cairn_exporter_scrape_duration_seconds{${L}}`, 1.5],
      [`cairn_exporter_scrape_success{${L}}`, 1],
      [`cairn_reader_leases{${L}}`, 0],
      [`cairn_recoverability_unreachable_ranges{${L}}`, 0],
      [`cairn_recoverable{${L}}`, 0],
      [`cairn_verify_last_timestamp_seconds{${L}}`, 0],
    ],
  );
  assert.equal(m.get(`cairn_repository_encrypted{${L}}`), undefined, 'no repo.json: unknown, not 0');
});

test('a damaged drill result counts as failed, its time taken from its id', () => {
  const m = metricsOf({ lastDrill: { id: '20261121-210000', body: null } });
  assert.equal(m.get(`cairn_drill_last_success{${L}}`), 0);
  assert.equal(m.get(`cairn_drill_last_timestamp_seconds{${L}}`), Date.UTC(2026, 10, 21, 21) / 1000);
  assert.equal(m.get(`cairn_drill_last_rto_seconds{${L}}`), undefined);
  const failed = metricsOf({ lastDrill: { id: '20261121-210000', body: { ok: false, rtoSeconds: 12, stop: { time: '2026-11-21T21:01:00Z' } } } });
  assert.equal(failed.get(`cairn_drill_last_success{${L}}`), 0);
  assert.equal(failed.get(`cairn_drill_last_rto_seconds{${L}}`), 12);
  assert.equal(failed.get(`cairn_drill_last_timestamp_seconds{${L}}`), Date.UTC(2026, 10, 21, 21, 1) / 1000);
});

test('reader leases: the live ones counted, each with its expiry; lapsed ones are no sample', () => {
  const lease = (id: string, expiresAt: string, backup: string | null): ReaderLease => ({
    format: READER_LEASE_FORMAT, id, purpose: backup === null ? 'drill' : 'restore', tool: 'cairn-restore', host: 'db1', pid: 7, pgdata: null, systemId: '1',
    walSegmentSize: 16 * 1024 * 1024, backup, chain: backup === null ? [] : [backup], dumps: backup === null ? ['app/20261121-030000L'] : [], wal: [],
    target: null, lifetimeSeconds: 3600, createdAt: '2026-11-21T23:00:00.000Z', renewedAt: '2026-11-21T23:00:00.000Z', expiresAt,
  });
  const m = metricsOf({ readers: { leases: [
    lease('20261121-230000-00000001', '2026-11-22T00:30:00.000Z', '20261121-010000F'),
    lease('20261121-230000-00000002', '2026-11-22T00:00:00.000Z', '20261121-010000F'),
    lease('20261121-230000-00000003', '2026-11-22T01:00:00.500Z', null),
  ], unreadable: [{ key: 'main/readers/x', problem: 'not a reader lease name' }] } });
  assert.deepEqual([...m].filter(([k]) => k.startsWith('cairn_reader_')), [
    ['cairn_reader_lease_expiry_timestamp_seconds{backup="20261121-010000F",cluster="main",host="db1",lease="20261121-230000-00000001",purpose="restore",repo="/srv/backup"}', Date.parse('2026-11-22T00:30:00Z') / 1000],
    ['cairn_reader_lease_expiry_timestamp_seconds{cluster="main",host="db1",lease="20261121-230000-00000003",purpose="drill",repo="/srv/backup"}', Date.parse('2026-11-22T01:00:00.5Z') / 1000],
    [`cairn_reader_leases{${L}}`, 2],
  ]);
});

test('an unreadable repository: scrape_success 0 and nothing that looks like data', () => {
  const m = parseExposition(renderExposition(unreadableRepositoryMetrics(LABELS, 0.25)));
  assert.deepEqual([...m], [[`cairn_exporter_scrape_duration_seconds{${L}}`, 0.25], [`cairn_exporter_scrape_success{${L}}`, 0]]);
});

test('metric names follow the conventions: cairn_ prefix, units as suffixes, no _total on gauges', () => {
  for (const name of Object.keys(METRIC_HELP)) {
    assert.match(name, /^cairn_[a-z_]+$/);
    assert.doesNotMatch(name, /_total$/, `${name} is a gauge`);
    if (/_(timestamp|age|duration|rto|window)(_|$)/.test(name)) assert.match(name, /_seconds$/, name);
  }
});
