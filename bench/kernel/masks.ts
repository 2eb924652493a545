/**
 * The six kernel-benchmark masks (04 §3.2) as SliceLists, and their JSON form for the Python
 * baselines (bench/kernel/baselines.py), so that every method runs on exactly the same cells.
 *
 *   full                   [0, S) x [0, S), FULL
 *   causal                 [0, S) x [0, S), CAUSAL
 *   varlen full            one FULL square per document
 *   varlen causal          one CAUSAL square per document
 *   sliding-window causal  row q sees keys [q - W, q] (W + 1 keys), W = 1024 as in the reference
 *                          blog (04 §3.1), at every S
 *   varlen block-causal    per document, query block i sees keys [doc start, end of block i),
 *                          blocks of 2048 tokens (the reference script's block_size, 04 §3.1)
 *
 * Documents: sampleDocLengths(S, new Rng(seed + S)) (the reference's dataset histogram, chunk
 * ratio 1/4, 05 §5); the three varlen masks of one S share the same documents.
 */
import {
  blockCausalMask,
  causalMask,
  cuSeqlensFromLengths,
  fullMask,
  sampleDocLengths,
  sliceListArea,
  slidingWindowMask,
  varlenCausalMask,
  varlenFullMask,
  type SliceList,
} from '../../src/mask/index.js';
import { Rng } from '../../src/util/rng.js';

export const SLIDING_WINDOW = 1024;
export const BLOCK_CAUSAL_BLOCK = 2048;

export const MASK_NAMES = ['full', 'causal', 'varlen_full', 'varlen_causal', 'sw_causal', 'varlen_block_causal'] as const;
export type MaskName = (typeof MASK_NAMES)[number];

export interface BenchMask {
  name: MaskName;
  seqlen: number;
  slices: SliceList;
  /** Unmasked cells: FLOPs are 4 · area · Hq · D forward, 2.5x that backward (04 §3.3). */
  area: number;
  /** Documents (cu_seqlens) for the varlen masks, [0, S] for the others. */
  cuSeqlens: number[];
  /** Left window of the sliding-window mask (right window 0), else null. */
  window: number | null;
  /** Block size of the block-causal mask, else null. */
  block: number | null;
}

/** The documents of one packed sequence of S tokens for a seed (printed by the caller). */
export function benchDocuments(seqlen: number, seed: number): number[] {
  return cuSeqlensFromLengths(sampleDocLengths(seqlen, new Rng((seed + seqlen) >>> 0)));
}

export function buildMask(name: MaskName, seqlen: number, seed: number): BenchMask {
  const whole = [0, seqlen];
  const docs = name.startsWith('varlen') ? benchDocuments(seqlen, seed) : whole;
  let slices: SliceList;
  let window: number | null = null;
  let block: number | null = null;
  switch (name) {
    case 'full':
      slices = fullMask(seqlen);
      break;
    case 'causal':
      slices = causalMask(seqlen);
      break;
    case 'varlen_full':
      slices = varlenFullMask(docs);
      break;
    case 'varlen_causal':
      slices = varlenCausalMask(docs);
      break;
    case 'sw_causal':
      window = SLIDING_WINDOW;
      slices = slidingWindowMask(seqlen, [SLIDING_WINDOW, 0]);
      break;
    case 'varlen_block_causal':
      block = BLOCK_CAUSAL_BLOCK;
      slices = blockCausalMask(docs, BLOCK_CAUSAL_BLOCK);
      break;
  }
  return { name, seqlen, slices, area: sliceListArea(slices), cuSeqlens: docs, window, block };
}

export function buildMasks(names: readonly MaskName[], seqlens: readonly number[], seed: number): BenchMask[] {
  const out: BenchMask[] = [];
  for (const seqlen of seqlens) for (const name of names) out.push(buildMask(name, seqlen, seed));
  return out;
}

/** One mask as the Python side reads it. */
export interface MaskJson {
  name: MaskName;
  seqlen: number;
  total: number;
  q_ranges: Array<[number, number]>;
  k_ranges: Array<[number, number]>;
  /** 0 full, 1 causal, 2 inv_causal, 3 bi_causal (04 §1.3). */
  mask_types: number[];
  area: number;
  cu_seqlens: number[];
  window: number | null;
  block: number | null;
}

export interface MasksFile {
  seed: number;
  heads_q: number;
  heads_kv: number;
  head_dim: number;
  dtype: 'bfloat16';
  masks: MaskJson[];
}

function pairs(flat: Int32Array): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
  return out;
}

export function maskToJson(m: BenchMask): MaskJson {
  return {
    name: m.name,
    seqlen: m.seqlen,
    total: m.seqlen,
    q_ranges: pairs(m.slices.qRanges),
    k_ranges: pairs(m.slices.kRanges),
    mask_types: Array.from(m.slices.maskTypes),
    area: m.area,
    cu_seqlens: m.cuSeqlens,
    window: m.window,
    block: m.block,
  };
}

/** A one-line description, e.g. "varlen_causal S=16384: 23 docs (max 4096), 23 slices, area 0.0412 S²". */
export function describeMask(m: BenchMask): string {
  const docs = m.cuSeqlens.length - 1;
  let maxDoc = 0;
  for (let i = 0; i < docs; i++) maxDoc = Math.max(maxDoc, m.cuSeqlens[i + 1] - m.cuSeqlens[i]);
  const extra = m.window !== null ? `, window ${m.window}` : m.block !== null ? `, blocks of ${m.block}` : '';
  const docPart = m.name.startsWith('varlen') ? `${docs} docs (longest ${maxDoc})${extra}, ` : extra.length > 0 ? `${extra.slice(2)}, ` : '';
  return `${m.name} S=${m.seqlen}: ${docPart}${m.slices.maskTypes.length} slices, area ${(m.area / (m.seqlen * m.seqlen)).toFixed(4)} S²`;
}
