/**
 * The TypeScript engine's backward, FlashAttention-2 style: it never stores P. From the final
 * lse it recomputes P = exp(z - lse) tile by tile. Work is the k tiles of one kv head's work list
 * (work.ts): each k tile walks the pieces that can see its keys, for every query head of the
 * group, accumulates its own rows of dK and dV (summing the group's heads: GQA) and adds its dQ
 * contributions into the dQ buffer it is given. Everything runs in a fixed order, so results are
 * deterministic.
 *
 * Float64 arithmetic on float32 inputs; NaN and Inf as in forward.ts (masked cells are skipped in
 * the value products when an input is not finite; a NaN lse or Δ makes its row's terms NaN).
 */
import type { HeadInputs } from './forward.js';
import { gemmAcc, gemmVisible, loadTile, loadTileTransposed, pad4, pad8 } from './tile.js';

/** One kv head's backward. */
export interface HeadBackward extends HeadInputs {
  /** The query heads' dL/dout [G, Tq, D], final lse and Δ = Σ_d out·dout ([G, Tq]). */
  dout: Float32Array;
  lse: Float64Array;
  delta: Float64Array;
  /** [G, Tq, D]: dQ is added into it. */
  dq: Float32Array;
  /** [Tk, D]: written for every key of a k tile. */
  dk: Float32Array;
  dv: Float32Array;
}

/** Δ_r = Σ_d out_rd · dout_rd per row of [rows, D] buffers (float64). */
export function rowDots(out: Float32Array, dout: Float32Array, rows: number, dim: number): Float64Array {
  const delta = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let s = 0;
    for (let d = 0; d < dim; d++) s += out[o + d] * dout[o + d];
    delta[r] = s;
  }
  return delta;
}

/** dst[dstOff + i * dim + d] (+)= tile[i * ld + d] for i < rows, d < dim. */
function storeTile(dst: Float32Array, dstOff: number, tile: Float64Array, rows: number, dim: number, ld: number, add: boolean): void {
  for (let i = 0; i < rows; i++) {
    const o = dstOff + i * dim;
    const t = i * ld;
    if (add) for (let d = 0; d < dim; d++) dst[o + d] += tile[t + d];
    else for (let d = 0; d < dim; d++) dst[o + d] = tile[t + d];
  }
}

/** Runs the k tiles `items` (all of them when omitted) in the order given. */
export function backwardHead(p: HeadBackward, items?: readonly number[]): void {
  const { dim, tokensQ, group, scale, softcap, lse, delta, work: w } = p;
  const bm = w.tileQ;
  const bn = w.tileK;
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
  const colLo = new Int32Array(bm);
  const colHi = new Int32Array(bm);
  const capInv = softcap > 0 ? scale / softcap : 0;
  const count = items?.length ?? w.kTileStart.length;

  for (let n = 0; n < count; n++) {
    const kt = items === undefined ? n : items[n];
    const k0 = w.kTileStart[kt];
    const nc = w.kTileCols[kt];
    const ncPad = pad8(nc);
    const k1 = k0 + nc;
    loadTile(kTile, dimPad, p.k, k0 * dim, nc, ncPad, dim);
    loadTileTransposed(kTileT, bn, p.k, k0 * dim, nc, ncPad, dim, dimPad);
    loadTileTransposed(vTileT, bn, p.v, k0 * dim, nc, ncPad, dim, dimPad);
    dkTile.fill(0, 0, ncPad * dimPad);
    dvTile.fill(0, 0, ncPad * dimPad);

    for (let x = w.kTilePieces[kt]; x < w.kTilePieces[kt + 1]; x++) {
      const piece = w.kPieces[x];
      const t = w.pieceTile[piece];
      const rowOff = w.pieceRowOff[piece];
      const q0 = w.qTileStart[t];
      const nr = w.qTileRows[t];
      const nrPad = pad8(nr);
      for (let g = 0; g < group; g++) {
        const rowBase = g * tokensQ + q0;
        loadTile(qTile, dimPad, p.q, rowBase * dim, nr, nrPad, dim);
        loadTile(doTile, dimPad, p.dout, rowBase * dim, nr, nrPad, dim);
        probs.fill(0, 0, nrPad * bn);
        dscores.fill(0, 0, nrPad * bn);
        gemmAcc(probs, bn, qTile, dimPad, 1, kTileT, bn, nrPad, dimPad, ncPad);
        gemmAcc(dscores, bn, doTile, dimPad, 1, vTileT, bn, nrPad, dimPad, ncPad);

        // P = exp(z - lse) on visible cells, dS = P (dP - Δ) [· softcap slope] · scale, 0 elsewhere.
        for (let i = 0; i < nrPad; i++) {
          const base = i * bn;
          const rowLse = i < nr ? lse[rowBase + i] : -Infinity;
          const cLo = (colLo[i] = i < nr ? Math.max(w.lo[rowOff + i], k0) - k0 : 0);
          const cHi = (colHi[i] = i < nr ? Math.min(w.hi[rowOff + i], k1) - k0 : 0);
          if (cHi <= cLo || rowLse === -Infinity) {
            colLo[i] = colHi[i] = 0;
            probs.fill(0, base, base + ncPad);
            dscores.fill(0, base, base + ncPad);
            continue;
          }
          const dRow = delta[rowBase + i];
          probs.fill(0, base, base + cLo);
          dscores.fill(0, base, base + cLo);
          for (let c = cLo; c < cHi; c++) {
            const s = probs[base + c];
            if (softcap > 0) {
              const th = Math.tanh(s * capInv);
              const pr = Math.exp(softcap * th - rowLse);
              probs[base + c] = pr;
              dscores[base + c] = pr * (dscores[base + c] - dRow) * (1 - th * th) * scale;
            } else {
              const pr = Math.exp(s * scale - rowLse);
              probs[base + c] = pr;
              dscores[base + c] = pr * (dscores[base + c] - dRow) * scale;
            }
          }
          probs.fill(0, base + cHi, base + ncPad);
          dscores.fill(0, base + cHi, base + ncPad);
        }

        // dV += Pᵀ dO, dK += dSᵀ Q (transposed operands via swapped strides), dQ += dS K.
        dqTile.fill(0, 0, nrPad * dimPad);
        if (p.finite) {
          gemmAcc(dvTile, dimPad, probs, 1, bn, doTile, dimPad, ncPad, nrPad, dim);
          gemmAcc(dkTile, dimPad, dscores, 1, bn, qTile, dimPad, ncPad, nrPad, dim);
          gemmAcc(dqTile, dimPad, dscores, bn, 1, kTile, dimPad, nrPad, ncPad, dim);
        } else {
          gemmVisible(false, dvTile, dimPad, probs, bn, 1, doTile, dimPad, nr, colLo, colHi, dim);
          gemmVisible(false, dkTile, dimPad, dscores, bn, 1, qTile, dimPad, nr, colLo, colHi, dim);
          gemmVisible(true, dqTile, dimPad, dscores, bn, 1, kTile, dimPad, nr, colLo, colHi, dim);
        }
        storeTile(p.dq, rowBase * dim, dqTile, nr, dim, dimPad, true);
      }
    }

    storeTile(p.dk, k0 * dim, dkTile, nc, dim, dimPad, false);
    storeTile(p.dv, k0 * dim, dvTile, nc, dim, dimPad, false);
  }
}
