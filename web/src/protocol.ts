/**
 * What the page and its solver worker say to each other. The page sends the planner state; the
 * worker plans with the real solvers, predicts with the cost model, and answers with the numbers
 * the views draw (typed arrays, copied once), never with drawing code.
 */
import type { MethodPrediction, RankMemory } from '../../src/cost/index.js';

/** Everything that decides a plan; it is also the page's URL query (state.ts). */
export interface PlannerState {
  /** A preset of `magi-attn plan --mask`, or 'cu-seqlens', 'json' (a mask) or 'plan' (a plan file). */
  mask: string;
  seqlen: number;
  cp: number;
  /** Overlap degree; 'auto' lets the overlap solver pick it with the cost model's factors. */
  degree: number | 'auto';
  chunk: number | null;
  alg: string;
  docs: number | null;
  seed: number;
  block: number;
  window: [number, number];
  /** cu_seqlens pasted (mask 'cu-seqlens'), with the slice type to give every document. */
  cuSeqlens: string;
  cuType: 'causal' | 'full';
  headsQ: number;
  headsKv: number;
  headDim: number;
  /** A link preset name or a bandwidth in GB/s. */
  link: string;
  /** Which part of the mask to draw, in tokens ([0, 0]: all of it). */
  view: [number, number];
}

export interface PlanRequest {
  readonly kind: 'plan';
  readonly id: number;
  readonly state: PlannerState;
  /** Text of a JSON mask or plan file, for masks 'json' and 'plan'. */
  readonly fileText: string | null;
}

export interface CompareRequest {
  readonly kind: 'compare';
  readonly id: number;
}

export interface ExportRequest {
  readonly kind: 'export';
  readonly id: number;
}

export interface CheckRequest {
  readonly kind: 'check';
  readonly id: number;
}

export type WorkerRequest = PlanRequest | CompareRequest | ExportRequest | CheckRequest;

export interface SliceRow {
  readonly index: number;
  readonly q: [number, number];
  readonly k: [number, number];
  readonly type: string;
  readonly area: number;
}

export interface TimelineData {
  readonly stepSeconds: number;
  readonly exposedCommSeconds: number;
  readonly tflopsPerGpu: number;
  readonly computeStart: Float64Array[];
  readonly computeEnd: Float64Array[];
  readonly endSeconds: Float64Array;
  readonly collectives: Array<{ kind: 'fetch' | 'reduce'; stage: number; start: number; end: number; rankSeconds: Float64Array }>;
}

export interface PlanView {
  readonly description: string;
  readonly totalSeqlen: number;
  readonly cpSize: number;
  readonly sliceCount: number;
  readonly totalArea: number;
  /** The largest slices with their exact areas. */
  readonly topSlices: SliceRow[];
  /** The drawn window [start, end) and its rasterised coverage (rows × cols, fraction of each pixel's cells). */
  readonly view: [number, number];
  readonly raster: Float32Array;
  readonly rasterSize: number;
  readonly chunkSize: number;
  readonly numChunks: number;
  readonly padSize: number;
  readonly overlapDegree: number;
  readonly dispatchAlg: string;
  /** Rank of every chunk. */
  readonly chunkOwner: Int32Array;
  readonly areaPerRank: Float64Array;
  readonly imbalance: number;
  readonly recvTokensPerRank: Float64Array;
  readonly sendTokensPerRank: Float64Array;
  readonly totalCommTokens: number;
  /** tokens[src * P + dst] over all forward GroupCasts. */
  readonly trafficTokens: Float64Array;
  /** Forward bytes each rank receives: magi-attention, ring (zig-zag), ulysses. */
  readonly recvBytes: Array<{ method: string; perRank: Float64Array; note?: string }>;
  readonly kvTokenBytes: number;
  readonly forward: TimelineData;
  readonly backward: TimelineData;
  readonly methods: MethodPrediction[];
  readonly memory: RankMemory[];
  readonly kernelGpu: string;
  readonly kernelShape: string;
  readonly linkName: string;
  readonly linkSource: string;
  readonly planMs: number;
  readonly predictMs: number;
}

export interface CompareRow {
  readonly alg: string;
  readonly areaPerRank: Float64Array;
  readonly imbalance: number;
  readonly maxRecvTokens: number;
  readonly totalCommTokens: number;
  readonly forwardMs: number;
  readonly backwardMs: number;
  readonly planMs: number;
}

export type WorkerResponse =
  | { readonly kind: 'plan'; readonly id: number; readonly view: PlanView }
  | { readonly kind: 'compare'; readonly id: number; readonly rows: CompareRow[] }
  | { readonly kind: 'export'; readonly id: number; readonly json: string }
  | { readonly kind: 'check'; readonly id: number; readonly ok: boolean; readonly errors: string[]; readonly ms: number }
  | { readonly kind: 'error'; readonly id: number; readonly message: string };
