/**
 * The learnable attention sink: S extra logits per query head that join every row's softmax
 * denominator but carry a zero value vector. The forward folds them in after all slices (a
 * log-sum-exp merge with an all-zero partial); the backward's only extra output is dsink.
 * Rows here are token-major: row t·H + h is token t, head h.
 */
import { logAddExp } from '../../lse-merge.js';

/** log Σ_s exp(sink[s, h]) for head h of a float32 [S, H] sink. */
export function sinkLse(sink: ArrayLike<number>, sinkCount: number, heads: number, h: number): number {
  let lse = -Infinity;
  for (let s = 0; s < sinkCount; s++) lse = logAddExp(lse, sink[s * heads + h]);
  return lse;
}

/**
 * Applies the sink in place to out [T, H, D] and lse [T, H]: lse~ = logaddexp(lse, lse_sink),
 * out *= exp(lse - lse~). A row that saw no key gets out = 0 and lse~ = lse_sink.
 */
export function applySink(out: Float32Array | Float64Array, lse: Float64Array, sink: ArrayLike<number>, sinkCount: number, heads: number, dim: number): void {
  const perHead = Array.from({ length: heads }, (_, h) => sinkLse(sink, sinkCount, heads, h));
  for (let row = 0; row < lse.length; row++) {
    const old = lse[row];
    const merged = logAddExp(old, perHead[row % heads]);
    lse[row] = merged;
    const off = row * dim;
    if (old === -Infinity) {
      out.fill(0, off, off + dim);
      continue;
    }
    const w = Math.exp(old - merged);
    if (w === 1) continue;
    for (let d = 0; d < dim; d++) out[off + d] *= w;
  }
}

/**
 * dsink[s, h] = -Σ_t exp(sink[s, h] - lse_t) · Δ_t from the final lse [T, H] and Δ [T, H]; a row
 * with lse = -inf (nothing seen, sink of -inf) contributes 0.
 */
export function sinkGrad(sink: ArrayLike<number>, sinkCount: number, heads: number, lse: ArrayLike<number>, delta: ArrayLike<number>): Float32Array {
  const dsink = new Float64Array(sinkCount * heads);
  for (let row = 0; row < lse.length; row++) {
    const l = lse[row];
    const dt = delta[row];
    if (l === -Infinity) continue;
    const h = row % heads;
    for (let s = 0; s < sinkCount; s++) dsink[s * heads + h] -= Math.exp(sink[s * heads + h] - l) * dt;
  }
  return Float32Array.from(dsink);
}
