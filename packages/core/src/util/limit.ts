// A tiny concurrency limiter: at most `n` of the given async jobs run at once.

export function createLimiter(n: number): <T>(job: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  const next = () => {
    if (active >= n) return;
    const start = queue.shift();
    if (start) start();
  };
  return <T>(job: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        active++;
        job().then(resolve, reject).finally(() => {
          active--;
          next();
        });
      });
      next();
    });
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs `fn` over `items` with at most `n` at once; the first error stops the
 * rest and is thrown. An async iterable is pulled as workers free up, so a
 * stream of items (a manifest's records) is never held whole; on error it is
 * closed (its return() called).
 */
export async function forEachLimit<T>(items: Iterable<T> | AsyncIterable<T>, n: number, fn: (item: T) => Promise<void>, signal: AbortSignal): Promise<void> {
  const it: Iterator<T> | AsyncIterator<T> = Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : items[Symbol.iterator]();
  let failed: { err: unknown } | undefined;
  const worker = async () => {
    while (failed === undefined) {
      signal.throwIfAborted();
      let next: IteratorResult<T>;
      try {
        next = await it.next();
      } catch (err) {
        failed ??= { err };
        return;
      }
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (err) {
        failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, n) }, worker));
  if (failed !== undefined) {
    await Promise.resolve(it.return?.()).catch(() => {});
    throw failed.err;
  }
}
