// Property test of planExpire against the restore planner: over random
// histories (chains of full/diff/incr, timelines by promotion and by
// point-in-time branches) and random policies, after applying the plan every
// kept backup still restores, and every point of the recovery window that
// could be restored before still can. With reader leases of restores planned
// on the same histories (issue 12): what a live lease's recovery reads stays,
// so its plan still holds; a lapsed lease changes nothing. Seeded: a failure
// names its seed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backupChain } from '../backup/chain.js';
import { backupId, type BackupSummary, type BackupType } from '../backup/manifest.js';
import type { RecoveryTarget, RestorePlan } from '../restore/plan-format.js';
import { planRestore } from '../restore/planner.js';
import { formatTargetTime } from '../restore/target.js';
import { isSegmentName, timelineOf } from '../wal/file-name.js';
import type { TimelineHistoryEntry } from '../wal/history.js';
import { parseLsn } from '../wal/lsn.js';
import { parseDuration } from '../util/duration.js';
import type { StoredWal } from '../repo/wal-archive.js';
import type { ReaderLease } from '../repo/reader-lease.js';
import { backup, catalogOf, lsnAt, readerLease, seg, SYS, walFile } from './test-catalog.js';
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

/** The restore planner's view of a catalog: its plan for `target`, undefined when it finds none. */
function planner(cat: ExpireCatalog, histories: Map<number, TimelineHistoryEntry[]>): (target: RecoveryTarget, set?: string) => RestorePlan | undefined {
  const stored = new Map<string, { mtime: Date }>();
  for (const f of cat.wal.get(SYS)!.files) if (isSegmentName(f.walName)) stored.set(f.walName, { mtime: f.mtime });
  const wal = new Map([[SYS, stored]]);
  const hist = new Map([[SYS, histories]]);
  return (target, set) => {
    try {
      return planRestore({ cluster: 'main', repo: cat.repo, backups: cat.backups, wal, histories: hist, target, ...(set === undefined ? {} : { set }), now: NOW });
    } catch (err) {
      if ((err as { code?: string }).code === 'NOT_FOUND') return undefined;
      throw err;
    }
  };
}

/** Whether the restore planner can plan `target` on a catalog. */
function restorer(cat: ExpireCatalog, histories: Map<number, TimelineHistoryEntry[]>): (target: RecoveryTarget, set?: string) => boolean {
  const plan = planner(cat, histories);
  return (target, set) => plan(target, set) !== undefined;
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

interface LeaseCase {
  lease: ReaderLease;
  live: boolean;
  /** What the restore holding it planned, and on which target: it must still plan after expire. */
  plan: RestorePlan;
  target: RecoveryTarget;
  /** Its backup is gone from the catalog (removed by hand): only its WAL ranges protect. */
  orphan: boolean;
}

/**
 * Up to four restores planned on the history, each with its lease as
 * cairn-restore writes it: a random backup, to latest, to its own end or to
 * a time after it; live (up to 48 h left) or lapsed (up to 12 h ago, the
 * debris grace being 6 h). Some name only their backup in `chain`; some
 * name a backup the catalog no longer has.
 */
function randomLeases(seed: number, h: History): LeaseCase[] {
  const r = prng(seed ^ 0x2545f491);
  const plan = planner(h.catalog, h.histories);
  const out: LeaseCase[] = [];
  const n = r.int(0, 4);
  for (let i = 0; i < n; i++) {
    const b = h.catalog.backups[r.int(0, h.catalog.backups.length - 1)]!;
    const pick = r.int(0, 2);
    const target = pick === 0 ? latest : pick === 1 ? immediate : atTime(Date.parse(b.stop.time) + r.int(1, 72) * HOUR);
    const p = plan(target, b.id);
    if (p === undefined) continue;
    const live = r.chance(0.6);
    const expiresAt = new Date(NOW.getTime() + (live ? r.int(1, 48 * 60) : -r.int(0, 12 * 60)) * 60_000).toISOString();
    const orphan = r.chance(0.15);
    const lease = readerLease({
      id: `20261121-${String(100000 + i).slice(1)}0-${(seed >>> 0).toString(16).padStart(8, '0').slice(-8)}`,
      backup: orphan ? '20200101-000000F' : p.backup.id,
      chain: orphan ? [] : r.chance(0.3) ? [p.backup.id] : p.chain,
      expiresAt,
    });
    lease.wal = p.wal.map((w) => ({ timeline: w.timeline, from: w.from, to: w.to }));
    out.push({ lease, live: Date.parse(expiresAt) > NOW.getTime(), plan: p, target, orphan });
  }
  return out;
}

const latest: RecoveryTarget = { kind: 'latest', timeline: 'latest', action: 'promote', inclusive: true };

test(`live reader leases keep what their recoveries read; lapsed ones protect nothing (${CASES} seeded histories)`, () => {
  let protectedSomething = 0;
  let livePlansChecked = 0;
  let lapsedCases = 0;
  let removedLeases = 0;
  for (let seed = 1; seed <= CASES; seed++) {
    const h = generate(seed);
    const policy = randomPolicy(seed);
    const leases = randomLeases(seed, h);
    const why = `seed ${seed}, policy ${JSON.stringify(policy)}, leases ${JSON.stringify(leases.map((l) => [l.lease.backup, l.live, l.orphan, l.lease.chain.length, l.lease.wal]))}`;
    const bare = planExpire(h.catalog, policy, NOW);
    const leased = planExpire({ ...h.catalog, readers: leases.map((l) => l.lease) }, policy, NOW);
    const lapsedOnly = planExpire({ ...h.catalog, readers: leases.filter((l) => !l.live).map((l) => l.lease) }, policy, NOW);
    const action = (p: typeof bare) => new Map(p.plan.backups.map((b) => [b.id, b.action]));
    const deletedBy = (p: typeof bare) => new Set(p.steps.filter((s) => s.kind !== 'lease').flatMap((s) => s.keys));

    // A lapsed lease protects nothing beyond what the policies keep.
    if (leases.some((l) => !l.live)) lapsedCases++;
    assert.deepEqual(action(lapsedOnly), action(bare), `${why}: lapsed leases change no backup`);
    assert.deepEqual(deletedBy(lapsedOnly), deletedBy(bare), `${why}: lapsed leases change no deletion`);

    // Leases only ever keep more.
    const deleted = deletedBy(leased);
    for (const k of deleted) assert.ok(deletedBy(bare).has(k), `${why}: ${k} deleted only because of a lease`);
    if (deleted.size < deletedBy(bare).size) protectedSomething++;

    // Exactly the leases lapsed longer than the grace go, each as its own step.
    const graceStart = policy.debrisGrace.before(NOW).getTime();
    const gone = leases.filter((l) => Date.parse(l.lease.expiresAt) <= graceStart).map((l) => `main/readers/${l.lease.id}.json`).sort();
    assert.deepEqual(leased.steps.filter((s) => s.kind === 'lease').flatMap((s) => s.keys).sort(), gone, why);
    removedLeases += gone.length;
    assert.equal(leased.plan.readers.length, leases.length);

    const kept = action(leased);
    const after: ExpireCatalog = {
      ...h.catalog,
      backups: h.catalog.backups.filter((b) => kept.get(b.id) === 'keep'),
      wal: new Map([[SYS, { files: h.catalog.wal.get(SYS)!.files.filter((f) => !deleted.has(f.key)), histories: h.histories }]]),
      objects: h.catalog.objects.filter((o) => !deleted.has(o.key)),
    };
    const planAfter = planner(after, h.histories);
    for (const l of leases.filter((x) => x.live)) {
      const lwhy = `${why}: live lease on ${l.lease.backup}`;
      // Every WAL file at or above a live lease's floor on its timeline stays.
      for (const w of l.lease.wal) {
        for (const f of h.catalog.wal.get(SYS)!.files) {
          if (f.walName.endsWith('.history') || timelineOf(f.walName) !== w.timeline || f.walName.slice(8, 24) < w.from.slice(8)) continue;
          assert.ok(!deleted.has(f.key), `${lwhy}: ${f.walName} at or above ${w.from} stays`);
        }
      }
      if (l.orphan) continue;
      // Its whole chain stays, and the recovery it planned still plans to the same end.
      for (const id of l.plan.chain) assert.equal(kept.get(id), 'keep', `${lwhy}: ${id} of its chain stays`);
      const again = planAfter(l.target, l.plan.backup.id);
      assert.ok(again !== undefined, `${lwhy}: its recovery (${l.target.kind}) still plans after expire`);
      assert.equal(again.walEnd, l.plan.walEnd, `${lwhy}: its recovery reaches as far`);
      livePlansChecked++;
    }
  }
  // The properties must have been exercised, not passed vacuously.
  assert.ok(protectedSomething > 20, `plans where a live lease kept something: ${protectedSomething}`);
  assert.ok(livePlansChecked > 100, `live recoveries re-planned: ${livePlansChecked}`);
  assert.ok(lapsedCases > 50, `plans with a lapsed lease: ${lapsedCases}`);
  assert.ok(removedLeases > 20, `lapsed leases removed: ${removedLeases}`);
});
