/**
 * AdamW with the global-norm clip, PyTorch's arithmetic (the CPU twin of kernels/adamw.cu and of
 * torch.optim.AdamW + clip_grad_norm_, which the PyTorch twin runs):
 *   clip: c = min(1, maxNorm / (‖g‖ + 1e-6)), g ← g·c
 *   p ← p·(1 − lr·wd);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
 */
import type { FloatArray } from './matmul.js';

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count (bias correction). */
  step: number;
}

/** The clip coefficient of a gradient with global norm `norm` (PyTorch's clip_grad_norm_). */
export function clipCoefficient(norm: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (norm + 1e-6));
}

/** One AdamW step of n elements; `gradScale` multiplies the gradient first (the clip coefficient). */
export function adamwUpdate(p: FloatArray, g: FloatArray, m: FloatArray, v: FloatArray, n: number, h: AdamWHyper, gradScale: number): void {
  const bc1 = 1 - h.beta1 ** h.step;
  const bc2Sqrt = Math.sqrt(1 - h.beta2 ** h.step);
  const stepSize = h.lr / bc1;
  const decay = 1 - h.lr * h.weightDecay;
  for (let i = 0; i < n; i++) {
    const gi = g[i] * gradScale;
    const mi = h.beta1 * m[i] + (1 - h.beta1) * gi;
    const vi = h.beta2 * v[i] + (1 - h.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + h.eps);
  }
}

export function sumOfSquares(g: FloatArray, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += g[i] * g[i];
  return s;
}
