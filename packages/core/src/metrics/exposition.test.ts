import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatValue, mergeFamilies, parseExposition, renderExposition, type MetricFamily } from './exposition.js';

const fam = (name: string, samples: [Record<string, string>, number][]): MetricFamily => ({
  name, help: `help of ${name}`, type: 'gauge', samples: samples.map(([labels, value]) => ({ labels, value })),
});

test('renderExposition: families by name, samples by labels, label names sorted, empty labels left out', () => {
  const text = renderExposition([
    fam('b_metric', [[{ z: '1', a: 'x' }, 2], [{ a: 'w', z: '' }, 1]]),
    fam('a_metric', [[{}, 0.5]]),
    fam('c_empty', []),
  ]);
  assert.equal(text, [
    '# HELP a_metric help of a_metric',
    '# TYPE a_metric gauge',
    'a_metric 0.5',
    '# HELP b_metric help of b_metric',
    '# TYPE b_metric gauge',
    'b_metric{a="w"} 1',
    'b_metric{a="x",z="1"} 2',
    '',
  ].join('\n'));
  assert.equal(renderExposition([]), '');
});

test('renderExposition escapes label values and help text as the format says', () => {
  const text = renderExposition([{ name: 'm', help: 'a \\ b\nc', type: 'gauge', samples: [{ labels: { db: 'x"y\\z\nw' }, value: 1 }] }]);
  assert.equal(text, '# HELP m a \\\\ b\\nc\n# TYPE m gauge\nm{db="x\\"y\\\\z\\nw"} 1\n');
  assert.deepEqual([...parseExposition(text)], [['m{db="x\\"y\\\\z\\nw"}', 1]]);
});

test('renderExposition refuses what Prometheus would reject: duplicate samples, bad names', () => {
  assert.throws(() => renderExposition([fam('m', [[{ a: '1' }, 1], [{ a: '1' }, 2]])]), /duplicate sample m\{a="1"\}/);
  assert.throws(() => renderExposition([fam('9m', [[{}, 1]])]), /invalid metric name/);
  assert.throws(() => renderExposition([fam('m', [[{ 'a-b': '1' }, 1]])]), /invalid label name/);
});

test('mergeFamilies joins samples of one name from several repositories; a type clash is a bug', () => {
  const merged = mergeFamilies([[fam('m', [[{ repo: 'a' }, 1]])], [fam('m', [[{ repo: 'b' }, 2]])]]);
  assert.deepEqual(merged.map((f) => [f.name, f.samples.length]), [['m', 2]]);
  assert.throws(() => mergeFamilies([[fam('m', [])], [{ ...fam('m', []), type: 'counter' }]]), /declared as gauge and counter/);
});

test('formatValue: Prometheus spellings of the special values', () => {
  assert.deepEqual([NaN, Infinity, -Infinity, 1795228800.25, 0, -0].map(formatValue), ['NaN', '+Inf', '-Inf', '1795228800.25', '0', '0']);
});
