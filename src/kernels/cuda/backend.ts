/**
 * The CUDA kernel backend: `KernelBackend<DeviceTensor>` over the forward and backward launchers
 * (ffa-forward.ts, ffa-backward.ts). Tensors stay on the device; out/lse and dq/dk/dv come back
 * as new DeviceTensors (the caller frees them). Work is queued on the device's legacy default
 * stream, so results are ordered before any later copy or launch. On an H100/H200 (compute
 * capability 9.0) the main kernels are the Hopper ones (TMA + wgmma; the backward for head dim
 * 128), elsewhere the mma.sync ones; every option below works on both.
 *
 * Supported: bfloat16 / float16 q, k, v with head dim 64 or 128, any slice list, softcap, GQA,
 * out in the input dtype or float32, sink (float32 [S, Hq]; dsink in the backward), out/lse
 * accumulators (out in bfloat16, float16 or float32), max logits (fresh or max-merged), dq/dk/dv
 * float32 accumulators, deterministic mode. Not supported (InvalidArgumentError naming the
 * argument): float32 / float64 q, k, v.
 *
 * Planned problems (work list, uploaded slices, fp32 scratch) are cached per backend, keyed by
 * the slice list's contents and the shape, a few at a time (least recently used is freed).
 */
import { Stream, type CudaDevice } from '../../device/device.js';
import { DeviceTensor } from '../../device/device-tensor.js';
import type { DType } from '../../dtype.js';
import { InvalidArgumentError, ShapeError } from '../../errors.js';
import type { SliceList } from '../../mask/slice-list.js';
import type { FfaBackwardArgs, FfaBackwardResult, FfaForwardArgs, FfaForwardResult, KernelBackend } from '../backend.js';
import { CudaFfaBackward, FFA_BWD_HEAD_DIMS, type FfaBackwardExtras, type FfaBackwardProblem } from './ffa-backward.js';
import { CudaFfaForward, FFA_FWD_HEAD_DIMS, type FfaForwardExtras, type FfaForwardProblem } from './ffa-forward.js';

/** The error for an option this backend does not implement: names the option and says so. */
export function cudaUnsupported(option: string, what: string): InvalidArgumentError {
  return new InvalidArgumentError(option, `the CUDA backend does not support ${what} yet`);
}

/** Input dtypes the kernels take. */
export const CUDA_INPUT_DTYPES: readonly DType[] = ['bfloat16', 'float16'];

/** Throws the clear error for a q/k/v dtype the kernels do not take (float32, float64). */
export function checkCudaInputDtype(dtype: DType): void {
  if (!CUDA_INPUT_DTYPES.includes(dtype)) throw cudaUnsupported('q', `${dtype} inputs (bfloat16 or float16 only)`);
}

/** Out dtypes the forward writes (fresh out, or an accumulator). */
export const CUDA_OUT_DTYPES: readonly DType[] = ['bfloat16', 'float16', 'float32'];

/** Throws the clear error for a head dim no kernel is compiled for. */
export function checkCudaHeadDim(dim: number): void {
  if (!FFA_FWD_HEAD_DIMS.includes(dim) || !FFA_BWD_HEAD_DIMS.includes(dim)) {
    throw cudaUnsupported('q', `head dim ${dim} (only ${FFA_FWD_HEAD_DIMS.join(' or ')})`);
  }
}

export interface CudaKernelBackend extends KernelBackend<DeviceTensor> {
  readonly device: CudaDevice;
  /** Frees every cached problem (the compiled modules stay loaded). */
  dispose(): void;
}

export interface CudaBackendOptions {
  /** NVRTC disk cache folder (default: the device layer's). */
  cacheDir?: string;
  /** Planned problems kept per direction (default 32); 0 disables the cache. */
  cacheSize?: number;
}

interface CacheEntry<P> {
  key: string;
  /** The stream of the entry's latest launch: eviction frees its memory after that work. */
  stream: Stream | undefined;
  qRanges: Int32Array;
  kRanges: Int32Array;
  maskTypes: Uint8Array;
  problem: P;
}

function sameArray(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A small LRU of planned problems keyed by shape and slice-list contents (a copy is kept, so later
 * mutation of the caller's arrays cannot alias). Problems hold scratch memory their launches use:
 * one evicted while a launch is in flight is freed only once that launch's stream is done.
 */
class ProblemCache<P extends { free(after?: Stream): void }> {
  private entries: CacheEntry<P>[] = [];
  constructor(private readonly capacity: number) {}

  /** The cached problem, or a new one from `make`; `release` must be called when the launch is queued. */
  get(key: string, slices: SliceList, stream: Stream | undefined, make: () => P): { problem: P; release: () => void } {
    const i = this.entries.findIndex(
      (e) => e.key === key && sameArray(e.maskTypes, slices.maskTypes) && sameArray(e.qRanges, slices.qRanges) && sameArray(e.kRanges, slices.kRanges),
    );
    if (i >= 0) {
      const [e] = this.entries.splice(i, 1);
      this.entries.push(e);
      // A launch on another stream could race the scratch of one still in flight: order it after.
      if (e.stream !== stream) stream?.waitStream(e.stream ?? stream.device.defaultStream);
      e.stream = stream;
      return { problem: e.problem, release: () => {} };
    }
    const problem = make();
    if (this.capacity === 0) return { problem, release: () => problem.free(stream) };
    this.entries.push({ key, stream, qRanges: slices.qRanges.slice(), kRanges: slices.kRanges.slice(), maskTypes: slices.maskTypes.slice(), problem });
    while (this.entries.length > this.capacity) {
      const old = this.entries.shift()!;
      old.problem.free(old.stream);
    }
    return { problem, release: () => {} };
  }

  clear(): void {
    for (const e of this.entries) e.problem.free(e.stream);
    this.entries = [];
  }
}

const fmt = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

function streamOf(s: object | undefined): Stream | undefined {
  if (s === undefined) return undefined;
  if (!(s instanceof Stream)) throw new InvalidArgumentError('stream', 'must be a Stream of the device layer');
  return s;
}

/** A CUDA backend for tensors on `device`; kernels are compiled (NVRTC, disk-cached) on first use. */
export function createCudaBackend(device: CudaDevice, options: CudaBackendOptions = {}): CudaKernelBackend {
  const compileOpts = options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir };
  const capacity = options.cacheSize ?? 32;
  let fwd: CudaFfaForward | undefined;
  let bwd: CudaFfaBackward | undefined;
  const fwdCache = new ProblemCache<FfaForwardProblem>(capacity);
  const bwdCache = new ProblemCache<FfaBackwardProblem>(capacity);

  const accepts = (t: DeviceTensor): boolean => t instanceof DeviceTensor && t.device === device;
  const requireHere = (t: unknown, name: string): DeviceTensor => {
    if (!(t instanceof DeviceTensor)) throw new InvalidArgumentError(name, 'must be a DeviceTensor for the CUDA backend');
    if (t.device !== device) throw new InvalidArgumentError(name, "must live on the CUDA backend's device", `tensor on device ${t.device.ordinal}, backend on ${device.ordinal}`);
    if (t.isFreed) throw new InvalidArgumentError(name, 'was freed');
    return t;
  };
  const requireShape = (t: DeviceTensor, name: string, shape: readonly number[], what: string): void => {
    if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) throw new ShapeError(name, `must have shape ${fmt(shape)} (${what})`, `got ${fmt(t.shape)}`);
  };
  const requireF32 = (t: DeviceTensor, name: string): void => {
    if (t.dtype !== 'float32') throw new ShapeError(name, 'must be float32', `got ${t.dtype}`);
  };
  /** float32 [S, Hq], S >= 1 (the host rule of flex-flash-attn.ts). */
  const requireSink = (t: DeviceTensor, headsQ: number): DeviceTensor => {
    requireF32(t, 'sink');
    if (t.rank !== 2 || t.shape[1] !== headsQ || t.shape[0] < 1) {
      throw new ShapeError('sink', `must have shape [S, ${headsQ}] with S >= 1 (one logit per sink token and query head)`, `got ${fmt(t.shape)}`);
    }
    return t;
  };
  /** q [Tq, Hq, D], k = v shape [Tk, Hkv, D], one supported dtype. */
  const checkQkv = (q: DeviceTensor, k: DeviceTensor, v: DeviceTensor): [number, number, number, number, number] => {
    if (q.rank !== 3) throw new ShapeError('q', 'must be 3-D [tokens, heads, headDim]', `got ${fmt(q.shape)}`);
    if (k.rank !== 3) throw new ShapeError('k', 'must be 3-D [tokens, heads, headDim]', `got ${fmt(k.shape)}`);
    requireShape(v, 'v', k.shape, 'the same shape as k');
    const [tokensQ, headsQ, dim] = q.shape;
    const [tokensK, headsKv, dimK] = k.shape;
    if (dimK !== dim) throw new ShapeError('k', "head dim must equal q's head dim", `${dimK} vs ${dim}`);
    if (headsQ < 1 || headsKv < 1 || headsQ % headsKv !== 0) throw new ShapeError('k', "number of heads must divide q's (GQA groups)", `${headsQ} query heads, ${headsKv} kv heads`);
    checkCudaInputDtype(q.dtype);
    if (k.dtype !== q.dtype) throw new ShapeError('k', "dtype must equal q's", `${k.dtype} vs ${q.dtype}`);
    if (v.dtype !== q.dtype) throw new ShapeError('v', "dtype must equal q's", `${v.dtype} vs ${q.dtype}`);
    checkCudaHeadDim(dim);
    return [tokensQ, tokensK, headsQ, headsKv, dim];
  };

  return {
    name: 'cuda',
    device,
    accepts,

    forward(args: FfaForwardArgs<DeviceTensor>): FfaForwardResult<DeviceTensor> {
      const q = requireHere(args.q, 'q');
      const k = requireHere(args.k, 'k');
      const v = requireHere(args.v, 'v');
      const [tokensQ, tokensK, headsQ, headsKv, dim] = checkQkv(q, k, v);
      const sink = args.sink === undefined ? undefined : requireSink(requireHere(args.sink, 'sink'), headsQ);
      if ((args.outAcc === undefined) !== (args.lseAcc === undefined)) {
        throw new InvalidArgumentError(args.outAcc === undefined ? 'out' : 'lse', 'out and lse accumulators must be given together');
      }
      let acc: { out: DeviceTensor; lse: DeviceTensor } | undefined;
      if (args.outAcc !== undefined && args.lseAcc !== undefined) {
        acc = { out: requireHere(args.outAcc, 'out'), lse: requireHere(args.lseAcc, 'lse') };
        requireShape(acc.out, 'out', q.shape, "q's shape");
        if (!CUDA_OUT_DTYPES.includes(acc.out.dtype)) throw cudaUnsupported('out', `accumulating into a ${acc.out.dtype} out (bfloat16, float16 or float32 only)`);
        requireF32(acc.lse, 'lse');
        requireShape(acc.lse, 'lse', [tokensQ, headsQ], '[tokens, heads] of q');
      }
      const maxAcc = args.maxLogitsAcc === undefined ? undefined : requireHere(args.maxLogitsAcc, 'maxLogits');
      if (maxAcc !== undefined) {
        requireF32(maxAcc, 'maxLogits');
        requireShape(maxAcc, 'maxLogits', [headsQ], 'one value per query head');
      }
      const finalDtype = acc?.out.dtype ?? args.outDtype ?? q.dtype;
      if (acc === undefined && finalDtype !== q.dtype && finalDtype !== 'float32') throw cudaUnsupported('outDtype', `out in ${finalDtype} (only q's dtype or float32)`);
      // the partial that an accumulation merges in: fp32 for an fp32 accumulator, else q's dtype
      const partDtype = acc === undefined || finalDtype === 'float32' ? finalDtype : q.dtype;

      fwd ??= new CudaFfaForward(device, compileOpts);
      const shape = { tokensQ, tokensK, headsQ, headsKv, dim, dtype: q.dtype };
      const key = `${tokensQ},${tokensK},${headsQ},${headsKv},${dim},${q.dtype},${partDtype}`;
      const owner = fwd;
      const { problem, release } = fwdCache.get(key, args.slices, streamOf(args.stream), () => owner.prepare(shape, args.slices, { outDtype: partDtype }));
      const out = acc?.out ?? DeviceTensor.empty(device, finalDtype, [tokensQ, headsQ, dim]);
      const lse = acc?.lse ?? DeviceTensor.empty(device, 'float32', [tokensQ, headsQ]);
      const wantMax = args.returnMaxLogits || maxAcc !== undefined;
      const maxLogits = maxAcc ?? (wantMax ? DeviceTensor.empty(device, 'float32', [headsQ]) : undefined);
      const extras: FfaForwardExtras = { deterministic: args.deterministic };
      if (acc !== undefined) extras.accumulate = { outDtype: finalDtype };
      if (sink !== undefined) extras.sink = { buffer: sink.buffer, count: sink.shape[0] };
      if (maxLogits !== undefined) extras.maxLogits = { buffer: maxLogits.buffer, fresh: maxAcc === undefined };
      try {
        problem.launch(q.buffer, k.buffer, v.buffer, out.buffer, lse.buffer, args.softmaxScale, args.softcap, streamOf(args.stream), extras);
      } catch (e) {
        if (acc === undefined) {
          out.free();
          lse.free();
        }
        if (maxAcc === undefined) maxLogits?.free();
        throw e;
      } finally {
        release();
      }
      return maxLogits === undefined ? { out, lse } : { out, lse, maxLogits };
    },

    backward(args: FfaBackwardArgs<DeviceTensor>): FfaBackwardResult<DeviceTensor> {
      const q = requireHere(args.q, 'q');
      const k = requireHere(args.k, 'k');
      const v = requireHere(args.v, 'v');
      const out = requireHere(args.out, 'out');
      const dout = requireHere(args.dout, 'dout');
      const lse = requireHere(args.lse, 'lse');
      const [tokensQ, tokensK, headsQ, headsKv, dim] = checkQkv(q, k, v);
      requireShape(out, 'out', q.shape, "q's shape");
      requireShape(dout, 'dout', q.shape, "q's shape");
      if (out.dtype !== q.dtype) throw cudaUnsupported('out', `an out in ${out.dtype} in the backward (only q's dtype ${q.dtype})`);
      if (dout.dtype !== q.dtype) throw cudaUnsupported('dout', `a dout in ${dout.dtype} (only q's dtype ${q.dtype})`);
      if (lse.dtype !== 'float32') throw new ShapeError('lse', 'must be float32', `got ${lse.dtype}`);
      requireShape(lse, 'lse', [tokensQ, headsQ], '[tokens, heads] of q');
      const sink = args.sink === undefined ? undefined : requireSink(requireHere(args.sink, 'sink'), headsQ);
      const accOf = (given: DeviceTensor | undefined, name: 'dq' | 'dk' | 'dv', like: DeviceTensor): DeviceTensor | undefined => {
        if (given === undefined) return undefined;
        const t = requireHere(given, name);
        requireF32(t, name);
        requireShape(t, name, like.shape, `the shape of ${name.slice(1)}`);
        return t;
      };
      const dqAcc = accOf(args.dqAcc, 'dq', q);
      const dkAcc = accOf(args.dkAcc, 'dk', k);
      const dvAcc = accOf(args.dvAcc, 'dv', v);

      bwd ??= new CudaFfaBackward(device, compileOpts);
      const shape = { tokensQ, tokensK, headsQ, headsKv, dim, dtype: q.dtype };
      const key = `${tokensQ},${tokensK},${headsQ},${headsKv},${dim},${q.dtype}`;
      const owner = bwd;
      const { problem, release } = bwdCache.get(key, args.slices, streamOf(args.stream), () => owner.prepare(shape, args.slices));
      const fresh: DeviceTensor[] = [];
      const make = (acc: DeviceTensor | undefined, dtype: DType, shape: readonly number[]): DeviceTensor => {
        if (acc !== undefined) return acc;
        const t = DeviceTensor.empty(device, dtype, shape);
        fresh.push(t);
        return t;
      };
      const dq = make(dqAcc, q.dtype, q.shape);
      const dk = make(dkAcc, q.dtype, k.shape);
      const dv = make(dvAcc, q.dtype, k.shape);
      const dsink = sink === undefined ? undefined : make(undefined, 'float32', sink.shape);
      const extras: FfaBackwardExtras = {
        accumulate: { dq: dqAcc !== undefined, dk: dkAcc !== undefined, dv: dvAcc !== undefined },
        deterministic: args.deterministic,
      };
      if (sink !== undefined && dsink !== undefined) extras.sink = { buffer: sink.buffer, count: sink.shape[0], dsink: dsink.buffer };
      try {
        problem.launch(
          { q: q.buffer, k: k.buffer, v: v.buffer, out: out.buffer, dout: dout.buffer, lse: lse.buffer, dq: dq.buffer, dk: dk.buffer, dv: dv.buffer },
          args.softmaxScale,
          args.softcap,
          streamOf(args.stream),
          extras,
        );
      } catch (e) {
        for (const t of fresh) t.free();
        throw e;
      } finally {
        release();
      }
      return dsink === undefined ? { dq, dk, dv } : { dq, dk, dv, dsink };
    },

    dispose(): void {
      fwdCache.clear();
      bwdCache.clear();
    },
  };
}

const sharedBackends = new WeakMap<CudaDevice, CudaKernelBackend>();

/** The shared CUDA backend of `device` (created on first use); the one flexFlashAttn runs DeviceTensors on. */
export function cudaBackendFor(device: CudaDevice): CudaKernelBackend {
  let b = sharedBackends.get(device);
  if (b === undefined) sharedBackends.set(device, (b = createCudaBackend(device)));
  return b;
}
