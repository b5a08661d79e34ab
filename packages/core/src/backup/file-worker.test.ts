import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { createFileWorkers, type DecodeJob } from './file-worker.js';

const dir = mkdtempSync(join(tmpdir(), 'cairn-file-worker-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// A stand-in worker: answers each job after a while with its thread id, and
// with an error when it is given a second job before the first is done.
const entry = join(dir, 'echo-worker.mjs');
writeFileSync(
  entry,
  `import { parentPort, threadId } from 'node:worker_threads';
let busy = false;
parentPort.on('message', (m) => {
  if (busy) return parentPort.postMessage({ id: m.id, error: { message: 'two jobs at once on thread ' + threadId } });
  busy = true;
  setTimeout(() => { busy = false; parentPort.postMessage({ id: m.id, result: threadId }); }, 100);
});
`,
);

const job = (n: number): DecodeJob => ({ kind: 'decode', key: `k${n}`, path: `/nowhere/${n}`, sha256: '', size: 0, mode: 0o600, mtime: 0, label: `"${n}"` });

test('jobs started in the same tick go to different workers, one job per worker at a time', async () => {
  const workers = createFileWorkers(pathToFileURL(entry), 2, { repoUrl: 'memory://x', env: {}, keyFile: undefined, compress: 'none' });
  try {
    // decode() resolves to what the worker answered: here its thread id.
    const ids = (await Promise.all([1, 2, 3, 4, 5].map((n) => workers.decode(job(n))))) as unknown as number[];
    assert.equal(new Set(ids.slice(0, 2)).size, 2, `the first two jobs ran on two workers: ${ids.join(', ')}`);
    assert.equal(new Set(ids).size, 2, 'only two workers exist');
  } finally {
    await workers.close();
  }
});
