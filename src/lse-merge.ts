/**
 * The log-sum-exp merge of partial attention results over disjoint key multisets: the one place
 * that knows the -inf rules. Every combination in the CPU kernel goes through here (tile partials
 * into the per-call accumulator, a call's result into a caller's (out, lse), the sink), and the
 * tensor-level form is what the distributed runtime uses to fold remote partials.
 *
 * Rules: a side whose lse is -inf has weight exactly 0 and its output is never read (so garbage
 * or NaN in an unwritten accumulator cannot leak); when both sides are -inf the result is
 * lse = -inf, out = 0.
 */
import type { Tensor } from './tensor.js';
import { fromNumbers } from './dtype.js';

/** log(exp(a) + exp(b)), overflow-safe; -inf when both are -inf (never NaN). */
export function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const hi = a > b ? a : b;
  const lo = a > b ? b : a;
  return hi + Math.log1p(Math.exp(lo - hi));
}

/**
 * Merges the partial row `part[partOff .. partOff+dim)` with log-sum-exp `partLse` into the
 * accumulator row `acc[accOff ..]` whose log-sum-exp is `accLse`; writes the merged row into
 * `acc` and returns the merged log-sum-exp.
 */
export function mergeRow(
  acc: Float32Array | Float64Array,
  accOff: number,
  accLse: number,
  part: Float32Array | Float64Array,
  partOff: number,
  partLse: number,
  dim: number,
): number {
  if (partLse === -Infinity) {
    if (accLse === -Infinity) acc.fill(0, accOff, accOff + dim);
    return accLse;
  }
  if (accLse === -Infinity) {
    for (let d = 0; d < dim; d++) acc[accOff + d] = part[partOff + d];
    return partLse;
  }
  const lse = logAddExp(accLse, partLse);
  const wAcc = Math.exp(accLse - lse);
  const wPart = Math.exp(partLse - lse);
  for (let d = 0; d < dim; d++) acc[accOff + d] = wAcc * acc[accOff + d] + wPart * part[partOff + d];
  return lse;
}

/**
 * Folds a partial result (out [T, H, D] of any dtype, lse float32 [T, H]) into an accumulator of
 * the same shapes in place: accOut in its own dtype (computed in float64, rounded once), accLse
 * float32. Shapes are the caller's responsibility.
 */
export function mergeOutLseInto(accOut: Tensor, accLse: Tensor, out: Tensor, lse: Tensor): void {
  const rows = accLse.size;
  const dim = rows === 0 ? 0 : accOut.size / rows;
  const acc = accOut.toFloat64();
  const part = out.toFloat64();
  const accL = accLse.data as Float32Array;
  for (let r = 0; r < rows; r++) accL[r] = mergeRow(acc, r * dim, accL[r], part, r * dim, lse.at(r), dim);
  accOut.data.set(fromNumbers(accOut.dtype, acc));
}
