/**
 * The preset masks that `magi-attn plan`, `magi-attn simulate` and the planner page offer by name:
 * full, causal, packed documents (full or causal inside each), block-causal video and a sliding
 * window, at any length, with documents drawn from a seed. Pure and browser-safe (no Node-only
 * imports): the page builds exactly the masks the CLI builds for the same options.
 */
import { InvalidArgumentError } from '../errors.js';
import { Rng } from '../util/rng.js';
import { blockCausalMask, causalMask, cuSeqlensFromLengths, fullMask, sampleDocLengths, slidingWindowMask, varlenCausalMask, varlenFullMask } from './helpers.js';
import type { SliceList } from './slice-list.js';

export const MASK_PRESETS = ['full', 'causal', 'varlen-full', 'varlen-causal', 'block-causal', 'sliding-window'] as const;
export type MaskPreset = (typeof MASK_PRESETS)[number];

export function isMaskPreset(name: string): name is MaskPreset {
  return (MASK_PRESETS as readonly string[]).includes(name);
}

export interface MaskSpec {
  readonly mask: SliceList;
  readonly totalSeqlen: number;
  /** Document boundaries, when the mask has documents (used for the ring baseline's zig-zag). */
  readonly cuSeqlens?: number[];
  /** One line saying what the mask is. */
  readonly description: string;
}

export interface PresetOptions {
  /** Number of documents (varlen kinds; block-causal and sliding-window too, when given), cut uniformly at random; default: sampled from the dataset histogram. */
  readonly docs?: number;
  readonly seed: number;
  /** block-causal: block size (default 2048). */
  readonly blockSize?: number;
  /** sliding-window: [left, right] (-1: unbounded; default [1024, 0]). */
  readonly window?: readonly [number, number];
  /**
   * Prefix of the argument names in errors ('--' for the CLI, whose flags are --seqlen and --docs),
   * so a refusal names what the caller typed.
   */
  readonly argumentPrefix?: string;
}

/** Builds the preset mask `kind` over `seqlen` tokens. */
export function presetMask(kind: MaskPreset, seqlen: number, options: PresetOptions): MaskSpec {
  const prefix = options.argumentPrefix ?? '';
  if (!Number.isSafeInteger(seqlen) || seqlen < 1) throw new InvalidArgumentError(`${prefix}seqlen`, 'must be a positive integer', `got ${seqlen}`);
  const docs = (): number[] => {
    const rng = new Rng(options.seed);
    if (options.docs !== undefined) {
      if (!Number.isSafeInteger(options.docs) || options.docs < 1 || options.docs > seqlen) {
        throw new InvalidArgumentError(`${prefix}docs`, `must be an integer in [1, ${prefix}seqlen]`, `${options.docs} documents, ${seqlen} tokens`);
      }
      const cuts = new Set<number>();
      while (cuts.size < options.docs - 1) cuts.add(rng.int(1, seqlen - 1));
      return [0, ...[...cuts].sort((a, b) => a - b), seqlen];
    }
    return cuSeqlensFromLengths(sampleDocLengths(seqlen, rng));
  };
  const docNote = (cu: number[]): string =>
    `${cu.length - 1} documents (${options.docs === undefined ? 'lengths from the dataset histogram' : 'uniform random cuts'}, seed ${options.seed})`;
  switch (kind) {
    case 'full':
      return { mask: fullMask(seqlen), totalSeqlen: seqlen, description: `full, ${seqlen} tokens` };
    case 'causal':
      return { mask: causalMask(seqlen), totalSeqlen: seqlen, description: `causal, ${seqlen} tokens` };
    case 'varlen-full': {
      const cu = docs();
      return { mask: varlenFullMask(cu), totalSeqlen: seqlen, cuSeqlens: cu, description: `varlen-full, ${seqlen} tokens in ${docNote(cu)}` };
    }
    case 'varlen-causal': {
      const cu = docs();
      return { mask: varlenCausalMask(cu), totalSeqlen: seqlen, cuSeqlens: cu, description: `varlen-causal, ${seqlen} tokens in ${docNote(cu)}` };
    }
    case 'block-causal': {
      const block = options.blockSize ?? 2048;
      const cu = options.docs === undefined ? [0, seqlen] : docs();
      const where = cu.length > 2 ? `in ${docNote(cu)}` : 'one document';
      return { mask: blockCausalMask(cu, block), totalSeqlen: seqlen, cuSeqlens: cu, description: `block-causal (blocks of ${block}), ${seqlen} tokens, ${where}` };
    }
    case 'sliding-window': {
      const window = options.window ?? [1024, 0];
      const cu = options.docs === undefined ? [0, seqlen] : docs();
      const where = cu.length > 2 ? `in ${docNote(cu)}` : 'one document';
      return { mask: slidingWindowMask(cu, window), totalSeqlen: seqlen, cuSeqlens: cu, description: `sliding-window (${window[0]}, ${window[1]}), ${seqlen} tokens, ${where}` };
    }
    default:
      throw new InvalidArgumentError('kind', `must be one of ${MASK_PRESETS.join(', ')}`, `got ${JSON.stringify(kind)}`);
  }
}
