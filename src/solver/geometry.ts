/**
 * The geometry kernel of the planners: every typed slice is treated as a band
 * {q in [q0,q1), k in [k0,k1), dLo <= k - q <= dHi}, cut by rectangles and decomposed back into
 * at most three typed slices. One routine replaces the reference's RECTANGLE / TRAPEZOID /
 * TRIANGLE / PENTAGON case analysis, and it works on flat numbers so that the solvers never touch
 * objects per range.
 *
 * Also here: growable typed-array buffers for pieces and flat range lists ([s0, e0, s1, e1, ...])
 * with the few set operations the solvers need (merge, difference, length).
 */
import type { SliceList } from '../mask/slice-list.js';

/** Stands in for an unbounded diagonal; far outside any int32 coordinate, exact in float64. */
export const UNBOUNDED = 2 ** 40;

export const FULL = 0;
export const CAUSAL = 1;
export const INVCAUSAL = 2;
export const BICAUSAL = 3;

/** Lower diagonal bound (k - q >= dLo) of a tight typed slice: only INVCAUSAL and BICAUSAL have one. */
export function bandLo(type: number, qStart: number, kStart: number): number {
  return (type & INVCAUSAL) !== 0 ? kStart - qStart : -UNBOUNDED;
}

/** Upper diagonal bound (k - q <= dHi): only CAUSAL and BICAUSAL have one (bottom-right aligned). */
export function bandHi(type: number, qEnd: number, kEnd: number): number {
  return (type & CAUSAL) !== 0 ? kEnd - qEnd : UNBOUNDED;
}

/** Unmasked cells of an lq x lk typed slice (BICAUSAL clamped at 0). */
export function typedArea(type: number, lq: number, lk: number): number {
  if (lq <= 0 || lk <= 0) return 0;
  if (type === FULL) return lq * lk;
  if (type === BICAUSAL) return lk >= lq ? (lk - lq + 1) * lq : 0;
  return lk >= lq ? lq * lk - (lq * (lq - 1)) / 2 : (lk * (lk + 1)) / 2;
}

/**
 * Growable struct-of-arrays of typed slices, each with an integer tag (a stage index, a chunk id,
 * whatever the caller groups by). Slices written here are always tight: every row and every
 * column of their rectangle holds at least one unmasked cell.
 */
export class PieceBuffer {
  q0: Int32Array;
  q1: Int32Array;
  k0: Int32Array;
  k1: Int32Array;
  type: Uint8Array;
  tag: Int32Array;
  length = 0;

  constructor(capacity = 64) {
    this.q0 = new Int32Array(capacity);
    this.q1 = new Int32Array(capacity);
    this.k0 = new Int32Array(capacity);
    this.k1 = new Int32Array(capacity);
    this.type = new Uint8Array(capacity);
    this.tag = new Int32Array(capacity);
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

  push(q0: number, q1: number, k0: number, k1: number, type: number, tag = 0): void {
    if (this.length === this.q0.length) this.grow();
    const i = this.length++;
    this.q0[i] = q0;
    this.q1[i] = q1;
    this.k0[i] = k0;
    this.k1[i] = k1;
    this.type[i] = type;
    this.tag[i] = tag;
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

/**
 * Writes band ∩ ([q0,q1) × [k0,k1)) as at most three tight typed slices, shifted by (qShift, kShift),
 * and returns the number of cells. Rows split where the left edge stops being the column k0 and
 * where the right edge stops being the diagonal: above both switches the shape is CAUSAL, between
 * them BICAUSAL (diagonal on both sides) or FULL (straight on both sides), below them INVCAUSAL.
 * Pass out = null to only count.
 */
export function emitBand(
  out: PieceBuffer | null,
  q0: number,
  q1: number,
  k0: number,
  k1: number,
  dLo: number,
  dHi: number,
  qShift: number,
  kShift: number,
  tag: number,
): number {
  if (k0 >= k1 || q0 >= q1 || dLo > dHi) return 0;
  // Rows that see at least one key: k0 <= q + dHi and q + dLo <= k1 - 1.
  const lo = Math.max(q0, k0 - dHi);
  const hi = Math.min(q1, k1 - dLo);
  if (lo >= hi) return 0;
  const leftSwitch = k0 - dLo + 1; // rows below it start at k0
  const rightSwitch = k1 - dHi; // rows below it end on the diagonal
  const a = Math.min(hi, Math.max(lo, Math.min(leftSwitch, rightSwitch)));
  const b = Math.min(hi, Math.max(lo, Math.max(leftSwitch, rightSwitch)));
  let area = 0;
  if (a > lo) {
    const ke = a + dHi;
    area += typedArea(CAUSAL, a - lo, ke - k0);
    out?.push(lo + qShift, a + qShift, k0 + kShift, ke + kShift, CAUSAL, tag);
  }
  if (b > a) {
    if (leftSwitch < rightSwitch) {
      const ks = a + dLo;
      const ke = b + dHi;
      area += typedArea(BICAUSAL, b - a, ke - ks);
      out?.push(a + qShift, b + qShift, ks + kShift, ke + kShift, BICAUSAL, tag);
    } else {
      area += (b - a) * (k1 - k0);
      out?.push(a + qShift, b + qShift, k0 + kShift, k1 + kShift, FULL, tag);
    }
  }
  if (hi > b) {
    const ks = b + dLo;
    area += typedArea(INVCAUSAL, hi - b, k1 - ks);
    out?.push(b + qShift, hi + qShift, ks + kShift, k1 + kShift, INVCAUSAL, tag);
  }
  return area;
}

/**
 * Tidies the pieces [from, length) of one chunk, in place, into an equivalent, usually shorter
 * list sorted by (q start, k start): pieces are cut at every q endpoint of the group, pieces on the
 * same rows whose k ranges touch are fused where the shape allows (FULL|INVCAUSAL on the left with
 * FULL|CAUSAL on the right), and fragments that continue each other vertically are joined again.
 * Cells are never added or dropped, and overlapping pieces are never fused, so multiplicities survive.
 */
export function tidyPieces(buf: PieceBuffer, from: number, scratch: PieceBuffer): void {
  const n = buf.length - from;
  if (n <= 1) return;
  // Fast path: pieces already on disjoint rows in order have nothing to fuse.
  let disjoint = true;
  for (let i = from + 1; i < buf.length; i++) {
    if (buf.q0[i] < buf.q1[i - 1]) {
      disjoint = false;
      break;
    }
  }
  if (disjoint) return;

  // Cut every piece at the q endpoints that fall strictly inside it.
  const points: number[] = [];
  for (let i = from; i < buf.length; i++) points.push(buf.q0[i], buf.q1[i]);
  points.sort((x, y) => x - y);
  const cuts: number[] = [];
  for (const p of points) if (cuts.length === 0 || cuts[cuts.length - 1] !== p) cuts.push(p);
  scratch.clear();
  for (let i = from; i < buf.length; i++) {
    const qs = buf.q0[i];
    const qe = buf.q1[i];
    const ks = buf.k0[i];
    const ke = buf.k1[i];
    const t = buf.type[i];
    let c = lowerBound(cuts, qs + 1);
    let start = qs;
    while (c < cuts.length && cuts[c] < qe) {
      const m = cuts[c];
      pushCut(scratch, qs, qe, ks, ke, t, start, m, buf.tag[i]);
      start = m;
      c++;
    }
    pushCut(scratch, qs, qe, ks, ke, t, start, qe, buf.tag[i]);
  }

  const order = sortedOrder(scratch);
  buf.length = from;
  // Fuse horizontally within each row group; join each finished group onto the one above it.
  let prevGroupStart = -1;
  let groupStart = from;
  let currentQ0 = Number.NaN;
  for (const idx of order) {
    const q0 = scratch.q0[idx];
    const k0 = scratch.k0[idx];
    const k1 = scratch.k1[idx];
    const t = scratch.type[idx];
    if (q0 !== currentQ0) {
      if (!Number.isNaN(currentQ0)) {
        verticalJoin(buf, prevGroupStart, groupStart, buf.length);
        prevGroupStart = groupStart;
        groupStart = buf.length;
      }
      currentQ0 = q0;
    }
    const last = buf.length - 1;
    if (last >= groupStart && buf.k1[last] === k0 && (buf.type[last] & CAUSAL) === 0 && (t & INVCAUSAL) === 0) {
      buf.k1[last] = k1;
      buf.type[last] = (buf.type[last] & INVCAUSAL) | (t & CAUSAL);
    } else {
      buf.push(q0, scratch.q1[idx], k0, k1, t, scratch.tag[idx]);
    }
  }
  verticalJoin(buf, prevGroupStart, groupStart, buf.length);
  compactJoined(buf, from);
}

function lowerBound(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Rows [s, e) of a tight typed slice as its own tight typed slice: diagonal edges move with the rows. */
function pushCut(out: PieceBuffer, qs: number, qe: number, ks: number, ke: number, t: number, s: number, e: number, tag: number): void {
  const k0 = (t & INVCAUSAL) !== 0 ? ks + (s - qs) : ks;
  const k1 = (t & CAUSAL) !== 0 ? ke - (qe - e) : ke;
  out.push(s, e, k0, k1, t, tag);
}

function sortedOrder(b: PieceBuffer): number[] {
  const order = Array.from({ length: b.length }, (_, i) => i);
  order.sort((x, y) => b.q0[x] - b.q0[y] || b.k0[x] - b.k0[y] || b.k1[x] - b.k1[y] || x - y);
  return order;
}

/**
 * Joins each piece of the group [groupStart, groupEnd) onto a piece of the previous group
 * [prevStart, groupStart) that ends on the same row and continues the same band; a joined piece
 * is marked dead (q1 = q0) and removed later by compactJoined.
 */
function verticalJoin(buf: PieceBuffer, prevStart: number, groupStart: number, groupEnd: number): void {
  if (prevStart < 0 || prevStart >= groupStart) return;
  for (let i = groupStart; i < groupEnd; i++) {
    const t = buf.type[i];
    for (let j = prevStart; j < groupStart; j++) {
      if (buf.type[j] !== t || buf.q1[j] !== buf.q0[i] || buf.q1[j] === buf.q0[j]) continue;
      const sameLeft = (t & INVCAUSAL) !== 0 ? buf.k0[i] - buf.q0[i] === buf.k0[j] - buf.q0[j] : buf.k0[i] === buf.k0[j];
      const sameRight = (t & CAUSAL) !== 0 ? buf.k1[i] - buf.q1[i] === buf.k1[j] - buf.q1[j] : buf.k1[i] === buf.k1[j];
      if (!sameLeft || !sameRight) continue;
      // Extend the upper piece in place of the lower one, keeping the lower one's slot so later
      // groups can still join onto it.
      buf.q0[i] = buf.q0[j];
      buf.k0[i] = buf.k0[j];
      buf.q1[j] = buf.q0[j];
      break;
    }
  }
}

function compactJoined(buf: PieceBuffer, from: number): void {
  let w = from;
  for (let r = from; r < buf.length; r++) {
    if (buf.q1[r] === buf.q0[r]) continue;
    if (w !== r) {
      buf.q0[w] = buf.q0[r];
      buf.q1[w] = buf.q1[r];
      buf.k0[w] = buf.k0[r];
      buf.k1[w] = buf.k1[r];
      buf.type[w] = buf.type[r];
      buf.tag[w] = buf.tag[r];
    }
    w++;
  }
  buf.length = w;
  // Joined pieces moved up to their first row; restore (q start, k start) order.
  let sorted = true;
  for (let i = from + 1; i < buf.length; i++) {
    if (buf.q0[i] < buf.q0[i - 1] || (buf.q0[i] === buf.q0[i - 1] && buf.k0[i] < buf.k0[i - 1])) {
      sorted = false;
      break;
    }
  }
  if (sorted) return;
  const tmp = new PieceBuffer(buf.length - from + 1);
  for (let i = from; i < buf.length; i++) tmp.push(buf.q0[i], buf.q1[i], buf.k0[i], buf.k1[i], buf.type[i], buf.tag[i]);
  const order = sortedOrder(tmp);
  buf.length = from;
  for (const i of order) buf.push(tmp.q0[i], tmp.q1[i], tmp.k0[i], tmp.k1[i], tmp.type[i], tmp.tag[i]);
}

// ---------------------------------------------------------------------------------------------
// Flat range lists: [s0, e0, s1, e1, ...], half-open.

/** Growable flat list of ranges. */
export class RangeBuffer {
  data: Int32Array;
  length = 0; // number of ranges

  constructor(capacity = 16) {
    this.data = new Int32Array(2 * capacity);
  }

  push(s: number, e: number): void {
    if (2 * this.length === this.data.length) {
      const d = new Int32Array(this.data.length * 2);
      d.set(this.data);
      this.data = d;
    }
    this.data[2 * this.length] = s;
    this.data[2 * this.length + 1] = e;
    this.length++;
  }

  /** Appends, fusing with the last range when they touch or overlap (input must come sorted by start). */
  pushMerged(s: number, e: number): void {
    if (s >= e) return;
    if (this.length > 0 && s <= this.data[2 * this.length - 1]) {
      if (e > this.data[2 * this.length - 1]) this.data[2 * this.length - 1] = e;
      return;
    }
    this.push(s, e);
  }

  clear(): void {
    this.length = 0;
  }

  toArray(): Int32Array {
    return this.data.slice(0, 2 * this.length);
  }
}

/** Total length of a flat range list. */
export function rangesLength(r: Int32Array): number {
  let n = 0;
  for (let i = 0; i < r.length; i += 2) n += r[i + 1] - r[i];
  return n;
}

/** Sorts and fuses touching or overlapping ranges, dropping empty ones (tangent ranges fuse, as in the reference). */
export function mergeRanges(r: Int32Array): Int32Array {
  const n = r.length / 2;
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  let sorted = true;
  for (let i = 1; i < n; i++) {
    if (r[2 * i] < r[2 * i - 2]) {
      sorted = false;
      break;
    }
  }
  if (!sorted) idx.sort((a, b) => r[2 * a] - r[2 * b] || r[2 * a + 1] - r[2 * b + 1]);
  const out = new RangeBuffer(Math.max(1, n));
  for (let j = 0; j < n; j++) {
    const i = idx[j];
    out.pushMerged(r[2 * i], r[2 * i + 1]);
  }
  return out.toArray();
}

/** a − b for merged lists a and b; the result is merged. */
export function subtractRanges(a: Int32Array, b: Int32Array): Int32Array {
  const out = new RangeBuffer(Math.max(1, a.length / 2));
  let j = 0;
  for (let i = 0; i < a.length; i += 2) {
    let s = a[i];
    const e = a[i + 1];
    while (j < b.length && b[j + 1] <= s) j += 2;
    let jj = j;
    while (jj < b.length && b[jj] < e) {
      if (b[jj] > s) out.push(s, b[jj]);
      s = Math.max(s, b[jj + 1]);
      if (s >= e) break;
      jj += 2;
    }
    if (s < e) out.push(s, e);
  }
  return out.toArray();
}

/** a ∩ b for merged lists; the result is merged except that tangent pieces are kept apart. */
export function intersectRanges(a: Int32Array, b: Int32Array): Int32Array {
  const out = new RangeBuffer(4);
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const s = Math.max(a[i], b[j]);
    const e = Math.min(a[i + 1], b[j + 1]);
    if (s < e) out.push(s, e);
    if (a[i + 1] < b[j + 1]) i += 2;
    else j += 2;
  }
  return out.toArray();
}

/** Index of the first range of a sorted, disjoint flat list whose end is > x (ranges.length/2 if none). */
export function firstRangeEndingAfter(r: Int32Array, x: number): number {
  let lo = 0;
  let hi = r.length / 2;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (r[2 * mid + 1] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Local start of every range of a flat list packed end to end. */
export function localOffsets(r: Int32Array): Float64Array {
  const n = r.length / 2;
  const out = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) out[i + 1] = out[i] + r[2 * i + 1] - r[2 * i];
  return out;
}
