/**
 * splitLongItems (the CUDA backward's default work list with the long items of full and causal
 * slices cut into pieces; no GPU needed): the pieces cover each item's (k tile, q rows) exactly
 * once, none crosses a multiple of the piece rows, the list stays most-q-tiles-first, q chunk
 * next, and the default rule cuts exactly the items of full and causal slices longer than their
 * thresholds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cutEveryItem, DEFAULT_Q_RANGE_CUT, planFfaBackward, splitLongItems, type FfaBackwardPlan, type QRangeCut } from '../src/kernels/cuda/ffa-backward.js';
import { InvalidArgumentError } from '../src/errors.js';
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
      const cut = splitLongItems(plan, slices, cutEveryItem(cap), step);
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
    assert.equal(splitLongItems(plan, slices, cutEveryItem(8192), step), plan);
  });
}

test('splitLongItems: piece rows that are not a positive multiple of 128 (and of the step rows) are refused', () => {
  const slices = fullMask(1000);
  const plan = planFfaBackward(slices, 1000, 1000, 128, 64);
  for (const bad of [0, -128, 100, 64, 64.5, Number.NaN]) {
    assert.throws(() => splitLongItems(plan, slices, cutEveryItem(bad), 64), InvalidArgumentError, String(bad));
  }
  assert.throws(() => splitLongItems(plan, slices, cutEveryItem(128), 256), InvalidArgumentError);
  for (const cut of [{ full: { longerThan: -1, pieceRows: 128 } }, { causal: { longerThan: Number.NaN, pieceRows: 128 } }, { diagonal: { longerThan: 0, pieceRows: 128 } }, { full: 128 }]) {
    assert.throws(() => splitLongItems(plan, slices, cut as unknown as QRangeCut, 64), InvalidArgumentError, JSON.stringify(cut));
  }
});

test('splitLongItems with the default rule: items of full slices longer than 16,384 rows are cut, causal items of 1,024 rows stay whole', () => {
  assert.deepEqual(DEFAULT_Q_RANGE_CUT, { full: { longerThan: 16384, pieceRows: 2048 }, causal: { longerThan: 1024, pieceRows: 1024 } });
  const { longerThan, pieceRows } = DEFAULT_Q_RANGE_CUT.full!;
  const step = 64;
  const count = (slices: ReturnType<typeof fullMask>, tokens: number): [number, number] => {
    const plan = planFfaBackward(slices, tokens, tokens, 128, step);
    return [plan.numWork, splitLongItems(plan, slices, DEFAULT_Q_RANGE_CUT, step).numWork];
  };
  // a full slice of exactly the threshold: not cut; one tile longer: every item cut
  assert.deepEqual(count(fullMask(longerThan), longerThan), [longerThan / 128, longerThan / 128]);
  const long = longerThan + 128;
  assert.deepEqual(count(fullMask(long), long), [long / 128, (long / 128) * Math.ceil(long / pieceRows)]);
  // a long full document beside a causal one of 1,024 rows: only the full one's items are cut
  const mixed = makeSliceList([[0, long], [long, long + 1024]], [[0, long], [long, long + 1024]], ['full', 'causal']);
  const plan = planFfaBackward(mixed, long + 1024, long + 1024, 128, step);
  const cut = splitLongItems(plan, mixed, DEFAULT_Q_RANGE_CUT, step);
  let fullPieces = 0;
  let causalPieces = 0;
  for (let i = 0; i < cut.numWork; i++) {
    if (cut.work[4 * i] === 0) fullPieces++;
    else causalPieces++;
  }
  assert.equal(fullPieces, (long / 128) * Math.ceil(long / pieceRows));
  assert.equal(causalPieces, 1024 / 128);
});

test('splitLongItems with the default rule: items of causal slices longer than 1,024 rows are cut, bi-causal ones stay whole', () => {
  const step = 64;
  const { longerThan: limit, pieceRows } = DEFAULT_Q_RANGE_CUT.causal!;
  // causal 4k: the item of k tile i has q rows [128 i, 4096); longer than 1,024 rows for i < 24,
  // which then span 4 - floor(128 i / 1024) pieces; the other 8 items stay whole
  const slices = causalMask(4096);
  const plan = planFfaBackward(slices, 4096, 4096, 128, step);
  const cut = splitLongItems(plan, slices, DEFAULT_Q_RANGE_CUT, step);
  let expected = 8;
  for (let i = 0; i < 24; i++) expected += 4 - Math.floor((128 * i) / pieceRows);
  assert.equal(cut.numWork, expected);
  assert.deepEqual(coverage(cut), coverage(plan));
  for (let i = 0; i < cut.numWork; i++) {
    const [, n0, lo, hi] = cut.work.subarray(4 * i, 4 * i + 4);
    if (4096 - n0 > limit) assert.ok(Math.floor(lo / pieceRows) === Math.floor((hi - 1) / pieceRows), `piece [${lo}, ${hi}) of a long item inside one ${pieceRows}-row chunk`);
    else assert.deepEqual([lo, hi], [n0, 4096], 'short items whole');
  }
  // documents of at most 1,024 tokens (the sliding window's causal head is one), and a bi-causal
  // slice however long: nothing cut
  const docs = varlenCausalMask([0, 1024, 2048, 2560]);
  const docsPlan = planFfaBackward(docs, 2560, 2560, 128, step);
  assert.equal(splitLongItems(docsPlan, docs, DEFAULT_Q_RANGE_CUT, step), docsPlan);
  const band = makeSliceList([[0, 20000]], [[0, 20000]], ['bi_causal']);
  const bandPlan = planFfaBackward(band, 20000, 20000, 128, step);
  assert.equal(splitLongItems(bandPlan, band, DEFAULT_Q_RANGE_CUT, step), bandPlan);
});

test('splitLongItems: each slice type cut at its own piece rows (full at 2,048 beside causal at 1,024)', () => {
  const step = 64;
  const mixed = makeSliceList([[0, 6144], [6144, 9216]], [[0, 6144], [6144, 9216]], ['full', 'causal']);
  const plan = planFfaBackward(mixed, 9216, 9216, 128, step);
  const cut = splitLongItems(plan, mixed, { full: { longerThan: 0, pieceRows: 2048 }, causal: { longerThan: 0, pieceRows: 1024 } }, step);
  assert.deepEqual(coverage(cut), coverage(plan));
  const longest = { 0: 0, 1: 0 } as Record<number, number>;
  for (let i = 0; i < cut.numWork; i++) {
    const [b, , lo, hi] = cut.work.subarray(4 * i, 4 * i + 4);
    const P = b === 0 ? 2048 : 1024;
    assert.equal(Math.floor(lo / P), Math.floor((hi - 1) / P), `slice ${b}: piece [${lo}, ${hi}) crosses a multiple of ${P}`);
    longest[b] = Math.max(longest[b]!, hi - lo);
  }
  assert.deepEqual(longest, { 0: 2048, 1: 1024 }, 'full pieces reach 2,048 rows, causal ones 1,024');
});
