/**
 * Cross-entropy over the vocabulary with its gradient, fused (the CPU twin of
 * kernels/cross_entropy.cu): for a row with target y, loss = logsumexp(z) − z_y and
 * dz = (softmax(z) − onehot(y))·scale; rows with target -1 give loss 0 and dz 0. `scale` is
 * 1 / (valid targets of the whole batch), so the gradient is that of the mean loss. dlogits may
 * be the logits array itself.
 */
import type { FloatArray } from './matmul.js';

/** Writes dlogits and each row's loss; returns the sum of the row losses. */
export function crossEntropy(dlogits: FloatArray, rowLoss: FloatArray, logits: FloatArray, targets: Int32Array, vocab: number, scale: number): number {
  let total = 0;
  for (let t = 0; t < targets.length; t++) {
    const o = t * vocab;
    const y = targets[t];
    if (y < 0) {
      rowLoss[t] = 0;
      dlogits.fill(0, o, o + vocab);
      continue;
    }
    let m = -Infinity;
    for (let i = 0; i < vocab; i++) m = Math.max(m, logits[o + i]);
    let se = 0;
    for (let i = 0; i < vocab; i++) se += Math.exp(logits[o + i] - m);
    const lse = m + Math.log(se);
    const loss = lse - logits[o + y];
    rowLoss[t] = loss;
    total += loss;
    for (let i = 0; i < vocab; i++) dlogits[o + i] = (Math.exp(logits[o + i] - lse) - (i === y ? 1 : 0)) * scale;
  }
  return total;
}
