/**
 * Slice geometry as the CPU tile loops need it: a slice unpacked, and its rows' clipped key
 * intervals written into scratch arrays. The rules themselves are mask/geometry.ts'.
 */
import { rowKeyEnd, rowKeyStart, visibleRows } from '../../mask/geometry.js';
import type { SliceList } from '../../mask/slice-list.js';

/** One slice unpacked from the flat SliceList arrays. */
export interface SliceBox {
  qStart: number;
  qEnd: number;
  kStart: number;
  kEnd: number;
  code: number;
}

export function sliceBox(slices: SliceList, b: number): SliceBox {
  return {
    qStart: slices.qRanges[2 * b],
    qEnd: slices.qRanges[2 * b + 1],
    kStart: slices.kRanges[2 * b],
    kEnd: slices.kRanges[2 * b + 1],
    code: slices.maskTypes[b],
  };
}

/**
 * Writes the key interval [lo[i], hi[i]) of rows q0 + i (i < n) of the slice, clipped to its k
 * range; an empty interval comes out as hi <= lo.
 */
export function rowIntervals(box: SliceBox, q0: number, n: number, lo: Int32Array, hi: Int32Array): void {
  const { qStart, qEnd, kStart, kEnd, code } = box;
  for (let i = 0; i < n; i++) {
    const q = q0 + i;
    const s = rowKeyStart(code, qStart, kStart, q);
    const e = rowKeyEnd(code, qEnd, kEnd, q);
    lo[i] = s > kStart ? s : kStart;
    hi[i] = e < kEnd ? e : kEnd;
  }
}

/** The rows [first, last) of the slice that see at least one key (first === last when none). */
export function visibleRowSpan(box: SliceBox): [number, number] {
  return visibleRows(box.code, box.qStart, box.qEnd, box.kStart, box.kEnd);
}
