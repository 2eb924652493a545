/**
 * Predicted step times of ring attention (zig-zag) and Ulysses on the same mask, with the same
 * kernel throughput and links as the plan's prediction, so the three can be read side by side.
 * The traffic and per-rank area come from the solver's baselines (src/solver/baselines.ts);
 * this module only puts times on them.
 *
 *   ring     P steps; in each, every rank computes 1/P of its area while it passes n k/v tokens to
 *            the next rank (n = tokens per rank); the backward passes dk/dv (float32) along too.
 *            Step time = one compute step + (P - 1) × max(compute step, transfer), the slowest
 *            rank and the slowest ring hop setting the pace.
 *   ulysses  all-to-all q, k, v in and o out (backward: dout in, dq, dk, dv out), then the whole
 *            sequence with cp-th of the heads; nothing overlaps.
 */
import type { SliceList } from '../mask/slice-list.js';
import { ringZigzagBaseline, ulyssesBaseline } from '../solver/baselines.js';
import { sameNode } from './links.js';
import type { CostModel } from './timeline.js';
import { passFlops, type Pass } from './throughput.js';
import { kvTokenBytes } from './traffic.js';

export interface MethodPrediction {
  readonly method: string;
  readonly forwardSeconds: number;
  readonly backwardSeconds: number;
  /** Communication not hidden behind compute, forward and backward. */
  readonly forwardExposedSeconds: number;
  readonly backwardExposedSeconds: number;
  readonly forwardTflopsPerGpu: number;
  readonly backwardTflopsPerGpu: number;
  /** Why the method does not apply as configured, if it does not. */
  readonly note?: string;
}

function totalArea(area: ArrayLike<number>): number {
  let t = 0;
  for (let i = 0; i < area.length; i++) t += area[i];
  return t;
}

const tflops = (pass: Pass, area: number, P: number, seconds: number, m: CostModel): number =>
  seconds > 0 ? passFlops(pass, area, m.heads.numHeadsQ, m.heads.headDim) / P / seconds / 1e12 : 0;

export function predictRing(mask: SliceList, totalSeqlen: number, cpSize: number, model: CostModel, cuSeqlens?: ArrayLike<number>): MethodPrediction {
  const P = cpSize;
  const { heads, link, throughput, shape } = model;
  const base = ringZigzagBaseline(mask, totalSeqlen, P, heads, cuSeqlens);
  const n = P > 1 ? base.recvTokensPerRank[0] / (P - 1) : Math.ceil(totalSeqlen / P);
  let slowestHop = link.intraNodeBytesPerSecond;
  for (let r = 0; r < P && P > 1; r++) if (!sameNode(link, r, (r + 1) % P)) slowestHop = Math.min(slowestHop, link.interNodeBytesPerSecond);
  let maxArea = 0;
  for (let r = 0; r < P; r++) maxArea = Math.max(maxArea, base.areaPerRank[r]);
  const time = (pass: Pass, bytesPerToken: number): { total: number; exposed: number } => {
    const step = throughput.seconds(shape, pass, n, maxArea / P, heads.numHeadsQ, heads.headDim);
    const transfer = P > 1 ? (n * bytesPerToken) / slowestHop : 0;
    const total = step + (P - 1) * Math.max(step, transfer);
    return { total, exposed: total - P * step };
  };
  const fwd = time('fwd', kvTokenBytes(heads.numHeadsKv, heads.headDim, heads.bytesPerElement));
  const bwd = time('bwd', kvTokenBytes(heads.numHeadsKv, heads.headDim, heads.bytesPerElement) + kvTokenBytes(heads.numHeadsKv, heads.headDim, 4));
  const area = totalArea(base.areaPerRank);
  return {
    method: base.method,
    forwardSeconds: fwd.total,
    backwardSeconds: bwd.total,
    forwardExposedSeconds: fwd.exposed,
    backwardExposedSeconds: bwd.exposed,
    forwardTflopsPerGpu: tflops('fwd', area, P, fwd.total, model),
    backwardTflopsPerGpu: tflops('bwd', area, P, bwd.total, model),
  };
}

export function predictUlysses(mask: SliceList, totalSeqlen: number, cpSize: number, model: CostModel): MethodPrediction {
  const P = cpSize;
  const { heads, link, throughput, shape } = model;
  const base = ulyssesBaseline(mask, totalSeqlen, P, heads);
  // Every rank talks to all P - 1 peers equally; those in its node over the fast link.
  const peersInNode = Math.min(link.gpusPerNode, P) - 1;
  const intraShare = P > 1 ? peersInNode / (P - 1) : 0;
  const bytes = base.recvBytesPerRank[0];
  const comm = Math.max((bytes * intraShare) / link.intraNodeBytesPerSecond, (bytes * (1 - intraShare)) / link.interNodeBytesPerSecond);
  const area = totalArea(base.areaPerRank);
  // The backward's all-to-alls (dout in; dq, dk, dv out) move as many rows as the forward's.
  const fwd = throughput.seconds(shape, 'fwd', totalSeqlen, area / P, heads.numHeadsQ, heads.headDim) + comm;
  const bwd = throughput.seconds(shape, 'bwd', totalSeqlen, area / P, heads.numHeadsQ, heads.headDim) + comm;
  return {
    method: base.method,
    forwardSeconds: fwd,
    backwardSeconds: bwd,
    forwardExposedSeconds: comm,
    backwardExposedSeconds: comm,
    forwardTflopsPerGpu: tflops('fwd', area, P, fwd, model),
    backwardTflopsPerGpu: tflops('bwd', area, P, bwd, model),
    ...(base.note === undefined ? {} : { note: base.note }),
  };
}
