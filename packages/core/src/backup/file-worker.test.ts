import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { createFileWorkers, type DecodeJob } from './file-worker.js';

const dir = mkdtempSync(join(tmpdir(), 'cairn-file-worker-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// A stand-in worker that queues as the real one does (file-worker-main.ts):
// answers each job with its thread id after a while, one job at a time.
const entry = join(dir, 'echo-worker.mjs');
writeFileSync(
  entry,
  `import { parentPort, threadId } from 'node:worker_threads';
let tail = Promise.resolve();
parentPort.on('message', (m) => {
  tail = tail.then(() => new Promise((r) => setTimeout(r, 50))).then(() => parentPort.postMessage({ id: m.id, result: threadId }));
});
`,
);

const job = (n: number, size: number): DecodeJob => ({ kind: 'decode', key: `k${n}`, path: `/nowhere/${n}`, sha256: '', size, mode: 0o600, mtime: 0, label: `"${n}"` });

test('each job goes at once to the worker with the fewest bytes queued', async () => {
  const workers = createFileWorkers(pathToFileURL(entry), 2, { repoUrl: 'memory://x', env: {}, cluster: 'main', keyFile: undefined, compress: 'none' });
  try {
    // decode() resolves to what the worker answered: here its thread id.
    // 100 → A; 60 → B; 50 → B (60 < 100); 10 → A (100 < 110).
    const sizes = [100, 60, 50, 10];
    const ids = (await Promise.all(sizes.map((size, n) => workers.decode(job(n, size))))) as unknown as number[];
    const [a, b] = ids;
    assert.notEqual(a, b, `the first two jobs ran on two workers: ${ids.join(', ')}`);
    assert.deepEqual(ids, [a, b, b, a], 'the 50-byte job joins the worker with 60 queued, the 10-byte one the worker with 100');
    // Finished jobs no longer count: with nothing queued, empty files spread over both.
    const again = (await Promise.all([0, 1, 2, 3].map((n) => workers.decode(job(n, 0))))) as unknown as number[];
    assert.equal(new Set(again).size, 2, `empty files spread: ${again.join(', ')}`);
  } finally {
    await workers.close();
  }
});
