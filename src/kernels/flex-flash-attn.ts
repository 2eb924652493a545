/**
 * The public flex-flash-attention entry points: `flexFlashAttn` (forward) and
 * `flexFlashAttnBackward`. They turn user-friendly options into the backend's argument shape,
 * validate everything before any work starts (each error names the argument and the rule), and
 * hand the call to a kernel backend: the first registered one that accepts the tensors, else
 * the CPU backend.
 *
 * The validators are exported too, so callers that build backend arguments themselves (the
 * distributed runtime) check them by the same rules.
 */
import { Tensor } from '../tensor.js';
import { DTYPES } from '../dtype.js';
import { InvalidArgumentError, MaskError, ShapeError } from '../errors.js';
import { type MaskTypesLike, type RangeListLike, type SliceList, checkSliceBounds, sliceCount } from '../mask/slice-list.js';
import type { FfaBackwardArgs, FfaBackwardResult, FfaForwardArgs, FfaForwardResult, KernelBackend } from './backend.js';
import { cpuBackend } from './cpu/index.js';
import { checkQkvShapes, checkScalars, formatShape, requireShape, sliceListFromOptions } from './check-args.js';

/** Mask and numerics options shared by the forward and the backward. */
export interface FlexFlashAttnMaskOptions {
  /** Query range of each slice: [start, end) pairs, an object with toNaiveRanges(), or a flat Int32Array. */
  qRanges: RangeListLike;
  /** Key range of each slice, same forms as qRanges. */
  kRanges: RangeListLike;
  /** One type for all slices or one per slice: names ('full', 'causal', 'inv_causal', 'bi_causal') or codes 0-3. Default 'full'. */
  maskTypes?: MaskTypesLike;
  /** Default 1/sqrt(headDim). */
  softmaxScale?: number;
  /** Logit cap c (z = c·tanh(z/c)); 0 (default) disables. */
  softcap?: number;
  /** Learnable sink logits, float32 [S, Hq]. */
  sink?: Tensor;
  /** Ask for a bit-reproducible run (the CPU backend always is). */
  deterministic?: boolean;
  /** A backend object or the name of a registered one; default: automatic choice. */
  backend?: KernelBackend<Tensor> | string;
}

export interface FlexFlashAttnOptions extends FlexFlashAttnMaskOptions {
  /** Also return max_logits [Hq] (max over covered cells of the logit, after softcap). */
  returnMaxLogits?: boolean;
  /** Accumulate into this out [Tq, Hq, D] (any dtype) in place; needs `lse`. */
  out?: Tensor;
  /** Accumulate into this float32 lse [Tq, Hq] in place; needs `out`. */
  lse?: Tensor;
  /** Max-merge into this float32 [Hq] in place (implies max logits are computed). */
  maxLogits?: Tensor;
}

export interface FlexFlashAttnBackwardOptions extends FlexFlashAttnMaskOptions {
  /** Add dq into this float32 [Tq, Hq, D] in place. */
  dq?: Tensor;
  /** Add dk into this float32 [Tk, Hkv, D] in place. */
  dk?: Tensor;
  /** Add dv into this float32 [Tk, Hkv, D] in place. */
  dv?: Tensor;
}

export interface FlexFlashAttnResult {
  out: Tensor;
  lse: Tensor;
  maxLogits?: Tensor;
}

export interface FlexFlashAttnGrads {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
  dsink?: Tensor;
}

// ---------------------------------------------------------------------------------------------
// Backend registry

const registry: KernelBackend<Tensor>[] = [];

/**
 * Makes a backend available to the automatic choice, ahead of the CPU fallback (earlier
 * registrations win). Returns a function that removes it again.
 */
export function registerKernelBackend(backend: KernelBackend<Tensor>): () => void {
  if (!registry.includes(backend)) registry.push(backend);
  return () => {
    const i = registry.indexOf(backend);
    if (i >= 0) registry.splice(i, 1);
  };
}

/** The backend that would run on `q`: an explicit choice, else the first registered one that accepts it, else CPU. */
export function selectKernelBackend(q: Tensor, choice?: KernelBackend<Tensor> | string): KernelBackend<Tensor> {
  const known = [...registry, cpuBackend];
  let backend: KernelBackend<Tensor> | undefined;
  if (typeof choice === 'string') {
    backend = known.find((b) => b.name === choice);
    if (backend === undefined) {
      throw new InvalidArgumentError('backend', 'must name a registered kernel backend', `got "${choice}"; known: ${known.map((b) => b.name).join(', ')}`);
    }
  } else if (choice !== undefined) {
    backend = choice;
  } else {
    backend = known.find((b) => b.accepts(q));
    if (backend === undefined) throw new InvalidArgumentError('q', 'no kernel backend accepts this tensor');
  }
  if (!backend.accepts(q)) throw new InvalidArgumentError('backend', `backend "${backend.name}" does not accept these tensors`);
  return backend;
}

// ---------------------------------------------------------------------------------------------
// Validation


function requireTensor(x: unknown, name: string): asserts x is Tensor {
  if (!(x instanceof Tensor)) throw new InvalidArgumentError(name, 'must be a Tensor', `got ${x === null ? 'null' : typeof x}`);
}

function requireFloat32(x: Tensor, name: string): void {
  if (x.dtype !== 'float32') throw new ShapeError(name, 'must be float32', `got ${x.dtype}`);
}

/** q, k and v are host Tensors that follow the shared shape rules. */
function checkQkv(q: unknown, k: unknown, v: unknown): void {
  requireTensor(q, 'q');
  requireTensor(k, 'k');
  requireTensor(v, 'v');
  checkQkvShapes(q, k, v);
}

/** Structural checks for a SliceList handed in directly (makeSliceList already enforces them). */
function checkSlices(slices: SliceList, tokensQ: number, tokensK: number): void {
  const n = sliceCount(slices);
  if (slices.qRanges.length !== 2 * n || slices.kRanges.length !== 2 * n) {
    throw new MaskError('slices', 'qRanges and kRanges must hold two ends per slice type', `${slices.qRanges.length}, ${slices.kRanges.length} ends for ${n} types`);
  }
  for (let b = 0; b < n; b++) {
    if (slices.types[b] > 3) throw new MaskError(`maskTypes[${b}]`, 'integer mask type codes are 0-3', `got ${slices.types[b]}`);
    for (const [name, r] of [['qRanges', slices.qRanges], ['kRanges', slices.kRanges]] as const) {
      if (r[2 * b] < 0 || r[2 * b + 1] < r[2 * b]) throw new MaskError(`${name}[${b}]`, 'must be a half-open range with 0 <= start <= end', `got [${r[2 * b]}, ${r[2 * b + 1]})`);
    }
  }
  checkSliceBounds(slices, tokensQ, tokensK);
}

function checkSink(sink: unknown, headsQ: number): void {
  if (sink === undefined) return;
  requireTensor(sink, 'sink');
  requireFloat32(sink, 'sink');
  if (sink.rank !== 2 || sink.shape[1] !== headsQ || sink.shape[0] < 1) {
    throw new ShapeError('sink', `must have shape [S, ${headsQ}] with S >= 1 (one logit per sink token and query head)`, `got ${formatShape(sink.shape)}`);
  }
}

/** Checks backend forward arguments by the public rules; throws a typed error naming the culprit. */
export function validateForwardArgs(args: FfaForwardArgs<Tensor>): void {
  checkQkv(args.q, args.k, args.v);
  const [tokensQ, headsQ, dim] = args.q.shape;
  checkSlices(args.slices, tokensQ, args.k.shape[0]);
  checkScalars(args.softmaxScale, args.softcap);
  checkSink(args.sink, headsQ);
  if ((args.outAcc === undefined) !== (args.lseAcc === undefined)) {
    throw new InvalidArgumentError(args.outAcc === undefined ? 'out' : 'lse', 'out and lse accumulators must be given together');
  }
  if (args.outAcc !== undefined) {
    requireTensor(args.outAcc, 'out');
    requireShape(args.outAcc, 'out', [tokensQ, headsQ, dim], "q's shape");
  }
  if (args.lseAcc !== undefined) {
    requireTensor(args.lseAcc, 'lse');
    requireFloat32(args.lseAcc, 'lse');
    requireShape(args.lseAcc, 'lse', [tokensQ, headsQ], '[tokens, heads] of q');
  }
  if (args.maxLogitsAcc !== undefined) {
    requireTensor(args.maxLogitsAcc, 'maxLogits');
    requireFloat32(args.maxLogitsAcc, 'maxLogits');
    requireShape(args.maxLogitsAcc, 'maxLogits', [headsQ], 'one value per query head');
  }
  if (!DTYPES.includes(args.outDtype)) throw new InvalidArgumentError('outDtype', `must be one of ${DTYPES.join(', ')}`, `got ${String(args.outDtype)}`);
}

/** Checks backend backward arguments by the public rules; throws a typed error naming the culprit. */
export function validateBackwardArgs(args: FfaBackwardArgs<Tensor>): void {
  checkQkv(args.q, args.k, args.v);
  const [tokensQ, headsQ] = args.q.shape;
  checkSlices(args.slices, tokensQ, args.k.shape[0]);
  checkScalars(args.softmaxScale, args.softcap);
  checkSink(args.sink, headsQ);
  requireTensor(args.dout, 'dout');
  requireShape(args.dout, 'dout', args.q.shape, "q's shape");
  requireTensor(args.out, 'out');
  requireShape(args.out, 'out', args.q.shape, "q's shape");
  requireTensor(args.lse, 'lse');
  requireFloat32(args.lse, 'lse');
  requireShape(args.lse, 'lse', [tokensQ, headsQ], '[tokens, heads] of q');
  for (const [name, acc, like] of [
    ['dq', args.dqAcc, args.q],
    ['dk', args.dkAcc, args.k],
    ['dv', args.dvAcc, args.v],
  ] as const) {
    if (acc === undefined) continue;
    requireTensor(acc, name);
    requireFloat32(acc, name);
    requireShape(acc, name, like.shape, `the shape of ${name.slice(1)}`);
  }
}

function buildSlices(q: Tensor, k: Tensor, options: FlexFlashAttnMaskOptions): SliceList {
  return sliceListFromOptions(options, q.shape[0], k.shape[0]);
}

function defaultScale(q: Tensor, options: FlexFlashAttnMaskOptions): number {
  return options.softmaxScale ?? 1 / Math.sqrt(q.shape[2]);
}

// ---------------------------------------------------------------------------------------------
// Entry points

/**
 * Attention of q [Tq, Hq, D] over k, v [Tk, Hkv, D] under the slice mask in `options`.
 * Returns out [Tq, Hq, D] in q's dtype (or the given `out`, updated), lse [Tq, Hq] float32
 * (natural log; -inf for rows that see nothing) and, if asked, maxLogits [Hq].
 */
export function flexFlashAttn(q: Tensor, k: Tensor, v: Tensor, options: FlexFlashAttnOptions): FlexFlashAttnResult {
  checkQkv(q, k, v);
  const slices = buildSlices(q, k, options);
  const args: FfaForwardArgs<Tensor> = {
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
  const result: FfaForwardResult<Tensor> = backend.forward(args);
  return result.maxLogits === undefined ? { out: result.out, lse: result.lse } : { out: result.out, lse: result.lse, maxLogits: result.maxLogits };
}

/**
 * Gradients of a scalar loss through `flexFlashAttn`, given dL/dout and the FINAL out and lse
 * of the forward (after every accumulation and the sink). Returns dq, dk, dv in the input dtype
 * (or the given float32 buffers, added into) and dsink (float32 [S, Hq]) when a sink is given.
 */
export function flexFlashAttnBackward(
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  options: FlexFlashAttnBackwardOptions,
): FlexFlashAttnGrads {
  checkQkv(q, k, v);
  const slices = buildSlices(q, k, options);
  const args: FfaBackwardArgs<Tensor> = {
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
  const result: FfaBackwardResult<Tensor> = backend.backward(args);
  const grads: FlexFlashAttnGrads = { dq: result.dq, dk: result.dk, dv: result.dv };
  if (result.dsink !== undefined) grads.dsink = result.dsink;
  return grads;
}
