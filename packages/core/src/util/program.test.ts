import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { describeExit, isProgramFailure, KILL_GRACE_MS, programErrorLine, runProgram, startProgram, stdinSink } from './program.js';

const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' };

describe('program runner (real child processes)', () => {
  it('reports the exit status and the tails of stdout and stderr', async () => {
    const e = await runProgram('/bin/sh', ['-c', 'echo out; echo "x: warning: w" >&2; echo "x: error: it broke" >&2; exit 3'], { env, stdout: 'collect' });
    assert.equal(e.code, 3);
    assert.equal(e.signal, null);
    assert.equal(e.stdout, 'out\n');
    assert.equal(programErrorLine(e.stderr), 'x: error: it broke');
    assert.equal(describeExit(e), 'exit status 3');
    const ok = await runProgram('/bin/sh', ['-c', 'exit 0'], { env });
    assert.equal(ok.code, 0);
  });

  it('passes only the environment it is given', async () => {
    const e = await runProgram('/bin/sh', ['-c', 'echo "[$HOME][$X]"'], { env: { ...env, X: 'y' }, stdout: 'collect' });
    assert.equal(e.stdout, '[][y]\n');
  });

  it('reports a program that never ran', async () => {
    const e = await runProgram('/nonexistent/program', [], { env });
    assert.equal(e.code, null);
    assert.match(e.error?.message ?? '', /ENOENT/);
    assert.match(describeExit(e), /spawn \/nonexistent\/program ENOENT/);
  });

  it('stops a program past its timeout, SIGKILL when it ignores SIGTERM', async () => {
    const t0 = Date.now();
    const e = await runProgram('/bin/sh', ['-c', 'exec sleep 30'], { env, timeoutMs: 200 });
    assert.equal(e.signal, 'SIGTERM');
    assert.equal(e.timedOut, true);
    assert.ok(Date.now() - t0 < 5_000);
    const t1 = Date.now();
    const stubborn = await runProgram('/bin/sh', ['-c', 'trap "" TERM; while :; do sleep 0.1; done'], { env, timeoutMs: 200 });
    assert.equal(stubborn.signal, 'SIGKILL');
    assert.ok(Date.now() - t1 >= KILL_GRACE_MS, 'SIGKILL only after the grace');
  });

  it('stops a program when the signal aborts', async () => {
    const ac = new AbortController();
    const p = startProgram('/bin/sh', ['-c', 'exec sleep 30'], { env, signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    const e = await p.exited;
    assert.equal(e.signal, 'SIGTERM');
    assert.equal(e.code, null);
  });

  it('feeds a large input through stdin with backpressure', async () => {
    // 64 MiB through cat into wc -c: far more than a pipe holds, so writes must wait.
    const p = startProgram('/bin/sh', ['-c', 'cat | wc -c'], { env, stdin: 'pipe', stdout: 'collect' });
    const chunk = Buffer.alloc(1024 * 1024, 7);
    let produced = 0;
    let maxAhead = 0;
    const sink = stdinSink(p, { afterClose: 'fail' });
    const source = Readable.from((function* () {
      for (let i = 0; i < 64; i++) {
        produced++;
        maxAhead = Math.max(maxAhead, sink.writableLength);
        yield chunk;
      }
    })());
    await pipeline(source, sink);
    const e = await p.exited;
    assert.equal(produced, 64);
    assert.equal(e.code, 0);
    assert.equal(e.stdout.trim(), String(64 * 1024 * 1024));
    assert.ok(maxAhead <= 2 * 1024 * 1024, `the sink held back ${maxAhead} bytes`);
  });

  it('takes a string as the whole stdin', async () => {
    const e = await runProgram('/bin/cat', [], { env, stdin: { input: 'hello\n' }, stdout: 'collect' });
    assert.equal(e.stdout, 'hello\n');
  });

  it('a sink discards what a program that closed its input no longer reads, or fails', async () => {
    const big = () => Readable.from((function* () { for (let i = 0; i < 32; i++) yield Buffer.alloc(1024 * 1024); })());
    const p = startProgram('/bin/sh', ['-c', 'head -c 10 >/dev/null'], { env, stdin: 'pipe' });
    await pipeline(big(), stdinSink(p, { afterClose: 'discard' }));
    assert.equal((await p.exited).code, 0);
    const q = startProgram('/bin/sh', ['-c', 'head -c 10 >/dev/null; exit 4'], { env, stdin: 'pipe' });
    await assert.rejects(pipeline(big(), stdinSink(q, { afterClose: 'fail' })), /the program closed its input/);
    assert.equal((await q.exited).code, 4);
  });

  it('a failed sink leaves stdin open: the program sees no end of input before it is killed', async () => {
    // The program reports "EOF" if its input ends; killed first, it never can.
    const p = startProgram('/bin/sh', ['-c', 'cat >/dev/null; echo EOF >&2'], { env, stdin: 'pipe' });
    const failing = new Readable({
      read() {
        this.push(Buffer.alloc(1024));
        setTimeout(() => this.destroy(new Error('checksum mismatch')), 50);
      },
    });
    await assert.rejects(pipeline(failing, stdinSink(p, { afterClose: 'fail' })), /checksum mismatch/);
    await new Promise((r) => setTimeout(r, 200));
    p.kill('SIGKILL');
    const e = await p.exited;
    assert.equal(e.signal, 'SIGKILL');
    assert.equal(e.stderr, '');
  });

  it('stdout errors when the program dies mid-stream, after its bytes', async () => {
    for (const script of ['head -c 200000 /dev/zero; exit 5', 'head -c 200000 /dev/zero; kill -9 $$']) {
      const p = startProgram('/bin/sh', ['-c', script], { env, stdout: 'pipe' });
      let n = 0;
      await assert.rejects((async () => {
        for await (const c of p.stdout()) n += (c as Buffer).length;
      })(), (err) => isProgramFailure(err));
      assert.equal(n, 200000);
      const e = await p.exited;
      assert.ok(e.code === 5 || e.signal === 'SIGKILL', JSON.stringify(e));
    }
    const ok = startProgram('/bin/sh', ['-c', 'head -c 200000 /dev/zero'], { env, stdout: 'pipe' });
    let n = 0;
    for await (const c of ok.stdout()) n += (c as Buffer).length;
    assert.equal(n, 200000);
    assert.equal((await ok.exited).code, 0);
  });

  it('stdout keeps its error for a reader that comes after the program failed', async () => {
    const p = startProgram('/bin/sh', ['-c', 'echo partial; exit 1'], { env, stdout: 'pipe' });
    const out = p.stdout();
    assert.equal((await p.exited).code, 1);
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects((async () => {
      for await (const _ of out) { /* reads what is there, then the failure */ }
    })(), (err) => isProgramFailure(err));
  });

  it('a consumer that fails stops the program instead of waiting for its end', { timeout: 20_000 }, async () => {
    const p = startProgram('/bin/sh', ['-c', 'while :; do head -c 100000 /dev/zero; sleep 0.01; done'], { env, stdout: 'pipe' });
    let n = 0;
    const t0 = Date.now();
    await assert.rejects(pipeline(p.stdout(), new Writable({ write(c: Buffer, _e, cb) { n += c.length; cb(n > 1_000_000 ? new Error('storage broke') : undefined); } })), /storage broke/);
    const e = await p.exited;
    assert.equal(e.signal, 'SIGTERM');
    assert.ok(Date.now() - t0 < KILL_GRACE_MS, 'stopped at once');
    assert.equal(isProgramFailure(new Error('storage broke')), false);
  });

  it('picks the error line of stderr', () => {
    assert.equal(programErrorLine('pg_dump: warning: x\npg_dump: error: no matching tables were found\n'), 'pg_dump: error: no matching tables were found');
    assert.equal(programErrorLine('psql:<stdin>:3: ERROR:  role "a" already exists\n'), 'psql:<stdin>:3: ERROR:  role "a" already exists');
    assert.equal(programErrorLine('something odd\nlast words\n'), 'last words');
    assert.equal(programErrorLine(''), '(no message)');
    assert.equal(programErrorLine('', { fallback: 'pg_restore exited 1' }), 'pg_restore exited 1');
    // A cairn tool's own error line wins over a logged ERROR: from PostgreSQL; its prefix goes.
    assert.equal(programErrorLine('cairn-restore: 1 statement failed (first: ERROR: x)\ncairn-restore: error: object "k" is missing\ncairn-restore: hint: run cairn-verify\n', { program: 'cairn-restore' }), 'object "k" is missing');
    assert.equal(programErrorLine('pg_restore: error: input file is too short\n', { program: 'pg_restore' }), 'input file is too short');
    assert.equal(describeExit({ code: null, signal: 'SIGKILL' }), 'signal SIGKILL');
    assert.equal(describeExit({ code: 1, signal: null }), 'exit status 1');
  });
});
