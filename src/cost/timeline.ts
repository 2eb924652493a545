/**
 * The overlap timeline of a plan: when each rank computes each stage and when each stage's
 * GroupCast (and, backward, GroupReduce) runs, following the runtime's schedule (calcAttn in
 * src/runtime/calc-attn.ts):
 *
 *   forward   fetch 0 starts with the host stage; taking stage i (its data has arrived) starts
 *             fetch i+1, then stage i computes;
 *   backward  the same fetches, and after stage i computes, the GroupReduce of its partial dk/dv
 *             (float32) back to the owners; the pass ends when the last reduce has landed.
 *
 * Collectives run on one communication stream in the order the ranks issue them and start when
 * the last rank has issued them (an all-to-all-v needs every peer); each lasts as long as its
 * slowest rank's share (links.transferSeconds). Compute times come from measured kernel throughput
 * (throughput.ts). Exposed communication is the step time beyond the busiest rank's compute.
 */
import type { HeadShape } from '../solver/baselines.js';
import type { OverlapAlg, OverlapConfig } from '../solver/config.js';
import type { DistAttnPlan } from '../solver/plan.js';
import { transferSeconds, type LinkModel } from './links.js';
import { passFlops, type KernelShape, type KernelThroughput, type Pass } from './throughput.js';
import { kvTokenBytes, stageTokens, type StageTokens } from './traffic.js';

export interface CostModel {
  readonly throughput: KernelThroughput;
  /** The benchmark mask shape whose throughput stands for this mask. */
  readonly shape: KernelShape;
  readonly link: LinkModel;
  readonly heads: HeadShape;
}

export interface Collective {
  readonly kind: 'fetch' | 'reduce';
  readonly stage: number;
  readonly start: number;
  readonly end: number;
  /** Each rank's own transfer time inside [start, end) (the rest it waits for slower peers). */
  readonly rankSeconds: Float64Array;
}

export interface PassTimeline {
  readonly pass: Pass;
  /** Time until the last rank is done (seconds). */
  readonly stepSeconds: number;
  /** computeStart[i][r] / computeEnd[i][r]: i = 0 the host stage, i = s + 1 remote stage s. */
  readonly computeStart: readonly Float64Array[];
  readonly computeEnd: readonly Float64Array[];
  /** Each rank's compute, all stages. */
  readonly computeSeconds: Float64Array;
  /** When each rank is done (its last compute, and for the backward its last reduce). */
  readonly endSeconds: Float64Array;
  readonly collectives: readonly Collective[];
  /** stepSeconds minus the busiest rank's compute: communication the schedule does not hide. */
  readonly exposedCommSeconds: number;
  /** The mask's FLOPs of this pass over cp ranks and the step time. */
  readonly tflopsPerGpu: number;
}

export interface StepPrediction {
  readonly forward: PassTimeline;
  readonly backward: PassTimeline;
  readonly shape: KernelShape;
  readonly gpu: string;
  readonly link: LinkModel;
}

function collectiveSeconds(tokens: readonly StageTokens[], bytesPerToken: number, link: LinkModel): Float64Array {
  return Float64Array.from(tokens, (t) =>
    transferSeconds(link, {
      intraSend: t.intraSend * bytesPerToken,
      intraRecv: t.intraRecv * bytesPerToken,
      interSend: t.interSend * bytesPerToken,
      interRecv: t.interRecv * bytesPerToken,
    }),
  );
}

const maxOf = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, a[i]);
  return m;
};

function simulatePass(plan: DistAttnPlan, model: CostModel, pass: Pass, tokens: readonly StageTokens[][], totalArea: number): PassTimeline {
  const P = plan.cpSize;
  const D = plan.overlapDegree;
  const { heads, throughput, shape, link } = model;
  const seqlen = plan.dispatch.shardSeqlen;
  const cost = (area: number): number => throughput.seconds(shape, pass, seqlen, area, heads.numHeadsQ, heads.headDim);
  const fetchBytes = kvTokenBytes(heads.numHeadsKv, heads.headDim, heads.bytesPerElement);
  // The backward returns partial dk/dv in float32 (calcAttnBackward), along the fetch's routes.
  const reduceBytes = kvTokenBytes(heads.numHeadsKv, heads.headDim, 4);

  const computeStart: Float64Array[] = [];
  const computeEnd: Float64Array[] = [];
  const computeSeconds = new Float64Array(P);
  const collectives: Collective[] = [];
  let commFree = 0;
  const runCollective = (kind: 'fetch' | 'reduce', stage: number, issued: number): Collective => {
    const rankSeconds = collectiveSeconds(tokens[stage], kind === 'fetch' ? fetchBytes : reduceBytes, link);
    const start = Math.max(commFree, issued);
    const c = { kind, stage, start, end: start + maxOf(rankSeconds), rankSeconds };
    commFree = c.end;
    collectives.push(c);
    return c;
  };

  const host0 = new Float64Array(P);
  const host1 = new Float64Array(P);
  for (let r = 0; r < P; r++) {
    host1[r] = cost(plan.perRank[r].hostArea);
    computeSeconds[r] += host1[r];
  }
  computeStart.push(host0);
  computeEnd.push(host1);
  let fetch = D > 0 ? runCollective('fetch', 0, 0) : undefined;
  let prevEnd = host1;
  for (let s = 0; s < D; s++) {
    const arrived = (fetch as Collective).end;
    const take = Float64Array.from(prevEnd, (t) => Math.max(t, arrived));
    if (s + 1 < D) fetch = runCollective('fetch', s + 1, maxOf(take));
    const end = new Float64Array(P);
    for (let r = 0; r < P; r++) {
      const c = cost(plan.perRank[r].stages[s].remoteArea);
      end[r] = take[r] + c;
      computeSeconds[r] += c;
    }
    computeStart.push(take);
    computeEnd.push(end);
    if (pass === 'bwd') runCollective('reduce', s, maxOf(end));
    prevEnd = end;
  }
  const endSeconds = Float64Array.from(prevEnd, (t) => (pass === 'bwd' ? Math.max(t, commFree) : t));
  const stepSeconds = maxOf(endSeconds);
  const flops = passFlops(pass, totalArea, heads.numHeadsQ, heads.headDim);
  return {
    pass,
    stepSeconds,
    computeStart,
    computeEnd,
    computeSeconds,
    endSeconds,
    collectives,
    exposedCommSeconds: Math.max(0, stepSeconds - maxOf(computeSeconds)),
    tflopsPerGpu: stepSeconds > 0 ? flops / P / stepSeconds / 1e12 : 0,
  };
}

/** Predicted forward and backward timelines of one attention call under the plan. */
export function predictPlan(plan: DistAttnPlan, model: CostModel): StepPrediction {
  const tokens = stageTokens(plan, model.link);
  let area = 0;
  for (const r of plan.perRank) {
    area += r.hostArea;
    for (const s of r.stages) area += s.remoteArea;
  }
  return {
    forward: simulatePass(plan, model, 'fwd', tokens, area),
    backward: simulatePass(plan, model, 'bwd', tokens, area),
    shape: model.shape,
    gpu: model.throughput.gpu,
    link: model.link,
  };
}

/**
 * The overlap solver's cost factors (microseconds per unmasked cell, per received k/v token) from
 * this model, so its dynamic mode picks the number of stages by measured time. A rank's tokens
 * are priced at the slower link when the ranks span several nodes.
 */
export function overlapCostFactors(model: CostModel, totalSeqlen: number, cpSize: number): { calcCostFactor: number; commCostFactor: number } {
  const { heads, throughput, shape, link } = model;
  const seconds = throughput.seconds(shape, 'fwd', Math.ceil(totalSeqlen / cpSize), 1, heads.numHeadsQ, heads.headDim);
  const bandwidth = cpSize > link.gpusPerNode ? link.interNodeBytesPerSecond : link.intraNodeBytesPerSecond;
  return { calcCostFactor: seconds * 1e6, commCostFactor: (kvTokenBytes(heads.numHeadsKv, heads.headDim, heads.bytesPerElement) / bandwidth) * 1e6 };
}

/**
 * The overlap config of `--degree auto` (CLI and page alike): the overlap solver's dynamic mode,
 * choosing each rank's stages with this model's cost factors.
 */
export function autoOverlapConfig(model: CostModel, totalSeqlen: number, cpSize: number, alg: OverlapAlg = 'uniform'): OverlapConfig {
  return { mode: 'dynamic', alg, ...overlapCostFactors(model, totalSeqlen, cpSize) };
}
