/**
 * What the model needs from a machine: memory, the one matrix product, and each layer's forward
 * and backward. The model (model.ts) and the optimizer (optim.ts) are written once against this
 * interface; cpu-ops.ts implements it in plain TypeScript over the library's `Tensor`
 * (float32, or float64 for gradient checks), gpu/ops.ts with cuBLASLt and our CUDA kernels over
 * `DeviceTensor` (bfloat16 activations, float32 master weights).
 *
 * Two precisions: 'act' is what activations and the matmuls' weight copies are stored in
 * (bfloat16 on the GPU); 'master' is what master weights, gradients, optimizer moments, the
 * residual stream and the norms' statistics are kept in (float32). On the CPU both are the
 * same dtype. Tokens, targets and positions are int32 arrays of the backend's index type I.
 */
import type { DType } from 'magi-attention';
import type { AdamWHyper } from './layers/adamw.js';
import type { MatmulShape } from './layers/matmul.js';
import type { RopeTable } from './layers/rope.js';

export type Precision = 'act' | 'master';

export interface Ops<T, I> {
  /** e.g. 'cpu-float32', 'gpu-bf16'. */
  readonly name: string;
  readonly actDtype: DType;
  readonly masterDtype: DType;

  /** A new tensor filled with zeros. */
  zeros(p: Precision, shape: readonly number[]): T;
  fromHost(p: Precision, shape: readonly number[], values: ArrayLike<number>): T;
  /** A copy of the elements as float64 (waits for pending work). */
  toHost(t: T): Float64Array;
  /** The elements [offset, offset + size) of t seen with another shape; never freed on its own. */
  view(t: T, shape: readonly number[], offset?: number): T;
  /** Gives an owned tensor's memory back (a no-op where memory is garbage-collected). */
  free(t: T): void;
  indices(values: Int32Array): I;
  freeIndices(i: I): void;

  zero(t: T): void;
  /** dst = src, converting the dtype when they differ (same element count). */
  copy(dst: T, src: T): void;
  /** dst += src (dst master; src master or act; same element count). */
  addInto(dst: T, src: T): void;
  /** C[m, n] = op(A)·op(B) + beta·C (row-major; see layers/matmul.ts). */
  gemm(c: T, a: T, b: T, shape: MatmulShape): void;

  /** out[t] = table[tokens[t]] (out master [T, dim], table master [V, dim]). */
  embeddingForward(out: T, tokens: I, table: T): void;
  /** dtable[tokens[t]] += dout[t]. */
  embeddingBackward(dtable: T, tokens: I, dout: T): void;
  /** out (act) = w ∘ x·rstd, rstd (master [T]) saved; x and w master. */
  rmsnormForward(out: T, rstd: T, x: T, w: T, eps: number): void;
  /** dx += ..., dw += ... (dx, dw, dout master). */
  rmsnormBackward(dx: T, dw: T, dout: T, x: T, w: T, rstd: T): void;
  /** Rotates x [T, H, D] (act) in place by each row's position. */
  ropeForward(x: T, positions: I, table: RopeTable): void;
  /** dst (act) = inverse rotation of src ([T, H, D], master or act). */
  ropeBackward(dst: T, src: T, positions: I, table: RopeTable): void;
  /** out = silu(a) ∘ b (all act). */
  swigluForward(out: T, a: T, b: T): void;
  swigluBackward(da: T, db: T, dout: T, a: T, b: T): void;
  /** Row losses (master [T]) and dlogits (act [T, V]) = (softmax − onehot)·scale; targets -1 count nothing. */
  crossEntropy(dlogits: T, rowLoss: T, logits: T, targets: I, scale: number): void;

  /** Σ t², in float64 on the host (waits). */
  sumOfSquares(t: T): number;
  /** One AdamW step of p with gradient g·gradScale (all master, same size). */
  adamw(p: T, g: T, m: T, v: T, h: AdamWHyper, gradScale: number): void;
  /** Waits until queued work is done. */
  synchronize(): void;
}

/** Element count of a shape. */
export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
