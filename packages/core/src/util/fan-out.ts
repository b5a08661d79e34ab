// One stream of bytes to several consumers (the repositories of a backup or a
// dump, issue 18 item 1): the source is read once and moves at the pace of
// the slowest consumer still going; a consumer that fails is dropped and the
// others go on, so a repository that fails does not lose the others' copies.

import { PassThrough, type Readable } from 'node:stream';

/** How one consumer ended: its value, or why it failed. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Hands every chunk of `source` to each of `sinks` (each reads its own
 * stream) and waits until all have ended. A sink that fails is detached; the
 * source is not read further once none is left. A failure of the source
 * itself fails every sink still going and is thrown, after they settled.
 */
export async function fanOut<T>(source: AsyncIterable<Buffer>, sinks: ((body: Readable) => Promise<T>)[]): Promise<Outcome<T>[]> {
  const outs = sinks.map(() => new PassThrough({ highWaterMark: 1024 * 1024 }));
  const ended = sinks.map(() => false);
  const waiters = sinks.map(() => new Set<() => void>());
  const done = sinks.map((sink, i) =>
    Promise.resolve()
      .then(() => sink(outs[i]!))
      .then(
        (value): Outcome<T> => ({ ok: true, value }),
        (error: unknown): Outcome<T> => ({ ok: false, error }),
      )
      .then((r) => {
        // Ended (or failed) early: it takes nothing more, and nobody waits on it.
        ended[i] = true;
        if (!r.ok) outs[i]!.destroy();
        for (const w of [...waiters[i]!]) w();
        return r;
      }),
  );
  const room = (i: number) =>
    new Promise<void>((resolve) => {
      const go = () => {
        outs[i]!.off('drain', go);
        waiters[i]!.delete(go);
        resolve();
      };
      outs[i]!.on('drain', go);
      waiters[i]!.add(go);
    });
  let sourceError: unknown;
  let failedSource = false;
  try {
    for await (const chunk of source) {
      if (ended.every(Boolean)) break;
      // Backpressure: the next chunk waits for the slowest sink still going.
      await Promise.all(outs.map((out, i) => (ended[i] || out.write(chunk) ? undefined : room(i))));
    }
  } catch (err) {
    sourceError = err;
    failedSource = true;
  }
  outs.forEach((out, i) => {
    if (ended[i]) return;
    if (failedSource) out.destroy(sourceError instanceof Error ? sourceError : new Error(String(sourceError)));
    else out.end();
  });
  const results = await Promise.all(done);
  if (failedSource) throw sourceError;
  return results;
}
