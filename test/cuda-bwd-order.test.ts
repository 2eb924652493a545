/**
 * The Hopper backward's block order per plan (ffa-backward-order.ts; no GPU needed): the list
 * scheduler hands blocks out in index order to the first free slot, the block costs follow the
 * split order's index mapping (bwd_item in ffa_common.cuh), and the rule keeps the shortest
 * item-major tail whose simulated makespan is within SPLIT_TOLERANCE of the best candidate's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_Q_RANGE_CUT, planFfaBackward, splitLongItems } from '../src/kernels/cuda/ffa-backward.js';
import {
  BLOCK_OVERHEAD_STEPS,
  backwardBlockCosts,
  describeBlockOrder,
  kvMajorItemsOf,
  listScheduleMakespan,
  MAX_TAIL_WAVES,
  ORDER_SIMULATION_MAX_WAVES,
  pickKvMajorItems,
  simulatedSplitMakespans,
  SPLIT_TOLERANCE,
  validateBlockOrder,
} from '../src/kernels/cuda/ffa-backward-order.js';
import { causalMask, fullMask, varlenCausalMask } from '../src/mask/index.js';
import { Rng } from '../src/util/rng.js';

const H200_SMS = 132;

test('listScheduleMakespan: blocks in index order, each to the slot that frees up first', () => {
  assert.equal(listScheduleMakespan([3, 1, 1, 1], 2), 3); // the long block first: the short ones fill the other slot
  assert.equal(listScheduleMakespan([1, 1, 1, 3], 2), 4); // the long block last: it starts at 1
  assert.equal(listScheduleMakespan([2, 2, 2], 8), 2);
  assert.equal(listScheduleMakespan([], 4), 0);
  assert.equal(listScheduleMakespan([5, 4, 3, 2, 1], 1), 15);
  assert.throws(() => listScheduleMakespan([1], 0), RangeError);
});

test('listScheduleMakespan: its heap agrees with a linear scan for the first free slot on random grids', () => {
  const scan = (costs: number[], slots: number): number => {
    const free = new Array<number>(Math.min(slots, costs.length)).fill(0);
    for (const c of costs) free[free.indexOf(Math.min(...free))] += c;
    return Math.max(0, ...free);
  };
  const rng = new Rng(7);
  for (let trial = 0; trial < 200; trial++) {
    const slots = rng.int(1, 20);
    // small integer costs, so that ties are common
    const costs = Array.from({ length: rng.int(0, 80) }, () => rng.int(1, 6));
    assert.equal(listScheduleMakespan(costs, slots), scan(costs, slots), JSON.stringify({ slots, costs }));
  }
});

test('backwardBlockCosts: the first kvMajorItems items kv-major (block b: item b % kvMajorItems), the rest item-major after them; cost = G x q steps + overhead', () => {
  // three items: 3, 2 and 1 steps of 64 rows; 4:2 heads (G = 2)
  const plan = { work: Int32Array.from([0, 0, 0, 192, 0, 128, 0, 128, 0, 256, 0, 64]), numWork: 3 };
  const [c3, c2, c1] = [3, 2, 1].map((s) => 2 * s + BLOCK_OVERHEAD_STEPS);
  assert.deepEqual([...backwardBlockCosts(plan, 4, 2, 64, 3)], [c3, c2, c1, c3, c2, c1]);
  assert.deepEqual([...backwardBlockCosts(plan, 4, 2, 64, 0)], [c3, c3, c2, c2, c1, c1]);
  assert.deepEqual([...backwardBlockCosts(plan, 4, 2, 64, 2)], [c3, c2, c3, c2, c1, c1]);
  for (const bad of [-1, 4, 1.5]) assert.throws(() => backwardBlockCosts(plan, 4, 2, 64, bad), RangeError);
});

test('forced orders: kvMajorItemsOf, validateBlockOrder and describeBlockOrder', () => {
  assert.equal(kvMajorItemsOf('kv-major', 34), 34);
  assert.equal(kvMajorItemsOf('item-major', 34), 0);
  assert.equal(kvMajorItemsOf({ kvMajorShare: 0.5 }, 33), 17);
  for (const ok of ['kv-major', 'item-major', { kvMajorShare: 0 }, { kvMajorShare: 1 }] as const) validateBlockOrder(ok);
  for (const bad of ['head-major', { kvMajorShare: 1.5 }, { kvMajorShare: Number.NaN }, {}, null]) assert.throws(() => validateBlockOrder(bad as 'kv-major'), RangeError, JSON.stringify(bad));
  assert.equal(describeBlockOrder(34, 34), 'kv-major');
  assert.equal(describeBlockOrder(0, 34), 'item-major');
  assert.equal(describeBlockOrder(10, 34), 'split 10/34');
});

/** The default launch's plan (128-key tiles, 64-row steps, long full and causal slices cut) of a mask. */
function defaultPlan(slices: Parameters<typeof planFfaBackward>[0], tokens: number) {
  return splitLongItems(wholePlan(slices, tokens), slices, DEFAULT_Q_RANGE_CUT, 64);
}

/** Every item whole (one per slice and k tile): the most unequal items a mask gives, as in documents of at most 1,024 rows, which the default cut leaves whole. */
function wholePlan(slices: Parameters<typeof planFfaBackward>[0], tokens: number) {
  return planFfaBackward(slices, tokens, tokens, 128, 64);
}

test('simulatedSplitMakespans: tails of half waves from none up to MAX_TAIL_WAVES waves (or all the items)', () => {
  const plan = defaultPlan(causalMask(16384), 16384); // 128 items x 8 kv heads: ~7.8 waves
  const c = simulatedSplitMakespans(plan, 64, 8, 64, H200_SMS);
  const tails = c.map((x) => plan.numWork - x.kvMajorItems);
  assert.equal(tails[0], 0);
  assert.equal(tails.at(-1), Math.floor((MAX_TAIL_WAVES * H200_SMS) / 8));
  for (let i = 1; i < tails.length - 1; i++) assert.equal(tails[i] - tails[i - 1], Math.round(H200_SMS / 16));
  const small = wholePlan(causalMask(4096), 4096); // 32 items: the whole grid is under 4 waves
  assert.equal(simulatedSplitMakespans(small, 64, 8, 64, H200_SMS).at(-1)!.kvMajorItems, 0, 'all item-major is a candidate');
});

test('pickKvMajorItems: a split for whole causal items at 4k on an H200 (64:8 heads), within SPLIT_TOLERANCE of the best candidate and well below all kv-major; all kv-major where the items are alike or the grid is long', () => {
  for (const [slices, tokens] of [
    [causalMask(4096), 4096],
    [varlenCausalMask([0, 500, 1700, 2300, 4096]), 4096],
  ] as const) {
    const plan = wholePlan(slices, tokens);
    const k = pickKvMajorItems(plan, 64, 8, 64, H200_SMS);
    assert.ok(k > 0 && k < plan.numWork, `a split: ${k} of ${plan.numWork}`);
    const c = simulatedSplitMakespans(plan, 64, 8, 64, H200_SMS);
    const best = Math.min(...c.map((x) => x.makespan));
    const at = (n: number) => c.find((x) => x.kvMajorItems === n)!.makespan;
    assert.ok(at(k) <= SPLIT_TOLERANCE * best, `${at(k)} vs best ${best}`);
    assert.ok(at(plan.numWork) > 1.4 * best, `all kv-major's tail is long here: ${at(plan.numWork)} vs ${best}`);
    // the shortest such tail: every longer kv-major share is outside the tolerance
    for (const x of c) if (x.kvMajorItems > k) assert.ok(x.makespan > SPLIT_TOLERANCE * best);
  }
  const pick = (slices: Parameters<typeof planFfaBackward>[0], tokens: number) => {
    const plan = defaultPlan(slices, tokens);
    return [pickKvMajorItems(plan, 64, 8, 64, H200_SMS), plan.numWork];
  };
  const [fk, fn] = pick(fullMask(4096), 4096); // every item alike: no tail to shorten
  assert.equal(fk, fn);
  const [ck, cn] = pick(causalMask(16384), 16384);
  assert.equal(ck, cn);
  // the default cut makes 4k causal's 32 items of 128-4,096 rows 80 of at most 1,024: alike
  // enough that no tail helps (the order the H200 ran it in, bench/kernel/README.md)
  const [k4, n4] = pick(causalMask(4096), 4096);
  assert.equal(n4, 80);
  assert.equal(k4, n4);
});

test('pickKvMajorItems: grids of at least ORDER_SIMULATION_MAX_WAVES waves stay kv-major without simulating', () => {
  // one SM: a 4k causal grid is many waves, though its simulated kv-major tail would be long on 132
  const plan = wholePlan(causalMask(4096), 4096);
  assert.ok(plan.numWork * 8 >= ORDER_SIMULATION_MAX_WAVES * 2);
  assert.equal(pickKvMajorItems(plan, 64, 8, 64, 2), plan.numWork);
  assert.ok(pickKvMajorItems(plan, 64, 8, 64, H200_SMS) < plan.numWork);
});
