// Starting a tool's detached background worker (push-ahead, prefetch): a
// Node process that outlives the call PostgreSQL waits for, with its job in
// the environment.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findWorkerEntry } from '../util/worker-entry.js';
import type { WorkerJobEnv } from './contract.js';

/**
 * Spawns `entry` (e.g. 'prefetch-main.js'), found beside the calling module
 * (`fromUrl`: its import.meta.url): next to it in an unbundled dist/, one
 * level up when the caller sits in a bundle's chunks/ directory.
 */
export function spawnWorker(entry: string, fromUrl: string, job: { envName: WorkerJobEnv; value: unknown }, env: NodeJS.ProcessEnv, nodeArgs: string[] = []): void {
  const url = findWorkerEntry(fromUrl, entry);
  if (!url) throw new Error(`${entry} not found beside the build`);
  const path = fileURLToPath(url);
  const child = spawn(process.execPath, [...nodeArgs, path], {
    detached: true,
    stdio: 'ignore',
    env: { ...env, [job.envName]: JSON.stringify(job.value) },
  });
  child.unref();
}
