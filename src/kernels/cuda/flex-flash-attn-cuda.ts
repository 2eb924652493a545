/**
 * Public flex-flash-attention entry points for tensors already on a GPU: `flexFlashAttnCuda`
 * (forward) and `flexFlashAttnBackwardCuda`. They take the same options as `flexFlashAttn` /
 * `flexFlashAttnBackward` (src/kernels/flex-flash-attn.ts), with DeviceTensors in place of host
 * Tensors, check them by the same rules before any work starts, and run the CUDA backend of the
 * tensors' device (one per device, created on first use) or the one given in `backend`.
 *
 * Options the CUDA backend does not implement yet (sink, out/lse accumulators, max logits,
 * dq/dk/dv accumulators, deterministic) and float32/float64 inputs throw InvalidArgumentError
 * naming the option; `checkCudaForwardOptions` / `checkCudaBackwardOptions` run those option
 * checks alone (no device needed).
 */
import type { CudaDevice } from '../../device/device.js';
import { DeviceTensor } from '../../device/device-tensor.js';
import { InvalidArgumentError, ShapeError } from '../../errors.js';
import type { SliceList } from '../../mask/slice-list.js';
import type { FfaBackwardArgs, FfaForwardArgs, KernelBackend } from '../backend.js';
import type { FlexFlashAttnMaskOptions } from '../flex-flash-attn.js';
import { checkCudaHeadDim, checkCudaInputDtype, createCudaBackend, cudaUnsupported } from './backend.js';
import { checkQkvShapes, checkScalars, requireShape, sliceListFromOptions } from '../check-args.js';

/** The mask and numerics options of `flexFlashAttn`, with device tensors. */
export interface FlexFlashAttnCudaMaskOptions extends Omit<FlexFlashAttnMaskOptions, 'sink' | 'backend'> {
  /** Not supported by the CUDA backend yet (throws). */
  sink?: DeviceTensor;
  /** A CUDA backend for the tensors' device; default: the shared one of that device. */
  backend?: KernelBackend<DeviceTensor>;
}

export interface FlexFlashAttnCudaOptions extends FlexFlashAttnCudaMaskOptions {
  /** Not supported by the CUDA backend yet (throws when true). */
  returnMaxLogits?: boolean;
  /** Not supported by the CUDA backend yet (throws). */
  out?: DeviceTensor;
  /** Not supported by the CUDA backend yet (throws). */
  lse?: DeviceTensor;
  /** Not supported by the CUDA backend yet (throws). */
  maxLogits?: DeviceTensor;
}

export interface FlexFlashAttnCudaBackwardOptions extends FlexFlashAttnCudaMaskOptions {
  /** Not supported by the CUDA backend yet (throws). */
  dq?: DeviceTensor;
  /** Not supported by the CUDA backend yet (throws). */
  dk?: DeviceTensor;
  /** Not supported by the CUDA backend yet (throws). */
  dv?: DeviceTensor;
}

export interface FlexFlashAttnCudaResult {
  /** [Tq, Hq, D] in q's dtype */
  out: DeviceTensor;
  /** float32 [Tq, Hq], natural log, -inf for rows that see no key */
  lse: DeviceTensor;
}

export interface FlexFlashAttnCudaGrads {
  dq: DeviceTensor;
  dk: DeviceTensor;
  dv: DeviceTensor;
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

/** Throws for the forward options the CUDA backend does not implement yet. Needs no device. */
export function checkCudaForwardOptions(options: FlexFlashAttnCudaOptions): void {
  requireOptions(options);
  if (options.sink !== undefined) throw cudaUnsupported('sink', 'attention sinks');
  if (options.out !== undefined) throw cudaUnsupported('out', 'accumulating into an out buffer');
  if (options.lse !== undefined) throw cudaUnsupported('lse', 'accumulating into an lse buffer');
  if (options.returnMaxLogits === true) throw cudaUnsupported('returnMaxLogits', 'max logits');
  if (options.maxLogits !== undefined) throw cudaUnsupported('maxLogits', 'max logits');
  if (options.deterministic === true) throw cudaUnsupported('deterministic', 'deterministic mode');
}

/** Throws for the backward options the CUDA backend does not implement yet. Needs no device. */
export function checkCudaBackwardOptions(options: FlexFlashAttnCudaBackwardOptions): void {
  requireOptions(options);
  if (options.sink !== undefined) throw cudaUnsupported('sink', 'attention sinks');
  for (const name of ['dq', 'dk', 'dv'] as const) {
    if (options[name] !== undefined) throw cudaUnsupported(name, `accumulating into a ${name} buffer`);
  }
  if (options.deterministic === true) throw cudaUnsupported('deterministic', 'deterministic mode');
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
 * in q's dtype and lse [Tq, Hq] float32; the caller frees them.
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
    returnMaxLogits: false,
    outDtype: q.dtype,
    deterministic: false,
  };
  checkScalars(args.softmaxScale, args.softcap);
  const { out, lse } = selectBackend(q, options.backend).forward(args);
  return { out, lse };
}

/**
 * Gradients through `flexFlashAttnCuda`, given dL/dout and that forward's out and lse (device
 * tensors). Returns new device tensors dq, dk, dv in the input dtype; the caller frees them.
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
    deterministic: false,
  };
  checkScalars(args.softmaxScale, args.softcap);
  const { dq, dk, dv } = selectBackend(q, options.backend).backward(args);
  return { dq, dk, dv };
}
