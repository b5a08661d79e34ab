// Finding a worker's entry file (a thread's or a detached process's) beside
// the module that starts it.
import { existsSync } from 'node:fs';

/** The worker entry file beside the calling module (dist/ or a bundle and its chunks/). */
export function findWorkerEntry(callerUrl: string, name = 'file-worker.js'): URL | undefined {
  for (const rel of [`./${name}`, `../${name}`]) {
    const u = new URL(rel, callerUrl);
    if (existsSync(u)) return u;
  }
  return undefined;
}
