/**
 * Ring attention (zig-zag, per-document) and Ulysses run for real on worker-thread ranks: their
 * forward and backward, gathered back, equal single-device flexFlashAttn on full, causal,
 * varlen-causal, varlen block-causal and sliding-window masks, with GQA (and Ulysses' k/v head
 * replication when there are fewer k/v heads than ranks), at cp 2, 3 and 4. Their layouts and
 * traffic are the ones the planner's baseline models price (src/solver/baselines.ts), and bad
 * input is refused with a typed error before any collective.
 *
 * Tolerances (float32 inputs, both sides the same float32 CPU kernel): as for calcAttn
 * (test/runtime-calc-attn.test.ts): 2e-6 out/lse, 8e-6 gradients between two float32 runs of the
 * kernel, for the extra roundings of up to P log-sum-exp merges (ring) and of summed partial
 * dq / dk / dv (ring's per-step partials, Ulysses' replicated k/v heads).
 *
 * Random cases print their seed; replay with MAGI_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnRanks } from '../src/comm/threads/index.js';
import { createLocalGroups } from '../src/comm/local-group.js';
import { prepareGroupCast } from '../src/comm/group-collective.js';
import { InvalidArgumentError, ShapeError } from '../src/errors.js';
import { documentsOf, ringAttn, ringAttnKey, ulyssesAttn, ulyssesAttnKey } from '../src/baselines/index.js';
import { restrictMask } from '../src/baselines/common.js';
import type { Tolerance } from '../src/kernels/tolerance.js';
import { varlenCausalMask } from '../src/mask/helpers.js';
import { maskAreaByRows, ringZigzagBaseline, ulyssesBaseline, zigzagPieces } from '../src/solver/baselines.js';
import { sliceListArea } from '../src/mask/slice-list.js';
import { Tensor } from '../src/tensor.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { caseMask, type BaselineArgs, type BaselineCase, type BaselineMask, type BaselineReport } from './runtime-ranks/baselines-rank.js';
import { randomCuSeqlens } from './util/solver-masks.js';
import { runnable } from './util/paths.js';

const rankScript = runnable('test/runtime-ranks/baselines-rank');

const F32: BaselineArgs['tolerances'] = {
  out: { rtol: 2e-6, atol: 2e-6 },
  lse: { rtol: 2e-6, atol: 2e-6 },
  grad: { rtol: 8e-6, atol: 8e-6 },
} satisfies Record<string, Tolerance>;

const MASKS: BaselineMask[] = ['full', 'causal', 'varlen-causal', 'block-causal', 'sliding-window'];

/** Head shapes per cp: GQA for both; for Ulysses cp must divide Hq and divide or be divided by Hkv. */
const HEADS: Record<number, { ring: Array<[number, number]>; ulysses: Array<[number, number]> }> = {
  2: { ring: [[4, 2], [2, 1]], ulysses: [[4, 2], [2, 1]] },
  3: { ring: [[3, 1], [6, 3]], ulysses: [[6, 3], [3, 1]] },
  4: { ring: [[4, 2], [4, 4]], ulysses: [[4, 2], [8, 4]] },
};

function makeCases(seed: number, cp: number): BaselineCase[] {
  const rng = new Rng(seed);
  const cases: BaselineCase[] = [];
  for (const strategy of ['ring', 'ulysses'] as const) {
    MASKS.forEach((mask, i) => {
      const [headsQ, headsKv] = HEADS[cp][strategy][i % 2];
      cases.push({
        strategy,
        mask,
        seed: rng.int(0, 2 ** 31),
        n: rng.int(6 * cp, 72),
        headsQ,
        headsKv,
        headDim: 16,
        softcap: i === 3 ? 5 : 0,
        // Ulysses alternates between keeping the head-sharded tensors and sending them again.
        ...(strategy === 'ulysses' ? { saved: i % 2 === 0 } : {}),
      });
    });
  }
  return cases;
}

for (const cp of [2, 3, 4]) {
  test(`ring attention and Ulysses, forward and backward, equal single-device flexFlashAttn at cp ${cp}`, async (t) => {
    const seed = freshSeed();
    t.diagnostic(`seed ${seed}`);
    const cases = makeCases(seed, cp);
    const [reports] = await spawnRanks<BaselineReport[], BaselineArgs>(cp, rankScript, { cases, tolerances: F32 });
    assert.equal(reports.length, cases.length);
    assert.deepEqual(
      reports.flatMap((r) => r.failures.map((f) => `${r.name}: ${f}`)),
      [],
      `seed ${seed}`,
    );
    const worst: Record<string, number> = {};
    for (const r of reports) for (const [k, v] of Object.entries(r.worst)) worst[k] = Math.max(worst[k] ?? 0, v);
    t.diagnostic(`worst error / allowed: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')}`);
  });
}

test("ring's zig-zag layout and traffic are the planner model's: same pieces, same area per rank, (P-1)·n k/v rows received", () => {
  const rng = new Rng(freshSeed());
  for (const P of [2, 3, 4]) {
    const n = 200;
    const cu = randomCuSeqlens(rng, n, 5);
    const mask = varlenCausalMask(cu);
    const groups = createLocalGroups(P);
    const keys = groups.map((group) => ringAttnKey({ ...mask, totalSeqlenQ: n, numHeadsQ: 4, numHeadsKv: 2, headDim: 8, group }));
    assert.deepEqual(keys[0].cuSeqlens, cu, 'the documents found from a varlen mask are its cu_seqlens');
    const { ranges, owners } = zigzagPieces(cu, P);
    const model = ringZigzagBaseline(mask, n, P, { numHeadsQ: 4, numHeadsKv: 2, headDim: 8, bytesPerElement: 4 }, cu);
    const modelArea = maskAreaByRows(mask, ranges, owners, P);
    keys.forEach((key, r) => {
      const area = key.blockAreas.reduce((a, b) => a + b, 0);
      assert.equal(area, modelArea[r], `rank ${r} computes the area the model gives it`);
      const received = (P - 1) * prepareGroupCast(key.passArgs, P).recvRows;
      assert.equal(received, model.recvTokensPerRank[r], `rank ${r} receives the model's k/v tokens`);
    });
    assert.equal(
      keys.reduce((a, k) => a + k.blockAreas.reduce((x, y) => x + y, 0), 0),
      sliceListArea(mask),
      'the blocks cover the mask exactly once',
    );
    groups.forEach((g) => g.close());
  }
});

test("Ulysses' layout and traffic are the planner model's: ceil(N/P) rows per rank, q/k/v/out rows received as modelled (k/v heads replicated up to cp)", () => {
  for (const [P, hq, hkv] of [
    [2, 4, 2],
    [4, 8, 2],
    [3, 6, 1],
  ]) {
    const n = 100;
    const mask = varlenCausalMask([0, 40, 100]);
    const groups = createLocalGroups(P);
    const model = ulyssesBaseline(mask, n, P, { numHeadsQ: hq, numHeadsKv: hkv, headDim: 1, bytesPerElement: 1 });
    for (const group of groups) {
      const key = ulyssesAttnKey({ ...mask, totalSeqlenQ: n, numHeadsQ: hq, numHeadsKv: hkv, headDim: 8, group });
      assert.equal(key.shardSeqlen, Math.ceil(n / P));
      // Rows here are one head each: received from other ranks (own rows excluded), q, k, v in and out back.
      const fromOthers = (args: Parameters<typeof prepareGroupCast>[0], own: number): number => prepareGroupCast(args, P).recvRows - own;
      const hqr = hq / P;
      const q = fromOthers(key.qToHeads, key.shardSeqlen * hqr);
      const kv = fromOthers(key.kvToHeads, key.shardSeqlen * key.headsKvPerRank);
      const o = fromOthers(key.qToSeq, key.shardSeqlen * hqr);
      // The model's (P-1)/P·n is a float: equal up to its rounding.
      const want = model.recvBytesPerRank[group.rank];
      assert.ok(Math.abs(q + 2 * kv + o - want) <= 1e-9 * want, `cp ${P} hq ${hq} hkv ${hkv} rank ${group.rank}: ${q + 2 * kv + o} vs ${want}`);
    }
    groups.forEach((g) => g.close());
  }
});

test('documentsOf: varlen masks give their cu_seqlens, full and causal one document, untouched rows their own', () => {
  assert.deepEqual(documentsOf(varlenCausalMask([0, 5, 9, 20]), 20), [0, 5, 9, 20]);
  assert.deepEqual(documentsOf(caseMask(new Rng(1), 'causal', 30), 30), [0, 30]);
  // A slice reading keys before its rows joins them into one document.
  assert.deepEqual(documentsOf({ qRanges: Int32Array.of(10, 20, 25, 30), kRanges: Int32Array.of(0, 12, 25, 30), maskTypes: Uint8Array.of(0, 1) }, 40), [0, 20, 25, 30, 40]);
});

test('restrictMask keeps exactly the cells of the block, in local coordinates', () => {
  const rng = new Rng(freshSeed());
  const mask = caseMask(rng, 'sliding-window', 60);
  const rows = Int32Array.of(3, 10, 30, 41);
  const cols = Int32Array.of(0, 5, 20, 33, 50, 60);
  const { slices, area } = restrictMask(mask, rows, cols);
  const local = (r: Int32Array, x: number): number => {
    let at = 0;
    for (let i = 0; i < r.length; i += 2) {
      if (x >= r[i] && x < r[i + 1]) return at + x - r[i];
      at += r[i + 1] - r[i];
    }
    return -1;
  };
  // Dense comparison: the restricted slices' cells are the mask's cells inside the block.
  const cells = (m: typeof mask, qMap: (x: number) => number, kMap: (x: number) => number): Set<string> => {
    const s = new Set<string>();
    for (let b = 0; b < m.maskTypes.length; b++) {
      const [qs, qe, ks, ke] = [m.qRanges[2 * b], m.qRanges[2 * b + 1], m.kRanges[2 * b], m.kRanges[2 * b + 1]];
      for (let q = qs; q < qe; q++) {
        for (let k = ks; k < ke; k++) {
          const t = m.maskTypes[b];
          const i = q - qs;
          const j = k - ks;
          const ok = ((t & 1) === 0 || j - i <= ke - ks - (qe - qs)) && ((t & 2) === 0 || j >= i);
          const [a, c] = [qMap(q), kMap(k)];
          if (ok && a >= 0 && c >= 0) s.add(`${a},${c}`);
        }
      }
    }
    return s;
  };
  const want = cells(mask, (x) => local(rows, x), (x) => local(cols, x));
  const got = cells(slices, (x) => x, (x) => x);
  assert.deepEqual([...got].sort(), [...want].sort());
  assert.equal(area, want.size);
});

test('bad input is refused with a typed error before any collective', async () => {
  const [g0, g1, g2] = createLocalGroups(3);
  const base = { qRanges: [[0, 30]] as Array<[number, number]>, kRanges: [[0, 30]] as Array<[number, number]>, maskTypes: 'causal', totalSeqlenQ: 30, headDim: 8 };
  assert.throws(() => ulyssesAttnKey({ ...base, numHeadsQ: 4, numHeadsKv: 2, group: g0 }), (e: unknown) => e instanceof InvalidArgumentError && /divide numHeadsQ/.test(e.message));
  assert.throws(() => ulyssesAttnKey({ ...base, numHeadsQ: 6, numHeadsKv: 2, group: g0 }), (e: unknown) => e instanceof InvalidArgumentError && /divided by numHeadsKv/.test(e.message));
  assert.throws(() => ringAttnKey({ ...base, numHeadsQ: 4, numHeadsKv: 3, group: g0 }), InvalidArgumentError);
  assert.throws(() => ringAttnKey({ ...base, numHeadsQ: 4, numHeadsKv: 2, group: g0, cuSeqlens: [0, 10, 20] }), /must end at totalSeqlenQ/);
  assert.throws(() => ringAttnKey({ ...base, totalSeqlenQ: 20, numHeadsQ: 4, numHeadsKv: 2, group: g0 }), /inside the 20/);
  const ring = ringAttnKey({ ...base, numHeadsQ: 4, numHeadsKv: 2, group: g0 });
  const uly = ulyssesAttnKey({ ...base, numHeadsQ: 3, numHeadsKv: 1, group: g0 });
  const t = (rows: number, h: number): Tensor => Tensor.zeros('float32', [rows, h, 8]);
  // Wrong local length, unknown option, wrong key: all refused on rank 0 alone, so no collective was entered.
  await assert.rejects(ringAttn(t(ring.shardSeqlen + 1, 4), t(ring.shardSeqlen, 2), t(ring.shardSeqlen, 2), ring), ShapeError);
  await assert.rejects(ringAttn(t(ring.shardSeqlen, 4), t(ring.shardSeqlen, 2), t(ring.shardSeqlen, 2), ring, { sink: 1 } as never), /options.sink: is not an option/);
  await assert.rejects(ulyssesAttn(t(uly.shardSeqlen, 3), t(uly.shardSeqlen, 1), t(uly.shardSeqlen, 1), ring as never), /made by ulyssesAttnKey/);
  await assert.rejects(ulyssesAttn(t(uly.shardSeqlen, 3), t(uly.shardSeqlen, 2), t(uly.shardSeqlen, 1), uly), /k: must be this rank's shard/);
  [g0, g1, g2].forEach((g) => g.close());
});
