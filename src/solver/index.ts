/**
 * The planners: dispatch (chunks to ranks), dist-attn (per-rank slices and remote k/v), overlap
 * stages, GroupCast / GroupReduce arguments, the plan checker and the ring / Ulysses baselines.
 * Pure TypeScript with no Node-only imports, so the same code plans in a browser.
 */
export * from './config.js';
export * from './plan.js';
export { planToJSON, planFromJSON, planJSONSchema, type PlanJSON } from './plan-json.js';
export { computePadSize, resolveChunking, applyPadding, validateMask, maxValidIds, buildChunkBuckets, type Chunking, type ChunkBuckets } from './chunking.js';
export {
  solveDispatch,
  makeDispatchMeta,
  positionIds,
  lptAssign,
  minHeapDispatch,
  sequentialDispatch,
  toppHeapDispatch,
  sortedSequentialDispatch,
  contiguousRunsDispatch,
  refineBySwaps,
  chunkKeyRanges,
} from './chunk-assignment.js';
export { overlapChunking, uniformStages, greedyStages, overlapCost, solveOverlapStages } from './overlap.js';
export { planAllRanks, planRankHost, planRankStageBounds, planRankStages, type RankSlicing, type RankStages } from './dist-attn.js';
export { buildStageGroupCast } from './group-collective-args.js';
export { buildHierGroupCast, checkMeshShape, hierRows, interNodeRows, type HierGroupCastArgs, type MeshShape } from './hier-group-collective.js';
export { planRoll, normalizeShift, type RankRoll } from './roll.js';
export { chunkPlacement, shardSourceRanges, unpermuteRanges, reduceScatterArgs, type ChunkPlacement } from './shard-layout.js';
export { checkPlan, type PlanCheckResult } from './check-plan.js';
export * from './baselines.js';
export { planDistAttn, planDistAttnTimed, planRanksForDispatch, type PlanRequest, type PlanTimings } from './solve.js';
