/**
 * A dense float64 oracle for flex-flash-attention, used by the tests of every backend. It is
 * deliberately naive and independent of the kernels: it materialises, per query row, how many
 * times each key is covered by the slice list (a cell covered by two slices counts twice, as in
 * the kernels), then evaluates the softmax, the sink, the accumulation merge and the analytic
 * gradients directly in float64. Memory is O(Tq·Tk): for small test problems only.
 *
 * Both functions take the backend's argument shapes but never modify their inputs: accumulators
 * (outAcc/lseAcc/maxLogitsAcc, dqAcc/dkAcc/dvAcc) are read and the merged or summed values are
 * returned in fresh float64 tensors (lse, maxLogits and dsink too).
 */
import { Tensor } from '../tensor.js';
import { isCellUnmasked } from '../mask/geometry.js';
import type { SliceList } from '../mask/slice-list.js';
import type { FfaBackwardArgs, FfaBackwardResult, FfaForwardArgs, FfaForwardResult } from './backend.js';

/** Per-cell multiplicity [Tq, Tk]: how many slices cover (q, k), straight from the cell predicate. */
export function cellMultiplicity(slices: SliceList, tokensQ: number, tokensK: number): Int32Array {
  const count = new Int32Array(tokensQ * tokensK);
  for (let b = 0; b < slices.maskTypes.length; b++) {
    const type = slices.maskTypes[b];
    const qs = slices.qRanges[2 * b];
    const qe = slices.qRanges[2 * b + 1];
    const ks = slices.kRanges[2 * b];
    const ke = slices.kRanges[2 * b + 1];
    for (let q = qs; q < qe; q++) {
      for (let kk = ks; kk < ke; kk++) {
        if (isCellUnmasked(type, q - qs, kk - ks, qe - qs, ke - ks)) count[q * tokensK + kk]++;
      }
    }
  }
  return count;
}

function lse64(values: number[]): number {
  let m = -Infinity;
  for (const x of values) m = Math.max(m, x); // NaN-propagating
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (const x of values) s += Math.exp(x - m);
  return m + Math.log(s);
}

/** Shared shape bookkeeping and float64 copies of the operands. */
function unpack(q: Tensor, k: Tensor, v: Tensor) {
  const [tokensQ, headsQ, dim] = q.shape;
  const [tokensK, headsKv] = k.shape;
  return {
    tokensQ,
    headsQ,
    dim,
    tokensK,
    headsKv,
    group: headsQ / headsKv,
    q: q.toFloat64(),
    k: k.toFloat64(),
    v: v.toFloat64(),
  };
}

/** The logit z from a raw dot product s: scale·s, or softcap·tanh(scale·s / softcap). */
function logit(s: number, scale: number, softcap: number): number {
  return softcap > 0 ? softcap * Math.tanh((s * scale) / softcap) : s * scale;
}

/** dz/ds of the logit above. */
function logitSlope(s: number, scale: number, softcap: number): number {
  if (softcap <= 0) return scale;
  const t = Math.tanh((s * scale) / softcap);
  return scale * (1 - t * t);
}

function dot(a: Float64Array, aOff: number, b: Float64Array, bOff: number, dim: number): number {
  let s = 0;
  for (let d = 0; d < dim; d++) s += a[aOff + d] * b[bOff + d];
  return s;
}

/** Dense float64 forward: out [Tq, Hq, D], lse [Tq, Hq], maxLogits [Hq], all float64 tensors. */
export function referenceForward(args: FfaForwardArgs<Tensor>): FfaForwardResult<Tensor> {
  const x = unpack(args.q, args.k, args.v);
  const { tokensQ, tokensK, headsQ, dim, group } = x;
  const mult = cellMultiplicity(args.slices, tokensQ, tokensK);
  const out = new Float64Array(tokensQ * headsQ * dim);
  const lse = new Float64Array(tokensQ * headsQ);
  const maxLogits = new Float64Array(headsQ).fill(-Infinity);
  const accOut = args.outAcc?.toFloat64();
  const accLse = args.lseAcc?.toFloat64();
  const sink = args.sink?.toFloat64();
  const sinkCount = args.sink?.shape[0] ?? 0;
  const zRow = new Float64Array(tokensK);

  for (let h = 0; h < headsQ; h++) {
    const hk = Math.floor(h / group);
    for (let t = 0; t < tokensQ; t++) {
      const row = t * headsQ + h;
      const qOff = row * dim;
      // This call's logits over the covered keys; a key covered n times is n terms of the softmax.
      // Math.max propagates NaN: a NaN logit makes the row (and its head's max logit) NaN, as
      // IEEE arithmetic would through the sum below; only a row whose covered logits are all
      // -inf (or that has none) counts as having seen nothing.
      let rowMax = -Infinity;
      for (let j = 0; j < tokensK; j++) {
        if (mult[t * tokensK + j] === 0) continue;
        const z = (zRow[j] = logit(dot(x.q, qOff, x.k, (j * x.headsKv + hk) * dim, dim), args.softmaxScale, args.softcap));
        rowMax = Math.max(rowMax, z);
      }
      maxLogits[h] = Math.max(maxLogits[h], rowMax);
      let rowLse = -Infinity;
      const o = new Float64Array(dim);
      if (rowMax !== -Infinity) {
        let sum = 0;
        for (let j = 0; j < tokensK; j++) if (mult[t * tokensK + j] !== 0) sum += mult[t * tokensK + j] * Math.exp(zRow[j] - rowMax);
        rowLse = rowMax + Math.log(sum);
        for (let j = 0; j < tokensK; j++) {
          const n = mult[t * tokensK + j];
          if (n === 0) continue;
          const p = n * Math.exp(zRow[j] - rowLse);
          const vOff = (j * x.headsKv + hk) * dim;
          for (let d = 0; d < dim; d++) o[d] += p * x.v[vOff + d];
        }
      }
      // Merge into the accumulator: the old partial acts as one more block of keys.
      if (accOut !== undefined && accLse !== undefined) {
        const oldLse = accLse[row];
        const merged = lse64([oldLse, rowLse]);
        for (let d = 0; d < dim; d++) {
          const a = oldLse === -Infinity ? 0 : Math.exp(oldLse - merged) * accOut[qOff + d];
          const b = rowLse === -Infinity ? 0 : Math.exp(rowLse - merged) * o[d];
          o[d] = a + b;
        }
        rowLse = merged;
      }
      // The sink: extra logits with zero values.
      if (sink !== undefined) {
        const sinkLogits: number[] = [];
        for (let s = 0; s < sinkCount; s++) sinkLogits.push(sink[s * headsQ + h]);
        const withSink = lse64([rowLse, lse64(sinkLogits)]);
        const w = rowLse === -Infinity ? 0 : Math.exp(rowLse - withSink);
        for (let d = 0; d < dim; d++) o[d] *= w;
        rowLse = withSink;
      }
      out.set(o, qOff);
      lse[row] = rowLse;
    }
  }

  const result: FfaForwardResult<Tensor> = {
    out: new Tensor('float64', [tokensQ, headsQ, dim], out),
    lse: new Tensor('float64', [tokensQ, headsQ], lse),
  };
  if (args.returnMaxLogits || args.maxLogitsAcc !== undefined) {
    const acc = args.maxLogitsAcc?.toFloat64();
    if (acc !== undefined) for (let h = 0; h < headsQ; h++) maxLogits[h] = Math.max(maxLogits[h], acc[h]);
    result.maxLogits = new Tensor('float64', [headsQ], maxLogits);
  }
  return result;
}

/**
 * Dense float64 gradients from the given final out and lse (so they follow the same contract as
 * the kernels in accumulation scenarios): dq, dk, dv (plus the accumulators when given) and dsink.
 */
export function referenceBackward(args: FfaBackwardArgs<Tensor>): FfaBackwardResult<Tensor> {
  const x = unpack(args.q, args.k, args.v);
  const { tokensQ, tokensK, headsQ, headsKv, dim, group } = x;
  const mult = cellMultiplicity(args.slices, tokensQ, tokensK);
  const out = args.out.toFloat64();
  const dout = args.dout.toFloat64();
  const lse = args.lse.toFloat64();
  const dq = args.dqAcc?.toFloat64() ?? new Float64Array(tokensQ * headsQ * dim);
  const dk = args.dkAcc?.toFloat64() ?? new Float64Array(tokensK * headsKv * dim);
  const dv = args.dvAcc?.toFloat64() ?? new Float64Array(tokensK * headsKv * dim);
  const sink = args.sink?.toFloat64();
  const sinkCount = args.sink?.shape[0] ?? 0;
  const dsink = new Float64Array(sinkCount * headsQ);

  for (let h = 0; h < headsQ; h++) {
    const hk = Math.floor(h / group);
    for (let t = 0; t < tokensQ; t++) {
      const row = t * headsQ + h;
      const rowLse = lse[row];
      if (rowLse === -Infinity) continue;
      const qOff = row * dim;
      const delta = dot(out, qOff, dout, qOff, dim);
      for (let s = 0; s < sinkCount; s++) dsink[s * headsQ + h] -= Math.exp(sink![s * headsQ + h] - rowLse) * delta;
      for (let j = 0; j < tokensK; j++) {
        const n = mult[t * tokensK + j];
        if (n === 0) continue;
        const kOff = (j * headsKv + hk) * dim;
        const raw = dot(x.q, qOff, x.k, kOff, dim);
        const p = n * Math.exp(logit(raw, args.softmaxScale, args.softcap) - rowLse);
        const slope = logitSlope(raw, args.softmaxScale, args.softcap);
        const dp = dot(dout, qOff, x.v, kOff, dim);
        const ds = p * (dp - delta) * slope;
        for (let d = 0; d < dim; d++) {
          dv[kOff + d] += p * dout[qOff + d];
          dq[qOff + d] += ds * x.k[kOff + d];
          dk[kOff + d] += ds * x.q[qOff + d];
        }
      }
    }
  }

  const result: FfaBackwardResult<Tensor> = {
    dq: new Tensor('float64', [tokensQ, headsQ, dim], dq),
    dk: new Tensor('float64', [tokensK, headsKv, dim], dk),
    dv: new Tensor('float64', [tokensK, headsKv, dim], dv),
  };
  if (args.sink !== undefined) result.dsink = new Tensor('float64', args.sink.shape, dsink);
  return result;
}
