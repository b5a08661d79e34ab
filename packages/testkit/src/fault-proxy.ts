// An HTTP proxy on 127.0.0.1 that stands in front of the S3 server and fails
// on command (5xx, stalls, dropped connections, refused connections, a fraction
// of response bodies cut at random), so tests
// can prove storage errors are classified and bounded. The mode is read per
// request, so it also applies to the SDK's kept-alive connections. It can
// also hold every request back for a fixed time, as a far-away store does
// (`delay`), and counts how many requests were in flight at once.
// With `writeOnce` it is a write-once store (issue 18 item 6): it refuses,
// and records, every write over an object that exists and every delete but
// those the test allows, so a test proves no tool rewrites what it stored.

import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { onCleanup } from './cleanup.js';

export type FaultMode = 'pass' | 'error500' | 'error503' | 'stall' | 'stall-writes' | 'drop' | 'stall-body' | 'refuse';

export interface FaultProxy {
  /** http://127.0.0.1:<port>: use it as the S3 endpoint. */
  endpoint: string;
  port: number;
  /**
   * pass: forward. error500/error503: answer every request with that status
   * and an S3 XML error (InternalError/SlowDown), forwarding nothing. stall:
   * accept and never answer. stall-writes: reads (GET, HEAD) pass, writes
   * (PUT, POST, DELETE) are taken in and never answered, as an upload hung
   * midway. drop: forward, then cut the connection halfway
   * through the response body (before any byte when there is no body).
   * stall-body: forward, then go silent halfway through the response body,
   * keeping the connection open.
   * refuse: stop listening, so connections are refused; any other mode
   * listens again on the same port (from the next tick on).
   */
  setMode(mode: FaultMode): void;
  readonly mode: FaultMode;
  /**
   * In 'pass' mode, cut this fraction (0–1) of the responses that have a
   * body, at a random point in the body (the connection is dropped there).
   */
  cutBodies(fraction: number): void;
  /** Responses cut by cutBodies so far. */
  readonly cutResponses: number;
  /** Requests received so far (in every mode but refuse). */
  readonly requests: number;
  /** Write requests held unanswered by 'stall-writes' so far. */
  readonly stalledWrites: number;
  /**
   * Holds every request back this long before it is forwarded or answered:
   * a round trip to a store in another region (0: none, the default).
   */
  delay(ms: number): void;
  /**
   * Honour `If-None-Match: *` on PutObject and CompleteMultipartUpload as
   * AWS S3, R2 and MinIO do (s3rver ignores it): such a write to a key that
   * exists is answered 412, atomically with other conditional writes through
   * this proxy. Off by default (s3rver's behaviour).
   */
  honourIfNoneMatch(on: boolean): void;
  /** The most requests in flight at once (received, not yet answered) since the start or resetMaxInFlight(). */
  readonly maxInFlight: number;
  resetMaxInFlight(): void;
  /**
   * Starts (or stops, with false) recording every request: when it came in
   * and was answered (Date.now()), method, path and status.
   * Starting again clears what was recorded.
   */
  trace(on: boolean): void;
  readonly traced: readonly TracedRequest[];
  /**
   * Write-once storage, as S3 Object Lock asks of the tools (undefined: off,
   * the default). A PUT, a server-side copy or the completion of a multipart
   * upload onto a key that exists, and a DELETE of an object (a batch delete
   * always), are answered 403 AccessDenied and recorded in `refused` —
   * except on keys `mutable` allows (leases: renewed and released) and
   * deletes `deletable` allows (what a running cairn-expire may remove). A
   * write with `If-None-Match: *` onto an existing key is answered 412, as
   * the store would: the writer asked for no overwrite. Keys are as stored,
   * the bucket left out (`pg/main/wal/…`).
   */
  writeOnce(rules: WriteOnceRules | undefined): void;
  readonly refused: readonly RefusedRequest[];
  stop(): Promise<void>;
}

export interface WriteOnceRules {
  mutable: (key: string) => boolean;
  deletable?: (key: string) => boolean;
}

export interface RefusedRequest {
  method: string;
  key: string;
  why: 'overwrite' | 'delete';
}

export interface TracedRequest {
  /** When the request came in and when its response ended: ms since the epoch (Date.now()). */
  start: number;
  end?: number;
  method: string;
  /** The path and query, as sent. */
  url: string;
  status?: number;
}

const ERRORS = {
  error500: { status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.' },
  error503: { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' },
} as const;

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  let mode: FaultMode = 'pass';
  let requests = 0;
  let stalledWrites = 0;
  let cutFraction = 0;
  let cutResponses = 0;
  let delayMs = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let stopped = false;
  let ifNoneMatch = false;
  let tracing: TracedRequest[] | undefined;
  let worm: WriteOnceRules | undefined;
  const refused: RefusedRequest[] = [];
  /** Conditional writes in progress, per object path: one at a time. */
  const conditional = new Map<string, Promise<void>>();
  const sockets = new Set<Socket>();
  const server = createServer();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('request', (req, res) => {
    requests++;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let done = false;
    const settle = () => {
      if (!done) {
        done = true;
        inFlight--;
      }
    };
    res.on('close', settle);
    if (tracing) {
      const entry: TracedRequest = { start: Date.now(), method: req.method ?? '', url: req.url ?? '' };
      tracing.push(entry);
      res.on('close', () => {
        entry.end = Date.now();
        entry.status = res.statusCode;
      });
    }
    if (delayMs > 0) setTimeout(() => handle(req, res), delayMs);
    else handle(req, res);
  });

  function handle(req: IncomingMessage, res: ServerResponse): void {
    switch (mode) {
      case 'pass':
        if (worm !== undefined && refuseDelete(req, res, worm)) return;
        if ((ifNoneMatch && isConditionalWrite(req)) || (worm !== undefined && isWholeWrite(req) && !worm.mutable(keyOf(req)))) conditionalWrite(req, res);
        else forward(req, res, 'pass');
        return;
      case 'drop':
      case 'stall-body':
        forward(req, res, mode);
        return;
      case 'error500':
      case 'error503':
        answerError(req, res, ERRORS[mode]);
        return;
      case 'stall':
        req.resume(); // take the body, never answer
        return;
      case 'stall-writes':
        if (req.method === 'GET' || req.method === 'HEAD') {
          forward(req, res, 'pass');
        } else {
          stalledWrites++;
          req.resume();
        }
        return;
      case 'refuse':
        // Raced the close: behave as if the connection had been refused.
        req.socket.destroy();
        return;
    }
  }

  function forward(req: IncomingMessage, res: ServerResponse, mode: 'pass' | 'drop' | 'stall-body'): void {
    let how: 'pass' | 'drop' | 'stall-body' = mode;
    let cutAt = 0; // where cutBodies cuts, as a fraction of the body
    if (how === 'pass' && cutFraction > 0 && req.method !== 'HEAD' && Math.random() < cutFraction) {
      how = 'drop';
      cutAt = Math.random();
    }
    const headers = { ...req.headers };
    // We already answered "100 Continue" to the client (Node does by default);
    // the Host header stays as sent, since SigV4 signs it.
    delete headers.expect;
    const upstream = request(
      { host: target.host, port: target.port, method: req.method, path: req.url, headers, agent: false },
      (ures) => {
        if (how === 'pass') {
          res.writeHead(ures.statusCode ?? 502, ures.statusMessage, ures.rawHeaders);
          ures.pipe(res);
          return;
        }
        const length = Number(ures.headers['content-length'] ?? 0);
        if (mode === 'pass' && length < 2) {
          // Nothing to cut in the middle of: pass it on whole.
          res.writeHead(ures.statusCode ?? 502, ures.statusMessage, ures.rawHeaders);
          ures.pipe(res);
          return;
        }
        if (mode === 'pass') cutResponses++;
        const limit =
          req.method === 'HEAD' ? 0 : mode === 'pass' ? Math.max(1, Math.min(length - 1, Math.floor(length * cutAt))) : Math.floor(length / 2);
        if (limit === 0) {
          ures.destroy();
          // Nothing to send half of: hang up (or fall silent) before the status line.
          if (how === 'drop') res.socket?.destroy();
          return;
        }
        res.writeHead(ures.statusCode ?? 502, ures.statusMessage, ures.rawHeaders);
        let sent = 0;
        ures.on('data', (chunk: Buffer) => {
          if (sent >= limit) return;
          const part = chunk.subarray(0, limit - sent);
          sent += part.length;
          const last = sent >= limit;
          res.write(part, () => {
            if (last && how === 'drop') res.socket?.destroy();
          });
          if (last) ures.destroy();
        });
      },
    );
    upstream.on('error', () => res.socket?.destroy());
    req.pipe(upstream);
  }

  /** A PUT of a whole object (or a server-side copy) or the completion of a multipart upload. */
  function isWholeWrite(req: IncomingMessage): boolean {
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    return (req.method === 'PUT' && !query.has('partNumber')) || (req.method === 'POST' && query.has('uploadId'));
  }

  /** A whole-object write with If-None-Match: *. */
  function isConditionalWrite(req: IncomingMessage): boolean {
    return req.headers['if-none-match'] === '*' && isWholeWrite(req);
  }

  /** The object key of a path-style request: the path after the bucket. */
  function keyOf(req: IncomingMessage): string {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    return decodeURIComponent(path.replace(/^\/[^/]*\/?/, ''));
  }

  /** Write-once: answers (and records) a DELETE the rules do not allow; true when it did. */
  function refuseDelete(req: IncomingMessage, res: ServerResponse, rules: WriteOnceRules): boolean {
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    const batch = req.method === 'POST' && query.has('delete');
    // Aborting a multipart upload (DELETE ?uploadId) removes no object.
    if (!batch && (req.method !== 'DELETE' || query.has('uploadId'))) return false;
    const key = batch ? '(DeleteObjects)' : keyOf(req);
    if (!batch && (rules.mutable(key) || rules.deletable?.(key) === true)) return false;
    refused.push({ method: req.method ?? '', key, why: 'delete' });
    answerError(req, res, { status: 403, code: 'AccessDenied', message: 'Access Denied: write-once storage (test double) refuses this delete' });
    return true;
  }

  /**
   * Answers 412 when the object exists (HEAD upstream) and the write asked
   * If-None-Match: *; 403, recorded, when it exists and the store is
   * write-once; else forwards. One at a time per object.
   */
  function conditionalWrite(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const before = conditional.get(path) ?? Promise.resolve();
    const mine = before.then(
      () =>
        new Promise<void>((resolve) => {
          const head = request({ host: target.host, port: target.port, method: 'HEAD', path, agent: false }, (hres) => {
            hres.resume();
            if (hres.statusCode === 200 && req.headers['if-none-match'] !== '*' && worm !== undefined) {
              refused.push({ method: req.method ?? '', key: keyOf(req), why: 'overwrite' });
              answerError(req, res, { status: 403, code: 'AccessDenied', message: 'Access Denied: write-once storage (test double) refuses this overwrite' });
              res.on('close', () => resolve());
              return;
            }
            if (hres.statusCode === 200) {
              answerError(req, res, { status: 412, code: 'PreconditionFailed', message: 'At least one of the pre-conditions you specified did not hold' });
              res.on('close', () => resolve());
              return;
            }
            res.on('close', () => resolve());
            forward(req, res, 'pass');
          });
          head.on('error', () => {
            res.socket?.destroy();
            resolve();
          });
          head.end();
        }),
    );
    conditional.set(path, mine);
    void mine.then(() => {
      if (conditional.get(path) === mine) conditional.delete(path);
    });
  }

  function answerError(req: IncomingMessage, res: ServerResponse, e: { status: number; code: string; message: string }): void {
    const body =
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
      `<Error><Code>${e.code}</Code><Message>${e.message}</Message><RequestId>cairn-fault-proxy</RequestId></Error>`;
    const reply = () => {
      res.writeHead(e.status, {
        'content-type': 'application/xml',
        'content-length': Buffer.byteLength(body),
        'x-amz-request-id': 'cairn-fault-proxy',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    // Read the whole request first, as S3 does, so the client is not cut off mid-upload.
    req.on('end', reply);
    req.resume();
  }

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });

  let traced: TracedRequest[] = [];
  let port = 0;
  await listen();
  port = (server.address() as { port: number }).port;

  const dropConnections = () => {
    for (const s of sockets) s.destroy();
  };

  // A re-listen after 'refuse' that stop must wait for, or it would outlive stop.
  let relisten: Promise<void> = Promise.resolve();

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    unregister();
    await relisten;
    dropConnections();
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  const unregister = onCleanup(() => {
    // Synchronous part first, so it also happens on 'exit'.
    dropConnections();
    if (server.listening) server.close();
  });

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    get mode() {
      return mode;
    },
    get requests() {
      return requests;
    },
    get stalledWrites() {
      return stalledWrites;
    },
    get cutResponses() {
      return cutResponses;
    },
    cutBodies(fraction: number) {
      cutFraction = fraction;
    },
    delay(ms: number) {
      delayMs = ms;
    },
    honourIfNoneMatch(on: boolean) {
      ifNoneMatch = on;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    resetMaxInFlight() {
      maxInFlight = inFlight;
    },
    trace(on: boolean) {
      tracing = on ? [] : undefined;
      traced = tracing ?? traced;
    },
    get traced() {
      return traced;
    },
    writeOnce(rules: WriteOnceRules | undefined) {
      worm = rules;
    },
    get refused() {
      return refused;
    },
    setMode(next: FaultMode) {
      if (stopped) throw new Error('fault proxy is stopped');
      const previous = mode;
      mode = next;
      if (next === 'refuse' && previous !== 'refuse') {
        server.close();
        dropConnections();
      } else if (next !== 'refuse' && previous === 'refuse') {
        relisten = listen().catch((err: unknown) => {
          if (stopped) return;
          throw new Error(`fault proxy cannot listen on port ${port} again: ${(err as Error).message}`);
        });
      }
    },
    stop,
  };
}
