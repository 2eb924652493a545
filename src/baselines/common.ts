/**
 * What the two baselines share: a sequence layout (which global rows each rank holds, packed end
 * to end from local row 0, padding rows after them), the dispatch / undispatch of whole tensors
 * into and out of that layout, the restriction of a mask to a (rows of one rank) × (rows of
 * another) block in local coordinates, and the checks every key maker and every call make before
 * their first collective. Both run through the same AttnOps as calcAttn, so host Tensors on thread ranks and
 * device tensors on NCCL or LocalDeviceGroup ranks take the same code. Browser-safe.
 */
import { InvalidArgumentError, ShapeError } from '../errors.js';
import type { GroupInfo } from '../comm/process-group.js';
import type { KernelBackend } from '../kernels/backend.js';
import type { AttnTensor } from '../kernels/flex-flash-attn.js';
import { bandHi, bandLo, emitBand, SliceBuffer } from '../mask/geometry.js';
import { firstRangeEndingAfter, localOffsets } from '../mask/range-list.js';
import { sliceCount, type MaskTypesLike, type RangeListLike, type SliceList } from '../mask/slice-list.js';
import { attnOpsFor, type AttnOps } from '../runtime/attn-ops.js';
import { checkHeadShape } from '../runtime/key.js';
import { requireKnownOptions } from '../util/options.js';

/** What every baseline key is made from: one mask over one sequence (q and k the same rows), the heads, the group. */
export interface BaselineKeyOptions {
  readonly qRanges: RangeListLike;
  readonly kRanges: RangeListLike;
  readonly maskTypes: MaskTypesLike;
  readonly totalSeqlenQ: number;
  readonly numHeadsQ: number;
  readonly numHeadsKv: number;
  readonly headDim: number;
  readonly group: GroupInfo;
}

export const BASELINE_KEY_OPTIONS: readonly string[] = ['qRanges', 'kRanges', 'maskTypes', 'totalSeqlenQ', 'numHeadsQ', 'numHeadsKv', 'headDim', 'group'];

/**
 * The start of every baseline key maker: known options only (`known`: BASELINE_KEY_OPTIONS and
 * the maker's own), a valid head shape and a process group, which it returns.
 */
export function checkBaselineKeyOptions(options: BaselineKeyOptions, known: readonly string[]): GroupInfo {
  requireKnownOptions(options, 'options', known);
  checkHeadShape(options);
  const group = options.group;
  if (typeof group !== 'object' || group === null || !Number.isInteger(group.size) || group.size < 1) throw new InvalidArgumentError('group', 'must be a process group (its size is the cp size)');
  return group;
}

/** Which baseline a key belongs to, as its errors name it: its key class, the function that makes keys, the one that dispatches. */
export interface BaselineKind<K extends BaselineLayout> {
  readonly keyClass: abstract new (...args: never[]) => K;
  readonly keyMaker: string;
  readonly dispatchName: string;
}

/** Throws unless `key` was made by `kind`'s key maker (a key of another baseline, or of calcAttn, is refused). */
function requireBaselineKey<K extends BaselineLayout>(key: unknown, kind: BaselineKind<K>): asserts key is K {
  if (!(key instanceof kind.keyClass)) throw new InvalidArgumentError('key', `must be a key made by ${kind.keyMaker}`);
}

/** Where the rows of the sequence live: rank r holds rankRanges[r] (global, sorted), then padding up to shardSeqlen. */
export interface BaselineLayout {
  readonly group: GroupInfo;
  /** The caller's sequence length N. */
  readonly totalSeqlen: number;
  /** Local rows on every rank, padding included (the same on every rank). */
  readonly shardSeqlen: number;
  /** Per rank: the global rows it holds, sorted disjoint flat [s, e) pairs, packed from local row 0. */
  readonly rankRanges: readonly Int32Array[];
  readonly numHeadsQ: number;
  readonly numHeadsKv: number;
  readonly headDim: number;
}

/** Every rank's ranges packed in rank order, cut back into sequence order: the gather that undoes a dispatch. */
const unpermuteCache = new WeakMap<BaselineLayout, Int32Array>();
function unpermute(layout: BaselineLayout): Int32Array {
  let r = unpermuteCache.get(layout);
  if (r === undefined) {
    const pieces: Array<[number, number, number]> = [];
    layout.rankRanges.forEach((ranges, rank) => {
      const local = localOffsets(ranges);
      for (let i = 0; i < ranges.length; i += 2) pieces.push([ranges[i], rank * layout.shardSeqlen + local[i / 2], ranges[i + 1] - ranges[i]]);
    });
    pieces.sort((a, b) => a[0] - b[0]);
    r = Int32Array.from(pieces.flatMap(([, at, len]) => [at, at + len]));
    unpermuteCache.set(layout, r);
  }
  return r;
}

/** This rank's rows of the whole tensor x [N, ...] (its ranges, then padding rows of `padValue`). No communication. */
export function layoutDispatch<T extends AttnTensor, K extends BaselineLayout>(x: T, layout: K, kind: BaselineKind<K>, padValue = 0): T {
  requireBaselineKey(layout, kind);
  const ops = attnOpsFor(x, layout.group) as AttnOps<T>;
  if (ops.shape(x)[0] !== layout.totalSeqlen) throw new ShapeError('x', `must hold the whole sequence: shape[0] = ${layout.totalSeqlen}`, `got ${ops.shape(x)[0]}`);
  ops.begin();
  const local = ops.gatherRows(x, layout.rankRanges[layout.group.rank], layout.shardSeqlen, padValue);
  ops.end();
  return local;
}

/** The whole tensor [N, ...] from every rank's rows (a collective: every rank calls it); padding dropped. */
export async function layoutUndispatch<T extends AttnTensor, K extends BaselineLayout>(local: T, layout: K, kind: BaselineKind<K>): Promise<T> {
  requireBaselineKey(layout, kind);
  const ops = attnOpsFor(local, layout.group) as AttnOps<T>;
  if (ops.shape(local)[0] !== layout.shardSeqlen) throw new ShapeError('local', `must be this rank's rows: shape[0] = ${layout.shardSeqlen}`, `got ${ops.shape(local)[0]}`);
  ops.begin();
  const gathered = await ops.allGather(local, new Array<number>(layout.group.size).fill(layout.shardSeqlen));
  ops.joinComm();
  const full = ops.gatherRows(gathered, unpermute(layout), layout.totalSeqlen, 0);
  ops.release(gathered);
  ops.end();
  return full;
}

/**
 * The cells of `mask` with q in `qRows` and k in `kRows` (global, sorted, disjoint flat ranges),
 * in local coordinates: q rows and k rows each packed end to end from 0, as a rank holds them.
 * Each slice visits only the q and k ranges it crosses; the band geometry is geometry.ts'.
 */
export function restrictMask(mask: SliceList, qRows: Int32Array, kRows: Int32Array): { slices: SliceList; area: number } {
  const out = new SliceBuffer(16);
  const qLocal = localOffsets(qRows);
  const kLocal = localOffsets(kRows);
  const nq = qRows.length / 2;
  const nk = kRows.length / 2;
  let area = 0;
  for (let b = 0; b < sliceCount(mask); b++) {
    const t = mask.maskTypes[b];
    const qs = mask.qRanges[2 * b];
    const qe = mask.qRanges[2 * b + 1];
    const ks = mask.kRanges[2 * b];
    const ke = mask.kRanges[2 * b + 1];
    const dLo = bandLo(t, qs, ks);
    const dHi = bandHi(t, qe, ke);
    for (let i = firstRangeEndingAfter(qRows, qs); i < nq && qRows[2 * i] < qe; i++) {
      const q0 = Math.max(qs, qRows[2 * i]);
      const q1 = Math.min(qe, qRows[2 * i + 1]);
      for (let j = firstRangeEndingAfter(kRows, ks); j < nk && kRows[2 * j] < ke; j++) {
        area += emitBand(out, q0, q1, Math.max(ks, kRows[2 * j]), Math.min(ke, kRows[2 * j + 1]), dLo, dHi, qLocal[i] - qRows[2 * i], kLocal[j] - kRows[2 * j], 0);
      }
    }
  }
  return { slices: out.toSliceList(), area };
}

export interface BaselineAttnOptions<T extends AttnTensor = AttnTensor> {
  /** Default 1/sqrt(headDim). */
  softmaxScale?: number;
  /** 0 (default) disables. */
  softcap?: number;
  deterministic?: boolean;
  /** Kernel backend object or registered name; default: automatic choice by where q lives. */
  backend?: KernelBackend<T> | string;
}

export const BASELINE_OPTIONS: readonly string[] = ['softmaxScale', 'softcap', 'deterministic', 'backend'];

export interface BaselineAttnResult<T extends AttnTensor = AttnTensor> {
  /** [shardSeqlen, Hq, D] in q's dtype. */
  out: T;
  /** [shardSeqlen, Hq] float32, natural log. */
  lse: T;
}

export interface BaselineAttnGrads<T extends AttnTensor = AttnTensor> {
  dq: T;
  dk: T;
  dv: T;
}

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** Throws unless t is this rank's shard [shardSeqlen, heads, headDim] of the layout. */
function checkShard<T>(ops: AttnOps<T>, t: T, name: string, layout: BaselineLayout, heads: number, dispatchName: string): void {
  const shape = ops.shape(t);
  const want = [layout.shardSeqlen, heads, layout.headDim];
  if (shape.length !== 3 || shape.some((d, i) => d !== want[i])) {
    throw new ShapeError(name, `must be this rank's shard [local tokens, heads, headDim] = ${fmt(want)} (use ${dispatchName}(x, key))`, `got ${fmt(shape)}`);
  }
}

/**
 * The start of every baseline call: a key of this baseline, known options only, q/k/v this rank's
 * shards of the layout; the operations for q's kind of tensor and the kernel scalars with their defaults.
 */
export function prepareBaselineCall<T extends AttnTensor, K extends BaselineLayout>(
  q: T,
  k: T,
  v: T,
  layout: K,
  kind: BaselineKind<K>,
  options: BaselineAttnOptions<T>,
  known: readonly string[],
): { ops: AttnOps<T>; scalars: { softmaxScale: number; softcap: number; deterministic: boolean } } {
  requireBaselineKey(layout, kind);
  requireKnownOptions(options, 'options', known);
  const ops = attnOpsFor(q, layout.group, options.backend as KernelBackend<AttnTensor> | string | undefined) as AttnOps<T>;
  checkShard(ops, q, 'q', layout, layout.numHeadsQ, kind.dispatchName);
  checkShard(ops, k, 'k', layout, layout.numHeadsKv, kind.dispatchName);
  checkShard(ops, v, 'v', layout, layout.numHeadsKv, kind.dispatchName);
  return { ops, scalars: { softmaxScale: options.softmaxScale ?? 1 / Math.sqrt(layout.headDim), softcap: options.softcap ?? 0, deterministic: options.deterministic ?? false } };
}
