/**
 * Test helpers for the solver tests: random masks of every family the planners must handle, and a
 * dense, cell-by-cell oracle that maps a plan back to global coordinates without any of the
 * solver's geometry code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isCellUnmasked, maskTypeFromInt } from '../../src/mask/mask-type.js';
import { blockCausalMask, slidingWindowMask, varlenCausalMask, varlenFullMask } from '../../src/mask/helpers.js';
import { makeSliceList, type SliceList } from '../../src/mask/slice-list.js';
import type { DistAttnPlan } from '../../src/solver/plan.js';
import type { Rng } from '../../src/util/rng.js';

/** cu_seqlens of `docs` documents (at least 1 token each) over n tokens. */
export function randomCuSeqlens(rng: Rng, n: number, docs: number): number[] {
  const cuts = new Set<number>();
  const want = Math.min(docs, n) - 1;
  while (cuts.size < want) cuts.add(rng.int(1, n - 1));
  return [0, ...[...cuts].sort((a, b) => a - b), n];
}

export type MaskFamily = 'varlen-full' | 'varlen-causal' | 'block-causal' | 'sliding-window' | 'overlapping' | 'random-slices';
export const MASK_FAMILIES: readonly MaskFamily[] = ['varlen-full', 'varlen-causal', 'block-causal', 'sliding-window', 'overlapping', 'random-slices'];

/**
 * A random mask of a family over n tokens:
 *   overlapping    several slices per query range against disjoint key ranges (all four types),
 *                  so q ranges overlap but cells do not;
 *   random-slices  independent slices of random types and ranges: q ranges and even cells may
 *                  overlap (cells then count several times, which the plan must reproduce).
 */
export function randomMask(rng: Rng, family: MaskFamily, n: number): SliceList {
  switch (family) {
    case 'varlen-full':
      return varlenFullMask(randomCuSeqlens(rng, n, rng.int(1, 8)));
    case 'varlen-causal':
      return varlenCausalMask(randomCuSeqlens(rng, n, rng.int(1, 8)));
    case 'block-causal':
      return blockCausalMask(randomCuSeqlens(rng, n, rng.int(1, 4)), rng.int(1, Math.max(1, n >> 2)));
    case 'sliding-window': {
      const w = (): number => (rng.next() < 0.2 ? -1 : rng.int(0, Math.max(1, n >> 2)));
      return slidingWindowMask(randomCuSeqlens(rng, n, rng.int(1, 4)), [w(), w()]);
    }
    case 'overlapping': {
      const q: Array<[number, number]> = [];
      const k: Array<[number, number]> = [];
      const t: number[] = [];
      const groups = rng.int(1, 4);
      for (let g = 0; g < groups; g++) {
        const qs = rng.int(0, n - 1);
        const qe = rng.int(qs + 1, n);
        // Disjoint key ranges for this query range.
        const cuts = [...new Set(Array.from({ length: rng.int(2, 6) }, () => rng.int(0, n)))].sort((a, b) => a - b);
        for (let i = 0; i + 1 < cuts.length; i++) {
          if (rng.next() < 0.3) continue;
          q.push([qs, qe]);
          k.push([cuts[i], cuts[i + 1]]);
          t.push(rng.int(0, 3));
        }
      }
      if (q.length === 0) {
        q.push([0, n]);
        k.push([0, n]);
        t.push(1);
      }
      return makeSliceList(q, k, t);
    }
    case 'random-slices': {
      const count = rng.int(1, 6);
      const q: Array<[number, number]> = [];
      const k: Array<[number, number]> = [];
      const t: number[] = [];
      for (let i = 0; i < count; i++) {
        const qs = rng.int(0, n - 1);
        const ks = rng.int(0, n - 1);
        q.push([qs, rng.int(qs + 1, n)]);
        k.push([ks, rng.int(ks + 1, n)]);
        t.push(rng.int(0, 3));
      }
      // At least one slice with cells.
      q.push([0, 1]);
      k.push([0, 1]);
      t.push(0);
      return makeSliceList(q, k, t);
    }
  }
}

/** Dense cell counts of a mask (row-major, n x n), straight from the cell rule. */
export function denseCounts(mask: SliceList, n: number): Uint16Array {
  const out = new Uint16Array(n * n);
  for (let b = 0; b < mask.maskTypes.length; b++) {
    const type = maskTypeFromInt(mask.maskTypes[b]);
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
    for (const c of plan.dispatch.partitions[rp.rank]) for (let t = 0; t < cs; t++) rowIds.push(c * cs + t);
    const paint = (sl: SliceList, colIds: number[]): void => {
      for (let b = 0; b < sl.maskTypes.length; b++) {
        const type = maskTypeFromInt(sl.maskTypes[b]);
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

/**
 * The reference benchmark's packed-document fixture (test/fixtures/varlen_packs_seed42.json, a copy of shared/data/): doc
 * lengths per pack, keyed by total length. Looked up next to the checkout or inside it.
 */
export function readVarlenPacks(): Record<string, { packs: number[][] }> {
  const candidates = ['../fixtures/varlen_packs_seed42.json'].map((p) => new URL(p, import.meta.url));
  const found = candidates.find((u) => existsSync(u));
  if (found === undefined) throw new Error(`varlen_packs_seed42.json not found (looked at ${candidates.map((u) => u.pathname).join(', ')})`);
  return JSON.parse(readFileSync(found, 'utf8')) as Record<string, { packs: number[][] }>;
}
