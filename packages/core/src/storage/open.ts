// Repository URLs (docs/design.md §7: /abs/path, file:///abs/path, s3://bucket/prefix?…,
// and memory://name for tests) and the driver each one opens. The S3 SDK is
// imported only when an s3:// URL is opened: wal-push/wal-get start once per
// WAL segment and must not pay for it otherwise.

import { realpathSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CairnError } from '../cli/errors.js';
import { redactSecrets } from '../cli/message.js';
import { REMOTE_REQUESTS, type StorageDriver } from './driver.js';
import { FsDriver } from './fs.js';
import { MemoryDriver } from './memory.js';
import type { S3Options } from './s3.js';
import { S3_URL_PARAMS } from './s3-params.js';

export type RepoLocation =
  | { kind: 'fs'; root: string }
  | ({ kind: 's3' } & S3Options)
  | { kind: 'memory'; name: string };

export interface OpenStorageOptions {
  /**
   * Where AWS_REGION / AWS_DEFAULT_REGION are read: the tool context's
   * environment (nothing below a tool's cli.ts reads process.env, docs/style.md).
   */
  env: Record<string, string | undefined>;
}

export const S3_DEFAULTS = {
  region: 'us-east-1',
  connectTimeoutMs: 3_000,
  // Sized for recovery (issue 11): idle time before an answer or between body
  // bytes; a read cut or stalled mid-body resumes where it stopped.
  requestTimeoutMs: 5_000,
  maxAttempts: 3,
  requests: REMOTE_REQUESTS,
} as const;

const URL_HINT = 'use /abs/path, file:///abs/path or s3://bucket/prefix?endpoint=…&region=…';
const CREDENTIALS_HINT =
  'remove them: cairn takes S3 credentials from the AWS default chain ' +
  '(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, web identity/IRSA)';

const S3_PARAMS = new Set(S3_URL_PARAMS);

/** Parses a repository URL; throws CONFIG_INVALID naming what is wrong. */
export function parseRepoUrl(url: string, opts: OpenStorageOptions): RepoLocation {
  const env = opts.env;
  const invalid = (reason: string, hint = URL_HINT) =>
    new CairnError('CONFIG_INVALID', `invalid repository URL "${redactSecrets(url)}": ${reason}`, { hint });

  if (url === '') throw invalid('empty');
  if (url.includes('\0')) throw invalid('contains a NUL byte');
  if (url.startsWith('/')) return { kind: 'fs', root: normalizeRoot(url) };

  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) throw invalid('a relative path; give an absolute one');

  switch (scheme) {
    case 'file': {
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw invalid('not a valid file URL');
      }
      if (!url.toLowerCase().startsWith('file://')) throw invalid('a file URL starts with file:///');
      if (parsed.username !== '' || parsed.password !== '') throw invalid('a file URL takes no user or password');
      if (parsed.search !== '' || parsed.hash !== '') throw invalid('a file URL takes no query or fragment');
      if (parsed.host !== '' && parsed.host !== 'localhost') {
        throw invalid(`host "${parsed.host}" is not this machine; use file:///abs/path`);
      }
      let root: string;
      try {
        root = fileURLToPath(parsed);
      } catch (err) {
        throw invalid((err as Error).message.toLowerCase());
      }
      if (root.includes('\0')) throw invalid('contains a NUL byte');
      return { kind: 'fs', root: normalizeRoot(root) };
    }

    case 's3': {
      const m = /^s3:\/\/([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/i.exec(url);
      if (m === null) throw invalid('not an s3://bucket/prefix URL');
      const [, authority = '', path = '', query = '', fragment] = m;
      if (authority.includes('@')) throw invalid('credentials do not belong in the URL', CREDENTIALS_HINT);
      if (fragment !== undefined) throw invalid('an s3 URL takes no fragment');
      if (authority === '') throw invalid('no bucket name');
      if (!/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/i.test(authority)) {
        throw invalid(`"${authority}" is not a valid bucket name (3-63 letters, digits, '.', '-', '_')`);
      }
      const prefix = parseS3Prefix(path, invalid);

      const params = new Map<string, string>();
      for (const [name, value] of new URLSearchParams(query.slice(1))) {
        if (!S3_PARAMS.has(name)) throw invalid(`unknown parameter "${name}" (known: ${[...S3_PARAMS].join(', ')})`);
        if (params.has(name)) throw invalid(`parameter "${name}" given twice`);
        params.set(name, value);
      }

      const loc: { kind: 's3' } & S3Options = {
        kind: 's3',
        bucket: authority,
        prefix,
        region: S3_DEFAULTS.region,
        forcePathStyle: false,
        connectTimeoutMs: S3_DEFAULTS.connectTimeoutMs,
        requestTimeoutMs: S3_DEFAULTS.requestTimeoutMs,
        maxAttempts: S3_DEFAULTS.maxAttempts,
        conditionalWrites: false,
        requests: S3_DEFAULTS.requests,
      };
      const endpoint = params.get('endpoint');
      if (endpoint !== undefined) loc.endpoint = parseEndpoint(endpoint, invalid);
      const region = params.get('region') ?? nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION);
      if (region !== undefined) {
        if (!/^[a-z0-9][a-z0-9-]*$/i.test(region)) throw invalid(`"${region}" is not a valid region`);
        loc.region = region;
      }
      loc.forcePathStyle = parseBoolean(params, 'force-path-style', false, invalid);
      loc.conditionalWrites = parseBoolean(params, 'conditional-writes', false, invalid);
      loc.connectTimeoutMs = parseInteger(params, 'connect-timeout-ms', loc.connectTimeoutMs, 1, 3_600_000, invalid);
      loc.requestTimeoutMs = parseInteger(params, 'request-timeout-ms', loc.requestTimeoutMs, 1, 86_400_000, invalid);
      loc.maxAttempts = parseInteger(params, 'max-attempts', loc.maxAttempts, 1, 100, invalid);
      loc.requests = parseInteger(params, 'requests', loc.requests ?? S3_DEFAULTS.requests, 1, 256, invalid);
      // Server-side options (issue 18 item 5), sent on every object written.
      const sse = params.get('sse');
      const kmsKeyId = params.get('sse-kms-key-id');
      if (sse !== undefined) {
        if (sse !== 'aws:kms' && sse !== 'AES256') throw invalid(`sse "${sse}" is not aws:kms or AES256`);
        if (kmsKeyId !== undefined && sse !== 'aws:kms') throw invalid('sse-kms-key-id needs sse=aws:kms');
        if (kmsKeyId !== undefined && !/^[A-Za-z0-9:/_.-]{1,2048}$/.test(kmsKeyId)) throw invalid(`sse-kms-key-id "${kmsKeyId}" is not a KMS key id, alias or ARN`);
        loc.sse = { algorithm: sse, ...(kmsKeyId !== undefined ? { kmsKeyId } : {}) };
      } else if (kmsKeyId !== undefined) {
        throw invalid('sse-kms-key-id needs sse=aws:kms');
      }
      const lockMode = params.get('object-lock-mode');
      const lockDays = params.get('object-lock-days');
      if (lockMode !== undefined || lockDays !== undefined) {
        if (lockMode === undefined || lockDays === undefined) throw invalid('object-lock-mode and object-lock-days go together');
        const mode = lockMode.toUpperCase();
        if (mode !== 'GOVERNANCE' && mode !== 'COMPLIANCE') throw invalid(`object-lock-mode "${lockMode}" is not governance or compliance`);
        loc.objectLock = { mode, days: parseInteger(params, 'object-lock-days', 0, 1, 36_500, invalid) };
      }
      return loc;
    }

    case 'memory': {
      const name = /^memory:\/\/([A-Za-z0-9._-]+)$/i.exec(url)?.[1];
      if (name === undefined) throw invalid('use memory://name (letters, digits, ".", "-", "_")');
      return { kind: 'memory', name };
    }

    default:
      throw invalid(`unsupported scheme "${scheme}:"`);
  }
}

/** Opens the driver for a repository URL (the S3 SDK is loaded only for s3://). */
export async function openStorage(url: string, opts: OpenStorageOptions): Promise<StorageDriver> {
  const loc = parseRepoUrl(url, opts);
  switch (loc.kind) {
    case 'fs':
      checkFsRoot(loc.root, url);
      return new FsDriver(loc.root, url);
    case 'memory':
      return new MemoryDriver(loc.name);
    case 's3': {
      const { S3Driver } = await import('./s3.js');
      const { kind: _kind, ...s3 } = loc;
      return new S3Driver(s3, { url });
    }
  }
}

type Invalid = (reason: string, hint?: string) => CairnError;

/** Kernel file systems: reading them never ends (/proc/kcore) or means nothing. */
const PSEUDO_ROOTS = ['/proc', '/sys', '/dev'];

/**
 * A file repository's root must be a directory on a real file system. A
 * missing root is fine here (the first push creates it); a regular file or
 * /proc/… is refused at once (issue 11: info exited 0, /proc spun).
 */
function checkFsRoot(root: string, url: string): void {
  let real = root;
  try {
    real = realpathSync(root);
  } catch { /* missing: checked below */ }
  const bad = (reason: string) =>
    new CairnError('CONFIG_INVALID', `repository "${redactSecrets(url)}" ${reason}`, { hint: 'give --repo the directory that holds (or will hold) the repository' });
  if (PSEUDO_ROOTS.some((p) => real === p || real.startsWith(p + '/'))) throw bad(`is on the kernel's ${real.split('/')[1]} file system`);
  let st;
  try {
    st = statSync(real);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new CairnError('STORAGE_UNAVAILABLE', `repository "${redactSecrets(url)}": cannot stat "${root}": ${code ?? String(err)}`, { hint: 'check the path and that this user may use it' });
  }
  if (!st.isDirectory()) throw bad(`is ${st.isFile() ? 'a regular file' : 'a special file'}, not a directory`);
}

function normalizeRoot(path: string): string {
  const normalized = posix.normalize(path);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

function parseS3Prefix(path: string, invalid: Invalid): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    throw invalid('bad percent-encoding in the prefix');
  }
  const prefix = decoded.replace(/^\//, '').replace(/\/$/, '');
  if (prefix === '') return '';
  if (
    prefix.includes('\\') ||
    prefix.includes('\0') ||
    prefix.split('/').some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw invalid(`prefix "${prefix}" has an empty, "." or ".." segment or a backslash`);
  }
  return prefix;
}

function parseEndpoint(value: string, invalid: Invalid): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw invalid(`endpoint "${redactSecrets(value)}" is not a URL (use http://host:port)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw invalid(`endpoint "${redactSecrets(value)}" is not http:// or https://`);
  }
  if (u.username !== '' || u.password !== '') throw invalid('credentials do not belong in the URL', CREDENTIALS_HINT);
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') {
    throw invalid(`endpoint "${redactSecrets(value)}" must be just http(s)://host[:port]`);
  }
  return `${u.protocol}//${u.host}`;
}

function parseBoolean(params: Map<string, string>, name: string, dflt: boolean, invalid: Invalid): boolean {
  const v = params.get(name);
  if (v === undefined) return dflt;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw invalid(`parameter "${name}" must be true or false, not "${v}"`);
}

function parseInteger(
  params: Map<string, string>,
  name: string,
  dflt: number,
  min: number,
  max: number,
  invalid: Invalid,
): number {
  const v = params.get(name);
  if (v === undefined) return dflt;
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw invalid(`parameter "${name}" must be a whole number from ${min} to ${max}, not "${v}"`);
  }
  return n;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}
