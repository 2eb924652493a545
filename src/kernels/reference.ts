/**
 * A dense float64 oracle for flex-flash-attention, used by the tests of every backend. It is
 * deliberately naive and independent of the kernels: it materialises, per query row, how many
 * times each key is covered by the slice list (a cell covered by two slices counts twice, as in
 * the kernels), then evaluates the softmax, the sink, the accumulation merge and the analytic
 * gradients directly in float64. Time is O(Tq·Tk·H·D) (every cell, covered or not, is asked):
 * for test problems, or for a sample of rows and keys (`ReferenceSubset`) on large ones.
 *
 * Both functions take the backend's argument shapes but never modify their inputs: accumulators
 * (outAcc/lseAcc/maxLogitsAcc, dqAcc/dkAcc/dvAcc) are read and the merged or summed values are
 * returned in fresh float64 tensors (lse, maxLogits and dsink too).
 */
import { Tensor } from '../tensor.js';
import { isCellUnmasked } from '../mask/geometry.js';
import type { SliceList } from '../mask/slice-list.js';
import type { FfaBackwardArgs, FfaBackwardResult, FfaForwardArgs, FfaForwardResult } from './backend.js';

/** How many slices cover each key of query row q (into `out`, length Tk), straight from the cell predicate. */
function rowCover(slices: SliceList, q: number, out: Int32Array): Int32Array {
  out.fill(0);
  for (let b = 0; b < slices.maskTypes.length; b++) {
    const qs = slices.qRanges[2 * b];
    const qe = slices.qRanges[2 * b + 1];
    if (q < qs || q >= qe) continue;
    const ks = slices.kRanges[2 * b];
    const ke = slices.kRanges[2 * b + 1];
    for (let kk = ks; kk < ke; kk++) if (isCellUnmasked(slices.maskTypes[b], q - qs, kk - ks, qe - qs, ke - ks)) out[kk]++;
  }
  return out;
}

/** Per-cell multiplicity [Tq, Tk]: how many slices cover (q, k). */
export function cellMultiplicity(slices: SliceList, tokensQ: number, tokensK: number): Int32Array {
  const count = new Int32Array(tokensQ * tokensK);
  for (let q = 0; q < tokensQ; q++) rowCover(slices, q, count.subarray(q * tokensK, (q + 1) * tokensK));
  return count;
}

/**
 * Which rows and keys to evaluate, for an exact check of a large problem on a sample: the
 * forward returns out and lse of the query tokens `rows` only ([R, Hq, D], [R, Hq]; maxLogits
 * is then over those rows); the backward returns dq of `rows` and dk, dv of `keys` only
 * ([R, Hq, D], [K, Hkv, D]; dsink stays whole). Every value returned is the exact float64 one.
 */
export interface ReferenceSubset {
  rows?: ArrayLike<number>;
  keys?: ArrayLike<number>;
}

const allTokens = (n: number): Int32Array => Int32Array.from({ length: n }, (_, i) => i);

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

/** Dense float64 forward: out [Tq, Hq, D], lse [Tq, Hq], maxLogits [Hq], all float64 tensors (R rows with a subset). */
export function referenceForward(args: FfaForwardArgs<Tensor>, subset: ReferenceSubset = {}): FfaForwardResult<Tensor> {
  const x = unpack(args.q, args.k, args.v);
  const { tokensQ, tokensK, headsQ, dim, group } = x;
  const rows = subset.rows ?? allTokens(tokensQ);
  const cover = new Int32Array(tokensK);
  const out = new Float64Array(rows.length * headsQ * dim);
  const lse = new Float64Array(rows.length * headsQ);
  const maxLogits = new Float64Array(headsQ).fill(-Infinity);
  const accOut = args.outAcc?.toFloat64();
  const accLse = args.lseAcc?.toFloat64();
  const sink = args.sink?.toFloat64();
  const sinkCount = args.sink?.shape[0] ?? 0;
  const zRow = new Float64Array(tokensK);

  for (let r = 0; r < rows.length; r++) {
    const t = rows[r];
    const mult = rowCover(args.slices, t, cover);
    for (let h = 0; h < headsQ; h++) {
      const hk = Math.floor(h / group);
      const row = t * headsQ + h;
      const qOff = row * dim;
      // This call's logits over the covered keys; a key covered n times is n terms of the softmax.
      // Math.max propagates NaN: a NaN logit makes the row (and its head's max logit) NaN, as
      // IEEE arithmetic would through the sum below; only a row whose covered logits are all
      // -inf (or that has none) counts as having seen nothing.
      let rowMax = -Infinity;
      for (let j = 0; j < tokensK; j++) {
        if (mult[j] === 0) continue;
        const z = (zRow[j] = logit(dot(x.q, qOff, x.k, (j * x.headsKv + hk) * dim, dim), args.softmaxScale, args.softcap));
        rowMax = Math.max(rowMax, z);
      }
      maxLogits[h] = Math.max(maxLogits[h], rowMax);
      let rowLse = -Infinity;
      const o = new Float64Array(dim);
      if (rowMax !== -Infinity) {
        let sum = 0;
        for (let j = 0; j < tokensK; j++) if (mult[j] !== 0) sum += mult[j] * Math.exp(zRow[j] - rowMax);
        rowLse = rowMax + Math.log(sum);
        for (let j = 0; j < tokensK; j++) {
          const n = mult[j];
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
      out.set(o, (r * headsQ + h) * dim);
      lse[r * headsQ + h] = rowLse;
    }
  }

  const result: FfaForwardResult<Tensor> = {
    out: new Tensor('float64', [rows.length, headsQ, dim], out),
    lse: new Tensor('float64', [rows.length, headsQ], lse),
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
 * With a subset: dq of its rows, dk and dv of its keys (and of their accumulators' rows).
 */
export function referenceBackward(args: FfaBackwardArgs<Tensor>, subset: ReferenceSubset = {}): FfaBackwardResult<Tensor> {
  const x = unpack(args.q, args.k, args.v);
  const { tokensQ, tokensK, headsQ, headsKv, dim, group } = x;
  const rows = subset.rows ?? allTokens(tokensQ);
  const keys = Int32Array.from(subset.keys ?? allTokens(tokensK));
  const rowAt = new Int32Array(tokensQ).fill(-1);
  for (let r = 0; r < rows.length; r++) rowAt[rows[r]] = r;
  const keyAt = new Int32Array(tokensK).fill(-1);
  for (let c = 0; c < keys.length; c++) keyAt[keys[c]] = c;
  const out = args.out.toFloat64();
  const dout = args.dout.toFloat64();
  const lse = args.lse.toFloat64();
  /** The accumulator's rows at the subset's tokens (zeros without one). */
  const start = (acc: Tensor | undefined, tokens: ArrayLike<number>, heads: number): Float64Array => {
    const buf = new Float64Array(tokens.length * heads * dim);
    const src = acc?.toFloat64();
    if (src !== undefined) for (let i = 0; i < tokens.length; i++) buf.set(src.subarray(tokens[i] * heads * dim, (tokens[i] + 1) * heads * dim), i * heads * dim);
    return buf;
  };
  const dq = start(args.dqAcc, rows, headsQ);
  const dk = start(args.dkAcc, keys, headsKv);
  const dv = start(args.dvAcc, keys, headsKv);
  const sink = args.sink?.toFloat64();
  const sinkCount = args.sink?.shape[0] ?? 0;
  const dsink = new Float64Array(sinkCount * headsQ);
  const cover = new Int32Array(tokensK);

  for (let t = 0; t < tokensQ; t++) {
    const r = rowAt[t];
    if (r < 0 && keys.length === 0 && sinkCount === 0) continue;
    const mult = rowCover(args.slices, t, cover);
    // A sampled row needs every key it sees (its dq); any other row only the sampled keys.
    const cols = r >= 0 ? tokensK : keys.length;
    for (let h = 0; h < headsQ; h++) {
      const hk = Math.floor(h / group);
      const row = t * headsQ + h;
      const rowLse = lse[row];
      if (rowLse === -Infinity) continue;
      const qOff = row * dim;
      const delta = dot(out, qOff, dout, qOff, dim);
      for (let s = 0; s < sinkCount; s++) dsink[s * headsQ + h] -= Math.exp(sink![s * headsQ + h] - rowLse) * delta;
      for (let i = 0; i < cols; i++) {
        const j = r >= 0 ? i : keys[i];
        const n = mult[j];
        if (n === 0) continue;
        const kOff = (j * headsKv + hk) * dim;
        const raw = dot(x.q, qOff, x.k, kOff, dim);
        const p = n * Math.exp(logit(raw, args.softmaxScale, args.softcap) - rowLse);
        const slope = logitSlope(raw, args.softmaxScale, args.softcap);
        const dp = dot(dout, qOff, x.v, kOff, dim);
        const ds = p * (dp - delta) * slope;
        if (r >= 0) {
          const o = (r * headsQ + h) * dim;
          for (let d = 0; d < dim; d++) dq[o + d] += ds * x.k[kOff + d];
        }
        const c = keyAt[j];
        if (c >= 0) {
          const o = (c * headsKv + hk) * dim;
          for (let d = 0; d < dim; d++) {
            dv[o + d] += p * dout[qOff + d];
            dk[o + d] += ds * x.q[qOff + d];
          }
        }
      }
    }
  }

  const result: FfaBackwardResult<Tensor> = {
    dq: new Tensor('float64', [rows.length, headsQ, dim], dq),
    dk: new Tensor('float64', [keys.length, headsKv, dim], dk),
    dv: new Tensor('float64', [keys.length, headsKv, dim], dv),
  };
  if (args.sink !== undefined) result.dsink = new Tensor('float64', args.sink.shape, dsink);
  return result;
}
