import { test } from 'node:test';
import assert from 'node:assert/strict';
import { causalMask, varlenCausalMask } from '../src/mask/helpers.js';
import { planDistAttn, type PlanRequest } from '../src/solver/solve.js';
import { checkPlan } from '../src/solver/check-plan.js';
import type { DistAttnPlan, RankPlan, StagePlan } from '../src/solver/plan.js';
import { planFromJSON, planToJSON } from '../src/solver/plan-json.js';
import type { DispatchAlg, OverlapConfig } from '../src/solver/config.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { MASK_FAMILIES, randomCuSeqlens, randomMask } from './util/solver-masks.js';
import { denseCounts, densePlanCounts } from '../src/solver/dense-oracle.js';

const ALGS: DispatchAlg[] = [
  { type: 'min-heap' },
  { type: 'sequential' },
  { type: 'sorted-sequential' },
  { type: 'sorted-sequential', allocationRatio: 0.5 },
  { type: 'topp-heap', topP: 0.5 },
  { type: 'contiguous-runs' },
];

function randomOverlap(rng: Rng): OverlapConfig {
  const base = { minChunkSize: rng.int(1, 64), maxNumChunks: rng.int(4, 64), alg: rng.pick(['uniform', 'greedy'] as const) };
  const r = rng.next();
  if (r < 0.15) return { ...base, mode: 'dynamic', dynamicMaxDegree: rng.int(1, 6), commCostFactor: rng.pick([1, 100, 10000]) };
  return { ...base, degree: Math.min(base.maxNumChunks, rng.int(0, 4)) };
}

test('the checker proves hundreds of random plans right (all families, cp 1-16, dividing and non-dividing chunk sizes)', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  let plans = 0;
  let dense = 0;
  let divides = 0;
  for (const cp of [1, 2, 3, 4, 8, 16]) {
    for (const family of MASK_FAMILIES) {
      for (let i = 0; i < 8; i++) {
        const n = rng.int(Math.max(cp, 16), i < 6 ? 320 : 2500);
        const mask = randomMask(rng, family, n);
        // minChunksPerRank spreads the effective chunk size; a user cap below it picks odd sizes.
        const minChunksPerRank = rng.pick([1, 2, 3, 8]);
        const auto = Math.ceil(n / (minChunksPerRank * cp));
        let chunkSize = rng.next() < 0.5 ? undefined : rng.int(1, auto);
        // The reference rejects fewer chunks than ranks; stay inside that rule.
        if (Math.ceil(n / (chunkSize ?? auto)) < cp) chunkSize = Math.floor(n / cp);
        const request: PlanRequest = {
          mask,
          totalSeqlenQ: n,
          cpSize: cp,
          dispatchConfig: { minChunksPerRank, ...(chunkSize === undefined ? {} : { chunkSize }), alg: rng.pick(ALGS) },
          overlapConfig: randomOverlap(rng),
        };
        const what = `seed ${seed}: ${family} n ${n} cp ${cp} ${JSON.stringify({ ...request, mask: undefined })}`;
        const plan = planDistAttn(request);
        if (n % plan.dispatch.chunkSize === 0) divides++;
        const result = checkPlan(plan);
        assert.ok(result.ok, `${what}\n${result.errors.join('\n')}`);
        assert.equal(result.planCells, result.maskCells, what);
        if (n <= 320) {
          // The dense oracle shares only the per-cell rule with the solver (checkPlan also runs it).
          const want = denseCounts(mask, n);
          const got = densePlanCounts(plan, n);
          assert.equal(got.outside, 0, `${what}: cells outside the sequence`);
          assert.deepEqual(got.counts, want, `${what}: dense coverage differs`);
          dense++;
        }
        plans++;
      }
    }
  }
  t.diagnostic(`${plans} plans checked, ${dense} of them also against the dense oracle, ${divides} with a chunk size dividing N`);
  assert.ok(divides > 0 && divides < plans);
});

test('plans round-trip through JSON exactly', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  for (let i = 0; i < 12; i++) {
    const n = rng.int(64, 3000);
    const plan = planDistAttn({ mask: randomMask(rng, MASK_FAMILIES[i % MASK_FAMILIES.length], n), totalSeqlenQ: n, cpSize: rng.pick([1, 2, 3, 5, 8]), overlapConfig: { degree: rng.int(1, 3), minChunkSize: 16 } });
    const back = planFromJSON(JSON.parse(JSON.stringify(planToJSON(plan))));
    assert.deepEqual(back, plan, `seed ${seed}`);
    assert.ok(checkPlan(back).ok);
  }
});

/** A copy of the plan with one rank's stage (or rank plan) replaced. */
function withStage(plan: DistAttnPlan, rank: number, stage: number, edit: (s: StagePlan) => StagePlan): DistAttnPlan {
  const perRank = plan.perRank.map((r): RankPlan => (r.rank !== rank ? r : { ...r, stages: r.stages.map((s, i) => (i === stage ? edit(s) : s)) }));
  return { ...plan, perRank };
}

test('the checker catches broken plans: a lost slice, a shifted slice, a wrong split, an unread token, a bad dispatch', () => {
  const plan = planDistAttn({ mask: varlenCausalMask(randomCuSeqlens(new Rng(3), 4096, 6)), totalSeqlenQ: 4096, cpSize: 4, overlapConfig: { degree: 2, minChunkSize: 64 } });
  assert.ok(checkPlan(plan).ok);
  const rank = plan.perRank.findIndex((r) => r.stages[0].remoteSlices.maskTypes.length > 0);
  assert.ok(rank >= 0);

  const lost = withStage(plan, rank, 0, (s) => ({ ...s, remoteSlices: { qRanges: s.remoteSlices.qRanges.slice(2), kRanges: s.remoteSlices.kRanges.slice(2), maskTypes: s.remoteSlices.maskTypes.slice(1) } }));
  const e1 = checkPlan(lost);
  assert.ok(!e1.ok && e1.errors.some((e) => /cells|row \d+/.test(e)), e1.errors.join('\n'));

  const shifted = withStage(plan, rank, 0, (s) => {
    const q = s.remoteSlices.qRanges.slice();
    if (q[0] > 0) {
      q[0] -= 1;
      q[1] -= 1;
    } else {
      q[0] += 1;
      q[1] += 1;
    }
    return { ...s, remoteSlices: { ...s.remoteSlices, qRanges: q } };
  });
  assert.ok(!checkPlan(shifted).ok);

  const wrongSplit = withStage(plan, rank, 0, (s) => {
    const out = s.groupCast.outputSplitSizes.slice();
    out[0] -= 1;
    out[out.length - 1] += 1;
    return out.length > 1 ? { ...s, groupCast: { ...s.groupCast, outputSplitSizes: out } } : { ...s, groupCast: { ...s.groupCast, srcIndex: s.groupCast.srcIndex.map((x) => (x + 1) % 4) } };
  });
  const e3 = checkPlan(wrongSplit);
  assert.ok(!e3.ok, 'a wrong output split must fail');

  // Receiving a token nobody reads: grow a stage buffer by one token it does not need.
  const unread = withStage(plan, rank, 0, (s) => ({ ...s, remoteSlices: { qRanges: new Int32Array(0), kRanges: new Int32Array(0), maskTypes: new Uint8Array(0) }, remoteArea: 0 }));
  const e4 = checkPlan(unread);
  assert.ok(!e4.ok && e4.errors.some((e) => /no slice reads/.test(e)), e4.errors.join('\n'));

  const badDispatch: DistAttnPlan = { ...plan, dispatch: { ...plan.dispatch, unpermIdxs: plan.dispatch.unpermIdxs.map((x, i) => (i === 0 ? x + 1 : x)) } };
  assert.ok(!checkPlan(badDispatch).ok);
});

test('every rank receives exactly the remote keys its rows read (zero redundancy), never its own', () => {
  const n = 8192;
  const plan = planDistAttn({ mask: causalMask(n), totalSeqlenQ: n, cpSize: 4 });
  for (const r of plan.perRank) {
    // Causal: a rank needs every key before its last row, except its own.
    const host = r.hostGlobalRanges;
    const lastRow = host[host.length - 1];
    let own = 0;
    for (let i = 0; i < host.length; i += 2) own += host[i + 1] - host[i];
    const recv = r.stages.reduce((a, s) => a + s.stageBufferLength, 0);
    assert.equal(recv, lastRow - own, `rank ${r.rank}`);
  }
});
