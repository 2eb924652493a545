/**
 * The plan's JSON format: `planToJSON` writes it (a typed, JSON-ready object) and `planFromJSON`
 * reads it back, validated field by field by one zod schema, so a hand-edited or truncated plan
 * file fails with the path of the field that is wrong, never with a TypeError later. The two
 * round-trip exactly. A plan read back is structurally valid; `checkPlan` proves it right.
 */
import { z } from 'zod';
import { MASK_TYPE_CODES, type AttnMaskType } from '../mask/mask-type.js';
import { sliceListToJSON, type SliceList } from '../mask/slice-list.js';
import { parseWithSchema } from '../util/schema.js';
import { DISPATCH_ALG_TYPES } from './config.js';
import type { DistAttnPlan, DispatchMeta, GroupCastArgs, RankPlan } from './plan.js';

// 32-bit: every index and range of a plan lives in an Int32Array, where a larger number would
// wrap around (a range starting at 2^31 became one starting at -2^31, and checkPlan walked it).
const nat = z.int32().nonnegative();
const pos = z.int32().positive();
const flatRanges = z.array(nat).refine((a) => a.length % 2 === 0, 'must hold flat [start, end) pairs (an even count)');
const maskTypeName = z.enum(['full', 'causal', 'inv_causal', 'bi_causal']);
const slicesJSON = z.array(z.tuple([z.tuple([nat, nat]), z.tuple([nat, nat]), maskTypeName]));

const dispatchAlgJSON = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('min-heap') }),
  z.strictObject({ type: z.literal('sequential') }),
  z.strictObject({ type: z.literal('sorted-sequential'), allocationRatio: z.number() }),
  z.strictObject({ type: z.literal('topp-heap'), topP: z.number() }),
  z.strictObject({ type: z.literal('contiguous-runs'), maxImbalance: z.number() }),
]);

const groupCastJSON = z.strictObject({
  inputSplitSizes: z.array(nat),
  dstIndices: z.array(z.array(nat)),
  outputSplitSizes: z.array(nat),
  srcIndex: z.array(nat),
});

const stageJSON = z.strictObject({
  stageBufferGlobalKRanges: flatRanges,
  stageBufferLength: nat,
  remoteSlices: slicesJSON,
  remoteArea: z.number().nonnegative(),
  groupCast: groupCastJSON,
  groupReduce: z.strictObject({
    inputSplitSizes: z.array(nat),
    dstIndex: z.array(nat),
    outputSplitSizes: z.array(nat),
    srcIndices: z.array(z.array(nat)),
  }),
  hierGroupCast: z.strictObject({ preIntra: groupCastJSON, inter: groupCastJSON, postIntra: groupCastJSON, placeRanges: flatRanges }).optional(),
});

/** The schema of a plan file (formatVersion 1). */
export const planJSONSchema = z.strictObject({
  formatVersion: z.literal(1),
  cpSize: pos,
  totalSeqlenQ: pos,
  totalSeqlenK: pos,
  globalMask: slicesJSON,
  // Fields added after the first plan files: optional on read, so those files still load.
  dispatchConfig: z.strictObject({ chunkSize: pos.nullable(), alg: dispatchAlgJSON, minChunksPerRank: pos, unevenShard: z.boolean().default(false) }),
  overlapConfig: z.strictObject({
    mode: z.enum(['static', 'dynamic']),
    degree: nat.nullable(),
    dynamicMaxDegree: nat,
    minChunkSize: pos,
    maxNumChunks: pos,
    alg: z.enum(['uniform', 'greedy']),
    calcCostFactor: z.number(),
    commCostFactor: z.number(),
    noOverlap: z.boolean(),
  }),
  overlapDegree: nat,
  mesh: z.strictObject({ nodes: pos, ranksPerNode: pos }).nullable().default(null),
  dispatch: z.strictObject({
    cpSize: pos,
    unpaddedSeqlen: pos,
    paddedSeqlen: pos,
    padSize: nat,
    chunkSize: pos,
    numChunks: pos,
    shardSeqlen: pos,
    unevenShard: z.boolean().default(false),
    /** Absent in older files (every rank then holds shardSeqlen rows). */
    shardSeqlens: z.array(pos).optional(),
    maxValidIds: nat,
    algorithm: z.enum(DISPATCH_ALG_TYPES as [string, ...string[]]),
    partitions: z.array(z.array(nat)),
    permIdxs: z.array(nat),
    unpermIdxs: z.array(nat),
    chunkAreas: z.array(z.number().nonnegative()),
    areaPerRank: z.array(z.number().nonnegative()),
    hostGlobalRangesPerRank: z.array(flatRanges),
  }),
  perRank: z.array(
    z.strictObject({
      rank: nat,
      hostGlobalRanges: flatRanges,
      hostSlices: slicesJSON,
      hostArea: z.number().nonnegative(),
      remoteGlobalKRanges: flatRanges,
      stages: z.array(stageJSON),
    }),
  ),
}).superRefine((p, ctx) => {
  // The mask lies inside the sequence, as every mask given to the planner must: checkPlan's
  // dense oracle walks its rows, and a slice ending at 2^31 took it 17 s to find wrong.
  p.globalMask.forEach(([q, k], b) => {
    if (q[0] > q[1] || q[1] > p.totalSeqlenQ) ctx.addIssue({ code: 'custom', path: ['globalMask', b, 0], message: `must be a range [start, end) inside [0, totalSeqlenQ = ${p.totalSeqlenQ}), got [${q[0]}, ${q[1]})` });
    if (k[0] > k[1] || k[1] > p.totalSeqlenK) ctx.addIssue({ code: 'custom', path: ['globalMask', b, 1], message: `must be a range [start, end) inside [0, totalSeqlenK = ${p.totalSeqlenK}), got [${k[0]}, ${k[1]})` });
  });
});

/** A plan as JSON-ready data (plain arrays, numbers and strings). */
export type PlanJSON = z.infer<typeof planJSONSchema>;
type SlicesJSON = z.infer<typeof slicesJSON>;

function slicesFromJSON(json: SlicesJSON): SliceList {
  const n = json.length;
  const qRanges = new Int32Array(2 * n);
  const kRanges = new Int32Array(2 * n);
  const maskTypes = new Uint8Array(n);
  json.forEach(([q, k, t], b) => {
    qRanges.set(q, 2 * b);
    kRanges.set(k, 2 * b);
    maskTypes[b] = MASK_TYPE_CODES[t as AttnMaskType];
  });
  return { qRanges, kRanges, maskTypes };
}

const arr = (a: ArrayLike<number>): number[] => Array.from(a);
const lists = (a: readonly (readonly number[])[]): number[][] => a.map((x) => [...x]);
const groupCastToJSON = (g: GroupCastArgs): z.infer<typeof groupCastJSON> => ({
  inputSplitSizes: arr(g.inputSplitSizes),
  dstIndices: lists(g.dstIndices),
  outputSplitSizes: arr(g.outputSplitSizes),
  srcIndex: arr(g.srcIndex),
});

/** The plan as JSON-ready data; JSON.stringify it to save a plan. */
export function planToJSON(plan: DistAttnPlan): PlanJSON {
  const d = plan.dispatch;
  return {
    formatVersion: plan.formatVersion,
    cpSize: plan.cpSize,
    totalSeqlenQ: plan.totalSeqlenQ,
    totalSeqlenK: plan.totalSeqlenK,
    globalMask: sliceListToJSON(plan.globalMask),
    dispatchConfig: { ...plan.dispatchConfig, alg: { ...plan.dispatchConfig.alg } },
    overlapConfig: { ...plan.overlapConfig },
    overlapDegree: plan.overlapDegree,
    mesh: plan.mesh === null ? null : { ...plan.mesh },
    dispatch: {
      cpSize: d.cpSize,
      unpaddedSeqlen: d.unpaddedSeqlen,
      paddedSeqlen: d.paddedSeqlen,
      padSize: d.padSize,
      chunkSize: d.chunkSize,
      numChunks: d.numChunks,
      shardSeqlen: d.shardSeqlen,
      unevenShard: d.unevenShard,
      shardSeqlens: arr(d.shardSeqlens),
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
      hostSlices: sliceListToJSON(r.hostSlices),
      hostArea: r.hostArea,
      remoteGlobalKRanges: arr(r.remoteGlobalKRanges),
      stages: r.stages.map((s) => ({
        stageBufferGlobalKRanges: arr(s.stageBufferGlobalKRanges),
        stageBufferLength: s.stageBufferLength,
        remoteSlices: sliceListToJSON(s.remoteSlices),
        remoteArea: s.remoteArea,
        groupCast: groupCastToJSON(s.groupCast),
        groupReduce: {
          inputSplitSizes: arr(s.groupReduce.inputSplitSizes),
          dstIndex: arr(s.groupReduce.dstIndex),
          outputSplitSizes: arr(s.groupReduce.outputSplitSizes),
          srcIndices: lists(s.groupReduce.srcIndices),
        },
        ...(s.hierGroupCast === undefined
          ? {}
          : {
              hierGroupCast: {
                preIntra: groupCastToJSON(s.hierGroupCast.preIntra),
                inter: groupCastToJSON(s.hierGroupCast.inter),
                postIntra: groupCastToJSON(s.hierGroupCast.postIntra),
                placeRanges: arr(s.hierGroupCast.placeRanges),
              },
            }),
      })),
    })),
  };
}

const i32 = (x: readonly number[]): Int32Array => Int32Array.from(x);
const groupCastFromJSON = (g: z.infer<typeof groupCastJSON>): GroupCastArgs => ({
  inputSplitSizes: i32(g.inputSplitSizes),
  dstIndices: g.dstIndices,
  outputSplitSizes: i32(g.outputSplitSizes),
  srcIndex: i32(g.srcIndex),
});

/**
 * Rebuilds a plan from planToJSON's output (or its JSON.parse). Throws an InvalidArgumentError
 * naming the first field (as `plan.<path>`) that does not fit the format.
 */
export function planFromJSON(json: unknown): DistAttnPlan {
  const j = parseWithSchema(planJSONSchema, json, 'plan');
  const d = j.dispatch;
  const dispatch: DispatchMeta = {
    ...d,
    algorithm: d.algorithm as DispatchMeta['algorithm'],
    partitions: d.partitions.map(i32),
    permIdxs: i32(d.permIdxs),
    unpermIdxs: i32(d.unpermIdxs),
    chunkAreas: Float64Array.from(d.chunkAreas),
    areaPerRank: Float64Array.from(d.areaPerRank),
    hostGlobalRangesPerRank: d.hostGlobalRangesPerRank.map(i32),
    shardSeqlens: d.shardSeqlens === undefined ? new Int32Array(j.cpSize).fill(d.shardSeqlen) : i32(d.shardSeqlens),
  };
  const perRank: RankPlan[] = j.perRank.map((r) => ({
    rank: r.rank,
    hostGlobalRanges: i32(r.hostGlobalRanges),
    hostSlices: slicesFromJSON(r.hostSlices),
    hostArea: r.hostArea,
    remoteGlobalKRanges: i32(r.remoteGlobalKRanges),
    stages: r.stages.map((s) => ({
      stageBufferGlobalKRanges: i32(s.stageBufferGlobalKRanges),
      stageBufferLength: s.stageBufferLength,
      remoteSlices: slicesFromJSON(s.remoteSlices),
      remoteArea: s.remoteArea,
      groupCast: groupCastFromJSON(s.groupCast),
      groupReduce: { ...s.groupReduce, inputSplitSizes: i32(s.groupReduce.inputSplitSizes), dstIndex: i32(s.groupReduce.dstIndex), outputSplitSizes: i32(s.groupReduce.outputSplitSizes) },
      ...(s.hierGroupCast === undefined
        ? {}
        : {
            hierGroupCast: {
              preIntra: groupCastFromJSON(s.hierGroupCast.preIntra),
              inter: groupCastFromJSON(s.hierGroupCast.inter),
              postIntra: groupCastFromJSON(s.hierGroupCast.postIntra),
              placeRanges: i32(s.hierGroupCast.placeRanges),
            },
          }),
    })),
  }));
  return {
    formatVersion: 1,
    cpSize: j.cpSize,
    globalMask: slicesFromJSON(j.globalMask),
    totalSeqlenQ: j.totalSeqlenQ,
    totalSeqlenK: j.totalSeqlenK,
    dispatchConfig: j.dispatchConfig,
    overlapConfig: j.overlapConfig,
    overlapDegree: j.overlapDegree,
    mesh: j.mesh,
    dispatch,
    perRank,
  };
}
