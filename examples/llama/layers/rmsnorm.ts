/**
 * RMSNorm, forward and backward (the CPU twin of kernels/rmsnorm.cu). Per row t of x [T, D]:
 *   r_t = 1 / sqrt(mean_i x_ti² + eps),  x̂ = x·r,  y = w ∘ x̂.
 * Backward, with g = dy ∘ w:  dx = r·(g − x̂·mean_i(g ∘ x̂)),  dw = Σ_t dy ∘ x̂.
 * The backward adds into dx and dw (dx is the residual stream's gradient).
 */
import type { FloatArray } from './matmul.js';

export function rmsnormForward(out: FloatArray, rstd: FloatArray, x: FloatArray, w: FloatArray, rows: number, dim: number, eps: number): void {
  for (let t = 0; t < rows; t++) {
    const o = t * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const r = 1 / Math.sqrt(ss / dim + eps);
    rstd[t] = r;
    for (let i = 0; i < dim; i++) out[o + i] = w[i] * (x[o + i] * r);
  }
}

export function rmsnormBackward(dx: FloatArray, dw: FloatArray, dout: FloatArray, x: FloatArray, w: FloatArray, rstd: FloatArray, rows: number, dim: number): void {
  const dwAcc = new Float64Array(dim);
  for (let t = 0; t < rows; t++) {
    const o = t * dim;
    const r = rstd[t];
    let dot = 0;
    for (let i = 0; i < dim; i++) dot += dout[o + i] * w[i] * x[o + i] * r;
    const mean = dot / dim;
    for (let i = 0; i < dim; i++) {
      const xh = x[o + i] * r;
      dx[o + i] += r * (dout[o + i] * w[i] - xh * mean);
      dwAcc[i] += dout[o + i] * xh;
    }
  }
  for (let i = 0; i < dim; i++) dw[i] += dwAcc[i];
}
