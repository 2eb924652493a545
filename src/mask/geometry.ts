/**
 * The one slice geometry: which (q, k) cells a typed slice covers, in every form the project
 * needs (per cell, per row, as an area, as a band cut by a rectangle). Masks, kernels, planners
 * and the plan checker all ask here; nothing else encodes what a slice type means (the CUDA
 * kernels mirror the row rules in `ffa_common.cuh`, checked against the CPU kernel).
 *
 * In slice-local coordinates i = q - qStart, j = k - kStart, with Lq, Lk the range lengths, a
 * cell is unmasked when:
 *   FULL       always
 *   CAUSAL     j - i <= Lk - Lq      (bottom-right aligned: the last row sees the last key)
 *   INVCAUSAL  j >= i                (top-left aligned: the first row sees the first key)
 *   BICAUSAL   both of the above     (a band of width Lk - Lq + 1; empty when Lq > Lk)
 * So every slice is a band { q in [q0, q1), k in [k0, k1), dLo <= k - q <= dHi } whose diagonal
 * bounds come from the type's two bits (bit 0: a right diagonal, bit 1: a left diagonal), and
 * every row's visible keys are one contiguous interval whose ends move with slope 0 or 1.
 *
 * Codes are numbers here (hot loops over Int32Array slice lists); `mask-type.ts` maps names.
 */
import { type AttnMaskType, MASK_TYPE_CODES } from './mask-type.js';
import type { SliceList } from './slice-list.js';

export const FULL = MASK_TYPE_CODES.full;
export const CAUSAL = MASK_TYPE_CODES.causal;
export const INVCAUSAL = MASK_TYPE_CODES.inv_causal;
export const BICAUSAL = MASK_TYPE_CODES.bi_causal;

/** Stands in for an unbounded diagonal; far outside any int32 coordinate, exact in float64. */
export const UNBOUNDED = 2 ** 40;

/** Lower diagonal bound (k - q >= dLo) of a slice: only INVCAUSAL and BICAUSAL have one (top-left aligned). */
export function bandLo(code: number, qStart: number, kStart: number): number {
  return (code & INVCAUSAL) !== 0 ? kStart - qStart : -UNBOUNDED;
}

/** Upper diagonal bound (k - q <= dHi): only CAUSAL and BICAUSAL have one (bottom-right aligned). */
export function bandHi(code: number, qEnd: number, kEnd: number): number {
  return (code & CAUSAL) !== 0 ? kEnd - qEnd : UNBOUNDED;
}

/** First key of global row q through the slice, before clipping to its k range. */
export function rowKeyStart(code: number, qStart: number, kStart: number, q: number): number {
  return (code & INVCAUSAL) !== 0 ? kStart + (q - qStart) : kStart;
}

/** One past the last key of global row q through the slice, before clipping to its k range. */
export function rowKeyEnd(code: number, qEnd: number, kEnd: number, q: number): number {
  return (code & CAUSAL) !== 0 ? kEnd - (qEnd - q - 1) : kEnd;
}

/**
 * The keys global row q sees through the slice, as a half-open interval clipped to the k range;
 * empty (end === start) when the row sees nothing.
 */
export function rowKeyInterval(type: MaskTypeOrCode, qStart: number, qEnd: number, kStart: number, kEnd: number, q: number): [number, number] {
  const code = codeOf(type);
  const start = Math.max(kStart, rowKeyStart(code, qStart, kStart, q));
  const end = Math.min(kEnd, rowKeyEnd(code, qEnd, kEnd, q));
  return [start, Math.max(start, end)];
}

/**
 * The rows of the slice that see at least one key, [first, last) (contiguous for every type);
 * first === last when none does.
 */
export function visibleRows(code: number, qStart: number, qEnd: number, kStart: number, kEnd: number): [number, number] {
  if (kEnd <= kStart || qEnd <= qStart) return [qStart, qStart];
  const first = Math.max(qStart, kStart - bandHi(code, qEnd, kEnd));
  const last = Math.min(qEnd, kEnd - bandLo(code, qStart, kStart));
  return first < last ? [first, last] : [qStart, qStart];
}

/** A type given by name or by code, for the functions people call with names. */
export type MaskTypeOrCode = AttnMaskType | number;
const codeOf = (t: MaskTypeOrCode): number => (typeof t === 'number' ? t : MASK_TYPE_CODES[t]);

/** True if the slice-local cell (i, j) of an Lq x Lk slice is unmasked. */
export function isCellUnmasked(type: MaskTypeOrCode, i: number, j: number, lq: number, lk: number): boolean {
  const code = codeOf(type);
  if (i < 0 || j < 0 || i >= lq || j >= lk) return false;
  const causalOk = (code & CAUSAL) === 0 || j - i <= lk - lq;
  const invOk = (code & INVCAUSAL) === 0 || j >= i;
  return causalOk && invOk;
}

/** Unmasked cells of an Lq x Lk slice, in closed form (BICAUSAL clamped at 0). */
export function sliceArea(type: MaskTypeOrCode, lq: number, lk: number): number {
  if (lq <= 0 || lk <= 0) return 0;
  switch (codeOf(type)) {
    case FULL:
      return lq * lk;
    case BICAUSAL:
      return lk >= lq ? (lk - lq + 1) * lq : 0;
    default:
      return lk >= lq ? lq * lk - (lq * (lq - 1)) / 2 : (lk * (lk + 1)) / 2;
  }
}


// ---------------------------------------------------------------------------------------------
// Bands cut by rectangles

/** Where emitBand writes its slices. */
export interface SliceSink {
  push(q0: number, q1: number, k0: number, k1: number, code: number, tag: number): void;
}

/**
 * Writes band ∩ ([q0,q1) × [k0,k1)) as at most three typed slices in q order, shifted by
 * (qShift, kShift), and returns the number of cells; out = null only counts. Rows split where the
 * left edge stops being the column k0 and where the right edge stops being the diagonal: above
 * both switches the shape is CAUSAL, between them BICAUSAL (diagonal on both sides) or FULL
 * (straight on both sides), below them INVCAUSAL. Rows that see nothing are left out.
 *
 * With `tight` (the default) the row whose left edge is both k0 and the diagonal goes with the
 * rows above, so every row and column of every slice holds a cell and a band that fills its
 * rectangle is one FULL slice. The reference's sliding window puts that row with the rows below
 * (a one-row INVCAUSAL or BICAUSAL slice can result), and its slicing is reproduced as is with
 * tight = false. The cells are the same either way.
 */
export function emitBand(
  out: SliceSink | null,
  q0: number,
  q1: number,
  k0: number,
  k1: number,
  dLo: number,
  dHi: number,
  qShift = 0,
  kShift = 0,
  tag = 0,
  tight = true,
): number {
  if (k0 >= k1 || q0 >= q1 || dLo > dHi) return 0;
  // Rows that see at least one key: k0 <= q + dHi and q + dLo <= k1 - 1.
  const lo = Math.max(q0, k0 - dHi);
  const hi = Math.min(q1, k1 - dLo);
  if (lo >= hi) return 0;
  // Rows below leftSwitch start at k0; rows below rightSwitch end on the diagonal. Row k0 - dLo
  // does both: tight cuts put it with the rows above, the reference's with the rows below.
  const leftSwitch = tight ? k0 - dLo + 1 : k0 - dLo;
  const rightSwitch = k1 - dHi;
  const a = Math.min(hi, Math.max(lo, Math.min(leftSwitch, rightSwitch)));
  const b = Math.min(hi, Math.max(lo, Math.max(leftSwitch, rightSwitch)));
  let area = 0;
  if (a > lo) {
    const ke = a + dHi;
    area += sliceArea(CAUSAL, a - lo, ke - k0);
    out?.push(lo + qShift, a + qShift, k0 + kShift, ke + kShift, CAUSAL, tag);
  }
  if (b > a) {
    if (leftSwitch < rightSwitch) {
      const ks = a + dLo;
      const ke = b + dHi;
      area += sliceArea(BICAUSAL, b - a, ke - ks);
      out?.push(a + qShift, b + qShift, ks + kShift, ke + kShift, BICAUSAL, tag);
    } else {
      area += (b - a) * (k1 - k0);
      out?.push(a + qShift, b + qShift, k0 + kShift, k1 + kShift, FULL, tag);
    }
  }
  if (hi > b) {
    const ks = b + dLo;
    area += sliceArea(INVCAUSAL, hi - b, k1 - ks);
    out?.push(b + qShift, hi + qShift, ks + kShift, k1 + kShift, INVCAUSAL, tag);
  }
  return area;
}

/** Slice b of a list, cut by nothing but its own rectangle (so: made tight), into `out`. */
export function emitSlice(out: SliceSink | null, slices: SliceList, b: number, qShift = 0, kShift = 0, tag = 0): number {
  const code = slices.maskTypes[b];
  const qs = slices.qRanges[2 * b];
  const qe = slices.qRanges[2 * b + 1];
  const ks = slices.kRanges[2 * b];
  const ke = slices.kRanges[2 * b + 1];
  return emitBand(out, qs, qe, ks, ke, bandLo(code, qs, ks), bandHi(code, qe, ke), qShift, kShift, tag);
}

// ---------------------------------------------------------------------------------------------
// A growable slice list

/**
 * Growable struct-of-arrays of typed slices, each with an integer tag (a stage index, a chunk id,
 * whatever the caller groups by). The one way code builds a SliceList slice by slice.
 */
export class SliceBuffer implements SliceSink {
  q0: Int32Array;
  q1: Int32Array;
  k0: Int32Array;
  k1: Int32Array;
  type: Uint8Array;
  tag: Int32Array;
  length = 0;

  constructor(capacity = 64) {
    const c = Math.max(1, capacity);
    this.q0 = new Int32Array(c);
    this.q1 = new Int32Array(c);
    this.k0 = new Int32Array(c);
    this.k1 = new Int32Array(c);
    this.type = new Uint8Array(c);
    this.tag = new Int32Array(c);
  }

  private grow(): void {
    const cap = this.q0.length * 2;
    const g32 = (a: Int32Array): Int32Array => {
      const b = new Int32Array(cap);
      b.set(a);
      return b;
    };
    this.q0 = g32(this.q0);
    this.q1 = g32(this.q1);
    this.k0 = g32(this.k0);
    this.k1 = g32(this.k1);
    this.tag = g32(this.tag);
    const t = new Uint8Array(cap);
    t.set(this.type);
    this.type = t;
  }

  push(q0: number, q1: number, k0: number, k1: number, code: number, tag = 0): void {
    if (this.length === this.q0.length) this.grow();
    const i = this.length++;
    this.q0[i] = q0;
    this.q1[i] = q1;
    this.k0[i] = k0;
    this.k1[i] = k1;
    this.type[i] = code;
    this.tag[i] = tag;
  }

  /** Appends every slice of a list as it is (not made tight). */
  append(slices: SliceList, tag = 0): this {
    for (let b = 0; b < slices.maskTypes.length; b++) {
      this.push(slices.qRanges[2 * b], slices.qRanges[2 * b + 1], slices.kRanges[2 * b], slices.kRanges[2 * b + 1], slices.maskTypes[b], tag);
    }
    return this;
  }

  clear(): void {
    this.length = 0;
  }

  /** Copies rows [from, to) out as a SliceList. */
  toSliceList(from = 0, to = this.length): SliceList {
    const n = to - from;
    const qRanges = new Int32Array(2 * n);
    const kRanges = new Int32Array(2 * n);
    for (let i = 0; i < n; i++) {
      qRanges[2 * i] = this.q0[from + i];
      qRanges[2 * i + 1] = this.q1[from + i];
      kRanges[2 * i] = this.k0[from + i];
      kRanges[2 * i + 1] = this.k1[from + i];
    }
    return { qRanges, kRanges, maskTypes: this.type.slice(from, to) };
  }
}
