/**
 * The distributed pipeline end to end on worker-thread ranks: for random masks (varlen full and
 * causal, block-causal, sliding window, overlapping q ranges, random slices that may share cells),
 * GQA, sink, softcap, cp 1, 2, 3, 4, 8, overlap degree 0-4, even and uneven shards (a third of
 * the cases: ranks holding different numbers of tokens), and hierarchical communication over
 * meshes of 2x2 and 2x4 thread ranks, undispatch(calcAttn(dispatch(x))) and the backward equal
 * single-device flexFlashAttn on the whole sequence: out, lse, maxLogits, dq, dk, dv and dsink
 * (summed over ranks).
 *
 * Tolerances, float32 inputs, relative to the element and to the tensor's largest element
 * (compareClose). Both sides run the same float32 CPU kernel; the distributed result differs only
 * in the order of float32 roundings: out/lse are merged stage by stage by log-sum-exp (one extra
 * rounding of out and of the merge weights per stage, up to 5 stages), dq sums stage partials,
 * dk/dv sum partials from several ranks, dsink sums per-rank partials. Between two float32 runs
 * of the kernel we allow out/lse 2e-6, gradients and dsink 8e-6 (measured worst: about a tenth
 * of this, 1-2 float32 ulps). maxLogits is a max
 * of the same float32 logits, so 1e-6 (it comes out exact).
 * bfloat16 inputs add one bfloat16 ulp (2^-7) to out and the gradients: both sides round once
 * from float32 and a tiny float32 difference can flip that rounding.
 *
 * Random cases print their seed; replay with MAGI_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnRanks } from '../src/comm/threads/index.js';
import { RankFailedError } from '../src/comm/errors.js';
import type { Tolerance } from '../src/kernels/tolerance.js';
import type { MaskFamily } from './util/solver-masks.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import type { CalcAttnArgs, CalcAttnCase, CaseReport } from './runtime-ranks/calc-attn-rank.js';
import { runnable } from './util/paths.js';

const rankScript = runnable('test/runtime-ranks/calc-attn-rank');

type Quantity = 'out' | 'lse' | 'maxLogits' | 'grad' | 'dsink';
const F32_DIST: Record<Quantity, Tolerance> = {
  out: { rtol: 2e-6, atol: 2e-6 },
  lse: { rtol: 2e-6, atol: 2e-6 },
  maxLogits: { rtol: 1e-6, atol: 1e-6 },
  grad: { rtol: 8e-6, atol: 8e-6 },
  dsink: { rtol: 8e-6, atol: 8e-6 },
};
const BF16_DIST: Record<Quantity, Tolerance> = {
  ...F32_DIST,
  out: { rtol: F32_DIST.out.rtol + 2 ** -7, atol: F32_DIST.out.atol },
  grad: { rtol: F32_DIST.grad.rtol + 2 ** -7, atol: F32_DIST.grad.atol },
};

function makeCases(seed: number, cp: number, count: number): CalcAttnCase[] {
  const rng = new Rng(seed);
  const families: MaskFamily[] = ['varlen-causal', 'block-causal', 'sliding-window', 'overlapping', 'varlen-full', 'random-slices'];
  const heads: Array<[number, number]> = [
    [2, 2],
    [4, 2],
    [4, 1],
    [3, 3],
  ];
  const cases: CalcAttnCase[] = [];
  for (let i = 0; i < count; i++) {
    const [headsQ, headsKv] = heads[i % heads.length];
    cases.push({
      seed: rng.int(0, 2 ** 31),
      family: families[i % families.length],
      n: rng.int(Math.max(32, 8 * cp), 192),
      headsQ,
      headsKv,
      headDim: rng.pick([16, 32]),
      degree: i % 5,
      sink: i % 3 === 0 ? rng.int(1, 3) : 0,
      softcap: i % 4 === 1 ? 5 : 0,
      dtype: 'float32',
      unevenShard: i % 3 === 2,
    });
  }
  return cases;
}

function assertReports(reports: CaseReport[], seed: number): void {
  const failures = reports.flatMap((c) => c.reports.filter((r) => !r.ok).map((r) => `${c.name}: ${r.message}`));
  assert.deepEqual(failures, [], `seed ${seed}`);
}

for (const cp of [1, 2, 3, 4, 8]) {
  test(`undispatch(calcAttn(dispatch(x))) and its gradients equal single-device flexFlashAttn at cp ${cp}`, async (t) => {
    const seed = freshSeed();
    t.diagnostic(`seed ${seed}`);
    const cases = makeCases(seed, cp, cp === 8 ? 6 : 10);
    const results = await spawnRanks<CaseReport[], CalcAttnArgs>(cp, rankScript, { cases, tolerances: F32_DIST });
    const reports = results[0];
    assert.equal(reports.length, cases.length);
    assertReports(reports, seed);
    const worst: Record<string, number> = {};
    for (const c of reports) for (const r of c.reports) worst[r.label] = Math.max(worst[r.label] ?? 0, r.worstRatio);
    t.diagnostic(`worst error / allowed: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')}`);
    t.diagnostic(`stages per case: ${reports.map((r) => r.stages).join(' ')}; padding: ${reports.map((r) => r.padSize).join(' ')}`);
    const uneven = reports.filter((r) => / uneven /.test(r.name));
    t.diagnostic(`uneven shard lengths: ${uneven.map((r) => r.shardSeqlens.join('/')).join(' ')}`);
    if (cp > 1) {
      assert.ok(uneven.length >= 2, 'some cases have uneven shards');
      assert.ok(
        uneven.every((r) => r.padSize === 0),
        'an uneven shard has no padding',
      );
      assert.ok(
        uneven.some((r) => new Set(r.shardSeqlens).size > 1),
        `some uneven case gives ranks different lengths: ${uneven.map((r) => r.shardSeqlens.join('/')).join(' ')}`,
      );
    }
  });
}

for (const [nodes, ranksPerNode] of [
  [2, 2],
  [2, 4],
]) {
  const cp = nodes * ranksPerNode;
  test(`hierarchical GroupCast / GroupReduce on a ${nodes}x${ranksPerNode} mesh of thread ranks: calcAttn and its gradients equal single-device flexFlashAttn`, async (t) => {
    const seed = freshSeed();
    t.diagnostic(`seed ${seed}`);
    const cases = makeCases(seed, cp, cp === 8 ? 5 : 6).map((c) => ({ ...c, ranksPerNode }));
    const results = await spawnRanks<CaseReport[], CalcAttnArgs>(cp, rankScript, { cases, tolerances: F32_DIST });
    assertReports(results[0], seed);
    assert.equal(results[0].length, cases.length);
    t.diagnostic(`stages per case: ${results[0].map((r) => r.stages).join(' ')}`);
  });
}

test('bfloat16 inputs at cp 4 match within one extra bfloat16 ulp', async (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const cases = makeCases(seed, 4, 3).map((c) => ({ ...c, dtype: 'bfloat16' as const }));
  const results = await spawnRanks<CaseReport[], CalcAttnArgs>(4, rankScript, { cases, tolerances: BF16_DIST });
  assertReports(results[0], seed);
});

test('a rank that calls calcAttn with a wrong local length ends the run with an error naming the rank and the argument', async () => {
  const cases = makeCases(1234, 3, 1);
  const err = await spawnRanks<CaseReport[], CalcAttnArgs>(3, rankScript, { cases, tolerances: F32_DIST, badRank: 2 }, { timeoutMs: 20_000 }).then(
    () => assert.fail('spawnRanks resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RankFailedError, String(err));
  assert.equal(err.rank, 2);
  assert.match(err.message, /rank 2 failed: ShapeError: q: must be this rank's shard/);
});

