import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AttnRangeError, InvalidArgumentError, MaskError } from '../src/errors.js';
import { causalMask } from '../src/mask/helpers.js';
import { makeSliceList } from '../src/mask/slice-list.js';
import { planDistAttn, type PlanRequest } from '../src/solver/solve.js';
import { computePadSize } from '../src/solver/chunking.js';
import { planFromJSON, planToJSON } from '../src/solver/plan-json.js';
import { positionIds } from '../src/solver/chunk-assignment.js';
import { checkPlan } from '../src/solver/check-plan.js';

const base: PlanRequest = { mask: causalMask(1024), totalSeqlenQ: 1024, cpSize: 2 };

/** Asserts an InvalidArgumentError (or subclass) naming `argument`. */
function rejects(request: PlanRequest, argument: string, rule: RegExp): void {
  assert.throws(
    () => planDistAttn(request),
    (e: unknown) => e instanceof InvalidArgumentError && e.argument === argument && rule.test(e.message),
    `${argument} ${rule}`,
  );
}

test('cp < 1 or a fractional cp is rejected, naming cpSize', () => {
  rejects({ ...base, cpSize: 0 }, 'cpSize', /integer >= 1/);
  rejects({ ...base, cpSize: -3 }, 'cpSize', /integer >= 1/);
  rejects({ ...base, cpSize: 1.5 }, 'cpSize', /integer >= 1/);
  assert.throws(() => computePadSize(1024, 0, 8), /cpSize/);
});

test('chunk size 0 (or negative, or fractional) is rejected, naming dispatchConfig.chunkSize', () => {
  rejects({ ...base, dispatchConfig: { chunkSize: 0 } }, 'dispatchConfig.chunkSize', /positive integer/);
  rejects({ ...base, dispatchConfig: { chunkSize: -4 } }, 'dispatchConfig.chunkSize', /positive integer/);
  rejects({ ...base, dispatchConfig: { chunkSize: 2.5 } }, 'dispatchConfig.chunkSize', /positive integer/);
  assert.throws(() => computePadSize(1024, 2, 0), /chunkSize/);
});

test('a mask outside the sequence is rejected with the slice that leaves it', () => {
  const mask = makeSliceList([[0, 512], [512, 1100]], [[0, 512], [0, 1024]], 'full');
  assert.throws(() => planDistAttn({ ...base, mask }), (e: unknown) => e instanceof AttnRangeError && /qRanges\[1\]/.test(e.message) && /1024/.test(e.message));
  const maskK = makeSliceList([[0, 512]], [[0, 2000]], 'full');
  assert.throws(() => planDistAttn({ ...base, mask: maskK }), (e: unknown) => e instanceof AttnRangeError && /kRanges\[0\]/.test(e.message));
  // A hand-built slice list with a reversed range.
  const reversed = { qRanges: Int32Array.from([10, 5]), kRanges: Int32Array.from([0, 4]), maskTypes: Uint8Array.from([0]) };
  assert.throws(() => planDistAttn({ ...base, mask: reversed }), (e: unknown) => e instanceof AttnRangeError && /mask\.qRanges\[0\]/.test(e.message));
});

test('q and k totals that differ are rejected: self-attention only', () => {
  rejects({ ...base, totalSeqlenK: 2048 }, 'totalSeqlenK', /self-attention/);
});

test('a mask with no cells, a bad type code, a bad total are rejected', () => {
  const empty = makeSliceList([[0, 10]], [[5, 5]], 'full');
  assert.throws(() => planDistAttn({ ...base, mask: empty }), (e: unknown) => e instanceof MaskError && /at least one slice/.test(e.message));
  const badType = { qRanges: Int32Array.from([0, 4]), kRanges: Int32Array.from([0, 4]), maskTypes: Uint8Array.from([7]) };
  assert.throws(() => planDistAttn({ ...base, mask: badType }), (e: unknown) => e instanceof MaskError && /maskTypes\[0\]/.test(e.message));
  rejects({ ...base, totalSeqlenQ: 0 }, 'totalSeqlenQ', /integer >= 1/);
});

test('too few chunks for the ranks is rejected, as in the reference', () => {
  rejects({ mask: causalMask(3), totalSeqlenQ: 3, cpSize: 4 }, 'cpSize', /at least one chunk per rank/);
});

test('bad configs name their field', () => {
  rejects({ ...base, overlapConfig: { degree: -1 } }, 'overlapConfig.degree', /integer >= 0/);
  rejects({ ...base, overlapConfig: { degree: 100, maxNumChunks: 8 } }, 'overlapConfig.degree', /maxNumChunks/);
  rejects({ ...base, overlapConfig: { mode: 'dynamic', degree: 2 } }, 'overlapConfig.degree', /dynamic/);
  rejects({ ...base, overlapConfig: { minChunkSize: 0 } }, 'overlapConfig.minChunkSize', /positive integer/);
  rejects({ ...base, overlapConfig: { calcCostFactor: 0 } }, 'overlapConfig.calcCostFactor', /> 0/);
  rejects({ ...base, overlapConfig: { alg: 'fancy' as 'greedy' } }, 'overlapConfig.alg', /uniform/);
  rejects({ ...base, dispatchConfig: { alg: null as never } }, 'dispatchConfig.alg', /min-heap/); // fuzz seed 262279212 found a TypeError here
  rejects({ ...base, dispatchConfig: { alg: { type: 'best' as 'min-heap' } } }, 'dispatchConfig.alg.type', /min-heap/);
  rejects({ ...base, dispatchConfig: { alg: { type: 'topp-heap', topP: 2 } } }, 'dispatchConfig.alg.topP', /\[0, 1\]/);
  rejects({ ...base, dispatchConfig: { alg: { type: 'sorted-sequential', allocationRatio: 0 } } }, 'dispatchConfig.alg.allocationRatio', /\(0, 1\]/);
  rejects({ ...base, dispatchConfig: { alg: { type: 'contiguous-runs', maxImbalance: 0.9 } } }, 'dispatchConfig.alg.maxImbalance', />= 1/);
});

test('planFromJSON names the field of a plan file that is wrong; positionIds refuses a rank outside cp', () => {
  const named = (argument: string) => (e: unknown) => e instanceof InvalidArgumentError && e.argument === argument;
  assert.throws(() => planFromJSON(null), named('plan'));
  assert.throws(() => planFromJSON({ hello: 1 }), named('plan.hello'));
  assert.throws(() => planFromJSON({}), named('plan.formatVersion'));
  const plan = planDistAttn(base);
  const good = planToJSON(plan);
  const broken = (edit: (j: Record<string, any>) => void): unknown => {
    const j = JSON.parse(JSON.stringify(good));
    edit(j);
    return j;
  };
  assert.throws(() => planFromJSON(broken((j) => (j.formatVersion = 2))), named('plan.formatVersion'));
  assert.throws(() => planFromJSON(broken((j) => (j.perRank[1].stages[0].groupCast.srcIndex = 'x'))), named('plan.perRank[1].stages[0].groupCast.srcIndex'));
  assert.throws(() => planFromJSON(broken((j) => (j.globalMask[0][2] = 'sideways'))), named('plan.globalMask[0][2]'));
  assert.throws(() => planFromJSON(broken((j) => (j.dispatch.partitions[0][0] = -1))), named('plan.dispatch.partitions[0][0]'));
  // Numbers past 32 bits would wrap in the plan's Int32Arrays; a mask past the sequence's end would
  // send checkPlan's dense oracle down 2^31 rows (both found by the fuzz test, seed 405033280).
  assert.throws(() => planFromJSON(broken((j) => (j.globalMask[0][1][0] = 2 ** 31))), named('plan.globalMask[0][1][0]'));
  assert.throws(() => planFromJSON(broken((j) => (j.globalMask[0][0][1] = 2 ** 31 - 1))), named('plan.globalMask[0][0]'));
  assert.throws(() => planFromJSON(broken((j) => (j.globalMask[0][1] = [5, 4]))), named('plan.globalMask[0][1]'));
  assert.throws(() => planFromJSON(broken((j) => (j.hostStuff = 1))), named('plan.hostStuff'));
  assert.throws(() => planFromJSON(broken((j) => delete j.perRank[0].hostSlices)), named('plan.perRank[0].hostSlices'));
  // Sizes that disagree are reported before anything loops over them (2^31 - 1 chunks took 130 s).
  const manyChunks = checkPlan(planFromJSON(broken((j) => (j.dispatch.numChunks = 2 ** 31 - 1))));
  assert.ok(!manyChunks.ok && /chunk count/.test(manyChunks.errors[0]), manyChunks.errors.join('; '));
  assert.throws(() => positionIds(plan.dispatch, 2), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'rank');
});
