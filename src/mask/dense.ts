/**
 * Dense views of a slice list, for tests, dense baselines and pictures of small masks. Nothing on
 * a hot path should call these: they cost Tq x Tk bytes.
 */
import { MaskError } from '../errors.js';
import { rowKeyEnd, rowKeyStart } from './geometry.js';
import { checkSliceBounds, type SliceList } from './slice-list.js';

/** Largest mask these helpers will materialise (4 GiB of counts is not a test any more). */
const MAX_DENSE_CELLS = 2 ** 32 - 1;

/**
 * Row-major Tq x Tk counts: cell (q, k) holds how many slices cover it (0 = masked). Counts stop
 * at 255. Built from each slice's row key intervals, so the cost is rows + area, not per-cell
 * predicates.
 */
export function denseMaskCounts(slices: SliceList, totalQ: number, totalK: number): Uint8Array {
  checkTotal(totalQ, 'totalQ');
  checkTotal(totalK, 'totalK');
  if (totalQ * totalK > MAX_DENSE_CELLS) {
    throw new MaskError('totalQ', `a dense mask holds at most ${MAX_DENSE_CELLS} cells`, `${totalQ} x ${totalK}`);
  }
  checkSliceBounds(slices, totalQ, totalK);
  const counts = new Uint8Array(totalQ * totalK);
  for (let b = 0; b < slices.maskTypes.length; b++) {
    const code = slices.maskTypes[b];
    const qs = slices.qRanges[2 * b];
    const qe = slices.qRanges[2 * b + 1];
    const ks = slices.kRanges[2 * b];
    const ke = slices.kRanges[2 * b + 1];
    for (let q = qs; q < qe; q++) {
      const start = Math.max(ks, rowKeyStart(code, qs, ks, q));
      const end = Math.min(ke, rowKeyEnd(code, qe, ke, q));
      const row = q * totalK;
      for (let k = start; k < end; k++) {
        if (counts[row + k] < 255) counts[row + k]++;
      }
    }
  }
  return counts;
}

/**
 * A picture of the mask, one line per query row: `.` masked, `*` seen once, `2`..`9` seen that
 * many times (a mistake in a mask meant to be disjoint), `#` ten times or more.
 */
export function renderMask(slices: SliceList, totalQ: number, totalK: number): string {
  const counts = denseMaskCounts(slices, totalQ, totalK);
  const lines: string[] = [];
  for (let q = 0; q < totalQ; q++) {
    let line = '';
    for (let k = 0; k < totalK; k++) {
      const c = counts[q * totalK + k];
      line += c === 0 ? '.' : c === 1 ? '*' : c < 10 ? String(c) : '#';
    }
    lines.push(line);
  }
  return lines.join('\n');
}

function checkTotal(value: number, argument: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new MaskError(argument, 'must be an integer >= 0', `got ${value}`);
}
