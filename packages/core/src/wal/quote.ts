// Quoting untrusted names (argv, file names) for error messages: control
// characters are escaped so a hostile name cannot forge log lines.

const MAX_QUOTED = 200;

/** `"name"` with JSON escapes; long names are cut with an ellipsis. */
export function quote(value: string): string {
  const s = value.length > MAX_QUOTED ? value.slice(0, MAX_QUOTED) + '…' : value;
  return JSON.stringify(s);
}
