/**
 * The baseline that `bench:cpu` measures the tiled kernel against: attention the plain way, as
 * a framework without a fused kernel does it. Per head it materialises the whole score matrix
 * S = scale·QKᵀ, fills masked cells with -inf from a dense mask, softmaxes the rows in place and
 * multiplies by V; the backward keeps P and dP as full matrices. Memory grows with Tq·Tk, and
 * every cell is computed whether the mask keeps it or not. float32 throughout, one thread.
 */
import type { Tensor } from '../src/tensor.js';
import type { SliceList } from '../src/mask/slice-list.js';
import { denseMaskCounts } from '../src/mask/dense.js';

interface HeadMajor {
  data: Float32Array;
  tokens: number;
  heads: number;
  dim: number;
}

/** [T, H, D] token-major -> [H, T, D] head-major float32. */
function headMajor(t: Tensor): HeadMajor {
  const [tokens, heads, dim] = t.shape;
  const src = t.toFloat32();
  const data = new Float32Array(src.length);
  for (let s = 0; s < tokens; s++) {
    for (let h = 0; h < heads; h++) data.set(src.subarray((s * heads + h) * dim, (s * heads + h + 1) * dim), (h * tokens + s) * dim);
  }
  return { data, tokens, heads, dim };
}

function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  for (let d = 0; d < n; d += 4) {
    s0 += a[ao + d] * b[bo + d];
    s1 += a[ao + d + 1] * b[bo + d + 1];
    s2 += a[ao + d + 2] * b[bo + d + 2];
    s3 += a[ao + d + 3] * b[bo + d + 3];
  }
  return s0 + s1 + s2 + s3;
}

export interface DenseRunResult {
  /** Seconds spent in the forward and the backward. */
  forwardSeconds: number;
  backwardSeconds: number;
  /** A checksum of out and dq so the work cannot be optimised away and can be compared. */
  checksum: number;
}

/** Forward and backward, timed separately. Head dim must be a multiple of 4. */
export function denseAttentionForwardBackward(q: Tensor, k: Tensor, v: Tensor, dout: Tensor, slices: SliceList): DenseRunResult {
  const Q = headMajor(q);
  const K = headMajor(k);
  const V = headMajor(v);
  const dO = headMajor(dout);
  const tq = Q.tokens;
  const tk = K.tokens;
  const dim = Q.dim;
  const group = Q.heads / K.heads;
  const scale = 1 / Math.sqrt(dim);

  const t0 = performance.now();
  const mask = denseMaskCounts(slices, tq, tk);
  const out = new Float32Array(Q.heads * tq * dim);
  const lse = new Float32Array(Q.heads * tq);
  const probs: Float32Array[] = [];
  for (let h = 0; h < Q.heads; h++) {
    const kvh = Math.floor(h / group);
    const P = new Float32Array(tq * tk);
    for (let i = 0; i < tq; i++) {
      const qo = (h * tq + i) * dim;
      let m = -Infinity;
      for (let j = 0; j < tk; j++) {
        const s = dot(Q.data, qo, K.data, (kvh * tk + j) * dim, dim) * scale;
        const c = mask[i * tk + j];
        // A cell covered by two slices counts twice in the softmax, as in the kernels.
        const z = c === 0 ? -Infinity : c === 1 ? s : s + Math.log(c);
        P[i * tk + j] = z;
        if (z > m) m = z;
      }
      let l = 0;
      if (m !== -Infinity) for (let j = 0; j < tk; j++) l += P[i * tk + j] = Math.exp(P[i * tk + j] - m);
      else P.fill(0, i * tk, (i + 1) * tk);
      const inv = l > 0 ? 1 / l : 0;
      lse[h * tq + i] = l > 0 ? m + Math.log(l) : -Infinity;
      const oo = (h * tq + i) * dim;
      for (let j = 0; j < tk; j++) {
        const p = (P[i * tk + j] *= inv);
        const vo = (kvh * tk + j) * dim;
        for (let d = 0; d < dim; d++) out[oo + d] += p * V.data[vo + d];
      }
    }
    probs.push(P);
  }
  const t1 = performance.now();

  const dq = new Float32Array(Q.heads * tq * dim);
  const dk = new Float32Array(K.heads * tk * dim);
  const dv = new Float32Array(K.heads * tk * dim);
  const dP = new Float32Array(tq * tk);
  for (let h = 0; h < Q.heads; h++) {
    const kvh = Math.floor(h / group);
    const P = probs[h];
    for (let i = 0; i < tq; i++) {
      const oo = (h * tq + i) * dim;
      const delta = dot(out, oo, dO.data, oo, dim);
      for (let j = 0; j < tk; j++) {
        const p = P[i * tk + j];
        const ko = (kvh * tk + j) * dim;
        for (let d = 0; d < dim; d++) dv[ko + d] += p * dO.data[oo + d];
        dP[i * tk + j] = p * (dot(dO.data, oo, V.data, ko, dim) - delta);
      }
    }
    for (let i = 0; i < tq; i++) {
      const qo = (h * tq + i) * dim;
      for (let j = 0; j < tk; j++) {
        const ds = dP[i * tk + j] * scale;
        const ko = (kvh * tk + j) * dim;
        for (let d = 0; d < dim; d++) {
          dq[qo + d] += ds * K.data[ko + d];
          dk[ko + d] += ds * Q.data[qo + d];
        }
      }
    }
    probs[h] = new Float32Array(0); // release this head's P before the next one allocates
  }
  const t2 = performance.now();
  let checksum = 0;
  for (let i = 0; i < out.length; i += 97) checksum += out[i] + dq[i];
  return { forwardSeconds: (t1 - t0) / 1000, backwardSeconds: (t2 - t1) / 1000, checksum };
}
