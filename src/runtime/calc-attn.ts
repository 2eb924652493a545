/**
 * The distributed attention pipeline (reference 03 §3-§4), kv-only communication: q, out and
 * dq never move; each rank fetches the remote k/v its rows read, stage by stage, with GroupCast.
 *
 * Forward: the fetch of stage 0 starts before the host stage (local q × local k) is computed, and
 * the fetch of stage i+1 before stage i is computed, so the exchange runs behind the compute.
 * Every stage's partial (out, lse) is merged by log-sum-exp into one float32 accumulator (the
 * kernel's outAcc / lseAcc); the sink enters once, at the host stage; max logits are max-merged
 * over stages and then all-reduced over the group.
 *
 * Backward: k/v are fetched again by the same GroupCasts (remote k/v is not kept between the
 * passes). With the final lse every stage's probabilities are already globally normalised, so
 * partial gradients simply add: dq sums locally in float32, and each stage's partial dk/dv of its
 * stage buffer goes back to the owners with GroupReduce(sum), the mirror of the fetch. dsink
 * comes from the host stage only and is this rank's partial unless `dsinkReduce` says otherwise.
 *
 * Every rank issues the same collectives in the same order (two casts per stage, two reduces per
 * stage in the backward) whether or not its own stage has work. Browser-safe: the transport is
 * whatever ProcessGroup the key was made with, the kernel whatever backend accepts the tensors.
 */
import { bytesPerElement } from '../dtype.js';
import { InvalidArgumentError, ShapeError } from '../errors.js';
import { groupCast, groupReduce, prepareGroupCast } from '../comm/group-collective.js';
import type { CommWork, HostArray } from '../comm/process-group.js';
import type { KernelBackend } from '../kernels/backend.js';
import { selectKernelBackend, validateBackwardArgs, validateForwardArgs } from '../kernels/flex-flash-attn.js';
import { sliceCount, type SliceList } from '../mask/slice-list.js';
import { Tensor } from '../tensor.js';
import { requireKey, type DistAttnRuntimeKey } from './key.js';

export interface CalcAttnOptions {
  /** Sink logits, float32 [S, Hq], the same (replicated) on every rank. */
  sink?: Tensor;
  /** Default 1/sqrt(headDim). */
  softmaxScale?: number;
  /** 0 (default) disables. */
  softcap?: number;
  /** Also return max logits [Hq], the max over the whole group. */
  returnMaxLogits?: boolean;
  /** Kernel backend object or registered name; default: automatic choice. */
  backend?: KernelBackend<Tensor> | string;
  /** Record per-stage timings and traffic in `result.profile`. */
  profile?: boolean;
}

export interface CalcAttnBackwardOptions extends Omit<CalcAttnOptions, 'returnMaxLogits'> {
  /**
   * How dsink is combined over the group: 'none' (default, as the reference) returns this rank's
   * partial (the sum over ranks is the full gradient); 'sum' / 'avg' all-reduce it.
   */
  dsinkReduce?: 'none' | 'sum' | 'avg';
}

/** One stage of one rank: what it computed, and how long it waited for its data. */
export interface StageProfile {
  /** 'host' or the remote stage index. */
  readonly stage: 'host' | number;
  /** Unmasked cells computed. */
  readonly area: number;
  readonly computeMs: number;
  /** Time blocked on this stage's fetch before computing (0 for the host stage). */
  readonly waitMs: number;
  /** Bytes this rank sent / received for this stage (copies to itself included), k and v together. */
  readonly sendBytes: number;
  readonly recvBytes: number;
}

export interface CalcAttnProfile {
  readonly stages: StageProfile[];
  /** Time blocked on the final collectives (max-logits all-reduce; backward: dk/dv reduces). */
  readonly finalWaitMs: number;
  readonly totalMs: number;
}

export interface CalcAttnResult {
  /** [shardSeqlen, Hq, D] in q's dtype. */
  out: Tensor;
  /** [shardSeqlen, Hq] float32, natural log, sink included. */
  lse: Tensor;
  /** [Hq] float32, max over the group; only when asked for. */
  maxLogits?: Tensor;
  profile?: CalcAttnProfile;
}

export interface CalcAttnGrads {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
  /** float32 [S, Hq] when a sink was given: this rank's partial unless dsinkReduce is 'sum' or 'avg'. */
  dsink?: Tensor;
  profile?: CalcAttnProfile;
}

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

function checkLocal(t: unknown, name: string, key: DistAttnRuntimeKey, heads: number, headsName: string): asserts t is Tensor {
  if (!(t instanceof Tensor)) throw new InvalidArgumentError(name, 'must be a Tensor');
  const want = [key.shardSeqlen, heads, key.headDim];
  if (t.rank !== 3) throw new ShapeError(name, `must be 3-D [local tokens, heads, headDim] = ${fmt(want)} for this key`, `got ${fmt(t.shape)}`);
  if (t.shape[0] !== key.shardSeqlen) {
    throw new ShapeError(name, `must be this rank's shard: ${key.shardSeqlen} local rows (use dispatch(x, key)), shape ${fmt(want)}`, `got ${fmt(t.shape)}`);
  }
  if (t.shape[1] !== heads) throw new ShapeError(name, `must have ${headsName} = ${heads} heads as the key says, shape ${fmt(want)}`, `got ${fmt(t.shape)}`);
  if (t.shape[2] !== key.headDim) throw new ShapeError(name, `must have head dim ${key.headDim} as the key says, shape ${fmt(want)}`, `got ${fmt(t.shape)}`);
}

function checkInputs(q: unknown, k: unknown, v: unknown, key: DistAttnRuntimeKey): asserts q is Tensor {
  requireKey(key);
  checkLocal(q, 'q', key, key.numHeadsQ, 'numHeadsQ');
  checkLocal(k, 'k', key, key.numHeadsKv, 'numHeadsKv');
  checkLocal(v, 'v', key, key.numHeadsKv, 'numHeadsKv');
}

const now = (): number => performance.now();

/** Starts the fetch of one stage's remote k and v (two GroupCasts, rows of Hkv·D elements). */
function fetchStage(key: DistAttnRuntimeKey, k: Tensor, v: Tensor, stage: number): { k: CommWork<HostArray>; v: CommWork<HostArray> } {
  const args = key.rankPlan.stages[stage].groupCast;
  const width = key.numHeadsKv * key.headDim;
  return { k: groupCast(key.group, k.data, args, width), v: groupCast(key.group, v.data, args, width) };
}

/**
 * The fetch schedule both passes share: stage 0's k/v fetch starts on construction (so it runs
 * during the host stage), and taking stage i starts the fetch of stage i + 1 (so it runs during
 * stage i's compute).
 */
class StagePipeline {
  private pending: ReturnType<typeof fetchStage> | undefined;

  constructor(
    private readonly key: DistAttnRuntimeKey,
    private readonly k: Tensor,
    private readonly v: Tensor,
    private readonly degree: number,
  ) {
    this.pending = degree > 0 ? fetchStage(key, k, v, 0) : undefined;
  }

  /** Waits for stage i's k/v (i in order) and starts the next fetch; waitMs is the exposed wait. */
  async take(i: number): Promise<{ kData: HostArray; vData: HostArray; waitMs: number }> {
    const fetched = this.pending;
    if (fetched === undefined) throw new Error(`StagePipeline: stage ${i} was not fetched`);
    const tw = now();
    const [kData, vData] = await Promise.all([fetched.k.wait(), fetched.v.wait()]);
    const waitMs = now() - tw;
    this.pending = i + 1 < this.degree ? fetchStage(this.key, this.k, this.v, i + 1) : undefined;
    return { kData, vData, waitMs };
  }
}

function stageTraffic(key: DistAttnRuntimeKey, stage: number, bytesPerRow: number): { sendBytes: number; recvBytes: number } {
  const p = prepareGroupCast(key.rankPlan.stages[stage].groupCast, key.group.size);
  return { sendBytes: 2 * p.sendRows * bytesPerRow, recvBytes: 2 * p.recvRows * bytesPerRow };
}

function isEmpty(slices: SliceList): boolean {
  return sliceCount(slices) === 0;
}

/** logsumexp over the sink tokens of every query head: the lse of a row that sees no key. */
function sinkLse(sink: Tensor | undefined, heads: number): Float64Array {
  const out = new Float64Array(heads).fill(-Infinity);
  if (sink === undefined) return out;
  const s = sink.toFloat64();
  const n = sink.shape[0];
  for (let h = 0; h < heads; h++) {
    let m = -Infinity;
    for (let j = 0; j < n; j++) m = Math.max(m, s[j * heads + h]);
    if (m === -Infinity) continue;
    let sum = 0;
    for (let j = 0; j < n; j++) sum += Math.exp(s[j * heads + h] - m);
    out[h] = m + Math.log(sum);
  }
  return out;
}

/**
 * Distributed attention of this rank's shard: q [shard, Hq, D], k and v [shard, Hkv, D], all made
 * by dispatch(x, key). A collective: every rank of the key's group calls it with the same options.
 * Equals single-device flexFlashAttn on the undispatched tensors, up to the merge order.
 */
export async function calcAttn(q: Tensor, k: Tensor, v: Tensor, key: DistAttnRuntimeKey, options: CalcAttnOptions = {}): Promise<CalcAttnResult> {
  checkInputs(q, k, v, key);
  const t0 = now();
  const rp = key.rankPlan;
  const degree = rp.stages.length;
  const [tokens, headsQ, dim] = q.shape;
  const softmaxScale = options.softmaxScale ?? 1 / Math.sqrt(dim);
  const softcap = options.softcap ?? 0;
  const returnMaxLogits = options.returnMaxLogits ?? false;
  const backend = selectKernelBackend(q, options.backend);
  const base = { softmaxScale, softcap, returnMaxLogits, outDtype: 'float32' as const, deterministic: false };
  const maxLogitsAcc = returnMaxLogits ? Tensor.full('float32', [headsQ], -Infinity) : undefined;
  // Checks shapes, scalars and the sink by the kernel's own rules before anything starts.
  validateForwardArgs({ q, k, v, slices: rp.hostSlices, sink: options.sink, maxLogitsAcc, ...base });
  const profiling = options.profile === true;
  const stageProfiles: StageProfile[] = [];
  const rowBytes = key.numHeadsKv * dim * bytesPerElement(k.dtype);

  const fetches = new StagePipeline(key, k, v, degree);

  // Host stage.
  let tc = now();
  let out: Tensor;
  let lse: Tensor;
  if (!isEmpty(rp.hostSlices)) {
    const r = backend.forward({ q, k, v, slices: rp.hostSlices, sink: options.sink, maxLogitsAcc, ...base });
    out = r.out;
    lse = r.lse;
  } else {
    // Zeros matter: later merges compute 0·out for rows whose weight is 0.
    out = Tensor.zeros('float32', [tokens, headsQ, dim]);
    lse = Tensor.zeros('float32', [tokens, headsQ]);
    const l = sinkLse(options.sink, headsQ);
    for (let t = 0; t < tokens; t++) for (let h = 0; h < headsQ; h++) lse.data[t * headsQ + h] = l[h];
  }
  if (profiling) stageProfiles.push({ stage: 'host', area: rp.hostArea, computeMs: now() - tc, waitMs: 0, sendBytes: 0, recvBytes: 0 });

  for (let i = 0; i < degree; i++) {
    const stage = rp.stages[i];
    const { kData, vData, waitMs } = await fetches.take(i);
    tc = now();
    if (!isEmpty(stage.remoteSlices)) {
      const shape = [stage.stageBufferLength, key.numHeadsKv, dim];
      backend.forward({
        q,
        k: new Tensor(k.dtype, shape, kData as Tensor['data']),
        v: new Tensor(v.dtype, shape, vData as Tensor['data']),
        slices: stage.remoteSlices,
        outAcc: out,
        lseAcc: lse,
        maxLogitsAcc,
        ...base,
      });
    }
    if (profiling) stageProfiles.push({ stage: i, area: stage.remoteArea, computeMs: now() - tc, waitMs, ...stageTraffic(key, i, rowBytes) });
  }

  const tf = now();
  const result: CalcAttnResult = { out: q.dtype === 'float32' ? out : out.to(q.dtype), lse };
  if (maxLogitsAcc !== undefined) {
    await key.group.allReduce(maxLogitsAcc.data as Float32Array, 'max').wait();
    result.maxLogits = maxLogitsAcc;
  }
  if (profiling) result.profile = { stages: stageProfiles, finalWaitMs: now() - tf, totalMs: now() - t0 };
  return result;
}

/**
 * Gradients of distributed attention, given dL/dout of this rank's shard and the forward's final
 * out and lse (as calcAttn returned them). A collective, like calcAttn. Returns dq, dk, dv in the
 * input dtype, and dsink (float32) when a sink is given.
 */
export async function calcAttnBackward(
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  key: DistAttnRuntimeKey,
  options: CalcAttnBackwardOptions = {},
): Promise<CalcAttnGrads> {
  checkInputs(q, k, v, key);
  const t0 = now();
  const rp = key.rankPlan;
  const degree = rp.stages.length;
  const [tokens, headsQ, dim] = q.shape;
  const headsKv = key.numHeadsKv;
  const softmaxScale = options.softmaxScale ?? 1 / Math.sqrt(dim);
  const softcap = options.softcap ?? 0;
  const dsinkReduce = options.dsinkReduce ?? 'none';
  if (dsinkReduce !== 'none' && dsinkReduce !== 'sum' && dsinkReduce !== 'avg') {
    throw new InvalidArgumentError('dsinkReduce', "must be 'none', 'sum' or 'avg'", `got ${String(dsinkReduce)}`);
  }
  const backend = selectKernelBackend(q, options.backend);
  const dq = Tensor.zeros('float32', [tokens, headsQ, dim]);
  const dk = Tensor.zeros('float32', [tokens, headsKv, dim]);
  const dv = Tensor.zeros('float32', [tokens, headsKv, dim]);
  const base = { dout, q, out, lse, softmaxScale, softcap, deterministic: false };
  validateBackwardArgs({ ...base, k, v, slices: rp.hostSlices, sink: options.sink, dqAcc: dq, dkAcc: dk, dvAcc: dv });
  const profiling = options.profile === true;
  const stageProfiles: StageProfile[] = [];
  const rowBytes = headsKv * dim * bytesPerElement(k.dtype);
  const width = headsKv * dim;

  const fetches = new StagePipeline(key, k, v, degree);

  let tc = now();
  let dsink: Tensor | undefined;
  if (!isEmpty(rp.hostSlices) || options.sink !== undefined) {
    // With no host slice the kernel still yields dsink (it depends on lse, out and dout only).
    const r = backend.backward({ ...base, k, v, slices: rp.hostSlices, sink: options.sink, dqAcc: dq, dkAcc: dk, dvAcc: dv });
    dsink = r.dsink;
  }
  if (profiling) stageProfiles.push({ stage: 'host', area: rp.hostArea, computeMs: now() - tc, waitMs: 0, sendBytes: 0, recvBytes: 0 });
  const dsinkWork = dsink !== undefined && dsinkReduce !== 'none' ? key.group.allReduce(dsink.data as Float32Array, 'sum') : undefined;

  const reduces: CommWork<Float32Array>[] = [];
  for (let i = 0; i < degree; i++) {
    const stage = rp.stages[i];
    const { kData, vData, waitMs } = await fetches.take(i);
    tc = now();
    const shape = [stage.stageBufferLength, headsKv, dim];
    const pdk = Tensor.zeros('float32', shape);
    const pdv = Tensor.zeros('float32', shape);
    if (!isEmpty(stage.remoteSlices)) {
      backend.backward({
        ...base,
        k: new Tensor(k.dtype, shape, kData as Tensor['data']),
        v: new Tensor(v.dtype, shape, vData as Tensor['data']),
        slices: stage.remoteSlices,
        dqAcc: dq,
        dkAcc: pdk,
        dvAcc: pdv,
      });
    }
    const computeMs = now() - tc;
    // Sent in float32 (the reference's high-precision reduce): the sum happens once, at the owner.
    reduces.push(groupReduce(key.group, pdk.data as Float32Array, dk.data as Float32Array, stage.groupReduce, 'sum', { rowWidth: width }));
    reduces.push(groupReduce(key.group, pdv.data as Float32Array, dv.data as Float32Array, stage.groupReduce, 'sum', { rowWidth: width }));
    if (profiling) {
      const t = stageTraffic(key, i, rowBytes);
      // The fetch moves input-dtype rows, the reduce float32 rows back along the same routes.
      const back = 4 / bytesPerElement(k.dtype);
      stageProfiles.push({ stage: i, area: stage.remoteArea, computeMs, waitMs, sendBytes: t.sendBytes + t.recvBytes * back, recvBytes: t.recvBytes + t.sendBytes * back });
    }
  }

  const tf = now();
  // In stage order: each post-process adds into the shared dk / dv accumulators.
  for (const w of reduces) await w.wait();
  if (dsinkWork !== undefined && dsink !== undefined) {
    await dsinkWork.wait();
    if (dsinkReduce === 'avg') for (let i = 0; i < dsink.data.length; i++) dsink.data[i] /= key.group.size;
  }
  const cast = (t: Tensor): Tensor => (q.dtype === 'float32' ? t : t.to(q.dtype));
  const grads: CalcAttnGrads = { dq: cast(dq), dk: cast(dk), dv: cast(dv) };
  if (dsink !== undefined) grads.dsink = dsink;
  if (profiling) grads.profile = { stages: stageProfiles, finalWaitMs: now() - tf, totalMs: now() - t0 };
  return grads;
}
