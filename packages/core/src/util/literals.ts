// Values written into text another program parses: a postgresql.conf
// setting, a /bin/sh word (restore_command, pg_ctl -o).

/** A postgresql.conf string literal. */
export function confString(v: string): string {
  return `'${v.replaceAll("'", "''")}'`;
}

/** A word for /bin/sh: as it is when it holds nothing the shell reads, else single-quoted. */
export function shellWord(v: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(v) ? v : `'${v.replaceAll("'", "'\\''")}'`;
}
