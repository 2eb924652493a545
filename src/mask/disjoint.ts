/**
 * Disjointness of a slice list: do two slices cover a common (q, k) cell? Such a cell would count
 * twice in the softmax, so masks meant to be exact are checked here, without materialising them.
 *
 * Every slice sees, in query row q, one key interval whose ends are linear in q with slope 0 or 1
 * (geometry.ts). For two slices on their shared rows, max(starts) - min(ends) is then convex in q,
 * and it is negative somewhere exactly when it is negative at a shared row's end or where two
 * start lines or two end lines cross (integer rows, since slopes differ by 1). So each pair costs
 * O(1); a sweep over slices sorted by query start only pairs slices whose rows overlap.
 */
import { MaskError } from '../errors.js';
import { bandHi, bandLo, CAUSAL, INVCAUSAL } from './geometry.js';
import { sliceAt, type SliceList } from './slice-list.js';

export interface SharedCell {
  /** The two slice indices, a < b. */
  a: number;
  b: number;
  /** A cell both cover. */
  q: number;
  k: number;
}

/**
 * A pair of slices covering a common cell, with one such cell; null when the slices are disjoint.
 * The pair reported is the first found sweeping the slices by query start (ties by index).
 * `stats.pairsTested` (when given) counts the pairs compared.
 */
export function findSharedCell(slices: SliceList, stats?: { pairsTested: number }): SharedCell | null {
  const n = slices.maskTypes.length;
  const { qRanges, kRanges } = slices;
  const order: number[] = [];
  for (let b = 0; b < n; b++) {
    // Slices with an empty side cover nothing and never conflict.
    if (qRanges[2 * b] < qRanges[2 * b + 1] && kRanges[2 * b] < kRanges[2 * b + 1]) order.push(b);
  }
  order.sort((x, y) => qRanges[2 * x] - qRanges[2 * y] || x - y);
  const active: number[] = [];
  for (const b of order) {
    const qStart = qRanges[2 * b];
    let kept = 0;
    for (const a of active) if (qRanges[2 * a + 1] > qStart) active[kept++] = a;
    active.length = kept;
    for (const a of active) {
      if (stats !== undefined) stats.pairsTested++;
      const cell = sharedCellOfPair(slices, a, b);
      if (cell !== null) return { a: Math.min(a, b), b: Math.max(a, b), q: cell[0], k: cell[1] };
    }
    active.push(b);
  }
  return null;
}

/** Throws a MaskError naming two slices that share a cell and the cell, if any. */
export function assertDisjointSlices(slices: SliceList, argument = 'slices'): void {
  const shared = findSharedCell(slices);
  if (shared === null) return;
  const describe = (b: number): string => {
    const s = sliceAt(slices, b);
    return `slice ${b} [${s.qRange[0]}, ${s.qRange[1]}) x [${s.kRange[0]}, ${s.kRange[1]}) ${s.type}`;
  };
  throw new MaskError(
    argument,
    'no two slices may cover the same (q, k) cell (it would count twice in the softmax)',
    `${describe(shared.a)} and ${describe(shared.b)} both cover q = ${shared.q}, k = ${shared.k}`,
  );
}

/** A cell covered by both slices, as [q, k], or null. */
function sharedCellOfPair(slices: SliceList, a: number, b: number): [number, number] | null {
  const { qRanges, kRanges, maskTypes: types } = slices;
  const qsA = qRanges[2 * a];
  const qeA = qRanges[2 * a + 1];
  const qsB = qRanges[2 * b];
  const qeB = qRanges[2 * b + 1];
  const ksA = kRanges[2 * a];
  const keA = kRanges[2 * a + 1];
  const ksB = kRanges[2 * b];
  const keB = kRanges[2 * b + 1];
  const first = Math.max(qsA, qsB);
  const last = Math.min(qeA, qeB) - 1;
  if (first > last || Math.max(ksA, ksB) >= Math.min(keA, keB)) return null;

  // Row q's keys in a slice are [start(q), end(q)), each end c + slope * q: a diagonal edge
  // (geometry.ts' band bounds) has slope 1, a straight one slope 0. No clipping to the k range is
  // needed: the other end already enforces it on the shared rows.
  const line = (x: number): [number, number, number, number] => {
    const t = types[x];
    const qs = qRanges[2 * x];
    const qe = qRanges[2 * x + 1];
    const ks = kRanges[2 * x];
    const ke = kRanges[2 * x + 1];
    const slopeStart = (t & INVCAUSAL) !== 0 ? 1 : 0;
    const slopeEnd = (t & CAUSAL) !== 0 ? 1 : 0;
    return [slopeStart ? bandLo(t, qs, ks) : ks, slopeStart, slopeEnd ? bandHi(t, qe, ke) + 1 : ke, slopeEnd];
  };
  const [cStartA, slopeStartA, cEndA, slopeEndA] = line(a);
  const [cStartB, slopeStartB, cEndB, slopeEndB] = line(b);

  const test = (q: number): [number, number] | null => {
    const start = Math.max(cStartA + slopeStartA * q, cStartB + slopeStartB * q);
    const end = Math.min(cEndA + slopeEndA * q, cEndB + slopeEndB * q);
    return start < end ? [q, start] : null;
  };
  const atCrossing = (c0: number, s0: number, c1: number, s1: number): [number, number] | null => {
    if (s0 === s1) return null;
    // c0 + s0 q = c1 + s1 q  =>  q = (c1 - c0) / (s0 - s1), an integer since |s0 - s1| = 1.
    const q = (c1 - c0) / (s0 - s1);
    return q > first && q < last ? test(q) : null;
  };
  return (
    test(first) ??
    test(last) ??
    atCrossing(cStartA, slopeStartA, cStartB, slopeStartB) ??
    atCrossing(cEndA, slopeEndA, cEndB, slopeEndB)
  );
}
