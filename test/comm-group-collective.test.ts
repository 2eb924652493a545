/**
 * GroupCast / GroupReduce and the shared collective layer, on the in-process backend (all ranks in
 * this thread, no start-up cost, so many random cases): the worked examples of reference 03
 * §1.1-1.3 exactly, random arguments against a direct definition on P = 1, 2, 3, 4, 8, every
 * collective against a direct computation, argument checks, the cached lowering, one-shot
 * post-processing, fail-fast and timeouts. The same batteries run on worker threads in
 * comm-threads.test.ts. Random cases print their seed; replay with MAGI_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLocalGroups, runLocalRanks } from '../src/comm/local-group.js';
import { groupCast, groupReduce, prepareGroupCast, prepareGroupReduce } from '../src/comm/group-collective.js';
import { CommTimeoutError, RankFailedError } from '../src/comm/errors.js';
import { InvalidArgumentError } from '../src/errors.js';
import type { GroupCastArgs } from '../src/solver/plan.js';
import { freshSeed } from '../src/util/rng.js';
import { collectiveBattery } from './comm-ranks/collective-battery.js';
import { groupBattery, mirror, workedCastExample, workedReduceExamples } from './comm-ranks/group-battery.js';

const noFailures = (results: { failures: string[] }[], seed?: number): void => {
  assert.deepEqual(results.flatMap((r) => r.failures), [], seed === undefined ? undefined : `seed ${seed}`);
};

test('03 §1.1 worked example: rank 1 receives [0, 1, 10, 11, 2, 12, 13], and the mirrored reduce sums each row once per destination', async () => {
  noFailures(await runLocalRanks(4, workedCastExample));
});

test('03 §1.3 worked examples: avg [1,2]+[3,4]+[5,6] -> [3,4]; lse merge -> (4.6351, 0.7014) and a single source copies (19, 2.75)', async () => {
  noFailures(await runLocalRanks(2, workedReduceExamples));
});

for (const P of [1, 2, 3, 4, 8]) {
  test(`random GroupCast / GroupReduce (sum, avg, bf16 sum, lse) match the direct definition on ${P} rank(s)`, async (t) => {
    const seed = freshSeed();
    t.diagnostic(`seed ${seed}`);
    noFailures(await runLocalRanks(P, (g) => groupBattery(g, seed, P === 8 ? 6 : 12)), seed);
  });
}

for (const P of [1, 2, 3, 4, 8]) {
  test(`every collective matches a direct computation on ${P} in-process rank(s)`, async (t) => {
    const seed = freshSeed();
    t.diagnostic(`seed ${seed}`);
    noFailures(await runLocalRanks(P, (g) => collectiveBattery(g, seed, P === 8 ? 2 : 3)), seed);
  });
}

const example: GroupCastArgs = { inputSplitSizes: Int32Array.of(2, 1, 1), dstIndices: [[1], [1, 2], [2]], outputSplitSizes: Int32Array.of(1, 1, 1), srcIndex: Int32Array.of(3, 1, 2) };

test('the lowering is computed once per arguments object and world size', () => {
  const a = prepareGroupCast(example, 4);
  assert.equal(prepareGroupCast(example, 4), a);
  assert.notEqual(prepareGroupCast({ ...example }, 4), a);
  assert.deepEqual(Array.from(a.lowering.sendCounts), [0, 3, 2, 0]);
  assert.equal(a.sendRows, 5); // the row sent to two ranks is packed twice
  assert.equal(a.recvRows, 3);
  const r = prepareGroupReduce(mirror(example), 4);
  assert.deepEqual(Array.from(r.reducedSplits), [0, 2, 1, 2, 1, 2, 3, 1, 1]);
});

test('splits already grouped by destination are sent without packing, and rank-ordered output is received in place', () => {
  const args: GroupCastArgs = { inputSplitSizes: Int32Array.of(2, 3), dstIndices: [[0], [1]], outputSplitSizes: Int32Array.of(2, 4), srcIndex: Int32Array.of(0, 1) };
  const p = prepareGroupCast(args, 2);
  assert.equal(p.sendIsInput, true);
  assert.equal(p.receiveInPlace, true);
  const shuffled: GroupCastArgs = { ...args, dstIndices: [[1], [0]], srcIndex: Int32Array.of(1, 0) };
  const q = prepareGroupCast(shuffled, 2);
  assert.equal(q.sendIsInput, false);
  assert.equal(q.receiveInPlace, false);
});

test('bad arguments are rejected before any exchange, naming the argument', () => {
  const [g] = createLocalGroups(1);
  const one = (over: Partial<GroupCastArgs>): GroupCastArgs => ({ inputSplitSizes: Int32Array.of(1), dstIndices: [[0]], outputSplitSizes: Int32Array.of(1), srcIndex: Int32Array.of(0), ...over });
  const bad = (args: GroupCastArgs, rule: RegExp, input = new Float32Array(1)): void => {
    assert.throws(() => groupCast(g, input, args, 1), (e: unknown) => e instanceof InvalidArgumentError && rule.test(e.message));
  };
  bad(one({ dstIndices: [[1]] }), /^dstIndices\[0\]\[0\]: must be a rank in \[0, 1\)/);
  bad(one({ dstIndices: [[0, 0]] }), /^dstIndices\[0\]: must list distinct ranks in ascending order/);
  bad(one({ dstIndices: [] }), /^dstIndices: must have one rank list per input split/);
  bad(one({ srcIndex: Int32Array.of(3) }), /^srcIndex\[0\]: must be a rank/);
  bad(one({ inputSplitSizes: Int32Array.of(-1) }), /^inputSplitSizes\[0\]: must be a non-negative row count/);
  bad(one({}), /^input\.length: must be rows × rowWidth = 1 × 1 \(got 2\)/, new Float32Array(2));
  assert.throws(() => groupCast(g, new Float32Array(1), one({}), 0), /rowWidth: must be a positive integer/);
  const red = mirror(one({}));
  assert.throws(() => groupReduce(g, new Uint16Array(1), new Uint16Array(1), red, 'sum', { rowWidth: 1 }), /options\.halfType: must be 'bfloat16' or 'float16'/);
  assert.throws(() => groupReduce(g, new Float32Array(2), new Float32Array(2), red, 'lse', { rowWidth: 2, heads: 1 }), /options\.inputLse\/outputLse: are required for op 'lse'/);
  assert.throws(() => groupReduce(g, new Float32Array(2), new Float32Array(2), red, 'lse', { rowWidth: 2, heads: 3 }), /options\.heads: must be a positive integer dividing rowWidth/);
  assert.throws(() => g.allToAllV(new Float32Array(2), [1], new Float32Array(2), [2]), /sendCounts: must add up to send\.length \(1 vs 2\)/);
  assert.throws(() => g.allToAllV(new Float32Array(2), [2], new Float64Array(2) as unknown as Float32Array, [2]), /recv: must have the same element type as send/);
});

test('a GroupReduce handle reduces once, however often it is waited on', async () => {
  const [g] = createLocalGroups(1);
  const args = mirror({ inputSplitSizes: Int32Array.of(2), dstIndices: [[0]], outputSplitSizes: Int32Array.of(2), srcIndex: Int32Array.of(0) });
  const acc = Float64Array.of(1, 1);
  const work = groupReduce(g, Float64Array.of(2, 3), acc, args, 'sum', { rowWidth: 1 });
  assert.equal(work.completed, false);
  await work.wait();
  await work.wait();
  assert.equal(work.completed, true);
  assert.deepEqual(Array.from(acc), [3, 4]);
});

test('in-process ranks: the first rank that throws aborts the others at once, naming it', async () => {
  const err = await runLocalRanks(3, async (g) => {
    await g.barrier().wait();
    if (g.rank === 2) throw new Error('rank 2 gives up');
    await g.barrier().wait();
  }, { timeoutMs: 10_000 }).then(
    () => assert.fail('resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RankFailedError);
  assert.equal(err.rank, 2);
  // "Stopped" (aborted), not timed out: they left their 10 s barrier because rank 2 failed.
  assert.match(err.message, /^rank 2 failed: Error: rank 2 gives up; ranks 0, 1 were stopped$/);
  assert.deepEqual(err.outcomes.map((o) => (o.status === 'ok' ? 'ok' : o.error.name)), ['CommAbortedError', 'CommAbortedError', 'Error']);
});

test('in-process ranks: a collective one rank skips times out naming it', async () => {
  const res = await runLocalRanks(3, async (g) => {
    if (g.rank === 1) return null;
    return g.barrier().wait().then(
      () => null,
      (e: unknown) => e,
    );
  }, { timeoutMs: 50 });
  for (const r of [0, 2]) {
    const e = res[r];
    assert.ok(e instanceof CommTimeoutError);
    assert.deepEqual(e.missingRanks, [1]);
    assert.equal(e.message, `barrier (collective #0) on rank ${r} of group 'local' timed out after 50 ms: ranks 1 did not arrive`);
  }
});

test('a collective handle is awaitable itself: await group.barrier() waits for every rank', async () => {
  const order: string[] = [];
  await runLocalRanks(2, async (g) => {
    if (g.rank === 1) {
      // Let rank 0 reach its await first; rank 1 arrives a few event-loop turns later.
      for (let i = 0; i < 5; i++) await Promise.resolve();
      order.push('rank 1 arrives');
    }
    await g.barrier();
    order.push(`rank ${g.rank} passed`);
  });
  assert.equal(order[0], 'rank 1 arrives');
  assert.deepEqual(order.slice(1).sort(), ['rank 0 passed', 'rank 1 passed']);
});
