/**
 * A timing model of the Hopper backward's default and ordered deterministic schedules
 * (ffa-backward-ordered.ts) for one mask at head dim 128: a replay of the launches the host builds
 * (planFfaBackward, splitLongItems, planOrderedBackward, orderedLaunches: the functions
 * FfaBackwardProblem calls) on `sms` SMs with one block each, blocks dispatched in blockIdx order
 * as SMs free up, a launch starting once the one before has drained. Model numbers, not
 * measurements: ordered-model-run.ts compares them with det-speed's.
 *
 * A block (item, kv head) walks its steps (64-row q tile x q head of the kv group; default: tiles
 * from qLo, heads outer; ordered: the plan's tiles from mFirst, the heads inner or outer as the
 * item's record says, as the kernel).
 * Per step, in µs:
 *   consumers  compute the step (`step`, plus `missCost` when its q tile is not in the L2), then
 *              stage its dQ once the staging buffer of the step before is free again (one buffer
 *              per consumer warpgroup, as the kernel);
 *   dQ thread  issues the staged step's reduce-adds once it is done with the previous step; they
 *              have read the staging buffer `addRead` later. Ordered: it first waits for the
 *              tile's turn (the counter of (q head, tile) at the step's rank: the release of the
 *              rank before, seen `poll` later), and passes the turn on only once the adds are
 *              complete, `addDone` after the issue; it starts the next step after that.
 * A block holds its SM from its start to the later of its consumers' last step + `blockEnd`
 * (dK / dV out) and its dQ thread's last add; its first step starts `blockStart` after its start.
 *
 * The L2 (l2Bytes > 0): a step finds its q tile (Q, dO, the fp32 dQ rows of one q head) in the L2
 * if some step touched the same tile at most `window` µs before, the time in which all SMs touch
 * l2Bytes at stepBytes a step. Which steps miss is read off the timeline without misses, then the
 * timeline is replayed with them (once: misses slow the blocks that take them, which changes the
 * timeline, which the model does not follow further).
 */
import type { SliceList } from '../../src/mask/slice-list.js';
import { DEFAULT_Q_RANGE_CUT, planFfaBackward, splitLongItems, type FfaBackwardPlan, type QRangeCut } from '../../src/kernels/cuda/ffa-backward.js';
import { ORDERED_RECORD, orderedItemHeadsOuter, orderedLaunches, planOrderedBackward, type OrderedBackwardPlan, type OrderedWalk } from '../../src/kernels/cuda/ffa-backward-ordered.js';

/** The Hopper backward's tiles at head dim 128 (ffa_bwd_sm90.cu): 128 keys, 64 q rows a step. */
export const MODEL_BLOCK_N = 128;
export const MODEL_BLOCK_M = 64;

export interface ModelParams {
  /** SMs, one resident block each (the H200: 132). */
  sms: number;
  /** A step of the consumers with its q tile in the L2, µs. */
  step: number;
  /** Issue of a step's reduce-adds to their reading the staging buffer, µs. */
  addRead: number;
  /** Ordered: issue of a step's reduce-adds to the tile's counter released, µs. */
  addDone: number;
  /** Ordered: a release to the waiting dQ thread seeing it, µs. */
  poll: number;
  /** Block start to its first step, µs. */
  blockStart: number;
  /** Last step to the block's end (dK / dV out), µs. */
  blockEnd: number;
  /** L2 bytes that hold recently touched q tiles; 0: no L2 model (every step at `step`). */
  l2Bytes: number;
  /** Bytes a step touches (Q and dO 16 KiB each, the dQ tile 32 KiB). */
  stepBytes: number;
  /** Added to a step whose q tile is not in the L2, µs. */
  missCost: number;
}

export interface ModelShape {
  tokensQ: number;
  tokensK: number;
  headsQ: number;
  headsKv: number;
}

/** One block's walk: per step its q tile (q head x 64-row tile), and ordered its counter and rank. */
export interface BlockWalk {
  item: number;
  hk: number;
  tiles: Int32Array;
  locks: Int32Array | null;
  ranks: Int32Array | null;
}

/** The launches of one schedule, each its blocks in blockIdx order. */
export interface ModelSchedule {
  readonly ordered: boolean;
  readonly launches: ReadonlyArray<readonly BlockWalk[]>;
  /** Turn counters (q heads x numLocks); 0 for the default schedule. */
  readonly counters: number;
  /** q tiles (q heads x 64-row tiles of tokensQ). */
  readonly qTiles: number;
}

const tilesPerHead = (shape: ModelShape): number => Math.ceil(shape.tokensQ / MODEL_BLOCK_M);

/** The default launch as FfaBackwardProblem builds it: the plan with long full items cut, items x kv heads. */
export function defaultSchedule(plan: FfaBackwardPlan, slices: SliceList, shape: ModelShape, cut: QRangeCut | null = DEFAULT_Q_RANGE_CUT): ModelSchedule {
  const list = cut !== null ? splitLongItems(plan, slices, cut, MODEL_BLOCK_M) : plan;
  const G = shape.headsQ / shape.headsKv;
  const T = tilesPerHead(shape);
  const blocks: BlockWalk[] = [];
  for (let i = 0; i < list.numWork; i++) {
    const qLo = list.work[4 * i + 2];
    const nQt = Math.ceil((list.work[4 * i + 3] - qLo) / MODEL_BLOCK_M);
    for (let hk = 0; hk < shape.headsKv; hk++) {
      const tiles = new Int32Array(G * nQt);
      // the kernel's step s: head s / nQt, rows qLo + (s % nQt) · 64
      for (let s = 0; s < tiles.length; s++) tiles[s] = (hk * G + Math.floor(s / nQt)) * T + Math.floor((qLo + (s % nQt) * MODEL_BLOCK_M) / MODEL_BLOCK_M);
      blocks.push({ item: i, hk, tiles, locks: null, ranks: null });
    }
  }
  return { ordered: false, launches: [blocks], counters: 0, qTiles: shape.headsQ * T };
}

/**
 * The ordered launches onto zeroed dK / dV (a backward without accumulators), each block's walk as
 * the kernel's (StepWalk): per item the walk of its record, the heads inner or outer.
 */
export function orderedSchedule(ord: OrderedBackwardPlan, shape: ModelShape): ModelSchedule {
  const G = shape.headsQ / shape.headsKv;
  const T = tilesPerHead(shape);
  const g = orderedLaunches(ord, true);
  const launches: BlockWalk[][] = [];
  for (let l = 0; l < g.length; l += 2) {
    const blocks: BlockWalk[] = [];
    for (let at = g[l]; at < g[l] + g[l + 1]; at++) {
      const [, , , , mFirst, lockFirst, rankOff, signed] = ord.work.subarray(ORDERED_RECORD * at, ORDERED_RECORD * (at + 1));
      const n = Math.abs(signed);
      const dir = signed < 0 ? -1 : 1;
      const outer = orderedItemHeadsOuter(ord, at);
      for (let hk = 0; hk < shape.headsKv; hk++) {
        const tiles = new Int32Array(G * n);
        const locks = new Int32Array(G * n);
        const ranks = new Int32Array(G * n);
        // step k · G + hh is tile k, head hh (heads inner), or hh · n + k (heads outer)
        for (let k = 0; k < n; k++) {
          for (let hh = 0; hh < G; hh++) {
            const h = hk * G + hh;
            const st = outer ? hh * n + k : k * G + hh;
            tiles[st] = h * T + Math.floor((mFirst + dir * MODEL_BLOCK_M * k) / MODEL_BLOCK_M);
            locks[st] = h * ord.numLocks + lockFirst + dir * k;
            ranks[st] = ord.ranks[rankOff + k];
          }
        }
        blocks.push({ item: at, hk, tiles, locks, ranks });
      }
    }
    launches.push(blocks);
  }
  return { ordered: true, launches, counters: ord.numLocks * shape.headsQ, qTiles: shape.headsQ * T };
}

/** The default schedule and the ordered one (`walk`: the plan's rule, or one walk forced for every item) of a mask, from the planners FfaBackwardProblem uses. */
export function maskSchedules(slices: SliceList, shape: ModelShape, walk: OrderedWalk = 'rule'): { default: ModelSchedule; ordered: ModelSchedule; plan: OrderedBackwardPlan } {
  const plan = planFfaBackward(slices, shape.tokensQ, shape.tokensK, MODEL_BLOCK_N, MODEL_BLOCK_M);
  const ord = planOrderedBackward(plan, slices, MODEL_BLOCK_N, MODEL_BLOCK_M, walk);
  return { default: defaultSchedule(plan, slices, shape), ordered: orderedSchedule(ord, shape), plan: ord };
}

export interface BlockTiming {
  item: number;
  hk: number;
  start: number;
  end: number;
  /** Time the dQ thread waited for turns, µs. */
  waited: number;
}

export interface ModelResult {
  /** Modeled time of all launches, µs. */
  time: number;
  blocks: BlockTiming[];
  /** Sum over blocks of the time their dQ thread waited for turns, µs. */
  waited: number;
  /** Sum over blocks of their time on an SM, µs. */
  busy: number;
  /** Share of the steps that waited for their q tile (a fetch from DRAM). */
  missRate: number;
  /** Per step (blocks in dispatch order, flat): its start, µs. */
  starts: Float64Array;
}

/**
 * One replay with the given waits for the L2 (flat per step, blocks in dispatch order; null: none). Blocks
 * are taken in dispatch order and each one's steps computed in full: a block waits only for ranks
 * of earlier-dispatched blocks, which are computed by then (the ordered plan's promise; a rank
 * that is not next on its counter throws: the kernel would hang or add out of order).
 */
function replay(s: ModelSchedule, p: ModelParams, l2: Float64Array | null): ModelResult {
  const released = new Float64Array(s.counters); // the last release per counter
  const count = new Int32Array(s.counters); // adds per counter so far
  let total = 0;
  for (const launch of s.launches) for (const blk of launch) total += blk.tiles.length;
  const starts = new Float64Array(total);
  const blocks: BlockTiming[] = [];
  let launchStart = 0;
  let waited = 0;
  let busy = 0;
  let at = 0;
  let missed = 0;
  for (const launch of s.launches) {
    const free = new Float64Array(p.sms).fill(launchStart);
    let end = launchStart;
    for (const blk of launch) {
      let sm = 0;
      for (let i = 1; i < p.sms; i++) if (free[i] < free[sm]) sm = i;
      const start = free[sm];
      let stage = start + p.blockStart; // the consumers' last staging (at the start: before the first step)
      let bufFree = -Infinity; // the staging buffer of the previous step free again
      let dqEnd = -Infinity; // the dQ thread done with the previous step
      let w = 0;
      for (let st = 0; st < blk.tiles.length; st++, at++) {
        starts[at] = stage;
        const m = l2 !== null ? l2[at] : 0;
        if (m > 0) missed++;
        stage = Math.max(stage + p.step + m, bufFree);
        let issue = Math.max(stage, dqEnd);
        if (s.ordered) {
          const lock = blk.locks![st];
          if (count[lock] !== blk.ranks![st]) throw new Error(`item ${blk.item} kv head ${blk.hk} step ${st}: rank ${blk.ranks![st]} on counter ${lock}, which is at ${count[lock]}`);
          const turn = count[lock] > 0 ? released[lock] + p.poll : -Infinity;
          if (turn > issue) {
            w += turn - issue;
            issue = turn;
          }
          dqEnd = issue + p.addDone;
          released[lock] = dqEnd;
          count[lock]++;
        } else {
          dqEnd = issue + p.addRead;
        }
        bufFree = issue + p.addRead;
      }
      const done = Math.max(stage + p.blockEnd, dqEnd);
      free[sm] = done;
      end = Math.max(end, done);
      waited += w;
      busy += done - start;
      blocks.push({ item: blk.item, hk: blk.hk, start, end: done, waited: w });
    }
    launchStart = end;
  }
  return { time: launchStart, blocks, waited, busy, missRate: total > 0 ? missed / total : 0, starts };
}

/** The steps (flat, dispatch order) grouped by q tile, each group in order of start on the timeline `starts`. */
function stepsByTile(s: ModelSchedule, starts: Float64Array): Int32Array[] {
  const all = s.launches.flat();
  const head = new Int32Array(s.qTiles + 1);
  for (const blk of all) for (const t of blk.tiles) head[t + 1]++;
  for (let t = 0; t < s.qTiles; t++) head[t + 1] += head[t];
  const fill = head.slice(0, s.qTiles);
  const order = new Int32Array(starts.length);
  let at = 0;
  for (const blk of all) for (const t of blk.tiles) order[fill[t]++] = at++;
  const out: Int32Array[] = [];
  for (let t = 0; t < s.qTiles; t++) if (head[t + 1] > head[t]) out.push(order.subarray(head[t], head[t + 1]).sort((a, b) => starts[a] - starts[b] || a - b));
  return out;
}

/**
 * Per step (flat, dispatch order) the time it waits for its q tile on the timeline `starts`: a
 * tile last touched more than `window` µs before (or never) is fetched, which takes `missCost`
 * from the step that asks first; a step that asks while the fetch is under way waits for its end.
 */
export function l2Waits(s: ModelSchedule, starts: Float64Array, window: number, missCost: number): Float64Array {
  const wait = new Float64Array(starts.length);
  for (const bucket of stepsByTile(s, starts)) {
    let last = -Infinity;
    let ready = -Infinity; // the end of the tile's last fetch
    for (const j of bucket) {
      if (starts[j] - last > window) ready = starts[j] + missCost;
      wait[j] = Math.max(0, ready - starts[j]);
      last = starts[j];
    }
  }
  return wait;
}

/** The times between consecutive steps on the same q tile (its first step left out), in steps of `step` µs, sorted. */
export function reuseGaps(s: ModelSchedule, r: ModelResult, step: number): Float64Array {
  const gaps: number[] = [];
  for (const bucket of stepsByTile(s, r.starts)) for (let j = 1; j < bucket.length; j++) gaps.push((r.starts[bucket[j]] - r.starts[bucket[j - 1]]) / step);
  return Float64Array.from(gaps).sort();
}

/** The replay with the L2 model (see the file comment); without one (l2Bytes 0) a single replay. */
export function simulateSchedule(s: ModelSchedule, p: ModelParams): ModelResult {
  const first = replay(s, p, null);
  if (p.l2Bytes <= 0) return first;
  const window = (p.l2Bytes / (p.sms * p.stepBytes)) * p.step;
  return replay(s, p, l2Waits(s, first.starts, window, p.missCost));
}

/**
 * The step time for which the schedule's modeled time is `measured` µs: regula falsi (Illinois) on
 * [0, twice the step of an even spread], the time being close to linear in the step, to within
 * 1e-5 of `measured` (a few replays; a replay of a 64k full mask takes seconds).
 */
export function fitStep(s: ModelSchedule, p: Omit<ModelParams, 'step'>, measured: number): number {
  let steps = 0;
  for (const launch of s.launches) for (const blk of launch) steps += blk.tiles.length;
  const f = (step: number): number => simulateSchedule(s, { ...p, step }).time - measured;
  let [lo, hi] = [0, (2 * measured * p.sms) / Math.max(1, steps)];
  let [flo, fhi] = [f(lo), f(hi)];
  if (flo >= 0 || fhi <= 0) throw new Error(`fitStep: ${measured} µs is not reached within steps of [${lo}, ${hi}] µs`);
  let side = 0;
  for (let i = 0; i < 40; i++) {
    const mid = hi - (fhi * (hi - lo)) / (fhi - flo);
    const fm = f(mid);
    if (Math.abs(fm) <= 1e-5 * measured) return mid;
    if (fm < 0) {
      [lo, flo] = [mid, fm];
      if (side === -1) fhi /= 2;
      side = -1;
    } else {
      [hi, fhi] = [mid, fm];
      if (side === 1) flo /= 2;
      side = 1;
    }
  }
  return (lo + hi) / 2;
}
