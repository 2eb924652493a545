/**
 * The ring (zig-zag) and Ulysses figures that `magi-attn plan` prints, against an independent
 * count: every token given an owner one by one, every cell counted by the per-cell rule, every
 * all-to-all block summed. Replay with MAGI_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCellUnmasked } from '../src/mask/geometry.js';
import { varlenCausalMask, blockCausalMask } from '../src/mask/helpers.js';
import type { SliceList } from '../src/mask/slice-list.js';
import { ringZigzagBaseline, ulyssesBaseline, type HeadShape } from '../src/solver/baselines.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { randomCuSeqlens } from './util/solver-masks.js';

/** Owner of every real token under per-document zig-zag, and each rank's token count including padding. */
function zigzagOwners(cu: number[], P: number): { owner: Int32Array; padded: number[] } {
  const n = cu[cu.length - 1];
  const owner = new Int32Array(n).fill(-1);
  const padded = new Array<number>(P).fill(0);
  for (let d = 0; d + 1 < cu.length; d++) {
    const L = cu[d + 1] - cu[d];
    if (L === 0) continue;
    const piece = Math.ceil(L / (2 * P));
    for (let i = 0; i < piece * 2 * P; i++) {
      const k = Math.floor(i / piece);
      const r = k < P ? k : 2 * P - 1 - k;
      padded[r]++;
      if (i < L) owner[cu[d] + i] = r;
    }
  }
  return { owner, padded };
}

function cellsByQOwner(mask: SliceList, owner: Int32Array, P: number): number[] {
  const area = new Array<number>(P).fill(0);
  for (let b = 0; b < mask.maskTypes.length; b++) {
    const [qs, qe, ks, ke] = [mask.qRanges[2 * b], mask.qRanges[2 * b + 1], mask.kRanges[2 * b], mask.kRanges[2 * b + 1]];
    for (let q = qs; q < qe; q++) for (let k = ks; k < ke; k++) if (isCellUnmasked(mask.maskTypes[b], q - qs, k - ks, qe - qs, ke - ks)) area[owner[q]]++;
  }
  return area;
}

test('ring zig-zag: each rank receives every other rank\'s padded k/v and computes its own rows\' cells', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  const heads: HeadShape = { numHeadsQ: 8, numHeadsKv: 2, headDim: 16, bytesPerElement: 2 };
  for (let trial = 0; trial < 20; trial++) {
    const P = rng.int(2, 6);
    const n = rng.int(50, 400);
    const cu = randomCuSeqlens(rng, n, rng.int(1, 6));
    const mask = trial % 2 === 0 ? varlenCausalMask(cu) : blockCausalMask(cu, rng.int(4, 40));
    const got = ringZigzagBaseline(mask, n, P, heads, cu);
    const { owner, padded } = zigzagOwners(cu, P);
    const total = padded.reduce((a, b) => a + b, 0);
    assert.deepEqual(Array.from(got.recvTokensPerRank), padded.map((p) => total - p), `trial ${trial}: tokens`);
    assert.deepEqual(Array.from(got.areaPerRank), cellsByQOwner(mask, owner, P), `trial ${trial}: area`);
    assert.equal(got.totalBytes, padded.reduce((a, p) => a + (total - p), 0) * 2 * heads.numHeadsKv * heads.headDim * heads.bytesPerElement, `trial ${trial}: bytes`);
  }
});

test('Ulysses: four all-to-alls over heads; bytes are the blocks every rank receives', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  for (let trial = 0; trial < 20; trial++) {
    const P = [2, 4, 8][trial % 3];
    const n = P * rng.int(10, 60);
    const heads: HeadShape = { numHeadsQ: 16, numHeadsKv: [1, 2, 8][trial % 3], headDim: 32, bytesPerElement: 2 };
    const mask = varlenCausalMask(randomCuSeqlens(rng, n, rng.int(1, 5)));
    const got = ulyssesBaseline(mask, n, P, heads);
    const local = n / P;
    // q and o carry Hq heads, k and v max(Hkv, P) (replicated up to P): rank r receives, from each
    // other rank, its `local` tokens of the H/P heads that r owns, for each of the four tensors.
    let perRank = 0;
    for (const H of [heads.numHeadsQ, Math.max(heads.numHeadsKv, P), Math.max(heads.numHeadsKv, P), heads.numHeadsQ]) {
      for (let s = 0; s < P - 1; s++) perRank += local * (H / P) * heads.headDim * heads.bytesPerElement;
    }
    assert.ok(got.recvBytesPerRank.every((b) => Math.abs(b - perRank) < 1e-6), `trial ${trial}: ${got.recvBytesPerRank[0]} vs ${perRank}`);
    let cells = 0;
    for (let b = 0; b < mask.maskTypes.length; b++) {
      const [qs, qe, ks, ke] = [mask.qRanges[2 * b], mask.qRanges[2 * b + 1], mask.kRanges[2 * b], mask.kRanges[2 * b + 1]];
      for (let q = qs; q < qe; q++) for (let k = ks; k < ke; k++) if (isCellUnmasked(mask.maskTypes[b], q - qs, k - ks, qe - qs, ke - ks)) cells++;
    }
    assert.ok(got.areaPerRank.every((a) => Math.abs(a - cells / P) < 1e-9), `trial ${trial}: area`);
  }
});
