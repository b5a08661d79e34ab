// The alerting rules shipped in k8s/prometheus: the plain rules file and the
// PrometheusRule hold the same groups; every rule is complete; every metric an
// expression reads is one cairn-prom-export emits; the thresholds are the
// documented ones. (promtool is not installable here; the structure checks stand in for it.)

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { repoRoot } from '@cairn/testkit/paths';
import { METRIC_HELP } from '@cairn/core/metrics/repository-metrics';

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Group {
  name: string;
  rules: Rule[];
}

const dir = join(repoRoot(), 'k8s', 'prometheus');
const rulesPath = join(dir, 'cairn.rules.yml');

async function load(): Promise<{ plain: { groups: Group[] }; cr: { apiVersion: string; kind: string; metadata: { name: string }; spec: { groups: Group[] } } }> {
  return {
    plain: parse(await readFile(rulesPath, 'utf8')) as { groups: Group[] },
    cr: parse(await readFile(join(dir, 'prometheusrule.yaml'), 'utf8')) as never,
  };
}

// PromQL words and the label names the rules group by; anything else that
// looks like a name must be a cairn metric.
const PROMQL_WORDS = new Set(['sum', 'max', 'min', 'avg', 'count', 'by', 'without', 'on', 'ignoring', 'and', 'or', 'unless', 'offset', 'time', 'bool', 'cluster', 'repo', 'type', 'database', 'system_id', 'timeline', 'area']);

/** Names an expression reads as metrics (durations like `1d` and string literals dropped). */
function metricNames(expr: string): string[] {
  const stripped = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\b\d+(?:\.\d+)?(?:ms|[smhdwy])?\b/g, ' ');
  return [...stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((x) => x[0]).filter((w) => !PROMQL_WORDS.has(w));
}

describe('alert rules (k8s/prometheus)', () => {
  it('the PrometheusRule holds exactly the groups of the plain rules file', async () => {
    const { plain, cr } = await load();
    assert.equal(cr.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(cr.kind, 'PrometheusRule');
    assert.equal(cr.metadata.name, 'cairn');
    assert.deepEqual(cr.spec.groups, plain.groups);
  });

  it('every rule is complete and reads only metrics cairn-prom-export emits', async () => {
    const { plain } = await load();
    const rules = plain.groups.flatMap((g) => g.rules);
    assert.deepEqual(new Set(rules.map((r) => r.alert)).size, rules.length, 'alert names are unique');
    for (const r of rules) {
      assert.match(r.alert, /^Cairn[A-Z][A-Za-z]+$/);
      assert.match(r.for ?? '', /^\d+[smh]$/, `${r.alert}: a for: duration`);
      assert.ok(['critical', 'warning'].includes(r.labels?.['severity'] ?? ''), `${r.alert}: severity`);
      assert.ok(r.annotations?.['summary'] && r.annotations['description'], `${r.alert}: summary and description`);
      const names = metricNames(r.expr);
      assert.ok(names.length > 0, `${r.alert} reads a metric`);
      for (const n of names) assert.ok(n in METRIC_HELP, `${r.alert} reads "${n}", which cairn-prom-export does not emit`);
    }
  });

  it('the thresholds are the documented ones', async () => {
    const { plain } = await load();
    const expr = (alert: string) => plain.groups.flatMap((g) => g.rules).find((r) => r.alert === alert)?.expr;
    assert.match(expr('CairnBackupTooOld')!, /cairn_backup_last_success_timestamp_seconds\) > 25 \* 3600$/);
    assert.match(expr('CairnWalArchivingStalled')!, /cairn_wal_last_archived_timestamp_seconds\) > 2 \* 60$/);
    assert.match(expr('CairnDrillFailed')!, /^cairn_drill_last_success == 0$/);
    assert.match(expr('CairnDrillTooOld')!, /cairn_drill_last_timestamp_seconds > 35 \* 86400$/);
    assert.match(expr('CairnVerifyProblems')!, /cairn_verify_last_success == 0 or cairn_verify_last_problems > 0/);
    assert.match(expr('CairnVerifyTooOld')!, /cairn_verify_last_timestamp_seconds > 8 \* 86400$/);
    assert.match(expr('CairnRepositoryGrowth')!, /> 1\.2 \* sum by \(cluster, repo\) \(cairn_repository_size_bytes offset 1d\)$/);
  });

  it('metricNames finds what an expression reads (the check above can fail)', () => {
    assert.deepEqual(metricNames('time() - max by (cluster, repo) (cairn_backup_last_success_timestamp_seconds) > 25 * 3600'), ['cairn_backup_last_success_timestamp_seconds']);
    assert.deepEqual(metricNames('rate(node_cpu_seconds_total{mode="idle"}[5m]) offset 1d'), ['rate', 'node_cpu_seconds_total', 'mode']);
  });
});
