/**
 * The plan data model: everything a distributed attention call needs, as plain data (numbers,
 * typed arrays, SliceLists) that can be printed, saved as JSON, checked and drawn. Names carry
 * their coordinate space:
 *   global...   positions in the caller's (unpermuted, padded) sequence;
 *   local q     rows of a rank's shard, i.e. its chunks concatenated in ascending order;
 *   local k     the same buffer seen as keys (self-attention: host k == host q);
 *   stageBuffer positions in the receive buffer of one overlap stage: its global k ranges
 *               packed end to end in ascending order.
 * Its JSON form is plan-json.ts.
 */
import type { GroupCastArgs, GroupReduceArgs } from '../comm/group-collective-args.js';
import type { SliceList } from '../mask/slice-list.js';
import type { Chunking } from './chunking.js';
import type { DispatchAlgType, ResolvedDispatchConfig, ResolvedOverlapConfig } from './config.js';
import type { HierGroupCastArgs, MeshShape } from './hier-group-collective.js';

export type { GroupCastArgs, GroupReduceArgs };

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
  /** Local rows of every rank (padding included); all equal to shardSeqlen unless unevenShard. */
  readonly shardSeqlens: Int32Array;
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
  /** The same GroupCast over the plan's mesh (present when the plan has one); its reduce is the exact reverse. */
  readonly hierGroupCast?: HierGroupCastArgs;
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
  /** Hierarchical communication over this 2-D mesh (every stage carries hierGroupCast); null: flat. */
  readonly mesh: MeshShape | null;
  readonly dispatch: DispatchMeta;
  readonly perRank: readonly RankPlan[];
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
