/**
 * The CPU kernel backend: flex-flash-attention for any host Tensor, the embedded default and the
 * backend every other one is checked against. Its main loops run on one of the engines
 * (engine.ts): the WebAssembly SIMD kernel on several threads where the runtime has WebAssembly
 * SIMD, else the TypeScript tiles; on request ('blas'), the WebAssembly kernel with its tile
 * products in a native BLAS (blas.ts, Node only, loaded lazily). No Node-only module is imported,
 * so it runs in a browser too.
 *
 * Arguments are trusted: the public functions in ../flex-flash-attn.ts validate them first.
 * Inputs of any dtype are widened to float32; results are narrowed once at the end. The per-call
 * accumulator holds out in float32 and lse in float64 (it is tiny, and lse feeds every merge
 * weight); the lse handed back is float32.
 *
 * Determinism: for a given engine and thread count every result is bit-reproducible; the forward
 * does not even depend on the thread count (each q tile owns its rows). `deterministic` changes
 * nothing.
 *
 * NaN and Inf propagate as IEEE arithmetic takes them through the float64 reference: a NaN logit
 * makes its row NaN, a NaN value reaches the outputs that weigh it, and nothing reaches a row
 * that does not see the poisoned key. Rows that see no key get out = 0 and lse = -inf.
 *
 * max_logits is the max of the logit z after softcap (tanh units times the cap), i.e. the value
 * that actually enters the softmax (NaN if any covered logit is NaN); the reference system
 * scales a softcapped max by the softmax scale instead, which we consider a bug and do not copy.
 */
import { Tensor } from '../../tensor.js';
import { type DType, type Storage, fromNumbers } from '../../dtype.js';
import { InvalidArgumentError } from '../../errors.js';
import type { FfaBackwardArgs, FfaBackwardResult, FfaForwardArgs, FfaForwardResult, KernelBackend } from '../backend.js';
import { rowDots } from './backward.js';
import { type CpuEngine, typescriptEngine } from './engine.js';
import { mergeRow } from '../../lse-merge.js';
import { applySink, sinkGrad } from './sink.js';
import { buildWorkList } from './work.js';
import { type WasmSimdChoice, wasmEngine } from './wasm/engine.js';
import { blasEngine } from './blas.js';
import { MAX_THREADS } from './wasm/node-threads.js';

/**
 * A tensor's values as float32 for the engines, which only read them: float32 data itself (no
 * copy: the copy was a serial pass as long as the threaded kernel at 16 threads), a widened copy
 * otherwise.
 */
const readFloat32 = (t: Tensor): Float32Array => (t.dtype === 'float32' ? (t.data as Float32Array) : t.toFloat32());

/** Storage of `dtype` holding `values`: `values` itself where it already is (a buffer this call made), else converted. */
const ownedStorage = (dtype: DType, values: Float32Array | Float64Array): Storage =>
  (dtype === 'float32' && values instanceof Float32Array) || (dtype === 'float64' && values instanceof Float64Array) ? values : fromNumbers(dtype, values);

/** What a forward and a backward job share: shapes, numerics, the work list (in the engine's tiles). */
function jobShape(engine: CpuEngine, args: FfaForwardArgs<Tensor> | FfaBackwardArgs<Tensor>) {
  const [tokensQ, headsQ, dim] = args.q.shape;
  const [tokensK, headsKv] = args.k.shape;
  return {
    tokensQ,
    tokensK,
    headsQ,
    headsKv,
    dim,
    scale: args.softmaxScale,
    softcap: args.softcap,
    work: buildWorkList(args.slices, tokensK, engine.tileQ, engine.tileK),
  };
}

function cpuForward(engine: CpuEngine, args: FfaForwardArgs<Tensor>): FfaForwardResult<Tensor> {
  const { q, k, v, sink, outAcc, lseAcc, maxLogitsAcc } = args;
  const [tokensQ, headsQ, dim] = q.shape;
  const rows = tokensQ * headsQ;
  const [qf, kf, vf] = [q, k, v].map(readFloat32);

  const partOut = new Float32Array(rows * dim);
  const partLse = new Float64Array(rows).fill(-Infinity);
  const maxLogits = new Float64Array(headsQ).fill(-Infinity);
  engine.forward({
    ...jobShape(engine, args),
    q: qf,
    k: kf,
    v: vf,
    out: partOut,
    lse: partLse,
    maxLogits,
  });

  let out: Float32Array | Float64Array = partOut;
  let lse: Float64Array = partLse;
  const accumulate = outAcc !== undefined && lseAcc !== undefined;
  if (accumulate) {
    // Rows this call did not touch keep their exact values (their new weight is 0).
    out = outAcc.dtype === 'float64' ? (outAcc.data as Float64Array).slice() : outAcc.toFloat32();
    lse = Float64Array.from(lseAcc.data);
    for (let r = 0; r < rows; r++) lse[r] = mergeRow(out, r * dim, lse[r], partOut, r * dim, partLse[r], dim);
  }
  if (sink !== undefined) applySink(out, lse, sink.data, sink.shape[0], headsQ, dim);

  const result: FfaForwardResult<Tensor> = accumulate
    ? { out: outAcc, lse: lseAcc }
    : { out: new Tensor(args.outDtype, [tokensQ, headsQ, dim], ownedStorage(args.outDtype, out)), lse: Tensor.zeros('float32', [tokensQ, headsQ]) };
  if (accumulate) result.out.data.set(fromNumbers(result.out.dtype, out));
  result.lse.data.set(lse);

  if (maxLogitsAcc !== undefined) {
    const accData = maxLogitsAcc.data as Float32Array;
    for (let h = 0; h < headsQ; h++) accData[h] = Math.max(accData[h], maxLogits[h]);
    result.maxLogits = maxLogitsAcc;
  } else if (args.returnMaxLogits) {
    result.maxLogits = Tensor.fromValues('float32', [headsQ], maxLogits);
  }
  return result;
}

function cpuBackward(engine: CpuEngine, args: FfaBackwardArgs<Tensor>): FfaBackwardResult<Tensor> {
  const { q, k, v, dout, out, lse, sink } = args;
  const [tokensQ, headsQ, dim] = q.shape;
  const [qf, kf, vf, doutf] = [q, k, v, dout].map(readFloat32);
  const delta = rowDots(readFloat32(out), doutf, tokensQ * headsQ, dim);

  const dq = new Float32Array(q.size);
  const dk = new Float32Array(k.size);
  const dv = new Float32Array(v.size);
  engine.backward({
    q: qf,
    k: kf,
    v: vf,
    dout: doutf,
    lse: Float64Array.from(lse.data),
    delta,
    ...jobShape(engine, args),
    dq,
    dk,
    dv,
  });

  const grad = (buf: Float32Array, like: Tensor, acc: Tensor | undefined): Tensor => {
    if (acc === undefined) return new Tensor(like.dtype, like.shape, ownedStorage(like.dtype, buf));
    const dst = acc.data as Float32Array;
    for (let i = 0; i < buf.length; i++) dst[i] += buf[i];
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

/** Options of a CPU backend. */
export interface CpuKernelOptions {
  /**
   * 'auto' (default): the WebAssembly SIMD kernel where the runtime has WebAssembly SIMD, the
   * TypeScript tiles otherwise. 'wasm' requires the WebAssembly kernel (an error where it is
   * missing); 'typescript' forces the tiles (float64 arithmetic, one thread); 'blas' the
   * WebAssembly kernel with its tile products in a native CBLAS (cblas_sgemm through koffi, Node
   * only; $MAGI_ATTN_BLAS or a common soname such as libopenblas.so.0; BlasUnavailableError from
   * createCpuBackend where none loads).
   */
  engine?: 'auto' | 'wasm' | 'typescript' | 'blas';
  /**
   * Threads of one call (WebAssembly engine). Default: the machine's cores on a process's main
   * thread, 1 inside a worker thread (so the ranks of the thread runtime, one worker each, do
   * not oversubscribe the cores), 1 where the runtime has no worker threads or shared memory.
   */
  threads?: number;
  /**
   * Which build of the WebAssembly kernel: 'auto' (default) the relaxed-SIMD one (fused
   * multiply-add; on Node 20 the loader turns on V8's flag for it, see the README) unless the
   * environment sets MAGI_ATTN_NO_RELAXED_SIMD, the plain SIMD one where the runtime lacks it;
   * 'relaxed-simd' or 'simd' that build (an error where the runtime lacks it). The two round
   * differently: relaxed_madd rounds once where the CPU has FMA and twice where not, so the
   * relaxed build's last bits depend on the machine, the plain build's do not. On one machine
   * each is bit-reproducible for a given thread count.
   */
  simd?: WasmSimdChoice;
}

const ENGINES = ['auto', 'wasm', 'typescript', 'blas'] as const;
const SIMD_BUILDS = ['auto', 'relaxed-simd', 'simd'] as const;
const OPTIONS = ['engine', 'threads', 'simd'];

/** A CPU kernel backend with these options; pass it as `backend` to flexFlashAttn. */
export function createCpuBackend(options: CpuKernelOptions = {}): KernelBackend<Tensor> {
  for (const key of Object.keys(options)) if (!OPTIONS.includes(key)) throw new InvalidArgumentError(key, `is not an option of createCpuBackend (options: ${OPTIONS.join(', ')})`);
  const choice = options.engine ?? 'auto';
  if (!ENGINES.includes(choice)) throw new InvalidArgumentError('engine', `must be one of ${ENGINES.join(', ')}`, `got ${String(choice)}`);
  const { threads } = options;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= MAX_THREADS)) {
    throw new InvalidArgumentError('threads', `must be an integer from 1 to ${MAX_THREADS}`, `got ${String(threads)}`);
  }
  const simd = options.simd ?? 'auto';
  if (!SIMD_BUILDS.includes(simd)) throw new InvalidArgumentError('simd', `must be one of ${SIMD_BUILDS.join(', ')}`, `got ${String(simd)}`);
  if (simd !== 'auto' && choice === 'typescript') throw new InvalidArgumentError('simd', "picks a build of the WebAssembly kernel: it cannot go with engine 'typescript'");
  // The BLAS engine loads its library now, so that a missing one is an error before any work.
  const blas = choice === 'blas' ? blasEngine(threads, simd) : undefined;
  const engine = (): CpuEngine => {
    if (choice === 'typescript') return typescriptEngine;
    if (blas !== undefined) return blas;
    const wasm = wasmEngine(threads, simd);
    if (wasm !== undefined) return wasm;
    if (simd !== 'auto') throw new InvalidArgumentError('simd', `'${simd}' needs WebAssembly ${simd === 'simd' ? 'SIMD' : 'relaxed SIMD'}, which this runtime lacks (or, on a browser's main thread, await loadWasmKernel('${simd}') first)`);
    if (choice === 'wasm') throw new InvalidArgumentError('engine', "'wasm' needs WebAssembly SIMD, which this runtime lacks (or, on a browser's main thread, await loadWasmKernel() first)");
    return typescriptEngine;
  };
  return {
    name: 'cpu',
    accepts: (tensor: Tensor) => tensor instanceof Tensor,
    forward: (args) => cpuForward(engine(), args),
    backward: (args) => cpuBackward(engine(), args),
  };
}

/** The engine a CPU backend with these options runs on here: for benchmark tables and logs. */
export function cpuEngineName(options: CpuKernelOptions = {}): string {
  if (options.engine === 'typescript') return typescriptEngine.name;
  if (options.engine === 'blas') return blasEngine(options.threads, options.simd).name;
  return wasmEngine(options.threads, options.simd)?.name ?? typescriptEngine.name;
}

export const cpuBackend: KernelBackend<Tensor> = createCpuBackend();

export { logAddExp, mergeRow, mergeOutLseInto } from '../../lse-merge.js';
export { loadWasmKernel, wasmKernelInfo, type WasmKernelInfo, type WasmSimd, type WasmSimdChoice } from './wasm/engine.js';
export { BLAS_ENV, BLAS_SONAMES, blasInfo, type BlasInfo } from './blas.js';
