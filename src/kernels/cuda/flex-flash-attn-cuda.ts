/**
 * Public flex-flash-attention entry points for tensors already on a GPU: `flexFlashAttnCuda`
 * (forward) and `flexFlashAttnBackwardCuda`. They take the same options as `flexFlashAttn` /
 * `flexFlashAttnBackward` (src/kernels/flex-flash-attn.ts), with DeviceTensors in place of host
 * Tensors, check them by the same rules before any work starts, and run the CUDA backend of the
 * tensors' device (one per device, created on first use) or the one given in `backend`.
 *
 * Every option of the host entry points is supported (sink, out/lse accumulators, max logits,
 * dq/dk/dv accumulators, deterministic); float32/float64 inputs throw InvalidArgumentError
 * naming q. `checkCudaForwardOptions` / `checkCudaBackwardOptions` run the option checks that
 * need no device.
 */
import type { CudaDevice } from '../../device/device.js';
import { DeviceTensor } from '../../device/device-tensor.js';
import { InvalidArgumentError, ShapeError } from '../../errors.js';
import type { SliceList } from '../../mask/slice-list.js';
import type { FfaBackwardArgs, FfaForwardArgs, KernelBackend } from '../backend.js';
import type { FlexFlashAttnMaskOptions } from '../flex-flash-attn.js';
import { checkCudaHeadDim, checkCudaInputDtype, createCudaBackend } from './backend.js';
import { checkQkvShapes, checkScalars, requireShape, sliceListFromOptions } from '../check-args.js';

/** The mask and numerics options of `flexFlashAttn`, with device tensors. */
export interface FlexFlashAttnCudaMaskOptions extends Omit<FlexFlashAttnMaskOptions, 'sink' | 'backend'> {
  /** Learnable sink logits, float32 [S, Hq] on the device. */
  sink?: DeviceTensor;
  /** A CUDA backend for the tensors' device; default: the shared one of that device. */
  backend?: KernelBackend<DeviceTensor>;
}

export interface FlexFlashAttnCudaOptions extends FlexFlashAttnCudaMaskOptions {
  /** Also return maxLogits float32 [Hq] (max over covered cells of the logit, after softcap). */
  returnMaxLogits?: boolean;
  /** Accumulate into this out [Tq, Hq, D] (bfloat16, float16 or float32) in place; needs `lse`. */
  out?: DeviceTensor;
  /** Accumulate into this float32 lse [Tq, Hq] in place; needs `out`. */
  lse?: DeviceTensor;
  /** Max-merge into this float32 [Hq] in place (implies max logits are computed). */
  maxLogits?: DeviceTensor;
}

export interface FlexFlashAttnCudaBackwardOptions extends FlexFlashAttnCudaMaskOptions {
  /** Add dq into this float32 [Tq, Hq, D] in place. */
  dq?: DeviceTensor;
  /** Add dk into this float32 [Tk, Hkv, D] in place. */
  dk?: DeviceTensor;
  /** Add dv into this float32 [Tk, Hkv, D] in place. */
  dv?: DeviceTensor;
}

export interface FlexFlashAttnCudaResult {
  /** [Tq, Hq, D] in q's dtype (or the given `out`, updated) */
  out: DeviceTensor;
  /** float32 [Tq, Hq], natural log, -inf for rows that see no key (and no sink) */
  lse: DeviceTensor;
  /** float32 [Hq], with returnMaxLogits or a maxLogits buffer */
  maxLogits?: DeviceTensor;
}

export interface FlexFlashAttnCudaGrads {
  dq: DeviceTensor;
  dk: DeviceTensor;
  dv: DeviceTensor;
  /** float32 [S, Hq], with a sink */
  dsink?: DeviceTensor;
}

// ---------------------------------------------------------------------------------------------
// Default backend per device

const backends = new WeakMap<CudaDevice, KernelBackend<DeviceTensor>>();

/** The shared CUDA backend of `device` (created on first use). */
export function cudaBackendFor(device: CudaDevice): KernelBackend<DeviceTensor> {
  let b = backends.get(device);
  if (b === undefined) backends.set(device, (b = createCudaBackend(device)));
  return b;
}

// ---------------------------------------------------------------------------------------------
// Validation (the rules of flex-flash-attn.ts, on device tensors: shapes and dtypes only)


function requireDeviceTensor(x: unknown, name: string): asserts x is DeviceTensor {
  if (!(x instanceof DeviceTensor)) throw new InvalidArgumentError(name, 'must be a DeviceTensor', `got ${x === null ? 'null' : typeof x === 'object' ? x.constructor.name : typeof x}`);
}

function requireOptions(options: unknown): void {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', 'must be an object with qRanges and kRanges');
}

/** The forward option rules that need no device: an options object; out and lse together. */
export function checkCudaForwardOptions(options: FlexFlashAttnCudaOptions): void {
  requireOptions(options);
  if ((options.out === undefined) !== (options.lse === undefined)) {
    throw new InvalidArgumentError(options.out === undefined ? 'out' : 'lse', 'out and lse accumulators must be given together');
  }
  for (const name of ['sink', 'out', 'lse', 'maxLogits'] as const) if (options[name] !== undefined) requireDeviceTensor(options[name], name);
}

/** The backward option rules that need no device: an options object; device tensors for sink and accumulators. */
export function checkCudaBackwardOptions(options: FlexFlashAttnCudaBackwardOptions): void {
  requireOptions(options);
  for (const name of ['sink', 'dq', 'dk', 'dv'] as const) if (options[name] !== undefined) requireDeviceTensor(options[name], name);
}

/** q [Tq, Hq, D], k and v [Tk, Hkv, D], one device, equal dtypes, Hq % Hkv == 0, a supported dtype and head dim. */
function checkQkv(q: unknown, k: unknown, v: unknown): asserts q is DeviceTensor {
  requireDeviceTensor(q, 'q');
  requireDeviceTensor(k, 'k');
  requireDeviceTensor(v, 'v');
  for (const [name, x] of [['k', k], ['v', v]] as const) {
    if (x.device !== q.device) throw new InvalidArgumentError(name, "must live on q's device", `device ${x.device.ordinal} vs ${q.device.ordinal}`);
  }
  checkQkvShapes(q, k, v);
  checkCudaInputDtype(q.dtype);
  checkCudaHeadDim(q.shape[2]);
}

function buildSlices(q: DeviceTensor, k: DeviceTensor, options: FlexFlashAttnCudaMaskOptions): SliceList {
  return sliceListFromOptions(options, q.shape[0], k.shape[0]);
}

function selectBackend(q: DeviceTensor, choice: KernelBackend<DeviceTensor> | undefined): KernelBackend<DeviceTensor> {
  const backend = choice ?? cudaBackendFor(q.device);
  if (!backend.accepts(q)) throw new InvalidArgumentError('backend', `backend "${backend.name}" does not accept these tensors`);
  return backend;
}

// ---------------------------------------------------------------------------------------------
// Entry points

/**
 * Attention of q [Tq, Hq, D] over k, v [Tk, Hkv, D] (device tensors, bfloat16 or float16,
 * D 64 or 128) under the slice mask in `options`. Returns new device tensors out [Tq, Hq, D]
 * in q's dtype and lse [Tq, Hq] float32 (or the given out/lse accumulators, updated), and
 * maxLogits [Hq] when asked (new, or the given buffer max-merged); the caller frees new ones.
 */
export function flexFlashAttnCuda(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, options: FlexFlashAttnCudaOptions): FlexFlashAttnCudaResult {
  checkCudaForwardOptions(options);
  checkQkv(q, k, v);
  const slices = buildSlices(q, k, options);
  const args: FfaForwardArgs<DeviceTensor> = {
    q,
    k,
    v,
    slices,
    softmaxScale: options.softmaxScale ?? 1 / Math.sqrt(q.shape[2]),
    softcap: options.softcap ?? 0,
    returnMaxLogits: options.returnMaxLogits ?? false,
    outDtype: q.dtype,
    deterministic: options.deterministic ?? false,
  };
  if (options.sink !== undefined) args.sink = options.sink;
  if (options.out !== undefined) args.outAcc = options.out;
  if (options.lse !== undefined) args.lseAcc = options.lse;
  if (options.maxLogits !== undefined) args.maxLogitsAcc = options.maxLogits;
  checkScalars(args.softmaxScale, args.softcap);
  const { out, lse, maxLogits } = selectBackend(q, options.backend).forward(args);
  return maxLogits === undefined ? { out, lse } : { out, lse, maxLogits };
}

/**
 * Gradients through `flexFlashAttnCuda`, given dL/dout and that forward's FINAL out and lse
 * (device tensors). Returns new device tensors dq, dk, dv in the input dtype (or the given
 * float32 accumulators, added into) and dsink float32 [S, Hq] with a sink; the caller frees
 * new ones.
 */
export function flexFlashAttnBackwardCuda(
  dout: DeviceTensor,
  q: DeviceTensor,
  k: DeviceTensor,
  v: DeviceTensor,
  out: DeviceTensor,
  lse: DeviceTensor,
  options: FlexFlashAttnCudaBackwardOptions,
): FlexFlashAttnCudaGrads {
  checkCudaBackwardOptions(options);
  checkQkv(q, k, v);
  const slices = buildSlices(q, k, options);
  const [tokensQ, headsQ] = q.shape;
  for (const [name, x] of [['dout', dout], ['out', out], ['lse', lse]] as const) {
    requireDeviceTensor(x, name);
    if (x.device !== q.device) throw new InvalidArgumentError(name, "must live on q's device", `device ${x.device.ordinal} vs ${q.device.ordinal}`);
  }
  requireShape(dout, 'dout', q.shape, "q's shape");
  requireShape(out, 'out', q.shape, "q's shape");
  if (lse.dtype !== 'float32') throw new ShapeError('lse', 'must be float32', `got ${lse.dtype}`);
  requireShape(lse, 'lse', [tokensQ, headsQ], '[tokens, heads] of q');
  const args: FfaBackwardArgs<DeviceTensor> = {
    dout,
    q,
    k,
    v,
    out,
    lse,
    slices,
    softmaxScale: options.softmaxScale ?? 1 / Math.sqrt(q.shape[2]),
    softcap: options.softcap ?? 0,
    deterministic: options.deterministic ?? false,
  };
  if (options.sink !== undefined) args.sink = options.sink;
  if (options.dq !== undefined) args.dqAcc = options.dq;
  if (options.dk !== undefined) args.dkAcc = options.dk;
  if (options.dv !== undefined) args.dvAcc = options.dv;
  checkScalars(args.softmaxScale, args.softcap);
  const { dq, dk, dv, dsink } = selectBackend(q, options.backend).backward(args);
  return dsink === undefined ? { dq, dk, dv } : { dq, dk, dv, dsink };
}
