import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSliceList } from '../src/mask/slice-list.js';
import { maskTypeFromInt } from '../src/mask/mask-type.js';
import { applyPadding, buildChunkBuckets, computePadSize, resolveChunking } from '../src/solver/chunking.js';
import { resolveDispatchConfig } from '../src/solver/config.js';
import { emitBand, bandHi, bandLo, isCellUnmasked, SliceBuffer } from '../src/mask/geometry.js';
import { tidyPieces } from '../src/solver/pieces.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { MASK_FAMILIES, randomMask } from './util/solver-masks.js';
import { denseCounts } from '../src/solver/dense-oracle.js';

test('computePadSize is (-N) mod (chunk * cp)', () => {
  assert.equal(computePadSize(4096, 4, 128), 0);
  assert.equal(computePadSize(1000, 3, 42), 8); // 1008 = 42 * 3 * 8
  assert.equal(computePadSize(1, 2, 1), 1);
  assert.equal(computePadSize(10, 1, 4), 2);
});

test('a user chunk size is only an upper bound on ceil(N / (8 cp)) (reference examples)', () => {
  const c1 = resolveChunking(4096, 4, resolveDispatchConfig({ chunkSize: 512 }));
  assert.equal(c1.chunkSize, 128);
  assert.equal(c1.numChunks, 32);
  const c2 = resolveChunking(1000, 3, resolveDispatchConfig({}));
  assert.equal(c2.chunkSize, 42);
  assert.equal(c2.padSize, 8);
  assert.equal(c2.paddedSeqlen, 1008);
  assert.equal(c2.shardSeqlen, 336);
  const c3 = resolveChunking(1000, 3, resolveDispatchConfig({ chunkSize: 10 }));
  assert.equal(c3.chunkSize, 10);
  assert.equal(c3.padSize, 20);
  const single = resolveChunking(777, 1, resolveDispatchConfig({ chunkSize: 5 }));
  assert.deepEqual([single.chunkSize, single.numChunks, single.padSize], [777, 1, 0]);
});

test('the padding slice is q = [N, N + pad) against the empty key range [0, 0)', () => {
  const mask = makeSliceList([[0, 1000]], [[0, 1000]], 'causal');
  const chunking = resolveChunking(1000, 3, resolveDispatchConfig({}));
  const padded = applyPadding(mask, chunking);
  assert.deepEqual(Array.from(padded.qRanges), [0, 1000, 1000, 1008]);
  assert.deepEqual(Array.from(padded.kRanges), [0, 1000, 0, 0]);
  assert.deepEqual(Array.from(padded.maskTypes), [1, 0]);
  // Pad rows carry no work: no clipped entry reaches row 1000.
  const b = buildChunkBuckets(padded, chunking);
  assert.equal(b.numChunks, 24);
  for (let i = 0; i < b.q1.length; i++) assert.ok(b.q1[i] <= 1000);
  assert.equal(b.chunkAreas[23], buildChunkBuckets(mask, chunking).chunkAreas[23]);
});

test('causal chunk areas match the reference (S = 4096, chunk 512)', () => {
  const mask = makeSliceList([[0, 4096]], [[0, 4096]], 'causal');
  const chunking = resolveChunking(4096, 2, resolveDispatchConfig({ minChunksPerRank: 4 }));
  assert.equal(chunking.chunkSize, 512);
  const b = buildChunkBuckets(mask, chunking);
  assert.deepEqual(Array.from(b.chunkAreas), [131328, 393472, 655616, 917760, 1179904, 1442048, 1704192, 1966336]);
});

test('per-chunk clipping keeps exactly the cells of every slice type (dense oracle, random masks)', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  for (let iter = 0; iter < 60; iter++) {
    const n = rng.int(8, 120);
    const family = MASK_FAMILIES[iter % MASK_FAMILIES.length];
    const mask = randomMask(rng, family, n);
    const chunkSize = rng.int(1, n);
    const cp = rng.int(1, 4);
    const chunking = { cpSize: cp, unpaddedSeqlen: n, paddedSeqlen: n + computePadSize(n, cp, chunkSize), padSize: computePadSize(n, cp, chunkSize), chunkSize, numChunks: (n + computePadSize(n, cp, chunkSize)) / chunkSize, shardSeqlen: 0, unevenShard: false };
    const b = buildChunkBuckets(mask, chunking);
    const want = denseCounts(mask, n);
    const got = new Uint16Array(n * n);
    for (let c = 0; c < b.numChunks; c++) {
      let area = 0;
      for (let i = b.offsets[c]; i < b.offsets[c + 1]; i++) {
        assert.ok(b.q0[i] >= c * chunkSize && b.q1[i] <= (c + 1) * chunkSize, `seed ${seed}: entry outside its chunk`);
        const type = maskTypeFromInt(b.type[i]);
        const lq = b.q1[i] - b.q0[i];
        const lk = b.k1[i] - b.k0[i];
        let cells = 0;
        for (let q = 0; q < lq; q++) for (let k = 0; k < lk; k++) if (isCellUnmasked(type, q, k, lq, lk)) {
          got[(b.q0[i] + q) * n + b.k0[i] + k]++;
          cells++;
        }
        assert.equal(cells, b.area[i], `seed ${seed}: entry area`);
        area += cells;
      }
      assert.equal(area, b.chunkAreas[c], `seed ${seed}: chunk ${c} area`);
    }
    assert.deepEqual(got, want, `seed ${seed} (${family}, n ${n}, chunk ${chunkSize}): clipped entries differ from the mask`);
  }
});

test('emitBand and tidyPieces keep every cell of a band cut by rectangles (dense oracle)', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  for (let iter = 0; iter < 300; iter++) {
    const n = 24;
    const t = rng.int(0, 3);
    const qs = rng.int(0, n - 1);
    const qe = rng.int(qs + 1, n);
    const ks = rng.int(0, n - 1);
    const ke = rng.int(ks + 1, n);
    const dLo = bandLo(t, qs, ks);
    const dHi = bandHi(t, qe, ke);
    // Cut the key axis into random pieces and the rows into two halves, then tidy the lot.
    const cuts = [ks, ...Array.from({ length: rng.int(0, 3) }, () => rng.int(ks, ke)), ke].sort((a, b) => a - b);
    const buf = new SliceBuffer(4);
    for (let i = 0; i + 1 < cuts.length; i++) emitBand(buf, qs, qe, cuts[i], cuts[i + 1], dLo, dHi, 0, 0, 0);
    const before = buf.length;
    tidyPieces(buf, 0, new SliceBuffer(4));
    assert.ok(buf.length <= Math.max(before, 3), `seed ${seed}: tidy grew the list`);
    const want = new Uint8Array(n * n);
    const type = maskTypeFromInt(t);
    for (let q = qs; q < qe; q++) for (let k = ks; k < ke; k++) if (isCellUnmasked(type, q - qs, k - ks, qe - qs, ke - ks)) want[q * n + k] = 1;
    const got = new Uint8Array(n * n);
    for (let i = 0; i < buf.length; i++) {
      const pt = maskTypeFromInt(buf.type[i]);
      const lq = buf.q1[i] - buf.q0[i];
      const lk = buf.k1[i] - buf.k0[i];
      for (let q = 0; q < lq; q++) for (let k = 0; k < lk; k++) if (isCellUnmasked(pt, q, k, lq, lk)) got[(buf.q0[i] + q) * n + buf.k0[i] + k]++;
    }
    assert.deepEqual(got, want, `seed ${seed}: type ${t} q [${qs}, ${qe}) k [${ks}, ${ke}) cuts ${cuts.join(',')}`);
  }
});

test('a causal slice cut at a host gap fuses back into one CAUSAL slice per row group', () => {
  // Rows [8, 12) of causal [0,16)x[0,16), keys held in two local pieces [0, 4) and [8, 16) packed end to end.
  const buf = new SliceBuffer(4);
  const dHi = 0;
  emitBand(buf, 8, 12, 0, 4, -(2 ** 40), dHi, -8, 0, 0);
  emitBand(buf, 8, 12, 8, 16, -(2 ** 40), dHi, -8, 4 - 8, 0);
  tidyPieces(buf, 0, new SliceBuffer(4));
  assert.equal(buf.length, 1);
  assert.deepEqual([buf.q0[0], buf.q1[0], buf.k0[0], buf.k1[0], buf.type[0]], [0, 4, 0, 8, 1]);
});
