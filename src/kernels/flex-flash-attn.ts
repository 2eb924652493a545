/**
 * The public flex-flash-attention entry points: `flexFlashAttn` (forward) and
 * `flexFlashAttnBackward`. They turn user-friendly options into the backend's argument shape,
 * validate everything before any work starts (each error names the argument and the rule), and
 * hand the call to a kernel backend chosen by where the tensors live:
 *   host `Tensor`s      the first registered host backend that accepts q, else the CPU backend;
 *   device tensors      the first registered backend for their `location` that accepts q (the
 *                       CUDA backend registers itself for 'cuda' when 'magi-attention/device' is
 *                       imported; this module never loads the device layer, so it stays free of
 *                       koffi and the CPU path needs no GPU).
 * Results come back in the same kind as the inputs.
 *
 * The validators are exported too, so callers that build backend arguments themselves (the
 * distributed runtime) check them by the same rules.
 */
import { Tensor } from '../tensor.js';
import { DTYPES, type DType } from '../dtype.js';
import { InvalidArgumentError, MaskError, ShapeError } from '../errors.js';
import { type MaskTypesLike, type RangeListLike, type SliceList, checkSliceBounds, sliceCount } from '../mask/slice-list.js';
import type { FfaBackwardArgs, FfaBackwardResult, FfaForwardArgs, FfaForwardResult, KernelBackend } from './backend.js';
import { cpuBackend } from './cpu/index.js';
import { requireKnownOptions } from '../util/options.js';
import { type ShapedTensor, checkQkvShapes, checkScalars, formatShape, requireShape, sliceListFromOptions } from './check-args.js';

// ---------------------------------------------------------------------------------------------
// Tensor kinds

/**
 * A tensor that lives off the host, as the dispatch sees it: its shape, dtype and location. The
 * `DeviceTensor` of 'magi-attention/device' is one (location 'cuda').
 */
export interface DeviceTensorLike extends ShapedTensor {
  readonly dtype: DType;
  /** Where its memory lives (e.g. 'cuda'); backends registered for this location run on it. */
  readonly location: string;
}

/** What flexFlashAttn takes: host Tensors, or device tensors of one location. */
export type AttnTensor = Tensor | DeviceTensorLike;

/** A kernel backend for device tensors: `location` says which ones it is registered for. */
export interface DeviceKernelBackend<T extends DeviceTensorLike = DeviceTensorLike> extends KernelBackend<T> {
  readonly location: string;
}

function isDeviceTensorLike(x: unknown): x is DeviceTensorLike {
  return typeof x === 'object' && x !== null && !(x instanceof Tensor) && typeof (x as { location?: unknown }).location === 'string';
}

function describe(x: unknown): string {
  if (x instanceof Tensor) return 'a host Tensor';
  if (isDeviceTensorLike(x)) return `a device tensor (location '${x.location}')`;
  if (x === null) return 'null';
  return typeof x === 'object' ? `a ${x.constructor?.name ?? 'plain object'}` : typeof x;
}

/**
 * `x` is a tensor of the same kind as q (both host Tensors, or device tensors of q's location):
 * the one rule that keeps a call on one backend.
 */
function requireSameKind(x: unknown, name: string, q: AttnTensor): void {
  if (q instanceof Tensor) {
    if (!(x instanceof Tensor)) {
      throw new InvalidArgumentError(name, isDeviceTensorLike(x) ? 'must be a host Tensor like q (host and device tensors cannot be mixed)' : 'must be a Tensor', `got ${describe(x)}`);
    }
    return;
  }
  if (!isDeviceTensorLike(x) || x.location !== q.location) {
    throw new InvalidArgumentError(name, `must be a device tensor on '${q.location}' like q (host and device tensors cannot be mixed)`, `got ${describe(x)}`);
  }
}

/** Mask and numerics options shared by the forward and the backward. */
export interface FlexFlashAttnMaskOptions<T extends AttnTensor = Tensor> {
  /** Query range of each slice: [start, end) pairs, an object with toNaiveRanges(), or a flat Int32Array. */
  qRanges: RangeListLike;
  /** Key range of each slice, same forms as qRanges. */
  kRanges: RangeListLike;
  /** One type for all slices or one per slice: names ('full', 'causal', 'inv_causal', 'bi_causal') or codes 0-3. Required. */
  maskTypes: MaskTypesLike;
  /** Default 1/sqrt(headDim). */
  softmaxScale?: number;
  /** Logit cap c (z = c·tanh(z/c)); 0 (default) disables. */
  softcap?: number;
  /** Learnable sink logits, float32 [S, Hq]. */
  sink?: T;
  /** Ask for a bit-reproducible run (the CPU backend always is). */
  deterministic?: boolean;
  /** A backend object or the name of a registered one; default: automatic choice by where the tensors live. */
  backend?: KernelBackend<T> | string;
}

export interface FlexFlashAttnOptions<T extends AttnTensor = Tensor> extends FlexFlashAttnMaskOptions<T> {
  /** Also return max_logits [Hq] (max over covered cells of the logit, after softcap). */
  returnMaxLogits?: boolean;
  /** Accumulate into this out [Tq, Hq, D] (any dtype) in place; needs `lse`. */
  out?: T;
  /** Accumulate into this float32 lse [Tq, Hq] in place; needs `out`. */
  lse?: T;
  /** Max-merge into this float32 [Hq] in place (implies max logits are computed). */
  maxLogits?: T;
}

export interface FlexFlashAttnBackwardOptions<T extends AttnTensor = Tensor> extends FlexFlashAttnMaskOptions<T> {
  /** Add dq into this float32 [Tq, Hq, D] in place. */
  dq?: T;
  /** Add dk into this float32 [Tk, Hkv, D] in place. */
  dk?: T;
  /** Add dv into this float32 [Tk, Hkv, D] in place. */
  dv?: T;
}

export interface FlexFlashAttnResult<T extends AttnTensor = Tensor> {
  out: T;
  lse: T;
  maxLogits?: T;
}

export interface FlexFlashAttnGrads<T extends AttnTensor = Tensor> {
  dq: T;
  dk: T;
  dv: T;
  dsink?: T;
}

// ---------------------------------------------------------------------------------------------
// Backend registry

const hostRegistry: KernelBackend<Tensor>[] = [];
const deviceRegistry: DeviceKernelBackend[] = [];

function isDeviceBackend(b: KernelBackend<Tensor> | DeviceKernelBackend): b is DeviceKernelBackend {
  return typeof (b as { location?: unknown }).location === 'string';
}

/**
 * Makes a backend available to the automatic choice (earlier registrations win). A backend with
 * a `location` serves device tensors of that location; one without serves host Tensors, ahead of
 * the CPU fallback. Returns a function that removes it again.
 */
export function registerKernelBackend(backend: KernelBackend<Tensor>): () => void;
export function registerKernelBackend<T extends DeviceTensorLike>(backend: DeviceKernelBackend<T>): () => void;
export function registerKernelBackend(backend: KernelBackend<Tensor> | DeviceKernelBackend): () => void {
  const list: Array<KernelBackend<Tensor> | DeviceKernelBackend> = isDeviceBackend(backend) ? deviceRegistry : hostRegistry;
  if (!list.includes(backend)) list.push(backend);
  return () => {
    const i = list.indexOf(backend);
    if (i >= 0) list.splice(i, 1);
  };
}

function noBackendFor(q: DeviceTensorLike): InvalidArgumentError {
  const hint = q.location === 'cuda' ? "import 'magi-attention/device' to register the CUDA backend" : `register a kernel backend with location '${q.location}'`;
  return new InvalidArgumentError('q', `is a device tensor on '${q.location}' but no kernel backend for '${q.location}' is registered`, hint);
}

/**
 * The backend that would run on `q`: an explicit choice, else (host q) the first registered host
 * backend that accepts it, else CPU; (device q) the first backend registered for q's location
 * that accepts it.
 */
export function selectKernelBackend(q: Tensor, choice?: KernelBackend<Tensor> | string): KernelBackend<Tensor>;
export function selectKernelBackend<T extends DeviceTensorLike>(q: T, choice?: KernelBackend<T> | string): KernelBackend<T>;
export function selectKernelBackend<T extends AttnTensor>(q: T, choice?: KernelBackend<T> | string): KernelBackend<T>;
export function selectKernelBackend(q: AttnTensor, choice?: KernelBackend<AttnTensor> | string): KernelBackend<AttnTensor> {
  let known: ReadonlyArray<KernelBackend<AttnTensor>>;
  if (q instanceof Tensor) {
    known = [...hostRegistry, cpuBackend] as ReadonlyArray<KernelBackend<AttnTensor>>;
  } else if (isDeviceTensorLike(q)) {
    known = deviceRegistry.filter((b) => b.location === q.location) as ReadonlyArray<KernelBackend<AttnTensor>>;
    if (known.length === 0 && typeof choice !== 'object') throw noBackendFor(q);
  } else {
    throw new InvalidArgumentError('q', 'must be a Tensor or a device tensor', `got ${describe(q)}`);
  }
  let backend: KernelBackend<AttnTensor> | undefined;
  if (typeof choice === 'string') {
    backend = known.find((b) => b.name === choice);
    if (backend === undefined) {
      throw new InvalidArgumentError('backend', `must name a kernel backend registered for ${describe(q)}`, `got "${choice}"; known: ${known.map((b) => b.name).join(', ')}`);
    }
  } else if (choice !== undefined) {
    const c: unknown = choice;
    if (c === null || typeof c !== 'object' || typeof (c as KernelBackend<AttnTensor>).accepts !== 'function' || typeof (c as KernelBackend<AttnTensor>).forward !== 'function') {
      throw new InvalidArgumentError('backend', 'must be the name of a registered kernel backend or a KernelBackend object', `got ${describe(c)}`);
    }
    backend = choice;
  } else {
    backend = known.find((b) => b.accepts(q));
    if (backend === undefined) throw new InvalidArgumentError('q', 'no kernel backend accepts this tensor', `${describe(q)}; registered: ${known.map((b) => b.name).join(', ')}`);
  }
  if (!backend.accepts(q)) throw new InvalidArgumentError('backend', `backend "${backend.name}" does not accept these tensors`);
  return backend;
}

// ---------------------------------------------------------------------------------------------
// Validation

function requireTensorArg(x: unknown, name: string, q: AttnTensor): asserts x is AttnTensor {
  requireSameKind(x, name, q);
}

function requireFloat32(x: AttnTensor, name: string): void {
  if (x.dtype !== 'float32') throw new ShapeError(name, 'must be float32', `got ${x.dtype}`);
}

/** q is a host Tensor or a device tensor, k and v are of its kind, and the shared shape rules hold. */
function checkQkv(q: unknown, k: unknown, v: unknown): asserts q is AttnTensor {
  if (!(q instanceof Tensor) && !isDeviceTensorLike(q)) {
    throw new InvalidArgumentError('q', "must be a Tensor (or a DeviceTensor from 'magi-attention/device')", `got ${describe(q)}`);
  }
  requireSameKind(k, 'k', q);
  requireSameKind(v, 'v', q);
  checkQkvShapes(q, k as AttnTensor, v as AttnTensor);
}

/** Structural checks for a SliceList handed in directly (makeSliceList already enforces them). */
function checkSlices(slices: SliceList, tokensQ: number, tokensK: number): void {
  const n = sliceCount(slices);
  if (slices.qRanges.length !== 2 * n || slices.kRanges.length !== 2 * n) {
    throw new MaskError('slices', 'qRanges and kRanges must hold two ends per slice type', `${slices.qRanges.length}, ${slices.kRanges.length} ends for ${n} types`);
  }
  for (let b = 0; b < n; b++) {
    if (slices.maskTypes[b] > 3) throw new MaskError(`maskTypes[${b}]`, 'integer mask type codes are 0-3', `got ${slices.maskTypes[b]}`);
    for (const [name, r] of [['qRanges', slices.qRanges], ['kRanges', slices.kRanges]] as const) {
      if (r[2 * b] < 0 || r[2 * b + 1] < r[2 * b]) throw new MaskError(`${name}[${b}]`, 'must be a half-open range with 0 <= start <= end', `got [${r[2 * b]}, ${r[2 * b + 1]})`);
    }
  }
  checkSliceBounds(slices, tokensQ, tokensK);
}

function checkSink(sink: unknown, headsQ: number, q: AttnTensor): void {
  if (sink === undefined) return;
  requireTensorArg(sink, 'sink', q);
  requireFloat32(sink, 'sink');
  if (sink.rank !== 2 || sink.shape[1] !== headsQ || sink.shape[0] < 1) {
    throw new ShapeError('sink', `must have shape [S, ${headsQ}] with S >= 1 (one logit per sink token and query head)`, `got ${formatShape(sink.shape)}`);
  }
}

/** Checks backend forward arguments by the public rules; throws a typed error naming the culprit. */
export function validateForwardArgs<T extends AttnTensor>(args: FfaForwardArgs<T>): void {
  checkQkv(args.q, args.k, args.v);
  const q: AttnTensor = args.q;
  const [tokensQ, headsQ, dim] = q.shape;
  checkSlices(args.slices, tokensQ, args.k.shape[0]);
  checkScalars(args.softmaxScale, args.softcap);
  checkSink(args.sink, headsQ, q);
  if ((args.outAcc === undefined) !== (args.lseAcc === undefined)) {
    throw new InvalidArgumentError(args.outAcc === undefined ? 'out' : 'lse', 'out and lse accumulators must be given together');
  }
  if (args.outAcc !== undefined) {
    requireTensorArg(args.outAcc, 'out', q);
    requireShape(args.outAcc, 'out', [tokensQ, headsQ, dim], "q's shape");
  }
  if (args.lseAcc !== undefined) {
    requireTensorArg(args.lseAcc, 'lse', q);
    requireFloat32(args.lseAcc, 'lse');
    requireShape(args.lseAcc, 'lse', [tokensQ, headsQ], '[tokens, heads] of q');
  }
  if (args.maxLogitsAcc !== undefined) {
    requireTensorArg(args.maxLogitsAcc, 'maxLogits', q);
    requireFloat32(args.maxLogitsAcc, 'maxLogits');
    requireShape(args.maxLogitsAcc, 'maxLogits', [headsQ], 'one value per query head');
  }
  if (!DTYPES.includes(args.outDtype)) throw new InvalidArgumentError('outDtype', `must be one of ${DTYPES.join(', ')}`, `got ${String(args.outDtype)}`);
}

/** Checks backend backward arguments by the public rules; throws a typed error naming the culprit. */
export function validateBackwardArgs<T extends AttnTensor>(args: FfaBackwardArgs<T>): void {
  checkQkv(args.q, args.k, args.v);
  const q: AttnTensor = args.q;
  const [tokensQ, headsQ] = q.shape;
  checkSlices(args.slices, tokensQ, args.k.shape[0]);
  checkScalars(args.softmaxScale, args.softcap);
  checkSink(args.sink, headsQ, q);
  requireTensorArg(args.dout, 'dout', q);
  requireShape(args.dout, 'dout', q.shape, "q's shape");
  requireTensorArg(args.out, 'out', q);
  requireShape(args.out, 'out', q.shape, "q's shape");
  requireTensorArg(args.lse, 'lse', q);
  requireFloat32(args.lse, 'lse');
  requireShape(args.lse, 'lse', [tokensQ, headsQ], '[tokens, heads] of q');
  for (const [name, acc, like] of [
    ['dq', args.dqAcc, args.q],
    ['dk', args.dkAcc, args.k],
    ['dv', args.dvAcc, args.v],
  ] as const) {
    if (acc === undefined) continue;
    requireTensorArg(acc, name, q);
    requireFloat32(acc, name);
    requireShape(acc, name, like.shape, `the shape of ${name.slice(1)}`);
  }
}

const MASK_OPTION_NAMES = ['qRanges', 'kRanges', 'maskTypes', 'softmaxScale', 'softcap', 'sink', 'deterministic', 'backend'] as const;
const FORWARD_OPTION_NAMES: readonly string[] = [...MASK_OPTION_NAMES, 'returnMaxLogits', 'out', 'lse', 'maxLogits'];
const BACKWARD_OPTION_NAMES: readonly string[] = [...MASK_OPTION_NAMES, 'dq', 'dk', 'dv'];

function buildSlices(q: AttnTensor, k: AttnTensor, options: FlexFlashAttnMaskOptions<AttnTensor>, known: readonly string[]): SliceList {
  requireKnownOptions(options, 'options', known);
  return sliceListFromOptions(options, q.shape[0], k.shape[0]);
}

function defaultScale(q: AttnTensor, options: FlexFlashAttnMaskOptions<AttnTensor>): number {
  return options.softmaxScale ?? 1 / Math.sqrt(q.shape[2]);
}

// ---------------------------------------------------------------------------------------------
// Entry points

/**
 * Attention of q [Tq, Hq, D] over k, v [Tk, Hkv, D] under the slice mask in `options`.
 * Returns out [Tq, Hq, D] in q's dtype (or the given `out`, updated), lse [Tq, Hq] float32
 * (natural log; -inf for rows that see nothing) and, if asked, maxLogits [Hq].
 *
 * Host Tensors run on the CPU (or a registered host backend); DeviceTensors run on the GPU once
 * 'magi-attention/device' is imported, and the results are new DeviceTensors the caller frees.
 * All tensors of a call must be of one kind.
 */
export function flexFlashAttn<T extends AttnTensor>(q: T, k: T, v: T, options: FlexFlashAttnOptions<T>): FlexFlashAttnResult<T> {
  checkQkv(q, k, v);
  const slices = buildSlices(q, k, options, FORWARD_OPTION_NAMES);
  const args: FfaForwardArgs<T> = {
    q,
    k,
    v,
    slices,
    softmaxScale: defaultScale(q, options),
    softcap: options.softcap ?? 0,
    sink: options.sink,
    outAcc: options.out,
    lseAcc: options.lse,
    returnMaxLogits: options.returnMaxLogits ?? false,
    maxLogitsAcc: options.maxLogits,
    outDtype: q.dtype,
    deterministic: options.deterministic ?? false,
  };
  validateForwardArgs(args);
  const backend = selectKernelBackend(q, options.backend);
  const result: FfaForwardResult<T> = backend.forward(args);
  return result.maxLogits === undefined ? { out: result.out, lse: result.lse } : { out: result.out, lse: result.lse, maxLogits: result.maxLogits };
}

/**
 * Gradients of a scalar loss through `flexFlashAttn`, given dL/dout and the FINAL out and lse
 * of the forward (after every accumulation and the sink). Returns dq, dk, dv in the input dtype
 * (or the given float32 buffers, added into) and dsink (float32 [S, Hq]) when a sink is given.
 * Tensors of one kind, as for the forward; the backend is chosen the same way.
 */
export function flexFlashAttnBackward<T extends AttnTensor>(
  dout: T,
  q: T,
  k: T,
  v: T,
  out: T,
  lse: T,
  options: FlexFlashAttnBackwardOptions<T>,
): FlexFlashAttnGrads<T> {
  checkQkv(q, k, v);
  const slices = buildSlices(q, k, options, BACKWARD_OPTION_NAMES);
  const args: FfaBackwardArgs<T> = {
    dout,
    q,
    k,
    v,
    out,
    lse,
    slices,
    softmaxScale: defaultScale(q, options),
    softcap: options.softcap ?? 0,
    sink: options.sink,
    dqAcc: options.dq,
    dkAcc: options.dk,
    dvAcc: options.dv,
    deterministic: options.deterministic ?? false,
  };
  validateBackwardArgs(args);
  const backend = selectKernelBackend(q, options.backend);
  const result: FfaBackwardResult<T> = backend.backward(args);
  const grads: FlexFlashAttnGrads<T> = { dq: result.dq, dk: result.dk, dv: result.dv };
  if (result.dsink !== undefined) grads.dsink = result.dsink;
  return grads;
}
