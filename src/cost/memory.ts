/**
 * Memory each rank needs for one attention call under a plan, following what calcAttn and
 * calcAttnBackward allocate (src/runtime/calc-attn.ts):
 *   activations      q, k, v, out of the shard in the input dtype, and the float32 lse;
 *   stage buffers    remote k and v of a stage; the forward holds the stage it computes and the
 *                    one being fetched, so its peak is the largest pair of consecutive stages;
 *   fp32 forward     the (out, lse) accumulator;
 *   fp32 backward    dq, dk, dv of the shard, plus every stage's partial dk/dv, which stay alive
 *                    until their GroupReduce has landed at the end of the pass.
 */
import type { HeadShape } from '../solver/baselines.js';
import type { DistAttnPlan } from '../solver/plan.js';

export interface RankMemory {
  readonly activations: number;
  readonly stageBuffers: number;
  readonly forwardAccumulators: number;
  readonly backwardAccumulators: number;
  /** The larger of the forward and backward peaks (activations included). */
  readonly peak: number;
}

export function planMemory(plan: DistAttnPlan, heads: HeadShape): RankMemory[] {
  const { numHeadsQ: hq, numHeadsKv: hkv, headDim: d, bytesPerElement: b } = heads;
  const n = plan.dispatch.shardSeqlen;
  const kvRow = 2 * hkv * d;
  return plan.perRank.map((rp) => {
    const activations = n * (2 * hq * d + kvRow) * b + n * hq * 4;
    let pair = 0;
    let partials = 0;
    const lengths = rp.stages.map((s) => s.stageBufferLength);
    for (let s = 0; s < lengths.length; s++) {
      pair = Math.max(pair, lengths[s] + (lengths[s + 1] ?? 0));
      partials += lengths[s];
    }
    const stageBuffers = pair * kvRow * b;
    const forwardAccumulators = n * hq * (d + 1) * 4;
    const backwardAccumulators = (n * (hq * d + kvRow) + partials * kvRow) * 4;
    return {
      activations,
      stageBuffers,
      forwardAccumulators,
      backwardAccumulators,
      peak: activations + stageBuffers + Math.max(forwardAccumulators, backwardAccumulators),
    };
  });
}
