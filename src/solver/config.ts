/**
 * Solver configuration: what a caller may choose (DispatchConfig, OverlapConfig, mirroring the
 * reference's dataclasses) and the validated, fully resolved forms the solvers run on. Every
 * check names the offending field, so `cp 0` or `chunkSize 0` fails before any work starts.
 */
import { InvalidArgumentError } from '../errors.js';
import { requireKnownOptions } from '../util/options.js';

/** Chunk-to-rank assignment algorithms (reference names in the comments). */
export type DispatchAlg =
  /** MinHeapDispatchAlg: longest processing time first, every rank capped at n/P chunks (the default). */
  | { readonly type: 'min-heap' }
  /** SequentialDispatchAlg: rank r takes the r-th contiguous block of chunks (a ring-like layout). */
  | { readonly type: 'sequential' }
  /** SortedSequentialSelectAlg: the largest mask slices first, each slice's chunks kept on one rank where possible. */
  | { readonly type: 'sorted-sequential'; readonly allocationRatio?: number }
  /** ToppHeapDispatchAlg: LPT where each chunk picks, among the top-p least loaded ranks, the one whose keys overlap its own most. */
  | { readonly type: 'topp-heap'; readonly topP?: number }
  /**
   * Ours: balances area over runs of consecutive chunks, using the longest runs that still reach
   * `maxImbalance` (max/mean area), so each rank holds few contiguous pieces and fetches fewer k/v ranges.
   */
  | { readonly type: 'contiguous-runs'; readonly maxImbalance?: number };

export type DispatchAlgType = DispatchAlg['type'];
export const DISPATCH_ALG_TYPES: readonly DispatchAlgType[] = ['min-heap', 'sequential', 'sorted-sequential', 'topp-heap', 'contiguous-runs'];

export interface DispatchConfig {
  /** Upper bound on the chunk size; the effective size is min(this, ceil(N / (minChunksPerRank * cp))). */
  readonly chunkSize?: number;
  readonly alg?: DispatchAlg;
  /** MAGI_ATTENTION_MIN_CHUNKS_PER_RANK in the reference; default 8. */
  readonly minChunksPerRank?: number;
  /**
   * No padding: the sequence is cut into ceil(N / chunkSize) chunks, the last one shorter, and
   * ranks may hold different numbers of tokens (one chunk more or less, and the short chunk).
   * Default false: the sequence is padded to a multiple of chunkSize × cp, every rank equal.
   */
  readonly unevenShard?: boolean;
}

export type OverlapMode = 'static' | 'dynamic';
export type OverlapAlg = 'uniform' | 'greedy';

export interface OverlapConfig {
  /**
   * static: every rank uses `degree`; dynamic: the overlap solver's cost model picks it (up to
   * dynamicMaxDegree). This is the reference's AttnOverlapMode.DYNAMIC, not its "dynamic attention
   * solver" (qo-comm), which this project does not implement.
   */
  readonly mode?: OverlapMode;
  /** Number of remote stages. 0 means no overlap (one remote stage, fetched before any compute). Default 1. */
  readonly degree?: number;
  readonly dynamicMaxDegree?: number;
  /** Smallest number of remote k/v tokens in one overlap chunk (the unit stages are made of). Default 512. */
  readonly minChunkSize?: number;
  /** Most overlap chunks per rank; the chunk size grows past minChunkSize to respect it. Default 64. */
  readonly maxNumChunks?: number;
  readonly alg?: OverlapAlg;
  /** Cost of one unmasked cell of attention, in the unit of the cost model. Default 1. */
  readonly calcCostFactor?: number;
  /** Cost of receiving one k/v token, in the same unit. Default 1. */
  readonly commCostFactor?: number;
}

export interface ResolvedDispatchConfig {
  readonly chunkSize: number | null;
  readonly alg: ResolvedDispatchAlg;
  readonly minChunksPerRank: number;
  readonly unevenShard: boolean;
}

export type ResolvedDispatchAlg =
  | { readonly type: 'min-heap' }
  | { readonly type: 'sequential' }
  | { readonly type: 'sorted-sequential'; readonly allocationRatio: number }
  | { readonly type: 'topp-heap'; readonly topP: number }
  | { readonly type: 'contiguous-runs'; readonly maxImbalance: number };

export interface ResolvedOverlapConfig {
  readonly mode: OverlapMode;
  /** Static degree; null in dynamic mode. */
  readonly degree: number | null;
  readonly dynamicMaxDegree: number;
  readonly minChunkSize: number;
  readonly maxNumChunks: number;
  readonly alg: OverlapAlg;
  readonly calcCostFactor: number;
  readonly commCostFactor: number;
  /** The caller asked for degree 0: one remote stage that the runtime may fuse with the host stage. */
  readonly noOverlap: boolean;
}

function positiveInt(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(argument, 'must be a positive integer', `got ${String(value)}`);
  }
  return value;
}

function positiveNumber(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(argument, 'must be a finite number > 0', `got ${String(value)}`);
  }
  return value;
}

export function resolveDispatchAlg(alg: DispatchAlg | undefined, argument = 'dispatchConfig.alg'): ResolvedDispatchAlg {
  if (alg === undefined) return { type: 'min-heap' };
  if (alg === null || typeof alg !== 'object') {
    throw new InvalidArgumentError(argument, `must be an object { type: ${DISPATCH_ALG_TYPES.map((t) => `'${t}'`).join(' | ')}, ... }`, `got ${JSON.stringify(alg)}`);
  }
  switch (alg.type) {
    case 'min-heap':
    case 'sequential':
      return { type: alg.type };
    case 'sorted-sequential': {
      const r = alg.allocationRatio ?? 1;
      if (!(typeof r === 'number' && r > 0 && r <= 1)) {
        throw new InvalidArgumentError(`${argument}.allocationRatio`, 'must be in (0, 1]', `got ${String(r)}`);
      }
      return { type: alg.type, allocationRatio: r };
    }
    case 'topp-heap': {
      const p = alg.topP ?? 0;
      if (!(typeof p === 'number' && p >= 0 && p <= 1)) throw new InvalidArgumentError(`${argument}.topP`, 'must be in [0, 1]', `got ${String(p)}`);
      return { type: alg.type, topP: p };
    }
    case 'contiguous-runs': {
      const m = alg.maxImbalance ?? 1.02;
      if (!(typeof m === 'number' && m >= 1 && Number.isFinite(m))) {
        throw new InvalidArgumentError(`${argument}.maxImbalance`, 'must be a finite number >= 1', `got ${String(m)}`);
      }
      return { type: alg.type, maxImbalance: m };
    }
    default:
      throw new InvalidArgumentError(`${argument}.type`, `must be one of ${DISPATCH_ALG_TYPES.join(', ')}`, `got ${JSON.stringify((alg as { type?: unknown }).type)}`);
  }
}

export function resolveDispatchConfig(config: DispatchConfig = {}): ResolvedDispatchConfig {
  requireKnownOptions(config, 'dispatchConfig', ['chunkSize', 'alg', 'minChunksPerRank', 'unevenShard']);
  const chunkSize = config.chunkSize === undefined || config.chunkSize === null ? null : positiveInt(config.chunkSize, 'dispatchConfig.chunkSize');
  const uneven = config.unevenShard ?? false;
  if (typeof uneven !== 'boolean') throw new InvalidArgumentError('dispatchConfig.unevenShard', 'must be a boolean', `got ${JSON.stringify(uneven)}`);
  return {
    chunkSize,
    alg: resolveDispatchAlg(config.alg),
    minChunksPerRank: config.minChunksPerRank === undefined ? 8 : positiveInt(config.minChunksPerRank, 'dispatchConfig.minChunksPerRank'),
    unevenShard: uneven,
  };
}

/**
 * Validates an OverlapConfig and normalises it as the reference does: degree <= 1 forces static
 * mode, and degree 0 becomes one stage of one chunk with `noOverlap` set.
 */
export function resolveOverlapConfig(config: OverlapConfig = {}): ResolvedOverlapConfig {
  requireKnownOptions(config, 'overlapConfig', ['mode', 'degree', 'dynamicMaxDegree', 'minChunkSize', 'maxNumChunks', 'alg', 'calcCostFactor', 'commCostFactor']);
  let mode: OverlapMode = config.mode ?? 'static';
  if (mode !== 'static' && mode !== 'dynamic') throw new InvalidArgumentError('overlapConfig.mode', "must be 'static' or 'dynamic'", `got ${JSON.stringify(mode)}`);
  const alg = config.alg ?? 'uniform';
  if (alg !== 'uniform' && alg !== 'greedy') throw new InvalidArgumentError('overlapConfig.alg', "must be 'uniform' or 'greedy'", `got ${JSON.stringify(alg)}`);
  const minChunkSize = config.minChunkSize === undefined ? 512 : positiveInt(config.minChunkSize, 'overlapConfig.minChunkSize');
  let maxNumChunks = config.maxNumChunks === undefined ? 64 : positiveInt(config.maxNumChunks, 'overlapConfig.maxNumChunks');
  const dynamicMaxDegree = config.dynamicMaxDegree === undefined ? 8 : positiveInt(config.dynamicMaxDegree, 'overlapConfig.dynamicMaxDegree');
  const calcCostFactor = config.calcCostFactor === undefined ? 1 : positiveNumber(config.calcCostFactor, 'overlapConfig.calcCostFactor');
  const commCostFactor = config.commCostFactor === undefined ? 1 : positiveNumber(config.commCostFactor, 'overlapConfig.commCostFactor');
  let degree: number | null = null;
  let noOverlap = false;
  if (mode === 'dynamic') {
    if (config.degree !== undefined) {
      throw new InvalidArgumentError('overlapConfig.degree', "must be left out in 'dynamic' mode (the cost model picks it)", `got ${config.degree}`);
    }
  } else {
    const d = config.degree ?? 1;
    if (!Number.isSafeInteger(d) || d < 0) throw new InvalidArgumentError('overlapConfig.degree', 'must be an integer >= 0', `got ${String(d)}`);
    if (d === 0) {
      noOverlap = true;
      degree = 1;
      maxNumChunks = 1;
    } else {
      degree = d;
    }
    if (degree > maxNumChunks) {
      throw new InvalidArgumentError('overlapConfig.degree', 'must be <= overlapConfig.maxNumChunks', `${degree} > ${maxNumChunks}`);
    }
  }
  if (degree !== null && degree <= 1) mode = 'static';
  return { mode, degree, dynamicMaxDegree, minChunkSize, maxNumChunks, alg, calcCostFactor, commCostFactor, noOverlap };
}
