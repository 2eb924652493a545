/**
 * The work list of the CPU kernel: what each unit of parallel work reads and owns, computed once
 * per call from the slice list, for every kv head alike. Both engines (the TypeScript tiles and
 * the WebAssembly kernel) and every thread walk this one list; the geometry of the slices
 * enters only here (as per-row key intervals), so no engine re-derives what a slice covers.
 *
 * Query axis. It is cut at every slice's visible-row boundaries into segments, so each segment is
 * covered by a fixed set of slices, and each segment into q tiles of at most TILE_Q rows. A
 * *piece* is one slice over one q tile: the key interval [lo, hi) of each of its rows and the
 * key span of the whole piece. A forward item is one q tile: it runs one online softmax over
 * all its pieces (in slice order), so it owns its rows of out and lse outright, and a key
 * covered by two slices simply counts twice.
 *
 * Key axis. Likewise cut at every slice's key-span boundaries into k tiles of at most TILE_K
 * keys. A backward item is one k tile: it walks the pieces of the slices that cover its segment
 * and owns its rows of dK and dV; its dQ contributions go to a per-thread buffer.
 *
 * Sizes are linear in the number of tokens and slices.
 */
import type { SliceList } from '../../mask/slice-list.js';
import { sliceCount } from '../../mask/slice-list.js';
import { rowIntervals, sliceBox, visibleRowSpan } from './geometry.js';

/** Query rows per tile, unless an engine asks for other tiles (the BLAS engine: larger ones). */
export const TILE_Q = 64;
/** Keys per tile, likewise. */
export const TILE_K = 64;

export interface WorkList {
  /** The tile sizes it was cut with: q tiles of at most tileQ rows, k tiles of at most tileK keys. */
  tileQ: number;
  tileK: number;
  /** q tiles: first row and row count. */
  qTileStart: Int32Array;
  qTileRows: Int32Array;
  /** Pieces of q tile t: pieces [qTilePieces[t], qTilePieces[t + 1]), in slice order. */
  qTilePieces: Int32Array;
  /** Per piece: its q tile, its key span [spanLo, spanHi) and where its rows' intervals start in lo/hi. */
  pieceTile: Int32Array;
  pieceSpanLo: Int32Array;
  pieceSpanHi: Int32Array;
  pieceRowOff: Int32Array;
  /** Per piece row: its key interval [lo, hi) (hi <= lo: the row sees nothing in this slice). */
  lo: Int32Array;
  hi: Int32Array;
  /** k tiles: first key and key count. */
  kTileStart: Int32Array;
  kTileCols: Int32Array;
  /** Pieces that k tile t may meet: piece ids kPieces[kTilePieces[t] .. kTilePieces[t + 1]) (their spans still need checking). */
  kTilePieces: Int32Array;
  kPieces: Int32Array;
  /** Tile-product cells of each forward and backward item (rows × keys it multiplies), for scheduling. */
  qTileCost: Float64Array;
  kTileCost: Float64Array;
}

/** Sorted distinct values. */
function distinct(values: number[]): number[] {
  values.sort((a, b) => a - b);
  return values.filter((x, i) => i === 0 || x !== values[i - 1]);
}

/** Cuts every covered segment between consecutive cuts into tiles of at most `size`; returns [start, length] lists and each tile's segment. */
function tileSegments(cuts: number[], covered: (s: number) => boolean, size: number): { start: number[]; len: number[]; segment: number[] } {
  const start: number[] = [];
  const len: number[] = [];
  const segment: number[] = [];
  for (let s = 0; s + 1 < cuts.length; s++) {
    if (!covered(s)) continue;
    for (let x = cuts[s]; x < cuts[s + 1]; x += size) {
      start.push(x);
      len.push(Math.min(size, cuts[s + 1] - x));
      segment.push(s);
    }
  }
  return { start, len, segment };
}

/** Index of the segment that begins at `x` (x must be a cut). */
function segmentAt(cuts: number[], x: number): number {
  let lo = 0;
  let hi = cuts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cuts[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function buildWorkList(slices: SliceList, tokensK: number, tileQ = TILE_Q, tileK = TILE_K): WorkList {
  const count = sliceCount(slices);
  // Visible rows of each slice, and the q cuts.
  const rowFirst: number[] = [];
  const rowLast: number[] = [];
  const qCutList: number[] = [];
  for (let b = 0; b < count; b++) {
    const [f, l] = visibleRowSpan(sliceBox(slices, b));
    rowFirst.push(f);
    rowLast.push(l);
    if (l > f) qCutList.push(f, l);
  }
  const qCuts = distinct(qCutList);
  // Which slices cover each q segment, in slice order.
  const segSlices: number[][] = qCuts.map(() => []);
  for (let b = 0; b < count; b++) {
    if (rowLast[b] <= rowFirst[b]) continue;
    for (let s = segmentAt(qCuts, rowFirst[b]); qCuts[s] < rowLast[b]; s++) segSlices[s].push(b);
  }
  const qt = tileSegments(qCuts, (s) => segSlices[s].length > 0, tileQ);

  // Pieces, tile by tile; rows' intervals appended as we go.
  const pieceTile: number[] = [];
  const pieceSpanLo: number[] = [];
  const pieceSpanHi: number[] = [];
  const pieceRowOff: number[] = [];
  const pieceSlice: number[] = [];
  const qTilePieces = new Int32Array(qt.start.length + 1);
  const qTileCost = new Float64Array(qt.start.length);
  let rowsTotal = 0;
  for (let t = 0; t < qt.start.length; t++) rowsTotal += qt.len[t] * segSlices[qt.segment[t]].length;
  const lo = new Int32Array(rowsTotal);
  const hi = new Int32Array(rowsTotal);
  let rowOff = 0;
  for (let t = 0; t < qt.start.length; t++) {
    qTilePieces[t] = pieceTile.length;
    const nr = qt.len[t];
    for (const b of segSlices[qt.segment[t]]) {
      const l = lo.subarray(rowOff, rowOff + nr);
      const h = hi.subarray(rowOff, rowOff + nr);
      rowIntervals(sliceBox(slices, b), qt.start[t], nr, l, h);
      let spanLo = tokensK;
      let spanHi = 0;
      for (let i = 0; i < nr; i++) {
        if (h[i] <= l[i]) continue;
        if (l[i] < spanLo) spanLo = l[i];
        if (h[i] > spanHi) spanHi = h[i];
      }
      if (spanHi <= spanLo) continue;
      pieceTile.push(t);
      pieceSpanLo.push(spanLo);
      pieceSpanHi.push(spanHi);
      pieceRowOff.push(rowOff);
      pieceSlice.push(b);
      qTileCost[t] += nr * (spanHi - spanLo);
      rowOff += nr;
    }
  }
  qTilePieces[qt.start.length] = pieceTile.length;

  // k cuts from each slice's key span (the union of its pieces' spans).
  const kLo = new Array<number>(count).fill(tokensK);
  const kHi = new Array<number>(count).fill(0);
  const piecesOf: number[][] = Array.from({ length: count }, () => []);
  for (let p = 0; p < pieceTile.length; p++) {
    const b = pieceSlice[p];
    piecesOf[b].push(p);
    if (pieceSpanLo[p] < kLo[b]) kLo[b] = pieceSpanLo[p];
    if (pieceSpanHi[p] > kHi[b]) kHi[b] = pieceSpanHi[p];
  }
  const kCutList: number[] = [];
  for (let b = 0; b < count; b++) if (kHi[b] > kLo[b]) kCutList.push(kLo[b], kHi[b]);
  const kCuts = distinct(kCutList);
  const segKSlices: number[][] = kCuts.map(() => []);
  for (let b = 0; b < count; b++) {
    if (kHi[b] <= kLo[b]) continue;
    for (let s = segmentAt(kCuts, kLo[b]); kCuts[s] < kHi[b]; s++) segKSlices[s].push(b);
  }
  const kt = tileSegments(kCuts, (s) => segKSlices[s].length > 0, tileK);
  const kTilePieces = new Int32Array(kt.start.length + 1);
  const kTileCost = new Float64Array(kt.start.length);
  const kPieces: number[] = [];
  for (let t = 0; t < kt.start.length; t++) {
    kTilePieces[t] = kPieces.length;
    const k0 = kt.start[t];
    const k1 = k0 + kt.len[t];
    for (const b of segKSlices[kt.segment[t]]) {
      for (const p of piecesOf[b]) {
        if (pieceSpanHi[p] <= k0 || pieceSpanLo[p] >= k1) continue;
        kPieces.push(p);
        kTileCost[t] += qt.len[pieceTile[p]] * kt.len[t];
      }
    }
  }
  kTilePieces[kt.start.length] = kPieces.length;

  return {
    tileQ,
    tileK,
    qTileStart: Int32Array.from(qt.start),
    qTileRows: Int32Array.from(qt.len),
    qTilePieces,
    pieceTile: Int32Array.from(pieceTile),
    pieceSpanLo: Int32Array.from(pieceSpanLo),
    pieceSpanHi: Int32Array.from(pieceSpanHi),
    pieceRowOff: Int32Array.from(pieceRowOff),
    lo,
    hi,
    kTileStart: Int32Array.from(kt.start),
    kTileCols: Int32Array.from(kt.len),
    kTilePieces,
    kPieces: Int32Array.from(kPieces),
    qTileCost,
    kTileCost,
  };
}

/**
 * Deals items to `threads` lists by longest-processing-time first: items by decreasing cost (ties
 * by index), each to the list with the least total so far (ties to the lowest thread). A pure
 * function of the costs and the thread count, so a run with the same thread count repeats the
 * same assignment and the same per-thread order.
 */
export function assignStatic(cost: Float64Array, threads: number): number[][] {
  const order = Array.from(cost.keys()).sort((a, b) => cost[b] - cost[a] || a - b);
  const lists: number[][] = Array.from({ length: threads }, () => []);
  const load = new Float64Array(threads);
  for (const item of order) {
    let best = 0;
    for (let t = 1; t < threads; t++) if (load[t] < load[best]) best = t;
    lists[best].push(item);
    load[best] += cost[item];
  }
  for (const l of lists) l.sort((a, b) => a - b);
  return lists;
}

/** Items by decreasing cost (ties by index): the order threads take forward items in, so the longest start first. */
export function costOrder(cost: Float64Array): Int32Array {
  return Int32Array.from(Array.from(cost.keys()).sort((a, b) => cost[b] - cost[a] || a - b));
}
