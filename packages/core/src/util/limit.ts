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

/** Runs `fn` over `items` with at most `n` at once; the first error stops the rest and is thrown. */
export async function forEachLimit<T>(items: Iterable<T>, n: number, fn: (item: T) => Promise<void>, signal: AbortSignal): Promise<void> {
  const it = items[Symbol.iterator]();
  let failed: { err: unknown } | undefined;
  const worker = async () => {
    while (failed === undefined) {
      signal.throwIfAborted();
      const next = it.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (err) {
        failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, n) }, worker));
  if (failed !== undefined) throw failed.err;
}
