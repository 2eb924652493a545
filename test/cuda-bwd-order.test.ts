/**
 * The Hopper backward's block order per plan (ffa-backward-order.ts; no GPU needed): the list
 * scheduler hands blocks out in index order to the first free slot, the block costs follow each
 * order's index mapping, and the rule keeps kv-major except where its tail is long (a grid of
 * ~2 waves with items of unequal length).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_Q_RANGE_CUT, planFfaBackward, splitLongItems } from '../src/kernels/cuda/ffa-backward.js';
import {
  BLOCK_OVERHEAD_STEPS,
  backwardBlockCosts,
  listScheduleMakespan,
  ORDER_SIMULATION_MAX_WAVES,
  pickBackwardBlockOrder,
  simulatedBackwardMakespans,
} from '../src/kernels/cuda/ffa-backward-order.js';
import { causalMask, fullMask, varlenCausalMask } from '../src/mask/index.js';

const H200_SMS = 132;

test('listScheduleMakespan: blocks in index order, each to the slot that frees up first', () => {
  assert.equal(listScheduleMakespan([3, 1, 1, 1], 2), 3); // the long block first: the short ones fill the other slot
  assert.equal(listScheduleMakespan([1, 1, 1, 3], 2), 4); // the long block last: it starts at 1
  assert.equal(listScheduleMakespan([2, 2, 2], 8), 2);
  assert.equal(listScheduleMakespan([], 4), 0);
  assert.equal(listScheduleMakespan([5, 4, 3, 2, 1], 1), 15);
  assert.throws(() => listScheduleMakespan([1], 0), RangeError);
});

test('backwardBlockCosts: kv-major block b is item b % items, item-major item b / Hkv; cost = G x q steps + overhead', () => {
  // two items: 3 and 1 steps of 64 rows; 4:2 heads (G = 2)
  const plan = { work: Int32Array.from([0, 0, 0, 192, 0, 128, 0, 64]), numWork: 2 };
  const c3 = 2 * 3 + BLOCK_OVERHEAD_STEPS;
  const c1 = 2 * 1 + BLOCK_OVERHEAD_STEPS;
  assert.deepEqual([...backwardBlockCosts(plan, 4, 2, 64, 'kv-major')], [c3, c1, c3, c1]);
  assert.deepEqual([...backwardBlockCosts(plan, 4, 2, 64, 'item-major')], [c3, c3, c1, c1]);
});

/** The default launch's plan (128-key tiles, 64-row steps, long full slices cut) of a mask. */
function defaultPlan(slices: Parameters<typeof planFfaBackward>[0], tokens: number) {
  return splitLongItems(planFfaBackward(slices, tokens, tokens, 128, 64), slices, DEFAULT_Q_RANGE_CUT, 64);
}

test('pickBackwardBlockOrder: item-major for causal and short documents at 4k on an H200 (64:8 heads), kv-major where the items are alike or the grid is long', () => {
  const pick = (slices: Parameters<typeof planFfaBackward>[0], tokens: number) => pickBackwardBlockOrder(defaultPlan(slices, tokens), 64, 8, 64, H200_SMS);
  assert.equal(pick(causalMask(4096), 4096), 'item-major');
  assert.equal(pick(varlenCausalMask([0, 500, 1700, 2300, 4096]), 4096), 'item-major');
  assert.equal(pick(fullMask(4096), 4096), 'kv-major'); // every item alike: both orders tie
  assert.equal(pick(causalMask(16384), 16384), 'kv-major');
  // the simulated tail of kv-major against item-major shrinks as the grid grows
  const ratio = (tokens: number) => {
    const m = simulatedBackwardMakespans(defaultPlan(causalMask(tokens), tokens), 64, 8, 64, H200_SMS);
    return m['kv-major'] / m['item-major'];
  };
  assert.ok(ratio(4096) > 1.4 && ratio(8192) < ratio(4096) && ratio(16384) < 1.05, `${ratio(4096)} ${ratio(8192)} ${ratio(16384)}`);
});

test('pickBackwardBlockOrder: grids of at least ORDER_SIMULATION_MAX_WAVES waves stay kv-major without simulating', () => {
  // one SM: a 4k causal grid is many waves, though its simulated kv-major tail would be long on 132
  const plan = defaultPlan(causalMask(4096), 4096);
  assert.ok(plan.numWork * 8 >= ORDER_SIMULATION_MAX_WAVES * 2);
  assert.equal(pickBackwardBlockOrder(plan, 64, 8, 64, 2), 'kv-major');
  assert.equal(pickBackwardBlockOrder(plan, 64, 8, 64, H200_SMS), 'item-major');
});
