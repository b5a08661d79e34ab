// Every config-file key some cairn tool reads. One file serves all tools, so
// a key only another tool uses (push-ahead read by basebackup) is fine; a key
// no tool knows is a typo and an error (issue 11: `encryption-keyfile` was
// ignored and the repository created unencrypted). packages/cli's
// known-keys.test.ts keeps this list equal to the tools' settings.

export const KNOWN_CONFIG_KEYS: readonly string[] = [
  'all', 'amcheck', 'archive-timeout', 'cache-seconds', 'check-db', 'check-sql', 'checkpoint', 'checksum-delta',
  'cluster', 'compress', 'concurrency', 'config', 'config-dir', 'db-user', 'dbname', 'debris-grace', 'delta', 'dry-run',
  'encryption-key-command', 'encryption-key-file', 'errors-as-not-found', 'exclude-table', 'force', 'from-tar', 'jobs', 'json',
  'keep-daily', 'keep-diff', 'keep-dumps', 'keep-dumps-daily', 'keep-dumps-monthly', 'keep-dumps-weekly',
  'keep-dumps-within', 'keep-dumps-yearly', 'keep-full', 'keep-monthly', 'keep-weekly', 'keep-within', 'keep-yearly',
  'label', 'lease-lifetime', 'listen', 'lock-wait', 'log-level', 'page-level', 'pg-bin', 'pgdata', 'plan', 'prefetch', 'prefetch-concurrency',
  'push-ahead', 'register-system', 'remote', 'repo', 'repo-only', 'restore-command', 'retries', 'run-as', 'schema',
  'scratch-dir', 'set', 'spool-dir', 'system-id', 'table', 'tablespace-map', 'target', 'target-action',
  'target-exclusive', 'target-lsn', 'target-name', 'target-time', 'target-timeline', 'target-xid', 'textfile',
  'timeout', 'tmp-dir', 'type', 'wal-gap-grace',
];

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** The known key closest to `key`, if one is close enough to be a typo of it. */
export function nearestKey(key: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(key, k);
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  // A third of the word may differ (a dropped dash, a swapped letter) or the
  // key is a prefix/extension of a known one (`keep-full-count`).
  const close = bestD <= Math.max(2, Math.floor(key.length / 3));
  return best !== undefined && (close || best.startsWith(key) || key.startsWith(best)) ? best : undefined;
}
