import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeRepository, emptyUsage, type InfoExtras } from '../info/report.js';
import type { RepoCatalog } from '../repo/catalog.js';
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
