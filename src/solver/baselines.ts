/**
 * What the usual context-parallel baselines would cost on the same mask, for comparison with a
 * plan (reference 05 §2): ring attention with per-document zig-zag sharding (every rank receives
 * every other rank's k/v, whatever the mask) and Ulysses (all-to-all of q, k, v and o over heads;
 * perfectly balanced, but cp must divide the head counts). Volumes are forward, per attention call.
 */
import { sliceCount, type SliceList } from '../mask/slice-list.js';
import { bandHi, bandLo, emitBand, emitSlice } from '../mask/geometry.js';
import { firstRangeEndingAfter } from '../mask/range-list.js';
import { planStats, type DistAttnPlan } from './plan.js';

export interface HeadShape {
  readonly numHeadsQ: number;
  readonly numHeadsKv: number;
  readonly headDim: number;
  /** Bytes per element (2 for bf16). */
  readonly bytesPerElement: number;
}

/** The reference benchmark's model shape (05 §1.7): 48 query heads, 8 k/v heads, head dim 128, bf16. */
export const BENCH_HEAD_SHAPE: HeadShape = { numHeadsQ: 48, numHeadsKv: 8, headDim: 128, bytesPerElement: 2 };

export interface CommSummary {
  readonly method: string;
  /** Unmasked cells each rank computes. */
  readonly areaPerRank: Float64Array;
  readonly imbalance: number;
  /** Token rows each rank receives: k/v tokens for ring and MagiAttention; q, k, v and o rows (all heads) for Ulysses. */
  readonly recvTokensPerRank: Float64Array;
  readonly totalTokens: number;
  /** Bytes each rank receives in the forward pass. */
  readonly recvBytesPerRank: Float64Array;
  readonly totalBytes: number;
  /** Why the method does not apply as configured, if it does not. */
  readonly note?: string;
}

function summarise(method: string, area: Float64Array, tokens: Float64Array, bytesPerToken: number, note?: string): CommSummary {
  let total = 0;
  let max = 0;
  let tok = 0;
  for (let r = 0; r < area.length; r++) {
    total += area[r];
    max = Math.max(max, area[r]);
    tok += tokens[r];
  }
  const bytes = tokens.map((t) => t * bytesPerToken);
  return {
    method,
    areaPerRank: area,
    imbalance: total > 0 ? max / (total / area.length) : 1,
    recvTokensPerRank: tokens,
    totalTokens: tok,
    recvBytesPerRank: bytes,
    totalBytes: tok * bytesPerToken,
    ...(note === undefined ? {} : { note }),
  };
}

/**
 * Area of the mask in each owner's rows. rowRanges: sorted, disjoint flat [s, e) pairs; owners[i]
 * is the rank of range i. Each slice visits only the row ranges it crosses.
 */
export function maskAreaByRows(mask: SliceList, rowRanges: Int32Array, owners: Int32Array, numOwners: number): Float64Array {
  const out = new Float64Array(numOwners);
  const n = rowRanges.length / 2;
  for (let b = 0; b < sliceCount(mask); b++) {
    const t = mask.maskTypes[b];
    const qs = mask.qRanges[2 * b];
    const qe = mask.qRanges[2 * b + 1];
    const ks = mask.kRanges[2 * b];
    const ke = mask.kRanges[2 * b + 1];
    const dLo = bandLo(t, qs, ks);
    const dHi = bandHi(t, qe, ke);
    for (let i = firstRangeEndingAfter(rowRanges, qs); i < n && rowRanges[2 * i] < qe; i++) {
      out[owners[i]] += emitBand(null, Math.max(qs, rowRanges[2 * i]), Math.min(qe, rowRanges[2 * i + 1]), ks, ke, dLo, dHi, 0, 0, 0);
    }
  }
  return out;
}

/** Per-document zig-zag sharding: the pieces of every document and the rank that keeps each. */
export interface ZigzagPieces {
  /** Sorted, disjoint flat [s, e) pairs: the real (unpadded) pieces of every document. */
  readonly ranges: Int32Array;
  /** owners[i]: the rank that keeps piece i. */
  readonly owners: Int32Array;
  /** Total length with every document padded to a multiple of 2P (each rank holds padded / P rows). */
  readonly padded: number;
}

/**
 * Per-document zig-zag sharding (05 §2.1-2.3): each document is padded to a multiple of 2P and
 * cut into 2P pieces; piece k (k < 2P, in sequence order) belongs to rank k for k < P, else
 * 2P−1−k, so every rank gets one early and one late piece of every document. Pieces past the
 * document's end are padding and are not listed; a document has at most min(2P, L) real pieces.
 */
export function zigzagPieces(cuSeqlens: ArrayLike<number>, cpSize: number): ZigzagPieces {
  const P = cpSize;
  const cu = cuSeqlens;
  let capacity = 0;
  for (let d = 0; d + 1 < cu.length; d++) capacity += Math.max(0, Math.min(2 * P, cu[d + 1] - cu[d]));
  const ranges = new Int32Array(2 * capacity);
  const owners = new Int32Array(capacity);
  let m = 0;
  let padded = 0;
  for (let d = 0; d + 1 < cu.length; d++) {
    const ds = cu[d];
    const de = cu[d + 1];
    const L = de - ds;
    if (L <= 0) continue;
    const piece = Math.ceil(L / (2 * P));
    padded += piece * 2 * P;
    for (let k = 0; k < 2 * P && ds + k * piece < de; k++) {
      ranges[2 * m] = ds + k * piece;
      ranges[2 * m + 1] = Math.min(ds + (k + 1) * piece, de);
      owners[m++] = k < P ? k : 2 * P - 1 - k;
    }
  }
  return { ranges: ranges.subarray(0, 2 * m), owners: owners.subarray(0, m), padded };
}

/**
 * Ring attention (P2P or all-gather) with per-document zig-zag sharding (zigzagPieces): each rank
 * receives the k/v of all P−1 others: (P−1)·n tokens, n = padded length / P, mask or no mask.
 * `cuSeqlens` gives the documents (default: one). src/baselines/ring-attn.ts runs this sharding.
 */
export function ringZigzagBaseline(mask: SliceList, totalSeqlen: number, cpSize: number, heads: HeadShape = BENCH_HEAD_SHAPE, cuSeqlens?: ArrayLike<number>): CommSummary {
  const P = cpSize;
  const { ranges, owners, padded } = zigzagPieces(cuSeqlens ?? [0, totalSeqlen], P);
  const area = maskAreaByRows(mask, ranges, owners, P);
  const n = padded / P;
  const tokens = new Float64Array(P).fill((P - 1) * n);
  return summarise('ring (zig-zag)', area, tokens, 2 * heads.numHeadsKv * heads.headDim * heads.bytesPerElement);
}

/** Ulysses' contiguous sharding: every rank holds ceil(N / P) rows, the last ones padded. */
export function ulyssesShardSeqlen(totalSeqlen: number, cpSize: number): number {
  return Math.ceil(totalSeqlen / cpSize);
}

/** Ulysses' head rule: cp divides the query heads and divides, or is divided by, the k/v heads (replicated up to cp). */
export function ulyssesHeadsFeasible(numHeadsQ: number, numHeadsKv: number, cpSize: number): boolean {
  return numHeadsQ % cpSize === 0 && (numHeadsKv % cpSize === 0 || cpSize % numHeadsKv === 0);
}

/**
 * Ulysses (05 §2.4): the sequence is split contiguously (padded to a multiple of P), and one
 * all-to-all per tensor turns [n tokens, all heads] into [all tokens, h/P heads] for q, k, v, then
 * back for o. Each rank receives (P−1)/P·n rows of each tensor; k/v heads are replicated up to P
 * when P > numHeadsKv. Compute is the whole mask split evenly by heads.
 */
export function ulyssesBaseline(mask: SliceList, totalSeqlen: number, cpSize: number, heads: HeadShape = BENCH_HEAD_SHAPE): CommSummary {
  const P = cpSize;
  let total = 0;
  for (let b = 0; b < sliceCount(mask); b++) total += emitSlice(null, mask, b);
  const n = ulyssesShardSeqlen(totalSeqlen, P);
  const rows = ((P - 1) / P) * n;
  const hkv = Math.max(heads.numHeadsKv, P);
  const bytesPerRow = ((2 * heads.numHeadsQ + 2 * hkv) * heads.headDim * heads.bytesPerElement) / 4;
  const feasible = ulyssesHeadsFeasible(heads.numHeadsQ, heads.numHeadsKv, P);
  return summarise(
    'ulysses',
    new Float64Array(P).fill(total / P),
    new Float64Array(P).fill(4 * rows),
    bytesPerRow,
    feasible ? undefined : `needs cp to divide numHeadsQ (${heads.numHeadsQ}) and to divide or be divided by numHeadsKv (${heads.numHeadsKv})`,
  );
}

/** The plan's own figures in the same form (k/v tokens received through GroupCast). */
export function planCommSummary(plan: DistAttnPlan, heads: HeadShape = BENCH_HEAD_SHAPE): CommSummary {
  const s = planStats(plan);
  return summarise('magi-attention', s.areaPerRank, s.recvTokensPerRank, 2 * heads.numHeadsKv * heads.headDim * heads.bytesPerElement);
}
