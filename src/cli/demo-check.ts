/**
 * The demo's float64 check: every output of the kernel against the dense float64 reference, on a
 * stratified random sample of query rows (out, lse, dq: all heads and dims of each) and of keys
 * (dk, dv), each value exact in float64. The whole reference costs O(T²·H·D) in plain JavaScript
 * and dominated the demo; a sample of 256 rows and 256 keys out of 4096 costs a sixteenth of it
 * and still sees every part of the mask (one row or key from each of 256 equal strata).
 */
import { Tensor } from '../tensor.js';
import type { SliceList } from '../mask/slice-list.js';
import { referenceBackward, referenceForward } from '../kernels/reference.js';
import { compareClose, CPU_KERNEL_TOLERANCES, type CloseReport } from '../kernels/tolerance.js';
import type { Rng } from '../util/rng.js';

export interface SampledCheckInputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  dout: Tensor;
  slices: SliceList;
  softmaxScale: number;
  /** The kernel's results. */
  out: Tensor;
  lse: Tensor;
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
}

export interface SampledCheck {
  reports: CloseReport[];
  /** Query rows and keys checked, out of how many. */
  rows: number;
  keys: number;
  tokensQ: number;
  tokensK: number;
}

/** One token drawn from each of min(n, count) equal strata of [0, n), ascending. */
export function stratifiedSample(n: number, count: number, rng: Rng): Int32Array {
  if (n <= count) return Int32Array.from({ length: n }, (_, i) => i);
  return Int32Array.from({ length: count }, (_, s) => {
    const lo = Math.floor((s * n) / count);
    const hi = Math.floor(((s + 1) * n) / count);
    return lo + Math.floor(rng.next() * (hi - lo));
  });
}

/** Rows `tokens` of a [T, ...] tensor, as a new tensor of the same dtype. */
function takeRows(t: Tensor, tokens: Int32Array): Tensor {
  const per = t.size / t.shape[0];
  const data = t.data.constructor as new (n: number) => typeof t.data;
  const out = new data(tokens.length * per);
  for (let i = 0; i < tokens.length; i++) out.set(t.data.subarray(tokens[i] * per, (tokens[i] + 1) * per), i * per);
  return new Tensor(t.dtype, [tokens.length, ...t.shape.slice(1)], out);
}

/** Checks the kernel's results against the float64 reference on `samples` rows and keys. */
export function checkOnSample(x: SampledCheckInputs, rng: Rng, samples = 256): SampledCheck {
  const rows = stratifiedSample(x.q.shape[0], samples, rng);
  const keys = stratifiedSample(x.k.shape[0], samples, rng);
  const common = { slices: x.slices, softmaxScale: x.softmaxScale, softcap: 0, deterministic: true };
  const [q64, k64, v64] = [x.q, x.k, x.v].map((t) => t.to('float64'));
  const ref = referenceForward({ ...common, q: q64, k: k64, v: v64, returnMaxLogits: false, outDtype: 'float64' }, { rows });
  // The backward is a function of the out and lse it is given: both sides get the kernel's own
  // (rounded) forward results, so the comparison isolates the backward's error.
  const refGrad = referenceBackward({ ...common, q: q64, k: k64, v: v64, dout: x.dout.to('float64'), out: x.out.to('float64'), lse: x.lse }, { rows, keys });
  const tol = CPU_KERNEL_TOLERANCES[x.q.dtype];
  return {
    reports: [
      compareClose(takeRows(x.out, rows), ref.out, tol.out, 'out'),
      compareClose(takeRows(x.lse, rows), ref.lse, tol.lse, 'lse'),
      compareClose(takeRows(x.dq, rows), refGrad.dq, tol.grad, 'dq'),
      compareClose(takeRows(x.dk, keys), refGrad.dk, tol.grad, 'dk'),
      compareClose(takeRows(x.dv, keys), refGrad.dv, tol.grad, 'dv'),
    ],
    rows: rows.length,
    keys: keys.length,
    tokensQ: x.q.shape[0],
    tokensK: x.k.shape[0],
  };
}
