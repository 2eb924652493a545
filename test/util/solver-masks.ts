/**
 * Test helpers for the solver tests: random masks of every family the planners must handle (the
 * dense oracle they are checked against is src/solver/dense-oracle.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { blockCausalMask, slidingWindowMask, varlenCausalMask, varlenFullMask } from '../../src/mask/helpers.js';
import { makeSliceList, type SliceList } from '../../src/mask/slice-list.js';
import type { Rng } from '../../src/util/rng.js';
import { repoFile } from './paths.js';

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

/**
 * The reference benchmark's packed-document fixture (test/fixtures/varlen_packs_seed42.json, a copy of shared/data/): doc
 * lengths per pack, keyed by total length. Looked up next to the checkout or inside it.
 */
export function readVarlenPacks(): Record<string, { packs: number[][] }> {
  const candidates = [repoFile('test/fixtures/varlen_packs_seed42.json')];
  const found = candidates.find((u) => existsSync(u));
  if (found === undefined) throw new Error(`varlen_packs_seed42.json not found (looked at ${candidates.map((u) => u.pathname).join(', ')})`);
  return JSON.parse(readFileSync(found, 'utf8')) as Record<string, { packs: number[][] }>;
}
