/**
 * How close a kernel's result must be to the float64 dense reference, per input dtype and per
 * quantity, and the one element-wise comparison used by the tests, the demo and the GPU checks.
 *
 * Kernel and reference see the SAME inputs: 16-bit inputs are rounded once when they are made and
 * the reference widens those rounded values exactly. The error sources of the CPU kernel are then:
 * (1) float32 storage and arithmetic: the TypeScript engine stores out, lse and gradients in
 *     float32 (tiles in float64); the WebAssembly engine also computes its tiles in float32
 *     (dot products of D terms, sums over at most 64 keys or rows per tile, tile partials added
 *     into float32 accumulators; the softmax denominators summed in float64). Errors stay a few
 *     float32 ulps (2^-24 relative) of the element or of the tensor's largest element: 1e-6 for
 *     out, lse and maxLogits, 1e-5 for gradients and dsink (sums over hundreds of rows whose
 *     terms cancel, and whose terms can exceed the result's largest element). Observed: mostly
 *     under 0.16x (dk) of these bounds for the WebAssembly engine on the test and demo shapes,
 *     once 0.48x (a bfloat16 dk element that cancels to 0 exactly in float64: 3.6e-6 against a
 *     largest |dk| of 0.74, seed 3087296882 of test/ffa-cpu-engines.test.ts, which failed the
 *     earlier 4e-6 bound); about 0.01x for the TypeScript engine.
 * (2) rounding the result to a 16-bit output dtype: at most half an ulp (2^-11 relative for
 *     float16, 2^-8 for bfloat16). One ulp (2^-10, 2^-7) is allowed on top of (1) for out, dq,
 *     dk and dv. lse, maxLogits and dsink are float32 for every input dtype.
 * The GPU kernels round P and dS to 16 bits before their matrix products, as FlashAttention
 * does, and will get their own table (reference 04 §4.3).
 */
import type { Tensor } from '../tensor.js';
import type { DType } from '../dtype.js';

/** |actual - expected| <= rtol·|expected| + atol·max|expected| element-wise. */
export interface Tolerance {
  rtol: number;
  /** In units of the largest finite |expected| of the tensor (1 if that is 0). */
  atol: number;
}

export type KernelQuantity = 'out' | 'lse' | 'grad' | 'dsink' | 'maxLogits';

const F32: Readonly<Record<KernelQuantity, Tolerance>> = {
  out: { rtol: 1e-6, atol: 1e-6 },
  lse: { rtol: 1e-6, atol: 1e-6 },
  maxLogits: { rtol: 1e-6, atol: 1e-6 },
  grad: { rtol: 4e-6, atol: 1e-5 },
  dsink: { rtol: 4e-6, atol: 1e-5 },
};

function withUlp(ulp: number): Readonly<Record<KernelQuantity, Tolerance>> {
  return { ...F32, out: { rtol: F32.out.rtol + ulp, atol: F32.out.atol }, grad: { rtol: F32.grad.rtol + ulp, atol: F32.grad.atol } };
}

/** The CPU kernel's tolerances by input dtype (float64 inputs are float32-exact in the tests). */
export const CPU_KERNEL_TOLERANCES: Readonly<Record<DType, Readonly<Record<KernelQuantity, Tolerance>>>> = {
  float32: F32,
  float64: F32,
  float16: withUlp(2 ** -10),
  bfloat16: withUlp(2 ** -7),
};

/**
 * Two float32-accumulating computations of the same 16-bit problem that differ only in the order
 * of their float32 roundings (GPU against CPU kernel, distributed against single device), each
 * rounding its result once to the 16-bit dtype: out and gradients within two bfloat16 ulps plus
 * one relative to the tensor's scale (for sums that cancel); lse and max logits (float32) 1e-5;
 * dsink (float32 sums over ranks) 1e-4.
 */
export const SIXTEEN_BIT_RUN_TOLERANCES: Readonly<Record<KernelQuantity, Tolerance>> = {
  out: { rtol: 2 ** -6, atol: 2 ** -8 },
  lse: { rtol: 1e-5, atol: 1e-5 },
  maxLogits: { rtol: 1e-5, atol: 1e-5 },
  grad: { rtol: 2 ** -6, atol: 2 ** -8 },
  dsink: { rtol: 1e-4, atol: 1e-4 },
};

export interface CloseReport {
  ok: boolean;
  /** Largest error / allowed bound over the tensor (<= 1 passes). */
  worstRatio: number;
  message: string;
}

/**
 * Compares element-wise. Non-finite values must match exactly: NaN only where both are NaN (the
 * kernels propagate NaN and Inf as IEEE arithmetic does, like the reference), an infinity only
 * where both hold the same one (e.g. lse = -inf for rows that see no key).
 */
export function compareClose(actual: Tensor, expected: Tensor, tol: Tolerance, label: string): CloseReport {
  if (actual.shape.join() !== expected.shape.join()) {
    return { ok: false, worstRatio: Infinity, message: `${label}: shape [${actual.shape}] vs expected [${expected.shape}]` };
  }
  const a = actual.toFloat64();
  const e = expected.toFloat64();
  let scale = 0;
  for (const x of e) if (Number.isFinite(x) && Math.abs(x) > scale) scale = Math.abs(x);
  if (scale === 0) scale = 1;
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < a.length; i++) {
    let ratio: number;
    if (Number.isNaN(a[i]) || Number.isNaN(e[i])) ratio = Number.isNaN(a[i]) && Number.isNaN(e[i]) ? 0 : Infinity;
    else if (!Number.isFinite(e[i]) || !Number.isFinite(a[i])) ratio = a[i] === e[i] ? 0 : Infinity;
    else ratio = Math.abs(a[i] - e[i]) / (tol.rtol * Math.abs(e[i]) + tol.atol * scale);
    if (!(ratio <= worst)) {
      worst = ratio;
      worstAt = i;
    }
  }
  const where = worstAt < 0 ? '' : ` at ${unravel(worstAt, actual.shape)}: got ${a[worstAt]}, expected ${e[worstAt]}`;
  return {
    ok: worst <= 1,
    worstRatio: worst,
    message: `${label}: worst error is ${worst.toPrecision(3)}x the allowed (rtol ${Number(tol.rtol.toPrecision(3))}, atol ${Number(tol.atol.toPrecision(3))}·${scale.toPrecision(3)})${where}`,
  };
}

function unravel(i: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(i % shape[d]);
    i = Math.floor(i / shape[d]);
  }
  return `[${idx.join(', ')}]`;
}
