/**
 * The step trace of the Hopper backward's diagnostic build (ffa_bwd_sm90.cu compiled with
 * -DFFA_BWD_SM90_TRACE: CudaFfaBackward's `traceSteps` option): the layout of the kernel's
 * `ffa_bwd_trace` array and its reduction to cycles per phase of a step, which
 * bench/kernel/bwd-trace.ts prints. A diagnostic: the trace build adds a clock read and a store at
 * each phase boundary, so its cycles describe a slightly different kernel than the one timed.
 *
 * Layout (the kernel's kTrace* constants; a unit test reads them from the .cu): blocks with
 * blockIdx.x % every === 0, the first `blocks` of them, are sampled; each of their two consumer
 * warpgroups owns a record of `header` words (blockIdx.x + 1, 0 when nothing was written; the
 * block's step count; the low 32 bits of clock64() at kernel start and after the epilogue) and then
 * `events` clocks for each of its first `steps` steps. Sampled block b's warpgroup w record starts
 * at word (2 b + w) · record. After the records (word BWD_TRACE_TIMELINE), the block timeline of
 * the first `gridMax` blocks: 4 words per block (%smid + 1, 0 when not written; the clocks at its
 * start and after its epilogue; its step count), which bwdBlockTimeline reduces per SM.
 */
import { ShapeError, InvalidArgumentError } from '../../errors.js';
import { median } from '../../util/stats.js';

export const BWD_TRACE = { every: 64, blocks: 32, steps: 256, events: 13, header: 4, gridMax: 8192 } as const;
/** uint32 words of one (sampled block, consumer warpgroup) record. */
export const BWD_TRACE_RECORD = BWD_TRACE.header + BWD_TRACE.steps * BWD_TRACE.events;
/** The block timeline's first word. */
export const BWD_TRACE_TIMELINE = BWD_TRACE.blocks * 2 * BWD_TRACE_RECORD;
/** uint32 words of the whole `ffa_bwd_trace` array. */
export const BWD_TRACE_WORDS = BWD_TRACE_TIMELINE + 4 * BWD_TRACE.gridMax;
/** The kernel's name of the array (a `__device__` variable at global scope). */
export const BWD_TRACE_SYMBOL = 'ffa_bwd_trace';

/**
 * Phase e of a step ends at the step's clock e; phase 0 starts at the previous step's last clock
 * (the loop's back edge and the step's row bookkeeping), phase e > 0 at the step's clock e − 1.
 * The order of the kernel's FFA_BWD_TRACE(e) marks.
 */
export const BWD_TRACE_PHASES: readonly string[] = [
  'loop top',
  'dPᵀ issued',
  'Pᵀ math + pack',
  'dV issued',
  'dSᵀ (wait dPᵀ, math)',
  'dK issued (pack dSᵀ)',
  'dSᵀ stores + barrier',
  'dQ issued',
  'wait dV, dK',
  'Sᵀ(s+1) issued (wait Q, dO)',
  'wait dQ',
  'dQ staged (wait buffer)',
  'wait Sᵀ(s+1)',
];
if (BWD_TRACE_PHASES.length !== BWD_TRACE.events) throw new Error('BWD_TRACE_PHASES must name every event');

/** One written record: a sampled block's consumer warpgroup. */
export interface BwdTraceRecord {
  block: number;
  warpgroup: 0 | 1;
  /** The block's steps (all of them; at most BWD_TRACE.steps were recorded). */
  nSteps: number;
  /** Cycles from kernel start to the end of the epilogue, for this warpgroup. */
  cycles: number;
  /** Cycles from kernel start to the last recorded step's last clock (0 when none was recorded). */
  recordedCycles: number;
  /** events clocks per recorded step (a view of the trace). */
  clocks: Uint32Array;
}

/** The records a launch wrote (records still zero are blocks that were not sampled or not launched). */
export function decodeBwdTrace(words: Uint32Array): BwdTraceRecord[] {
  if (words.length !== BWD_TRACE_WORDS) throw new ShapeError('trace', `must hold the kernel's ${BWD_TRACE_WORDS} uint32 words`, `got ${words.length}`);
  const out: BwdTraceRecord[] = [];
  for (let r = 0; r < 2 * BWD_TRACE.blocks; r++) {
    const at = r * BWD_TRACE_RECORD;
    if (words[at] === 0) continue;
    const nSteps = words[at + 1];
    const recorded = Math.min(nSteps, BWD_TRACE.steps);
    const clocks = words.subarray(at + BWD_TRACE.header, at + BWD_TRACE.header + recorded * BWD_TRACE.events);
    const recordedCycles = recorded > 0 ? (clocks[clocks.length - 1] - words[at + 2]) >>> 0 : 0;
    out.push({ block: words[at] - 1, warpgroup: (r % 2) as 0 | 1, nSteps, cycles: (words[at + 3] - words[at + 2]) >>> 0, recordedCycles, clocks });
  }
  return out;
}

export interface BwdTracePhase {
  phase: string;
  median: number;
  mean: number;
  /** mean / the mean step: the phases' shares sum to 1. */
  share: number;
}

/** Per consumer warpgroup (0, 1: the kernel's warpgroups 1 and 2): cycles per phase over the sampled steps. */
export interface BwdTraceStats {
  warpgroup: 0 | 1;
  /** Records (sampled blocks) and steps that went into the figures. */
  blocks: number;
  steps: number;
  phases: BwdTracePhase[];
  stepMedian: number;
  stepMean: number;
  /** Median over the records of kernel start to end of epilogue. */
  blockCyclesMedian: number;
  /**
   * Median over the records with steps past the recorded ones of the cycles after the last
   * recorded step (the later steps and the epilogue) per later step: whether the steps the trace
   * does not sample run as fast as those it does (NaN: no record has later steps).
   */
  laterStepMean: number;
}

const mean = (xs: number[]): number => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);

/**
 * Cycles per phase, per consumer warpgroup, over every recorded step s >= skipFirst of every
 * written record (the first steps fill the pipeline: skipFirst >= 1, since phase 0 of step s
 * starts at step s − 1's last clock). Clock differences are taken mod 2^32 (the clocks are the low
 * 32 bits of clock64, which may wrap within a launch).
 */
export function bwdTraceStats(words: Uint32Array, skipFirst = 2): BwdTraceStats[] {
  if (!(Number.isInteger(skipFirst) && skipFirst >= 1)) throw new InvalidArgumentError('skipFirst', 'must be an integer >= 1 (phase 0 of a step starts at the step before)', `got ${skipFirst}`);
  const E = BWD_TRACE.events;
  const records = decodeBwdTrace(words);
  return ([0, 1] as const).map((wg) => {
    const mine = records.filter((r) => r.warpgroup === wg);
    const perPhase: number[][] = Array.from({ length: E }, () => []);
    const step: number[] = [];
    for (const r of mine) {
      const c = r.clocks;
      for (let s = skipFirst; s < c.length / E; s++) {
        let prev = c[s * E - 1];
        for (let e = 0; e < E; e++) {
          perPhase[e].push((c[s * E + e] - prev) >>> 0);
          prev = c[s * E + e];
        }
        step.push((c[s * E + E - 1] - c[s * E - 1]) >>> 0);
      }
    }
    const stepMean = mean(step);
    return {
      warpgroup: wg,
      blocks: mine.length,
      steps: step.length,
      phases: perPhase.map((xs, e) => ({ phase: BWD_TRACE_PHASES[e], median: median(xs), mean: mean(xs), share: mean(xs) / stepMean })),
      stepMedian: median(step),
      stepMean,
      blockCyclesMedian: median(mine.map((r) => r.cycles)),
      laterStepMean: median(mine.filter((r) => r.nSteps > BWD_TRACE.steps).map((r) => (r.cycles - r.recordedCycles) / (r.nSteps - BWD_TRACE.steps))),
    };
  });
}

/** How the grid's blocks filled the SMs (bwdBlockTimeline). */
export interface BwdBlockTimeline {
  /** Blocks written (the first min(grid, BWD_TRACE.gridMax)) and the SMs they ran on. */
  blocks: number;
  sms: number;
  /** Per SM, cycles from its first block's start to its last block's end: the longest and the mean. */
  spanMax: number;
  spanMean: number;
  /** Per SM, the sum of its blocks' cycles (start to end of epilogue), mean over the SMs. */
  busyMean: number;
  /** 1 − busyMean / spanMax: the SMs' idle share of the longest span (the tail and the gaps between blocks). */
  idleShare: number;
  /** 1 − spanMean / spanMax: the SMs' wait for the grid's last block (all start with the first wave). */
  tailShare: number;
  /** Mean over the SMs of (span − busy) / spanMax: between one block's end and the next one's start on an SM. */
  gapShare: number;
  /** Cycles per step of the blocks, by their step count: whether short blocks run their steps slower. */
  bySteps: { steps: string; blocks: number; cyclesPerStep: number }[];
}

const STEP_BUCKETS: readonly [number, number][] = [
  [1, 32],
  [33, 128],
  [129, 512],
  [513, 2048],
  [2049, Infinity],
];

/**
 * The block timeline of a trace launch, per SM. Clocks are per SM (the low 32 bits of clock64,
 * differences taken mod 2^32), so only one SM's clocks are compared with each other; the SMs are
 * taken to start together (the first wave). One block per SM at a time (the kernel's shared
 * memory), so an SM's busy time is the sum of its blocks' times. NaN figures when nothing was
 * written.
 */
export function bwdBlockTimeline(words: Uint32Array): BwdBlockTimeline {
  if (words.length !== BWD_TRACE_WORDS) throw new ShapeError('trace', `must hold the kernel's ${BWD_TRACE_WORDS} uint32 words`, `got ${words.length}`);
  const perSm = new Map<number, { start: number; end: number; steps: number }[]>();
  let blocks = 0;
  for (let b = 0; b < BWD_TRACE.gridMax; b++) {
    const at = BWD_TRACE_TIMELINE + 4 * b;
    if (words[at] === 0) continue;
    blocks++;
    const list = perSm.get(words[at]) ?? [];
    list.push({ start: words[at + 1], end: words[at + 2], steps: words[at + 3] });
    perSm.set(words[at], list);
  }
  const spans: number[] = [];
  const busy: number[] = [];
  const bucket = STEP_BUCKETS.map(() => ({ blocks: 0, cycles: 0, steps: 0 }));
  for (const list of perSm.values()) {
    // each block's start relative to the SM's first one, as signed 32-bit differences (the clocks wrap)
    const rel = list.map((x) => (x.start - list[0].start) | 0);
    const first = Math.min(...rel);
    let end = 0;
    let sum = 0;
    for (const [i, x] of list.entries()) {
      const d = (x.end - x.start) >>> 0;
      sum += d;
      end = Math.max(end, rel[i] - first + d);
      const k = STEP_BUCKETS.findIndex(([lo, hi]) => x.steps >= lo && x.steps <= hi);
      if (k >= 0) {
        bucket[k].blocks++;
        bucket[k].cycles += d;
        bucket[k].steps += x.steps;
      }
    }
    spans.push(end);
    busy.push(sum);
  }
  const spanMax = spans.length === 0 ? NaN : Math.max(...spans);
  const spanMean = mean(spans);
  const busyMean = mean(busy);
  return {
    blocks,
    sms: perSm.size,
    spanMax,
    spanMean,
    busyMean,
    idleShare: 1 - busyMean / spanMax,
    tailShare: 1 - spanMean / spanMax,
    gapShare: mean(spans.map((x, i) => (x - busy[i]) / spanMax)),
    bySteps: STEP_BUCKETS.map(([lo, hi], k) => ({ steps: hi === Infinity ? `> ${lo - 1}` : `${lo}-${hi}`, blocks: bucket[k].blocks, cyclesPerStep: bucket[k].cycles / bucket[k].steps })).filter((x) => x.blocks > 0),
  };
}
