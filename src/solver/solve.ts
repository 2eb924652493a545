/**
 * The whole planner in one call: (mask, totals, cp size, configs) → DistAttnPlan. A pure function:
 * the same input gives the same plan, bit for bit, in Node or a browser, so every rank may run it
 * on its own or one process may run it and hand out the parts.
 */
import type { SliceList } from '../mask/slice-list.js';
import { buildChunkBuckets, checkCpSize, maxValidIds, resolveChunking, validateMask, type ChunkBuckets } from './chunking.js';
import { resolveDispatchConfig, resolveOverlapConfig, type DispatchConfig, type OverlapConfig, type ResolvedOverlapConfig } from './config.js';
import { planAllRanks } from './dist-attn.js';
import { makeDispatchMeta, solveDispatch } from './chunk-assignment.js';
import { toGroupReduceArgs } from '../comm/group-collective-args.js';
import { buildStageGroupCast } from './group-collective-args.js';
import { buildHierGroupCast, checkMeshShape, type MeshShape } from './hier-group-collective.js';
import type { DispatchMeta, DistAttnPlan, RankPlan } from './plan.js';

export interface PlanRequest {
  /** The global mask (self-attention), in unpadded coordinates. */
  readonly mask: SliceList;
  readonly totalSeqlenQ: number;
  /** Must equal totalSeqlenQ (self-attention); defaults to it. */
  readonly totalSeqlenK?: number;
  readonly cpSize: number;
  readonly dispatchConfig?: DispatchConfig;
  readonly overlapConfig?: OverlapConfig;
  /** Plan hierarchical GroupCast / GroupReduce over this mesh (nodes × ranksPerNode = cpSize). */
  readonly mesh?: MeshShape;
}

/** Milliseconds spent in each part of the planner. */
export interface PlanTimings {
  /** Config checks, chunk size and padding, per-chunk clipped slices and areas. */
  readonly chunking: number;
  /** Chunk-to-rank assignment and the DispatchMeta. */
  readonly dispatch: number;
  /** Host slices and remote k ranges of every rank. */
  readonly hostSlices: number;
  /** Overlap chunks and stage split of every rank. */
  readonly overlap: number;
  /** Stage buffers and remote slices of every rank. */
  readonly remoteSlices: number;
  /** GroupCast / GroupReduce arguments of every stage. */
  readonly groupCollectives: number;
  readonly total: number;
}

export function planDistAttn(request: PlanRequest): DistAttnPlan {
  return planDistAttnTimed(request, () => 0).plan;
}

export function planDistAttnTimed(request: PlanRequest, now: () => number = () => performance.now()): { plan: DistAttnPlan; timings: PlanTimings } {
  const t0 = now();
  checkCpSize(request.cpSize);
  const mesh = request.mesh === undefined ? null : { nodes: request.mesh.nodes, ranksPerNode: request.mesh.ranksPerNode };
  if (mesh !== null) checkMeshShape(mesh, request.cpSize, 'mesh');
  const dispatchConfig = resolveDispatchConfig(request.dispatchConfig);
  const overlapConfig = resolveOverlapConfig(request.overlapConfig);
  const totalK = request.totalSeqlenK ?? request.totalSeqlenQ;
  validateMask(request.mask, request.totalSeqlenQ, totalK);
  const chunking = resolveChunking(request.totalSeqlenQ, request.cpSize, dispatchConfig);
  const buckets = buildChunkBuckets(request.mask, chunking);
  const t1 = now();

  const partitions = solveDispatch(buckets, request.cpSize, dispatchConfig.alg);
  const dispatch = makeDispatchMeta(chunking, buckets, partitions, dispatchConfig.alg, maxValidIds(request.mask));
  const t2 = now();

  const marks: number[] = [];
  const { perRank, degree } = planRanksForDispatch(dispatch, buckets, overlapConfig, mesh, () => marks.push(now()));
  const [t3, t4, t5] = marks;
  const plan: DistAttnPlan = {
    formatVersion: 1,
    cpSize: request.cpSize,
    globalMask: { qRanges: request.mask.qRanges.slice(), kRanges: request.mask.kRanges.slice(), maskTypes: request.mask.maskTypes.slice() },
    totalSeqlenQ: request.totalSeqlenQ,
    totalSeqlenK: totalK,
    dispatchConfig,
    overlapConfig,
    overlapDegree: degree,
    mesh,
    dispatch,
    perRank,
  };
  const t6 = now();
  return {
    plan,
    timings: {
      chunking: t1 - t0,
      dispatch: t2 - t1,
      hostSlices: t3 - t2,
      overlap: t4 - t3,
      remoteSlices: t5 - t4,
      groupCollectives: t6 - t5,
      total: t6 - t0,
    },
  };
}

/**
 * The per-rank part of a plan for a given dispatch: host and remote slices, overlap stages, and
 * the GroupCast / GroupReduce arguments of every stage (also in hierarchical form with a mesh).
 * planDistAttn calls it after solving the dispatch; a new mask over an existing dispatch (the
 * runtime's makeKeyForNewMaskAfterDispatch) calls it on its own. `mark` is called after the
 * host, overlap and remote phases (for timings).
 */
export function planRanksForDispatch(
  dispatch: DispatchMeta,
  buckets: ChunkBuckets,
  overlapConfig: ResolvedOverlapConfig,
  mesh: MeshShape | null = null,
  mark?: () => void,
): { perRank: RankPlan[]; degree: number } {
  const { slicing, stages, degree } = planAllRanks(dispatch, buckets, overlapConfig, mark);
  const perStageCast = Array.from({ length: degree }, (_, s) => buildStageGroupCast(dispatch, stages.map((st) => st.stageBufferGlobalKRanges[s])));
  const perStageHier = mesh === null ? null : perStageCast.map((casts) => buildHierGroupCast(casts, mesh));
  const perRank: RankPlan[] = slicing.map((sl, r) => ({
    rank: r,
    hostGlobalRanges: sl.hostGlobalRanges,
    hostSlices: sl.hostSlices,
    hostArea: sl.hostArea,
    remoteGlobalKRanges: sl.remoteGlobalKRanges,
    stages: Array.from({ length: degree }, (_, s) => {
      const buf = stages[r].stageBufferGlobalKRanges[s];
      let len = 0;
      for (let i = 0; i < buf.length; i += 2) len += buf[i + 1] - buf[i];
      const groupCast = perStageCast[s][r];
      return {
        stageBufferGlobalKRanges: buf,
        stageBufferLength: len,
        remoteSlices: stages[r].remoteSlices[s],
        remoteArea: stages[r].remoteArea[s],
        groupCast,
        groupReduce: toGroupReduceArgs(groupCast),
        ...(perStageHier === null ? {} : { hierGroupCast: perStageHier[s][r] }),
      };
    }),
  }));
  return { perRank, degree };
}
