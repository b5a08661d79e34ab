// A minimal PostgreSQL server handle for the bench: a data dir run by the pg
// user on its own port and socket dir, configured through postgresql.auto.conf
// (the last setting wins), with a polling client that never holds a
// connection the server under test would notice.

import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chownPg, freePort, liveServers, makeDir, PG_BIN, pgUser, run, sleep, start } from './proc.mjs';

const requireFromRoot = createRequire(new URL('../../../package.json', import.meta.url));
const pg = requireFromRoot('pg');

const confValue = (v) => `'${String(v).replaceAll("'", "''")}'`;

export class Server {
  /**
   * @param name  label (cluster_name, dir name)
   * @param pgdata  an existing data dir, or undefined for <dir>/data (initdb creates it)
   */
  constructor(name, { pgdata, env = {} } = {}) {
    this.name = name;
    this.dir = makeDir(`srv-${name}`);
    this.pgdata = pgdata ?? join(this.dir, 'data');
    this.socketDir = makeDir(`srv-${name}/sock`);
    this.logFile = join(this.dir, 'server.log');
    this.env = env;
    this.port = undefined;
  }

  bin(tool) {
    return join(PG_BIN, tool);
  }

  async initdb() {
    await run(this.bin('initdb'), ['-D', this.pgdata, '-k', '-U', pgUser.name, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-instructions'], {
      asPg: true,
    });
  }

  /** Appends settings to postgresql.auto.conf (wins over postgresql.conf and earlier lines). */
  setConf(settings) {
    const file = join(this.pgdata, 'postgresql.auto.conf');
    const existed = existsSync(file);
    appendFileSync(file, '\n' + Object.entries(settings).map(([k, v]) => `${k} = ${confValue(v)}`).join('\n') + '\n');
    if (!existed) chownPg(file);
  }

  writeFile(rel, content) {
    const p = join(this.pgdata, rel);
    writeFileSync(p, content, { mode: 0o600 });
    chownPg(p);
  }

  /** Its own port, socket dir and name; call before the first start. */
  async configure(settings = {}) {
    this.port ??= await freePort();
    this.setConf({
      listen_addresses: '127.0.0.1',
      port: String(this.port),
      unix_socket_directories: this.socketDir,
      cluster_name: this.name,
      ...settings,
    });
  }

  /**
   * pg_ctl start. wait = false returns as soon as the postmaster is forked
   * (the caller times from here and polls).
   */
  async start({ wait = true, timeoutSec = 120 } = {}) {
    liveServers.add(this.pgdata);
    await run(this.bin('pg_ctl'), ['start', '-D', this.pgdata, '-l', this.logFile, wait ? '-w' : '-W', '-t', String(timeoutSec)], {
      asPg: true,
      env: { ...this.env, PGDATA: this.pgdata },
      timeoutMs: (timeoutSec + 30) * 1000,
    }).catch(async (err) => {
      throw new Error(`${err.message}\n--- ${this.name} log tail ---\n${this.logTail(30)}`);
    });
  }

  async stop(mode = 'fast') {
    if (!this.running()) {
      liveServers.delete(this.pgdata);
      return;
    }
    await run(this.bin('pg_ctl'), ['stop', '-D', this.pgdata, '-m', mode, '-w', '-t', '300'], { asPg: true, allowFail: true });
    liveServers.delete(this.pgdata);
  }

  async reload() {
    await run(this.bin('pg_ctl'), ['reload', '-D', this.pgdata], { asPg: true });
  }

  /** Is the postmaster of this data dir alive? */
  running() {
    try {
      const pid = Number(readFileSync(join(this.pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 0);
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(this.pgdata);
    } catch {
      return false;
    }
  }

  clientEnv() {
    return { PGHOST: this.socketDir, PGPORT: String(this.port), PGUSER: pgUser.name, PGDATABASE: 'postgres' };
  }

  async psql(sql) {
    const r = await run(this.bin('psql'), ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql], { asPg: true, env: this.clientEnv() });
    return r.stdout.trim();
  }

  async connect() {
    const c = new pg.Client({
      host: this.socketDir,
      port: this.port,
      user: pgUser.name,
      database: 'postgres',
      connectionTimeoutMillis: 2000,
    });
    c.on('error', () => {}); // the server going away under us is expected at stop
    await c.connect();
    return c;
  }

  /**
   * Polls `sql` every `everyMs` (reconnecting while the server is still
   * starting) until `done(row)` holds; returns the elapsed ms since `t0`.
   * Fails fast if the postmaster dies, and after timeoutMs.
   */
  async pollUntil(sql, done, { t0, everyMs = 100, timeoutMs = 300_000, onTick } = {}) {
    let client;
    try {
      for (;;) {
        const now = performance.now();
        if (now - t0 > timeoutMs) {
          const err = new Error(`${this.name}: not done after ${(timeoutMs / 1000).toFixed(0)} s`);
          err.timeout = true;
          throw err;
        }
        if (!client) {
          try {
            client = await this.connect();
          } catch {
            client = undefined;
            if (!this.running() && now - t0 > 3000) {
              throw new Error(`${this.name}: the server stopped\n--- log tail ---\n${this.logTail(30)}`);
            }
          }
        }
        if (client) {
          try {
            const { rows } = await client.query(sql);
            if (done(rows[0])) return performance.now() - t0;
            onTick?.(rows[0]);
          } catch {
            await client.end().catch(() => {});
            client = undefined;
          }
        }
        await sleep(everyMs);
      }
    } finally {
      await client?.end().catch(() => {});
    }
  }

  log() {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  logTail(lines = 20) {
    return this.log().trimEnd().split('\n').slice(-lines).join('\n');
  }
}

/**
 * A started server archiving with `walPush` (cairn-wal-push) to the
 * repositories `env` names, holding pgbench's tables at `scale`, after a
 * checkpoint: the source of the backup benches.
 */
export async function startPgbenchSource(name, env, walPush, scale, say) {
  const srv = new Server(name, { env: { ...env, CAIRN_SPOOL_DIR: makeDir('spool') } });
  await srv.initdb();
  await srv.configure();
  srv.setConf({ archive_mode: 'on', archive_command: `${walPush} %p %f`, wal_level: 'replica', max_wal_size: '4GB', autovacuum: 'off', log_min_messages: 'warning' });
  await srv.start();
  say(`pgbench -i -s ${scale}`);
  await run(join(PG_BIN, 'pgbench'), ['-i', '-s', String(scale), '-q'], { asPg: true, env: srv.clientEnv(), timeoutMs: 3600_000 });
  await srv.psql('checkpoint');
  return srv;
}
