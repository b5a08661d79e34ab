// What one planner holds and how long it takes on a backup of N files
// (issue 19), run in a child process of files.mjs so its peak RSS is its
// own: `node files-sim.mjs PLANNER REPO_DIR N`. The repository is a real
// file repository with a generated manifest; the N data objects the manifest
// names are not on disk but appear in every listing (a synthetic listing
// merged into the file driver's, in key order), so planners that list the
// backup meet a million objects too, and every read of one returns the same
// stored object (STORED_FILE, whose SHA-256 the manifest records), so the
// restore decodes and checks real data. Prints one JSON line:
// { planner, files, seconds, cpuSeconds, maxRssMB, detail }.

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { FsDriver } from '@cairn/core/storage/fs';
import { DATA_KEY, SIM, STORED_FILE } from './lib/files-gen.mjs';

const [planner, repoDir, nText] = process.argv.slice(2);
const n = Number(nText);

/** The file driver at `repoDir`, with the N data objects of the generated backup added to its listings. */
function simulatedDriver(dir, count) {
  const fs = new FsDriver(dir);
  const dataPrefix = `${SIM.cluster}/backups/${SIM.id}/data/`;
  async function* synthetic(prefix) {
    // Data keys all lie below dataPrefix: a listing sees them when its prefix covers them.
    if (!(dataPrefix.startsWith(prefix) || prefix.startsWith(dataPrefix))) return;
    const mtime = new Date(SIM.mtime * 1000);
    for (let i = 0; i < count; i++) {
      const key = DATA_KEY(i);
      if (key.startsWith(prefix)) yield { key, size: SIM.storedSize, mtime };
    }
  }
  const isData = (key) => key.startsWith(dataPrefix);
  return new Proxy(fs, {
    get(target, prop, recv) {
      // The data objects' content: the one stored object every file of the backup has.
      if (prop === 'readSmall') return async (key, signal) => (isData(key) ? STORED_FILE : target.readSmall(key, signal));
      if (prop === 'read') return async (key, signal) => (isData(key) ? Readable.from([STORED_FILE]) : target.read(key, signal));
      if (prop !== 'list') {
        const v = Reflect.get(target, prop, recv);
        return typeof v === 'function' ? v.bind(target) : v;
      }
      return async function* list(prefix, signal) {
        // Merge two key-ordered listings (the real one is small: manifests, WAL, repo.json).
        const real = [];
        for await (const o of target.list(prefix, signal)) real.push(o);
        let r = 0;
        for await (const o of synthetic(prefix)) {
          while (r < real.length && real[r].key < o.key) yield real[r++];
          yield o;
        }
        while (r < real.length) yield real[r++];
      };
    },
  });
}

const signal = new AbortController().signal;
const driver = simulatedDriver(repoDir, n);
const now = new Date(SIM.now);
/** restore-plan's plan, which the restore runs take as cairn-restore --plan FILE does. */
const PLAN_FILE = `${repoDir}.plan.json`;

async function makePlan() {
  const { planFromRepository } = await import('@cairn/core/restore/load-plan');
  return await planFromRepository(driver, { cluster: SIM.cluster, key: undefined, target: { kind: 'immediate', timeline: 'current', action: 'promote', inclusive: true }, now, signal });
}

/**
 * cairn-restore's restore() (tools/restore/src/restore.ts) itself, on the
 * plan restore-plan wrote, into a fresh directory; the data files' writes
 * stubbed (lib/files-stub-writer.mjs). With `delta`, the directory first
 * holds PG_VERSION and a file the backup lacks, so the --delta sweep walks
 * the manifest beside it and every file is looked for (lstat) before it is fetched.
 */
async function realRestore(delta) {
  const { parsePlan } = await import('@cairn/core/restore/parse-plan');
  const plan = existsSync(PLAN_FILE) ? parsePlan(readFileSync(PLAN_FILE, 'utf8'), PLAN_FILE) : await makePlan();
  const pgdata = `${repoDir}.pgdata`;
  rmSync(pgdata, { recursive: true, force: true });
  if (delta) {
    mkdirSync(join(pgdata, 'base', '16384'), { recursive: true, mode: 0o700 });
    writeFileSync(join(pgdata, 'PG_VERSION'), '15\n');
    writeFileSync(join(pgdata, 'base', '16384', '999'), 'not in the backup');
  }
  const { stubWritesBelow } = await import('./lib/files-stub-writer.mjs');
  const written = stubWritesBelow(join(pgdata, 'base') + '/');
  const { restore } = await import('@cairn/restore/restore');
  const quiet = { info() {}, warn() {}, debug() {}, error() {} };
  try {
    const r = await restore(
      { plan, driver, key: undefined, pgdata, delta, force: false, tablespaceMap: new Map(), jobs: 2, restoreCommand: 'false', keyFile: undefined, configDir: undefined },
      { tool: 'restore', env: process.env, signal, log: quiet, now: () => new Date() },
    );
    if (r.filesFetched !== n || written.files !== n) throw new Error(`restore fetched ${r.filesFetched} files and wrote ${written.files} of ${n}`);
    return { fetched: r.filesFetched, removed: r.removed, stubbedBytes: written.bytes, maxOpen: written.maxOpen, planFromFile: existsSync(PLAN_FILE) };
  } finally {
    rmSync(pgdata, { recursive: true, force: true });
  }
}

const PLANNERS = {
  // cairn-restore-plan's work: the catalog of one repository, then the pure
  // planner; the plan is left for the restore runs.
  async 'restore-plan'() {
    const plan = await makePlan();
    writeFileSync(PLAN_FILE, JSON.stringify(plan));
    return { backup: plan.backup.id };
  },
  // cairn-verify's planning: each manifest screened by the manifest rules, its
  // objects de-duplicated by key and split into small and big, as verify does
  // before reading; the reads themselves are left out.
  async 'verify-plan'() {
    const { planVerifyObjects } = await import('./lib/files-verify-plan.mjs');
    return await planVerifyObjects(driver, SIM.cluster, signal);
  },
  // cairn-expire --dry-run's work: its catalog (every object listed) and the plan.
  async 'expire-plan'() {
    const { readExpireCatalog } = await import('@cairn/core/expire/apply');
    const { planExpire } = await import('@cairn/core/expire/plan');
    const catalog = await readExpireCatalog(driver, SIM.cluster, undefined, signal);
    const { parseDuration } = await import('@cairn/core/util/duration');
    const r = planExpire(catalog, { keepFull: 1, debrisGrace: parseDuration('6h') }, now);
    return { steps: r.steps.length };
  },
  // cairn-info's report of one repository.
  async info() {
    const { readInfoReport } = await import('@cairn/core/info/read');
    const r = await readInfoReport(driver, SIM.cluster, undefined, now, signal);
    return { backups: r.backups?.length };
  },
  // cairn-restore's own restore(): its file scheduler, the data files' writes stubbed.
  async 'restore-scheduler'() {
    return await realRestore(false);
  },
  // The same with --delta over a data directory (the sweep beside the manifest).
  async 'restore-delta'() {
    return await realRestore(true);
  },
};

const run = PLANNERS[planner];
if (!run) throw new Error(`unknown planner ${planner}: ${Object.keys(PLANNERS).join(', ')}`);
const t0 = performance.now();
const u0 = process.resourceUsage();
const detail = await run();
const seconds = (performance.now() - t0) / 1000;
// maxRSS is in KiB (getrusage).
// CPU time of the run (user + system, all threads): on a shared machine, linear where the wall time is not.
const u = process.resourceUsage();
const cpuSeconds = (u.userCPUTime + u.systemCPUTime - u0.userCPUTime - u0.systemCPUTime) / 1e6;
process.stdout.write(JSON.stringify({ planner, files: n, seconds, cpuSeconds, maxRssMB: u.maxRSS / 1024, detail }) + '\n');
