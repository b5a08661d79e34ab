// Pid files that keep two background workers (or a worker and PostgreSQL's
// own call) apart: a lock whose process is gone is taken over.

import { readFile, unlink, writeFile } from 'node:fs/promises';

/** Whether a process with this pid runs on this host (EPERM: it does, as another user). */
export function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The live process named in `path`, if any. */
export async function pidFileHolder(path: string): Promise<number | undefined> {
  const pid = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined;
}

/** Creates `path` holding our pid; false if a live process holds it. */
export async function takePidFile(path: string): Promise<boolean> {
  for (let i = 0; i < 2; i++) {
    try {
      await writeFile(path, String(process.pid), { flag: 'wx', mode: 0o600 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return false;
      if ((await pidFileHolder(path)) !== undefined) return false;
      await unlink(path).catch(() => {});
    }
  }
  return false;
}

export async function releasePidFile(path: string): Promise<void> {
  await unlink(path).catch(() => {});
}
