/**
 * The range algebra: lists of half-open ranges as flat Int32Arrays [s0, e0, s1, e1, ...] and the
 * set operations on them (merge, difference, intersection, length, packing end to end). The
 * planners run on these directly; `AttnRanges` (ranges.ts) is the object view for people, and its
 * set operations run here too.
 */
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

  /**
   * Appends, fusing with the last range when they touch or overlap (input must come sorted by
   * start). Empty ranges are dropped unless `keepEmpty`: then one the last range does not reach
   * stays as a range of its own, and the next range fuses with it when it starts there.
   */
  pushMerged(s: number, e: number, keepEmpty = false): void {
    if (s >= e && !keepEmpty) return;
    if (this.length > 0 && s <= this.data[2 * this.length - 1]) {
      if (e > this.data[2 * this.length - 1]) this.data[2 * this.length - 1] = e;
      return;
    }
    this.push(s, e);
  }

  /**
   * Appends in order (a gather list, not a set: ranges may go backwards), fusing with the last
   * range only when this one starts exactly where it ends. Empty ranges are dropped.
   */
  pushJoined(s: number, e: number): void {
    if (s >= e) return;
    if (this.length > 0 && s === this.data[2 * this.length - 1]) this.data[2 * this.length - 1] = e;
    else this.push(s, e);
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

/**
 * Sorts and fuses touching or overlapping ranges (tangent ranges fuse, as in the reference).
 * Empty ranges are dropped, or with `keepEmpty` kept where no other range reaches them (the
 * reference's AttnRanges.merge keeps [7, 7) in [[0, 5), [7, 7), [9, 12)]).
 */
export function mergeRanges(r: Int32Array, keepEmpty = false): Int32Array {
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
    out.pushMerged(r[2 * i], r[2 * i + 1], keepEmpty);
  }
  return out.toArray();
}

/** a − b for merged lists a and b (empty ranges in either remove and add nothing); the result is merged. */
export function subtractRanges(a: Int32Array, b: Int32Array): Int32Array {
  const out = new RangeBuffer(Math.max(1, a.length / 2));
  let j = 0;
  for (let i = 0; i < a.length; i += 2) {
    let s = a[i];
    const e = a[i + 1];
    while (j < b.length && b[j + 1] <= s) j += 2;
    let jj = j;
    while (jj < b.length && b[jj] < e) {
      if (b[jj] === b[jj + 1]) {
        jj += 2;
        continue;
      }
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

/** Index of the last range of a sorted flat list whose start is <= x (-1 if none). */
export function lastRangeStartingAtOrBefore(r: Int32Array, x: number): number {
  let lo = 0;
  let hi = r.length / 2;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (r[2 * mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
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
