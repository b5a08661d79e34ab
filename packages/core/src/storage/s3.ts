// The S3 driver (AWS S3 and compatible servers). Loaded only for s3:// URLs
// (open.ts imports it lazily): the SDK costs ~100 ms of start-up, paid per WAL
// segment otherwise. Objects appear whole: one PUT or a completed multipart upload.

import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable, addAbortSignal } from 'node:stream';
import { CairnError } from '../cli/errors.js';
import { sleep } from '../util/limit.js';
import {
  ObjectNotFoundError,
  WriteConflictError,
  assertValidKey,
  assertValidPrefix,
  compareKeys,
  type DriverFeatures,
  type ObjectInfo,
  type StorageDriver,
  type WriteOptions,
  consumeBody,
  REMOTE_REQUESTS,
  shortRange,
} from './driver.js';

export interface S3Options {
  bucket: string;
  /** Key prefix inside the bucket: '' or 'a/b' (no leading or trailing '/'). */
  prefix: string;
  /** http(s)://host:port of an S3-compatible server; AWS when absent. */
  endpoint?: string;
  region: string;
  /** bucket in the path (http://host/bucket/key) instead of the host name. */
  forcePathStyle: boolean;
  /** Longest wait for a TCP connection. */
  connectTimeoutMs: number;
  /** Longest silence on an open connection (waiting for an answer or the next body bytes). */
  requestTimeoutMs: number;
  /**
   * Attempts per request, retries of transient errors included (the SDK's
   * maxAttempts); also the resumptions of a read cut off mid-body in a row.
   */
  maxAttempts: number;
  /**
   * Once requests have failed for this long without one success, errors are
   * no longer transient, so callers' retry loops stop too. Default: twice
   * requestTimeoutMs.
   */
  retryWindowMs?: number;
  /** The server honours `If-None-Match: *` (AWS S3 since 2024; not s3rver), so ifAbsent is atomic. */
  conditionalWrites: boolean;
  /** Requests for small objects kept in flight (features.requests); default REMOTE_REQUESTS. */
  requests?: number;
  /** Server-side encryption asked for on every object written (PutObject, CreateMultipartUpload): `sse=aws:kms|AES256`. */
  sse?: { algorithm: 'aws:kms' | 'AES256'; kmsKeyId?: string };
  /** Object Lock retention set on every object written: `object-lock-mode=governance|compliance&object-lock-days=N`. */
  objectLock?: { mode: 'GOVERNANCE' | 'COMPLIANCE'; days: number };
}

export interface S3DriverInit {
  /** What messages show; default s3://bucket/prefix. Must hold no credentials. */
  url?: string;
  /** A client to use instead of building one (tests that fake the server). */
  client?: S3Client;
}

const DENIED_CODES = new Set([
  'AccessDenied',
  'AllAccessDisabled',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'AccountProblem',
]);

const THROTTLE_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'RequestTimeoutException',
]);

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** Ranged re-reads of one object at most, whatever progress each makes. */
const MAX_RESUMES = 100;

const CREDENTIALS_HINT =
  'check the credentials cairn finds through the AWS default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ' +
  'AWS_PROFILE and ~/.aws, web identity/IRSA) and that they allow s3:GetObject, s3:PutObject, s3:DeleteObject ' +
  'and s3:ListBucket on the bucket';

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

export class S3Driver implements StorageDriver {
  readonly url: string;
  features: DriverFeatures;
  private readonly client: S3Client;
  private readonly bucket: string;
  /** '' or 'prefix/': what every stored key starts with. */
  private readonly base: string;
  private readonly opts: S3Options;
  private bucketChecked = false;
  private closed = false;
  /** When the first request of the current run of failures started; undefined after a success. */
  private failingSince: number | undefined;
  private readonly retryWindowMs: number;

  constructor(opts: S3Options, init: S3DriverInit = {}) {
    this.opts = opts;
    this.bucket = opts.bucket;
    this.base = opts.prefix === '' ? '' : opts.prefix + '/';
    this.url = init.url ?? `s3://${opts.bucket}/${opts.prefix}`;
    const requests = opts.requests ?? REMOTE_REQUESTS;
    this.features = { atomicIfAbsent: opts.conditionalWrites, requests };
    // Sockets: the SDK's 50 by default, more when more requests are to be
    // in flight (a request past the limit would queue unseen).
    const agent = { keepAlive: true, maxSockets: Math.max(50, requests + 16) };
    this.retryWindowMs = opts.retryWindowMs ?? 2 * opts.requestTimeoutMs;
    this.client =
      init.client ??
      new S3Client({
        region: opts.region,
        ...(opts.endpoint === undefined ? {} : { endpoint: opts.endpoint }),
        forcePathStyle: opts.forcePathStyle,
        maxAttempts: opts.maxAttempts,
        // A wrong region answers 301 on AWS; follow it instead of failing.
        followRegionRedirects: true,
        // Passed as options, the SDK builds its NodeHttpHandler from them.
        // socketTimeout is the idle timeout that also covers a body stalling
        // mid-stream; the handler's requestTimeout only logs a warning unless
        // told to throw, and would cap a slow but moving upload.
        requestHandler: {
          connectionTimeout: opts.connectTimeoutMs,
          socketTimeout: opts.requestTimeoutMs,
          httpAgent: agent,
          httpsAgent: agent,
        },
      });
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined> {
    const Key = this.keyOf(key);
    // A HEAD has no body, so a missing bucket also answers a bare 404. Tell
    // the two apart once: "not found" must never stand for "misconfigured"
    // (wal-get's exit 1 ends recovery, docs/design.md §4.4). The first stat
    // asks alongside its HEAD rather than after it: one round trip, not two,
    // on the way of every tool's first look. Its answer counts only on a 404.
    const bucket = this.bucketChecked ? undefined : this.checkBucket(`stat "${key}"`, signal);
    bucket?.catch(() => {});
    try {
      const r = await this.send((c) => c.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal }));
      return { key, size: r.ContentLength ?? 0, mtime: r.LastModified ?? new Date(0) };
    } catch (err) {
      if (!isNotFound(err)) throw this.fail(err, `stat "${key}"`);
    }
    await (bucket ?? this.checkBucket(`stat "${key}"`, signal));
    return undefined;
  }

  async read(key: string, signal?: AbortSignal): Promise<Readable> {
    const first = await this.getObject(key, 0, undefined, signal);
    const out = Readable.from(this.resumableBody(key, first, signal), { objectMode: false });
    // Destroying `out` before its first read never starts the generator;
    // release the connection from here too.
    out.once('close', () => first.body.destroy());
    return signal ? addAbortSignal(signal, out) : out;
  }

  /** One ranged GET, resumed as read() is when the body is cut off or stalls. */
  async readRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    if (length === 0) {
      if ((await this.stat(key, signal)) === undefined) throw new ObjectNotFoundError(key, this.url);
      return Buffer.alloc(0);
    }
    const last = offset + length - 1;
    const first = await this.getObject(key, offset, undefined, signal, last);
    const out = Buffer.alloc(length);
    let got = 0;
    // Only the range is kept: s3rver answers "bytes=0-0" with the whole object.
    for await (const chunk of this.resumableBody(key, first, signal, offset, last)) {
      got += chunk.copy(out, got, 0, Math.min(chunk.length, length - got));
      if (got === length) break;
    }
    // A shorter object answers the bytes it has.
    if (got < length) throw shortRange(this.url, key, offset, length, offset + got);
    return out;
  }

  /**
   * One GET, from byte `from` on (a ranged re-read) up to byte `last` if
   * given, and only of the same object version when `etag` is given.
   */
  private async getObject(key: string, from: number, etag: string | undefined, signal?: AbortSignal, last?: number): Promise<GotObject> {
    const Key = this.keyOf(key);
    const range = from > 0 || last !== undefined ? `bytes=${from}-${last ?? ''}` : undefined;
    const ranged = range !== undefined ? { Range: range, ...(etag === undefined ? {} : { IfMatch: etag }) } : {};
    try {
      const r = await this.send((c) => c.send(new GetObjectCommand({ Bucket: this.bucket, Key, ...ranged }), { abortSignal: signal }));
      const body = r.Body as Readable;
      if (range !== undefined && !(r.ContentRange ?? '').startsWith(`bytes ${from}-`)) {
        body.destroy();
        throw new CairnError('STORAGE_UNAVAILABLE', `repository "${this.url}": cannot read "${key}": the server ignored the range "${range}"`, {
          hint: 'use an S3 server that honours Range requests',
        });
      }
      return { body, length: r.ContentLength, etag: r.ETag };
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(key, this.url);
      // 412: the object changed under the read (never for what cairn writes once).
      if (from > 0 && isConditionFailed(err)) {
        throw new CairnError('STORAGE_UNAVAILABLE', `repository "${this.url}": cannot read "${key}": the object changed while it was read`, { cause: err });
      }
      // 416: a range that starts past the end.
      if (last !== undefined && (err as SdkError).$metadata?.httpStatusCode === 416) {
        throw shortRange(this.url, key, from, last - from + 1, (await this.stat(key, signal))?.size ?? 0);
      }
      throw this.fail(err, `read "${key}"`);
    }
  }

  /**
   * The object's bytes; a body cut off or stalled mid-transfer is a
   * transient error like any other, so it is resumed with a ranged GET from
   * the first byte not yet passed on (issue 11: on a flaky link a large
   * restore must still finish). Bounded: maxAttempts failures in a row
   * without a byte of progress, MAX_RESUMES in all, and the retry window.
   */
  private async *resumableBody(key: string, first: GotObject, signal?: AbortSignal, start = 0, last?: number): AsyncGenerator<Buffer> {
    const total = first.length;
    let cur = first;
    let received = 0;
    let failures = 0;
    let resumes = 0;
    for (;;) {
      const before = received;
      try {
        for await (const chunk of cur.body) {
          received += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        // Node already errors on a connection closed before Content-Length;
        // this makes "never ends early silently" hold whatever the HTTP layer does.
        if (total !== undefined && received !== total) {
          throw new CairnError('STORAGE_UNAVAILABLE', `repository "${this.url}": cannot read "${key}": the body ended after ${received} of ${total} bytes`, {
            transient: received < total,
          });
        }
        return;
      } catch (err) {
        cur.body.destroy();
        if (signal?.aborted) throw signal.reason;
        const e = this.fail(err, `read "${key}"`);
        failures = received > before ? 1 : failures + 1;
        // A link that gains a few bytes per attempt must not go on for ever.
        resumes++;
        if (!(e instanceof CairnError) || !e.transient || failures >= this.opts.maxAttempts || resumes > MAX_RESUMES || total === undefined) throw e;
        await sleep(Math.min(100 * 2 ** (failures - 1), 2_000), signal);
        cur = await this.getObject(key, start + received, first.etag, signal, last);
      }
    }
  }

  /**
   * What every object written carries (issue 18 item 5): server-side
   * encryption, and an Object Lock retention counted from now. S3 requires a
   * checksum on a PUT with a retention: CRC32 is asked for, the SDK computes it.
   */
  private writeParams(): Record<string, unknown> {
    const o = this.opts;
    return {
      ...(o.sse ? { ServerSideEncryption: o.sse.algorithm, ...(o.sse.kmsKeyId !== undefined ? { SSEKMSKeyId: o.sse.kmsKeyId } : {}) } : {}),
      ...(o.objectLock
        ? { ObjectLockMode: o.objectLock.mode, ObjectLockRetainUntilDate: new Date(Date.now() + o.objectLock.days * 86_400_000), ChecksumAlgorithm: 'CRC32' }
        : {}),
    };
  }

  async probeConditionalWrite(key: string, body: Buffer, signal?: AbortSignal): Promise<boolean> {
    if (this.features.atomicIfAbsent) return true;
    const input = { Bucket: this.bucket, Key: this.keyOf(key), Body: body, ContentLength: body.length, IfNoneMatch: '*', ...this.writeParams() };
    try {
      await this.send((c) => c.send(new PutObjectCommand(input), { abortSignal: signal }));
      return false;
    } catch (err) {
      if (!isConditionFailed(err)) return false;
      this.features = { ...this.features, atomicIfAbsent: true };
      return true;
    }
  }

  async write(key: string, body: Readable | Buffer, opts: WriteOptions = {}): Promise<void> {
    const Key = this.keyOf(key);
    await consumeBody(body, () => this.writeObject(Key, key, body, opts));
  }

  private async writeObject(Key: string, key: string, body: Readable | Buffer, opts: WriteOptions): Promise<void> {
    const { signal } = opts;
    signal?.throwIfAborted();
    // Where the server is known to honour If-None-Match (below), it alone
    // decides; otherwise a HEAD looks first, unless the caller just did.
    const look = opts.ifAbsent && !this.features.atomicIfAbsent && !opts.lookedFirst;
    if (look && (await this.stat(key, signal)) !== undefined) throw new WriteConflictError(key, this.url);
    // Sent as well as the HEAD above: where the server honours it, it closes
    // the race between HEAD and PUT (412); s3rver ignores it.
    const conditional = opts.ifAbsent ? { IfNoneMatch: '*' } : {};
    if (Buffer.isBuffer(body)) {
      try {
        const input = { Bucket: this.bucket, Key, Body: body, ContentLength: body.length, ...conditional, ...this.writeParams() };
        await this.send((c) => c.send(new PutObjectCommand(input), { abortSignal: signal }));
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (isConditionFailed(err)) throw new WriteConflictError(key, this.url);
        throw this.fail(err, `write "${key}"`);
      }
      return;
    }
    // Never PutObject a stream: the SDK sends it aws-chunked, which some
    // servers store verbatim (docs/gotchas.md §s3rver). Upload sends buffered parts:
    // one PUT below 5 MiB, a multipart upload above, completed only at the end.
    let bodyError: unknown;
    const onBodyError = (err: unknown) => {
      bodyError ??= err;
    };
    body.on('error', onBodyError);
    const upload = new Upload({
      client: this.client,
      // Upload sends these on its PutObject or CreateMultipartUpload.
      params: { Bucket: this.bucket, Key, Body: body, ...conditional, ...this.writeParams() },
      // We abort the upload ourselves: Upload's own abort replaces the real
      // error with Abort's when that fails (s3rver lacks AbortMultipartUpload).
      leavePartsOnError: true,
    });
    const onAbort = () => void upload.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const started = Date.now();
    try {
      await upload.done();
      this.failingSince = undefined;
    } catch (err) {
      this.failingSince ??= started;
      if (upload.uploadId !== undefined) this.abortUpload(Key, upload.uploadId);
      if (signal?.aborted) throw signal.reason;
      // The caller's stream failed: its error, not a storage one.
      if (bodyError !== undefined) throw bodyError;
      if (isConditionFailed(err)) throw new WriteConflictError(key, this.url);
      throw this.fail(err, `write "${key}"`);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      body.off('error', onBodyError);
    }
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    const full = this.base + prefix;
    let token: string | undefined;
    do {
      let page;
      try {
        const input = {
          Bucket: this.bucket,
          ...(full === '' ? {} : { Prefix: full }),
          ...(token === undefined ? {} : { ContinuationToken: token }),
        };
        page = await this.send((c) => c.send(new ListObjectsV2Command(input), { abortSignal: signal }));
      } catch (err) {
        throw this.fail(err, `list "${prefix}"`);
      }
      const items: ObjectInfo[] = [];
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(full)) continue;
        const key = o.Key.slice(this.base.length);
        // Skip what cairn cannot have written, e.g. the console's "folder/" markers.
        if (!isValidKey(key)) continue;
        items.push({ key, size: o.Size ?? 0, mtime: o.LastModified ?? new Date(0) });
      }
      // S3 pages are sorted already; s3rver returns directory-walk order
      // ('a/x' before 'a-x'), so sort within the page.
      items.sort((a, b) => compareKeys(a.key, b.key));
      yield* items;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async remove(key: string, signal?: AbortSignal): Promise<void> {
    const Key = this.keyOf(key);
    try {
      await this.send((c) => c.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw this.fail(err, `remove "${key}"`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
  }

  /** Every request goes through here: it keeps the retry window's clock. */
  private async send<T>(request: (client: S3Client) => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      const r = await request(this.client);
      this.failingSince = undefined;
      return r;
    } catch (err) {
      this.failingSince ??= started;
      throw err;
    }
  }

  /**
   * Whether a transient error may still be retried: not once requests have
   * failed for the whole retry window, so that retry loops above the driver
   * (wal-get's, a caller's) stop in seconds against a stalled endpoint
   * instead of multiplying the SDK's attempts (503 s before, issue 11).
   */
  private retryable(): boolean {
    return this.failingSince === undefined || Date.now() - this.failingSince < this.retryWindowMs;
  }

  private keyOf(key: string): string {
    assertValidKey(key);
    return this.base + key;
  }

  private async checkBucket(what: string, signal?: AbortSignal): Promise<void> {
    if (this.bucketChecked) return;
    try {
      const input = { Bucket: this.bucket, MaxKeys: 1, ...(this.base === '' ? {} : { Prefix: this.base }) };
      await this.send((c) => c.send(new ListObjectsV2Command(input), { abortSignal: signal }));
    } catch (err) {
      const e = err as SdkError;
      // Without s3:ListBucket a HEAD of a missing key answers 403, not 404;
      // so a 404 plus a denied listing still means "no such key".
      if (e.name !== 'AccessDenied' && e.$metadata?.httpStatusCode !== 403) throw this.fail(err, what);
    }
    this.bucketChecked = true;
  }

  /**
   * Best effort, not awaited: a server that just failed may stall this too,
   * and parts left behind are invisible and cost only storage (a lifecycle
   * rule with AbortIncompleteMultipartUpload reaps them).
   */
  private abortUpload(Key: string, UploadId: string): void {
    this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId })).catch(() => {});
  }

  /** Maps SDK and network errors to storage errors; anything else (a bug, an abort) passes unchanged. */
  private fail(err: unknown, what: string): unknown {
    if (err instanceof CairnError || typeof err !== 'object' || err === null) return err;
    const e = err as SdkError;
    if (e.name === 'AbortError') return err;
    const where = `repository "${this.url}": cannot ${what}`;
    const status = e.$metadata?.httpStatusCode;
    // A HEAD answer has no body to name the error: the SDK says "Unknown".
    const named = e.name !== undefined && !/^Unknown(Error)?$/.test(e.name);
    const name = named ? e.name! : `HTTP ${status ?? '?'}`;
    const answer = status === undefined ? name : named ? `${status} (${name})` : `${status}`;
    if (name === 'NoSuchBucket') {
      return new CairnError('CONFIG_INVALID', `${where}: bucket "${this.bucket}" does not exist`, {
        hint: 'create the bucket, or correct the bucket name (and endpoint, region) in the repository URL',
        cause: err,
      });
    }
    if (name === 'CredentialsProviderError') {
      return new CairnError('STORAGE_DENIED', `${where}: no S3 credentials found`, { hint: CREDENTIALS_HINT, cause: err });
    }
    if (name === 'RequestTimeTooSkewed') {
      return new CairnError('STORAGE_DENIED', `${where}: this host's clock is too far from the server's (${name})`, {
        hint: 'synchronise the clock of this host (NTP)',
        cause: err,
      });
    }
    if (DENIED_CODES.has(name) || status === 403) {
      return new CairnError('STORAGE_DENIED', `${where}: access denied (${name})`, { hint: CREDENTIALS_HINT, cause: err });
    }
    const network = describeNetworkError(e, this.opts);
    if (network !== undefined) {
      return new CairnError('STORAGE_UNAVAILABLE', `${where}: ${network}`, {
        transient: this.retryable(),
        hint: `check that ${this.opts.endpoint ?? 'S3'} is reachable from this host; transient errors are retried`,
        cause: err,
      });
    }
    if (THROTTLE_CODES.has(name) || status === 429 || (status !== undefined && status >= 500)) {
      return new CairnError('STORAGE_UNAVAILABLE', `${where}: server answered ${answer}`, {
        transient: this.retryable(),
        hint: 'the storage service is failing or throttling; transient errors are retried',
        cause: err,
      });
    }
    if (status !== undefined) {
      return new CairnError('STORAGE_UNAVAILABLE', `${where}: server answered ${answer}${named && e.message ? `: ${trimMessage(e.message)}` : ''}`, {
        cause: err,
      });
    }
    return err;
  }
}

interface GotObject {
  body: Readable;
  /** Content-Length of this response (of the rest, for a ranged one). */
  length: number | undefined;
  etag: string | undefined;
}

function describeNetworkError(e: SdkError, opts: S3Options): string | undefined {
  const message = trimMessage(e.message);
  if (e.name === 'TimeoutError' && /establish a connection/.test(message)) {
    return `no connection within ${opts.connectTimeoutMs} ms`;
  }
  // The SDK renames ECONNRESET and EPIPE to TimeoutError too: the code tells.
  if (e.code !== undefined && e.code !== 'ETIMEDOUT' && NETWORK_CODES.has(e.code)) {
    return `network error (${e.code}): ${message}`;
  }
  if (e.name === 'TimeoutError' || e.code === 'ETIMEDOUT') return `no answer within ${opts.requestTimeoutMs} ms`;
  if (/socket hang up|^aborted$|premature close/i.test(message)) return `network error: ${message}`;
  return undefined;
}

function isNotFound(err: unknown): boolean {
  const e = err as SdkError;
  if (e?.name === 'NoSuchBucket') return false;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

function isConditionFailed(err: unknown): boolean {
  const e = err as SdkError;
  const status = e?.$metadata?.httpStatusCode;
  // 409 ConditionalRequestConflict: another conditional write to the key is in flight.
  return status === 412 || e?.name === 'PreconditionFailed' || e?.name === 'ConditionalRequestConflict';
}

function isValidKey(key: string): boolean {
  try {
    assertValidKey(key);
    return true;
  } catch {
    return false;
  }
}

function trimMessage(s: string | undefined): string {
  return (s ?? '').trim().replace(/\.$/, '');
}
