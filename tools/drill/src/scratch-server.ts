// cairn-drill's scratch server: the PostgreSQL it restores into, in a
// scratch directory of its own: initdb (a dump drill), its settings, start,
// wait for recovery to promote, read its log, stop. Only the drill runs one.

import { appendFile, chown, lstat, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { CairnError, EXIT, isCairnError } from '@cairn/core/cli/errors';
import { confString, shellWord } from '@cairn/core/util/literals';
import { programErrorLine, runProgram } from '@cairn/core/util/program';
import { connectScratch, type ScratchAddress } from '@cairn/core/drill/scratch-client';

/** The OS user the scratch server runs as (--run-as, when cairn-drill runs as root). */
export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

/** A TCP port nobody listens on now (bound to port 0 and released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A failure of a drill step (starting the server, its recovery; cairn-restore in drill.ts): recorded in the result, exits with `status`. */
export class DrillFailure extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

/** The scratch server: its directory, how to reach it, how to run its programs. */
export class Scratch {
  readonly pgdata: string;
  readonly log: string;
  port = 0;
  started = false;
  constructor(readonly dir: string, readonly runAs: OsUser | undefined, readonly env: NodeJS.ProcessEnv, readonly signal: AbortSignal) {
    this.pgdata = join(dir, 'data');
    this.log = join(dir, 'server.log');
  }

  address(user: string): ScratchAddress {
    return { socketDir: this.dir, port: this.port, user };
  }

  /** Runs a server-side program as the server's user; its status and what it printed (stdout, then stderr). */
  async runAsServer(path: string, args: string[], timeoutMs: number): Promise<{ code: number; out: string }> {
    const e = await runProgram(path, args, { env: this.env, cwd: this.dir, stdout: 'collect', timeoutMs, runAs: this.runAs });
    if (e.error) return { code: 127, out: e.error.message };
    return { code: e.code ?? 128 + 9, out: `${e.stdout}${e.stderr}`.slice(-65536) };
  }

  async give(path: string): Promise<void> {
    if (this.runAs) await chown(path, this.runAs.uid, this.runAs.gid);
  }

  /** A fresh cluster for a dump drill, `user` its superuser; CONFIG_INVALID when initdb fails. */
  async initdb(initdb: string, user: string): Promise<void> {
    const init = await this.runAsServer(initdb, ['-D', this.pgdata, '-U', user, '-A', 'trust', '-N', '-E', 'UTF8', '--locale', 'C'], 300_000);
    if (init.code !== 0) throw new CairnError('CONFIG_INVALID', `initdb of the scratch cluster failed: ${programErrorLine(init.out)}`, { hint: 'check --pg-bin and the --scratch-dir\'s free space' });
  }

  /** The drill's own postgresql.conf (the server starts with -c config_file= it). */
  get configFile(): string {
    return join(this.dir, 'postgresql.conf');
  }

  /** Where cairn-restore --config-dir puts the configuration a backup kept from outside PGDATA. */
  get keptConfigDir(): string {
    return join(this.dir, 'config');
  }

  /**
   * The scratch server always starts with a configuration the drill
   * controls: its own postgresql.conf (in the scratch directory, given as
   * config_file) includes the backup's own one, from PGDATA (the initdb and
   * Docker layout) or from what cairn-restore --config-dir wrote (Debian's
   * /etc/postgresql/<v>/<name>, NixOS's -c config_file=), so
   * shared_preload_libraries and what extensions need stay. Then
   * data_directory is set after the include: a backup's config that names
   * its own data directory (Debian's does) must never start the scratch
   * server on the source's data. Returns where the backup's settings came
   * from, or undefined when the backup has none (PostgreSQL's defaults).
   *
   * The rest goes into postgresql.auto.conf, after cairn-restore's lines:
   * that file is read last, so the drill's settings win over what ALTER
   * SYSTEM left there. It must not archive into the repository it came from
   * (archive_mode = off), nor listen on the network (unix socket in the
   * scratch directory only, trusted: the directory is 0700), nor stream
   * from a primary, nor write the source's pid file (external_pid_file:
   * Debian's names /var/run/postgresql/<v>-<name>.pid) or use its hba and
   * ident files. hot_standby = off: a hot standby needs max_connections &
   * co. at least as high as the source's, and the drill needs no reads
   * during replay: pg_last_xact_replay_timestamp() stays at the last
   * replayed commit after promotion. lc_messages = 'C' keeps the log
   * readable for the recovery-target check.
   */
  async configure(port: number, major: number): Promise<string | undefined> {
    this.port = port;
    const hba = join(this.dir, 'pg_hba.conf');
    const ident = join(this.dir, 'pg_ident.conf');
    await writeFile(hba, '# cairn-drill scratch server: unix socket only\nlocal all all trust\n', { mode: 0o600 });
    await writeFile(ident, '# cairn-drill scratch server: no user name maps\n', { mode: 0o600 });
    await this.give(hba);
    await this.give(ident);

    const candidates = [join(this.pgdata, 'postgresql.conf'), join(this.keptConfigDir, 'postgresql.conf')];
    let own: string | undefined;
    for (const c of candidates) {
      if ((await lstat(c).catch(() => undefined))?.isFile()) {
        own = c;
        break;
      }
    }
    const main = [
      '# cairn-drill: the backup\'s own settings, then the data directory it must run on',
      own !== undefined ? `include ${confString(own)}` : '# (the backup holds no postgresql.conf: PostgreSQL\'s defaults)',
      `data_directory = ${confString(this.pgdata)}`,
      '',
    ];
    await writeFile(this.configFile, main.join('\n'), { mode: 0o600 });
    await this.give(this.configFile);

    const lines = [
      '',
      '# added by cairn-drill: a scratch copy that must not archive, listen on the network or stream',
      `port = ${port}`,
      "listen_addresses = ''",
      `unix_socket_directories = ${confString(this.dir)}`,
      `hba_file = ${confString(hba)}`,
      `ident_file = ${confString(ident)}`,
      "external_pid_file = ''",
      // Before 15 the statistics collector's files went to a directory that
      // Debian puts under /var/run/postgresql, shared with the source.
      ...(major < 15 ? [`stats_temp_directory = ${confString(join(this.dir, 'pg_stat_tmp'))}`] : []),
      'archive_mode = off',
      "primary_conninfo = ''",
      'hot_standby = off',
      'ssl = off',
      'logging_collector = off',
      "log_destination = 'stderr'",
      "lc_messages = 'C'",
      'log_min_messages = warning',
      "cluster_name = 'cairn-drill'",
      '',
    ];
    await appendFile(join(this.pgdata, 'postgresql.auto.conf'), lines.join('\n'));
    return own;
  }

  async start(pgCtl: string, timeoutMs: number): Promise<void> {
    this.started = true;
    // pg_ctl -w returns once the server accepts connections (with hot_standby
    // off: after recovery, once promoted), and early when the postmaster dies
    // (a FATAL in recovery). pg_ctl hands -o to the postmaster through
    // /bin/sh: the path is quoted for it.
    const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
    const opts = `-c config_file=${shellWord(this.configFile)}`;
    const r = await this.runAsServer(pgCtl, ['start', '-D', this.pgdata, '-l', this.log, '-w', '-t', String(secs), '-o', opts], timeoutMs + 10_000);
    if (r.code !== 0) {
      const why = serverLogProblem(await this.readLog());
      if (!(await this.postmasterPid())) {
        throw new DrillFailure(`PostgreSQL did not start on the restored data: ${why ?? programErrorLine(r.out)}`, EXIT.CHECK_FAILED);
      }
      throw new DrillFailure(`PostgreSQL did not accept connections within ${secs} s (--timeout)${why ? `: ${why}` : ''}`, EXIT.CHECK_FAILED);
    }
  }

  async readLog(): Promise<string> {
    return readFile(this.log, 'utf8').catch(() => '');
  }

  /** The running postmaster's pid, if any. */
  async postmasterPid(): Promise<number | undefined> {
    try {
      const pid = Number((await readFile(join(this.pgdata, 'postmaster.pid'), 'utf8')).split('\n')[0]);
      if (!Number.isInteger(pid) || pid <= 0) return undefined;
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  }

  private stopping: Promise<void> | undefined;

  /** Immediate stop (nothing of a scratch copy is worth a checkpoint); a postmaster that outlives it is killed. Once. */
  stop(pgCtl: string | undefined): Promise<void> {
    this.stopping ??= this.stopNow(pgCtl);
    return this.stopping;
  }

  private async stopNow(pgCtl: string | undefined): Promise<void> {
    if (!this.started) return;
    const pid = await this.postmasterPid();
    if (pid === undefined) return;
    if (pgCtl) await this.runAsServer(pgCtl, ['stop', '-D', this.pgdata, '-m', 'immediate', '-w', '-t', '30'], 40_000);
    for (let i = 0; i < 50 && (await this.postmasterPid()) !== undefined; i++) await sleep(100);
    const left = await this.postmasterPid();
    if (left !== undefined) {
      // The postmaster's children exit when it does (they watch its pipe).
      try {
        process.kill(left, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      for (let i = 0; i < 50 && (await this.postmasterPid()) !== undefined; i++) await sleep(100);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What a scratch server's log says went wrong: its FATAL and PANIC lines
 * (the last three, joined), without the log line prefix; a FATAL that a
 * configuration file "contains errors" carries the lines before it that say
 * which (LOG: could not open configuration file …, unrecognized parameter
 * …). Without any, the log's last non-empty line (a postmaster that cannot
 * read its configuration file says so without a FATAL). Undefined for an
 * empty log.
 */
export function serverLogProblem(log: string): string | undefined {
  const lines = log.split('\n').map((l) => l.trim().replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[\d+\] /, '')).filter((l) => l !== '');
  const problems: string[] = [];
  let from = 0;
  lines.forEach((l, i) => {
    if (!/^(FATAL|PANIC):/.test(l)) return;
    const why = /contains errors/.test(l) ? lines.slice(from, i).filter((x) => /^(LOG|ERROR):/.test(x)).slice(-3) : [];
    problems.push(why.length > 0 ? `${l} (${why.join('; ')})` : l);
    from = i + 1;
  });
  if (problems.length > 0) return problems.slice(-3).join(' | ').replace(/\s+/g, ' ');
  return lines.at(-1);
}

/**
 * Polls the server until it is out of recovery (promotion ends a moment
 * after pg_ctl sees it ready) and reads the newest commit replayed
 * (pg_last_xact_replay_timestamp() stays at the last replayed commit after
 * promotion). The postmaster dying (a FATAL during recovery) or the deadline
 * passing are drill failures.
 */
export async function waitForPromotion(scratch: Scratch, user: string, db: string, deadline: number, timeoutMs: number, signal: AbortSignal): Promise<Date | null> {
  let newest: Date | null = null;
  let client: Awaited<ReturnType<typeof connectScratch>> | undefined;
  try {
    for (;;) {
      signal.throwIfAborted();
      if ((await scratch.postmasterPid()) === undefined) {
        const why = serverLogProblem(await scratch.readLog());
        throw new DrillFailure(`PostgreSQL stopped during recovery${why ? `: ${why}` : ''}`, EXIT.CHECK_FAILED);
      }
      try {
        client ??= await connectScratch(scratch.address(user), db);
        const r = await client.query<{ rec: boolean; ts: Date | null }>('select pg_is_in_recovery() rec, pg_last_xact_replay_timestamp() ts');
        const row = r.rows[0]!;
        if (row.ts !== null) newest = row.ts;
        if (!row.rec) return newest;
      } catch (err) {
        // A server restarting its connections (promotion) is retried; a role
        // or database that does not exist is not.
        if (isCairnError(err, 'PG_CONNECT') && /does not exist/.test(err.message)) throw new DrillFailure(err.message + `; ${err.hint}`, EXIT.CONFIG);
        await client?.end().catch(() => {});
        client = undefined;
      }
      if (Date.now() > deadline) throw new DrillFailure(`recovery did not reach the target and promote within ${Math.round(timeoutMs / 1000)} s (--timeout)`, EXIT.CHECK_FAILED);
      await sleep(250);
    }
  } finally {
    await client?.end().catch(() => {});
  }
}
