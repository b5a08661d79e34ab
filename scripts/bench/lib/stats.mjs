// Small statistics and formatting helpers for the bench report.

/** Median (mean of the two middle values for an even count). */
export function median(xs) {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs, p) {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

export function summarize(xs) {
  return {
    n: xs.length,
    median: round(median(xs), 1),
    p90: round(percentile(xs, 90), 1),
    min: round(Math.min(...xs), 1),
    max: round(Math.max(...xs), 1),
    runs: xs.map((x) => round(x, 1)),
  };
}

export function round(x, digits = 1) {
  if (x === undefined || x === null || Number.isNaN(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export const mb = (bytes) => round(bytes / 1e6, 1);

/** A plain-text table: rows of cells, first row the header; numbers right-aligned. */
export function table(rows, indent = '  ') {
  const widths = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, String(c ?? '').length)));
  return rows
    .map((r, ri) =>
      indent +
      r
        .map((c, i) => {
          const s = String(c ?? '');
          const numeric = ri > 0 && i > 0 && /^[\d.,]+( [a-zA-Z/%]+)?$|^[-–—]$/.test(s);
          return numeric ? s.padStart(widths[i]) : s.padEnd(widths[i]);
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** The last lines of a report: the problems (if any, one entry each, continuation lines indented) and the total time. */
export function reportTail({ problems, totalSeconds }) {
  const L = [];
  if (problems.length > 0) {
    L.push('');
    L.push(`problems (${problems.length}):`);
    for (const p of problems) L.push('  - ' + p.replaceAll('\n', '\n    '));
  }
  L.push('');
  L.push(`total ${totalSeconds} s`);
  return L;
}
