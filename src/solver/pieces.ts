/**
 * Tidying the typed pieces a planner cut out of a mask (mask/geometry.ts cuts them): pieces of
 * one chunk are re-cut at shared row boundaries and fused back into fewer, larger slices, so the
 * kernels get few slices without a single cell added or lost.
 */
import { CAUSAL, INVCAUSAL, SliceBuffer } from '../mask/geometry.js';

/**
 * Tidies the pieces [from, length) of one chunk, in place, into an equivalent, usually shorter
 * list sorted by (q start, k start): pieces are cut at every q endpoint of the group, pieces on the
 * same rows whose k ranges touch are fused where the shape allows (FULL|INVCAUSAL on the left with
 * FULL|CAUSAL on the right), and fragments that continue each other vertically are joined again.
 * Cells are never added or dropped, and overlapping pieces are never fused, so multiplicities survive.
 */
export function tidyPieces(buf: SliceBuffer, from: number, scratch: SliceBuffer): void {
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
function pushCut(out: SliceBuffer, qs: number, qe: number, ks: number, ke: number, t: number, s: number, e: number, tag: number): void {
  const k0 = (t & INVCAUSAL) !== 0 ? ks + (s - qs) : ks;
  const k1 = (t & CAUSAL) !== 0 ? ke - (qe - e) : ke;
  out.push(s, e, k0, k1, t, tag);
}

function sortedOrder(b: SliceBuffer): number[] {
  const order = Array.from({ length: b.length }, (_, i) => i);
  order.sort((x, y) => b.q0[x] - b.q0[y] || b.k0[x] - b.k0[y] || b.k1[x] - b.k1[y] || x - y);
  return order;
}

/**
 * Joins each piece of the group [groupStart, groupEnd) onto a piece of the previous group
 * [prevStart, groupStart) that ends on the same row and continues the same band; a joined piece
 * is marked dead (q1 = q0) and removed later by compactJoined.
 */
function verticalJoin(buf: SliceBuffer, prevStart: number, groupStart: number, groupEnd: number): void {
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

function compactJoined(buf: SliceBuffer, from: number): void {
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
  const tmp = new SliceBuffer(buf.length - from + 1);
  for (let i = from; i < buf.length; i++) tmp.push(buf.q0[i], buf.q1[i], buf.k0[i], buf.k1[i], buf.type[i], buf.tag[i]);
  const order = sortedOrder(tmp);
  buf.length = from;
  for (const i of order) buf.push(tmp.q0[i], tmp.q1[i], tmp.k0[i], tmp.k1[i], tmp.type[i], tmp.tag[i]);
}
