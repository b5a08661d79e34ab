// One registry of things a test run must undo (servers, clusters, temp dirs),
// run by the suite's `after` hooks, on SIGINT/SIGTERM/SIGHUP, and, for
// whatever is still registered, on process exit.

import type { ChildProcess } from 'node:child_process';

type CleanupFn = () => void | Promise<void>;

const registry = new Set<CleanupFn>();
let hooksInstalled = false;

/**
 * Registers `fn` to run at cleanup; returns a function that unregisters it
 * (call it once the resource is released normally).
 *
 * On 'exit' nothing asynchronous can finish, so there each fn is called and
 * only its synchronous part runs: do the urgent part (kill a child, rmSync a
 * dir) before the first await.
 */
export function onCleanup(fn: () => void | Promise<void>): () => void {
  installHooks();
  registry.add(fn);
  return () => {
    registry.delete(fn);
  };
}

/**
 * Kills `child` with SIGKILL at cleanup (synchronously, so also on 'exit')
 * unless it has exited by then; returns the unregister function.
 */
export function killAtCleanup(child: ChildProcess): () => void {
  const unregister = onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  child.once('exit', unregister);
  return unregister;
}

/** Runs every registered fn, newest first, each once; throws an AggregateError if some failed. */
export async function runCleanups(): Promise<void> {
  const fns = [...registry].reverse();
  registry.clear();
  const errors: unknown[] = [];
  for (const fn of fns) {
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, `${errors.length} cleanup step(s) failed`);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once('exit', () => {
    for (const fn of [...registry].reverse()) {
      try {
        const r = fn();
        // The async tail cannot complete during exit; keep it from surfacing.
        if (r instanceof Promise) r.catch(() => {});
      } catch {
        // exit cleanup is best effort
      }
    }
    registry.clear();
  });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const signal of signals) {
    let raised = false;
    const reraise = () => {
      if (raised) return;
      raised = true;
      // Die of the signal as we would have without our handlers.
      for (const [s, h] of handlers) process.removeListener(s, h);
      process.kill(process.pid, signal);
    };
    const onSignal = () => {
      setTimeout(reraise, 5_000).unref();
      runCleanups()
        .catch(() => {})
        .finally(reraise);
    };
    handlers.set(signal, onSignal);
    process.once(signal, onSignal);
  }
}
