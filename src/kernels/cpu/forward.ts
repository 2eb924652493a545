/**
 * The TypeScript engine's forward: tiled online softmax, FlashAttention-2 style, over the work
 * list of one kv head (work.ts). For each q tile and each query head of the group it walks the
 * key tiles of every piece (one slice over the tile) with one running (max, sum, unnormalised
 * output) per row, so rows covered by several slices get one softmax over the multiset of their
 * keys, and writes the tile's rows of out and lse. Memory is the inputs plus O(tile) scratch.
 *
 * Arithmetic is float64 on the float32 inputs. NaN and Inf go through as IEEE arithmetic takes
 * them: the running max propagates NaN (Math.max), a row whose sum is NaN gets NaN out and lse,
 * and when an input is not finite the value products skip masked cells instead of adding 0·NaN.
 * A row that sees no key (or only -inf logits) gets out = 0 and lse = -inf.
 *
 * This is the readable form of what the WebAssembly kernel (wasm/assembly/kernel.ts) computes
 * in float32 SIMD, and its fallback where WebAssembly SIMD is missing.
 */
import type { WorkList } from './work.js';
import { gemmAcc, gemmVisible, loadTile, loadTileTransposed, pad4, pad8 } from './tile.js';

/** What one kv head's forward and backward (backward.ts) both read. */
export interface HeadInputs {
  /** The group's query heads, head-major [G, Tq, D]. */
  q: Float32Array;
  /** This kv head's keys and values, [Tk, D]. */
  k: Float32Array;
  v: Float32Array;
  tokensQ: number;
  group: number;
  dim: number;
  scale: number;
  /** 0 = off. */
  softcap: number;
  /** Every input is finite (then value products may multiply masked cells by their zero weight). */
  finite: boolean;
  work: WorkList;
}

/** One kv head's forward: its query heads' rows in, their out and lse out. */
export interface HeadForward extends HeadInputs {
  tokensK: number;
  /** [G, Tq, D]: written for every row of a q tile. */
  out: Float32Array;
  /** [G, Tq]: written for every row of a q tile (-inf where it saw nothing). */
  lse: Float64Array;
  /** [G]: max-merged (NaN-propagating) with the max logit of every covered cell. */
  maxLogits: Float64Array;
}

export function forwardHead(p: HeadForward): void {
  const { dim, tokensQ, group, scale, softcap, work: w } = p;
  const bm = w.tileQ;
  const bn = w.tileK;
  const dimPad = pad4(dim);
  const qTile = new Float64Array(bm * dimPad);
  const kTileT = new Float64Array(dimPad * bn);
  const vTile = new Float64Array(bn * dimPad);
  const scores = new Float64Array(bm * bn);
  const oTile = new Float64Array(bm * dimPad);
  const rowMax = new Float64Array(bm);
  const rowSum = new Float64Array(bm);
  const colLo = new Int32Array(bm);
  const colHi = new Int32Array(bm);
  const capInv = softcap > 0 ? scale / softcap : 0;

  for (let t = 0; t < w.qTileStart.length; t++) {
    const q0 = w.qTileStart[t];
    const nr = w.qTileRows[t];
    const nrPad = pad8(nr);
    for (let g = 0; g < group; g++) {
      loadTile(qTile, dimPad, p.q, (g * tokensQ + q0) * dim, nr, nrPad, dim);
      oTile.fill(0, 0, nrPad * dimPad);
      rowMax.fill(-Infinity);
      rowSum.fill(0);
      let headMax = p.maxLogits[g];

      for (let piece = w.qTilePieces[t]; piece < w.qTilePieces[t + 1]; piece++) {
        const rowOff = w.pieceRowOff[piece];
        for (let k0 = w.pieceSpanLo[piece]; k0 < w.pieceSpanHi[piece]; k0 += bn) {
          const nc = Math.min(bn, w.pieceSpanHi[piece] - k0);
          const ncPad = pad8(nc);
          const k1 = k0 + nc;
          loadTileTransposed(kTileT, bn, p.k, k0 * dim, nc, ncPad, dim, dimPad);
          loadTile(vTile, dimPad, p.v, k0 * dim, nc, ncPad, dim);
          scores.fill(0, 0, nrPad * bn);
          gemmAcc(scores, bn, qTile, dimPad, 1, kTileT, bn, nrPad, dimPad, ncPad);

          // Online softmax, row by row; scores become unnormalised probabilities in place.
          for (let i = 0; i < nrPad; i++) {
            const base = i * bn;
            const lo = i < nr ? w.lo[rowOff + i] : 0;
            const hi = i < nr ? w.hi[rowOff + i] : 0;
            const cLo = (colLo[i] = Math.max(lo, k0) - k0);
            const cHi = (colHi[i] = Math.min(hi, k1) - k0);
            if (cHi <= cLo) {
              colHi[i] = colLo[i] = 0;
              scores.fill(0, base, base + ncPad);
              continue;
            }
            let mx = -Infinity;
            for (let c = cLo; c < cHi; c++) {
              const s = scores[base + c];
              const z = softcap > 0 ? softcap * Math.tanh(s * capInv) : s * scale;
              scores[base + c] = z;
              mx = Math.max(mx, z);
            }
            headMax = Math.max(headMax, mx);
            const mOld = rowMax[i];
            const mNew = Math.max(mx, mOld);
            scores.fill(0, base, base + cLo);
            scores.fill(0, base + cHi, base + ncPad);
            if (mNew === -Infinity) {
              // Every visible logit is -inf: nothing seen yet.
              scores.fill(0, base + cLo, base + cHi);
              colHi[i] = colLo[i] = 0;
              continue;
            }
            let sum = 0;
            for (let c = cLo; c < cHi; c++) {
              const e = Math.exp(scores[base + c] - mNew);
              scores[base + c] = e;
              sum += e;
            }
            if (!(mNew === mOld)) {
              const alpha = Math.exp(mOld - mNew); // 0 while the row is still empty; NaN once NaN arrived
              const o = i * dimPad;
              for (let d = 0; d < dim; d++) oTile[o + d] *= alpha;
              rowSum[i] = rowSum[i] * alpha + sum;
              rowMax[i] = mNew;
            } else {
              rowSum[i] += sum;
            }
          }
          if (p.finite) gemmAcc(oTile, dimPad, scores, bn, 1, vTile, dimPad, nrPad, ncPad, dim);
          else gemmVisible(true, oTile, dimPad, scores, bn, 1, vTile, dimPad, nr, colLo, colHi, dim);
        }
      }

      p.maxLogits[g] = headMax;
      for (let i = 0; i < nr; i++) {
        const row = g * tokensQ + q0 + i;
        const l = rowSum[i];
        const o = row * dim;
        if (l === 0) {
          p.out.fill(0, o, o + dim);
          p.lse[row] = -Infinity;
          continue;
        }
        const inv = 1 / l;
        for (let d = 0; d < dim; d++) p.out[o + d] = oTile[i * dimPad + d] * inv;
        p.lse[row] = rowMax[i] + Math.log(l);
      }
    }
  }
}
