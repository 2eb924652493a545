/**
 * The host side of the CUDA backend's deterministic mode (no GPU needed): the first-fit grouping
 * of intervals and the grouped work lists of the forward (disjoint q ranges per launch) and the
 * backward (no shared q row or key row per launch). A group is one kernel launch; bit
 * reproducibility rests on "no two items of one group touch the same output element".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { greedyDisjointGroups, planDeterministicForward, planFfaForward } from '../src/kernels/cuda/ffa-forward.js';
import { planDeterministicBackward, planFfaBackward } from '../src/kernels/cuda/ffa-backward.js';
import { causalMask, fullMask, makeSliceList, varlenCausalMask, type SliceList } from '../src/mask/index.js';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const overlaps = (a: readonly [number, number], b: readonly [number, number]): boolean => a[0] < a[1] && b[0] < b[1] && a[0] < b[1] && b[0] < a[1];

test('greedyDisjointGroups: first fit in index order on one axis', () => {
  const iv: Array<[number, number]> = [[0, 10], [5, 15], [10, 20], [0, 5], [12, 13], [7, 7]];
  const { group, groups } = greedyDisjointGroups(iv.length, 1, (i) => iv[i]);
  assert.deepEqual(Array.from(group), [0, 1, 0, 1, 2, 0]);
  assert.equal(groups, 3);
});

test('greedyDisjointGroups: random two-axis items: groups are conflict-free and first-fit', () => {
  const rand = rng(7);
  for (let trial = 0; trial < 20; trial++) {
    const n = 1 + Math.floor(rand() * 60);
    const iv = Array.from({ length: n }, () =>
      Array.from({ length: 2 }, () => {
        const lo = Math.floor(rand() * 100);
        return [lo, lo + Math.floor(rand() * 30)] as [number, number];
      }),
    );
    const { group, groups } = greedyDisjointGroups(n, 2, (i, a) => iv[i][a]);
    const conflict = (i: number, j: number): boolean => overlaps(iv[i][0], iv[j][0]) || overlaps(iv[i][1], iv[j][1]);
    for (let i = 0; i < n; i++) {
      assert.ok(group[i] >= 0 && group[i] < groups);
      for (let j = 0; j < i; j++) if (group[j] === group[i]) assert.ok(!conflict(i, j), `items ${j} and ${i} share group ${group[i]} but conflict`);
      // first fit: every lower group holds an earlier item that conflicts with i
      for (let g = 0; g < group[i]; g++) {
        assert.ok(Array.from({ length: i }, (_, j) => j).some((j) => group[j] === g && conflict(i, j)), `item ${i} could have gone to group ${g}`);
      }
    }
  }
});

function groupsOf(work: Int32Array, groups: Int32Array, stride: number): Int32Array[] {
  const out: Int32Array[] = [];
  for (let g = 0; g < groups.length; g += 2) out.push(work.subarray(stride * groups[g], stride * (groups[g] + groups[g + 1])));
  return out;
}

function sortedRecords(work: Int32Array, stride: number): string[] {
  const r: string[] = [];
  for (let i = 0; i < work.length; i += stride) r.push(Array.from(work.subarray(i, i + stride)).join(','));
  return r.sort();
}

test('planDeterministicForward: disjoint q ranges give the plan itself as one group', () => {
  const slices = varlenCausalMask([0, 300, 700, 737, 1024]);
  const plan = planFfaForward(slices, 1024);
  const det = planDeterministicForward(plan, slices);
  assert.deepEqual(Array.from(det.groups), [0, plan.numWork]);
  assert.deepEqual(Array.from(det.work), Array.from(plan.work));
});

test('planDeterministicForward: overlapping q ranges are split into disjoint groups covering every item once', () => {
  const slices = makeSliceList(
    [[0, 1024], [256, 1024], [0, 700], [900, 1024], [100, 200], [0, 0]],
    [[0, 512], [512, 1024], [1024, 1500], [1500, 1500], [0, 64], [0, 10]],
    ['full', 'causal', 'inv_causal', 'full', 'full', 'full'],
  );
  const plan = planFfaForward(slices, 1100);
  const det = planDeterministicForward(plan, slices);
  assert.deepEqual(sortedRecords(det.work, 2), sortedRecords(plan.work, 2));
  // slice 3 has an empty k range: no work, so it forms no group of its own
  const groups = groupsOf(det.work, det.groups, 2);
  assert.equal(groups.length, 3);
  for (const g of groups) {
    const used = [...new Set(Array.from({ length: g.length / 2 }, (_, i) => g[2 * i]))];
    for (let a = 0; a < used.length; a++) {
      for (let b = 0; b < a; b++) {
        const qa: [number, number] = [slices.qRanges[2 * used[a]], slices.qRanges[2 * used[a] + 1]];
        const qb: [number, number] = [slices.qRanges[2 * used[b]], slices.qRanges[2 * used[b] + 1]];
        assert.ok(!overlaps(qa, qb), `slices ${used[a]} and ${used[b]} in one group overlap in q`);
      }
    }
  }
});

function checkBackwardSchedule(slices: SliceList, tokensQ: number, tokensK: number, blockN: number): number {
  const plan = planFfaBackward(slices, tokensQ, tokensK, blockN);
  const det = planDeterministicBackward(plan, slices, blockN);
  const keyEnd = (b: number, n0: number): number => Math.min(n0 + blockN, slices.kRanges[2 * b + 1]);
  // no conflicts inside a group
  for (const g of groupsOf(det.work, det.groups, 4)) {
    const n = g.length / 4;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < i; j++) {
        assert.ok(!overlaps([g[4 * i + 2], g[4 * i + 3]], [g[4 * j + 2], g[4 * j + 3]]), 'two pieces of one group share q rows');
        assert.ok(!overlaps([g[4 * i + 1], keyEnd(g[4 * i], g[4 * i + 1])], [g[4 * j + 1], keyEnd(g[4 * j], g[4 * j + 1])]), 'two pieces of one group share keys');
      }
    }
  }
  // the pieces of each (slice, k tile) tile its [qLo, qHi) exactly
  const pieces = new Map<string, Array<[number, number]>>();
  for (let i = 0; i < det.work.length; i += 4) {
    const key = `${det.work[i]},${det.work[i + 1]}`;
    if (!pieces.has(key)) pieces.set(key, []);
    pieces.get(key)!.push([det.work[i + 2], det.work[i + 3]]);
  }
  assert.equal(pieces.size, plan.numWork);
  for (let i = 0; i < plan.numWork; i++) {
    const p = pieces.get(`${plan.work[4 * i]},${plan.work[4 * i + 1]}`)!.sort((a, b) => a[0] - b[0]);
    assert.equal(p[0][0], plan.work[4 * i + 2]);
    assert.equal(p[p.length - 1][1], plan.work[4 * i + 3]);
    for (let j = 1; j < p.length; j++) assert.equal(p[j][0], p[j - 1][1]);
  }
  return det.groups.length / 2;
}

test('planDeterministicBackward: conflict-free groups that cover every item exactly', () => {
  // full 2048, 128-key tiles x 256-row chunks: 16 x 8 cells, first fit needs 16 groups
  assert.equal(checkBackwardSchedule(fullMask(2048), 2048, 2048, 128), 16);
  assert.ok(checkBackwardSchedule(causalMask(1500), 1500, 1500, 128) <= 24);
  checkBackwardSchedule(
    makeSliceList(
      [[0, 512], [128, 512], [0, 400], [450, 512], [0, 512]],
      [[0, 256], [256, 512], [512, 800], [800, 800], [100, 700]],
      ['full', 'causal', 'inv_causal', 'full', 'bi_causal'],
    ),
    560,
    850,
    64,
  );
  // disjoint items: one group, the plan itself
  const slices = varlenCausalMask([0, 100, 220, 300]);
  const plan = planFfaBackward(slices, 300, 300, 128);
  const det = planDeterministicBackward(plan, slices, 128);
  assert.deepEqual(Array.from(det.groups), [0, plan.numWork]);
});
