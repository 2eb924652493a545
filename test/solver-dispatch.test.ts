import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSliceList } from '../src/mask/slice-list.js';
import { causalMask, cuSeqlensFromLengths, sampleDocLengths, varlenCausalMask } from '../src/mask/helpers.js';
import { lptAssign, minHeapDispatch, sequentialDispatch, contiguousRunsDispatch, positionIds } from '../src/solver/chunk-assignment.js';
import { planDistAttn } from '../src/solver/solve.js';
import { planStats } from '../src/solver/plan.js';
import type { DispatchAlg } from '../src/solver/config.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { randomCuSeqlens, readVarlenPacks } from './util/solver-masks.js';

const parts = (p: readonly Int32Array[]): number[][] => p.map((x) => Array.from(x));

/** Reference 02 §7.2: doc A = [0, 1536), doc B = [1536, 4096), blocks of 512, block-causal FULL slices. */
function blockCausal72() {
  const q: Array<[number, number]> = [];
  const k: Array<[number, number]> = [];
  for (let b = 0; b < 8; b++) {
    q.push([512 * b, 512 * b + 512]);
    k.push([b < 3 ? 0 : 1536, 512 * b + 512]);
  }
  return makeSliceList(q, k, 'full');
}

test('min-heap on causal S=4096, chunk 512, cp 2 gives the zig-zag of reference 02 §7.1', () => {
  const plan = planDistAttn({ mask: causalMask(4096), totalSeqlenQ: 4096, cpSize: 2, dispatchConfig: { minChunksPerRank: 4 } });
  const d = plan.dispatch;
  assert.deepEqual(parts(d.partitions), [[0, 3, 4, 7], [1, 2, 5, 6]]);
  assert.deepEqual(Array.from(d.permIdxs), [0, 3, 4, 7, 1, 2, 5, 6]);
  assert.deepEqual(Array.from(d.unpermIdxs), [0, 4, 5, 1, 2, 6, 7, 3]);
  assert.deepEqual(Array.from(d.areaPerRank), [4195328, 4195328]);
  assert.deepEqual(parts(d.hostGlobalRangesPerRank), [[0, 512, 1536, 2560, 3584, 4096], [512, 1536, 2560, 3584]]);
});

test('every dispatch algorithm reproduces the reference table of 02 §7.2 (partitions, areas, recv tokens)', () => {
  const unit = 131072;
  const cases: Array<[DispatchAlg, number[][], number[], number[]]> = [
    [{ type: 'min-heap' }, [[1, 3, 5, 15], [0, 2, 4, 14], [7, 9, 11, 13], [6, 8, 10, 12]], [11, 11, 10, 10], [3072, 3072, 1024, 1024]],
    [{ type: 'sequential' }, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]], [6, 8, 10, 18], [0, 1024, 512, 1536]],
    [{ type: 'topp-heap', topP: 0.5 }, [[1, 3, 10, 14], [6, 8, 11, 15], [7, 9, 12, 13], [0, 2, 4, 5]], [11, 11, 11, 9], [2560, 1536, 1024, 512]],
    [{ type: 'topp-heap', topP: 1 }, [[12, 13, 14, 15], [2, 3, 4, 5], [8, 9, 10, 11], [0, 1, 6, 7]], [18, 10, 10, 4], [1536, 512, 512, 0]],
    [{ type: 'sorted-sequential', allocationRatio: 1 }, [[6, 7, 14, 15], [0, 1, 12, 13], [2, 3, 4, 5], [8, 9, 10, 11]], [12, 10, 10, 10], [1536, 1536, 512, 512]],
    [{ type: 'sorted-sequential', allocationRatio: 0.5 }, [[7, 9, 11, 15], [6, 8, 10, 14], [1, 3, 5, 13], [0, 2, 4, 12]], [11, 11, 10, 10], [1536, 1536, 2560, 2560]],
  ];
  for (const [alg, want, areas, recv] of cases) {
    const plan = planDistAttn({ mask: blockCausal72(), totalSeqlenQ: 4096, cpSize: 4, dispatchConfig: { minChunksPerRank: 4, alg } });
    assert.deepEqual(parts(plan.dispatch.partitions), want, JSON.stringify(alg));
    const s = planStats(plan);
    assert.deepEqual(Array.from(s.areaPerRank, (a) => a / unit), areas, JSON.stringify(alg));
    assert.deepEqual(Array.from(s.recvTokensPerRank), recv, JSON.stringify(alg));
  }
});

test("LPT is greedy: the docstring's counter-example gives 19/17, not the optimal 18/18", () => {
  const w = [8, 7, 6, 5, 4, 2, 2, 2];
  const p = minHeapDispatch(w, 2);
  const loads = p.map((ids) => Array.from(ids).reduce((a, c) => a + w[c], 0));
  assert.deepEqual(loads.sort((a, b) => b - a), [19, 17]);
});

test('LPT caps every bucket at ceil(n / P) jobs and breaks ties by larger job id, then lower bucket id', () => {
  const b = lptAssign([1, 1, 1, 1, 1], 2);
  // Jobs in order 4, 3, 2, 1, 0: 4 -> 0, 3 -> 1, 2 -> 0, 1 -> 1, 0 -> 0.
  assert.deepEqual(Array.from(b), [0, 1, 0, 1, 0]);
  assert.deepEqual(parts(sequentialDispatch(7, 3)), [[0, 1, 2], [3, 4], [5, 6]]);
});

test('contiguous-runs on a causal mask: zig-zag runs, then fewer k/v tokens and ranges than min-heap within 1.02', () => {
  const mask = causalMask(65536);
  const heap = planStats(planDistAttn({ mask, totalSeqlenQ: 65536, cpSize: 8 }));
  const plan = planDistAttn({ mask, totalSeqlenQ: 65536, cpSize: 8, dispatchConfig: { alg: { type: 'contiguous-runs' } } });
  const runs = planStats(plan);
  assert.ok(runs.imbalance <= 1.02 + 1e-12, `imbalance ${runs.imbalance}`);
  assert.ok(runs.totalCommTokens < heap.totalCommTokens, `${runs.totalCommTokens} vs ${heap.totalCommTokens}`);
  assert.ok(Math.max(...runs.remoteRangesPerRank) < Math.max(...heap.remoteRangesPerRank));
  // Without key ranges only the run phase runs: runs of 4 paired from both ends (a zig-zag of runs).
  const parts = contiguousRunsDispatch(plan.dispatch.chunkAreas, 8, 1.02);
  assert.deepEqual(Array.from(parts[0]), [0, 1, 2, 3, 60, 61, 62, 63]);
});

test('contiguous-runs meets its imbalance target or beats LPT, on random chunk weights', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  for (let iter = 0; iter < 40; iter++) {
    const P = rng.pick([2, 3, 4, 8]);
    const k = rng.int(1, 8);
    const w = Array.from({ length: P * k }, () => (rng.next() < 0.2 ? rng.int(0, 1000) : rng.int(0, 50)));
    const total = w.reduce((a, b) => a + b, 0);
    const maxOf = (p: Int32Array[]): number => Math.max(...p.map((ids) => Array.from(ids).reduce((a, c) => a + w[c], 0)));
    // Key ranges: each chunk reads itself and a random stretch before it.
    const keys = w.map((_, c) => Int32Array.from([Math.max(0, c - rng.int(0, 3)) * 16, (c + 1) * 16]));
    for (const p of [contiguousRunsDispatch(w, P, 1.05), contiguousRunsDispatch(w, P, 1.05, keys, 16)]) {
      assert.ok(p.every((ids) => ids.length === k), `seed ${seed}: unequal counts`);
      const max = maxOf(p);
      assert.ok(max <= 1.05 * (total / P) + 1e-9 || max <= maxOf(minHeapDispatch(w, P)), `seed ${seed}: ${max} vs LPT ${maxOf(minHeapDispatch(w, P))}`);
    }
  }
});

test('balance: causal and varlen-causal masks of 64k tokens at cp 8 stay within 1.05 (reference packs)', () => {
  const packs = readVarlenPacks();
  const N = 65536;
  const causal = planStats(planDistAttn({ mask: causalMask(N), totalSeqlenQ: N, cpSize: 8 }));
  assert.ok(causal.imbalance <= 1.05, `causal ${causal.imbalance}`);
  let worst = 0;
  for (const lengths of packs[String(N)].packs) {
    const s = planStats(planDistAttn({ mask: varlenCausalMask(cuSeqlensFromLengths(lengths)), totalSeqlenQ: N, cpSize: 8 }));
    worst = Math.max(worst, s.imbalance);
  }
  assert.ok(worst <= 1.05, `varlen-causal worst ${worst}`);
});

test('balance: varlen-causal masks of 64k tokens drawn from the dataset histogram stay within 1.05 at cp 8 (min-heap within 1.10)', (t) => {
  // min-heap is the reference's greedy and has no 1.05 guarantee: when one chunk weighs most of a
  // rank's share it can land above it (1 pack in 2,000 of this histogram did, at 1.063; the worst
  // of those 2,000 for contiguous-runs was 1.020).
  const bound = { 'min-heap': 1.1, 'contiguous-runs': 1.05 } as const;
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  for (let i = 0; i < 10; i++) {
    const lengths = sampleDocLengths(65536, rng);
    const mask = varlenCausalMask(cuSeqlensFromLengths(lengths));
    for (const type of ['min-heap', 'contiguous-runs'] as const) {
      const s = planStats(planDistAttn({ mask, totalSeqlenQ: 65536, cpSize: 8, dispatchConfig: { alg: { type } } }));
      assert.ok(s.imbalance <= bound[type], `seed ${seed}, pack ${i}, ${type}: imbalance ${s.imbalance} with ${lengths.length} documents`);
    }
  }
});

test('balance: on uniformly cut varlen-causal masks contiguous-runs reaches 1.05 unless one chunk forbids it', (t) => {
  // Uniform cuts make many mid-size documents, so single chunks can weigh most of a rank's share;
  // with 8 chunks per rank the best possible maximum is at least the heaviest chunk plus the
  // 7 lightest others, and the target is 1.05 of whichever bound is larger.
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  for (let i = 0; i < 10; i++) {
    const cu = randomCuSeqlens(rng, 65536, rng.int(8, 200));
    const plan = planDistAttn({ mask: varlenCausalMask(cu), totalSeqlenQ: 65536, cpSize: 8, dispatchConfig: { alg: { type: 'contiguous-runs' } } });
    const w = Array.from(plan.dispatch.chunkAreas).sort((a, b) => a - b);
    const mean = w.reduce((a, b) => a + b, 0) / 8;
    const bound = Math.max(mean, w[w.length - 1] + w.slice(0, 7).reduce((a, b) => a + b, 0));
    const max = Math.max(...planStats(plan).areaPerRank);
    assert.ok(max <= 1.05 * bound, `seed ${seed}: max ${max}, bound ${bound}, mean ${mean} with ${cu.length - 1} documents`);
  }
});

test('contiguous-runs moves fewer k/v tokens than min-heap on the reference 64k packs', () => {
  const packs = readVarlenPacks();
  let heap = 0;
  let runs = 0;
  for (const lengths of packs['65536'].packs) {
    const mask = varlenCausalMask(cuSeqlensFromLengths(lengths));
    heap += planStats(planDistAttn({ mask, totalSeqlenQ: 65536, cpSize: 8 })).totalCommTokens;
    const s = planStats(planDistAttn({ mask, totalSeqlenQ: 65536, cpSize: 8, dispatchConfig: { alg: { type: 'contiguous-runs' } } }));
    assert.ok(s.imbalance <= 1.05);
    runs += s.totalCommTokens;
  }
  assert.ok(runs < 0.75 * heap, `contiguous-runs ${runs} vs min-heap ${heap}`);
});

test('position ids list global positions in local order, pad tokens clamped to the last valid one', () => {
  const plan = planDistAttn({ mask: causalMask(1000), totalSeqlenQ: 1000, cpSize: 3 });
  const d = plan.dispatch;
  assert.equal(d.chunkSize, 42);
  assert.equal(d.maxValidIds, 1000);
  const all = new Set<number>();
  for (let r = 0; r < 3; r++) {
    const ids = positionIds(d, r);
    assert.equal(ids.length, 336);
    d.partitions[r].forEach((c, i) => {
      for (let t = 0; t < 42; t++) assert.equal(ids[i * 42 + t], Math.min(c * 42 + t, 999));
    });
    ids.forEach((x) => all.add(x));
  }
  assert.equal(all.size, 1000);
  // A mask whose last rows attend nothing: positions clamp at the last row that has a slice.
  const early = planDistAttn({ mask: makeSliceList([[0, 600]], [[0, 600]], 'causal'), totalSeqlenQ: 1000, cpSize: 2 });
  assert.equal(early.dispatch.maxValidIds, 600);
  assert.ok(Array.from(positionIds(early.dispatch, 0)).every((x) => x <= 599));
});

test('dispatch is deterministic: the same input gives the same partitions', () => {
  const mask = varlenCausalMask(randomCuSeqlens(new Rng(5), 32768, 40));
  for (const type of ['min-heap', 'sequential', 'sorted-sequential', 'topp-heap', 'contiguous-runs'] as const) {
    const a = planDistAttn({ mask, totalSeqlenQ: 32768, cpSize: 8, dispatchConfig: { alg: { type } } });
    const b = planDistAttn({ mask, totalSeqlenQ: 32768, cpSize: 8, dispatchConfig: { alg: { type } } });
    assert.deepEqual(parts(a.dispatch.partitions), parts(b.dispatch.partitions), type);
  }
});
