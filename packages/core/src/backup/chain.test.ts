import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backupChain, chainDepth, indexChains, walkChain, type ChainLink } from './chain.js';

const catalog = (links: Record<string, string | null>): Map<string, ChainLink> => new Map(Object.entries(links).map(([id, parent]) => [id, { id, parent }]));

// F ← D ← I1 ← I2, and F ← I3; X names a parent that is gone; L1 ↔ L2 loop; S is its own parent.
const cat = catalog({ F: null, D: 'F', I1: 'D', I2: 'I1', I3: 'F', X: 'GONE', Y: 'X', L1: 'L2', L2: 'L1', S: 'S' });

describe('walkChain', () => {
  const cases: [string, ReturnType<typeof walkChain>, number][] = [
    ['F', { ancestors: [] }, 0],
    ['I2', { ancestors: ['I1', 'D', 'F'] }, 3],
    ['I3', { ancestors: ['F'] }, 1],
    ['X', { ancestors: [], missing: { parent: 'GONE', child: 'X' } }, 1],
    ['Y', { ancestors: ['X'], missing: { parent: 'GONE', child: 'X' } }, 2],
    ['L1', { ancestors: ['L2'], loopsAt: 'L1' }, 2],
    ['S', { ancestors: [], loopsAt: 'S' }, 1],
  ];
  for (const [id, walk, depth] of cases) {
    test(`${id}: ${JSON.stringify(walk)}, depth ${depth}`, () => {
      assert.deepEqual(walkChain(cat, id), walk);
      assert.equal(chainDepth(cat, id), depth);
    });
  }
});

describe('backupChain', () => {
  test('full first, the backup last', () => {
    assert.deepEqual(backupChain(cat, 'I2'), ['F', 'D', 'I1', 'I2']);
    assert.deepEqual(backupChain(cat, 'F'), ['F']);
  });
  const missing: [string, RegExp][] = [
    ['X', /^backup "GONE" needed by "X" is missing from the repository$/],
    ['Y', /^backup "GONE" needed by "Y" is missing from the repository$/],
    ['NOPE', /^backup "NOPE" needed by "NOPE" is missing from the repository$/],
    ['L1', /^backup chain of "L1" loops at "L1"$/],
  ];
  for (const [id, message] of missing) {
    test(`${id} throws FORMAT_INVALID (exit 4)`, () => assert.throws(() => backupChain(cat, id), { code: 'FORMAT_INVALID', exitCode: 4, message }));
  }
});

describe('indexChains', () => {
  const ix = indexChains(cat.values());
  const cases: [string, string[], string[]][] = [
    // id, ancestors (a missing parent named last), descendants (as a set)
    ['F', [], ['D', 'I1', 'I2', 'I3']],
    ['D', ['F'], ['I1', 'I2']],
    ['I2', ['I1', 'D', 'F'], []],
    ['Y', ['X', 'GONE'], []],
    ['X', ['GONE'], ['Y']],
    ['L1', ['L2'], ['L2']],
    ['S', [], []],
  ];
  for (const [id, ancestors, descendants] of cases) {
    test(id, () => {
      assert.deepEqual(ix.ancestors(id), ancestors);
      assert.deepEqual(ix.descendants(id).sort(), descendants.sort());
    });
  }
  test('a missing backup has the descendants that name it', () => assert.deepEqual(ix.descendants('GONE').sort(), ['X', 'Y']));
});
