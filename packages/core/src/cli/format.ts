// Human-readable output shared by the tools: byte counts and aligned text
// tables (cairn-info's sections, basebackup's summary line).

/** Bytes in SI units, as du -h --si and most dashboards show them: "4.2 MB". */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

/**
 * Rows as columns separated by two spaces, each as wide as its widest cell,
 * every line prefixed by `indent`. Trailing spaces are trimmed so the output
 * diffs cleanly.
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], indent = '  '): string {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  return all.map((r) => indent + r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n') + '\n';
}
