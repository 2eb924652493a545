import { test } from 'node:test';
import assert from 'node:assert/strict';
import { causalMask } from '../src/mask/helpers.js';
import { makeSliceList, sliceListToJSON, type SliceList } from '../src/mask/slice-list.js';
import { planDistAttn } from '../src/solver/solve.js';
import type { DistAttnPlan, GroupCastArgs, GroupReduceArgs } from '../src/solver/plan.js';
import { lowerGroupCast, lowerGroupReduce, matchGroupCast, toGroupReduceArgs } from '../src/comm/group-collective-args.js';
import { runLoweredA2AV, simulateGroupCast, simulateGroupReduce, simulateGroupReduceLse } from './util/group-collective-sim.js';
import { overlapChunking, uniformStages, greedyStages, overlapCost } from '../src/solver/overlap.js';
import { checkPlan } from '../src/solver/check-plan.js';

/** Slices as 'qs-qe x ks-ke T' strings, T one of F C I B. */
function s(sl: SliceList): string[] {
  return sliceListToJSON(sl).map(([q, k, t]) => `${q[0]}-${q[1]} x ${k[0]}-${k[1]} ${{ full: 'F', causal: 'C', inv_causal: 'I', bi_causal: 'B' }[t]}`);
}
const cast = (g: GroupCastArgs) => ({ in: Array.from(g.inputSplitSizes), dst: g.dstIndices.map((d) => [...d]), out: Array.from(g.outputSplitSizes), src: Array.from(g.srcIndex) });
const ranges = (r: Int32Array): number[] => Array.from(r);

function plan71(degree: number): DistAttnPlan {
  return planDistAttn({ mask: causalMask(4096), totalSeqlenQ: 4096, cpSize: 2, dispatchConfig: { minChunksPerRank: 4 }, overlapConfig: { degree, minChunkSize: 512 } });
}

test('02 §7.1, causal cp 2, degree 1: host and remote ranges, slices and GroupCast args', () => {
  const p = plan71(1);
  const [r0, r1] = p.perRank;
  assert.deepEqual(ranges(r0.hostGlobalRanges), [0, 512, 1536, 2560, 3584, 4096]);
  assert.deepEqual(ranges(r0.remoteGlobalKRanges), [512, 1536, 2560, 3584]);
  assert.deepEqual(s(r0.hostSlices), ['0-512 x 0-512 C', '512-1024 x 0-1024 C', '1024-1536 x 0-1536 C', '1536-2048 x 0-2048 C']);
  assert.equal(r0.hostArea, 2098176);
  assert.deepEqual(s(r0.stages[0].remoteSlices), ['512-1024 x 0-1024 F', '1024-1536 x 0-1024 F', '1536-2048 x 0-2048 F']);
  assert.equal(r0.stages[0].remoteArea, 2097152);
  assert.deepEqual(cast(r0.stages[0].groupCast), { in: [512, 1024, 512], dst: [[1], [1], []], out: [1024, 1024], src: [1, 1] });

  assert.deepEqual(ranges(r1.hostGlobalRanges), [512, 1536, 2560, 3584]);
  assert.deepEqual(ranges(r1.remoteGlobalKRanges), [0, 512, 1536, 2560]);
  assert.deepEqual(s(r1.hostSlices), ['0-512 x 0-512 C', '512-1024 x 0-1024 C', '1024-1536 x 0-1536 C', '1536-2048 x 0-2048 C']);
  assert.deepEqual(s(r1.stages[0].remoteSlices), ['0-512 x 0-512 F', '512-1024 x 0-512 F', '1024-1536 x 0-1536 F', '1536-2048 x 0-1536 F']);
  assert.deepEqual(cast(r1.stages[0].groupCast), { in: [1024, 1024], dst: [[0], [0]], out: [512, 1024], src: [0, 0] });
  // GroupReduce is the transpose (rank 1 of the reference example).
  const red = r1.stages[0].groupReduce;
  assert.deepEqual([Array.from(red.inputSplitSizes), Array.from(red.dstIndex), Array.from(red.outputSplitSizes), red.srcIndices], [[512, 1024], [0, 0], [1024, 1024], [[0], [0]]]);
  assert.ok(checkPlan(p).ok);
});

test('02 §7.1 with degree 2: the first stage gets one overlap chunk fewer, and gaps become empty-destination splits', () => {
  const p = plan71(2);
  const [r0, r1] = p.perRank;
  assert.equal(p.overlapDegree, 2);
  assert.deepEqual(ranges(r0.stages[0].stageBufferGlobalKRanges), [512, 1536]);
  assert.deepEqual(s(r0.stages[0].remoteSlices), ['512-1024 x 0-1024 F', '1024-1536 x 0-1024 F', '1536-2048 x 0-1024 F']);
  assert.deepEqual(ranges(r0.stages[1].stageBufferGlobalKRanges), [2560, 3584]);
  assert.deepEqual(s(r0.stages[1].remoteSlices), ['1536-2048 x 0-1024 F']);
  assert.deepEqual(ranges(r1.stages[0].stageBufferGlobalKRanges), [0, 512]);
  assert.deepEqual(ranges(r1.stages[1].stageBufferGlobalKRanges), [1536, 2560]);
  assert.deepEqual(cast(r0.stages[0].groupCast), { in: [512, 1536], dst: [[1], []], out: [1024], src: [1] });
  assert.deepEqual(cast(r0.stages[1].groupCast), { in: [512, 1024, 512], dst: [[], [1], []], out: [1024], src: [1] });
  assert.deepEqual(cast(r1.stages[0].groupCast), { in: [1024, 1024], dst: [[0], []], out: [512], src: [0] });
  assert.deepEqual(cast(r1.stages[1].groupCast), { in: [1024, 1024], dst: [[], [0]], out: [1024], src: [0] });
  assert.ok(checkPlan(p).ok);
});

test('02 §7.2, varlen block-causal cp 4: host, remote, slices and GroupCast args of all ranks', () => {
  const q: Array<[number, number]> = [];
  const k: Array<[number, number]> = [];
  for (let b = 0; b < 8; b++) {
    q.push([512 * b, 512 * b + 512]);
    k.push([b < 3 ? 0 : 1536, 512 * b + 512]);
  }
  const p = planDistAttn({ mask: makeSliceList(q, k, 'full'), totalSeqlenQ: 4096, cpSize: 4, dispatchConfig: { minChunksPerRank: 4 } });
  const want = [
    { host: [256, 512, 768, 1024, 1280, 1536, 3840, 4096], remote: [0, 256, 512, 768, 1024, 1280, 1536, 3840] },
    { host: [0, 256, 512, 768, 1024, 1280, 3584, 3840], remote: [256, 512, 768, 1024, 1280, 3584, 3840, 4096] },
    { host: [1792, 2048, 2304, 2560, 2816, 3072, 3328, 3584], remote: [1536, 1792, 2048, 2304, 2560, 2816, 3072, 3328] },
    { host: [1536, 1792, 2048, 2304, 2560, 2816, 3072, 3328], remote: [1792, 2048, 2304, 2560, 2816, 3072, 3328, 3584] },
  ];
  p.perRank.forEach((r, i) => {
    assert.deepEqual(ranges(r.hostGlobalRanges), want[i].host, `rank ${i} host`);
    assert.deepEqual(ranges(r.remoteGlobalKRanges), want[i].remote, `rank ${i} remote`);
  });
  assert.deepEqual(s(p.perRank[0].hostSlices), ['0-256 x 0-256 F', '256-512 x 0-512 F', '512-768 x 0-768 F', '768-1024 x 768-1024 F']);
  assert.deepEqual(s(p.perRank[2].hostSlices), ['0-256 x 0-256 F', '256-512 x 0-512 F', '512-768 x 0-768 F', '768-1024 x 0-1024 F']);
  assert.deepEqual(s(p.perRank[0].stages[0].remoteSlices), ['0-256 x 0-256 F', '256-512 x 0-512 F', '512-768 x 0-768 F', '768-1024 x 768-3072 F']);
  const r256 = (n: number) => new Array<number>(n).fill(256);
  assert.deepEqual(cast(p.perRank[0].stages[0].groupCast), { in: r256(4), dst: [[1], [1], [1], [1]], out: r256(12), src: [1, 1, 1, 3, 2, 3, 2, 3, 2, 3, 2, 1] });
  assert.deepEqual(cast(p.perRank[1].stages[0].groupCast), { in: r256(4), dst: [[0], [0], [0], [0]], out: r256(12), src: [0, 0, 0, 3, 2, 3, 2, 3, 2, 3, 2, 0] });
  assert.deepEqual(cast(p.perRank[2].stages[0].groupCast), { in: r256(4), dst: [[0, 1, 3], [0, 1, 3], [0, 1, 3], [0, 1, 3]], out: r256(4), src: [3, 3, 3, 3] });
  assert.deepEqual(cast(p.perRank[3].stages[0].groupCast), { in: r256(4), dst: [[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2]], out: r256(4), src: [2, 2, 2, 2] });
  assert.ok(checkPlan(p).ok);
});

// 03 §1.1: normal_group_cast_case1, W = 4, one element per row.
const castCase1: GroupCastArgs[] = [
  { inputSplitSizes: Int32Array.from([2, 1, 1]), dstIndices: [[1], [1, 2], [2]], outputSplitSizes: Int32Array.from([1, 1, 1]), srcIndex: Int32Array.from([1, 2, 3]) },
  { inputSplitSizes: Int32Array.from([1, 1, 2]), dstIndices: [[3], [0, 3], [2]], outputSplitSizes: Int32Array.from([2, 2, 1, 1, 1]), srcIndex: Int32Array.from([0, 2, 0, 3, 3]) },
  { inputSplitSizes: Int32Array.from([1, 1, 2]), dstIndices: [[3], [0, 3], [1]], outputSplitSizes: Int32Array.from([1, 1, 2, 2]), srcIndex: Int32Array.from([0, 0, 1, 3]) },
  { inputSplitSizes: Int32Array.from([1, 1, 2]), dstIndices: [[1], [0, 1], [2]], outputSplitSizes: Int32Array.from([1, 1, 1, 1]), srcIndex: Int32Array.from([1, 1, 2, 2]) },
];
const castInputs = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]];

test('03 §1.1: GroupCast by the ordering contract delivers rank 1 [0,1, 10,11, 2, 12, 13]', () => {
  const out = simulateGroupCast(castInputs, castCase1);
  assert.deepEqual(out[1], [0, 1, 10, 11, 2, 12, 13]);
  // Every rank: its output is what its sources sent it, in each source's order.
  assert.deepEqual(out[0], [5, 9, 13]);
  assert.deepEqual(out[2], [2, 3, 6, 7, 14, 15]);
  assert.deepEqual(out[3], [4, 5, 8, 9]);
});

test('03 §1.4: the all-to-all-v lowering gives the same GroupCast and GroupReduce results', () => {
  const lowered = castCase1.map((a) => lowerGroupCast(a, 4));
  // Sender side of rank 0: rows for rank 1 first ([0, 2) and [2, 3)), then rank 2 ([2, 3), [3, 4)).
  assert.deepEqual(Array.from(lowered[0].sendGather), [0, 2, 2, 3, 2, 3, 3, 4]);
  assert.deepEqual(Array.from(lowered[0].sendCounts), [0, 3, 2, 0]);
  assert.deepEqual(Array.from(lowered[1].recvCounts), [3, 0, 2, 2]);
  const outputs = castCase1.map((a) => new Array<number>(a.outputSplitSizes.reduce((x, y) => x + y, 0)).fill(0));
  assert.deepEqual(runLoweredA2AV(lowered, castInputs, outputs, 'cast'), simulateGroupCast(castInputs, castCase1));

  const reduce = castCase1.map(toGroupReduceArgs);
  const partial = simulateGroupCast(castInputs, castCase1).map((rows) => rows.map((x) => x * 10 + 1));
  const acc = castInputs.map((rows) => rows.map(() => 100));
  const want = simulateGroupReduce(partial, acc, reduce, 'sum');
  assert.deepEqual(runLoweredA2AV(reduce.map((a) => lowerGroupReduce(a, 4)), partial, acc, 'reduce'), want);
  // Rank 0's row 1 was cast to rank 1 only (as rank 1's second output row): 100 + 11.
  assert.equal(want[0][1], 111);
  // Rank 0's row 2 went to ranks 1 and 2: both contributions come back.
  assert.equal(want[0][2], 100 + 21 + 21);
});

test('03 §1.3: GroupReduce avg counts the old value as one contributor; lse merges by log-sum-exp', () => {
  // Two ranks send into rank 0's split of size 2 (rank 0 also sends to itself).
  const args: GroupReduceArgs[] = [
    { inputSplitSizes: Int32Array.from([2]), dstIndex: Int32Array.from([0]), outputSplitSizes: Int32Array.from([2]), srcIndices: [[0, 1]] },
    { inputSplitSizes: Int32Array.from([2]), dstIndex: Int32Array.from([0]), outputSplitSizes: Int32Array.from([]), srcIndices: [] },
  ];
  const avg = simulateGroupReduce([[3, 4], [5, 6]], [[1, 2], []], args, 'avg');
  assert.deepEqual(avg[0], [3, 4]);
  const lse = simulateGroupReduceLse(
    [{ out: [3, 19], lse: [-1, 2.75] }, { out: [5, 0], lse: [0.5, -Infinity] }],
    [{ out: [1, 0], lse: [-Infinity, -Infinity] }, { out: [], lse: [] }],
    args,
  );
  assert.ok(Math.abs(lse[0].lse[0] - 0.7014) < 1e-4);
  assert.ok(Math.abs(lse[0].out[0] - 4.6351) < 1e-4);
  // A contribution into an empty accumulator (lse −inf) is copied as is.
  assert.equal(lse[0].out[1], 19);
  assert.equal(lse[0].lse[1], 2.75);
});

test('the ordering contract is checked: a size mismatch or a missing split is an error', () => {
  const bad = castCase1.map((a) => ({ ...a }));
  bad[1] = { ...bad[1], outputSplitSizes: Int32Array.from([1, 2, 2, 1, 1]) };
  assert.throws(() => matchGroupCast(bad), /must equal the size of the matching input split/);
  const missing = castCase1.map((a) => ({ ...a }));
  missing[3] = { ...missing[3], outputSplitSizes: Int32Array.from([1, 1, 1]), srcIndex: Int32Array.from([1, 1, 2]) };
  assert.throws(() => matchGroupCast(missing), /splits to rank 3/);
});

test('overlap chunking and the uniform split follow the reference rules', () => {
  assert.deepEqual(overlapChunking(2048, 512, 64), { chunkSize: 512, numChunks: 4 });
  assert.deepEqual(overlapChunking(100000, 512, 64), { chunkSize: 1563, numChunks: 64 });
  assert.deepEqual(overlapChunking(0, 512, 64), { chunkSize: 512, numChunks: 0 });
  // [[0,1,2],[3,4]] over 1 + 4 entries: stage 0 = chunks 0..1, stage 1 = chunks 2..3.
  assert.deepEqual(Array.from(uniformStages(4, 2)), [0, 2, 4]);
  assert.deepEqual(Array.from(uniformStages(3, 2)), [0, 1, 3]);
  assert.deepEqual(Array.from(uniformStages(1, 3)), [0, 1, 1, 1]);
  assert.deepEqual(Array.from(uniformStages(0, 2)), [0, 0, 0]);
});

test('greedy stages hide each fetch behind the compute before it, and never cost more than uniform', () => {
  // A long host stage hides four chunks; the short stages after it take one chunk each.
  const comm = [4, 4, 4, 4, 4, 4];
  const calc = [1, 1, 1, 1, 1, 1];
  const g = greedyStages(3, 30, comm, calc);
  assert.deepEqual(Array.from(g), [0, 4, 5, 6]);
  assert.equal(overlapCost(g, 30, comm, calc), 39);
  assert.equal(overlapCost(uniformStages(6, 3), 30, comm, calc), 48);
  // When the fill does not help, greedy falls back to the uniform split.
  assert.deepEqual(Array.from(greedyStages(3, 10, [4, 4, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5])), Array.from(uniformStages(6, 3)));
});

test('dynamic overlap picks the degree by the cost model and pads the others with empty stages', () => {
  const mask = causalMask(16384);
  // Comm expensive relative to compute: more stages hide more of it.
  const p = planDistAttn({ mask, totalSeqlenQ: 16384, cpSize: 4, overlapConfig: { mode: 'dynamic', dynamicMaxDegree: 6, minChunkSize: 256, calcCostFactor: 1, commCostFactor: 2000 } });
  assert.ok(p.overlapDegree > 1, `degree ${p.overlapDegree}`);
  for (const r of p.perRank) assert.equal(r.stages.length, p.overlapDegree);
  assert.ok(checkPlan(p).ok);
  // Comm nearly free: one stage is enough.
  const q = planDistAttn({ mask, totalSeqlenQ: 16384, cpSize: 4, overlapConfig: { mode: 'dynamic', calcCostFactor: 1, commCostFactor: 1e-6 } });
  assert.equal(q.overlapDegree, 1);
});

test('degree 0 means no overlap: one stage, flagged for the runtime', () => {
  const p = planDistAttn({ mask: causalMask(4096), totalSeqlenQ: 4096, cpSize: 2, overlapConfig: { degree: 0 } });
  assert.equal(p.overlapDegree, 1);
  assert.equal(p.overlapConfig.noOverlap, true);
  assert.ok(checkPlan(p).ok);
});
