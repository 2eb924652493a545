/**
 * The CPU forward main loop: tiled online softmax over a slice list, in the FlashAttention-2
 * shape. For each slice, each q tile and each query head, it walks the k tiles that some row of
 * the tile can see, keeps a running (max, sum, unnormalised output) per row, and at the end of
 * the tile merges the tile's normalised (out, lse) into the per-call accumulator by log-sum-exp.
 * That merge is what makes overlapping q ranges and several slices per row add up to one softmax
 * over the multiset of their keys; it runs in a fixed order, so results are deterministic.
 *
 * Memory is the inputs plus O(tile) scratch: the score matrix is never materialised.
 */
import type { SliceList } from '../../mask/slice-list.js';
import { sliceCount } from '../../mask/slice-list.js';
import { rowIntervals, sliceBox, visibleRowSpan } from './geometry.js';
import { mergeRow } from '../../lse-merge.js';
import { gemmAcc, loadTile, loadTileTransposed, pad4, pad8 } from './tile.js';

/** Query rows per tile. */
export const FWD_TILE_Q = 64;
/** Keys per tile. */
export const FWD_TILE_K = 64;

/** Head-major float32 inputs of one forward call. */
export interface ForwardProblem {
  /** [Hq, Tq, D] */
  q: Float32Array;
  /** [Hkv, Tk, D] */
  k: Float32Array;
  /** [Hkv, Tk, D] */
  v: Float32Array;
  tokensQ: number;
  tokensK: number;
  headsQ: number;
  headsKv: number;
  dim: number;
  slices: SliceList;
  scale: number;
  /** 0 = off. */
  softcap: number;
}

/** Per-call accumulators the main loop merges into (head-major). */
export interface ForwardAccumulators {
  /** [Hq, Tq, D]; rows whose lse is -inf are never read. */
  out: Float32Array;
  /** [Hq, Tq], -inf where nothing has been seen yet. */
  lse: Float64Array;
  /** [Hq], max over every covered cell of the logit z (after softcap). */
  maxLogits: Float64Array;
}

/**
 * Runs every slice of `p` and merges the results into `acc`. The accumulators may already hold
 * a partial result; this adds the slices' keys to it.
 */
export function forwardSlices(p: ForwardProblem, acc: ForwardAccumulators): void {
  const { dim, tokensQ, tokensK, headsQ, headsKv, scale, softcap } = p;
  const group = headsQ / headsKv;
  const bm = FWD_TILE_Q;
  const bn = FWD_TILE_K;
  const dimPad = pad4(dim);
  const qTile = new Float64Array(bm * dimPad);
  const kTileT = new Float64Array(dimPad * bn);
  const vTile = new Float64Array(bn * dimPad);
  const scores = new Float64Array(bm * bn);
  const oTile = new Float64Array(bm * dimPad);
  const rowMax = new Float64Array(bm);
  const rowSum = new Float64Array(bm);
  const lo = new Int32Array(bm);
  const hi = new Int32Array(bm);
  const capInv = softcap > 0 ? scale / softcap : 0;

  for (let b = 0; b < sliceCount(p.slices); b++) {
    const box = sliceBox(p.slices, b);
    const [rowFirst, rowLast] = visibleRowSpan(box);
    for (let q0 = rowFirst; q0 < rowLast; q0 += bm) {
      const nr = Math.min(bm, rowLast - q0);
      const nrPad = pad8(nr);
      rowIntervals(box, q0, nr, lo, hi);
      let spanLo = tokensK;
      let spanHi = 0;
      for (let i = 0; i < nr; i++) {
        if (hi[i] <= lo[i]) continue;
        if (lo[i] < spanLo) spanLo = lo[i];
        if (hi[i] > spanHi) spanHi = hi[i];
      }
      if (spanHi <= spanLo) continue;

      for (let h = 0; h < headsQ; h++) {
        const hk = (h / group) | 0;
        loadTile(qTile, dimPad, p.q, (h * tokensQ + q0) * dim, nr, nrPad, dim);
        oTile.fill(0, 0, nrPad * dimPad);
        rowMax.fill(-Infinity);
        rowSum.fill(0);
        let headMax = acc.maxLogits[h];

        for (let k0 = spanLo; k0 < spanHi; k0 += bn) {
          const nc = Math.min(bn, spanHi - k0);
          const ncPad = pad8(nc);
          const k1 = k0 + nc;
          loadTileTransposed(kTileT, bn, p.k, (hk * tokensK + k0) * dim, nc, ncPad, dim, dimPad);
          loadTile(vTile, dimPad, p.v, (hk * tokensK + k0) * dim, nc, ncPad, dim);
          scores.fill(0, 0, nrPad * bn);
          gemmAcc(scores, bn, qTile, dimPad, 1, kTileT, bn, nrPad, dimPad, ncPad);

          // Online softmax update, row by row; scores become probabilities in place.
          for (let i = 0; i < nrPad; i++) {
            const base = i * bn;
            const cLo = i < nr ? (lo[i] > k0 ? lo[i] : k0) - k0 : 0;
            const cHi = i < nr ? (hi[i] < k1 ? hi[i] : k1) - k0 : 0;
            if (cHi <= cLo) {
              scores.fill(0, base, base + ncPad);
              continue;
            }
            let mx = -Infinity;
            if (softcap > 0) {
              for (let c = cLo; c < cHi; c++) {
                const z = softcap * Math.tanh(scores[base + c] * capInv);
                scores[base + c] = z;
                if (z > mx) mx = z;
              }
            } else {
              for (let c = cLo; c < cHi; c++) {
                const z = scores[base + c] * scale;
                scores[base + c] = z;
                if (z > mx) mx = z;
              }
            }
            if (mx > headMax) headMax = mx;
            const mOld = rowMax[i];
            const mNew = mx > mOld ? mx : mOld;
            let sum = 0;
            for (let c = 0; c < cLo; c++) scores[base + c] = 0;
            for (let c = cLo; c < cHi; c++) {
              const e = Math.exp(scores[base + c] - mNew);
              scores[base + c] = e;
              sum += e;
            }
            for (let c = cHi; c < ncPad; c++) scores[base + c] = 0;
            if (mNew !== mOld) {
              const alpha = Math.exp(mOld - mNew); // 0 when mOld is -inf: the row was still all zeros
              const o = i * dimPad;
              for (let d = 0; d < dim; d++) oTile[o + d] *= alpha;
              rowSum[i] = rowSum[i] * alpha + sum;
              rowMax[i] = mNew;
            } else {
              rowSum[i] += sum;
            }
          }
          gemmAcc(oTile, dimPad, scores, bn, 1, vTile, dimPad, nrPad, ncPad, dim);
        }

        acc.maxLogits[h] = headMax;
        // Normalise the tile's rows and fold them into the accumulator.
        for (let i = 0; i < nr; i++) {
          const l = rowSum[i];
          if (!(l > 0)) continue;
          const inv = 1 / l;
          const o = i * dimPad;
          for (let d = 0; d < dim; d++) oTile[o + d] *= inv;
          const row = h * tokensQ + q0 + i;
          acc.lse[row] = mergeRow(acc.out, row * dim, acc.lse[row], oTile, o, rowMax[i] + Math.log(l), dim);
        }
      }
    }
  }
}
