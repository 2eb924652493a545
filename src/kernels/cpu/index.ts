/**
 * The CPU kernel backend: flex-flash-attention in plain TypeScript, single-threaded, for any host
 * Tensor. It is the embedded default and the backend every other one is checked against; it
 * uses no Node-only module, so it runs in a browser too.
 *
 * Arguments are trusted: the public functions in ../flex-flash-attn.ts validate them first.
 * Inputs of any dtype are widened to float32 head-major buffers; all arithmetic then happens in
 * float32-or-wider (JS doubles on float32 data) and results are narrowed once at the end.
 * The per-call accumulator holds out in float32 and lse in float64 (it is tiny, and lse feeds
 * every merge weight); the lse handed back is float32.
 * The work is sequential, so every result is bit-reproducible and `deterministic` changes nothing.
 *
 * max_logits is the max of the logit z after softcap (tanh units times the cap), i.e. the value
 * that actually enters the softmax; the reference system scales a softcapped max by the softmax
 * scale instead, which we consider a bug and do not copy.
 */
import { Tensor } from '../../tensor.js';
import { fromNumbers } from '../../dtype.js';
import type { FfaBackwardArgs, FfaBackwardResult, FfaForwardArgs, FfaForwardResult, KernelBackend } from '../backend.js';
import { backwardSlices, rowDots } from './backward.js';
import { forwardSlices } from './forward.js';
import { addHeadMajorInto, fromHeadMajor, headToTokenMajor, toHeadMajor, tokenToHeadMajor } from './layout.js';
import { mergeRow } from '../../lse-merge.js';
import { applySink, sinkGrad } from './sink.js';

function cpuForward(args: FfaForwardArgs<Tensor>): FfaForwardResult<Tensor> {
  const { q, k, v, slices, softmaxScale, softcap, sink, outAcc, lseAcc, maxLogitsAcc } = args;
  const [tokensQ, headsQ, dim] = q.shape;
  const [tokensK, headsKv] = k.shape;
  const rows = tokensQ * headsQ;

  const partOut = new Float32Array(rows * dim);
  const partLse = new Float64Array(rows).fill(-Infinity);
  const maxLogits = new Float64Array(headsQ).fill(-Infinity);
  forwardSlices(
    { q: toHeadMajor(q), k: toHeadMajor(k), v: toHeadMajor(v), tokensQ, tokensK, headsQ, headsKv, dim, slices, scale: softmaxScale, softcap },
    { out: partOut, lse: partLse, maxLogits },
  );

  // From here on everything is row-wise, in the caller's token-major layout.
  let out: Float32Array | Float64Array = headToTokenMajor(partOut, tokensQ, headsQ, dim);
  let lse: Float64Array = headToTokenMajor(partLse, tokensQ, headsQ, 1);
  const accumulate = outAcc !== undefined && lseAcc !== undefined;
  if (accumulate) {
    // Rows this call did not touch keep their exact values (their new weight is 0).
    const part = out;
    const partL = lse;
    out = outAcc.dtype === 'float64' ? (outAcc.data as Float64Array).slice() : outAcc.toFloat32();
    lse = Float64Array.from(lseAcc.data);
    for (let r = 0; r < rows; r++) lse[r] = mergeRow(out, r * dim, lse[r], part, r * dim, partL[r], dim);
  }
  if (sink !== undefined) applySink(out, lse, sink.data, sink.shape[0], headsQ, dim);

  const result: FfaForwardResult<Tensor> = accumulate
    ? { out: outAcc, lse: lseAcc }
    : { out: new Tensor(args.outDtype, [tokensQ, headsQ, dim], fromNumbers(args.outDtype, out)), lse: Tensor.zeros('float32', [tokensQ, headsQ]) };
  if (accumulate) result.out.data.set(fromNumbers(result.out.dtype, out));
  result.lse.data.set(lse);

  if (maxLogitsAcc !== undefined) {
    const accData = maxLogitsAcc.data as Float32Array;
    for (let h = 0; h < headsQ; h++) if (maxLogits[h] > accData[h]) accData[h] = maxLogits[h];
    result.maxLogits = maxLogitsAcc;
  } else if (args.returnMaxLogits) {
    result.maxLogits = Tensor.fromValues('float32', [headsQ], maxLogits);
  }
  return result;
}

function cpuBackward(args: FfaBackwardArgs<Tensor>): FfaBackwardResult<Tensor> {
  const { q, k, v, dout, out, lse, slices, softmaxScale, softcap, sink } = args;
  const [tokensQ, headsQ, dim] = q.shape;
  const [tokensK, headsKv] = k.shape;
  const doutRows = dout.toFloat32();
  const delta = rowDots(out.toFloat32(), doutRows, tokensQ * headsQ, dim);

  const dq = new Float32Array(q.size);
  const dk = new Float32Array(k.size);
  const dv = new Float32Array(v.size);
  backwardSlices(
    {
      q: toHeadMajor(q),
      k: toHeadMajor(k),
      v: toHeadMajor(v),
      dout: tokenToHeadMajor(doutRows, tokensQ, headsQ, dim),
      lse: tokenToHeadMajor(Float64Array.from(lse.data), tokensQ, headsQ, 1),
      delta: tokenToHeadMajor(delta, tokensQ, headsQ, 1),
      tokensQ,
      tokensK,
      headsQ,
      headsKv,
      dim,
      slices,
      scale: softmaxScale,
      softcap,
    },
    { dq, dk, dv },
  );

  const grad = (buf: Float32Array, like: Tensor, acc: Tensor | undefined): Tensor => {
    if (acc === undefined) return fromHeadMajor(buf, like.shape[0], like.shape[1], like.shape[2], like.dtype);
    addHeadMajorInto(acc, buf);
    return acc;
  };
  const result: FfaBackwardResult<Tensor> = {
    dq: grad(dq, q, args.dqAcc),
    dk: grad(dk, k, args.dkAcc),
    dv: grad(dv, v, args.dvAcc),
  };
  if (sink !== undefined) result.dsink = new Tensor('float32', sink.shape, sinkGrad(sink.data, sink.shape[0], headsQ, lse.data, delta));
  return result;
}

export const cpuBackend: KernelBackend<Tensor> = {
  name: 'cpu',
  accepts: (tensor: Tensor) => tensor instanceof Tensor,
  forward: cpuForward,
  backward: cpuBackward,
};

export { logAddExp, mergeRow, mergeOutLseInto } from '../../lse-merge.js';
