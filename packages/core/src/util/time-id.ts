// The UTC timestamp every cairn id starts with (backups, dumps, verify runs,
// drills): `20261121-020000`, to the second, so ids sort by time.

export function utcStamp(t: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${t.getUTCFullYear()}${p(t.getUTCMonth() + 1)}${p(t.getUTCDate())}-${p(t.getUTCHours())}${p(t.getUTCMinutes())}${p(t.getUTCSeconds())}`;
}
