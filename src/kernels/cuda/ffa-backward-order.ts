/**
 * The block order of the Hopper backward's default launch, and of each launch of its ordered
 * deterministic schedule (ffa-backward-ordered.ts), picked per launch. The grid is items x
 * kv heads, and the items come longest first (planFfaBackward). Kv-head-major blocks (block b
 * runs item b % items of kv head b / items) let the blocks running at once share q heads in the
 * L2 (bench/kernel/README.md, "Backward: kv-head-major blocks": varlen causal +13.5% at 16k), but
 * they give up the longest-first order across kv heads: the last kv heads' longest items start
 * last. Item-major blocks (item b / Hkv of kv head b % Hkv) keep it. On grids of many waves the
 * tail is a small share of the launch either way; on grids of ~2 waves with items of unequal
 * length (causal and short documents at 4k) it decides the launch: causal at 4k read 348 TFLOP/s
 * kv-major against 404 item-major (two bench:kernel runs, 2026-12-03 06:40 and 2026-12-02 18:03
 * UTC).
 *
 * So the kernel takes a split (bwd_item, ffa_common.cuh): the first kvMajorItems items, the
 * longest, kv-major, then the rest item-major. The rule simulates the grid as the hardware hands
 * out blocks (in index order, each to the first SM that frees up; one block per SM, the kernel's
 * shared memory) with each block's cost in steps, for tails of 0, 1/2, 1, ... 4 waves of
 * item-major blocks (all item-major on grids of up to 4 waves), and keeps the shortest tail whose
 * simulated makespan is within SPLIT_TOLERANCE of the best of them: as many blocks kv-major as
 * the tail allows.
 */
import type { FfaBackwardPlan } from './ffa-backward.js';

/**
 * A forced block order (CudaFfaBackward's blockOrder option; checks and A/B measurements):
 * all kv-major, all item-major, or the first round(kvMajorShare x items) items kv-major.
 */
export type BackwardBlockOrder = 'kv-major' | 'item-major' | { readonly kvMajorShare: number };

/** Throws a RangeError unless `order` is a BackwardBlockOrder. */
export function validateBlockOrder(order: BackwardBlockOrder): void {
  if (order === 'kv-major' || order === 'item-major') return;
  const share = typeof order === 'object' && order !== null ? order.kvMajorShare : undefined;
  if (typeof share !== 'number' || !(share >= 0 && share <= 1)) {
    throw new RangeError(`must be 'auto', 'kv-major', 'item-major' or { kvMajorShare } with a share in [0, 1], got ${JSON.stringify(order)}`);
  }
}

/** The shortest item-major tail whose simulated makespan is at most this many times the best candidate's. */
export const SPLIT_TOLERANCE = 1.02;
/** The longest item-major tail the rule tries, in waves of blocks (the tail is what the last waves run; longer ones give up kv-major's L2 sharing on most of the grid). */
export const MAX_TAIL_WAVES = 4;
/** Grids of at least this many waves skip the simulation (all kv-major: the tail is at most ~1/waves of the launch). */
export const ORDER_SIMULATION_MAX_WAVES = 16;
/** A block's fixed cost beyond its steps (K / V loads, the first Q / dO tiles, the dK / dV epilogue), in steps. */
export const BLOCK_OVERHEAD_STEPS = 2;

/**
 * The makespan of blocks with `costs`, handed out in index order, each to the slot that frees up
 * first (ties: the lowest slot), on `slots` slots at once. A binary heap of (free time, slot):
 * the rule runs it for up to ~30 tails of grids of up to 16 waves.
 */
export function listScheduleMakespan(costs: ArrayLike<number>, slots: number): number {
  if (!(Number.isInteger(slots) && slots > 0)) throw new RangeError(`slots must be a positive integer, got ${slots}`);
  const n = Math.min(slots, costs.length);
  // (free time, slot) pairs in one array, a valid heap at the start: all free at 0, in slot order
  const heap = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) heap[2 * i + 1] = i;
  let end = 0;
  for (let b = 0; b < costs.length; b++) {
    const t = heap[0] + costs[b];
    const s = heap[1];
    if (t > end) end = t;
    // sift (t, s) down from the root
    let i = 0;
    for (;;) {
      let m = 2 * i + 1;
      if (m >= n) break;
      const r = m + 1;
      if (r < n && (heap[2 * r] < heap[2 * m] || (heap[2 * r] === heap[2 * m] && heap[2 * r + 1] < heap[2 * m + 1]))) m = r;
      if (heap[2 * m] > t || (heap[2 * m] === t && heap[2 * m + 1] > s)) break;
      heap[2 * i] = heap[2 * m];
      heap[2 * i + 1] = heap[2 * m + 1];
      i = m;
    }
    heap[2 * i] = t;
    heap[2 * i + 1] = s;
  }
  return end;
}

/** Each item's cost in steps: G x its q steps + BLOCK_OVERHEAD_STEPS. */
function itemCosts(plan: Pick<FfaBackwardPlan, 'work' | 'numWork'>, headsQ: number, headsKv: number, stepRows: number): Float64Array {
  const g = headsQ / headsKv;
  const cost = new Float64Array(plan.numWork);
  for (let i = 0; i < plan.numWork; i++) cost[i] = g * Math.ceil((plan.work[4 * i + 3] - plan.work[4 * i + 2]) / stepRows) + BLOCK_OVERHEAD_STEPS;
  return cost;
}

/**
 * Each default-launch block's cost in steps, in the split order with the first `kvMajorItems`
 * items kv-major (blocks = items x headsKv; bwd_item in ffa_common.cuh).
 */
export function backwardBlockCosts(plan: Pick<FfaBackwardPlan, 'work' | 'numWork'>, headsQ: number, headsKv: number, stepRows: number, kvMajorItems: number): Float64Array {
  return splitCosts(itemCosts(plan, headsQ, headsKv, stepRows), headsKv, kvMajorItems);
}

function splitCosts(item: Float64Array, headsKv: number, kvMajorItems: number): Float64Array {
  const items = item.length;
  if (!(Number.isInteger(kvMajorItems) && kvMajorItems >= 0 && kvMajorItems <= items)) throw new RangeError(`kvMajorItems must be an integer in [0, ${items}], got ${kvMajorItems}`);
  const costs = new Float64Array(items * headsKv);
  const kvBlocks = kvMajorItems * headsKv;
  for (let b = 0; b < costs.length; b++) costs[b] = item[b < kvBlocks ? b % kvMajorItems : kvMajorItems + Math.floor((b - kvBlocks) / headsKv)];
  return costs;
}

/** The kvMajorItems of a forced order on `items` items. */
export function kvMajorItemsOf(order: BackwardBlockOrder, items: number): number {
  return order === 'kv-major' ? items : order === 'item-major' ? 0 : Math.round(order.kvMajorShare * items);
}

/**
 * The simulated makespan, in steps on `smCount` SMs, of each candidate split: item-major tails of
 * 0, 1/2, 1, ... waves of blocks up to MAX_TAIL_WAVES waves or all the items (kvMajorItems from all
 * the items down).
 */
export function simulatedSplitMakespans(plan: Pick<FfaBackwardPlan, 'work' | 'numWork'>, headsQ: number, headsKv: number, stepRows: number, smCount: number): { kvMajorItems: number; makespan: number }[] {
  const item = itemCosts(plan, headsQ, headsKv, stepRows);
  const items = plan.numWork;
  const step = Math.max(1, Math.round(smCount / (2 * headsKv))); // half a wave of blocks, in items
  const maxTail = Math.min(items, Math.floor((MAX_TAIL_WAVES * smCount) / headsKv));
  const tails: number[] = [];
  for (let tail = 0; tail < maxTail; tail += step) tails.push(tail);
  tails.push(maxTail);
  return tails.map((tail) => ({ kvMajorItems: items - tail, makespan: listScheduleMakespan(splitCosts(item, headsKv, items - tail), smCount) }));
}

/** The kvMajorItems of a launch of `plan`'s items (this file's header): the default launch, or an ordered one (orderedLaunchItems). */
export function pickKvMajorItems(plan: Pick<FfaBackwardPlan, 'work' | 'numWork'>, headsQ: number, headsKv: number, stepRows: number, smCount: number): number {
  if (plan.numWork * headsKv >= ORDER_SIMULATION_MAX_WAVES * smCount) return plan.numWork;
  const c = simulatedSplitMakespans(plan, headsQ, headsKv, stepRows, smCount);
  const best = Math.min(...c.map((x) => x.makespan));
  return c.find((x) => x.makespan <= SPLIT_TOLERANCE * best)!.kvMajorItems;
}

/** How a launch's blocks run, in words: 'kv-major', 'item-major', or 'split K/N' (K of N items kv-major). */
export function describeBlockOrder(kvMajorItems: number, items: number): string {
  return kvMajorItems === items ? 'kv-major' : kvMajorItems === 0 ? 'item-major' : `split ${kvMajorItems}/${items}`;
}
