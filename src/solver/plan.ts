/**
 * The plan data model: everything a distributed attention call needs, as plain data (numbers,
 * typed arrays, SliceLists) that can be printed, saved as JSON, checked and drawn. Names carry
 * their coordinate space:
 *   global...   positions in the caller's (unpermuted, padded) sequence;
 *   local q     rows of a rank's shard, i.e. its chunks concatenated in ascending order;
 *   local k     the same buffer seen as keys (self-attention: host k == host q);
 *   stageBuffer positions in the receive buffer of one overlap stage: its global k ranges
 *               packed end to end in ascending order.
 * planToJSON / planFromJSON round-trip exactly.
 */
import { InvalidArgumentError } from '../errors.js';
import { maskTypeFromInt, type AttnMaskType } from '../mask/mask-type.js';
import type { SliceList } from '../mask/slice-list.js';
import type { Chunking } from './chunking.js';
import type { DispatchAlgType, ResolvedDispatchConfig, ResolvedOverlapConfig } from './config.js';

/** The chunking (lengths, padding, chunk size, shard length) and the chunks' assignment to ranks. */
export interface DispatchMeta extends Chunking {
  /** Largest q end over slices with cells; position ids are clamped below it. */
  readonly maxValidIds: number;
  readonly algorithm: DispatchAlgType;
  /** perRank chunk ids, ascending. */
  readonly partitions: readonly Int32Array[];
  /** The permuted chunk order: partitions flattened (rank 0's chunks first). */
  readonly permIdxs: Int32Array;
  /** Inverse permutation: unpermIdxs[c] = position of chunk c in permIdxs. */
  readonly unpermIdxs: Int32Array;
  /** Workload (unmasked cells) of every chunk. */
  readonly chunkAreas: Float64Array;
  readonly areaPerRank: Float64Array;
  /** perRank merged global ranges of the shard, flat [s0, e0, s1, e1, ...]. */
  readonly hostGlobalRangesPerRank: readonly Int32Array[];
}

/**
 * What one rank passes to an all-to-all-v based GroupCast in one stage (reference 03 §1.1).
 * Input: its whole local k/v buffer cut into splits, each with its sorted destination ranks
 * (empty: not sent). Output: the stage buffer cut into splits, each from one source rank.
 * For any sender s and receiver r, s's splits that list r (in input order) match, size for size,
 * r's splits whose source is s (in output order).
 */
export interface GroupCastArgs {
  readonly inputSplitSizes: Int32Array;
  readonly dstIndices: readonly (readonly number[])[];
  readonly outputSplitSizes: Int32Array;
  readonly srcIndex: Int32Array;
}

/** The mirror of a GroupCast (sends partial dk/dv back to their owners, summed there). */
export interface GroupReduceArgs {
  readonly inputSplitSizes: Int32Array;
  readonly dstIndex: Int32Array;
  readonly outputSplitSizes: Int32Array;
  readonly srcIndices: readonly (readonly number[])[];
}

export interface StagePlan {
  /** The receive buffer: global k ranges, ascending and merged, packed end to end. */
  readonly stageBufferGlobalKRanges: Int32Array;
  readonly stageBufferLength: number;
  /** q in local rows, k in this stage's buffer. */
  readonly remoteSlices: SliceList;
  readonly remoteArea: number;
  readonly groupCast: GroupCastArgs;
  readonly groupReduce: GroupReduceArgs;
}

export interface RankPlan {
  readonly rank: number;
  /** The shard's merged global ranges (its local q and local k buffer). */
  readonly hostGlobalRanges: Int32Array;
  /** q in local rows, k in the local k buffer. */
  readonly hostSlices: SliceList;
  readonly hostArea: number;
  /** Every remote k token this rank's queries read, merged (the union of its stage buffers). */
  readonly remoteGlobalKRanges: Int32Array;
  readonly stages: readonly StagePlan[];
}

export interface DistAttnPlan {
  readonly formatVersion: 1;
  readonly cpSize: number;
  /** The caller's mask, unpadded, as given. */
  readonly globalMask: SliceList;
  readonly totalSeqlenQ: number;
  readonly totalSeqlenK: number;
  readonly dispatchConfig: ResolvedDispatchConfig;
  readonly overlapConfig: ResolvedOverlapConfig;
  /** Number of remote stages (the same on every rank; some may be empty). */
  readonly overlapDegree: number;
  readonly dispatch: DispatchMeta;
  readonly perRank: readonly RankPlan[];
}

// ---------------------------------------------------------------------------------------------
// JSON

type SliceJSON = Array<[[number, number], [number, number], AttnMaskType]>;

function slicesToJSON(s: SliceList): SliceJSON {
  const out: SliceJSON = [];
  for (let b = 0; b < s.maskTypes.length; b++) {
    out.push([[s.qRanges[2 * b], s.qRanges[2 * b + 1]], [s.kRanges[2 * b], s.kRanges[2 * b + 1]], maskTypeFromInt(s.maskTypes[b])]);
  }
  return out;
}

const CODES: Record<string, number> = { full: 0, causal: 1, inv_causal: 2, bi_causal: 3 };

function slicesFromJSON(json: unknown, where: string): SliceList {
  if (!Array.isArray(json)) throw new InvalidArgumentError(where, 'must be an array of [[qs, qe], [ks, ke], type]');
  const n = json.length;
  const qRanges = new Int32Array(2 * n);
  const kRanges = new Int32Array(2 * n);
  const types = new Uint8Array(n);
  json.forEach((e: unknown, b) => {
    const [q, k, t] = e as [[number, number], [number, number], string];
    const code = CODES[t];
    if (code === undefined) throw new InvalidArgumentError(`${where}[${b}]`, 'type must be full, causal, inv_causal or bi_causal', `got ${String(t)}`);
    qRanges[2 * b] = q[0];
    qRanges[2 * b + 1] = q[1];
    kRanges[2 * b] = k[0];
    kRanges[2 * b + 1] = k[1];
    types[b] = code;
  });
  return { qRanges, kRanges, maskTypes: types };
}

const arr = (a: ArrayLike<number>): number[] => Array.from(a);
const lists = (a: readonly (readonly number[])[]): number[][] => a.map((x) => [...x]);

/** A JSON-ready object (plain arrays and numbers); JSON.stringify it to save a plan. */
export function planToJSON(plan: DistAttnPlan): Record<string, unknown> {
  const d = plan.dispatch;
  return {
    formatVersion: plan.formatVersion,
    cpSize: plan.cpSize,
    totalSeqlenQ: plan.totalSeqlenQ,
    totalSeqlenK: plan.totalSeqlenK,
    globalMask: slicesToJSON(plan.globalMask),
    dispatchConfig: plan.dispatchConfig,
    overlapConfig: plan.overlapConfig,
    overlapDegree: plan.overlapDegree,
    dispatch: {
      cpSize: d.cpSize,
      unpaddedSeqlen: d.unpaddedSeqlen,
      totalSeqlen: d.totalSeqlen,
      padSize: d.padSize,
      chunkSize: d.chunkSize,
      numChunks: d.numChunks,
      shardSeqlen: d.shardSeqlen,
      maxValidIds: d.maxValidIds,
      algorithm: d.algorithm,
      partitions: d.partitions.map(arr),
      permIdxs: arr(d.permIdxs),
      unpermIdxs: arr(d.unpermIdxs),
      chunkAreas: arr(d.chunkAreas),
      areaPerRank: arr(d.areaPerRank),
      hostGlobalRangesPerRank: d.hostGlobalRangesPerRank.map(arr),
    },
    perRank: plan.perRank.map((r) => ({
      rank: r.rank,
      hostGlobalRanges: arr(r.hostGlobalRanges),
      hostSlices: slicesToJSON(r.hostSlices),
      hostArea: r.hostArea,
      remoteGlobalKRanges: arr(r.remoteGlobalKRanges),
      stages: r.stages.map((s) => ({
        stageBufferGlobalKRanges: arr(s.stageBufferGlobalKRanges),
        stageBufferLength: s.stageBufferLength,
        remoteSlices: slicesToJSON(s.remoteSlices),
        remoteArea: s.remoteArea,
        groupCast: {
          inputSplitSizes: arr(s.groupCast.inputSplitSizes),
          dstIndices: lists(s.groupCast.dstIndices),
          outputSplitSizes: arr(s.groupCast.outputSplitSizes),
          srcIndex: arr(s.groupCast.srcIndex),
        },
        groupReduce: {
          inputSplitSizes: arr(s.groupReduce.inputSplitSizes),
          dstIndex: arr(s.groupReduce.dstIndex),
          outputSplitSizes: arr(s.groupReduce.outputSplitSizes),
          srcIndices: lists(s.groupReduce.srcIndices),
        },
      })),
    })),
  };
}

type J = Record<string, unknown>;
const i32 = (x: unknown): Int32Array => Int32Array.from(x as number[]);
const f64 = (x: unknown): Float64Array => Float64Array.from(x as number[]);
const numLists = (x: unknown): number[][] => (x as number[][]).map((l) => [...l]);

/** Rebuilds a plan from planToJSON's output (or its JSON.parse); throws on a wrong format version. */
export function planFromJSON(json: unknown): DistAttnPlan {
  const j = json as J;
  if (j === null || typeof j !== 'object' || j.formatVersion !== 1) {
    throw new InvalidArgumentError('plan', 'must be a plan written by planToJSON (formatVersion 1)', `got formatVersion ${String((j as J | null)?.formatVersion)}`);
  }
  const d = j.dispatch as J;
  const dispatch: DispatchMeta = {
    cpSize: d.cpSize as number,
    unpaddedSeqlen: d.unpaddedSeqlen as number,
    totalSeqlen: d.totalSeqlen as number,
    padSize: d.padSize as number,
    chunkSize: d.chunkSize as number,
    numChunks: d.numChunks as number,
    shardSeqlen: d.shardSeqlen as number,
    maxValidIds: d.maxValidIds as number,
    algorithm: d.algorithm as DispatchAlgType,
    partitions: (d.partitions as number[][]).map(i32),
    permIdxs: i32(d.permIdxs),
    unpermIdxs: i32(d.unpermIdxs),
    chunkAreas: f64(d.chunkAreas),
    areaPerRank: f64(d.areaPerRank),
    hostGlobalRangesPerRank: (d.hostGlobalRangesPerRank as number[][]).map(i32),
  };
  const perRank: RankPlan[] = (j.perRank as J[]).map((r, ri) => ({
    rank: r.rank as number,
    hostGlobalRanges: i32(r.hostGlobalRanges),
    hostSlices: slicesFromJSON(r.hostSlices, `perRank[${ri}].hostSlices`),
    hostArea: r.hostArea as number,
    remoteGlobalKRanges: i32(r.remoteGlobalKRanges),
    stages: (r.stages as J[]).map((s, si) => {
      const gc = s.groupCast as J;
      const gr = s.groupReduce as J;
      return {
        stageBufferGlobalKRanges: i32(s.stageBufferGlobalKRanges),
        stageBufferLength: s.stageBufferLength as number,
        remoteSlices: slicesFromJSON(s.remoteSlices, `perRank[${ri}].stages[${si}].remoteSlices`),
        remoteArea: s.remoteArea as number,
        groupCast: {
          inputSplitSizes: i32(gc.inputSplitSizes),
          dstIndices: numLists(gc.dstIndices),
          outputSplitSizes: i32(gc.outputSplitSizes),
          srcIndex: i32(gc.srcIndex),
        },
        groupReduce: {
          inputSplitSizes: i32(gr.inputSplitSizes),
          dstIndex: i32(gr.dstIndex),
          outputSplitSizes: i32(gr.outputSplitSizes),
          srcIndices: numLists(gr.srcIndices),
        },
      };
    }),
  }));
  return {
    formatVersion: 1,
    cpSize: j.cpSize as number,
    globalMask: slicesFromJSON(j.globalMask, 'globalMask'),
    totalSeqlenQ: j.totalSeqlenQ as number,
    totalSeqlenK: j.totalSeqlenK as number,
    dispatchConfig: j.dispatchConfig as ResolvedDispatchConfig,
    overlapConfig: j.overlapConfig as ResolvedOverlapConfig,
    overlapDegree: j.overlapDegree as number,
    dispatch,
    perRank,
  };
}

/** Per-rank and total figures of a plan: what `magi-attn plan` prints. */
export interface PlanStats {
  readonly areaPerRank: Float64Array;
  readonly totalArea: number;
  /** max / mean of the per-rank area (1 is perfect). */
  readonly imbalance: number;
  /** k/v tokens each rank receives (sum over stages). */
  readonly recvTokensPerRank: Float64Array;
  /** k/v token copies each rank sends (a token sent to m ranks counts m times, as in all-to-all-v). */
  readonly sendTokensPerRank: Float64Array;
  readonly totalCommTokens: number;
  /** Number of remote k/v ranges per rank (merged), a measure of fragmentation. */
  readonly remoteRangesPerRank: Int32Array;
  readonly slicesPerRank: Int32Array;
}

export function planStats(plan: DistAttnPlan): PlanStats {
  const P = plan.cpSize;
  const areaPerRank = new Float64Array(P);
  const recv = new Float64Array(P);
  const send = new Float64Array(P);
  const remoteRanges = new Int32Array(P);
  const slices = new Int32Array(P);
  for (const r of plan.perRank) {
    let area = r.hostArea;
    let nSlices = r.hostSlices.maskTypes.length;
    for (const s of r.stages) {
      area += s.remoteArea;
      recv[r.rank] += s.stageBufferLength;
      nSlices += s.remoteSlices.maskTypes.length;
      const gc = s.groupCast;
      for (let i = 0; i < gc.inputSplitSizes.length; i++) send[r.rank] += gc.inputSplitSizes[i] * gc.dstIndices[i].length;
    }
    areaPerRank[r.rank] = area;
    remoteRanges[r.rank] = r.remoteGlobalKRanges.length / 2;
    slices[r.rank] = nSlices;
  }
  let total = 0;
  let max = 0;
  let comm = 0;
  for (let r = 0; r < P; r++) {
    total += areaPerRank[r];
    max = Math.max(max, areaPerRank[r]);
    comm += recv[r];
  }
  const mean = total / P;
  return {
    areaPerRank,
    totalArea: total,
    imbalance: mean > 0 ? max / mean : 1,
    recvTokensPerRank: recv,
    sendTokensPerRank: send,
    totalCommTokens: comm,
    remoteRangesPerRank: remoteRanges,
    slicesPerRank: slices,
  };
}
