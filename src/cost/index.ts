/**
 * The cost model: predicted step time, exposed communication and TFLOP/s per GPU of a plan, from
 * measured kernel throughput (the kernel benchmark's JSON) and link presets, with ring attention
 * and Ulysses predicted on the same mask beside it. Pure TypeScript with no Node-only imports: the
 * planner page runs it in the browser.
 */
import type { DistAttnPlan } from '../solver/plan.js';
import { predictRing, predictUlysses, type MethodPrediction } from './baselines.js';
import { predictPlan, type CostModel, type StepPrediction } from './timeline.js';

export * from './throughput.js';
export * from './links.js';
export * from './traffic.js';
export * from './timeline.js';
export * from './memory.js';
export * from './baselines.js';

export interface RunPrediction {
  readonly plan: StepPrediction;
  /** magi-attention, ring (zig-zag), ulysses: one row each. */
  readonly methods: readonly MethodPrediction[];
}

/** The plan's timeline and the three methods' predicted times on its mask. */
export function predictRun(plan: DistAttnPlan, model: CostModel, cuSeqlens?: ArrayLike<number>): RunPrediction {
  const p = predictPlan(plan, model);
  const magi: MethodPrediction = {
    method: 'magi-attention',
    forwardSeconds: p.forward.stepSeconds,
    backwardSeconds: p.backward.stepSeconds,
    forwardExposedSeconds: p.forward.exposedCommSeconds,
    backwardExposedSeconds: p.backward.exposedCommSeconds,
    forwardTflopsPerGpu: p.forward.tflopsPerGpu,
    backwardTflopsPerGpu: p.backward.tflopsPerGpu,
  };
  return {
    plan: p,
    methods: [magi, predictRing(plan.globalMask, plan.totalSeqlenQ, plan.cpSize, model, cuSeqlens), predictUlysses(plan.globalMask, plan.totalSeqlenQ, plan.cpSize, model)],
  };
}
