/**
 * Slice geometry as the CPU tile loops need it: each query row's clipped key interval, and the
 * span of rows of a slice that see at least one key. Built on the row-interval rules of
 * mask/mask-type.ts, so there is one definition of what each slice type covers.
 */
import { rowKeyEnd, rowKeyStart } from '../../mask/mask-type.js';
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

function rowSeesKeys(box: SliceBox, q: number): boolean {
  const s = Math.max(box.kStart, rowKeyStart(box.code, box.qStart, box.kStart, q));
  const e = Math.min(box.kEnd, rowKeyEnd(box.code, box.qEnd, box.kEnd, q));
  return e > s;
}

/**
 * The smallest row span [first, last) outside of which no row of the slice sees a key (for the
 * four types the rows that do see keys are contiguous, so this span is exactly them). Empty
 * slices give first === last.
 */
export function visibleRowSpan(box: SliceBox): [number, number] {
  if (box.kEnd <= box.kStart) return [box.qStart, box.qStart];
  let first = box.qStart;
  let last = box.qEnd;
  while (first < last && !rowSeesKeys(box, first)) first++;
  while (last > first && !rowSeesKeys(box, last - 1)) last--;
  return [first, last];
}
