/**
 * Dense (naive) attention, forward and backward, for the CPU trainer: every query row scores the
 * keys its mask rows allow, softmax, weighted sum of values; GQA maps query head h to kv head
 * h / (Hq / Hkv). The backward recomputes the probabilities from the saved lse:
 *   P = exp(s − lse),  dP = dO·vᵀ,  dS = P ∘ (dP − rowsum(P ∘ dP)),
 *   dq += scale·dS·k,  dk += scale·dSᵀ·q,  dv += Pᵀ·dO.
 * It is the oracle the flex-flash-attention path is compared with (the GPU's naive path is
 * gpu/naive-attention.ts, the same arithmetic with cuBLAS products).
 */
import { InvalidArgumentError, rowKeyInterval, type SliceList } from 'magi-attention';
import type { FloatArray } from './matmul.js';

/** The keys each query row sees, as disjoint intervals: row i owns intervals [rowStart[i], rowStart[i+1]). */
export interface MaskRows {
  readonly rows: number;
  readonly rowStart: Int32Array;
  readonly keyStart: Int32Array;
  readonly keyEnd: Int32Array;
}

/** The rows of a slice list over `rows` query rows; slices must not share cells (as packed documents do not). */
export function maskRows(slices: SliceList, rows: number): MaskRows {
  const perRow: Array<Array<[number, number]>> = Array.from({ length: rows }, () => []);
  for (let b = 0; b < slices.maskTypes.length; b++) {
    const code = slices.maskTypes[b];
    const [qs, qe, ks, ke] = [slices.qRanges[2 * b], slices.qRanges[2 * b + 1], slices.kRanges[2 * b], slices.kRanges[2 * b + 1]];
    if (qe > rows) throw new InvalidArgumentError(`qRanges[${b}]`, `must lie inside the ${rows} query rows`, `ends at ${qe}`);
    for (let q = qs; q < qe; q++) {
      const [s, e] = rowKeyInterval(code, qs, qe, ks, ke, q);
      if (e > s) perRow[q].push([s, e]);
    }
  }
  const rowStart = new Int32Array(rows + 1);
  const starts: number[] = [];
  const ends: number[] = [];
  for (let q = 0; q < rows; q++) {
    const iv = perRow[q].sort((x, y) => x[0] - y[0]);
    for (let j = 1; j < iv.length; j++) {
      if (iv[j][0] < iv[j - 1][1]) throw new InvalidArgumentError('slices', 'must not share cells for dense attention', `row ${q} sees keys [${iv[j][0]}, ${iv[j - 1][1]}) twice`);
    }
    for (const [s, e] of iv) {
      starts.push(s);
      ends.push(e);
    }
    rowStart[q + 1] = starts.length;
  }
  return { rows, rowStart, keyStart: Int32Array.from(starts), keyEnd: Int32Array.from(ends) };
}

export interface AttnShape {
  tokens: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
  scale: number;
}

/** out [T, Hq, D] and lse [T, Hq] (natural log; -inf and a zero row where a row sees nothing). */
export function denseAttentionForward(out: FloatArray, lse: FloatArray, q: FloatArray, k: FloatArray, v: FloatArray, mask: MaskRows, s: AttnShape): void {
  const { tokens, headsQ, headsKv, headDim: D, scale } = s;
  const group = headsQ / headsKv;
  const scores = new Float64Array(tokens);
  const acc = new Float64Array(D);
  for (let i = 0; i < tokens; i++) {
    for (let h = 0; h < headsQ; h++) {
      const g = Math.floor(h / group);
      const qo = (i * headsQ + h) * D;
      let m = -Infinity;
      forEachKey(mask, i, (j) => {
        const ko = (j * headsKv + g) * D;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
        scores[j] = dot * scale;
        m = Math.max(m, scores[j]);
      });
      acc.fill(0);
      let l = 0;
      if (m !== -Infinity) {
        forEachKey(mask, i, (j) => {
          const p = Math.exp(scores[j] - m);
          l += p;
          const vo = (j * headsKv + g) * D;
          for (let d = 0; d < D; d++) acc[d] += p * v[vo + d];
        });
      }
      for (let d = 0; d < D; d++) out[qo + d] = l > 0 ? acc[d] / l : 0;
      lse[i * headsQ + h] = l > 0 ? m + Math.log(l) : -Infinity;
    }
  }
}

/** Adds dq, dk, dv (all [T, H, D] like q, k, v). */
export function denseAttentionBackward(
  dq: FloatArray,
  dk: FloatArray,
  dv: FloatArray,
  dout: FloatArray,
  q: FloatArray,
  k: FloatArray,
  v: FloatArray,
  lse: FloatArray,
  mask: MaskRows,
  s: AttnShape,
): void {
  const { tokens, headsQ, headsKv, headDim: D, scale } = s;
  const group = headsQ / headsKv;
  const probs = new Float64Array(tokens);
  const dprobs = new Float64Array(tokens);
  for (let i = 0; i < tokens; i++) {
    for (let h = 0; h < headsQ; h++) {
      const L = lse[i * headsQ + h];
      if (L === -Infinity) continue;
      const g = Math.floor(h / group);
      const qo = (i * headsQ + h) * D;
      let delta = 0;
      forEachKey(mask, i, (j) => {
        const ko = (j * headsKv + g) * D;
        let dot = 0;
        let dp = 0;
        for (let d = 0; d < D; d++) {
          dot += q[qo + d] * k[ko + d];
          dp += dout[qo + d] * v[ko + d];
        }
        probs[j] = Math.exp(dot * scale - L);
        dprobs[j] = dp;
        delta += probs[j] * dp;
      });
      forEachKey(mask, i, (j) => {
        const ko = (j * headsKv + g) * D;
        const p = probs[j];
        const ds = p * (dprobs[j] - delta) * scale;
        for (let d = 0; d < D; d++) {
          dq[qo + d] += ds * k[ko + d];
          dk[ko + d] += ds * q[qo + d];
          dv[ko + d] += p * dout[qo + d];
        }
      });
    }
  }
}

function forEachKey(mask: MaskRows, row: number, fn: (key: number) => void): void {
  for (let r = mask.rowStart[row]; r < mask.rowStart[row + 1]; r++) for (let j = mask.keyStart[r]; j < mask.keyEnd[r]; j++) fn(j);
}
