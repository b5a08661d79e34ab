// What may reach stderr (and through wal-get the PostgreSQL log): one line,
// no secrets. URLs lose credentials and the values of query parameters cairn
// does not know; control characters from user input are escaped.

import { S3_URL_PARAMS } from '../storage/s3-params.js';

const SAFE_PARAMS = new Set(S3_URL_PARAMS);

/** Hides `user:password@` and the values of unknown query parameters in every URL in `text`. */
export function redactSecrets(text: string): string {
  return text
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^\s"'<>]*)/gi, (_m, scheme: string, rest: string) => scheme + redactUrlRest(rest))
    // An endpoint given percent-encoded inside another URL: http%3A%2F%2Fuser%3Apw%40host.
    .replace(/(%2F%2F)(?:(?!%2F)[^/?#&\s"'])*?%40/gi, '$1***%40');
}

function redactUrlRest(rest: string): string {
  const q = rest.indexOf('?');
  const authorityEnd = rest.search(/[/?#]/);
  let head = q === -1 ? rest : rest.slice(0, q);
  const at = head.lastIndexOf('@', authorityEnd === -1 ? head.length : authorityEnd);
  if (at !== -1) head = '***' + head.slice(at);
  if (q === -1) return head;
  const query = rest.slice(q + 1).split('&').map((pair) => {
    const eq = pair.indexOf('=');
    if (eq === -1) return pair;
    const name = pair.slice(0, eq);
    // A known parameter's value is shown, minus any credentials of its own (endpoint=http://user:pw@host).
    return SAFE_PARAMS.has(name) ? `${name}=${redactSecrets(pair.slice(eq + 1))}` : `${name}=***`;
  });
  return `${head}?${query.join('&')}`;
}

/** Escapes control characters (newlines, ESC, NUL, …) so a message stays one line. */
export function escapeControl(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => {
    const n = c.charCodeAt(0);
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}

/** A message as it may be printed: secrets redacted, one line. */
export function safeMessage(text: string): string {
  return escapeControl(redactSecrets(text));
}
