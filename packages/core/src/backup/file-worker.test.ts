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

const MiB = 1024 * 1024;

test('each job goes at once to the worker with the fewest bytes queued', async () => {
  const workers = createFileWorkers(pathToFileURL(entry), 2, { repoUrl: 'memory://x', env: {}, cluster: 'main', keyFile: undefined, compress: 'none' });
  try {
    // decode() resolves to what the worker answered: here its thread id.
    // 100 → A; 60 → B (a big file is ahead on A: B starts); 50 → B (60 < 100); 10 → A (100 < 110).
    const sizes = [100 * MiB, 60 * MiB, 50 * MiB, 10 * MiB];
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

test('a second worker starts only when a big file is ahead on the first', async () => {
  const workers = createFileWorkers(pathToFileURL(entry), 2, { repoUrl: 'memory://x', env: {}, cluster: 'main', keyFile: undefined, compress: 'none' });
  try {
    // Jobs of a few KiB queue on the one worker started: none is busy with a big file.
    const small = (await Promise.all([0, 1, 2, 3, 4, 5].map((n) => workers.decode(job(n, 8192))))) as unknown as number[];
    assert.equal(new Set(small).size, 1, `one worker for small jobs: ${small.join(', ')}`);
    const [big, after] = (await Promise.all([workers.decode(job(6, 64 * MiB)), workers.decode(job(7, 8192))])) as unknown as number[];
    assert.notEqual(big, after, 'with a big file ahead, the next job starts the second worker');
  } finally {
    await workers.close();
  }
});

test('small files are encoded in batches and handed back; a vanished file fails alone, a grown one comes back to be streamed', async () => {
  const { spawnSync } = await import('node:child_process');
  const { createHash } = await import('node:crypto');
  const real = join(dir, 'real-worker-small.mjs');
  writeFileSync(real, `import { runFileWorker } from ${JSON.stringify(new URL('./file-worker-main.js', import.meta.url).href)};\nrunFileWorker();\n`);
  const repo = mkdtempSync(join(dir, 'small-'));
  const workers = createFileWorkers(pathToFileURL(real), 2, { repoUrl: repo, env: {}, cluster: 'main', keyFile: undefined, compress: 'zstd:1' });
  try {
    // More than one batch (SMALL_BATCH_FILES) of files, each different.
    const files = Array.from({ length: 70 }, (_, n) => {
      const path = join(dir, `small-${n}`);
      const data = Buffer.alloc(n * 100, `file ${n} `);
      writeFileSync(path, data);
      return { path, data };
    });
    const grown = join(dir, 'grown');
    writeFileSync(grown, Buffer.alloc(4 * MiB + 1, 'g'));
    const gone = join(dir, 'never-there');
    const all = await Promise.allSettled([
      ...files.map((f) => workers.small({ kind: 'small', path: f.path, size: f.data.length, targets: [0] })),
      workers.small({ kind: 'small', path: grown, size: 8192, targets: [0] }),
      workers.small({ kind: 'small', path: gone, size: 8192, targets: [0] }),
    ]);
    files.forEach((f, n) => {
      const r = all[n]!;
      assert.equal(r.status, 'fulfilled', `file ${n}`);
      const v = (r as PromiseFulfilledResult<Awaited<ReturnType<typeof workers.small>>>).value;
      assert.equal(v.grown, false);
      if (v.grown) return;
      assert.equal(v.size, f.data.length);
      assert.equal(v.sha256, createHash('sha256').update(f.data).digest('hex'));
      assert.deepEqual(v.badPages, []);
      const s = v.stored[0]!;
      assert.ok(s.ok);
      const z = spawnSync('zstd', ['-d', '-c', '-q'], { input: s.bytes });
      assert.equal(z.status, 0, `file ${n} is one zstd frame`);
      assert.ok(z.stdout.equals(f.data), `zstd -d gives file ${n} back`);
    });
    const g = all[files.length]!;
    assert.equal(g.status, 'fulfilled');
    assert.equal((g as PromiseFulfilledResult<{ grown: boolean }>).value.grown, true, 'a file grown past one piece comes back to be streamed');
    const v = all[files.length + 1]!;
    assert.equal(v.status, 'rejected');
    assert.equal(((v as PromiseRejectedResult).reason as NodeJS.ErrnoException).code, 'ENOENT', 'a vanished file fails with ENOENT (basebackup skips it)');
  } finally {
    await workers.close();
  }
});

test('an encode job reads the file once into every repository; one that fails is reported, the others keep it', async () => {
  const { spawnSync } = await import('node:child_process');
  const { readFileSync, statSync } = await import('node:fs');
  const real = join(dir, 'real-worker.mjs');
  writeFileSync(real, `import { runFileWorker } from ${JSON.stringify(new URL('./file-worker-main.js', import.meta.url).href)};\nrunFileWorker();\n`);
  const good = mkdtempSync(join(dir, 'good-'));
  const blocker = join(dir, 'not-a-dir');
  writeFileSync(blocker, 'a regular file');
  const bad = join(blocker, 'repo');
  const source = join(dir, 'relation');
  const data = Buffer.alloc(9 * 1024 * 1024 + 123, 'pgbench filler ');
  writeFileSync(source, data);
  const workers = createFileWorkers(pathToFileURL(real), 1, { repoUrl: good, repoUrls: [good, bad], env: {}, cluster: 'main', keyFile: undefined, compress: 'zstd:1' });
  try {
    const key = 'main/backups/20261206-210000F/data/base/5/16384.zst';
    const r = await workers.encode({ kind: 'encode', path: source, key, size: data.length, targets: [0, 1] });
    assert.equal(r.size, data.length);
    assert.equal(r.stored.length, 2);
    const [ok, failed] = [r.stored[0]!, r.stored[1]!];
    assert.ok(ok.ok, `the good repository stored it: ${JSON.stringify(ok)}`);
    assert.equal(ok.value, statSync(join(good, key)).size);
    assert.equal(failed.ok, false, 'the repository under a regular file failed');
    const z = spawnSync('zstd', ['-d', '-c', '-q'], { input: readFileSync(join(good, key)), maxBuffer: 64 << 20 });
    assert.equal(z.status, 0);
    assert.ok(z.stdout.equals(data), 'zstd -d gives the file back');
  } finally {
    await workers.close();
  }
});
