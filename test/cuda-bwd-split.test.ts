/**
 * splitLongItems (the CUDA backward's default work list with q ranges cut at multiples of
 * maxQRows; no GPU needed): the pieces cover each item's (k tile, q rows) exactly once, none
 * crosses a multiple of maxQRows, and the list stays most-q-tiles-first, q chunk next.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planFfaBackward, splitLongItems, type FfaBackwardPlan } from '../src/kernels/cuda/ffa-backward.js';
import { causalMask, fullMask, makeSliceList, varlenCausalMask, type SliceList } from '../src/mask/index.js';

/** Every (slice, n0, q row) the list covers, with multiplicity. */
function coverage(plan: FfaBackwardPlan): Map<string, number> {
  const seen = new Map<string, number>();
  for (let i = 0; i < plan.numWork; i++) {
    const [b, n0, lo, hi] = plan.work.subarray(4 * i, 4 * i + 4);
    for (let q = lo; q < hi; q++) {
      const key = `${b}:${n0}:${q}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
  }
  return seen;
}

const cases: Array<[string, SliceList, number]> = [
  ['full 5000', fullMask(5000), 5000],
  ['causal 4500', causalMask(4500), 4500],
  ['varlen causal', varlenCausalMask([0, 700, 3100, 3200, 6000]), 6000],
  ['overlapping slices', makeSliceList([[0, 3000], [1000, 5000], [200, 900]], [[0, 4000], [500, 2500], [100, 3000]], ['full', 'causal', 'bi_causal']), 5000],
];

for (const [name, slices, tokens] of cases) {
  test(`splitLongItems, ${name}: exact cover, no piece across a multiple of maxQRows, longest first then q chunk`, () => {
    const step = 64;
    const plan = planFfaBackward(slices, tokens, tokens, 128, step);
    for (const cap of [128, 1024, 1536]) {
      const cut = splitLongItems(plan, cap, step);
      assert.deepEqual(coverage(cut), coverage(plan), `cap ${cap}: pieces cover the plan's rows exactly once`);
      let tiles = 0;
      for (let i = 0; i < cut.numWork; i++) {
        const [, , lo, hi] = cut.work.subarray(4 * i, 4 * i + 4);
        assert.ok(hi > lo, `cap ${cap}: piece ${i} is empty`);
        assert.equal(Math.floor(lo / cap), Math.floor((hi - 1) / cap), `cap ${cap}: piece ${i} [${lo}, ${hi}) crosses a multiple of ${cap}`);
        tiles += Math.ceil((hi - lo) / step);
        if (i > 0) {
          const [, , plo, phi] = cut.work.subarray(4 * i - 4, 4 * i);
          const prev = Math.ceil((phi - plo) / step);
          const cur = Math.ceil((hi - lo) / step);
          assert.ok(prev > cur || (prev === cur && Math.floor(plo / cap) <= Math.floor(lo / cap)), `cap ${cap}: piece ${i} out of order`);
        }
      }
      assert.equal(cut.qTiles, tiles);
      assert.ok(cut.numWork >= plan.numWork);
    }
    // a cap above every range leaves the plan as it is
    assert.equal(splitLongItems(plan, 8192, step), plan);
  });
}

test('splitLongItems: a cap that is not a positive multiple of the step rows is refused', () => {
  const plan = planFfaBackward(fullMask(1000), 1000, 1000, 128, 64);
  for (const bad of [0, -128, 100, 64.5, Number.NaN]) assert.throws(() => splitLongItems(plan, bad, 64), RangeError, String(bad));
});
