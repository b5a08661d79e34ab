// A model check of storeWal's race protocol (docs/storage-consistency.md):
// two (or three) pushes of one WAL name run against an in-memory store whose
// every request is a step a scheduler releases; every interleaving of those
// steps is explored, with create-if-absent atomic and as check-then-write
// (S3 servers that ignore If-None-Match), and the rules are checked in each.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buffer } from 'node:stream/consumers';
import type { Readable } from 'node:stream';
import { CairnError } from '../cli/errors.js';
import { sha256Hex } from '../codec/index.js';
import { MemoryDriver } from '../storage/memory.js';
import { WriteConflictError, type ObjectInfo, type StorageDriver, type WriteOptions } from '../storage/driver.js';
import { parseWalObjectName, walFilePrefix, walIntentKey } from './layout.js';
import { storeWal, type StoreOutcome } from './wal-archive.js';

const SYS = '7312345678901234567';
const SEG = '000000010000000000000003';

type OpKind = 'list' | 'stat' | 'read' | 'write' | 'remove' | 'pause';

interface Pending {
  kind: OpKind;
  key: string;
  release: () => void;
}

/** One run of the pushers under a fixed schedule: the store and its referee. */
class World {
  readonly store = new MemoryDriver();
  readonly pending = new Map<number, Pending>();
  readonly finished = new Set<number>();
  /** Who wrote each key last (-1: planted before the run). */
  readonly writer = new Map<string, number>();
  /** Keys listed as written long ago (a dead push's intent). */
  readonly old = new Set<string>();
  readonly violations: string[] = [];

  /** Store steps taken so far, and the count when each push's pause began. */
  moves = 0;
  /** Pauses ended while another push was between two steps. */
  early = 0;
  readonly pausedAt = new Map<number, number>();

  gate(actor: number, kind: OpKind, key: string): Promise<void> {
    // A pause counts the others' steps from here (its own do not count: it is paused).
    if (kind === 'pause') this.pausedAt.set(actor, this.moves);
    return new Promise((release) => this.pending.set(actor, { kind, key, release }));
  }

  async plant(key: string, data: Buffer, old: boolean): Promise<void> {
    await this.store.write(key, data);
    this.writer.set(key, -1);
    if (old) this.old.add(key);
  }
}

/** The store as one pusher sees it: each request waits for the scheduler. */
class GatedDriver implements StorageDriver {
  readonly url = 'memory://model';
  readonly features: { atomicIfAbsent: boolean; requests: number };
  constructor(
    private readonly world: World,
    private readonly actor: number,
    atomic: boolean,
  ) {
    this.features = { atomicIfAbsent: atomic, requests: 8 };
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    await this.world.gate(this.actor, 'stat', key);
    return this.world.store.stat(key);
  }

  async read(key: string): Promise<Readable> {
    await this.world.gate(this.actor, 'read', key);
    return this.world.store.read(key);
  }

  async write(key: string, body: Readable | Buffer, opts: WriteOptions = {}): Promise<void> {
    const data = Buffer.isBuffer(body) ? body : await buffer(body);
    const w = this.world;
    if (opts.ifAbsent && !this.features.atomicIfAbsent) {
      // What the S3 driver does when the server ignores If-None-Match: HEAD, then PUT.
      await w.gate(this.actor, 'stat', key);
      if ((await w.store.stat(key)) !== undefined) throw new WriteConflictError(key, this.url);
      await w.gate(this.actor, 'write', key);
    } else {
      await w.gate(this.actor, 'write', key);
      if (opts.ifAbsent && (await w.store.stat(key)) !== undefined) throw new WriteConflictError(key, this.url);
    }
    const by = w.writer.get(key);
    if ((await w.store.stat(key)) !== undefined && by !== this.actor) w.violations.push(`push ${this.actor} overwrote ${key} (written by ${by})`);
    await w.store.write(key, data);
    w.writer.set(key, this.actor);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    await this.world.gate(this.actor, 'list', prefix);
    // One step: the listing is a snapshot, as one LIST page or readdir is.
    const items: ObjectInfo[] = [];
    for await (const o of this.world.store.list(prefix)) items.push(this.world.old.has(o.key) ? { ...o, mtime: new Date(0) } : o);
    yield* items;
  }

  async remove(key: string): Promise<void> {
    const w = this.world;
    await w.gate(this.actor, 'remove', key);
    const by = w.writer.get(key);
    if ((await w.store.stat(key)) !== undefined && by !== this.actor) w.violations.push(`push ${this.actor} removed ${key} (written by ${by})`);
    await w.store.remove(key);
  }

  async close(): Promise<void> {}
}

interface Pusher {
  content: Buffer;
  nonce: string;
}

type Result = { ok: true; outcome: StoreOutcome } | { ok: false; err: unknown };

interface Step {
  actor: number;
  kind: OpKind;
  key: string;
}

/** A node of the schedule tree: who could move, who was tried. */
interface Node {
  enabled: Step[];
  explored: Set<number>;
  chosen: number;
}

interface RunTrace {
  path: Node[];
  results: (Result | undefined)[];
  world: World;
  stuck: boolean;
}

/** Pauses a run may end early (see runOnce); each one multiplies the tree. */
const EARLY_PAUSES = 1;

const settle = async (world: World, actors: number) => {
  // Microtasks only run between the steps (the memory store has no timers):
  // a few turns of the event loop let the released push reach its next step.
  for (let i = 0; i < 1000; i++) {
    let quiet = true;
    for (let a = 0; a < actors; a++) if (!world.pending.has(a) && !world.finished.has(a)) quiet = false;
    if (quiet) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('a push neither finished nor reached a store request');
};

async function runOnce(pushers: Pusher[], atomic: boolean, prefix: Node[], plant?: (w: World) => Promise<void>, earlyPauses = EARLY_PAUSES, maxSteps = 400): Promise<RunTrace> {
  const world = new World();
  if (plant) await plant(world);
  const results: (Result | undefined)[] = pushers.map(() => undefined);
  pushers.forEach((p, actor) => {
    const driver = new GatedDriver(world, actor, atomic);
    storeWal(driver, {
      cluster: 'main',
      systemId: SYS,
      walName: SEG,
      sha256: sha256Hex(p.content),
      ext: '',
      body: () => p.content,
      race: { nonce: p.nonce, pause: () => world.gate(actor, 'pause', '') },
    }).then(
      async (outcome) => {
        results[actor] = { ok: true, outcome };
        // Success is told only with the object (or an identical one) stored.
        const held = (await storedFinals(world)).some((f) => f.sha256 === sha256Hex(p.content));
        if (!held) world.violations.push(`push ${actor} reported ${outcome} with no copy of its content stored`);
        world.finished.add(actor);
      },
      (err: unknown) => {
        results[actor] = { ok: false, err };
        world.finished.add(actor);
      },
    );
  });
  const path: Node[] = [];
  let stuck = false;
  for (let depth = 0; ; depth++) {
    await settle(world, pushers.length);
    if (world.pending.size === 0) break;
    if (depth >= maxSteps) {
      stuck = true;
      break;
    }
    // When every push waits, all look again. A pause may also end while
    // another push is between two steps, once that push has moved since the
    // pause began (polling an unchanged store tells nothing new, and without
    // the rule one push could poll forever) — up to `earlyPauses` times a
    // run, which keeps the tree finite and small enough to walk whole.
    const enabled = [...world.pending.entries()]
      .filter(([actor, p]) => p.kind !== 'pause' || (world.early < earlyPauses && world.moves - world.pausedAt.get(actor)! > 0))
      .map(([actor, p]) => ({ actor, kind: p.kind, key: p.key }));
    if (enabled.length === 0) {
      for (const [actor, p] of [...world.pending.entries()]) {
        world.pending.delete(actor);
        p.release();
      }
      continue;
    }
    enabled.sort((a, b) => a.actor - b.actor);
    const index = path.length;
    const node: Node = index < prefix.length ? prefix[index]! : { enabled, explored: new Set(), chosen: enabled[0]!.actor };
    path.push(node);
    const op = world.pending.get(node.chosen)!;
    world.pending.delete(node.chosen);
    if (op.kind !== 'pause') world.moves++;
    else world.early++;
    op.release();
  }
  return { path, results, world, stuck };
}

/** Every schedule, depth first; `check` returns the broken rules of one run. */
async function explore(pushers: Pusher[], atomic: boolean, check: (t: RunTrace) => Promise<string[]>, plant?: (w: World) => Promise<void>): Promise<{ runs: number; failures: string[] }> {
  let path: Node[] = [];
  let runs = 0;
  const failures: string[] = [];
  for (;;) {
    const t = await runOnce(pushers, atomic, path, plant);
    runs++;
    const broken = [...t.world.violations, ...(t.stuck ? ['no progress after 400 steps'] : []), ...(t.stuck ? [] : await check(t))];
    if (broken.length > 0 && failures.length < 5) failures.push(`schedule ${t.path.map((n) => n.chosen).join('')}: ${broken.join('; ')}`);
    path = t.path;
    while (path.length > 0) {
      const n = path[path.length - 1]!;
      n.explored.add(n.chosen);
      const next = n.enabled.find((s) => !n.explored.has(s.actor));
      if (next) {
        n.chosen = next.actor;
        break;
      }
      path.pop();
    }
    if (path.length === 0) break;
  }
  return { runs, failures };
}

async function storedFinals(w: World): Promise<{ key: string; sha256: string; data: Buffer }[]> {
  const out = [];
  for await (const o of w.store.list(walFilePrefix('main', SYS, SEG))) {
    const parsed = parseWalObjectName(o.key);
    if (parsed) out.push({ key: o.key, sha256: parsed.sha256, data: await buffer(await w.store.read(o.key)) });
  }
  return out;
}

async function leftIntents(w: World): Promise<string[]> {
  const out = [];
  for await (const o of w.store.list('main/locks/')) if (w.writer.get(o.key) !== -1) out.push(o.key);
  return out;
}

const A = Buffer.from('segment as the primary wrote it');
const B = Buffer.from('segment as another server wrote it');
const NONCE = ['00000000000000a1', '00000000000000b2', '00000000000000c3'];

function checkIdentical(content: Buffer) {
  return async (t: RunTrace): Promise<string[]> => {
    const broken: string[] = [];
    t.results.forEach((r, i) => {
      if (!r?.ok) broken.push(`identical push ${i} failed: ${r ? String((r as { err: unknown }).err) : 'unfinished'}`);
    });
    const finals = await storedFinals(t.world);
    if (finals.length !== 1) broken.push(`${finals.length} stored copies`);
    else if (!finals[0]!.data.equals(content)) broken.push('stored bytes differ');
    const left = await leftIntents(t.world);
    if (left.length > 0) broken.push(`intents left: ${left.join(', ')}`);
    return broken;
  };
}

function checkDifferent(contents: Buffer[]) {
  return async (t: RunTrace): Promise<string[]> => {
    const broken: string[] = [];
    const winners = t.results.flatMap((r, i) => (r?.ok ? [i] : []));
    if (winners.length !== 1) broken.push(`${winners.length} pushes succeeded`);
    t.results.forEach((r, i) => {
      if (r && !r.ok && !(r.err instanceof CairnError && r.err.code === 'WAL_DUPLICATE')) broken.push(`push ${i} failed with ${String(r.err)}`);
    });
    const finals = await storedFinals(t.world);
    if (finals.length !== 1) broken.push(`${finals.length} stored copies`);
    else if (winners.length === 1 && !finals[0]!.data.equals(contents[winners[0]!]!)) broken.push('the stored copy is not the winner\'s');
    const left = await leftIntents(t.world);
    if (left.length > 0) broken.push(`intents left: ${left.join(', ')}`);
    return broken;
  };
}

for (const atomic of [true, false]) {
  const store = atomic ? 'atomic create-if-absent' : 'create-if-absent as check-then-write';
  test(`race model (${store}): identical pushes both succeed, one copy, readable`, async (t) => {
    const { runs, failures } = await explore([{ content: A, nonce: NONCE[0]! }, { content: A, nonce: NONCE[1]! }], atomic, checkIdentical(A));
    assert.deepEqual(failures, [], `${runs} interleavings`);
    assert.ok(runs > 100, `${runs} interleavings explored`);
    t.diagnostic(`${runs} interleavings`);
  });

  test(`race model (${store}): different pushes, exactly one stored, the other WAL_DUPLICATE`, async (t) => {
    const { runs, failures } = await explore([{ content: A, nonce: NONCE[0]! }, { content: B, nonce: NONCE[1]! }], atomic, checkDifferent([A, B]));
    assert.deepEqual(failures, [], `${runs} interleavings`);
    assert.ok(runs > 100, `${runs} interleavings explored`);
    // The other priority order too: the later nonce may be the first to look.
    const swapped = await explore([{ content: A, nonce: NONCE[1]! }, { content: B, nonce: NONCE[0]! }], atomic, checkDifferent([A, B]));
    assert.deepEqual(swapped.failures, [], `${swapped.runs} interleavings`);
    t.diagnostic(`${runs} + ${swapped.runs} interleavings`);
  });

  test(`race model (${store}): a dead push's stale intent neither blocks nor is removed`, async (t) => {
    const dead = walIntentKey('main', SYS, SEG, '0000000000000000', sha256Hex(B));
    const plant = (w: World) => w.plant(dead, Buffer.from('{}'), true);
    const { runs, failures } = await explore([{ content: A, nonce: NONCE[0]! }, { content: B, nonce: NONCE[1]! }], atomic, checkDifferent([A, B]), plant);
    assert.deepEqual(failures, [], `${runs} interleavings`);
    t.diagnostic(`${runs} interleavings`);
  });
}
