/**
 * The kernel backend: one narrow interface that every flex-flash-attention implementation (the
 * TypeScript CPU kernel, the CUDA kernels) fills in. Everything above it (the public function, the
 * distributed runtime) talks only to this interface and never knows which backend runs.
 *
 * Contract (shared by all backends):
 *   q [Tq, Hq, D], k/v [Tk, Hkv, D] with Hq % Hkv == 0 (query head h reads kv head floor(h / (Hq/Hkv)));
 *   out [Tq, Hq, D] in `outDtype`, lse [Tq, Hq] float32 (natural log), maxLogits [Hq] float32.
 *   The softmax of row t runs over the multiset of keys that every slice covering t contributes.
 *   Rows that see no key get out = 0 and lse = -inf (or lse = logsumexp(sink) with a sink).
 */
import type { Tensor } from '../tensor.js';
import type { DType } from '../dtype.js';
import type { SliceList } from '../mask/slice-list.js';

export interface FfaForwardArgs<T = Tensor> {
  q: T;
  k: T;
  v: T;
  slices: SliceList;
  softmaxScale: number;
  /** 0 disables; otherwise logits become softcap * tanh(logit / softcap). */
  softcap: number;
  /** Learnable sink logits, float32 [S_sink, Hq]; counted once in every row's denominator. */
  sink?: T;
  /** If given (with lseAcc), the result is merged into these buffers in place by log-sum-exp. */
  outAcc?: T;
  lseAcc?: T;
  returnMaxLogits: boolean;
  /** If given, max-merged in place. */
  maxLogitsAcc?: T;
  /** dtype of a freshly allocated `out` (ignored with outAcc). */
  outDtype: DType;
  deterministic: boolean;
  /** Device backends queue the work on this stream (the device layer's Stream); host backends ignore it. */
  stream?: object;
}

export interface FfaForwardResult<T = Tensor> {
  out: T;
  lse: T;
  maxLogits?: T;
}

export interface FfaBackwardArgs<T = Tensor> {
  dout: T;
  q: T;
  k: T;
  v: T;
  /** The final forward output and lse (after every merge and the sink). */
  out: T;
  lse: T;
  slices: SliceList;
  softmaxScale: number;
  softcap: number;
  sink?: T;
  /** If given, gradients are added into these float32 buffers in place. */
  dqAcc?: T;
  dkAcc?: T;
  dvAcc?: T;
  deterministic: boolean;
  /** Device backends queue the work on this stream (the device layer's Stream); host backends ignore it. */
  stream?: object;
}

export interface FfaBackwardResult<T = Tensor> {
  dq: T;
  dk: T;
  dv: T;
  dsink?: T;
}

export interface KernelBackend<T = Tensor> {
  /** Short name used in logs and benchmark tables ("cpu", "cuda"). */
  readonly name: string;
  /** Whether this backend can run on these tensors (where they live, their dtype). */
  accepts(tensor: T): boolean;
  /** Forward attention over the slice list. */
  forward(args: FfaForwardArgs<T>): FfaForwardResult<T>;
  /** Gradients of a scalar loss through forward, given dL/dout. */
  backward(args: FfaBackwardArgs<T>): FfaBackwardResult<T>;
}
