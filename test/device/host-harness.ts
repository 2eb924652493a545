/**
 * Host tensors in, host tensors out, for the GPU check scripts: each harness uploads the inputs,
 * poisons the outputs and the problem's scratch on request (NaN bits everywhere, so an element
 * the launch does not write is caught), runs one launch of the launcher's problem and downloads
 * the results. Test code: the library's own entry is flexFlashAttn on DeviceTensors.
 */
import type { DeviceBuffer } from '../../src/device/device.js';
import { bytesPerElement } from '../../src/dtype.js';
import type { FfaBackwardArgs, FfaBackwardResult, FfaForwardArgs, FfaForwardResult } from '../../src/kernels/backend.js';
import { CudaFfaBackward, type FfaBackwardExtras, type FfaBackwardShape } from '../../src/kernels/cuda/ffa-backward.js';
import { CudaFfaForward, FfaCudaUnsupportedError, typeTag, type FfaForwardExtras, type FfaForwardLaunchOptions, type FfaForwardShape } from '../../src/kernels/cuda/ffa-forward.js';
import { Tensor } from '../../src/tensor.js';

/**
 * Host tensors in, host tensors out (uploads, runs, downloads), every option of the backend
 * contract: sink, accumulation into outAcc/lseAcc (updated in place on the host too),
 * max_logits (fresh or max-merged into maxLogitsAcc), deterministic.
 */
export function hostForward(launcher: CudaFfaForward, args: FfaForwardArgs<Tensor>, options: FfaForwardLaunchOptions & { poison?: boolean } = {}): FfaForwardResult<Tensor> {
  if ((args.outAcc === undefined) !== (args.lseAcc === undefined)) throw new FfaCudaUnsupportedError('outAcc and lseAcc must be given together');
  const { q, k, v } = args;
  const [tokensQ, headsQ, dim] = q.shape;
  const [tokensK, headsKv] = k.shape;
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) throw new FfaCudaUnsupportedError('q, k, v must be [tokens, heads, dim]');
  if (k.shape[2] !== dim || v.shape.join() !== k.shape.join()) throw new FfaCudaUnsupportedError('k and v must be [Tk, Hkv, D] with q\'s D');
  if (headsQ % headsKv !== 0) throw new FfaCudaUnsupportedError(`Hq (${headsQ}) must be a multiple of Hkv (${headsKv})`);
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) throw new FfaCudaUnsupportedError('q, k, v must share a dtype');
  const acc = args.outAcc !== undefined && args.lseAcc !== undefined ? { out: args.outAcc, lse: args.lseAcc } : undefined;
  if (acc !== undefined && (acc.out.shape.join() !== q.shape.join() || acc.lse.shape.join() !== [tokensQ, headsQ].join() || acc.lse.dtype !== 'float32')) {
    throw new FfaCudaUnsupportedError('outAcc must be shaped like q and lseAcc float32 [Tq, Hq]');
  }
  // with accumulation the main launch writes a partial in the accumulator's precision class
  const finalDtype = acc?.out.dtype ?? options.outDtype ?? args.outDtype ?? q.dtype;
  typeTag(finalDtype, 'out');
  const outDtype = acc === undefined ? finalDtype : finalDtype === 'float32' ? 'float32' : q.dtype;
  if (outDtype !== q.dtype && outDtype !== 'float32') throw new FfaCudaUnsupportedError(`outDtype must be ${q.dtype} or float32, got ${outDtype}`);

  const shape: FfaForwardShape = { tokensQ, tokensK, headsQ, headsKv, dim, dtype: q.dtype };
  const problem = launcher.prepare(shape, args.slices, { ...options, outDtype });
  const dev = launcher.device;
  const dq = dev.upload(q.data);
  const dk = dev.upload(k.data);
  const dv = dev.upload(v.data);
  const outBytes = tokensQ * headsQ * dim * bytesPerElement(finalDtype);
  const dOut = acc === undefined ? dev.alloc(Math.max(outBytes, 4)) : dev.upload(acc.out.data);
  const dLse = acc === undefined ? dev.alloc(Math.max(tokensQ * headsQ * 4, 4)) : dev.upload(acc.lse.data);
  const wantMax = args.returnMaxLogits || args.maxLogitsAcc !== undefined;
  const dMax = args.maxLogitsAcc !== undefined ? dev.upload(args.maxLogitsAcc.data) : wantMax ? dev.alloc(Math.max(4, headsQ * 4)) : null;
  const dSink = args.sink !== undefined ? dev.upload(args.sink.data) : null;
  if (options.poison) {
    // NaN bits everywhere: every output element must be written by the launch
    if (acc === undefined) {
      dOut.fill(0xff);
      dLse.fill(0xff);
    }
    if (dMax !== null && args.maxLogitsAcc === undefined) dMax.fill(0xff);
    problem.poisonScratch();
  }
  const extras: FfaForwardExtras = { deterministic: args.deterministic };
  if (acc !== undefined) extras.accumulate = { outDtype: finalDtype };
  if (dSink !== null && args.sink !== undefined) extras.sink = { buffer: dSink, count: args.sink.shape[0] };
  if (dMax !== null) extras.maxLogits = { buffer: dMax, fresh: args.maxLogitsAcc === undefined };
  problem.launch(dq, dk, dv, dOut, dLse, args.softmaxScale, args.softcap, undefined, extras);
  const out = acc?.out ?? Tensor.zeros(finalDtype, [tokensQ, headsQ, dim]);
  const lse = acc?.lse ?? Tensor.zeros('float32', [tokensQ, headsQ]);
  if (outBytes > 0) dOut.download(out.data);
  if (tokensQ * headsQ > 0) dLse.download(lse.data);
  const result: FfaForwardResult<Tensor> = { out, lse };
  if (dMax !== null) {
    const maxLogits = args.maxLogitsAcc ?? Tensor.zeros('float32', [headsQ]);
    if (headsQ > 0) dMax.download(maxLogits.data);
    result.maxLogits = maxLogits;
  }
  for (const b of [dq, dk, dv, dOut, dLse, dMax, dSink]) b?.free();
  problem.free();
  return result;
}

/**
 * Host tensors in, host tensors out: dq, dk, dv in the input dtype, or the given float32
 * accumulators (updated in place on the host too); dsink with a sink.
 */
export function hostBackward(launcher: CudaFfaBackward, args: FfaBackwardArgs<Tensor>, options: { poison?: boolean } = {}): FfaBackwardResult<Tensor> {
  const { q, k, v, out, dout, lse } = args;
  const [tokensQ, headsQ, dim] = q.shape;
  const [tokensK, headsKv] = k.shape;
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) throw new FfaCudaUnsupportedError('q, k, v must be [tokens, heads, dim]');
  if (k.shape[2] !== dim || v.shape.join() !== k.shape.join()) throw new FfaCudaUnsupportedError("k and v must be [Tk, Hkv, D] with q's D");
  if (headsQ % headsKv !== 0) throw new FfaCudaUnsupportedError(`Hq (${headsQ}) must be a multiple of Hkv (${headsKv})`);
  for (const [name, x] of [['k', k], ['v', v], ['out', out], ['dout', dout]] as const) {
    if (x.dtype !== q.dtype) throw new FfaCudaUnsupportedError(`${name} must have q's dtype ${q.dtype}, got ${x.dtype}`);
  }
  if (out.shape.join() !== q.shape.join() || dout.shape.join() !== q.shape.join()) throw new FfaCudaUnsupportedError('out and dout must be shaped like q');
  if (lse.dtype !== 'float32' || lse.shape.join() !== [tokensQ, headsQ].join()) throw new FfaCudaUnsupportedError('lse must be float32 [Tq, Hq]');

  const shape: FfaBackwardShape = { tokensQ, tokensK, headsQ, headsKv, dim, dtype: q.dtype };
  const problem = launcher.prepare(shape, args.slices);
  const dev = launcher.device;
  const bufs = [q, k, v, out, dout, lse].map((x) => dev.upload(x.data));
  const [dQ, dK, dV, dOut, dDout, dLse] = bufs;
  const qBytes = Math.max(4, tokensQ * headsQ * dim * 2);
  const kBytes = Math.max(4, tokensK * headsKv * dim * 2);
  for (const [name, acc, like] of [['dq', args.dqAcc, q], ['dk', args.dkAcc, k], ['dv', args.dvAcc, v]] as const) {
    if (acc !== undefined && (acc.dtype !== 'float32' || acc.shape.join() !== like.shape.join())) throw new FfaCudaUnsupportedError(`${name} accumulator must be float32 shaped like ${name.slice(1)}`);
  }
  const grad = (acc: Tensor | undefined, bytes: number): DeviceBuffer => (acc !== undefined ? dev.upload(acc.data) : dev.alloc(bytes));
  const gq = grad(args.dqAcc, qBytes);
  const gk = grad(args.dkAcc, kBytes);
  const gv = grad(args.dvAcc, kBytes);
  const sink = args.sink;
  const gSink = sink !== undefined ? dev.upload(sink.data) : null;
  const gDsink = sink !== undefined ? dev.alloc(Math.max(4, sink.size * 4)) : null;
  if (options.poison) {
    if (args.dqAcc === undefined) gq.fill(0xff);
    if (args.dkAcc === undefined) gk.fill(0xff);
    if (args.dvAcc === undefined) gv.fill(0xff);
    gDsink?.fill(0xff);
    problem.poisonScratch();
  }
  const extras: FfaBackwardExtras = {
    accumulate: { dq: args.dqAcc !== undefined, dk: args.dkAcc !== undefined, dv: args.dvAcc !== undefined },
    deterministic: args.deterministic,
  };
  if (sink !== undefined && gSink !== null && gDsink !== null) extras.sink = { buffer: gSink, count: sink.shape[0], dsink: gDsink };
  problem.launch({ q: dQ, k: dK, v: dV, out: dOut, dout: dDout, lse: dLse, dq: gq, dk: gk, dv: gv }, args.softmaxScale, args.softcap, undefined, extras);
  const dq = args.dqAcc ?? Tensor.zeros(q.dtype, [tokensQ, headsQ, dim]);
  const dk = args.dkAcc ?? Tensor.zeros(q.dtype, [tokensK, headsKv, dim]);
  const dv = args.dvAcc ?? Tensor.zeros(q.dtype, [tokensK, headsKv, dim]);
  if (dq.data.byteLength > 0) gq.download(dq.data);
  if (dk.data.byteLength > 0) gk.download(dk.data);
  if (dv.data.byteLength > 0) gv.download(dv.data);
  const result: FfaBackwardResult<Tensor> = { dq, dk, dv };
  if (sink !== undefined && gDsink !== null) {
    const dsink = Tensor.zeros('float32', sink.shape);
    if (dsink.data.byteLength > 0) gDsink.download(dsink.data);
    result.dsink = dsink;
  }
  for (const b of [...bufs, gq, gk, gv, gSink, gDsink]) b?.free();
  problem.free();
  return result;
}
