/**
 * The CPU backward main loop, FlashAttention-2 style: it never stores P. From the final out and
 * lse it recomputes P = exp(z - lse) tile by tile. For each slice, kv head and k tile, it runs
 * over the query heads of the group and the q tiles that can see the keys, accumulates dK/dV of
 * the tile in scratch (summing the group's query heads: GQA) and adds dQ straight into its
 * float32 buffer. Everything runs in a fixed order, so results are deterministic.
 */
import type { SliceList } from '../../mask/slice-list.js';
import { sliceCount } from '../../mask/slice-list.js';
import { rowIntervals, sliceBox, visibleRowSpan } from './geometry.js';
import { gemmAcc, loadTile, loadTileTransposed, pad4, pad8 } from './tile.js';

/** Query rows per tile. */
export const BWD_TILE_Q = 64;
/** Keys per tile. */
export const BWD_TILE_K = 64;

/** Head-major float32 inputs of one backward call. */
export interface BackwardProblem {
  /** [Hq, Tq, D] */
  q: Float32Array;
  /** [Hkv, Tk, D] */
  k: Float32Array;
  /** [Hkv, Tk, D] */
  v: Float32Array;
  /** dL/dout, [Hq, Tq, D] */
  dout: Float32Array;
  /** Final lse, [Hq, Tq]. */
  lse: Float64Array;
  /** Δ_t = Σ_d out·dout, [Hq, Tq]. */
  delta: Float64Array;
  tokensQ: number;
  tokensK: number;
  headsQ: number;
  headsKv: number;
  dim: number;
  slices: SliceList;
  scale: number;
  softcap: number;
}

/** Gradient buffers (head-major float32, zeroed by the caller) the loop adds into. */
export interface BackwardGrads {
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

/** Δ_t = Σ_d out_td · dout_td per head-major row. */
export function rowDots(out: Float32Array, dout: Float32Array, rows: number, dim: number): Float64Array {
  const delta = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let s0 = 0;
    let s1 = 0;
    let d = 0;
    for (; d + 1 < dim; d += 2) {
      s0 += out[o + d] * dout[o + d];
      s1 += out[o + d + 1] * dout[o + d + 1];
    }
    if (d < dim) s0 += out[o + d] * dout[o + d];
    delta[r] = s0 + s1;
  }
  return delta;
}

/** dst[dstOff + i * dim + d] += tile[i * ld + d] for i < rows, d < dim. */
function addTileInto(dst: Float32Array, dstOff: number, tile: Float64Array, rows: number, dim: number, ld: number): void {
  for (let i = 0; i < rows; i++) {
    const o = dstOff + i * dim;
    const t = i * ld;
    for (let d = 0; d < dim; d++) dst[o + d] += tile[t + d];
  }
}

export function backwardSlices(p: BackwardProblem, g: BackwardGrads): void {
  const { dim, tokensQ, tokensK, headsQ, headsKv, scale, softcap, lse, delta } = p;
  const group = headsQ / headsKv;
  const bm = BWD_TILE_Q;
  const bn = BWD_TILE_K;
  const dimPad = pad4(dim);
  const qTile = new Float64Array(bm * dimPad);
  const doTile = new Float64Array(bm * dimPad);
  const kTile = new Float64Array(bn * dimPad);
  const kTileT = new Float64Array(dimPad * bn);
  const vTileT = new Float64Array(dimPad * bn);
  const dqTile = new Float64Array(bm * dimPad);
  const dkTile = new Float64Array(bn * dimPad);
  const dvTile = new Float64Array(bn * dimPad);
  const probs = new Float64Array(bm * bn);
  const dscores = new Float64Array(bm * bn);
  const capInv = softcap > 0 ? scale / softcap : 0;
  // Per-slice row bookkeeping, sized for the tallest slice so it is allocated once per call.
  let tallest = 0;
  for (let b = 0; b < sliceCount(p.slices); b++) tallest = Math.max(tallest, p.slices.qRanges[2 * b + 1] - p.slices.qRanges[2 * b]);
  const lo = new Int32Array(tallest);
  const hi = new Int32Array(tallest);
  const tileLo = new Int32Array(Math.ceil(tallest / bm));
  const tileHi = new Int32Array(Math.ceil(tallest / bm));

  for (let b = 0; b < sliceCount(p.slices); b++) {
    const box = sliceBox(p.slices, b);
    const [rowFirst, rowLast] = visibleRowSpan(box);
    const rows = rowLast - rowFirst;
    if (rows <= 0) continue;
    // Row intervals for the whole slice, and per q tile the key span its rows can see.
    rowIntervals(box, rowFirst, rows, lo, hi);
    const qTiles = Math.ceil(rows / bm);
    tileLo.fill(tokensK, 0, qTiles);
    tileHi.fill(0, 0, qTiles);
    let spanLo = tokensK;
    let spanHi = 0;
    for (let i = 0; i < rows; i++) {
      if (hi[i] <= lo[i]) continue;
      const t = (i / bm) | 0;
      if (lo[i] < tileLo[t]) tileLo[t] = lo[i];
      if (hi[i] > tileHi[t]) tileHi[t] = hi[i];
      if (lo[i] < spanLo) spanLo = lo[i];
      if (hi[i] > spanHi) spanHi = hi[i];
    }

    for (let hk = 0; hk < headsKv; hk++) {
      for (let k0 = spanLo; k0 < spanHi; k0 += bn) {
        const nc = Math.min(bn, spanHi - k0);
        const ncPad = pad8(nc);
        const k1 = k0 + nc;
        const kvOff = (hk * tokensK + k0) * dim;
        loadTile(kTile, dimPad, p.k, kvOff, nc, ncPad, dim);
        loadTileTransposed(kTileT, bn, p.k, kvOff, nc, ncPad, dim, dimPad);
        loadTileTransposed(vTileT, bn, p.v, kvOff, nc, ncPad, dim, dimPad);
        dkTile.fill(0, 0, ncPad * dimPad);
        dvTile.fill(0, 0, ncPad * dimPad);

        for (let h = hk * group; h < (hk + 1) * group; h++) {
          for (let t = 0; t < qTiles; t++) {
            if (tileHi[t] <= k0 || tileLo[t] >= k1) continue;
            const r0 = t * bm;
            const nr = Math.min(bm, rows - r0);
            const nrPad = pad8(nr);
            const q0 = rowFirst + r0;
            const rowBase = h * tokensQ + q0;
            loadTile(qTile, dimPad, p.q, rowBase * dim, nr, nrPad, dim);
            loadTile(doTile, dimPad, p.dout, rowBase * dim, nr, nrPad, dim);
            probs.fill(0, 0, nrPad * bn);
            dscores.fill(0, 0, nrPad * bn);
            gemmAcc(probs, bn, qTile, dimPad, 1, kTileT, bn, nrPad, dimPad, ncPad);
            gemmAcc(dscores, bn, doTile, dimPad, 1, vTileT, bn, nrPad, dimPad, ncPad);

            // P = exp(z - lse) on visible cells, then dS = P (dP - Δ) [· softcap slope] · scale.
            for (let i = 0; i < nrPad; i++) {
              const base = i * bn;
              let cLo = 0;
              let cHi = 0;
              let rowLse = -Infinity;
              if (i < nr) {
                rowLse = lse[rowBase + i];
                cLo = (lo[r0 + i] > k0 ? lo[r0 + i] : k0) - k0;
                cHi = (hi[r0 + i] < k1 ? hi[r0 + i] : k1) - k0;
              }
              if (cHi <= cLo || rowLse === -Infinity) {
                probs.fill(0, base, base + ncPad);
                dscores.fill(0, base, base + ncPad);
                continue;
              }
              const dRow = delta[rowBase + i];
              for (let c = 0; c < cLo; c++) probs[base + c] = dscores[base + c] = 0;
              if (softcap > 0) {
                for (let c = cLo; c < cHi; c++) {
                  const th = Math.tanh(probs[base + c] * capInv);
                  const pr = Math.exp(softcap * th - rowLse);
                  probs[base + c] = pr;
                  dscores[base + c] = pr * (dscores[base + c] - dRow) * (1 - th * th) * scale;
                }
              } else {
                for (let c = cLo; c < cHi; c++) {
                  const pr = Math.exp(probs[base + c] * scale - rowLse);
                  probs[base + c] = pr;
                  dscores[base + c] = pr * (dscores[base + c] - dRow) * scale;
                }
              }
              for (let c = cHi; c < ncPad; c++) probs[base + c] = dscores[base + c] = 0;
            }

            // dV += Pᵀ dO, dK += dSᵀ Q (transposed operands via swapped strides), dQ += dS K.
            gemmAcc(dvTile, dimPad, probs, 1, bn, doTile, dimPad, ncPad, nrPad, dim);
            gemmAcc(dkTile, dimPad, dscores, 1, bn, qTile, dimPad, ncPad, nrPad, dim);
            dqTile.fill(0, 0, nrPad * dimPad);
            gemmAcc(dqTile, dimPad, dscores, bn, 1, kTile, dimPad, nrPad, ncPad, dim);
            addTileInto(g.dq, rowBase * dim, dqTile, nr, dim, dimPad);
          }
        }

        addTileInto(g.dk, kvOff, dkTile, nc, dim, dimPad);
        addTileInto(g.dv, kvOff, dvTile, nc, dim, dimPad);
      }
    }
  }
}
