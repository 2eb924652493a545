import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { MaskError } from '../src/errors.js';
import { type AttnMaskType } from '../src/mask/mask-type.js';
import { isCellUnmasked } from '../src/mask/geometry.js';
import { makeSliceList, sliceAt, sliceListArea, sliceListToJSON, type SliceList } from '../src/mask/slice-list.js';
import {
  blockCausalMask,
  causalMask,
  cuSeqlensFromLengths,
  fullMask,
  inferMaskFromCuSeqlens,
  inferMaskFromSlidingWindow,
  sampleDocLengths,
  slidingWindowMask,
  varlenCausalMask,
  varlenFullMask,
} from '../src/mask/helpers.js';
import { denseMaskCounts, renderMask } from '../src/mask/dense.js';
import { assertDisjointSlices, findSharedCell } from '../src/mask/disjoint.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { repoFile } from './util/paths.js';

const json = sliceListToJSON;

/** Dense 0/1 picture from a per-cell predicate, in the same format as denseMaskCounts. */
function denseFrom(totalQ: number, totalK: number, visible: (q: number, k: number) => boolean): Uint8Array {
  const out = new Uint8Array(totalQ * totalK);
  for (let q = 0; q < totalQ; q++) for (let k = 0; k < totalK; k++) out[q * totalK + k] = visible(q, k) ? 1 : 0;
  return out;
}

function firstDifference(a: Uint8Array, b: Uint8Array, totalK: number): string {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `cell (${Math.floor(i / totalK)}, ${i % totalK}): got ${a[i]}, want ${b[i]}`;
  return 'none';
}

/** The sliding-window rule, row by row, as the reference documents it. */
function slidingWindowVisible(q: number, k: number, qs: number, qe: number, ks: number, ke: number, wl: number, wr: number): boolean {
  const lq = qe - qs;
  const lk = ke - ks;
  if (q < qe - Math.min(lq, lk) || q >= qe || k < ks || k >= ke) return false;
  const diag = q + (ke - qe);
  const leftOk = wl === -1 || wl >= lk - 1 || k >= diag - wl;
  const rightOk = wr === -1 || wr >= lk - 1 || k <= diag + wr;
  return leftOk && rightOk;
}

// ---- sliding window ----

test('sliding window 8x8 (-1, 0) is one CAUSAL slice', () => {
  assert.deepEqual(json(inferMaskFromSlidingWindow([0, 8], [0, 8], [-1, 0])), [[[0, 8], [0, 8], 'causal']]);
});

test('sliding window 8x8 (2, 3) is CAUSAL [0,2)x[0,5), BICAUSAL [2,5)x[0,8), INVCAUSAL [5,8)x[3,8)', () => {
  assert.deepEqual(json(inferMaskFromSlidingWindow([0, 8], [0, 8], [2, 3])), [
    [[0, 2], [0, 5], 'causal'],
    [[2, 5], [0, 8], 'bi_causal'],
    [[5, 8], [3, 8], 'inv_causal'],
  ]);
});

test('sliding window 8x8 (7, 7) is FULL, and (0, 0) is the BICAUSAL diagonal', () => {
  assert.deepEqual(json(inferMaskFromSlidingWindow([0, 8], [0, 8], [7, 7])), [[[0, 8], [0, 8], 'full']]);
  assert.deepEqual(json(inferMaskFromSlidingWindow([0, 8], [0, 8], [0, 0])), [[[0, 8], [0, 8], 'bi_causal']]);
  assert.deepEqual(json(inferMaskFromSlidingWindow([0, 8], [0, 8], [-1, -1])), [[[0, 8], [0, 8], 'full']]);
});

test('sliding window with Lq > Lk drops the first Lq - Lk rows even when the right window would reach keys', () => {
  const slices = inferMaskFromSlidingWindow([0, 6], [0, 3], [1, 2]);
  const counts = denseMaskCounts(slices, 6, 3);
  for (let q = 0; q < 3; q++) assert.deepEqual([...counts.subarray(q * 3, q * 3 + 3)], [0, 0, 0], `row ${q}`);
  assert.ok(counts.subarray(9).some((c) => c > 0));
});

test('sliding window matches the per-row rule on random shapes and windows (bottom-right aligned, w = -1 or >= Lk-1 unbounded)', () => {
  const seed = freshSeed();
  const rng = new Rng(seed);
  for (let trial = 0; trial < 3000; trial++) {
    const qs = rng.int(0, 4);
    const ks = rng.int(0, 4);
    const qe = qs + rng.int(0, 14);
    const ke = ks + rng.int(0, 14);
    const wl = rng.int(-1, 16);
    const wr = rng.int(-1, 16);
    const msg = `seed ${seed}, trial ${trial}: q [${qs}, ${qe}) k [${ks}, ${ke}) window [${wl}, ${wr}]`;
    const slices = inferMaskFromSlidingWindow([qs, qe], [ks, ke], [wl, wr]);
    const got = denseMaskCounts(slices, qe, ke);
    const want = denseFrom(qe, ke, (q, k) => slidingWindowVisible(q, k, qs, qe, ks, ke, wl, wr));
    assert.equal(firstDifference(got, want, ke), 'none', msg);
    // Shape: at most three slices, rows in order and apart, types CAUSAL < FULL|BICAUSAL < INVCAUSAL.
    assert.ok(slices.maskTypes.length <= 3, msg);
    const rank: Record<AttnMaskType, number> = { causal: 0, full: 1, bi_causal: 1, inv_causal: 2 };
    for (let b = 1; b < slices.maskTypes.length; b++) {
      const prev = sliceAt(slices, b - 1);
      const cur = sliceAt(slices, b);
      assert.ok(prev.qRange[1] <= cur.qRange[0], msg);
      assert.ok(rank[prev.type] < rank[cur.type], msg);
    }
    for (let b = 0; b < slices.maskTypes.length; b++) {
      const s = sliceAt(slices, b);
      assert.ok(s.qRange[0] < s.qRange[1] && s.kRange[0] < s.kRange[1], `${msg}: empty slice ${b}`);
      assert.ok(s.kRange[0] >= ks && s.kRange[1] <= ke && s.qRange[0] >= qs && s.qRange[1] <= qe, `${msg}: slice ${b} outside`);
    }
  }
});

test('sliding window rejects bad window sizes with a MaskError', () => {
  assert.throws(() => inferMaskFromSlidingWindow([0, 4], [0, 4], [-2, 0]), MaskError);
  assert.throws(() => inferMaskFromSlidingWindow([0, 4], [0, 4], [1.5, 0]), MaskError);
  assert.throws(() => inferMaskFromSlidingWindow([0, 4], [0, 4], [1, 2, 3] as unknown as [number, number]), MaskError);
  assert.throws(() => inferMaskFromSlidingWindow([4, 0], [0, 4], [1, 1]), /qRange/);
});

// ---- cu_seqlens ----

test('cu_seqlens without a window gives one FULL or CAUSAL slice per sample, and the totals', () => {
  const full = inferMaskFromCuSeqlens([0, 3, 7], [0, 5, 6]);
  assert.deepEqual(json(full.slices), [
    [[0, 3], [0, 5], 'full'],
    [[3, 7], [5, 6], 'full'],
  ]);
  assert.equal(full.totalQ, 7);
  assert.equal(full.totalK, 6);
  assert.deepEqual(json(inferMaskFromCuSeqlens([0, 3, 7], [0, 3, 7], { causal: true }).slices), [
    [[0, 3], [0, 3], 'causal'],
    [[3, 7], [3, 7], 'causal'],
  ]);
});

test('cu_seqlens samples with no queries or no keys get no slice', () => {
  assert.deepEqual(json(inferMaskFromCuSeqlens([0, 3, 3, 5], [0, 2, 4, 4]).slices), [[[0, 3], [0, 2], 'full']]);
  const none = inferMaskFromCuSeqlens([0], [0]);
  assert.equal(none.slices.maskTypes.length, 0);
  assert.equal(none.totalQ, 0);
});

test('cu_seqlens with a window applies the sliding-window rule per sample, bottom-right aligned (cross-attention too)', () => {
  const cuQ = [0, 4, 10, 13];
  const cuK = [0, 6, 9, 17];
  const { slices } = inferMaskFromCuSeqlens(cuQ, cuK, { windowSize: [2, 1] });
  const want = denseFrom(13, 17, (q, k) => {
    for (let b = 0; b < 3; b++) {
      if (q >= cuQ[b] && q < cuQ[b + 1]) return slidingWindowVisible(q, k, cuQ[b], cuQ[b + 1], cuK[b], cuK[b + 1], 2, 1);
    }
    return false;
  });
  assert.equal(firstDifference(denseMaskCounts(slices, 13, 17), want, 17), 'none');
});

test('global window: every row sees the first G keys of its sample up to its right window, the rest by the sliding window', () => {
  const seed = freshSeed();
  const rng = new Rng(seed);
  for (let trial = 0; trial < 600; trial++) {
    const lengths = Array.from({ length: rng.int(1, 3) }, () => rng.int(0, 14));
    const cu = cuSeqlensFromLengths(lengths);
    const total = cu[cu.length - 1];
    const wl = rng.int(-1, 15);
    const wr = rng.pick([-1, 0, 0, 1, 2, 3, 5, 9, 14]);
    const g = rng.int(0, 16);
    if (wl === -1 && wr === -1) continue;
    const msg = `seed ${seed}, trial ${trial}: cu ${JSON.stringify(cu)} window [${wl}, ${wr}] global ${g}`;
    const { slices } = inferMaskFromCuSeqlens(cu, cu, { windowSize: [wl, wr], globalWindowSize: g });
    const want = denseFrom(total, total, (q, k) => {
      for (let b = 0; b + 1 < cu.length; b++) {
        const s = cu[b];
        const e = cu[b + 1];
        if (q < s || q >= e) continue;
        if (k < s || k >= e) return false;
        const i = q - s;
        const j = k - s;
        const rightOk = wr === -1 || j <= i + wr;
        const leftOk = j < Math.min(g, e - s) || wl === -1 || j >= i - wl;
        return rightOk && leftOk;
      }
      return false;
    });
    assert.equal(firstDifference(denseMaskCounts(slices, total, total), want, total), 'none', msg);
    assert.equal(findSharedCell(slices), null, msg);
    assert.ok(slices.maskTypes.length <= 5 * lengths.length, msg);
  }
});

test('global window [2, 0] with G = 2 is the attention-sink picture: two sink keys plus a causal band of three', () => {
  const { slices } = inferMaskFromCuSeqlens([0, 6], [0, 6], { windowSize: [2, 0], globalWindowSize: 2 });
  assert.equal(renderMask(slices, 6, 6), ['*.....', '**....', '***...', '****..', '*****.', '**.***'].join('\n'));
});

test('cu_seqlens options are checked: causal with a window, global window on cross-attention, bad values', () => {
  assert.throws(() => inferMaskFromCuSeqlens([0, 4], [0, 4], { causal: true, windowSize: [2, 0] }), (e: unknown) => e instanceof MaskError && e.argument === 'causal');
  assert.throws(
    () => inferMaskFromCuSeqlens([0, 4], [0, 5], { windowSize: [2, 0], globalWindowSize: 1 }),
    (e: unknown) => e instanceof MaskError && e.argument === 'globalWindowSize',
  );
  assert.throws(() => inferMaskFromCuSeqlens([0, 4], [0, 4], { windowSize: [2, 0], globalWindowSize: -1 }), MaskError);
  assert.throws(() => inferMaskFromCuSeqlens([0, 4], [0, 4], { windowSize: [-3, 0] }), MaskError);
  // Without a window the global window is ignored, as in the reference, so cross-attention is fine.
  assert.equal(inferMaskFromCuSeqlens([0, 4], [0, 5], { globalWindowSize: 3 }).slices.maskTypes.length, 1);
});

test('cu_seqlens are validated: start at 0, non-decreasing, integers, same sample count for q and k, not empty', () => {
  const isMaskError = (argument: string, rule: RegExp) => (e: unknown) => e instanceof MaskError && e.argument === argument && rule.test(e.message);
  assert.throws(() => inferMaskFromCuSeqlens([1, 4], [0, 4]), isMaskError('cuSeqlensQ', /start at 0/));
  assert.throws(() => inferMaskFromCuSeqlens([0, 4], [0, 5, 3]), isMaskError('cuSeqlensK', /non-decreasing/));
  assert.throws(() => inferMaskFromCuSeqlens([0, 4.5], [0, 4]), isMaskError('cuSeqlensQ[1]', /integers/));
  assert.throws(() => inferMaskFromCuSeqlens([0, 4, 8], [0, 4]), isMaskError('cuSeqlensK', /as many samples/));
  assert.throws(() => inferMaskFromCuSeqlens([], []), isMaskError('cuSeqlensQ', /leading 0/));
  assert.throws(() => varlenFullMask([0, -2]), MaskError);
  assert.throws(() => fullMask(-1), MaskError);
  assert.throws(() => slidingWindowMask(2.5, [1, 1]), MaskError);
});

// ---- convenience masks ----

test('fullMask, causalMask, varlenFullMask and varlenCausalMask', () => {
  assert.deepEqual(json(fullMask(5)), [[[0, 5], [0, 5], 'full']]);
  assert.deepEqual(json(causalMask(5)), [[[0, 5], [0, 5], 'causal']]);
  assert.equal(fullMask(0).maskTypes.length, 0);
  assert.deepEqual(json(varlenFullMask([0, 2, 5])), [
    [[0, 2], [0, 2], 'full'],
    [[2, 5], [2, 5], 'full'],
  ]);
  assert.deepEqual(json(varlenCausalMask(Int32Array.from([0, 2, 5]))), [
    [[0, 2], [0, 2], 'causal'],
    [[2, 5], [2, 5], 'causal'],
  ]);
  assert.equal(renderMask(causalMask(3), 3, 3), '*..\n**.\n***');
});

test('slidingWindowMask takes a total or cu_seqlens', () => {
  assert.deepEqual(json(slidingWindowMask(8, [2, 3])), json(inferMaskFromSlidingWindow([0, 8], [0, 8], [2, 3])));
  const varlen = slidingWindowMask([0, 4, 9], [1, 0]);
  assert.equal(renderMask(varlen, 9, 9), ['*........', '**.......', '.**......', '..**.....', '....*....', '....**...', '.....**..', '......**.', '.......**'].join('\n'));
});

test('block-causal: query block i of a document sees keys of blocks 0..i of the same document', () => {
  assert.deepEqual(json(blockCausalMask([0, 5, 12], 3)), [
    [[0, 3], [0, 3], 'full'],
    [[3, 5], [0, 5], 'full'],
    [[5, 8], [5, 8], 'full'],
    [[8, 11], [5, 11], 'full'],
    [[11, 12], [5, 12], 'full'],
  ]);
  const cu = [0, 7, 8, 20];
  const want = denseFrom(20, 20, (q, k) => {
    const doc = cu.findIndex((c, b) => q >= c && q < cu[b + 1]);
    if (k < cu[doc] || k >= cu[doc + 1]) return false;
    return Math.floor((k - cu[doc]) / 4) <= Math.floor((q - cu[doc]) / 4);
  });
  assert.equal(firstDifference(denseMaskCounts(blockCausalMask(cu, 4), 20, 20), want, 20), 'none');
  assert.deepEqual(json(blockCausalMask(6, 4)), [
    [[0, 4], [0, 4], 'full'],
    [[4, 6], [0, 6], 'full'],
  ]);
  assert.throws(() => blockCausalMask(6, 0), (e: unknown) => e instanceof MaskError && e.argument === 'blockSize');
});

test('every helper output is disjoint (no cell covered twice)', () => {
  const seed = freshSeed();
  const rng = new Rng(seed);
  for (let trial = 0; trial < 100; trial++) {
    const lengths = Array.from({ length: rng.int(1, 5) }, () => rng.int(0, 20));
    const cu = cuSeqlensFromLengths(lengths);
    const total = cu[cu.length - 1];
    const masks: SliceList[] = [
      varlenFullMask(cu),
      varlenCausalMask(cu),
      slidingWindowMask(cu, [rng.int(-1, 20), rng.int(-1, 20)]),
      blockCausalMask(cu, rng.int(1, 8)),
      inferMaskFromCuSeqlens(cu, cu, { windowSize: [rng.int(0, 10), rng.int(-1, 10)], globalWindowSize: rng.int(0, 6) }).slices,
    ];
    for (const slices of masks) {
      const msg = `seed ${seed}, trial ${trial}, ${JSON.stringify(json(slices))}`;
      assert.equal(findSharedCell(slices), null, msg);
      assert.ok(denseMaskCounts(slices, total, total).every((c) => c <= 1), msg);
      assert.doesNotThrow(() => assertDisjointSlices(slices));
    }
  }
});

// ---- dense views ----

test('denseMaskCounts counts every slice covering a cell; renderMask shows repeats as digits', () => {
  const slices = makeSliceList([[0, 3], [1, 3]], [[0, 3], [0, 2]], ['causal', 'full']);
  assert.deepEqual([...denseMaskCounts(slices, 3, 3)], [1, 0, 0, 2, 2, 0, 2, 2, 1]);
  assert.equal(renderMask(slices, 3, 4), '*...\n22..\n22*.');
  assert.equal(renderMask(makeSliceList([], [], []), 2, 2), '..\n..');
  assert.throws(() => denseMaskCounts(slices, 2, 3), /query tokens/);
  assert.throws(() => denseMaskCounts(slices, 3, -1), MaskError);
});

test('denseMaskCounts agrees with the per-cell rule of every slice on random slice lists', () => {
  const seed = freshSeed();
  const rng = new Rng(seed);
  for (let trial = 0; trial < 200; trial++) {
    const slices = randomSlices(rng, rng.int(0, 5), 16);
    const got = denseMaskCounts(slices, 16, 16);
    const want = bruteCounts(slices, 16, 16);
    assert.equal(firstDifference(got, want, 16), 'none', `seed ${seed}, trial ${trial}`);
  }
});

// ---- findSharedCell ----

const TYPES: AttnMaskType[] = ['full', 'causal', 'inv_causal', 'bi_causal'];

function randomSlices(rng: Rng, n: number, span: number): SliceList {
  const q: Array<[number, number]> = [];
  const k: Array<[number, number]> = [];
  const types: AttnMaskType[] = [];
  for (let b = 0; b < n; b++) {
    const qs = rng.int(0, span - 1);
    const ks = rng.int(0, span - 1);
    q.push([qs, rng.int(qs, span)]);
    k.push([ks, rng.int(ks, span)]);
    types.push(rng.pick(TYPES));
  }
  return makeSliceList(q, k, types);
}

function covers(slices: SliceList, b: number, q: number, k: number): boolean {
  const s = sliceAt(slices, b);
  return isCellUnmasked(s.type, q - s.qRange[0], k - s.kRange[0], s.qRange[1] - s.qRange[0], s.kRange[1] - s.kRange[0]);
}

function bruteCounts(slices: SliceList, totalQ: number, totalK: number): Uint8Array {
  const out = new Uint8Array(totalQ * totalK);
  for (let b = 0; b < slices.maskTypes.length; b++) {
    for (let q = 0; q < totalQ; q++) for (let k = 0; k < totalK; k++) if (covers(slices, b, q, k)) out[q * totalK + k]++;
  }
  return out;
}

test('findSharedCell finds a shared cell exactly when one exists, for random pairs of slices of every type', () => {
  const seed = freshSeed();
  const rng = new Rng(seed);
  let sharedSeen = 0;
  for (let trial = 0; trial < 20000; trial++) {
    const slices = randomSlices(rng, 2, 14);
    const bruteShared = bruteCounts(slices, 14, 14).some((c) => c >= 2);
    const found = findSharedCell(slices);
    const msg = `seed ${seed}, trial ${trial}: ${JSON.stringify(json(slices))}`;
    assert.equal(found !== null, bruteShared, msg);
    if (found !== null) {
      sharedSeen++;
      assert.deepEqual([found.a, found.b], [0, 1], msg);
      assert.ok(covers(slices, 0, found.q, found.k) && covers(slices, 1, found.q, found.k), `${msg}: reported (${found.q}, ${found.k})`);
    }
  }
  assert.ok(sharedSeen > 1000 && sharedSeen < 19000, `seed ${seed}: the random pairs should mix both outcomes (${sharedSeen} shared)`);
});

test('findSharedCell on random slice lists: null iff disjoint, else a real shared cell of the two named slices', () => {
  const seed = freshSeed();
  const rng = new Rng(seed);
  for (let trial = 0; trial < 2000; trial++) {
    const slices = randomSlices(rng, rng.int(0, 6), 20);
    const msg = `seed ${seed}, trial ${trial}: ${JSON.stringify(json(slices))}`;
    const found = findSharedCell(slices);
    assert.equal(found !== null, bruteCounts(slices, 20, 20).some((c) => c >= 2), msg);
    if (found !== null) {
      assert.ok(found.a < found.b, msg);
      assert.ok(covers(slices, found.a, found.q, found.k) && covers(slices, found.b, found.q, found.k), msg);
    }
  }
});

test('assertDisjointSlices names both slices and the shared cell', () => {
  const slices = makeSliceList([[0, 4], [2, 6]], [[0, 4], [3, 5]], ['causal', 'full']);
  assert.throws(
    () => assertDisjointSlices(slices, 'mask'),
    (e: unknown) => e instanceof MaskError && e.argument === 'mask' && /slice 0 \[0, 4\) x \[0, 4\) causal/.test(e.message) && /slice 1 \[2, 6\) x \[3, 5\) full/.test(e.message) && /q = 3, k = 3/.test(e.message),
  );
});

test('findSharedCell pairs only slices whose query rows overlap, and finds the one conflict among thousands', () => {
  const n = 3000;
  const q = Array.from({ length: n }, () => [0, 1000] as [number, number]);
  const k = Array.from({ length: n }, (_, i) => [3 * i, 3 * i + 3] as [number, number]);
  const disjoint = makeSliceList(q, k, 'full');
  assert.equal(findSharedCell(disjoint), null);
  // 2000 documents of 50-56 tokens in blocks of 8: each slice meets only the few of its document.
  const stats = { pairsTested: 0 };
  const video = blockCausalMask(cuSeqlensFromLengths(Array.from({ length: 2000 }, (_, i) => 50 + (i % 7))), 8);
  assert.equal(findSharedCell(video, stats), null);
  const slices = video.maskTypes.length;
  assert.ok(stats.pairsTested <= 4 * slices, `${stats.pairsTested} pairs tested for ${slices} slices (all pairs: ${(slices * (slices - 1)) / 2})`);
  k[n - 1] = [5, 6];
  assert.deepEqual(findSharedCell(makeSliceList(q, k, 'full')), { a: 1, b: n - 1, q: 0, k: 5 });
});

// ---- document lengths ----

test('sampleDocLengths sums to the total, is replayable from the seed, and keeps documents at most a quarter of the total', () => {
  const seed = freshSeed();
  for (const total of [1, 3, 4, 100, 4096, 65536, 1 << 20]) {
    const a = sampleDocLengths(total, new Rng(seed));
    const b = sampleDocLengths(total, new Rng(seed));
    const msg = `seed ${seed}, total ${total}`;
    assert.deepEqual(a, b, msg);
    assert.equal(a.reduce((s, l) => s + l, 0), total, msg);
    assert.ok(a.every((l) => Number.isInteger(l) && l > 0), msg);
    if (total >= 4) assert.ok(Math.max(...a) <= Math.floor(total / 4), msg);
  }
});

test('sampleDocLengths at 64K tokens packs as many documents per pack as the reference benchmark, within sampling error', () => {
  // The reference's figure is itself an estimate from 20 packs (the fixture), so the comparison
  // allows 3 combined standard errors of the two means (reference: 20 packs, ours: 200).
  const fixture = JSON.parse(readFileSync(repoFile('test/fixtures/varlen_packs_seed42.json'), 'utf8')) as Record<string, { packs: number[][] }>;
  const stats = (xs: number[]) => {
    const m = xs.reduce((s, x) => s + x, 0) / xs.length;
    return { mean: m, variance: xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1), n: xs.length };
  };
  const ref = stats(fixture['65536'].packs.map((p) => p.length));
  const seed = freshSeed();
  const rng = new Rng(seed);
  const ours = stats(Array.from({ length: 200 }, () => sampleDocLengths(65536, rng).length));
  const se = Math.sqrt(ref.variance / ref.n + ours.variance / ours.n);
  assert.ok(Math.abs(ours.mean - ref.mean) < 3 * se, `seed ${seed}: mean ${ours.mean} vs reference ${ref.mean} (3 standard errors = ${(3 * se).toFixed(2)})`);
  const pack = sampleDocLengths(65536, new Rng(seed));
  // Bin midpoints, plus 8192 = 24576 mod 16384, the remainder of the 24576 bin cut into 16K pieces.
  const midpoints = new Set([5, 30, 75, 150, 350, 762, 1536, 3072, 6144, 8192, 12288, 16384]);
  // Only the first (carried-over) and last (cut) documents may be off the bin midpoints.
  assert.ok(pack.slice(1, -1).every((l) => midpoints.has(l)), `seed ${seed}: ${pack}`);
});

test('cuSeqlensFromLengths prefix-sums lengths (empty documents allowed) and rejects negative or fractional lengths', () => {
  assert.deepEqual(cuSeqlensFromLengths([3, 0, 2]), [0, 3, 3, 5]);
  assert.deepEqual(cuSeqlensFromLengths([]), [0]);
  assert.throws(() => cuSeqlensFromLengths([2, -1]), (e: unknown) => e instanceof MaskError && e.argument === 'lengths[1]');
  assert.throws(() => cuSeqlensFromLengths([1.5]), MaskError);
  assert.throws(() => sampleDocLengths(0, new Rng(1)), MaskError);
  assert.throws(() => sampleDocLengths(10, new Rng(1), { chunkRatio: 0 }), MaskError);
});

test('helper areas match their dense counts (sliceListArea counts each slice once)', () => {
  const cu = [0, 9, 30, 31];
  for (const slices of [slidingWindowMask(cu, [3, 2]), blockCausalMask(cu, 4), varlenCausalMask(cu)]) {
    assert.equal(sliceListArea(slices), denseMaskCounts(slices, 31, 31).reduce((s, c) => s + c, 0));
  }
});
