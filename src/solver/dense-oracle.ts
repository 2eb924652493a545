/**
 * A dense, cell-by-cell oracle for plans at small sizes: it paints what a mask covers and what a
 * plan computes (every cell of every local slice, mapped to global ids through the partitions and
 * the buffers) straight from the per-cell rule, using none of the band geometry, range algebra or
 * piece tidying that builds plans. checkPlan runs it below DENSE_ORACLE_MAX_TOKENS; tests use it
 * as their oracle.
 */
import { isCellUnmasked } from '../mask/geometry.js';
import type { SliceList } from '../mask/slice-list.js';
import type { DistAttnPlan } from './plan.js';

/** Largest unpadded sequence checkPlan compares densely (n² cells of 2 bytes). */
export const DENSE_ORACLE_MAX_TOKENS = 2048;

/** Dense cell counts of a mask (row-major, n x n), straight from the cell rule. */
export function denseCounts(mask: SliceList, n: number): Uint16Array {
  const out = new Uint16Array(n * n);
  for (let b = 0; b < mask.maskTypes.length; b++) {
    const type = mask.maskTypes[b];
    const [qs, qe, ks, ke] = [mask.qRanges[2 * b], mask.qRanges[2 * b + 1], mask.kRanges[2 * b], mask.kRanges[2 * b + 1]];
    for (let q = qs; q < qe; q++) for (let k = ks; k < ke; k++) if (isCellUnmasked(type, q - qs, k - ks, qe - qs, ke - ks)) out[q * n + k]++;
  }
  return out;
}

function localToGlobal(ranges: Int32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < ranges.length; i += 2) for (let g = ranges[i]; g < ranges[i + 1]; g++) out.push(g);
  return out;
}

/**
 * Dense cell counts of what a plan computes (over the unpadded n x n square), by enumerating every
 * cell of every local slice and mapping its local row and column to global token ids through the
 * partitions and buffers. Cells outside [0, n) count in `outside`.
 */
export function densePlanCounts(plan: DistAttnPlan, n: number): { counts: Uint16Array; outside: number } {
  const counts = new Uint16Array(n * n);
  let outside = 0;
  const cs = plan.dispatch.chunkSize;
  for (const rp of plan.perRank) {
    const rowIds: number[] = [];
    for (const c of plan.dispatch.partitions[rp.rank]) for (let g = c * cs; g < Math.min((c + 1) * cs, plan.dispatch.paddedSeqlen); g++) rowIds.push(g);
    const paint = (sl: SliceList, colIds: number[]): void => {
      for (let b = 0; b < sl.maskTypes.length; b++) {
        const type = sl.maskTypes[b];
        const [qs, qe, ks, ke] = [sl.qRanges[2 * b], sl.qRanges[2 * b + 1], sl.kRanges[2 * b], sl.kRanges[2 * b + 1]];
        for (let q = qs; q < qe; q++) {
          for (let k = ks; k < ke; k++) {
            if (!isCellUnmasked(type, q - qs, k - ks, qe - qs, ke - ks)) continue;
            const gq = rowIds[q];
            const gk = colIds[k];
            if (gq === undefined || gk === undefined || gq >= n || gk >= n) outside++;
            else counts[gq * n + gk]++;
          }
        }
      }
    };
    paint(rp.hostSlices, localToGlobal(rp.hostGlobalRanges));
    for (const st of rp.stages) paint(st.remoteSlices, localToGlobal(st.stageBufferGlobalKRanges));
  }
  return { counts, outside };
}
