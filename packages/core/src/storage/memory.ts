// An in-memory driver with the same contract as fs and s3: the fast test
// double for repository, expire and restore-plan logic. `memory://name` URLs
// share one process-wide store per name, so two opens see the same objects.

import { Readable, addAbortSignal } from 'node:stream';
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
  LOCAL_REQUESTS,
  shortRange,
} from './driver.js';

interface StoredObject {
  data: Buffer;
  mtime: Date;
}

type Store = Map<string, StoredObject>;

const namedStores = new Map<string, Store>();
let anonymousCount = 0;

/** Forgets the objects of `memory://name`, or of every named store (between tests). */
export function clearMemoryStores(name?: string): void {
  if (name === undefined) namedStores.clear();
  else namedStores.delete(name);
}

export class MemoryDriver implements StorageDriver {
  readonly url: string;
  readonly features: DriverFeatures = { atomicIfAbsent: true, requests: LOCAL_REQUESTS };
  private readonly objects: Store;

  /** With a name: the shared store of `memory://name`; without: a private one. */
  constructor(name?: string) {
    if (name === undefined) {
      this.objects = new Map();
      this.url = `memory://anonymous-${++anonymousCount}`;
    } else {
      let store = namedStores.get(name);
      if (store === undefined) namedStores.set(name, (store = new Map()));
      this.objects = store;
      this.url = `memory://${name}`;
    }
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    signal?.throwIfAborted();
    const obj = this.objects.get(key);
    return obj && { key, size: obj.data.length, mtime: obj.mtime };
  }

  async readRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    assertValidKey(key);
    signal?.throwIfAborted();
    const obj = this.objects.get(key);
    if (obj === undefined) throw new ObjectNotFoundError(key, this.url);
    if (offset + length > obj.data.length) throw shortRange(this.url, key, offset, length, obj.data.length);
    return Buffer.from(obj.data.subarray(offset, offset + length));
  }

  async read(key: string, signal?: AbortSignal): Promise<Readable> {
    assertValidKey(key);
    signal?.throwIfAborted();
    const obj = this.objects.get(key);
    if (obj === undefined) throw new ObjectNotFoundError(key, this.url);
    // A copy: a consumer that scribbles on its chunks must not change the store.
    const data = Buffer.from(obj.data);
    const out = Readable.from(data.length > 0 ? [data] : [], { objectMode: false });
    return signal ? addAbortSignal(signal, out) : out;
  }

  async write(key: string, body: Readable | Buffer, opts: WriteOptions = {}): Promise<void> {
    assertValidKey(key);
    const { signal } = opts;
    signal?.throwIfAborted();
    if (opts.ifAbsent && this.objects.has(key)) {
      if (!Buffer.isBuffer(body)) body.destroy();
      throw new WriteConflictError(key, this.url);
    }
    let data: Buffer;
    if (Buffer.isBuffer(body)) {
      data = Buffer.from(body);
    } else {
      // Buffer the whole body first: a body that fails midway stores nothing.
      const chunks: Buffer[] = [];
      const source = signal ? addAbortSignal(signal, body) : body;
      for await (const chunk of source) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Buffer));
      data = Buffer.concat(chunks);
    }
    signal?.throwIfAborted();
    // Checked again at commit: with no await between check and set, ifAbsent is atomic.
    if (opts.ifAbsent && this.objects.has(key)) throw new WriteConflictError(key, this.url);
    this.objects.set(key, { data, mtime: new Date() });
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort(compareKeys);
    for (const key of keys) {
      signal?.throwIfAborted();
      const obj = this.objects.get(key);
      if (obj) yield { key, size: obj.data.length, mtime: obj.mtime };
    }
  }

  async remove(key: string, signal?: AbortSignal): Promise<void> {
    assertValidKey(key);
    signal?.throwIfAborted();
    this.objects.delete(key);
  }

  async close(): Promise<void> {}
}
