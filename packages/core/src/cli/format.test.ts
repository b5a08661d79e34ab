import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatTable } from './format.js';

test('formatBytes: SI units, one decimal below 100', () => {
  const cases: [number, string][] = [[0, '0 B'], [999, '999 B'], [1000, '1.0 kB'], [23_040_000, '23.0 MB'], [123_456_789, '123 MB'], [5e15, '5.0 PB']];
  for (const [n, s] of cases) assert.equal(formatBytes(n), s, String(n));
});

test('formatTable: columns as wide as their widest cell, no trailing spaces', () => {
  assert.equal(formatTable(['ID', 'TYPE', 'PARENT'], [['a', 'full', '-'], ['bbbb', 'incr', 'a']]), '  ID    TYPE  PARENT\n  a     full  -\n  bbbb  incr  a\n');
});
