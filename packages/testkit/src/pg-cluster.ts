// Real PostgreSQL clusters for tests: initdb -k in a temp dir, their own port and
// socket dir, run as the pg user, torn down by runCleanups() or at process exit.
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { appendFile, chown, mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import type { Client } from 'pg';
import { isSegmentName } from '@cairn/core/wal/file-name';
import { onCleanup } from './cleanup.js';
import { binDirMajor, pgBinDir, serverBinDir } from './paths.js';
import { freePort } from './ports.js';
import { pgUser, runAsMe, runAsPg, spawnAsPg } from './run-as.js';
import { chownToPgUser, makeTempDir, onExitSync, removeTempDir } from './tmp.js';

export interface ClusterOptions {
  /** Shown in errors and as cluster_name in `ps`; default pg1, pg2, … */
  name?: string;
  /** Sets archive_mode = on and this archive_command; without it archive_mode = off. */
  archiveCommand?: string;
  /** e.g. '1s': forces a segment switch after that long with WAL activity. */
  archiveTimeout?: string;
  restoreCommand?: string;
  /** More postgresql.conf settings; they win over the harness defaults. */
  conf?: Record<string, string>;
  /** Default true. false: an empty data dir to restore a base backup into, then setConf/writeFile/start. */
  initdb?: boolean;
  /** Extra environment of the server, inherited by archive_command/restore_command (AWS_*, CAIRN_*, …). */
  env?: Record<string, string>;
  /** initdb --wal-segsize in MB; default 16. */
  walSegSizeMb?: number;
  /** Fixed port instead of a free one. */
  port?: number;
  /** initdb -U: the bootstrap superuser's name; default the OS user the server runs as (a packaged cluster's is postgres whoever backs it up). */
  superuser?: string;
  /**
   * The packaged layout (Debian's /etc/postgresql/<v>/<name>, NixOS's -c
   * config_file=): postgresql.conf, pg_hba.conf and pg_ident.conf live in
   * `<dir>/etc`, not in PGDATA; postgresql.conf names data_directory,
   * hba_file and ident_file and has `include_dir = 'conf.d'`, where
   * `confD` goes (as conf.d/cairn-test.conf). The server starts with
   * -c config_file=.
   */
  externalConfig?: { confD?: Record<string, string> };
  /**
   * The server's major version: its initdb, pg_ctl and postgres
   * (paths.ts serverBinDir: 16–18 from the npm package the bootstrap
   * installs); default the machine's server (Debian's 15 here).
   */
  major?: number;
}

export interface StartOptions {
  /** Wait until the server accepts connections (pg_ctl -w); default true. */
  wait?: boolean;
  /** pg_ctl -t; default 60. */
  timeoutSec?: number;
}

export type StopMode = 'fast' | 'immediate' | 'smart';

export interface Cluster {
  readonly name: string;
  /** The data directory (owned by the pg user, 0700). */
  readonly pgdata: string;
  /** May change if start() had to retry on a port taken by someone else. */
  readonly port: number;
  readonly host: '127.0.0.1';
  readonly socketDir: string;
  /** The bootstrap superuser (trust auth on 127.0.0.1 and the socket). */
  readonly superuser: string;
  /** initdb, pg_ctl and postgres of the server's major version. */
  readonly bindir: string;
  /** With externalConfig: the directory holding postgresql.conf, pg_hba.conf and pg_ident.conf. */
  readonly configDir: string | undefined;
  /** psql, pgbench, pg_basebackup, pg_dump, pg_amcheck: the default installation's (15's work against newer servers, except pg_dump and pg_basebackup). */
  readonly clientBindir: string;
  /** The server's major version (16 for 16.14). */
  readonly major: number;
  /** PGHOST, PGPORT, PGUSER, PGDATABASE for client processes (TCP to 127.0.0.1). */
  readonly env: Record<string, string>;
  /** The server's log (pg_ctl -l); see serverLog(). */
  readonly logFile: string;
  /** Start and (by default) wait until ready; throws with the last 30 log lines on failure. */
  start(opts?: StartOptions): Promise<void>;
  /** pg_ctl stop -m mode (default fast) and wait; a no-op when not running. */
  stop(mode?: StopMode): Promise<void>;
  /** Fast stop, then start. */
  restart(): Promise<void>;
  /** Re-read the configuration files (pg_ctl reload). */
  reload(): Promise<void>;
  /** Is the postmaster of this data dir alive? */
  isRunning(): Promise<boolean>;
  /** Run SQL through psql -XAtq -v ON_ERROR_STOP=1 (statements from stdin); trimmed stdout. */
  psql(sql: string, opts?: { db?: string }): Promise<string>;
  /** Rows of one statement through node-postgres (int8/numeric come back as strings). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[], opts?: { db?: string }): Promise<T[]>;
  /** A connected node-postgres client for session-bound work (ended on cleanup if the test forgets). */
  connect(opts?: { db?: string }): Promise<Client>;
  /** pgbench with the client env (database from PGDATABASE unless args name one); its stdout. */
  pgbench(args: string[]): Promise<string>;
  /**
   * pg_basebackup -D targetDir as the pg user; adds `-X none` and `-c fast` unless
   * extraArgs choose a WAL method / checkpoint mode. With -X none it waits until
   * the backup's last WAL segment is archived.
   */
  basebackup(targetDir: string, extraArgs?: string[]): Promise<void>;
  /** pg_basebackup -D - -Ft (-X none, -c fast unless given) as a process whose stdout is the tar stream. */
  spawnBasebackupTar(extraArgs?: string[]): ChildProcess;
  /** Append settings to postgresql.auto.conf (last one wins); call reload()/restart() to apply to a running server. */
  setConf(settings: Record<string, string>): Promise<void>;
  /** Write a file under pgdata as the pg user (mode 0600), e.g. 'recovery.signal'. */
  writeFile(relPath: string, content: string | Buffer): Promise<void>;
  /** Until `walName` is archived (pg_stat_archiver.last_archived_wal ≥ it, or its .done file). */
  waitForArchived(walName: string, timeoutMs?: number): Promise<void>;
  /** Until pg_is_in_recovery() is false; fails at once if the server stops. */
  waitForRecoveryEnd(timeoutMs?: number): Promise<void>;
  /** The whole server log so far ('' before the first start). */
  serverLog(): Promise<string>;
  /** Its last lines, for error messages. */
  serverLogTail(lines?: number): Promise<string>;
  /** Immediate stop (kill if that fails) and rm -rf of all its dirs; safe to call twice. */
  destroy(): Promise<void>;
}

const DEFAULT_CONF: Record<string, string> = {
  wal_level: 'replica',
  max_wal_senders: '4',
  // Keep durability real: the tools under test promise "durably stored".
  fsync: 'on',
  shared_buffers: '32MB',
  max_connections: '30',
  log_min_messages: 'warning',
  logging_collector: 'off',
};

let clusterCount = 0;
const liveClusters = new Set<PgCluster>();

onExitSync(() => {
  for (const c of liveClusters) c.killSync();
});

/** A postgresql.conf value, single-quoted unless it already is. */
function confValue(v: string): string {
  if (/^'.*'$/s.test(v)) return v;
  return `'${v.replaceAll("'", "''")}'`;
}

function confLines(settings: Record<string, string>): string {
  return Object.entries(settings)
    .map(([k, v]) => `${k} = ${confValue(v)}\n`)
    .join('');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function readPid(pgdata: string): number | undefined {
  try {
    const first = readFileSync(join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Is `pid` alive and a postgres running on `pgdata` (guards against a stale pid file and pid reuse)? */
function postmasterAlive(pid: number, pgdata: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(pgdata);
  } catch {
    return existsSync(`/proc/${pid}`) || !existsSync('/proc/self');
  }
}

class PgCluster implements Cluster {
  readonly host = '127.0.0.1' as const;
  readonly superuser: string;
  readonly bindir: string;
  readonly clientBindir = pgBinDir();
  readonly major: number;
  readonly pgdata: string;
  readonly socketDir: string;
  readonly logFile: string;
  readonly configDir: string | undefined;
  port: number;
  private adopted = false;
  private destroyed = false;
  private unregister: () => void = () => {};

  constructor(
    readonly name: string,
    private readonly dir: string,
    port: number,
    private readonly opts: ClusterOptions,
  ) {
    this.pgdata = join(dir, 'data');
    this.socketDir = join(dir, 'sock');
    this.logFile = join(dir, 'server.log');
    this.port = port;
    this.superuser = opts.superuser ?? pgUser().name;
    this.configDir = opts.externalConfig ? join(dir, 'etc') : undefined;
    this.bindir = serverBinDir(opts.major);
    this.major = binDirMajor(this.bindir);
  }

  get env(): Record<string, string> {
    return { PGHOST: this.host, PGPORT: String(this.port), PGUSER: this.superuser, PGDATABASE: 'postgres' };
  }

  /** Environment of pg_ctl and so of the postmaster and its archive/restore commands. */
  private get serverEnv(): Record<string, string> {
    return { ...this.opts.env, PGDATA: this.pgdata };
  }

  private bin(tool: string): string {
    return join(this.bindir, tool);
  }

  private clientBin(tool: string): string {
    return join(this.clientBindir, tool);
  }

  /** Settings this harness owns, per the cluster's options. */
  harnessConf(): Record<string, string> {
    const o = this.opts;
    const conf: Record<string, string> = {
      ...DEFAULT_CONF,
      cluster_name: this.name,
      listen_addresses: this.host,
      port: String(this.port),
      unix_socket_directories: this.socketDir,
      archive_mode: o.archiveCommand !== undefined ? 'on' : 'off',
    };
    if (o.archiveCommand !== undefined) conf['archive_command'] = o.archiveCommand;
    if (o.archiveTimeout !== undefined) conf['archive_timeout'] = o.archiveTimeout;
    if (o.restoreCommand !== undefined) conf['restore_command'] = o.restoreCommand;
    return { ...conf, ...o.conf };
  }

  register(): void {
    liveClusters.add(this);
    this.unregister = onCleanup(() => this.destroy());
  }

  async initdb(): Promise<void> {
    const segsize = this.opts.walSegSizeMb ?? 16;
    await runAsPg(this.bin('initdb'), [
      '-D', this.pgdata,
      '-k', // data checksums: tools must cope with them as in production
      '--auth=trust',
      '-U', this.superuser,
      '-E', 'UTF8',
      '--locale=C',
      `--wal-segsize=${segsize}`,
      '--no-instructions',
    ], { timeoutMs: 120_000 });
    await this.appendAsPg('postgresql.conf', `\n# cairn test harness\n${confLines(this.harnessConf())}`);
    if (this.configDir !== undefined) await this.moveConfigOut(this.configDir, this.opts.externalConfig?.confD ?? {});
    this.adopted = true;
  }

  /** The packaged layout: the three files out of PGDATA, into `etc`, with conf.d. */
  private async moveConfigOut(etc: string, confD: Record<string, string>): Promise<void> {
    await mkdir(join(etc, 'conf.d'), { recursive: true, mode: 0o755 });
    for (const f of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf']) await rename(join(this.pgdata, f), join(etc, f));
    await appendFile(join(etc, 'postgresql.conf'), `\n# cairn test harness: the packaged layout\n${confLines({
      data_directory: this.pgdata, hba_file: join(etc, 'pg_hba.conf'), ident_file: join(etc, 'pg_ident.conf'),
    })}include_dir = 'conf.d'\n`);
    await writeFile(join(etc, 'conf.d', 'cairn-test.conf'), confLines(confD));
    await chownToPgUser(etc);
  }

  /**
   * First use of a data dir that was restored rather than initdb'd: it carries
   * the source's configuration, so this cluster's settings go into
   * postgresql.auto.conf (which wins over postgresql.conf); later setConf()
   * lines append after them and win in turn.
   */
  private async adopt(): Promise<void> {
    if (this.adopted) return;
    if (!existsSync(join(this.pgdata, 'PG_VERSION'))) {
      throw new Error(`cluster "${this.name}" has no data in "${this.pgdata}"\nhint: restore a base backup into it first`);
    }
    // Files restored by a tool running as root must still belong to the server's user.
    await chownToPgUser(this.pgdata);
    await this.appendAsPg('postgresql.auto.conf', `\n# cairn test harness\n${confLines(this.harnessConf())}`);
    this.adopted = true;
  }

  private async appendAsPg(relPath: string, text: string): Promise<void> {
    const p = join(this.pgdata, relPath);
    const existed = existsSync(p);
    await appendFile(p, text, { mode: 0o600 });
    if (!existed) await chownToPgUser(p, { recursive: false });
  }

  /**
   * Options that must hold whatever the config files say (a restored data dir
   * names its source's port and socket dir): command-line settings beat them.
   */
  private identityOpts(): string {
    // pg_ctl pastes this string into a /bin/sh command line: quote for the shell.
    const sh = (v: string) => `'${v.replaceAll("'", "'\\''")}'`;
    // The packaged layout: its config_file, and (a data dir restored with
    // its source's files, which name the source's paths) this cluster's own
    // data directory, hba and ident files.
    const etc = this.configDir;
    const config = etc === undefined ? '' : [
      `config_file=${join(etc, 'postgresql.conf')}`, `data_directory=${this.pgdata}`, `hba_file=${join(etc, 'pg_hba.conf')}`, `ident_file=${join(etc, 'pg_ident.conf')}`,
    ].map((c) => ` -c ${sh(c)}`).join('');
    return `-p ${this.port} -c listen_addresses=${this.host} -c ${sh(`unix_socket_directories=${this.socketDir}`)}${config}`;
  }

  async start(opts: StartOptions = {}): Promise<void> {
    this.assertAlive();
    await this.adopt();
    const wait = opts.wait ?? true;
    const timeoutSec = opts.timeoutSec ?? 60;
    for (let attempt = 1; ; attempt++) {
      const logOffset = existsSync(this.logFile) ? statSync(this.logFile).size : 0;
      const r = await runAsPg(
        this.bin('pg_ctl'),
        ['start', '-D', this.pgdata, '-l', this.logFile, '-o', this.identityOpts(), wait ? '-w' : '-W', '-t', String(timeoutSec)],
        { env: this.serverEnv, allowFail: true, timeoutMs: (timeoutSec + 30) * 1000 },
      );
      if (r.code === 0) return;
      const newLog = await this.readLogFrom(logOffset);
      // Another process may have bound our port between freePort() and now.
      if (attempt < 3 && !this.opts.port && /could not bind IPv4 address|Address already in use/.test(newLog)) {
        this.port = await freePort();
        continue;
      }
      throw new Error(
        `cluster "${this.name}" did not start (pg_ctl exit ${r.code})\n${(r.stdout + r.stderr).trim()}\n` +
          `--- last 30 lines of ${this.logFile} ---\n${tail(newLog || (await this.serverLog()), 30)}`,
      );
    }
  }

  private async readLogFrom(offset: number): Promise<string> {
    try {
      const fh = await open(this.logFile, 'r');
      try {
        const { size } = await fh.stat();
        const buf = Buffer.alloc(Math.max(0, size - offset));
        await fh.read(buf, 0, buf.length, offset);
        return buf.toString('utf8');
      } finally {
        await fh.close();
      }
    } catch {
      return '';
    }
  }

  async stop(mode: StopMode = 'fast'): Promise<void> {
    if (!(await this.isRunning())) return;
    const r = await runAsPg(this.bin('pg_ctl'), ['stop', '-D', this.pgdata, '-m', mode, '-w', '-t', '60'], {
      env: this.serverEnv,
      allowFail: true,
      timeoutMs: 90_000,
    });
    if (r.code !== 0 && (await this.isRunning())) {
      throw new Error(
        `cluster "${this.name}" did not stop (${mode}, pg_ctl exit ${r.code})\n${r.stderr.trim()}\n` +
          `--- last 30 lines of ${this.logFile} ---\n${await this.serverLogTail(30)}`,
      );
    }
  }

  async restart(): Promise<void> {
    await this.stop('fast');
    await this.start();
  }

  async reload(): Promise<void> {
    await runAsPg(this.bin('pg_ctl'), ['reload', '-D', this.pgdata], { env: this.serverEnv });
  }

  async isRunning(): Promise<boolean> {
    const pid = readPid(this.pgdata);
    return pid !== undefined && postmasterAlive(pid, this.pgdata);
  }

  async psql(sql: string, opts: { db?: string } = {}): Promise<string> {
    const r = await runAsMe(
      this.clientBin('psql'),
      ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', opts.db ?? 'postgres', '-f', '-'],
      { env: this.env, input: sql, timeoutMs: 300_000 },
    );
    return r.stdout.trim();
  }

  async connect(opts: { db?: string } = {}): Promise<Client> {
    const { default: pg } = await import('pg');
    const client = new pg.Client({
      host: this.host,
      port: this.port,
      user: this.superuser,
      database: opts.db ?? 'postgres',
      connectionTimeoutMillis: 10_000,
      ssl: false, // whatever PGSSLMODE the runner has: the test server speaks plain TCP
    });
    await client.connect();
    const unregister = onCleanup(() => client.end().catch(() => {}));
    client.once('end', unregister);
    return client;
  }

  async query<T = Record<string, unknown>>(sql: string, params?: unknown[], opts: { db?: string } = {}): Promise<T[]> {
    const client = await this.connect(opts);
    try {
      const res = await client.query(sql, params);
      return res.rows as T[];
    } finally {
      await client.end();
    }
  }

  async pgbench(args: string[]): Promise<string> {
    const r = await runAsMe(this.clientBin('pgbench'), args, { env: this.env, timeoutMs: 600_000 });
    return r.stdout;
  }

  private basebackupArgs(extraArgs: string[]): string[] {
    const has = (...flags: string[]) => extraArgs.some((a) => flags.some((f) => a === f || a.startsWith(`${f}=`) || (f.length === 2 && a.startsWith(f))));
    const args = [...extraArgs];
    if (!has('-X', '--wal-method')) args.push('-X', 'none');
    if (!has('-c', '--checkpoint')) args.push('-c', 'fast');
    return args;
  }

  async basebackup(targetDir: string, extraArgs: string[] = []): Promise<void> {
    await runAsPg(this.clientBin('pg_basebackup'), ['-D', targetDir, ...this.basebackupArgs(extraArgs)], {
      env: this.env,
      timeoutMs: 600_000,
    });
  }

  spawnBasebackupTar(extraArgs: string[] = []): ChildProcess {
    return spawnAsPg(this.clientBin('pg_basebackup'), ['-D', '-', '-Ft', ...this.basebackupArgs(extraArgs)], {
      env: this.env,
    });
  }

  async setConf(settings: Record<string, string>): Promise<void> {
    await this.adopt();
    await this.appendAsPg('postgresql.auto.conf', confLines(settings));
  }

  async writeFile(relPath: string, content: string | Buffer): Promise<void> {
    const rel = normalize(relPath);
    if (isAbsolute(rel) || rel.startsWith('..')) throw new Error(`path "${relPath}" is not inside the data directory`);
    const p = join(this.pgdata, rel);
    const parent = dirname(p);
    if (!existsSync(parent)) {
      await mkdir(parent, { recursive: true, mode: 0o700 });
      await chownToPgUser(this.pgdata);
    }
    await writeFile(p, content, { mode: 0o600 });
    if (process.getuid?.() === 0) await chown(p, pgUser().uid, pgUser().gid);
  }

  async waitForArchived(walName: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const isSegment = isSegmentName(walName);
    let last = '';
    for (;;) {
      if (existsSync(join(this.pgdata, 'pg_wal', 'archive_status', `${walName}.done`))) return;
      if (await this.isRunning()) {
        try {
          const rows = await this.query<{ last_archived_wal: string | null; failed_count: string; last_failed_wal: string | null }>(
            'select last_archived_wal, failed_count::text, last_failed_wal from pg_stat_archiver',
          );
          const row = rows[0];
          last = JSON.stringify(row);
          const archived = row?.last_archived_wal ?? '';
          if (archived === walName) return;
          // Segment names of one system sort in WAL order (timeline first).
          if (isSegment && isSegmentName(archived) && archived >= walName) return;
        } catch {
          // starting up or shutting down: look again
        }
      }
      if (Date.now() > deadline) {
        throw new Error(
          `"${walName}" not archived by cluster "${this.name}" within ${timeoutMs} ms (pg_stat_archiver: ${last || 'n/a'})\n` +
            `--- last 30 lines of ${this.logFile} ---\n${await this.serverLogTail(30)}`,
        );
      }
      await sleep(100);
    }
  }

  async waitForRecoveryEnd(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastErr = '';
    for (;;) {
      if (!(await this.isRunning())) {
        throw new Error(
          `cluster "${this.name}" stopped during recovery\n--- last 30 lines of ${this.logFile} ---\n${await this.serverLogTail(30)}`,
        );
      }
      try {
        const out = await runAsMe(
          this.clientBin('psql'),
          ['-XAtq', '-d', 'postgres', '-c', 'select pg_is_in_recovery()'],
          { env: { ...this.env, PGCONNECT_TIMEOUT: '2' }, timeoutMs: 10_000 },
        );
        if (out.stdout.trim() === 'f') return;
        lastErr = 'still in recovery';
      } catch (err) {
        lastErr = (err as Error).message.split('\n').slice(-1)[0] ?? '';
      }
      if (Date.now() > deadline) {
        throw new Error(
          `cluster "${this.name}" still not out of recovery after ${timeoutMs} ms (${lastErr})\n` +
            `--- last 30 lines of ${this.logFile} ---\n${await this.serverLogTail(30)}`,
        );
      }
      await sleep(200);
    }
  }

  async serverLog(): Promise<string> {
    try {
      return await readFile(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  async serverLogTail(lines = 30): Promise<string> {
    return tail(await this.serverLog(), lines);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.unregister();
    try {
      if (await this.isRunning()) {
        await runAsPg(this.bin('pg_ctl'), ['stop', '-D', this.pgdata, '-m', 'immediate', '-w', '-t', '30'], {
          env: this.serverEnv,
          allowFail: true,
          timeoutMs: 45_000,
        });
      }
      const pid = readPid(this.pgdata);
      if (pid !== undefined && postmasterAlive(pid, this.pgdata)) {
        process.kill(pid, 'SIGKILL');
        for (let i = 0; i < 100 && postmasterAlive(pid, this.pgdata); i++) await sleep(50);
      }
    } finally {
      liveClusters.delete(this);
      await removeTempDir(this.dir);
    }
  }

  /** Last resort at process exit, synchronous: immediate shutdown (SIGQUIT), SIGKILL after 5 s, rm -rf. */
  killSync(): void {
    const pid = readPid(this.pgdata);
    if (pid === undefined || !postmasterAlive(pid, this.pgdata)) return;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    try {
      process.kill(pid, 'SIGQUIT');
      for (let i = 0; i < 100 && postmasterAlive(pid, this.pgdata); i++) Atomics.wait(nap, 0, 0, 50);
      if (postmasterAlive(pid, this.pgdata)) process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }

  private assertAlive(): void {
    if (this.destroyed) throw new Error(`cluster "${this.name}" was destroyed`);
  }
}

/**
 * Make a cluster: a pg-owned dir holding data/, sock/ and server.log, a free
 * port, and (unless `initdb: false`) an initdb'd data dir with the harness
 * settings in postgresql.conf. Not started: call start(). Registered with
 * onCleanup so destroy() runs even if the test fails.
 */
export async function createCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const name = opts.name ?? `pg${++clusterCount}`;
  // Short prefix: the socket path (dir + "/.s.PGSQL.<port>") must fit in 107 bytes.
  const dir = await makeTempDir(`cl-${name.slice(0, 16)}`, { owner: 'pg', register: false });
  const port = opts.port ?? (await freePort());
  const cluster = new PgCluster(name, dir, port, opts);
  cluster.register();
  if (Buffer.byteLength(join(cluster.socketDir, '.s.PGSQL.65535')) > 107) {
    await cluster.destroy();
    throw new Error(`socket path under "${cluster.socketDir}" is too long for a unix socket\nhint: point TMPDIR at a shorter directory`);
  }
  try {
    for (const sub of [cluster.socketDir, cluster.pgdata]) {
      if (sub === cluster.pgdata && opts.initdb !== false) continue; // initdb creates it
      await mkdir(sub, { mode: 0o700 });
      await chownToPgUser(sub);
    }
    if (opts.initdb !== false) await cluster.initdb();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}

/** Pids of processes whose command line mentions `path` (tests use it to prove nothing is left behind). */
export function processesMentioning(path: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(path)) pids.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}
