/**
 * The planner's worker: builds the mask, runs the real solvers (planDistAttn) and the cost model
 * on it, and sends back the numbers the page draws. Keeping this off the page's thread keeps the
 * page responsive while a 10M-token plan is being made. The last plan stays here, so exporting
 * its JSON or checking it needs no re-plan.
 */
import kernelBench from '../../bench/results/kernel.json';
import {
  KernelThroughput,
  kernelShapeOf,
  kvTokenBytes,
  autoOverlapConfig,
  parseLink,
  planMemory,
  predictRun,
  trafficMatrix,
  type CostModel,
  type KernelBenchJSON,
  type PassTimeline,
} from '../../src/cost/index.js';
import { varlenCausalMask, varlenFullMask } from '../../src/mask/helpers.js';
import { isMaskPreset, presetMask } from '../../src/mask/presets.js';
import { rowKeyEnd, rowKeyStart, sliceArea } from '../../src/mask/geometry.js';
import { maskTypeFromInt } from '../../src/mask/mask-type.js';
import { maskFromJSON } from '../../src/mask/mask-json.js';
import type { SliceList } from '../../src/mask/slice-list.js';
import {
  checkPlan,
  DISPATCH_ALG_TYPES,
  planCommSummary,
  planDistAttnTimed,
  planFromJSON,
  planStats,
  planToJSON,
  ringZigzagBaseline,
  ulyssesBaseline,
  type DispatchAlg,
  type DispatchAlgType,
  type DistAttnPlan,
  type HeadShape,
  type OverlapConfig,
} from '../../src/solver/index.js';
import type { CompareRow, PlannerState, PlanView, SliceRow, TimelineData, WorkerRequest, WorkerResponse } from './protocol.js';

const throughput = new KernelThroughput(kernelBench as unknown as KernelBenchJSON);
const RASTER = 480;

interface Current {
  plan: DistAttnPlan;
  mask: SliceList;
  totalSeqlen: number;
  cuSeqlens: number[] | undefined;
  model: CostModel;
  state: PlannerState;
}
let current: Current | null = null;

function post(msg: WorkerResponse, transfer: Transferable[] = []): void {
  (self as unknown as { postMessage(m: unknown, t: Transferable[]): void }).postMessage(msg, transfer);
}

interface BuiltMask {
  mask: SliceList;
  totalSeqlen: number;
  cuSeqlens?: number[];
  description: string;
  presetKind?: string;
  plan?: DistAttnPlan;
}

function parseCuSeqlens(text: string): number[] {
  const cu = text.split(/[\s,[\]]+/).filter((x) => x !== '').map(Number);
  if (cu.length < 2 || cu[0] !== 0 || !cu.every((x, i) => Number.isSafeInteger(x) && (i === 0 || x > cu[i - 1]))) {
    throw new Error('cu_seqlens must be increasing integers starting at 0, e.g. 0, 1000, 4096');
  }
  return cu;
}

function buildFromState(state: PlannerState, fileText: string | null): BuiltMask {
  if (state.mask === 'cu-seqlens') {
    const cu = parseCuSeqlens(state.cuSeqlens);
    const n = cu[cu.length - 1];
    const mask = state.cuType === 'causal' ? varlenCausalMask(cu) : varlenFullMask(cu);
    return { mask, totalSeqlen: n, cuSeqlens: cu, description: `varlen-${state.cuType} from ${cu.length - 1} pasted documents, ${n} tokens`, presetKind: `varlen-${state.cuType}` };
  }
  if (state.mask === 'json' || state.mask === 'plan') {
    if (fileText === null || fileText.trim() === '') throw new Error(`paste or open a ${state.mask === 'plan' ? 'plan' : 'mask'} JSON file`);
    const json = JSON.parse(fileText) as unknown;
    if (state.mask === 'plan') {
      const plan = planFromJSON(json);
      return { mask: plan.globalMask, totalSeqlen: plan.totalSeqlenQ, description: `plan file: cp ${plan.cpSize}, ${plan.totalSeqlenQ} tokens`, plan };
    }
    const { mask, totalSeqlen } = maskFromJSON(json);
    return { mask, totalSeqlen, description: `JSON mask: ${mask.maskTypes.length} slices, ${totalSeqlen} tokens` };
  }
  if (!isMaskPreset(state.mask)) throw new Error(`unknown mask ${JSON.stringify(state.mask)}`);
  const spec = presetMask(state.mask, state.seqlen, {
    seed: state.seed,
    ...(state.docs === null ? {} : { docs: state.docs }),
    blockSize: state.block,
    window: state.window,
  });
  return { ...spec, presetKind: state.mask };
}

function headShape(state: PlannerState): HeadShape {
  return { numHeadsQ: state.headsQ, numHeadsKv: state.headsKv, headDim: state.headDim, bytesPerElement: 2 };
}

function planFor(built: BuiltMask, state: PlannerState, model: CostModel, alg: string): { plan: DistAttnPlan; ms: number } {
  if (!(DISPATCH_ALG_TYPES as readonly string[]).includes(alg)) throw new Error(`unknown dispatch algorithm ${alg}`);
  // The same request `magi-attn plan` makes for these options, so the two give the same plan.
  const overlapConfig: OverlapConfig =
    state.degree === 'auto' ? autoOverlapConfig(model, built.totalSeqlen, state.cp, 'uniform') : { degree: state.degree, alg: 'uniform' };
  const { plan, timings } = planDistAttnTimed({
    mask: built.mask,
    totalSeqlenQ: built.totalSeqlen,
    cpSize: state.cp,
    dispatchConfig: { ...(state.chunk === null ? {} : { chunkSize: state.chunk }), alg: { type: alg as DispatchAlgType } as DispatchAlg },
    overlapConfig,
  });
  return { plan, ms: timings.total };
}

/**
 * Coverage of the window [v0, v1)² by the mask on a size × size grid: each pixel row samples the
 * mask at its middle query and adds the covered fraction of every pixel column it crosses. Works
 * from the slices' bands, never from cells, so 10M tokens draw as fast as 10k.
 */
function rasterise(mask: SliceList, v0: number, v1: number, size: number): Float32Array {
  const out = new Float32Array(size * size);
  const span = (v1 - v0) / size;
  for (let b = 0; b < mask.maskTypes.length; b++) {
    const t = mask.maskTypes[b];
    const qs = mask.qRanges[2 * b];
    const qe = mask.qRanges[2 * b + 1];
    const ks = mask.kRanges[2 * b];
    const ke = mask.kRanges[2 * b + 1];
    if (qe <= v0 || qs >= v1 || ke <= v0 || ks >= v1) continue;
    const r0 = Math.max(0, Math.floor((qs - v0) / span));
    const r1 = Math.min(size, Math.ceil((qe - v0) / span));
    for (let row = r0; row < r1; row++) {
      const q = v0 + (row + 0.5) * span;
      if (q < qs || q >= qe) continue;
      const a = Math.max(ks, rowKeyStart(t, qs, ks, q));
      const e = Math.min(ke, rowKeyEnd(t, qe, ke, q));
      if (e <= a) continue;
      const x0 = (a - v0) / span;
      const x1 = (e - v0) / span;
      for (let col = Math.max(0, Math.floor(x0)); col < Math.min(size, Math.ceil(x1)); col++) {
        out[row * size + col] += Math.min(x1, col + 1) - Math.max(x0, col);
      }
    }
  }
  for (let i = 0; i < out.length; i++) out[i] = Math.min(1, out[i]);
  return out;
}

function topSlices(mask: SliceList, count: number): { rows: SliceRow[]; total: number } {
  const n = mask.maskTypes.length;
  const areas = new Float64Array(n);
  let total = 0;
  for (let b = 0; b < n; b++) {
    areas[b] = sliceArea(mask.maskTypes[b], mask.qRanges[2 * b + 1] - mask.qRanges[2 * b], mask.kRanges[2 * b + 1] - mask.kRanges[2 * b]);
    total += areas[b];
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => areas[b] - areas[a] || a - b).slice(0, count);
  return {
    total,
    rows: order.map((b) => ({
      index: b,
      q: [mask.qRanges[2 * b], mask.qRanges[2 * b + 1]],
      k: [mask.kRanges[2 * b], mask.kRanges[2 * b + 1]],
      type: maskTypeFromInt(mask.maskTypes[b]),
      area: areas[b],
    })),
  };
}

function timeline(t: PassTimeline): TimelineData {
  return {
    stepSeconds: t.stepSeconds,
    exposedCommSeconds: t.exposedCommSeconds,
    tflopsPerGpu: t.tflopsPerGpu,
    computeStart: [...t.computeStart],
    computeEnd: [...t.computeEnd],
    endSeconds: t.endSeconds,
    collectives: t.collectives.map((c) => ({ ...c })),
  };
}

function handlePlan(state: PlannerState, fileText: string | null, id: number): void {
  const built = buildFromState(state, fileText);
  const heads = headShape(state);
  const shape = kernelShapeOf(built.mask, built.presetKind);
  const model: CostModel = { throughput, shape, link: parseLink(state.link), heads };
  let plan: DistAttnPlan;
  let planMs = 0;
  if (built.plan !== undefined) {
    plan = built.plan;
  } else {
    ({ plan, ms: planMs } = planFor(built, state, model, state.alg));
  }
  const t0 = performance.now();
  const prediction = predictRun(plan, model, built.cuSeqlens);
  const stats = planStats(plan);
  const memory = planMemory(plan, heads);
  const traffic = trafficMatrix(plan);
  const recvBytes = [planCommSummary(plan, heads), ringZigzagBaseline(plan.globalMask, plan.totalSeqlenQ, plan.cpSize, heads, built.cuSeqlens), ulyssesBaseline(plan.globalMask, plan.totalSeqlenQ, plan.cpSize, heads)].map(
    (c) => ({ method: c.method, perRank: c.recvBytesPerRank, ...(c.note === undefined ? {} : { note: c.note }) }),
  );
  const predictMs = performance.now() - t0;
  const v0 = Math.max(0, Math.min(state.view[0], built.totalSeqlen - 1));
  const v1 = state.view[1] > v0 ? Math.min(state.view[1], plan.dispatch.paddedSeqlen) : plan.dispatch.paddedSeqlen;
  const top = topSlices(built.mask, 12);
  const owner = new Int32Array(plan.dispatch.numChunks);
  plan.dispatch.partitions.forEach((part, r) => part.forEach((c) => (owner[c] = r)));
  current = { plan, mask: built.mask, totalSeqlen: built.totalSeqlen, cuSeqlens: built.cuSeqlens, model, state };
  const view: PlanView = {
    description: built.description,
    totalSeqlen: built.totalSeqlen,
    cpSize: plan.cpSize,
    sliceCount: built.mask.maskTypes.length,
    totalArea: top.total,
    topSlices: top.rows,
    view: [v0, v1],
    raster: rasterise(built.mask, v0, v1, RASTER),
    rasterSize: RASTER,
    chunkSize: plan.dispatch.chunkSize,
    numChunks: plan.dispatch.numChunks,
    padSize: plan.dispatch.padSize,
    overlapDegree: plan.overlapDegree,
    dispatchAlg: plan.dispatch.algorithm,
    chunkOwner: owner,
    areaPerRank: stats.areaPerRank,
    imbalance: stats.imbalance,
    recvTokensPerRank: stats.recvTokensPerRank,
    sendTokensPerRank: stats.sendTokensPerRank,
    totalCommTokens: stats.totalCommTokens,
    trafficTokens: traffic,
    recvBytes,
    kvTokenBytes: kvTokenBytes(heads.numHeadsKv, heads.headDim, heads.bytesPerElement),
    forward: timeline(prediction.plan.forward),
    backward: timeline(prediction.plan.backward),
    methods: [...prediction.methods],
    memory,
    kernelGpu: throughput.gpu,
    kernelShape: shape,
    linkName: model.link.name,
    linkSource: model.link.source,
    planMs,
    predictMs,
  };
  post({ kind: 'plan', id, view });
}

function handleCompare(id: number): void {
  if (current === null) throw new Error('no plan yet');
  const c = current;
  const built: BuiltMask = { mask: c.mask, totalSeqlen: c.totalSeqlen, description: '', ...(c.cuSeqlens === undefined ? {} : { cuSeqlens: c.cuSeqlens }) };
  const rows: CompareRow[] = DISPATCH_ALG_TYPES.map((alg) => {
    const { plan, ms } = planFor(built, { ...c.state, cp: c.plan.cpSize }, c.model, alg);
    const stats = planStats(plan);
    const p = predictRun(plan, c.model, c.cuSeqlens).plan;
    return {
      alg,
      areaPerRank: stats.areaPerRank,
      imbalance: stats.imbalance,
      maxRecvTokens: Math.max(...stats.recvTokensPerRank),
      totalCommTokens: stats.totalCommTokens,
      forwardMs: p.forward.stepSeconds * 1e3,
      backwardMs: p.backward.stepSeconds * 1e3,
      planMs: ms,
    };
  });
  post({ kind: 'compare', id, rows });
}

self.onmessage = (e: MessageEvent<WorkerRequest>): void => {
  const req = e.data;
  try {
    if (req.kind === 'plan') handlePlan(req.state, req.fileText, req.id);
    else if (req.kind === 'compare') handleCompare(req.id);
    else if (req.kind === 'export') {
      if (current === null) throw new Error('no plan yet');
      post({ kind: 'export', id: req.id, json: JSON.stringify(planToJSON(current.plan)) });
    } else {
      if (current === null) throw new Error('no plan yet');
      const t0 = performance.now();
      const r = checkPlan(current.plan);
      post({ kind: 'check', id: req.id, ok: r.ok, errors: r.errors, ms: performance.now() - t0 });
    }
  } catch (err) {
    post({ kind: 'error', id: req.id, message: err instanceof Error ? err.message : String(err) });
  }
};
