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
 * at word (2 b + w) · record.
 */
import { ShapeError, InvalidArgumentError } from '../../errors.js';
import { median } from '../../util/stats.js';

export const BWD_TRACE = { every: 64, blocks: 32, steps: 256, events: 13, header: 4 } as const;
/** uint32 words of one (sampled block, consumer warpgroup) record. */
export const BWD_TRACE_RECORD = BWD_TRACE.header + BWD_TRACE.steps * BWD_TRACE.events;
/** uint32 words of the whole `ffa_bwd_trace` array. */
export const BWD_TRACE_WORDS = BWD_TRACE.blocks * 2 * BWD_TRACE_RECORD;
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
