/**
 * The distributed attention pipeline (reference 03 §3-§4), kv-only communication: q, out and
 * dq never move; each rank fetches the remote k/v its rows read, stage by stage, with GroupCast.
 * Written once for every kind of tensor: host Tensors and device tensors run the same steps
 * through their AttnOps (attn-ops.ts); on a GPU the kernels queue on a compute stream and the
 * collectives on a communication stream, ordered by events, and the host never waits for the
 * device inside the stage loop.
 *
 * Forward: the fetch of stage 0 starts before the host stage (local q × local k) is computed, and
 * the fetch of stage i+1 before stage i is computed, so the exchange runs behind the compute.
 * Every stage's partial (out, lse) is merged by log-sum-exp into one float32 accumulator (the
 * kernel's outAcc / lseAcc); the sink enters once, at the host stage; max logits are max-merged
 * over stages and then all-reduced over the group. With overlap degree 0 (`noOverlap`) there is
 * nothing to overlap: the remote k/v is fetched first and one kernel call covers the host and
 * remote keys together.
 *
 * Backward: k/v are fetched again by the same GroupCasts (remote k/v is not kept between the
 * passes). With the final lse every stage's probabilities are already globally normalised, so
 * partial gradients simply add: dq sums locally in float32, and each stage's partial dk/dv of its
 * stage buffer goes back to the owners with GroupReduce(sum) in float32, the mirror of the fetch.
 * dsink comes from the host stage only and is this rank's partial unless `dsinkReduce` says
 * otherwise.
 *
 * Every rank issues the same collectives in the same order whether or not its own stage has work.
 * With a key over a 2-D mesh each stage's GroupCast and GroupReduce are hierarchical (k/v cross
 * to another node once and are relayed inside it); stage-comm.ts runs both forms and issues a
 * call's collectives in program order.
 */
import { InvalidArgumentError, ShapeError } from '../errors.js';
import { prepareGroupCast } from '../comm/group-collective.js';
import type { KernelBackend } from '../kernels/backend.js';
import { validateBackwardArgs, validateForwardArgs, type AttnTensor } from '../kernels/flex-flash-attn.js';
import { SliceBuffer } from '../mask/geometry.js';
import type { SliceList } from '../mask/slice-list.js';
import type { RankPlan, StagePlan } from '../solver/plan.js';
import { requireKnownOptions } from '../util/options.js';
import { attnOpsFor, castAndRelease, rowBytes, type AttnOps } from './attn-ops.js';
import { requireKey, type DistAttnRuntimeKey } from './key.js';
import { StageComm } from './stage-comm.js';
import { NO_TRACE, type AttnTrace, type Tracer } from './trace.js';

export interface CalcAttnOptions<T extends AttnTensor = AttnTensor> {
  /** Sink logits, float32 [S, Hq], the same (replicated) on every rank; of q's kind. */
  sink?: T;
  /** Default 1/sqrt(headDim). */
  softmaxScale?: number;
  /** 0 (default) disables. */
  softcap?: number;
  /** Also return max logits [Hq], the max over the whole group. */
  returnMaxLogits?: boolean;
  /** Bit-reproducible kernels (passed through to them). */
  deterministic?: boolean;
  /** Kernel backend object or registered name; default: automatic choice by where q lives. */
  backend?: KernelBackend<T> | string;
  /** Records every stage's compute and communication on this rank's timeline. */
  trace?: AttnTrace;
}

export interface CalcAttnBackwardOptions<T extends AttnTensor = AttnTensor> extends Omit<CalcAttnOptions<T>, 'returnMaxLogits'> {
  /**
   * How dsink is combined over the group: 'none' (default, as the reference) returns this rank's
   * partial (the sum over ranks is the full gradient); 'sum' / 'avg' all-reduce it.
   */
  dsinkReduce?: 'none' | 'sum' | 'avg';
}

const FORWARD_OPTIONS = ['sink', 'softmaxScale', 'softcap', 'returnMaxLogits', 'deterministic', 'backend', 'trace'];
const BACKWARD_OPTIONS = ['sink', 'softmaxScale', 'softcap', 'deterministic', 'backend', 'trace', 'dsinkReduce'];

export interface CalcAttnResult<T extends AttnTensor = AttnTensor> {
  /** [shardSeqlen, Hq, D] in q's dtype. */
  out: T;
  /** [shardSeqlen, Hq] float32, natural log, sink included. */
  lse: T;
  /** [Hq] float32, max over the group; only when asked for. */
  maxLogits?: T;
}

export interface CalcAttnGrads<T extends AttnTensor = AttnTensor> {
  dq: T;
  dk: T;
  dv: T;
  /** float32 [S, Hq] when a sink was given: this rank's partial unless dsinkReduce is 'sum' or 'avg'. */
  dsink?: T;
}

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

function checkLocal<T>(ops: AttnOps<T>, t: T, name: string, key: DistAttnRuntimeKey, heads: number, headsName: string): void {
  const shape = ops.shape(t);
  const want = [key.shardSeqlen, heads, key.headDim];
  if (shape.length !== 3) throw new ShapeError(name, `must be 3-D [local tokens, heads, headDim] = ${fmt(want)} for this key`, `got ${fmt(shape)}`);
  if (shape[0] !== key.shardSeqlen) {
    throw new ShapeError(name, `must be this rank's shard: ${key.shardSeqlen} local rows (use dispatch(x, key)), shape ${fmt(want)}`, `got ${fmt(shape)}`);
  }
  if (shape[1] !== heads) throw new ShapeError(name, `must have ${headsName} = ${heads} heads as the key says, shape ${fmt(want)}`, `got ${fmt(shape)}`);
  if (shape[2] !== key.headDim) throw new ShapeError(name, `must have head dim ${key.headDim} as the key says, shape ${fmt(want)}`, `got ${fmt(shape)}`);
}

/** The operations for this call, after checking the key and the shards' shapes. */
function prepareCall<T extends AttnTensor>(q: T, k: T, v: T, key: DistAttnRuntimeKey, backend: KernelBackend<T> | string | undefined): AttnOps<T> {
  requireKey(key);
  const ops = attnOpsFor(q, key.group, backend as KernelBackend<AttnTensor> | string | undefined) as AttnOps<T>;
  checkLocal(ops, q, 'q', key, key.numHeadsQ, 'numHeadsQ');
  checkLocal(ops, k, 'k', key, key.numHeadsKv, 'numHeadsKv');
  checkLocal(ops, v, 'v', key, key.numHeadsKv, 'numHeadsKv');
  return ops;
}

/**
 * The fetch schedule both passes share: stage 0's k/v fetch starts on construction (so it runs
 * during the host stage), and taking stage i starts the fetch of stage i + 1 (so it runs during
 * stage i's compute).
 */
class StagePipeline<T> {
  private pending: Promise<Array<() => T>> | undefined;
  private fetchSpan: ReturnType<Tracer['begin']> = null;

  constructor(
    private readonly ops: AttnOps<T>,
    private readonly key: DistAttnRuntimeKey,
    private readonly comm: StageComm<T>,
    private readonly k: T,
    private readonly v: T,
    private readonly trace: Tracer,
  ) {
    this.pending = key.rankPlan.stages.length > 0 ? this.fetch(0) : undefined;
  }

  private fetch(i: number): Promise<Array<() => T>> {
    const stage = this.key.rankPlan.stages[i];
    const p = prepareGroupCast(stage.groupCast, this.key.group.size);
    const row = rowBytes(this.ops, this.k);
    this.fetchSpan = this.trace.begin(i, 'comm', 'fetch', { sendBytes: 2 * p.sendRows * row, recvBytes: 2 * p.recvRows * row });
    return this.comm.cast([this.k, this.v], stage);
  }

  /** Stage i's k/v (i in order), ready for compute; the next fetch starts before this returns. */
  async take(i: number): Promise<[T, T]> {
    const fetched = this.pending;
    if (fetched === undefined) throw new Error(`StagePipeline: stage ${i} was not fetched`);
    const wait = this.trace.begin(i, 'compute', 'wait');
    const [k, v] = await fetched;
    this.trace.end(this.fetchSpan);
    this.ops.joinComm();
    this.trace.end(wait);
    this.pending = i + 1 < this.key.rankPlan.stages.length ? this.fetch(i + 1) : undefined;
    return [k(), v()];
  }
}

/** Host slices and stage 0's remote slices as one list over [local k ; stage buffer] (overlap degree 0). */
const fusedSlicesCache = new WeakMap<RankPlan, SliceList>();
function fusedSlices(rp: RankPlan, shardSeqlen: number): SliceList {
  let fused = fusedSlicesCache.get(rp);
  if (fused === undefined) {
    const b = new SliceBuffer(rp.hostSlices.maskTypes.length + rp.stages[0].remoteSlices.maskTypes.length);
    b.append(rp.hostSlices);
    const r = rp.stages[0].remoteSlices;
    for (let i = 0; i < r.maskTypes.length; i++) b.push(r.qRanges[2 * i], r.qRanges[2 * i + 1], r.kRanges[2 * i] + shardSeqlen, r.kRanges[2 * i + 1] + shardSeqlen, r.maskTypes[i]);
    fusedSlicesCache.set(rp, (fused = b.toSliceList()));
  }
  return fused;
}

/** [local rows ; stage rows] of k or v, for the fused call (overlap degree 0). */
function concatRows<T>(ops: AttnOps<T>, local: T, stage: T): T {
  const n = ops.shape(local)[0];
  const m = ops.shape(stage)[0];
  // Both halves are written, so nothing needs zeroing.
  const both = ops.empty(ops.dtype(local), [n + m, ...ops.shape(local).slice(1)]);
  ops.copyInto(ops.rowsView(both, 0, n), local);
  ops.copyInto(ops.rowsView(both, n, n + m), stage);
  return both;
}

/** The fused path's keys and values: stage 0 fetched in one go and appended to the local rows. */
async function fetchAllKv<T>(ops: AttnOps<T>, comm: StageComm<T>, k: T, v: T, stage: StagePlan, trace: Tracer): Promise<[T, T]> {
  const fetch = trace.begin(0, 'comm', 'fetch');
  const [kFetched, vFetched] = await comm.cast([k, v], stage);
  trace.end(fetch);
  ops.joinComm();
  const ks = kFetched();
  const vs = vFetched();
  const all: [T, T] = [concatRows(ops, k, ks), concatRows(ops, v, vs)];
  [ks, vs].forEach((t) => ops.release(t));
  return all;
}

function isNoOverlap(key: DistAttnRuntimeKey): boolean {
  return key.plan.overlapConfig.noOverlap && key.rankPlan.stages.length === 1;
}

/**
 * Distributed attention of this rank's shard: q [shard, Hq, D], k and v [shard, Hkv, D], all made
 * by dispatch(x, key), host Tensors or device tensors (with a key of a device group). A
 * collective: every rank of the key's group calls it with the same options. Equals single-device
 * flexFlashAttn on the undispatched tensors, up to the merge order.
 */
export async function calcAttn<T extends AttnTensor>(q: T, k: T, v: T, key: DistAttnRuntimeKey, options: CalcAttnOptions<T> = {}): Promise<CalcAttnResult<T>> {
  requireKnownOptions(options, 'options', FORWARD_OPTIONS);
  const ops = prepareCall(q, k, v, key, options.backend);
  const rp = key.rankPlan;
  const [, headsQ, dim] = ops.shape(q);
  const base = {
    softmaxScale: options.softmaxScale ?? 1 / Math.sqrt(dim),
    softcap: options.softcap ?? 0,
    returnMaxLogits: options.returnMaxLogits ?? false,
    outDtype: 'float32' as const,
    deterministic: options.deterministic ?? false,
  };
  const maxLogitsAcc = base.returnMaxLogits ? ops.full([headsQ], -Infinity) : undefined;
  // Checks shapes, scalars and the sink by the kernel's own rules before anything starts.
  validateForwardArgs({ q, k, v, slices: rp.hostSlices, sink: options.sink, maxLogitsAcc, ...base });
  const trace = options.trace?.tracerFor(ops) ?? NO_TRACE;
  ops.begin();

  let out: T;
  let lse: T;
  const comm = new StageComm(ops, key);
  if (isNoOverlap(key)) {
    const stage = rp.stages[0];
    const [kAll, vAll] = await fetchAllKv(ops, comm, k, v, stage, trace);
    const span = trace.begin('host', 'compute', 'compute', { area: rp.hostArea + stage.remoteArea });
    ({ out, lse } = ops.forward({ q, k: kAll, v: vAll, slices: fusedSlices(rp, key.shardSeqlen), sink: options.sink, maxLogitsAcc, ...base }));
    trace.end(span);
    [kAll, vAll].forEach((t) => ops.release(t));
  } else {
    const fetches = new StagePipeline(ops, key, comm, k, v, trace);
    // Host stage: every rank runs it, also with no slice (the sink alone sets lse; out is 0).
    // With no remote slice to merge later, it writes q's dtype at once (no float32 pass and cast).
    const merges = rp.stages.some((s) => s.remoteSlices.maskTypes.length > 0);
    let span = trace.begin('host', 'compute', 'compute', { area: rp.hostArea });
    ({ out, lse } = ops.forward({ q, k, v, slices: rp.hostSlices, sink: options.sink, maxLogitsAcc, ...base, outDtype: merges ? 'float32' : ops.dtype(q) }));
    trace.end(span);
    for (let i = 0; i < rp.stages.length; i++) {
      const stage = rp.stages[i];
      const [ks, vs] = await fetches.take(i);
      span = trace.begin(i, 'compute', 'compute', { area: stage.remoteArea });
      if (stage.remoteSlices.maskTypes.length > 0) ops.forward({ q, k: ks, v: vs, slices: stage.remoteSlices, outAcc: out, lseAcc: lse, maxLogitsAcc, ...base });
      trace.end(span);
      ops.release(ks);
      ops.release(vs);
    }
  }

  const result: CalcAttnResult<T> = { out, lse };
  if (ops.dtype(out) !== ops.dtype(q)) result.out = castAndRelease(ops, out, ops.dtype(q));
  if (maxLogitsAcc !== undefined) {
    const span = trace.begin('all', 'comm', 'final');
    await comm.allReduce(maxLogitsAcc, 'max');
    trace.end(span);
    ops.joinComm();
    result.maxLogits = maxLogitsAcc;
  }
  ops.end();
  return result;
}

/**
 * Gradients of distributed attention, given dL/dout of this rank's shard and the forward's final
 * out and lse (as calcAttn returned them). A collective, like calcAttn. Returns dq, dk, dv in the
 * input dtype, and dsink (float32) when a sink is given.
 */
export async function calcAttnBackward<T extends AttnTensor>(
  dout: T,
  q: T,
  k: T,
  v: T,
  out: T,
  lse: T,
  key: DistAttnRuntimeKey,
  options: CalcAttnBackwardOptions<T> = {},
): Promise<CalcAttnGrads<T>> {
  requireKnownOptions(options, 'options', BACKWARD_OPTIONS);
  const ops = prepareCall(q, k, v, key, options.backend);
  const rp = key.rankPlan;
  const [tokens, headsQ, dim] = ops.shape(q);
  const headsKv = key.numHeadsKv;
  const dsinkReduce = options.dsinkReduce ?? 'none';
  if (dsinkReduce !== 'none' && dsinkReduce !== 'sum' && dsinkReduce !== 'avg') {
    throw new InvalidArgumentError('dsinkReduce', "must be 'none', 'sum' or 'avg'", `got ${String(dsinkReduce)}`);
  }
  const base = { dout, q, out, lse, softmaxScale: options.softmaxScale ?? 1 / Math.sqrt(dim), softcap: options.softcap ?? 0, deterministic: options.deterministic ?? false };
  validateBackwardArgs({ ...base, k, v, slices: rp.hostSlices, sink: options.sink });
  const trace = options.trace?.tracerFor(ops) ?? NO_TRACE;
  ops.begin();
  const dq = ops.zeros('float32', [tokens, headsQ, dim]);
  // float32 accumulators: the fused path makes them views of its [local ; stage] buffers.
  let dk: T;
  let dv: T;
  let dsink: T | undefined;
  const reduces: Promise<void>[] = [];
  // The fused path's [local ; stage] gradient buffers, which dk and dv are views of.
  const owners: T[] = [];

  const comm = new StageComm(ops, key);

  /** Sends a stage's partial dk/dv (float32, the reference's high-precision reduce) back to their owners. */
  const reduceStage = (i: number, pdk: T, pdv: T): void => {
    const stage = rp.stages[i];
    const p = prepareGroupCast(stage.groupCast, key.group.size);
    const row = rowBytes(ops, pdk);
    const span = trace.begin(i, 'comm', 'reduce', { sendBytes: 2 * p.recvRows * row, recvBytes: 2 * p.sendRows * row });
    reduces.push(comm.reduceSum([pdk, pdv], [dk, dv], stage).then(() => trace.end(span)));
  };

  if (isNoOverlap(key)) {
    const stage = rp.stages[0];
    const [kAll, vAll] = await fetchAllKv(ops, comm, k, v, stage, trace);
    const rows = key.shardSeqlen + stage.stageBufferLength;
    const dkAll = ops.zeros('float32', [rows, headsKv, dim]);
    const dvAll = ops.zeros('float32', [rows, headsKv, dim]);
    const span = trace.begin('host', 'compute', 'compute', { area: rp.hostArea + stage.remoteArea });
    dsink = ops.backward({ ...base, k: kAll, v: vAll, slices: fusedSlices(rp, key.shardSeqlen), sink: options.sink, dqAcc: dq, dkAcc: dkAll, dvAcc: dvAll }).dsink;
    trace.end(span);
    [kAll, vAll].forEach((t) => ops.release(t));
    owners.push(dkAll, dvAll);
    // The local rows are this rank's own dk/dv; the stage rows go back to their owners.
    dk = ops.rowsView(dkAll, 0, key.shardSeqlen);
    dv = ops.rowsView(dvAll, 0, key.shardSeqlen);
    reduceStage(0, ops.rowsView(dkAll, key.shardSeqlen, rows), ops.rowsView(dvAll, key.shardSeqlen, rows));
  } else {
    dk = ops.zeros('float32', [tokens, headsKv, dim]);
    dv = ops.zeros('float32', [tokens, headsKv, dim]);
    const fetches = new StagePipeline(ops, key, comm, k, v, trace);
    // With no host slice the kernel still yields dsink (it depends on lse, out and dout only).
    let span = trace.begin('host', 'compute', 'compute', { area: rp.hostArea });
    dsink = ops.backward({ ...base, k, v, slices: rp.hostSlices, sink: options.sink, dqAcc: dq, dkAcc: dk, dvAcc: dv }).dsink;
    trace.end(span);
    for (let i = 0; i < rp.stages.length; i++) {
      const stage = rp.stages[i];
      const [ks, vs] = await fetches.take(i);
      const shape = [stage.stageBufferLength, headsKv, dim];
      const pdk = ops.zeros('float32', shape);
      const pdv = ops.zeros('float32', shape);
      span = trace.begin(i, 'compute', 'compute', { area: stage.remoteArea });
      if (stage.remoteSlices.maskTypes.length > 0) ops.backward({ ...base, k: ks, v: vs, slices: stage.remoteSlices, dqAcc: dq, dkAcc: pdk, dvAcc: pdv });
      trace.end(span);
      ops.release(ks);
      ops.release(vs);
      reduceStage(i, pdk, pdv);
    }
  }

  const dsinkWork = dsink !== undefined && dsinkReduce !== 'none' ? comm.allReduce(dsink, 'sum') : undefined;
  const span = trace.begin('all', 'comm', 'final');
  await Promise.all(reduces);
  if (dsinkWork !== undefined && dsink !== undefined) {
    await dsinkWork;
    if (dsinkReduce === 'avg') ops.scale(dsink, 1 / key.group.size);
  }
  trace.end(span);
  ops.joinComm();
  // Fresh tensors in q's dtype (also for float32: dk and dv may be views of the fused buffers).
  const dtype = ops.dtype(q);
  const grads: CalcAttnGrads<T> = { dq: castAndRelease(ops, dq, dtype), dk: castAndRelease(ops, dk, dtype), dv: castAndRelease(ops, dv, dtype) };
  for (const t of owners) ops.release(t);
  if (dsink !== undefined) grads.dsink = dsink;
  ops.end();
  return grads;
}
