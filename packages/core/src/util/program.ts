// Running another program (pg_dump, pg_restore, psql, pg_ctl, initdb,
// cairn-restore, …): one place that starts a child (execa), feeds its stdin,
// stops it (one timeout and abort policy) and words how it failed.

import { Writable, type Readable } from 'node:stream';
import { createRequire } from 'node:module';
import type { ExecaError } from 'execa';

type Execa = typeof import('execa');
let execaModule: Execa | undefined;
/**
 * execa, loaded when the first program starts: its import is ~120 ms of CPU
 * (a graph of 150 modules), and it was in every tool's start-up through the
 * codec (key-command.ts), although most runs of most tools start no program
 * (every archive_command call of cairn-wal-push, every restore_command call of
 * cairn-wal-get). require() of an ES module is synchronous in Node 24.
 */
function execaNow(): Execa {
  return (execaModule ??= createRequire(import.meta.url)('execa') as Execa);
}

/** After SIGTERM (abort, timeout, kill()), how long a program has before SIGKILL. */
export const KILL_GRACE_MS = 5_000;

/** How much of a program's stderr is kept: its tail. */
const TAIL = 64 * 1024;

export interface ProgramOptions {
  /** The program's whole environment: nothing of ours is added to it. */
  env: NodeJS.ProcessEnv;
  cwd?: string | undefined;
  /** 'pipe': fed through `stdinSink`; `{ input }` is written whole and closed. Default 'ignore'. */
  stdin?: 'ignore' | 'pipe' | { input: string | Buffer } | undefined;
  /** 'pipe': read it with `stdout()`; 'collect': all of it lands in the exit (small outputs: a version, a table of contents). Default 'ignore'. */
  stdout?: 'ignore' | 'pipe' | 'collect' | undefined;
  /** 'collect' (default): its tail lands in the exit; 'inherit': straight to ours (messages the user reads as they come). */
  stderr?: 'collect' | 'inherit' | undefined;
  /** Aborting it stops the program: SIGTERM, SIGKILL after KILL_GRACE_MS. */
  signal?: AbortSignal | undefined;
  /** Past this, the program is stopped the same way (the exit says timedOut). */
  timeoutMs?: number | undefined;
  /**
   * Run as this OS user (we are root: PostgreSQL refuses to run as root).
   * Through setpriv, which execs: the child's pid is the program's.
   */
  runAs?: { uid: number; gid: number } | undefined;
}

export interface ProgramExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last 64 KiB of its stderr (empty unless collected). */
  stderr: string;
  /** Its stdout with `stdout: 'collect'`, else empty. */
  stdout: string;
  /** The spawn's own error (ENOENT, EACCES), when the program never ran. */
  error?: Error;
  /** Stopped by `timeoutMs`. */
  timedOut?: boolean;
}

export interface Program {
  /** Its stdin with `stdin: 'pipe'` (feed it through `stdinSink`). */
  readonly stdin: Writable | null;
  /**
   * Its stdout (`stdout: 'pipe'`) as a stream that errors when the program
   * fails or is killed, even after its last byte: a dump cut short by a
   * dying pg_dump never looks complete (the raw pipe just ends).
   */
  stdout(): Readable;
  /** Settles when the program has exited and its pipes are closed; never rejects. */
  readonly exited: Promise<ProgramExit>;
  /** SIGTERM (then SIGKILL after the grace) by default; SIGKILL at once when asked. */
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts `path` with `args` (never a password in argv: `ps` shows argv to
 * every user; pass it in `env`).
 */
export function startProgram(path: string, args: string[], o: ProgramOptions): Program {
  const [file, argv] = o.runAs
    ? ['setpriv', [`--reuid=${o.runAs.uid}`, `--regid=${o.runAs.gid}`, '--init-groups', '--', path, ...args]]
    : [path, args];
  const input = typeof o.stdin === 'object' ? o.stdin.input : undefined;
  const stdoutMode = o.stdout ?? 'ignore';
  const child = execaNow().execa(file, argv, {
    env: o.env,
    extendEnv: false,
    ...(o.cwd ? { cwd: o.cwd } : {}),
    ...(input !== undefined ? { input } : { stdin: o.stdin === 'pipe' ? 'pipe' : 'ignore' }),
    stdout: stdoutMode === 'ignore' ? 'ignore' : 'pipe',
    stderr: o.stderr === 'inherit' ? 'inherit' : 'pipe',
    // We read the pipes ourselves: execa's buffer kills a child past its
    // maxBuffer (~100 MB), and a dump is larger.
    buffer: false,
    encoding: 'buffer',
    stripFinalNewline: false,
    ...(o.signal ? { cancelSignal: o.signal } : {}),
    ...(o.timeoutMs !== undefined ? { timeout: o.timeoutMs } : {}),
    killSignal: 'SIGTERM',
    forceKillAfterDelay: KILL_GRACE_MS,
    // The tools stop their children themselves (abort, kill): no exit hooks of execa's own.
    cleanup: false,
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-TAIL)));
  let stdout = '';
  if (stdoutMode === 'collect') child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  // A program that exits early closes its stdin: a write then raises EPIPE,
  // which its exit status reports better.
  child.stdin?.on('error', () => {});
  const exited = child.then(
    (r): ProgramExit => ({ code: r.exitCode ?? 0, signal: null, stderr, stdout }),
    (err: ExecaError): ProgramExit => {
      // No pid: it never started, and execa's cause is the spawn's own error.
      const spawnError = child.pid === undefined && err.cause instanceof Error ? err.cause : undefined;
      return {
        code: err.exitCode ?? null,
        signal: (err.signal as NodeJS.Signals | undefined) ?? null,
        stderr,
        stdout,
        ...(spawnError ? { error: spawnError } : {}),
        ...(err.timedOut ? { timedOut: true } : {}),
      };
    },
  );
  return {
    stdin: child.stdin,
    stdout: () => {
      const r = child.readable({ from: 'stdout' });
      // The error stays on the stream for whoever reads it later (pipeline,
      // for await): a program that fails before anyone reads must not crash
      // the process with an unhandled 'error' event.
      r.on('error', () => {});
      // A consumer that fails (storage, a codec) stops the program: nothing
      // reads the rest, and execa's stream closes only once the program has
      // ended, which would hold the consumer's pipeline until then.
      const destroy = r._destroy.bind(r);
      r._destroy = (err, cb) => {
        if (!r.readableEnded) child.kill();
        destroy(err, cb);
      };
      return r;
    },
    exited,
    kill: (signal = 'SIGTERM') => void child.kill(signal),
  };
}

/** Whether `err` is the error `stdout()` raised because its program failed (its `exited` says how). */
export function isProgramFailure(err: unknown): boolean {
  // No program started, no such error.
  return execaModule !== undefined && err instanceof execaModule.ExecaError;
}

/** Runs a program to its end: its status and the tails of what it printed. */
export function runProgram(path: string, args: string[], o: ProgramOptions): Promise<ProgramExit> {
  return startProgram(path, args, o).exited;
}

/**
 * A sink that feeds a program's stdin (`stdin: 'pipe'`) with backpressure.
 * When it fails (the stream before it errors), stdin is left open: the
 * caller kills the program first, so it never sees an end of input it could
 * take for the whole of it (pg_restore --single-transaction would commit).
 * When the program closes its input early: with `afterClose: 'discard'` the
 * rest is dropped (pg_restore --list reads only the table of contents, and
 * the checksum must still be read to the end), with 'fail' the sink errors.
 */
export function stdinSink(p: Program, o: { afterClose: 'discard' | 'fail'; highWaterMark?: number }): Writable {
  const stdin = p.stdin;
  if (!stdin) throw new Error('stdinSink needs a program started with stdin: \'pipe\'');
  let closed = false;
  stdin.once('close', () => (closed = true));
  const gone = (cb: (err?: Error) => void) => (o.afterClose === 'discard' ? cb() : cb(new Error('the program closed its input')));
  return new Writable({
    ...(o.highWaterMark !== undefined ? { highWaterMark: o.highWaterMark } : {}),
    write(chunk: Buffer, _enc, cb) {
      if (closed || stdin.destroyed) return gone(cb);
      if (stdin.write(chunk)) return cb();
      const onDrain = () => {
        stdin.off('close', onClose);
        cb();
      };
      const onClose = () => {
        stdin.off('drain', onDrain);
        gone(cb);
      };
      stdin.once('drain', onDrain);
      stdin.once('close', onClose);
    },
    final(cb) {
      if (closed || stdin.destroyed) return cb();
      stdin.end(() => cb());
    },
  });
}

/**
 * The line of a program's stderr that says what went wrong: a cairn tool's
 * own "NAME: error:" line when `program` names it, else the first
 * "error:"/"FATAL:"/"ERROR:" line, else the last line. With `program`, its
 * "NAME: " and "error: " prefix is dropped (the caller names the program).
 */
export function programErrorLine(stderr: string, o: { program?: string; fallback?: string } = {}): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const prefix = o.program === undefined ? undefined : `${o.program}: `;
  const line =
    (prefix === undefined ? undefined : lines.find((l) => l.startsWith(`${prefix}error: `))) ??
    lines.find((l) => /\b(error|fatal|FATAL|ERROR):/.test(l)) ??
    lines.at(-1);
  if (line === undefined) return o.fallback ?? '(no message)';
  if (prefix === undefined || !line.startsWith(prefix)) return line;
  const rest = line.slice(prefix.length);
  return rest.startsWith('error: ') ? rest.slice('error: '.length) : rest;
}

/** How a program ended, for messages: "exit status 1", "signal SIGKILL", or why it never ran. */
export function describeExit(e: Pick<ProgramExit, 'code' | 'signal' | 'error'>): string {
  if (e.error) return e.error.message;
  return e.signal ? `signal ${e.signal}` : `exit status ${e.code}`;
}
