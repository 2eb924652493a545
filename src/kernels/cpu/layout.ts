/**
 * Layout changes between the public token-major tensors ([T, H, D]) and the head-major float32
 * blocks ([G, T, D], the G query heads of one kv head, or the one kv head itself) that the CPU
 * engines work on one kv head at a time. Head-major keeps one head's rows contiguous, so a tile
 * of queries or keys is a single block of memory. Per-row values (lse, Δ) are the same with
 * D = 1.
 */

/**
 * dst[dstOff + (g·T + t)·ld + d] = src[(t·H + h0 + g)·D + d] for g < count: the heads
 * h0 .. h0 + count - 1 of a token-major buffer, head-major, each row `ld` >= D wide with its
 * padding set to 0 (converted to dst's element type).
 */
export function gatherHeads(
  dst: Float32Array | Float64Array,
  dstOff: number,
  src: ArrayLike<number>,
  tokens: number,
  heads: number,
  h0: number,
  count: number,
  dim: number,
  ld = dim,
): void {
  for (let g = 0; g < count; g++) {
    for (let t = 0; t < tokens; t++) {
      const s = (t * heads + h0 + g) * dim;
      const o = dstOff + (g * tokens + t) * ld;
      for (let d = 0; d < dim; d++) dst[o + d] = src[s + d];
      for (let d = dim; d < ld; d++) dst[o + d] = 0;
    }
  }
}

/** The inverse of gatherHeads: writes `count` head-major heads (rows `ld` wide) back into token-major dst at heads h0 ... */
export function scatterHeads(
  dst: Float32Array | Float64Array,
  src: Float32Array | Float64Array,
  srcOff: number,
  tokens: number,
  heads: number,
  h0: number,
  count: number,
  dim: number,
  ld = dim,
): void {
  for (let g = 0; g < count; g++) {
    for (let t = 0; t < tokens; t++) {
      const o = (t * heads + h0 + g) * dim;
      const s = srcOff + (g * tokens + t) * ld;
      for (let d = 0; d < dim; d++) dst[o + d] = src[s + d];
    }
  }
}

/** Whether every element is finite: the engines skip masked cells explicitly only when one is not. */
export function allFinite(...bufs: ArrayLike<number>[]): boolean {
  for (const b of bufs) {
    for (let i = 0; i < b.length; i++) {
      const x = b[i];
      if (x - x !== 0) return false; // NaN and ±Inf give NaN
    }
  }
  return true;
}
