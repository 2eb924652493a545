/**
 * The SwiGLU gate (the CPU twin of kernels/swiglu.cu): h = silu(a) ∘ b with a = x·W_gateᵀ,
 * b = x·W_upᵀ, silu(a) = a·σ(a). Backward: da = dh ∘ b ∘ σ(a)·(1 + a·(1 − σ(a))), db = dh ∘ silu(a).
 */
import type { FloatArray } from './matmul.js';

export function swigluForward(out: FloatArray, a: FloatArray, b: FloatArray, n: number): void {
  for (let i = 0; i < n; i++) {
    const x = a[i];
    out[i] = (x / (1 + Math.exp(-x))) * b[i];
  }
}

export function swigluBackward(da: FloatArray, db: FloatArray, dout: FloatArray, a: FloatArray, b: FloatArray, n: number): void {
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const sig = 1 / (1 + Math.exp(-x));
    const g = dout[i];
    const bi = b[i];
    da[i] = g * bi * sig * (1 + x * (1 - sig));
    db[i] = g * x * sig;
  }
}
