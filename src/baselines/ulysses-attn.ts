/**
 * Ulysses (DeepSpeed-Ulysses, reference 05 §2.4), the all-to-all baseline, built from our kernels
 * and our process groups so that only the distribution strategy differs from calcAttn.
 *
 * The sequence is split contiguously (ceil(N/P) rows per rank, the last rows padding). One
 * all-to-all per tensor turns this rank's [n tokens, all heads] into [all P·n tokens, its heads];
 * one kernel call runs the whole mask on those heads; one all-to-all brings out (and lse) back.
 * The backward moves dout in and dq, dk, dv out the same way; with `saveForBackward` the forward
 * keeps its head-sharded q, k, v, out and lse (as DeepSpeed's autograd does), so the backward
 * moves nothing else (DeepSpeed's autograd keeps them the same way).
 *
 * Heads: cp must divide numHeadsQ, and divide or be divided by numHeadsKv (the rule the
 * planner's Ulysses model states, ulyssesHeadsFeasible). With fewer k/v heads than ranks each
 * k/v head is replicated to the P/Hkv ranks whose query heads read it, as DeepSpeed-Ulysses does,
 * and the backward sums the replicas' dk/dv with a GroupReduce (float32).
 *
 * The all-to-alls are GroupCasts over a tensor viewed as [tokens·heads, D] rows, one split per
 * (token, rank's heads): the pack on the sending side is the head transpose.
 */
import { InvalidArgumentError } from '../errors.js';
import { toGroupReduceArgs, type GroupCastArgs, type GroupReduceArgs } from '../comm/group-collective-args.js';
import type { GroupInfo } from '../comm/process-group.js';
import { validateBackwardArgs, validateForwardArgs, type AttnTensor } from '../kernels/flex-flash-attn.js';
import { makeSliceList, type SliceList } from '../mask/slice-list.js';
import { castAndRelease, type AttnOps } from '../runtime/attn-ops.js';
import { ulyssesHeadsFeasible, ulyssesShardSeqlen } from '../solver/baselines.js';
import { validateMask } from '../solver/chunking.js';
import { BASELINE_KEY_OPTIONS, BASELINE_OPTIONS, checkBaselineKeyOptions, layoutDispatch, layoutUndispatch, prepareBaselineCall, type BaselineAttnGrads, type BaselineAttnOptions, type BaselineAttnResult, type BaselineKeyOptions, type BaselineKind, type BaselineLayout } from './common.js';

export type UlyssesAttnKeyOptions = BaselineKeyOptions;

/** Heads [lo, hi) of H that rank p works on: H/P of them, or with H < P the one head floor(p·H/P) (replicated). */
function headRange(H: number, P: number, p: number): [number, number] {
  if (H % P === 0) return [(p * H) / P, ((p + 1) * H) / P];
  const h = Math.floor((p * H) / P);
  return [h, h + 1];
}

/**
 * The sequence-to-heads all-to-all of a tensor of H heads on rank r, as a GroupCast over rows of
 * one head: input [n·H] rows cut per (token, head range) with the ranks that take that range;
 * output [P·n·h] rows, from each source rank in turn, one split of h rows per token.
 */
function toHeadsArgs(n: number, H: number, P: number, r: number): GroupCastArgs {
  const segments: Array<{ size: number; dst: number[] }> = [];
  let lastLo = -1;
  for (let p = 0; p < P; p++) {
    const [lo, hi] = headRange(H, P, p);
    if (lo === lastLo) segments[segments.length - 1].dst.push(p);
    else segments.push({ size: hi - lo, dst: [p] });
    lastLo = lo;
  }
  const S = segments.length;
  const inputSplitSizes = new Int32Array(n * S);
  const dstIndices: number[][] = new Array<number[]>(n * S);
  for (let t = 0; t < n; t++) {
    for (let j = 0; j < S; j++) {
      inputSplitSizes[t * S + j] = segments[j].size;
      dstIndices[t * S + j] = segments[j].dst;
    }
  }
  const [lo, hi] = headRange(H, P, r);
  const srcIndex = new Int32Array(P * n);
  for (let s = 0; s < P; s++) srcIndex.fill(s, s * n, (s + 1) * n);
  return { inputSplitSizes, dstIndices, outputSplitSizes: new Int32Array(P * n).fill(hi - lo), srcIndex };
}

/** The reverse all-to-all (heads back to sequence) of arguments whose every split goes to one rank. */
function invertCast(args: GroupCastArgs, P: number): GroupCastArgs {
  const single = Array.from({ length: P }, (_, s) => [s]);
  return {
    inputSplitSizes: args.outputSplitSizes,
    dstIndices: Array.from(args.srcIndex, (s) => single[s]),
    outputSplitSizes: args.inputSplitSizes,
    srcIndex: Int32Array.from(args.dstIndices, (d) => d[0]),
  };
}

/** A Ulysses plan for one mask on one group (made once, reused by every call). Treat as immutable. */
export class UlyssesAttnKey implements BaselineLayout {
  /** Query heads (and lse columns) per rank. */
  readonly headsQPerRank: number;
  /** k/v heads this rank works on (1 when replicated). */
  readonly headsKvPerRank: number;
  /** Each k/v head goes to several ranks (numHeadsKv < cp). */
  readonly kvReplicated: boolean;
  readonly qToHeads: GroupCastArgs;
  readonly qToSeq: GroupCastArgs;
  readonly kvToHeads: GroupCastArgs;
  /** Without replication: the reverse cast of dk/dv; with it: the GroupReduce that sums the replicas. */
  readonly kvToSeq: GroupCastArgs | null;
  readonly kvReduce: GroupReduceArgs | null;
  readonly rankRanges: readonly Int32Array[];

  constructor(
    readonly group: GroupInfo,
    readonly mask: SliceList,
    readonly totalSeqlen: number,
    readonly numHeadsQ: number,
    readonly numHeadsKv: number,
    readonly headDim: number,
  ) {
    const P = group.size;
    const n = ulyssesShardSeqlen(totalSeqlen, P);
    this.shardSeqlen = n;
    this.rankRanges = Array.from({ length: P }, (_, p) => (p * n < totalSeqlen ? Int32Array.of(p * n, Math.min(totalSeqlen, (p + 1) * n)) : new Int32Array(0)));
    this.headsQPerRank = numHeadsQ / P;
    this.kvReplicated = numHeadsKv % P !== 0;
    this.headsKvPerRank = this.kvReplicated ? 1 : numHeadsKv / P;
    this.qToHeads = toHeadsArgs(n, numHeadsQ, P, group.rank);
    this.qToSeq = invertCast(this.qToHeads, P);
    this.kvToHeads = toHeadsArgs(n, numHeadsKv, P, group.rank);
    this.kvToSeq = this.kvReplicated ? null : invertCast(this.kvToHeads, P);
    this.kvReduce = this.kvReplicated ? toGroupReduceArgs(this.kvToHeads) : null;
  }

  readonly shardSeqlen: number;

  get cpSize(): number {
    return this.group.size;
  }
  get rank(): number {
    return this.group.rank;
  }
  /** Rows of the head-sharded tensors: the whole sequence, padding included. */
  get paddedSeqlen(): number {
    return this.shardSeqlen * this.group.size;
  }
}

/** Plans Ulysses for a mask on a group; throws unless cp fits the head counts (ulyssesHeadsFeasible). */
export function ulyssesAttnKey(options: UlyssesAttnKeyOptions): UlyssesAttnKey {
  const group = checkBaselineKeyOptions(options, BASELINE_KEY_OPTIONS);
  const P = group.size;
  if (!ulyssesHeadsFeasible(options.numHeadsQ, options.numHeadsKv, P)) {
    throw new InvalidArgumentError(
      'group',
      `Ulysses needs cp to divide numHeadsQ and to divide or be divided by numHeadsKv (k/v heads are replicated up to cp)`,
      `cp ${P}, ${options.numHeadsQ} query heads, ${options.numHeadsKv} k/v heads`,
    );
  }
  const mask = makeSliceList(options.qRanges, options.kRanges, options.maskTypes);
  validateMask(mask, options.totalSeqlenQ, options.totalSeqlenQ);
  return new UlyssesAttnKey(group, mask, options.totalSeqlenQ, options.numHeadsQ, options.numHeadsKv, options.headDim);
}

const ULYSSES: BaselineKind<UlyssesAttnKey> = { keyClass: UlyssesAttnKey, keyMaker: 'ulyssesAttnKey', dispatchName: 'ulyssesDispatch' };

/** This rank's contiguous shard of the whole tensor x [N, ...] (no communication). */
export function ulyssesDispatch<T extends AttnTensor>(x: T, key: UlyssesAttnKey): T {
  return layoutDispatch(x, key, ULYSSES);
}

/** The whole tensor [N, ...] from every rank's shard (a collective). */
export function ulyssesUndispatch<T extends AttnTensor>(local: T, key: UlyssesAttnKey): Promise<T> {
  return layoutUndispatch(local, key, ULYSSES);
}

/** The forward's head-sharded tensors, kept for the backward ([P·n, heads of this rank, D]; lse [P·n, Hq/P]). */
export interface UlyssesSaved<T> {
  readonly key: UlyssesAttnKey;
  readonly q: T;
  readonly k: T;
  readonly v: T;
  readonly out: T;
  readonly lse: T;
}

export interface UlyssesAttnOptions<T extends AttnTensor = AttnTensor> extends BaselineAttnOptions<T> {
  /**
   * Also return the head-sharded q, k, v, out and lse, for ulyssesAttnBackward's `saved`. The
   * caller owns them (device tensors: free them when no backward needs them any more).
   */
  saveForBackward?: boolean;
}

export interface UlyssesAttnBackwardOptions<T extends AttnTensor = AttnTensor> extends BaselineAttnOptions<T> {
  /** The forward's `saved`: its head-sharded tensors are used instead of being sent again (they stay the caller's). */
  saved?: UlyssesSaved<T>;
}

export interface UlyssesAttnResult<T extends AttnTensor = AttnTensor> extends BaselineAttnResult<T> {
  saved?: UlyssesSaved<T>;
}

/**
 * Starts the all-to-all `args` of x, viewed as rows of one head (D elements, or 1 for lse), into
 * a new tensor of `shape` ([tokens, heads, D] or [tokens, heads]); `done` resolves once it is
 * readable after ops.joinComm().
 */
function moveRows<T>(ops: AttnOps<T>, x: T, args: GroupCastArgs, shape: readonly number[]): { out: T; done: Promise<T> } {
  const width = shape.length > 2 ? shape[2] : 1;
  const rows = shape[0] * shape[1];
  const inRows = ops.shape(x).reduce((a, b) => a * b, 1) / width;
  const out = ops.empty(ops.dtype(x), shape);
  const done = ops.groupCast(ops.reshape(x, [inRows, width]), args, rows, { into: ops.reshape(out, [rows, width]) });
  return { out, done };
}

const NO_SLICES: SliceList = { qRanges: new Int32Array(0), kRanges: new Int32Array(0), maskTypes: new Uint8Array(0) };

/** The head-sharded [P·n, heads, D] forms of q-like and k/v-like shards (all-to-alls started, not awaited). */
function toHeads<T>(ops: AttnOps<T>, key: UlyssesAttnKey, x: T, isKv: boolean): { out: T; done: Promise<T> } {
  const h = isKv ? key.headsKvPerRank : key.headsQPerRank;
  const shape = ops.shape(x);
  return moveRows(ops, x, isKv ? key.kvToHeads : key.qToHeads, shape.length === 3 ? [key.paddedSeqlen, h, shape[2]] : [key.paddedSeqlen, h]);
}

/**
 * Ulysses attention of this rank's contiguous shard: q [n, Hq, D], k and v [n, Hkv, D]
 * (ulyssesDispatch). A collective: every rank of the key's group calls it. Equals single-device
 * flexFlashAttn on the whole sequence.
 */
export async function ulyssesAttn<T extends AttnTensor>(q: T, k: T, v: T, key: UlyssesAttnKey, options: UlyssesAttnOptions<T> = {}): Promise<UlyssesAttnResult<T>> {
  const { ops, scalars } = prepareBaselineCall(q, k, v, key, ULYSSES, options, [...BASELINE_OPTIONS, 'saveForBackward']);
  const base = { ...scalars, returnMaxLogits: false };
  validateForwardArgs({ q, k, v, slices: NO_SLICES, ...base, outDtype: ops.dtype(q) });
  ops.begin();
  const moves = [toHeads(ops, key, q, false), toHeads(ops, key, k, true), toHeads(ops, key, v, true)];
  await Promise.all(moves.map((m) => m.done));
  ops.joinComm();
  const [qh, kh, vh] = moves.map((m) => m.out);
  const fwd = ops.forward({ q: qh, k: kh, v: vh, slices: key.mask, ...base, outDtype: ops.dtype(q) });
  const [n, Hq, D] = [key.shardSeqlen, key.numHeadsQ, key.headDim];
  const out = moveRows(ops, fwd.out, key.qToSeq, [n, Hq, D]);
  const lse = moveRows(ops, fwd.lse, key.qToSeq, [n, Hq]);
  await Promise.all([out.done, lse.done]);
  ops.joinComm();
  const result: UlyssesAttnResult<T> = { out: out.out, lse: lse.out };
  if (options.saveForBackward === true) result.saved = { key, q: qh, k: kh, v: vh, out: fwd.out, lse: fwd.lse };
  else [qh, kh, vh, fwd.out, fwd.lse].forEach((t) => ops.release(t));
  ops.end();
  return result;
}

/**
 * Gradients of Ulysses attention, given dL/dout of this rank's shard and the forward's out and
 * lse (and, to skip moving them again, its `saved` head-sharded tensors). A collective. Returns
 * dq, dk, dv in q's dtype.
 */
export async function ulyssesAttnBackward<T extends AttnTensor>(
  dout: T,
  q: T,
  k: T,
  v: T,
  out: T,
  lse: T,
  key: UlyssesAttnKey,
  options: UlyssesAttnBackwardOptions<T> = {},
): Promise<BaselineAttnGrads<T>> {
  const { ops, scalars: sc } = prepareBaselineCall(q, k, v, key, ULYSSES, options, [...BASELINE_OPTIONS, 'saved']);
  validateBackwardArgs({ dout, q, k, v, out, lse, slices: NO_SLICES, ...sc });
  const saved = options.saved;
  if (saved !== undefined && (typeof saved !== 'object' || saved === null || saved.key !== key)) {
    throw new InvalidArgumentError('options.saved', 'must be the `saved` of ulyssesAttn with this key (saveForBackward: true)');
  }
  ops.begin();
  const moves: Array<{ out: T; done: Promise<T> }> = saved === undefined ? [toHeads(ops, key, q, false), toHeads(ops, key, k, true), toHeads(ops, key, v, true), toHeads(ops, key, out, false), toHeads(ops, key, lse, false)] : [];
  const doutMove = toHeads(ops, key, dout, false);
  await Promise.all([...moves, doutMove].map((m) => m.done));
  ops.joinComm();
  const [qh, kh, vh, oh, lh]: T[] = saved === undefined ? moves.map((m) => m.out) : [saved.q, saved.k, saved.v, saved.out, saved.lse];
  const [n, Hq, Hkv, D] = [key.shardSeqlen, key.numHeadsQ, key.numHeadsKv, key.headDim];
  const kvShape = [key.paddedSeqlen, key.headsKvPerRank, D];
  // Replicated k/v heads: float32 partials, summed over the replicas by the GroupReduce below.
  const acc: { dkAcc?: T; dvAcc?: T } = key.kvReplicated ? { dkAcc: ops.zeros('float32', kvShape), dvAcc: ops.zeros('float32', kvShape) } : {};
  const g = ops.backward({ dout: doutMove.out, q: qh, k: kh, v: vh, out: oh, lse: lh, slices: key.mask, ...sc, ...acc });
  ops.release(doutMove.out);
  if (saved === undefined) [qh, kh, vh, oh, lh].forEach((t) => ops.release(t));
  const dq = moveRows(ops, g.dq, key.qToSeq, [n, Hq, D]);
  const pending: Promise<unknown>[] = [dq.done];
  let dk: T;
  let dv: T;
  if (key.kvReduce !== null) {
    dk = ops.zeros('float32', [n, Hkv, D]);
    dv = ops.zeros('float32', [n, Hkv, D]);
    const rows = [key.paddedSeqlen * key.headsKvPerRank, D];
    // groupReduceSum consumes its partial: the kernel's accumulators (owned tensors, freed after).
    pending.push(ops.groupReduceSum(ops.reshape(g.dk, rows), ops.reshape(dk, [n * Hkv, D]), key.kvReduce), ops.groupReduceSum(ops.reshape(g.dv, rows), ops.reshape(dv, [n * Hkv, D]), key.kvReduce));
  } else {
    const mk = moveRows(ops, g.dk, key.kvToSeq as GroupCastArgs, [n, Hkv, D]);
    const mv = moveRows(ops, g.dv, key.kvToSeq as GroupCastArgs, [n, Hkv, D]);
    pending.push(mk.done, mv.done);
    dk = mk.out;
    dv = mv.out;
  }
  await Promise.all(pending);
  ops.joinComm();
  ops.release(g.dq);
  if (key.kvReduce !== null) {
    // The reshaped partials were views: the kernel's accumulators are freed here.
    ops.release(g.dk);
    ops.release(g.dv);
    dk = castAndRelease(ops, dk, ops.dtype(q));
    dv = castAndRelease(ops, dv, ops.dtype(q));
  } else {
    ops.release(g.dk);
    ops.release(g.dv);
  }
  ops.end();
  return { dq: dq.out, dk, dv };
}
