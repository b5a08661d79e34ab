// What one planner holds and how long it takes on a backup of N files
// (issue 19), run in a child process of files.mjs so its peak RSS is its
// own: `node files-sim.mjs PLANNER REPO_DIR N`. The repository is a real
// file repository with a generated manifest; the N data objects the manifest
// names are not on disk but appear in every listing (a synthetic listing
// merged into the file driver's, in key order), so planners that list the
// backup meet a million objects too. Prints one JSON line:
// { planner, files, seconds, maxRssMB, detail }.

import { performance } from 'node:perf_hooks';
import { FsDriver } from '@cairn/core/storage/fs';
import { DATA_KEY, SIM } from './lib/files-gen.mjs';

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
  return new Proxy(fs, {
    get(target, prop, recv) {
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
const PLANNERS = {
  // cairn-restore-plan's work: the catalog of one repository, then the pure planner.
  async 'restore-plan'() {
    const { planFromRepository } = await import('@cairn/core/restore/load-plan');
    const plan = await planFromRepository(driver, { cluster: SIM.cluster, key: undefined, target: { kind: 'immediate', timeline: 'current', action: 'promote', inclusive: true }, now, signal });
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
  // cairn-restore's file scheduler with a writer that writes nothing.
  async 'restore-scheduler'() {
    const { scheduleRestoreStub } = await import('./lib/files-verify-plan.mjs');
    return await scheduleRestoreStub(driver, SIM.cluster, SIM.id, signal);
  },
};

const run = PLANNERS[planner];
if (!run) throw new Error(`unknown planner ${planner}: ${Object.keys(PLANNERS).join(', ')}`);
const t0 = performance.now();
const detail = await run();
const seconds = (performance.now() - t0) / 1000;
// maxRSS is in KiB (getrusage).
process.stdout.write(JSON.stringify({ planner, files: n, seconds, maxRssMB: process.resourceUsage().maxRSS / 1024, detail }) + '\n');
