/**
 * Layout changes between the public token-major tensors ([T, H, D], any dtype) and the
 * head-major float32 buffers ([H, T, D]) the CPU main loops work on. Head-major keeps one head's
 * rows contiguous, so a tile of queries or keys is a single contiguous block of memory.
 * Per-row values (lse, Δ) follow the same two layouts as [T, H] and [H, T].
 */
import { Tensor } from '../../tensor.js';
import { type DType, fromNumbers, toFloat32Array } from '../../dtype.js';

/** [T, H, D] values -> [H, T, D] (a new array of the same type; the input itself when H = 1). */
export function tokenToHeadMajor<A extends Float32Array | Float64Array>(buf: A, tokens: number, heads: number, dim: number): A {
  if (heads === 1) return buf;
  const out = buf instanceof Float64Array ? new Float64Array(buf.length) : new Float32Array(buf.length);
  for (let tok = 0; tok < tokens; tok++) {
    for (let h = 0; h < heads; h++) {
      const src = (tok * heads + h) * dim;
      out.set(buf.subarray(src, src + dim), (h * tokens + tok) * dim);
    }
  }
  return out as A;
}

/** [H, T, D] values -> [T, H, D] (a new array of the same type; the input itself when H = 1). */
export function headToTokenMajor<A extends Float32Array | Float64Array>(buf: A, tokens: number, heads: number, dim: number): A {
  if (heads === 1) return buf;
  const out = buf instanceof Float64Array ? new Float64Array(buf.length) : new Float32Array(buf.length);
  for (let h = 0; h < heads; h++) {
    for (let tok = 0; tok < tokens; tok++) {
      const src = (h * tokens + tok) * dim;
      out.set(buf.subarray(src, src + dim), (tok * heads + h) * dim);
    }
  }
  return out as A;
}

/** A rank-3 [T, H, D] tensor of any dtype -> float32 [H, T, D]. */
export function toHeadMajor(t: Tensor): Float32Array {
  const [tokens, heads, dim] = t.shape;
  return tokenToHeadMajor(toFloat32Array(t.dtype, t.data), tokens, heads, dim);
}

/** Head-major float32 buffer -> a new token-major tensor of `dtype` (rounded to nearest even). */
export function fromHeadMajor(buf: Float32Array, tokens: number, heads: number, dim: number, dtype: DType): Tensor {
  return new Tensor(dtype, [tokens, heads, dim], fromNumbers(dtype, headToTokenMajor(buf, tokens, heads, dim)));
}

/** Adds a head-major buffer into a token-major float32 tensor in place (gradient accumulation). */
export function addHeadMajorInto(target: Tensor, buf: Float32Array): void {
  const [tokens, heads, dim] = target.shape;
  const dst = target.data as Float32Array;
  for (let h = 0; h < heads; h++) {
    for (let tok = 0; tok < tokens; tok++) {
      const src = (h * tokens + tok) * dim;
      const d0 = (tok * heads + h) * dim;
      for (let d = 0; d < dim; d++) dst[d0 + d] += buf[src + d];
    }
  }
}
