/**
 * Mask builders: the common masks (full, causal, varlen, sliding window with optional global
 * tokens, block-causal) as slice lists, and a sampler of packed document lengths for benchmarks.
 *
 * Every builder emits slices that never share a (q, k) cell, because a shared cell would count
 * twice in the softmax. Every sliding-window shape is a diagonal band cut by a rectangle, which
 * geometry.ts' emitBand turns into at most three slices (CAUSAL, FULL or BICAUSAL, INVCAUSAL).
 */
import { MaskError } from '../errors.js';
import type { Rng } from '../util/rng.js';
import { DOC_LENGTH_HISTOGRAM } from './doc-length-histogram.js';
import { CAUSAL, emitBand, FULL, SliceBuffer, UNBOUNDED } from './geometry.js';
import { AttnRange, type RangeLike } from './range.js';
import type { SliceList } from './slice-list.js';

// ---------------------------------------------------------------------------------------------
// Sliding window

/**
 * One sliding-window slice group, in the reference's exact shape: bottom-right aligned, so query
 * row q's diagonal key is q + (kEnd - qEnd) and the row sees [diag - wl, diag + wr] within the
 * key range. A window side of -1, or any w >= Lk - 1, is unbounded. When Lq > Lk only the last
 * Lk rows can see anything (the first Lq - Lk rows are dropped even if a right window would reach
 * keys, as in the reference). Returns at most three disjoint slices in q order:
 * CAUSAL, then FULL or BICAUSAL, then INVCAUSAL, leaving out empty ones.
 */
export function inferMaskFromSlidingWindow(qRange: RangeLike, kRange: RangeLike, windowSize: readonly [number, number]): SliceList {
  const q = AttnRange.fromRange(qRange, 'qRange');
  const k = AttnRange.fromRange(kRange, 'kRange');
  const [wl, wr] = checkWindowSize(windowSize);
  const out = new SliceBuffer();
  pushSlidingWindow(out, q.start, q.end, k.start, k.end, wl, wr);
  return out.toSliceList();
}

function pushSlidingWindow(out: SliceBuffer, qs: number, qe: number, ks: number, ke: number, wl: number, wr: number): void {
  const lk = ke - ks;
  const lq = Math.min(qe - qs, lk);
  if (lq <= 0) return;
  const left = wl === -1 || wl >= lk - 1 ? UNBOUNDED : wl;
  const right = wr === -1 || wr >= lk - 1 ? UNBOUNDED : wr;
  const diagShift = ke - qe;
  emitBand(out, qe - lq, qe, ks, ke, diagShift - left, diagShift + right, 0, 0, 0, false);
}

function checkWindowSize(windowSize: readonly [number, number], argument = 'windowSize'): [number, number] {
  if (!Array.isArray(windowSize) || windowSize.length !== 2) {
    throw new MaskError(argument, 'must be a pair [left, right]', `got ${JSON.stringify(windowSize)}`);
  }
  const [wl, wr] = windowSize;
  for (const w of [wl, wr]) {
    if (!Number.isSafeInteger(w) || w < -1) throw new MaskError(argument, 'window sides are integers >= 0, or -1 for unbounded', `got [${wl}, ${wr}]`);
  }
  return [wl, wr];
}

// ---------------------------------------------------------------------------------------------
// cu_seqlens

export interface InferMaskOptions {
  /** One CAUSAL slice per sample instead of FULL; only without a sliding window. */
  causal?: boolean;
  /** [left, right], -1 for unbounded; [-1, -1] (the default) means no window. */
  windowSize?: readonly [number, number];
  /**
   * With a sliding window: the first G keys of every sample are visible to every row of the
   * sample that the right window allows (key j <= row i + wr), whatever the left window says.
   * Requires cuSeqlensQ == cuSeqlensK. Ignored without a window, as in the reference.
   */
  globalWindowSize?: number;
}

export interface InferredMask {
  slices: SliceList;
  totalQ: number;
  totalK: number;
}

/**
 * The mask of a packed batch: sample b is queries [cuQ[b], cuQ[b+1]) against keys
 * [cuK[b], cuK[b+1]), full or causal, or with a sliding window (bottom-right aligned per
 * sample, see inferMaskFromSlidingWindow) and optional global tokens. Samples with no queries or
 * no keys get no slice.
 */
export function inferMaskFromCuSeqlens(
  cuSeqlensQ: ArrayLike<number>,
  cuSeqlensK: ArrayLike<number>,
  options: InferMaskOptions = {},
): InferredMask {
  checkCuSeqlens(cuSeqlensQ, 'cuSeqlensQ');
  checkCuSeqlens(cuSeqlensK, 'cuSeqlensK');
  if (cuSeqlensQ.length !== cuSeqlensK.length) {
    throw new MaskError('cuSeqlensK', 'must describe as many samples as cuSeqlensQ', `${cuSeqlensK.length - 1} vs ${cuSeqlensQ.length - 1}`);
  }
  const causal = options.causal ?? false;
  const [wl, wr] = checkWindowSize(options.windowSize ?? [-1, -1]);
  const globalWindow = options.globalWindowSize ?? 0;
  if (!Number.isSafeInteger(globalWindow) || globalWindow < 0) {
    throw new MaskError('globalWindowSize', 'must be an integer >= 0', `got ${globalWindow}`);
  }
  const windowed = wl !== -1 || wr !== -1;
  if (causal && windowed) {
    throw new MaskError('causal', 'cannot be combined with a sliding window (a window [-1, 0] is causal)', `windowSize = [${wl}, ${wr}]`);
  }
  const useGlobal = windowed && globalWindow > 0;
  if (useGlobal && !sameSeqlens(cuSeqlensQ, cuSeqlensK)) {
    throw new MaskError('globalWindowSize', 'needs self-attention samples (cuSeqlensQ == cuSeqlensK)');
  }

  const out = new SliceBuffer();
  for (let b = 0; b + 1 < cuSeqlensQ.length; b++) {
    const qs = cuSeqlensQ[b];
    const qe = cuSeqlensQ[b + 1];
    const ks = cuSeqlensK[b];
    const ke = cuSeqlensK[b + 1];
    if (qs === qe || ks === ke) continue;
    if (!windowed) out.push(qs, qe, ks, ke, causal ? CAUSAL : FULL);
    else if (useGlobal) pushGlobalWindow(out, qs, qe, wl, wr, globalWindow);
    else pushSlidingWindow(out, qs, qe, ks, ke, wl, wr);
  }
  return { slices: out.toSliceList(), totalQ: cuSeqlensQ[cuSeqlensQ.length - 1], totalK: cuSeqlensK[cuSeqlensK.length - 1] };
}

/**
 * A self-attention sample [s, e) with a sliding window and G global keys. Cell (i, j) in sample
 * coordinates is visible when j <= i + wr and either j < min(G, L) or j >= i - wl (open sides
 * drop their condition). The reference builds the same cells from its window helper plus extra
 * slices for the rows the helper drops; here the global columns and the remaining columns are
 * each one band, which gives the same cells in at most five disjoint slices (the global columns
 * need no INVCAUSAL piece).
 */
function pushGlobalWindow(out: SliceBuffer, s: number, e: number, wl: number, wr: number, globalWindow: number): void {
  const g = Math.min(globalWindow, e - s);
  const left = wl === -1 ? -UNBOUNDED : -wl;
  const right = wr === -1 ? UNBOUNDED : wr;
  emitBand(out, s, e, s, s + g, -UNBOUNDED, right, 0, 0, 0);
  emitBand(out, s, e, s + g, e, left, right, 0, 0, 0);
}

/** Throws a MaskError unless `cu` is a cu_seqlens list: int32 integers from 0, non-decreasing. */
export function checkCuSeqlens(cu: ArrayLike<number>, argument: string): void {
  if (cu === null || typeof cu !== 'object' || typeof cu.length !== 'number') {
    throw new MaskError(argument, 'must be an array of cumulative sequence lengths');
  }
  if (cu.length === 0) throw new MaskError(argument, 'must hold at least the leading 0');
  for (let i = 0; i < cu.length; i++) {
    const v = cu[i];
    if (!Number.isSafeInteger(v)) throw new MaskError(`${argument}[${i}]`, 'cu_seqlens entries must be integers', `got ${v}`);
    if (i === 0 && v !== 0) throw new MaskError(argument, 'cu_seqlens must start at 0', `got ${v}`);
    if (i > 0 && v < cu[i - 1]) {
      throw new MaskError(argument, 'cu_seqlens must be non-decreasing', `cu[${i - 1}] = ${cu[i - 1]} > cu[${i}] = ${v}`);
    }
    if (v > 2 ** 31 - 1) throw new MaskError(`${argument}[${i}]`, 'cu_seqlens entries must fit in int32', `got ${v}`);
  }
}

function sameSeqlens(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Convenience masks

/** A number n means one document [0, n); an array is cu_seqlens (validated). */
export type CuSeqlensOrTotal = number | ArrayLike<number>;

function toCuSeqlens(value: CuSeqlensOrTotal, argument: string): ArrayLike<number> {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new MaskError(argument, 'a total length must be an integer >= 0', `got ${value}`);
    return value === 0 ? [0] : [0, value];
  }
  checkCuSeqlens(value, argument);
  return value;
}

/** [0, n) x [0, n), FULL (no slice when n == 0). */
export function fullMask(n: number): SliceList {
  return varlenFullMask(toCuSeqlens(n, 'n'));
}

/** [0, n) x [0, n), CAUSAL. */
export function causalMask(n: number): SliceList {
  return varlenCausalMask(toCuSeqlens(n, 'n'));
}

/** One FULL square per document. */
export function varlenFullMask(cuSeqlens: ArrayLike<number>): SliceList {
  return inferMaskFromCuSeqlens(cuSeqlens, cuSeqlens).slices;
}

/** One CAUSAL square per document. */
export function varlenCausalMask(cuSeqlens: ArrayLike<number>): SliceList {
  return inferMaskFromCuSeqlens(cuSeqlens, cuSeqlens, { causal: true }).slices;
}

/** A sliding window inside every document (self-attention). */
export function slidingWindowMask(cuSeqlensOrTotal: CuSeqlensOrTotal, windowSize: readonly [number, number]): SliceList {
  const cu = toCuSeqlens(cuSeqlensOrTotal, 'cuSeqlensOrTotal');
  return inferMaskFromCuSeqlens(cu, cu, { windowSize }).slices;
}

/**
 * Block-causal inside every document: query block i of a document sees all keys of blocks 0..i of
 * the same document, as FULL slices [d + iB, min(e, d + (i+1)B)) x [d, min(e, d + (i+1)B)). With
 * several documents this is the varlen block-causal mask of video frames.
 */
export function blockCausalMask(cuSeqlensOrTotal: CuSeqlensOrTotal, blockSize: number): SliceList {
  const cu = toCuSeqlens(cuSeqlensOrTotal, 'cuSeqlensOrTotal');
  if (!Number.isSafeInteger(blockSize) || blockSize <= 0) throw new MaskError('blockSize', 'must be a positive integer', `got ${blockSize}`);
  const out = new SliceBuffer();
  for (let b = 0; b + 1 < cu.length; b++) {
    const docStart = cu[b];
    const docEnd = cu[b + 1];
    for (let blockStart = docStart; blockStart < docEnd; blockStart += blockSize) {
      const blockEnd = Math.min(docEnd, blockStart + blockSize);
      out.push(blockStart, blockEnd, docStart, blockEnd, FULL);
    }
  }
  return out.toSliceList();
}

// ---------------------------------------------------------------------------------------------
// Document-length sampling

export interface SampleDocLengthsOptions {
  /** Documents longer than totalTokens * chunkRatio are cut into pieces of that length (default 0.25, as the reference). */
  chunkRatio?: number;
}

/**
 * Document lengths of one packed sequence of `totalTokens` tokens, drawn the way the reference
 * benchmark packs its dataset: every document in a histogram bin has the bin's midpoint length;
 * documents longer than chunkRatio·total are cut into pieces of that length plus a remainder; the
 * pieces are shuffled and packed greedily, a piece that does not fit being split and its rest
 * opening the next pack. With ~14M documents that shuffle is, in effect, independent draws by
 * piece frequency, which is what this does (one pack is packed and thrown away first, so the pack
 * returned opens with a carried-over remainder like the reference's packs). The lengths sum to
 * totalTokens exactly; the same rng state gives the same lengths.
 */
export function sampleDocLengths(totalTokens: number, rng: Rng, options: SampleDocLengthsOptions = {}): number[] {
  if (!Number.isSafeInteger(totalTokens) || totalTokens <= 0) throw new MaskError('totalTokens', 'must be a positive integer', `got ${totalTokens}`);
  const chunkRatio = options.chunkRatio ?? 0.25;
  if (!(chunkRatio > 0 && chunkRatio <= 1)) throw new MaskError('chunkRatio', 'must be in (0, 1]', `got ${chunkRatio}`);

  // Piece population after chunking; the reference truncates float lengths to int32.
  const chunkLen = totalTokens * chunkRatio;
  const lengths: number[] = [];
  const weights: number[] = [];
  let fullPieces = 0;
  for (const bin of DOC_LENGTH_HISTOGRAM) {
    const midpoint = Math.floor((bin.lo + bin.hi) / 2);
    const pieces = Math.floor(midpoint / chunkLen);
    fullPieces += pieces * bin.count;
    const tail = Math.trunc(midpoint % chunkLen);
    if (tail > 0) {
      lengths.push(tail);
      weights.push(bin.count);
    }
  }
  if (fullPieces > 0 && Math.trunc(chunkLen) > 0) {
    lengths.push(Math.trunc(chunkLen));
    weights.push(fullPieces);
  }
  if (lengths.length === 0) return [totalTokens];
  const totalWeight = weights.reduce((a, b) => a + b, 0);
  const draw = (): number => {
    let u = rng.next() * totalWeight;
    for (let i = 0; i < lengths.length; i++) {
      u -= weights[i];
      if (u < 0) return lengths[i];
    }
    return lengths[lengths.length - 1];
  };

  let carry = 0;
  for (let left = totalTokens; left > 0; ) {
    const piece = draw();
    if (piece <= left) left -= piece;
    else {
      carry = piece - left;
      left = 0;
    }
  }
  const docs: number[] = [];
  let left = totalTokens;
  if (carry > 0) {
    docs.push(Math.min(carry, left));
    left -= docs[0];
  }
  while (left > 0) {
    const piece = Math.min(draw(), left);
    docs.push(piece);
    left -= piece;
  }
  return docs;
}

/** [0, l0, l0 + l1, ...]; lengths must be integers >= 0. */
export function cuSeqlensFromLengths(lengths: ArrayLike<number>): number[] {
  const cu = [0];
  for (let i = 0; i < lengths.length; i++) {
    const l = lengths[i];
    if (!Number.isSafeInteger(l) || l < 0) throw new MaskError(`lengths[${i}]`, 'document lengths must be integers >= 0', `got ${l}`);
    cu.push(cu[i] + l);
  }
  return cu;
}
