/**
 * The ordered deterministic schedule of the Hopper backward (ffa_bwd_sm90.cu built with
 * -DFFA_BWD_SM90_ORDERED), deterministic mode's schedule wherever it runs (the Hopper kernel at head
 * dim 128; CudaFfaBackward.deterministicScheduleAt): one launch over the whole work list in which
 * every 64-row dQ tile of a q head receives its reduce-adds in a fixed order, instead of the grouped
 * schedule's one launch per conflict-free group (planDeterministicBackward: about max(k tiles,
 * q chunks) launches, 128 for one 16k slice, each a few short waves). H200, 16k tokens, 64:8 heads,
 * bf16, heads inner for every item: 1.06-1.23x the default backward's time, the grouped schedule
 * 1.42-1.59x; after the default's Pᵀ step 1.05-1.11x, and 1.51x on the sliding window, which the
 * walk rule (below) brought to 1.09x (1.03x at 64k). Once the default's blocks ran in a split
 * order and its causal items were cut, the ordered launch (item-major) read up to 1.32x (varlen
 * causal 16k); in the default's split order, picked per ordered launch (the kernel's
 * split_item_head), 1.02-1.19x on bench:kernel's six masks at 16k and 1.01-1.08x at 64k
 * (bench/kernel/README.md, "Deterministic backward").
 *
 * The host's part, a pure function of the plan and the slice list:
 *   - q tile grid: the slices' q ranges are merged into groups of overlapping ranges; each group
 *     [lo, hi) is cut into 64-row tiles from lo. A tile has one counter per q head (the kernel's
 *     locks, numLocks per head, zeroed before the launch). A step of an item covers exactly one
 *     tile; its rows outside the item's [qLo, qHi) are masked and added as zeros, and adding +0
 *     commutes with every fp32 add, so rows shared by two groups' tiles need no order between
 *     them.
 *   - ranks: walking the items in launch order, each (item, tile) gets the number of earlier items
 *     that add to the tile. The kernel's dQ thread waits until the tile's counter equals the rank,
 *     adds, waits for completion and increments it. Items wait only for earlier items (a lower
 *     blockIdx, dispatched first, or an earlier launch), so the lowest unfinished one never waits.
 *   - walk direction: an item's tiles are visited from the end it shares with the longer items
 *     before it (causal, bi-causal and full items end at their slice's last row: top down;
 *     inv-causal ones start at its first row: bottom up), so concurrent blocks of one slice visit
 *     the tiles in the same order and each waits about one step for the one before it.
 *   - walk order (the record's walk; ranks and every tile's order of adds are the same either
 *     way): the q heads of the kv group inner (step (tile k, head hh), hh fastest) or outer
 *     ((head hh, tile k), k fastest), one choice per group of overlapping q ranges
 *     (orderedWalkHeadsOuter). Heads inner suits items aligned at one end (causal: every item
 *     starts at the top tile, each 2 tiles shorter than the one before, so with the heads outer it
 *     would wait for the longer one at every change of head). Heads outer suits items that are
 *     shifted copies (the sliding window's band: 18 tiles each, each 2 tiles above the one before):
 *     with the heads inner a block reaches a tile 2 x G steps after the block before it, and the
 *     tile's Q, dO and dQ rows are out of the L2 by then (H200, ncu, 16k: the ordered launch's L2
 *     hit rate 34% against the default's 79%, bench/kernel/README.md); with the heads outer, 2
 *     steps after.
 *   - launches: dk / dv are still added once per item with plain fp32 atomics, so items whose
 *     key ranges overlap (several slices over the same keys) are grouped first-fit in plan order
 *     into groups of disjoint keys (one group for full, causal and varlen masks). Within a launch
 *     a key row's adds land in any order, which gives the same bits only for one add, or for two
 *     onto a row still at zero (0 + a + b = a + b = b + a); two adds onto an earlier launch's
 *     sum s need not ((s + a) + b vs (s + b) + a). So where dk and dv start from zero,
 *     consecutive groups share a launch as long as every key row gets at most one add in it, or
 *     two and none before (fromZero, greedy; the rule depends only on a launch's first and last
 *     group and holds for any part of a run it holds for, so the greedy cut is the fewest
 *     launches): the sliding window's causal head slice and its band, which share 1024 keys, run
 *     as one launch; a key row with d > 2 adds needs d - 1 launches (block-causal with four
 *     blocks per document: 3). Onto a caller's accumulator every group is a launch of its own.
 */
import type { SliceList } from '../../mask/slice-list.js';
import { greedyDisjointGroups } from './ffa-forward.js';
import type { FfaBackwardPlan } from './ffa-backward.js';

/**
 * Ints per work record: slice, n0, qLo, qHi, first step's row, first step's tile counter, rank
 * offset, ±tiles (the sign: the walk's direction), walk (WALK_HEADS_INNER or WALK_HEADS_OUTER).
 * The kernel's kOrderedRecord (ffa_bwd_sm90.cu) is the same number.
 */
export const ORDERED_RECORD = 9;
/** An item's steps as (tile k, q head hh) with the heads inner: step k · G + hh. */
export const WALK_HEADS_INNER = 0;
/** An item's steps as (q head hh, tile k) with the tiles inner: step hh · tiles + k. */
export const WALK_HEADS_OUTER = 1;

/** Which walk the items get: 'rule' (orderedWalkHeadsOuter per group of tiles), or every item the given one. */
export type OrderedWalk = 'rule' | 'inner' | 'outer';

export interface OrderedBackwardPlan {
  /** ORDERED_RECORD ints per item, in launch order. */
  readonly work: Int32Array;
  /** Flat [first item, item count] per group of items on disjoint keys, in launch order. */
  readonly groups: Int32Array;
  /** Flat [first item, item count] per launch where dk and dv start from zero: runs of consecutive groups. */
  readonly fromZero: Int32Array;
  /** ranks[rankOff + k]: the rank of an item's k-th tile (same for every q head and either walk). */
  readonly ranks: Int32Array;
  /** Tile counters per q head. */
  readonly numLocks: number;
}

/** An item's tiles as the walk rule sees them: the first one walked (index in its tile group), the direction (±1), how many. */
export interface WalkedTiles {
  readonly first: number;
  readonly dir: number;
  readonly tiles: number;
}

/**
 * The walk rule, for the items of one tile group in launch order: true for the heads outer. Two
 * consecutive items whose tiles overlap reach the first tile they share (the one of the earlier
 * item's tiles nearest the later item's first) Δd tiles of walk apart, and their lengths differ by
 * Δn tiles. Walking the heads inner, the later item touches each shared (tile, q head) G · Δd steps
 * after the earlier one or before it (then it waits that long); walking the heads outer, Δd +
 * hh · Δn steps at head hh, (G − 1) / 2 · Δn more on average over the G heads. So the heads outer
 * keep the items closer when Σ (G − 1) |Δd| > Σ (G − 1) / 2 · |Δn|, i.e. 2 Σ |Δd| > Σ |Δn|, whatever
 * G (at G = 1 the two walks are one). Items shifted against each other by whole tiles and equally
 * long (the sliding window's band: Δd = 2, Δn = 0) go heads outer, so that a tile's Q, dO and dQ
 * rows are touched again 2 steps later instead of 2G, still in the L2; items aligned at one end
 * (causal: Δd = 0, Δn = 2; full: Δd = Δn = 0) keep the heads inner, with which the causal items
 * waited at no change of head.
 */
export function orderedWalkHeadsOuter(items: readonly WalkedTiles[]): boolean {
  // an item's lowest and highest tile, whichever way it walks
  const span = (x: WalkedTiles): [number, number] => {
    const last = x.first + x.dir * (x.tiles - 1);
    return [Math.min(x.first, last), Math.max(x.first, last)];
  };
  let shift = 0;
  let length = 0;
  for (let j = 1; j < items.length; j++) {
    const a = items[j - 1];
    const b = items[j];
    const [aLo, aHi] = span(a);
    const [bLo, bHi] = span(b);
    if (bHi < aLo || aHi < bLo) continue; // no tile in common
    const t = Math.min(aHi, Math.max(aLo, b.first));
    shift += Math.abs(Math.abs(t - b.first) - Math.abs(t - a.first));
    length += Math.abs(b.tiles - a.tiles);
  }
  return 2 * shift > length;
}

/**
 * The ordered schedule of a plan (see the file comment). `walk`: each item's walk, by the rule
 * (orderedWalkHeadsOuter per group of overlapping q ranges: every item of a group walks alike) or
 * forced (the GPU checks run both walks; the timing model compares them). The walk changes
 * neither the ranks nor any tile's order of adds: only which (tile, q head) an item visits when.
 */
export function planOrderedBackward(plan: FfaBackwardPlan, slices: SliceList, blockN: number, blockM: number, walk: OrderedWalk = 'rule'): OrderedBackwardPlan {
  const n = plan.numWork;
  const w = plan.work;
  const keyEnd = (i: number): number => Math.min(w[4 * i + 1] + blockN, slices.kRanges[2 * w[4 * i] + 1]);
  const { group: of, groups } = greedyDisjointGroups(n, 1, (i) => [w[4 * i + 1], keyEnd(i)]);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => of[a] - of[b] || a - b);
  const groupList = new Int32Array(2 * groups);
  for (let i = 0; i < n; i++) groupList[2 * of[i] + 1]++;
  for (let g = 1; g < groups; g++) groupList[2 * g] = groupList[2 * g - 2] + groupList[2 * g - 1];

  // groups of overlapping q ranges (of slices with work), each cut into tiles from its first row
  const used = [...new Set(Array.from({ length: n }, (_, i) => w[4 * i]))].sort((a, b) => slices.qRanges[2 * a] - slices.qRanges[2 * b] || a - b);
  const comp = new Map<number, { lo: number; lockBase: number; items: WalkedTiles[]; outer: boolean }>();
  let numLocks = 0;
  for (let a = 0; a < used.length; ) {
    const lo = slices.qRanges[2 * used[a]];
    let hi = slices.qRanges[2 * used[a] + 1];
    let b = a + 1;
    while (b < used.length && slices.qRanges[2 * used[b]] < hi) hi = Math.max(hi, slices.qRanges[2 * used[b++] + 1]);
    const c = { lo, lockBase: numLocks, items: [], outer: walk === 'outer' };
    for (let j = a; j < b; j++) comp.set(used[j], c);
    numLocks += Math.ceil((hi - lo) / blockM);
    a = b;
  }

  // each item's tiles in launch order: walked from the end it shares with the longer items before it
  const walked = order.map((i): WalkedTiles => {
    const [b, , qLo, qHi] = w.subarray(4 * i, 4 * i + 4);
    const { lo } = comp.get(b)!;
    const i0 = Math.floor((qLo - lo) / blockM);
    const i1 = Math.floor((qHi - 1 - lo) / blockM);
    const up = slices.maskTypes[b] === 2;
    return { first: up ? i0 : i1, dir: up ? 1 : -1, tiles: i1 - i0 + 1 };
  });
  if (walk === 'rule') {
    order.forEach((i, at) => comp.get(w[4 * i])!.items.push(walked[at]));
    for (const c of new Set(comp.values())) c.outer = orderedWalkHeadsOuter(c.items);
  }

  const count = new Int32Array(numLocks);
  const work = new Int32Array(ORDERED_RECORD * n);
  const ranks: number[] = [];
  order.forEach((i, at) => {
    const [b, n0, qLo, qHi] = w.subarray(4 * i, 4 * i + 4);
    const { lo, lockBase, outer } = comp.get(b)!;
    const { first, dir, tiles } = walked[at];
    const rec = [b, n0, qLo, qHi, lo + first * blockM, lockBase + first, ranks.length, dir * tiles, outer ? WALK_HEADS_OUTER : WALK_HEADS_INNER];
    work.set(rec, ORDERED_RECORD * at);
    for (let k = 0; k < tiles; k++) ranks.push(count[lockBase + first + dir * k]++);
  });
  return { work, groups: groupList, fromZero: launchesFromZero(groupList, order.map((i) => [w[4 * i + 1], keyEnd(i)] as const)), ranks: Int32Array.from(ranks), numLocks };
}

/** Whether the plan's item `at` (launch order) walks with the heads outer (its record's last field). */
export function orderedItemHeadsOuter(plan: OrderedBackwardPlan, at: number): boolean {
  return plan.work[ORDERED_RECORD * at + ORDERED_RECORD - 1] === WALK_HEADS_OUTER;
}

/** The share of the plan's items that walk with the heads outer (0 for an empty plan). */
export function orderedHeadsOuterShare(plan: OrderedBackwardPlan): number {
  const n = plan.work.length / ORDERED_RECORD;
  let outer = 0;
  for (let at = 0; at < n; at++) if (orderedItemHeadsOuter(plan, at)) outer++;
  return n > 0 ? outer / n : 0;
}

/**
 * Consecutive groups merged into launches onto zeroed dk / dv: a group joins the open launch
 * unless some key row of it would then get two adds in the launch after adds in an earlier one,
 * or three in the launch. `keys`: each item's [first key, end), in launch order.
 */
function launchesFromZero(groups: Int32Array, keys: ReadonlyArray<readonly [number, number]>): Int32Array {
  const limit = keys.reduce((m, [, e]) => Math.max(m, e), 0);
  const before = new Int32Array(limit); // adds in closed launches
  const open = new Int32Array(limit); // adds in the open launch
  const out: number[] = [];
  const each = (from: number, to: number, f: (key: number) => void): void => {
    for (let i = from; i < to; i++) for (let key = keys[i][0]; key < keys[i][1]; key++) f(key);
  };
  let start = 0; // the open launch's first item
  for (let g = 0; g < groups.length; g += 2) {
    const [first, count] = [groups[g], groups[g + 1]];
    let fits = true;
    each(first, first + count, (key) => {
      const c = open[key] + 1;
      if (c > 2 || (c === 2 && before[key] > 0)) fits = false;
    });
    if (!fits) {
      each(start, first, (key) => {
        before[key] += open[key];
        open[key] = 0;
      });
      out.push(start, first - start);
      start = first;
    }
    each(first, first + count, (key) => open[key]++);
  }
  const end = groups.length > 0 ? groups[groups.length - 2] + groups[groups.length - 1] : 0;
  if (end > start) out.push(start, end - start);
  return Int32Array.from(out);
}

/**
 * The launches of an ordered plan: flat [first item, item count], in order. `fromZero` (dk and dv
 * start from zero in this call): runs of consecutive key-disjoint groups (plan.fromZero);
 * otherwise one group per launch.
 */
export function orderedLaunches(plan: OrderedBackwardPlan, fromZero: boolean): Int32Array {
  return fromZero ? plan.fromZero : plan.groups;
}

/**
 * The items of one ordered launch as a default-launch work list whose item i has q rows
 * [0, tiles_i x tileRows): what the block-order rule (pickKvMajorItems) reads, each item's steps.
 * The ordered kernel runs the same split order as the default one (split_item_head).
 */
export function orderedLaunchItems(plan: OrderedBackwardPlan, first: number, count: number, tileRows: number): Pick<FfaBackwardPlan, 'work' | 'numWork'> {
  const work = new Int32Array(4 * count);
  for (let i = 0; i < count; i++) {
    const rec = ORDERED_RECORD * (first + i);
    work.set([plan.work[rec], plan.work[rec + 1], 0, Math.abs(plan.work[rec + 7]) * tileRows], 4 * i);
  }
  return { work, numWork: count };
}

/**
 * How deterministic mode runs: the ordered single launch (this file), or one launch per
 * conflict-free group (planDeterministicBackward). CudaFfaBackward.deterministicScheduleAt says
 * which one a head dim gets.
 */
export type DeterministicSchedule = 'grouped' | 'ordered';
