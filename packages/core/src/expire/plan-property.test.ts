// Property test of planExpire against the restore planner: over random
// histories (chains of full/diff/incr, timelines by promotion and by
// point-in-time branches) and random policies, after applying the plan every
// kept backup still restores, and every point of the recovery window that
// could be restored before still can. Seeded: a failure names its seed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backupChain, backupId, type BackupSummary, type BackupType } from '../backup/manifest.js';
import type { RecoveryTarget } from '../restore/plan-format.js';
import { planRestore } from '../restore/planner.js';
import { formatTargetTime } from '../restore/target.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { parseLsn } from '../wal/lsn.js';
import { parseDuration } from '../util/duration.js';
import type { StoredWal } from '../repo/wal-archive.js';
import { backup, catalogOf, lsnAt, seg, SYS, walFile } from './test-catalog.js';
import { planExpire, type ExpireCatalog, type ExpirePolicy } from './plan.js';

const NOW = new Date('2026-11-21T12:00:00Z');
const CASES = 300;
const HOUR = 3600_000;

/** mulberry32: small, fast, and the same sequence on every machine. */
function prng(seed: number): { int: (lo: number, hi: number) => number; chance: (p: number) => boolean } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), chance: (p) => next() < p };
}

interface History {
  catalog: ExpireCatalog;
  histories: Map<number, TimelineHistoryEntry[]>;
}

function generate(seed: number): History {
  const r = prng(seed);
  let t = NOW.getTime() - r.int(60, 200) * 24 * HOUR;
  let tli = 1;
  let segno = 2;
  /** The first segment the current timeline has. */
  let tliStart = 2;
  const histories = new Map<number, TimelineHistoryEntry[]>();
  const wal: StoredWal[] = [];
  const backups: BackupSummary[] = [];
  const archive = (n: number, at: number) => wal.push(walFile(SYS, seg(tli, n), new Date(at)));
  const count = r.int(24, 60);
  while (backups.length < count) {
    // Traffic: a few segments archived over the next hours.
    const hours = r.int(1, 60);
    const segs = r.int(1, 4);
    for (let k = 0; k < segs; k++) archive(segno++, t + ((k + 1) * hours * HOUR) / (segs + 1));
    t += hours * HOUR;
    if (tli < 3 && backups.length > 0 && r.chance(0.06)) {
      // A promotion at the tip (the old timeline's last segment is archived
      // as .partial), or a point-in-time restore that branches earlier and
      // abandons what the old timeline wrote after that point.
      const pitr = r.chance(0.5) && segno - 1 > tliStart;
      const branch = pitr ? r.int(tliStart, segno - 1) : segno;
      if (!pitr) wal.push(walFile(SYS, `${seg(tli, branch)}.partial`, new Date(t)));
      histories.set(tli + 1, [...(histories.get(tli) ?? []), { timeline: tli, switchLsn: parseLsn(lsnAt(branch, 0x1000)), reason: 'test' }]);
      tli++;
      segno = branch;
      tliStart = branch;
      t += HOUR;
      // The new timeline's first segment (it holds the switch point).
      archive(segno++, t);
      t += HOUR;
    }
    const newestFull = [...backups].reverse().find((b) => b.type === 'full');
    const type: BackupType = newestFull === undefined ? 'full' : r.chance(0.3) ? 'full' : r.chance(0.45) ? 'diff' : 'incr';
    const parent = type === 'full' ? undefined : type === 'diff' ? newestFull!.id : backups.at(-1)!.id;
    const id = backupId(new Date(t), type);
    backups.push(backup({ id, tli, start: segno, stop: segno + 1, ...(parent ? { parent } : {}) }));
    // The backup's segments: archived during and just after it (it stops 10 minutes in).
    archive(segno++, t + 5 * 60_000);
    archive(segno++, t + 11 * 60_000);
    t += 15 * 60_000;
  }
  // Traffic up to now.
  while (t < NOW.getTime() - 2 * HOUR) {
    t += r.int(1, 30) * HOUR;
    if (t < NOW.getTime()) archive(segno++, t);
  }
  const catalog = catalogOf({ backups });
  const files = [...wal, ...[...histories.keys()].map((h) => walFile(SYS, `${h.toString(16).toUpperCase().padStart(8, '0')}.history`))];
  return { catalog: { ...catalog, wal: new Map([[SYS, { files, histories }]]) }, histories };
}

function randomPolicy(seed: number): ExpirePolicy {
  const r = prng(seed ^ 0x5bd1e995);
  for (;;) {
    const p: ExpirePolicy = { debrisGrace: parseDuration('6h') };
    if (r.chance(0.4)) p.keepFull = r.int(1, 4);
    if (r.chance(0.3)) p.keepDiff = r.int(1, 4);
    if (r.chance(0.5)) p.keepWithin = parseDuration(r.chance(0.3) ? `${r.int(1, 3)}mo` : `${r.int(1, 60)}d${r.int(0, 23)}h`);
    if (r.chance(0.2)) p.keepDaily = r.int(1, 10);
    if (r.chance(0.2)) p.keepWeekly = r.int(1, 6);
    if (r.chance(0.2)) p.keepMonthly = r.int(1, 4);
    if (r.chance(0.1)) p.keepYearly = r.int(1, 2);
    if (Object.keys(p).length > 1) return p;
  }
}

/** The restore planner's view of a catalog: whether it can plan `target`. */
function restorer(cat: ExpireCatalog, histories: Map<number, TimelineHistoryEntry[]>): (target: RecoveryTarget, set?: string) => boolean {
  const stored = new Map<string, { mtime: Date }>();
  for (const f of cat.wal.get(SYS)!.files) if (/^[0-9A-F]{24}$/.test(f.walName)) stored.set(f.walName, { mtime: f.mtime });
  const wal = new Map([[SYS, stored]]);
  const hist = new Map([[SYS, histories]]);
  return (target, set) => {
    try {
      planRestore({ cluster: 'main', repo: cat.repo, backups: cat.backups, wal, histories: hist, target, ...(set === undefined ? {} : { set }), now: NOW });
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === 'NOT_FOUND') return false;
      throw err;
    }
  };
}

const immediate: RecoveryTarget = { kind: 'immediate', timeline: 'current', action: 'promote', inclusive: true };
const atTime = (ms: number): RecoveryTarget => ({ kind: 'time', value: formatTargetTime(BigInt(ms) * 1000n), timeline: 'latest', action: 'promote', inclusive: true });

test(`after any plan every kept backup and every point of the window still restore (${CASES} seeded histories)`, () => {
  let windowChecks = 0;
  let removedSomething = 0;
  for (let seed = 1; seed <= CASES; seed++) {
    const { catalog, histories } = generate(seed);
    const policy = randomPolicy(seed);
    const { plan, steps } = planExpire(catalog, policy, NOW);
    const why = `seed ${seed}, policy ${JSON.stringify(plan.policy)}`;

    // Apply the plan to the catalog: exactly the listed keys go.
    const deleted = new Set(steps.flatMap((s) => s.keys));
    const gone = new Set(plan.backups.filter((b) => b.action === 'remove').map((b) => b.id));
    for (const id of gone) assert.ok(deleted.has(`main/backups/${id}/manifest.json`), `${why}: manifest of ${id} in the steps`);
    const after: ExpireCatalog = {
      ...catalog,
      backups: catalog.backups.filter((b) => !gone.has(b.id)),
      wal: new Map([[SYS, { files: catalog.wal.get(SYS)!.files.filter((f) => !deleted.has(f.key)), histories }]]),
      objects: catalog.objects.filter((o) => !deleted.has(o.key)),
    };
    if (gone.size > 0 || deleted.size > 0) removedSomething++;
    assert.ok(after.backups.length > 0, `${why}: the newest backup stays`);
    assert.ok(catalog.wal.get(SYS)!.files.filter((f) => f.walName.endsWith('.history')).every((f) => !deleted.has(f.key)), `${why}: history files stay`);

    const restorableBefore = restorer(catalog, histories);
    const restorableAfter = restorer(after, histories);
    const byId = new Map(after.backups.map((b) => [b.id, b]));
    for (const b of after.backups) {
      backupChain(byId, b.id); // throws when a kept backup lost an ancestor
      assert.ok(restorableBefore(immediate, b.id), `${why}: generator: ${b.id} restores before expire`);
      assert.ok(restorableAfter(immediate, b.id), `${why}: kept backup ${b.id} restores after expire`);
    }

    if (policy.keepWithin) {
      const from = policy.keepWithin.before(NOW).getTime();
      const r = prng(seed * 7919);
      const points = [from, from + 1, NOW.getTime()];
      for (let i = 0; i < 5; i++) points.push(from + Math.floor(((NOW.getTime() - from) * r.int(0, 1000)) / 1000));
      for (const p of points) {
        if (!restorableBefore(atTime(p))) continue;
        windowChecks++;
        assert.ok(restorableAfter(atTime(p)), `${why}: ${new Date(p).toISOString()} in the window restores after expire`);
      }
    }
  }
  // The property must have been exercised, not passed vacuously.
  assert.ok(windowChecks > 200, `window points checked: ${windowChecks}`);
  assert.ok(removedSomething > CASES / 2, `plans that removed something: ${removedSomething}`);
});
