/**
 * The block order of the Hopper backward's default launch, picked per plan. The grid is items x
 * kv heads, and the items come longest first (planFfaBackward). Kv-head-major blocks (block b
 * runs item b % items of kv head b / items) let the blocks running at once share q heads in the
 * L2 (bench/kernel/README.md, "Backward: kv-head-major blocks": varlen causal +13.5% at 16k), but
 * they give up the longest-first order across kv heads: the last kv heads' longest items start
 * last. Item-major blocks (item b / Hkv of kv head b % Hkv) keep it. On grids of many waves the
 * tail is a small share of the launch either way; on grids of ~2 waves with items of unequal
 * length (causal and short documents at 4k) it decides the launch.
 *
 * The rule simulates both orders as the hardware hands out blocks (in index order, each to the
 * first SM that frees up; one block per SM, the kernel's shared memory) with each block's cost in
 * steps, and keeps kv-major unless its simulated makespan exceeds item-major's by
 * KV_MAJOR_TAIL_LIMIT. Measured (H200, 64:8 heads, bf16, bench:kernel's masks): in two bench:kernel
 * runs, item-major on 2026-12-02 18:03 UTC and kv-major on 2026-12-03 06:40, causal at 4k
 * (simulated kv / item 1.59) read 404 TFLOP/s item-major against 348 kv-major and varlen causal at
 * 4k (1.52) 231 against 210, while varlen causal at 8k (1.36) read 286 against 298 and causal at
 * 8k (1.23) 459 against 447; in one alternating A/B (2026-12-02 18:19) varlen causal at 16k (1.15)
 * read 352-357 against 400-406. The L2 gain outweighs a simulated tail of up to ~1.4x; the limit
 * rests on those runs and wants an A/B of both orders at 4k-8k.
 */
import type { FfaBackwardPlan } from './ffa-backward.js';

export type BackwardBlockOrder = 'kv-major' | 'item-major';
export const BACKWARD_BLOCK_ORDERS: readonly BackwardBlockOrder[] = ['kv-major', 'item-major'];

/** Kv-major stays unless its simulated makespan is this many times item-major's. */
export const KV_MAJOR_TAIL_LIMIT = 1.4;
/** Grids of at least this many waves skip the simulation (kv-major: the tail is at most ~1/waves of the launch). */
export const ORDER_SIMULATION_MAX_WAVES = 16;
/** A block's fixed cost beyond its steps (K / V loads, the first Q / dO tiles, the dK / dV epilogue), in steps. */
export const BLOCK_OVERHEAD_STEPS = 2;

/**
 * The makespan of blocks with `costs`, handed out in index order, each to the slot that frees up
 * first (ties: the lowest slot), on `slots` slots at once.
 */
export function listScheduleMakespan(costs: ArrayLike<number>, slots: number): number {
  if (!(Number.isInteger(slots) && slots > 0)) throw new RangeError(`slots must be a positive integer, got ${slots}`);
  const free = new Float64Array(Math.min(slots, costs.length));
  let end = 0;
  for (let b = 0; b < costs.length; b++) {
    let k = 0;
    for (let i = 1; i < free.length; i++) if (free[i] < free[k]) k = i;
    free[k] += costs[b];
    if (free[k] > end) end = free[k];
  }
  return end;
}

/** Each default-launch block's cost in steps, in the block order `order` (blocks = items x headsKv). */
export function backwardBlockCosts(plan: Pick<FfaBackwardPlan, 'work' | 'numWork'>, headsQ: number, headsKv: number, stepRows: number, order: BackwardBlockOrder): Float64Array {
  const g = headsQ / headsKv;
  const items = plan.numWork;
  const itemCost = new Float64Array(items);
  for (let i = 0; i < items; i++) itemCost[i] = g * Math.ceil((plan.work[4 * i + 3] - plan.work[4 * i + 2]) / stepRows) + BLOCK_OVERHEAD_STEPS;
  const costs = new Float64Array(items * headsKv);
  for (let b = 0; b < costs.length; b++) costs[b] = itemCost[order === 'kv-major' ? b % items : Math.floor(b / headsKv)];
  return costs;
}

/** The simulated makespans of both orders on `smCount` SMs, in steps. */
export function simulatedBackwardMakespans(plan: Pick<FfaBackwardPlan, 'work' | 'numWork'>, headsQ: number, headsKv: number, stepRows: number, smCount: number): Record<BackwardBlockOrder, number> {
  return {
    'kv-major': listScheduleMakespan(backwardBlockCosts(plan, headsQ, headsKv, stepRows, 'kv-major'), smCount),
    'item-major': listScheduleMakespan(backwardBlockCosts(plan, headsQ, headsKv, stepRows, 'item-major'), smCount),
  };
}

/** The block order the default launch of `plan` runs in (the rule of this file's header). */
export function pickBackwardBlockOrder(plan: Pick<FfaBackwardPlan, 'work' | 'numWork'>, headsQ: number, headsKv: number, stepRows: number, smCount: number): BackwardBlockOrder {
  if (plan.numWork * headsKv >= ORDER_SIMULATION_MAX_WAVES * smCount) return 'kv-major';
  const m = simulatedBackwardMakespans(plan, headsQ, headsKv, stepRows, smCount);
  return m['kv-major'] > KV_MAJOR_TAIL_LIMIT * m['item-major'] ? 'item-major' : 'kv-major';
}
