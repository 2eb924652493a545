/**
 * Ring attention, the context-parallel baseline of reference 05 §2.1-2.3, built from our kernels
 * and our process groups so that only the distribution strategy differs from calcAttn.
 *
 * Sharding: per-document zig-zag (solver/baselines.ts' zigzagPieces, the sharding the planner's
 * ring model prices): every document is padded to a multiple of 2P and cut into 2P pieces; rank r
 * keeps pieces r and 2P−1−r of every document, packed from local row 0, padding rows at the end.
 * Full and causal masks are one document; a varlen mask's documents are given as cuSeqlens or
 * found from the mask (the finest cut that no slice crosses).
 *
 * Forward: P steps. At step i rank r holds the k/v of rank r−i and computes its q against them
 * with the mask restricted to that block (restrictMask; an empty block is skipped), merged into a
 * float32 (out, lse) by the kernel's own accumulate path. Before step i is computed the k/v it
 * holds are already on their way to rank r+1 (a GroupCast with one non-zero count), so the pass
 * runs behind the compute, as calcAttn's fetches do.
 *
 * Backward: k/v go around the ring again. dq accumulates locally in float32; the partial dk/dv of
 * the block held at step i go straight back to their owner (r−i) with a GroupReduce(sum) in
 * float32 issued right after that step's kernel, instead of riding along with the k/v: the same
 * bytes ((P−1)·n float32 rows per rank), and no step waits for an accumulator from the previous
 * rank.
 */
import { InvalidArgumentError } from '../errors.js';
import type { GroupCastArgs, GroupReduceArgs } from '../comm/group-collective-args.js';
import type { GroupInfo } from '../comm/process-group.js';
import { validateBackwardArgs, validateForwardArgs, type AttnTensor } from '../kernels/flex-flash-attn.js';
import { checkCuSeqlens } from '../mask/helpers.js';
import { makeSliceList, sliceCount, type SliceList } from '../mask/slice-list.js';
import { castAndRelease, type AttnOps } from '../runtime/attn-ops.js';
import { validateMask } from '../solver/chunking.js';
import { zigzagPieces } from '../solver/baselines.js';
import { BASELINE_KEY_OPTIONS, BASELINE_OPTIONS, checkBaselineKeyOptions, layoutDispatch, layoutUndispatch, prepareBaselineCall, restrictMask, type BaselineAttnGrads, type BaselineAttnOptions, type BaselineAttnResult, type BaselineKeyOptions, type BaselineKind, type BaselineLayout } from './common.js';

export interface RingAttnKeyOptions extends BaselineKeyOptions {
  /** The documents that are zig-zag sharded one by one; default: found from the mask (documentsOf). */
  readonly cuSeqlens?: ArrayLike<number>;
}

/** A ring-attention plan for one mask on one group (made once, reused by every call). Treat as immutable. */
export class RingAttnKey implements BaselineLayout {
  /** Per step i (index 0 unused): where this rank's partial dk/dv of the block it holds go back. */
  readonly returnArgs: readonly GroupReduceArgs[];
  /** The k/v pass of every step: all n rows to rank r+1, n rows from rank r−1. */
  readonly passArgs: GroupCastArgs;

  constructor(
    readonly group: GroupInfo,
    readonly mask: SliceList,
    readonly totalSeqlen: number,
    readonly cuSeqlens: readonly number[],
    readonly shardSeqlen: number,
    readonly rankRanges: readonly Int32Array[],
    /** blocks[s]: this rank's q rows × rank s's k rows, in local coordinates. */
    readonly blocks: readonly SliceList[],
    /** Unmasked cells of each block. */
    readonly blockAreas: readonly number[],
    readonly numHeadsQ: number,
    readonly numHeadsKv: number,
    readonly headDim: number,
  ) {
    const P = group.size;
    const r = group.rank;
    const n = shardSeqlen;
    this.passArgs = { inputSplitSizes: Int32Array.of(n), dstIndices: [[(r + 1) % P]], outputSplitSizes: Int32Array.of(n), srcIndex: Int32Array.of((r - 1 + P) % P) };
    this.returnArgs = Array.from({ length: P }, (_, i) => ({
      inputSplitSizes: Int32Array.of(n),
      dstIndex: Int32Array.of((r - i + P) % P),
      outputSplitSizes: Int32Array.of(n),
      srcIndices: [[(r + i) % P]],
    }));
  }

  get cpSize(): number {
    return this.group.size;
  }
  get rank(): number {
    return this.group.rank;
  }
  /** The rank whose k/v this rank holds at step i. */
  ownerAt(step: number): number {
    return (this.rank - step + this.cpSize) % this.cpSize;
  }
}

/**
 * The finest documents of a mask: cuSeqlens whose cuts no slice crosses (no slice's q or k range
 * spans a cut, and no slice pairs rows on both sides of it). Rows no slice touches fall in the
 * gaps between documents, which count as documents of their own.
 */
export function documentsOf(mask: SliceList, totalSeqlen: number): number[] {
  const spans: Array<[number, number]> = [];
  for (let b = 0; b < sliceCount(mask); b++) {
    const qs = mask.qRanges[2 * b];
    const qe = mask.qRanges[2 * b + 1];
    const ks = mask.kRanges[2 * b];
    const ke = mask.kRanges[2 * b + 1];
    if (qe > qs && ke > ks) spans.push([Math.min(qs, ks), Math.max(qe, ke)]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  const cuts = [0];
  let end = 0;
  for (const [s, e] of spans) {
    // A span that starts at or after the current document's end begins a new one (touching spans do not merge).
    if (s >= end) {
      if (end > cuts[cuts.length - 1]) cuts.push(end);
      if (s > cuts[cuts.length - 1]) cuts.push(s);
    }
    end = Math.max(end, e);
  }
  if (end > cuts[cuts.length - 1]) cuts.push(end);
  if (totalSeqlen > cuts[cuts.length - 1]) cuts.push(totalSeqlen);
  return cuts;
}

/** Plans ring attention for a mask on a group: the zig-zag layout, every block's local mask, the pass and return arguments. */
export function ringAttnKey(options: RingAttnKeyOptions): RingAttnKey {
  const group = checkBaselineKeyOptions(options, [...BASELINE_KEY_OPTIONS, 'cuSeqlens']);
  const N = options.totalSeqlenQ;
  const mask = makeSliceList(options.qRanges, options.kRanges, options.maskTypes);
  validateMask(mask, N, N);
  let cu: number[];
  if (options.cuSeqlens === undefined) {
    cu = documentsOf(mask, N);
  } else {
    checkCuSeqlens(options.cuSeqlens, 'cuSeqlens');
    cu = Array.from(options.cuSeqlens);
    if (cu[cu.length - 1] !== N) throw new InvalidArgumentError('cuSeqlens', `must end at totalSeqlenQ = ${N}`, `ends at ${cu[cu.length - 1]}`);
  }
  const P = group.size;
  const { ranges, owners, padded } = zigzagPieces(cu, P);
  const perRank: number[][] = Array.from({ length: P }, () => []);
  for (let i = 0; i < owners.length; i++) perRank[owners[i]].push(ranges[2 * i], ranges[2 * i + 1]);
  const rankRanges = perRank.map((r) => Int32Array.from(r));
  const mine = rankRanges[group.rank];
  const blocks: SliceList[] = [];
  const areas: number[] = [];
  for (let s = 0; s < P; s++) {
    const { slices, area } = restrictMask(mask, mine, rankRanges[s]);
    blocks.push(slices);
    areas.push(area);
  }
  return new RingAttnKey(group, mask, N, cu, padded / P, rankRanges, blocks, areas, options.numHeadsQ, options.numHeadsKv, options.headDim);
}

const RING: BaselineKind<RingAttnKey> = { keyClass: RingAttnKey, keyMaker: 'ringAttnKey', dispatchName: 'ringDispatch' };

/** This rank's zig-zag shard of the whole tensor x [N, ...] (no communication). */
export function ringDispatch<T extends AttnTensor>(x: T, key: RingAttnKey): T {
  return layoutDispatch(x, key, RING);
}

/** The whole tensor [N, ...] from every rank's zig-zag shard (a collective). */
export function ringUndispatch<T extends AttnTensor>(local: T, key: RingAttnKey): Promise<T> {
  return layoutUndispatch(local, key, RING);
}

/** The k/v going around the ring: the pass to rank r+1 of what this rank holds starts as soon as it holds it. */
class KvRing<T> {
  private pending: Promise<[T, T]> | undefined;
  private held: [T, T] | undefined;

  constructor(
    private readonly ops: AttnOps<T>,
    private readonly key: RingAttnKey,
    k: T,
    v: T,
  ) {
    this.pending = key.cpSize > 1 ? this.pass(k, v) : undefined;
  }

  private pass(k: T, v: T): Promise<[T, T]> {
    const n = this.key.shardSeqlen;
    return Promise.all([this.ops.groupCast(k, this.key.passArgs, n), this.ops.groupCast(v, this.key.passArgs, n)]);
  }

  /** The k/v of step `step` (1, 2, ... in order), readable by compute; the pass to the next rank has started. */
  async take(step: number): Promise<[T, T]> {
    if (this.pending === undefined) throw new Error(`KvRing: step ${step} was not passed`);
    const kv = await this.pending;
    this.ops.joinComm();
    this.releaseHeld();
    this.held = kv;
    this.pending = step + 1 < this.key.cpSize ? this.pass(kv[0], kv[1]) : undefined;
    return kv;
  }

  releaseHeld(): void {
    if (this.held !== undefined) this.held.forEach((t) => this.ops.release(t));
    this.held = undefined;
  }
}

/**
 * Ring attention of this rank's zig-zag shard: q [n, Hq, D], k and v [n, Hkv, D] (ringDispatch).
 * A collective: every rank of the key's group calls it. Equals single-device flexFlashAttn on the
 * whole sequence, up to the merge order.
 */
export async function ringAttn<T extends AttnTensor>(q: T, k: T, v: T, key: RingAttnKey, options: BaselineAttnOptions<T> = {}): Promise<BaselineAttnResult<T>> {
  const { ops, scalars } = prepareBaselineCall(q, k, v, key, RING, options, BASELINE_OPTIONS);
  const P = key.cpSize;
  const base = { ...scalars, returnMaxLogits: false };
  const own = key.blocks[key.rank];
  validateForwardArgs({ q, k, v, slices: own, ...base, outDtype: 'float32' });
  ops.begin();
  const ring = new KvRing(ops, key, k, v);
  // Step 0 always runs (an empty block gives out 0, lse -inf); with nothing to merge later it writes q's dtype.
  const { out, lse } = ops.forward({ q, k, v, slices: own, ...base, outDtype: P > 1 ? 'float32' : ops.dtype(q) });
  for (let i = 1; i < P; i++) {
    const [ks, vs] = await ring.take(i);
    const block = key.blocks[key.ownerAt(i)];
    if (sliceCount(block) > 0) ops.forward({ q, k: ks, v: vs, slices: block, outAcc: out, lseAcc: lse, ...base, outDtype: 'float32' });
  }
  ring.releaseHeld();
  const result = ops.dtype(out) !== ops.dtype(q) ? castAndRelease(ops, out, ops.dtype(q)) : out;
  ops.end();
  return { out: result, lse };
}

/**
 * Gradients of ring attention, given dL/dout of this rank's shard and the forward's out and lse.
 * A collective, like ringAttn. Returns dq, dk, dv in q's dtype.
 */
export async function ringAttnBackward<T extends AttnTensor>(
  dout: T,
  q: T,
  k: T,
  v: T,
  out: T,
  lse: T,
  key: RingAttnKey,
  options: BaselineAttnOptions<T> = {},
): Promise<BaselineAttnGrads<T>> {
  const { ops, scalars } = prepareBaselineCall(q, k, v, key, RING, options, BASELINE_OPTIONS);
  const P = key.cpSize;
  const n = key.shardSeqlen;
  const D = key.headDim;
  const base = { dout, q, out, lse, ...scalars };
  const own = key.blocks[key.rank];
  validateBackwardArgs({ ...base, k, v, slices: own });
  ops.begin();
  const dq = ops.zeros('float32', [n, key.numHeadsQ, D]);
  const dk = ops.zeros('float32', [n, key.numHeadsKv, D]);
  const dv = ops.zeros('float32', [n, key.numHeadsKv, D]);
  const ring = new KvRing(ops, key, k, v);
  if (sliceCount(own) > 0) ops.backward({ ...base, k, v, slices: own, dqAcc: dq, dkAcc: dk, dvAcc: dv });
  const returns: Promise<void>[] = [];
  for (let i = 1; i < P; i++) {
    const [ks, vs] = await ring.take(i);
    const block = key.blocks[key.ownerAt(i)];
    const pdk = ops.zeros('float32', [n, key.numHeadsKv, D]);
    const pdv = ops.zeros('float32', [n, key.numHeadsKv, D]);
    if (sliceCount(block) > 0) ops.backward({ ...base, k: ks, v: vs, slices: block, dqAcc: dq, dkAcc: pdk, dvAcc: pdv });
    // Every rank returns every step's partial (zeros for an empty block): all issue the same collectives.
    returns.push(ops.groupReduceSum(pdk, dk, key.returnArgs[i]), ops.groupReduceSum(pdv, dv, key.returnArgs[i]));
  }
  ring.releaseHeld();
  await Promise.all(returns);
  ops.joinComm();
  const dtype = ops.dtype(q);
  const grads = { dq: castAndRelease(ops, dq, dtype), dk: castAndRelease(ops, dk, dtype), dv: castAndRelease(ops, dv, dtype) };
  ops.end();
  return grads;
}
