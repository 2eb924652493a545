/**
 * Runtime keys: the planned form of one (mask, shapes, cp group, configs) combination, built once
 * and reused by every dispatch / calcAttn / undispatch call, like the reference's
 * DistAttnRuntimeKey + DistAttnRuntimeMgr in one object. Planning is pure (every rank computes the
 * same plan with no collective), so building a key never talks to the group.
 *
 * Keys are cached per process group in an LRU keyed by value: a second call with equal inputs
 * returns the very same key object. The cache is per group so that eviction stays identical on
 * every rank of it (ranks that disagree on a hit would plan differently). Browser-safe.
 */
import { InvalidArgumentError } from '../errors.js';
import { requireKnownOptions } from '../util/options.js';
import { inferMaskFromCuSeqlens } from '../mask/helpers.js';
import { makeSliceList, type MaskTypesLike, type RangeListLike, type SliceList } from '../mask/slice-list.js';
import type { GroupInfo } from '../comm/process-group.js';
import { isProcessMesh, type ProcessMesh } from '../comm/mesh.js';
import type { MeshShape } from '../solver/hier-group-collective.js';
import { buildChunkBuckets, validateMask } from '../solver/chunking.js';
import { resolveDispatchConfig, resolveOverlapConfig, type DispatchConfig, type OverlapConfig } from '../solver/config.js';
import { makeDispatchMeta } from '../solver/chunk-assignment.js';
import type { DistAttnPlan, RankPlan } from '../solver/plan.js';
import { planDistAttn, planRanksForDispatch } from '../solver/solve.js';

/** Everything calcAttn needs for one mask on one cp group. Treat as immutable. */
export class DistAttnRuntimeKey {
  constructor(
    /** The value identity of this key within its group's cache. */
    readonly id: string,
    readonly group: GroupInfo,
    readonly plan: DistAttnPlan,
    readonly numHeadsQ: number,
    readonly numHeadsKv: number,
    readonly headDim: number,
    /** The 2-D mesh the plan's hierarchical GroupCast / GroupReduce run over; null when flat. */
    readonly mesh: ProcessMesh | null = null,
  ) {}

  get cpSize(): number {
    return this.plan.cpSize;
  }
  get rank(): number {
    return this.group.rank;
  }
  /** The caller's (unpadded) sequence length N. */
  get unpaddedSeqlen(): number {
    return this.plan.dispatch.unpaddedSeqlen;
  }
  get padSize(): number {
    return this.plan.dispatch.padSize;
  }
  get chunkSize(): number {
    return this.plan.dispatch.chunkSize;
  }
  /** This rank's local rows (padding included; with an uneven shard ranks differ). */
  get shardSeqlen(): number {
    return this.plan.dispatch.shardSeqlens[this.group.rank];
  }
  /** This rank's part of the plan. */
  get rankPlan(): RankPlan {
    return this.plan.perRank[this.group.rank];
  }
}

// ---------------------------------------------------------------------------------------------
// Per-group LRU cache

export const DEFAULT_KEY_CACHE_SIZE = 100;

/** Bumped by clearKeyCache() with no group: every cache made before it is stale (emptied on next use). */
let generation = 0;

class KeyLru {
  readonly entries = new Map<string, DistAttnRuntimeKey>();
  generation = generation;
  constructor(public maxSize: number) {}

  /** A hit refreshes recency (unlike the reference, where only .get() does). */
  get(id: string): DistAttnRuntimeKey | undefined {
    const k = this.entries.get(id);
    if (k !== undefined) {
      this.entries.delete(id);
      this.entries.set(id, k);
    }
    return k;
  }

  set(key: DistAttnRuntimeKey): void {
    if (this.maxSize <= 0) return;
    this.entries.delete(key.id);
    this.entries.set(key.id, key);
    while (this.entries.size > this.maxSize) this.entries.delete(this.entries.keys().next().value as string);
  }
}

// A WeakMap, so a group that is dropped takes its keys with it; it cannot be listed, hence the
// generation count for clearing every group at once.
const caches = new WeakMap<GroupInfo, KeyLru>();

/** The group's cache, if it has a live one (emptied first when a clear-all came after it was filled). */
function liveCache(group: GroupInfo): KeyLru | undefined {
  const c = caches.get(group);
  if (c !== undefined && c.generation !== generation) {
    c.entries.clear();
    c.generation = generation;
  }
  return c;
}

function cacheOf(group: GroupInfo): KeyLru {
  let c = liveCache(group);
  if (c === undefined) caches.set(group, (c = new KeyLru(DEFAULT_KEY_CACHE_SIZE)));
  return c;
}

/** Sets how many keys the group's cache can hold (0 disables caching); evicts the oldest beyond it. */
export function setKeyCacheCapacity(group: GroupInfo, capacity: number): void {
  if (!Number.isInteger(capacity) || capacity < 0) throw new InvalidArgumentError('capacity', 'must be an integer >= 0', `got ${capacity}`);
  const c = cacheOf(group);
  c.maxSize = capacity;
  while (c.entries.size > capacity) c.entries.delete(c.entries.keys().next().value as string);
}

/** The group's most recently created or reused key. */
export function getMostRecentKey(group: GroupInfo): DistAttnRuntimeKey {
  const c = liveCache(group);
  const last = c === undefined ? undefined : [...c.entries.values()].pop();
  if (last === undefined) throw new InvalidArgumentError('group', 'has no cached runtime key yet');
  return last;
}

/**
 * Forgets the cached keys of `group`, or with no group those of every group (the reference's
 * clear_cache(None)); capacities set with setKeyCacheCapacity stay.
 */
export function clearKeyCache(group?: GroupInfo): void {
  if (group === undefined) generation++;
  else liveCache(group)?.entries.clear();
}

/** How many keys the group's cache holds now. */
export function cachedKeyCount(group: GroupInfo): number {
  return liveCache(group)?.entries.size ?? 0;
}

// ---------------------------------------------------------------------------------------------
// Constructors

export interface KeyShapeOptions {
  readonly numHeadsQ: number;
  readonly numHeadsKv: number;
  readonly headDim: number;
  /**
   * The cp group (its size is the cp size), or a 2-D mesh of it (comm/mesh.ts: createProcessMesh)
   * for hierarchical communication: each k/v token crosses to another node once and is relayed
   * inside it.
   */
  readonly group: GroupInfo | ProcessMesh;
  readonly dispatchConfig?: DispatchConfig;
  readonly overlapConfig?: OverlapConfig;
}

export interface FlexKeyOptions extends KeyShapeOptions {
  readonly qRanges: RangeListLike;
  readonly kRanges: RangeListLike;
  /** One type for every slice or one per slice (names or codes 0-3). */
  readonly maskTypes: MaskTypesLike;
  readonly totalSeqlenQ: number;
  /** Must equal totalSeqlenQ (self-attention only); defaults to it. */
  readonly totalSeqlenK?: number;
}

export interface VarlenKeyOptions extends KeyShapeOptions {
  readonly cuSeqlensQ: ArrayLike<number>;
  /** Defaults to cuSeqlensQ. */
  readonly cuSeqlensK?: ArrayLike<number>;
  readonly causal?: boolean;
  /** [left, right], -1 unbounded; default [-1, -1] (no window). */
  readonly windowSize?: readonly [number, number];
}

const SHAPE_OPTION_NAMES = ['numHeadsQ', 'numHeadsKv', 'headDim', 'group', 'dispatchConfig', 'overlapConfig'] as const;

/** Checks head counts and head dim by name (positive integers, numHeadsKv dividing numHeadsQ). */
export function checkHeadShape(o: Pick<KeyShapeOptions, 'numHeadsQ' | 'numHeadsKv' | 'headDim'>): void {
  for (const name of ['numHeadsQ', 'numHeadsKv', 'headDim'] as const) {
    const x = o[name];
    if (!Number.isSafeInteger(x) || x < 1) throw new InvalidArgumentError(name, 'must be a positive integer', `got ${String(x)}`);
  }
  if (o.numHeadsQ % o.numHeadsKv !== 0) throw new InvalidArgumentError('numHeadsKv', 'must divide numHeadsQ (GQA groups)', `${o.numHeadsQ} vs ${o.numHeadsKv}`);
}

const isGroupInfo = (g: unknown): g is GroupInfo => typeof g === 'object' && g !== null && typeof (g as GroupInfo).rank === 'number' && typeof (g as GroupInfo).size === 'number';

/** The flat group and, when a mesh was given, the mesh (checked against the group). */
function groupAndMesh(given: GroupInfo | ProcessMesh): { group: GroupInfo; mesh: ProcessMesh | null } {
  if (isProcessMesh(given)) {
    const { group, intra, inter, nodes, ranksPerNode } = given;
    if (!isGroupInfo(group) || !isGroupInfo(intra) || !isGroupInfo(inter)) throw new InvalidArgumentError('group', 'a mesh must hold its group, intra and inter groups (use createProcessMesh)');
    const L = ranksPerNode;
    if (nodes * L !== group.size || intra.size !== L || inter.size !== nodes || intra.rank !== group.rank % L || inter.rank !== Math.floor(group.rank / L)) {
      throw new InvalidArgumentError('group', 'is a mesh whose groups do not tile it (rank = node · ranksPerNode + local index; use createProcessMesh)', `${nodes} × ${L} over ${group.size} ranks`);
    }
    return { group, mesh: given };
  }
  if (!isGroupInfo(given)) throw new InvalidArgumentError('group', 'must be a GroupInfo (its size is the cp size) or a ProcessMesh');
  return { group: given, mesh: null };
}

function meshShapeOf(mesh: ProcessMesh | null): MeshShape | null {
  return mesh === null ? null : { nodes: mesh.nodes, ranksPerNode: mesh.ranksPerNode };
}

function keyId(kind: string, mask: SliceList, total: number, o: KeyShapeOptions & { group: GroupInfo }, mesh: MeshShape | null, extra: unknown): string {
  return JSON.stringify([
    kind,
    Array.from(mask.qRanges),
    Array.from(mask.kRanges),
    Array.from(mask.maskTypes),
    total,
    o.numHeadsQ,
    o.numHeadsKv,
    o.headDim,
    o.group.size,
    // Resolved, so that equal configs written differently (property order, defaults spelt out) share a key.
    resolveDispatchConfig(o.dispatchConfig),
    resolveOverlapConfig(o.overlapConfig),
    mesh,
    extra,
  ]);
}

function keyFromMask(mask: SliceList, totalQ: number, totalK: number, o: KeyShapeOptions): DistAttnRuntimeKey {
  checkHeadShape(o);
  const { group, mesh } = groupAndMesh(o.group);
  const shape = meshShapeOf(mesh);
  const id = keyId('flex', mask, totalQ, { ...o, group }, shape, totalK);
  const cache = cacheOf(group);
  const hit = cache.get(id);
  if (hit !== undefined) return hit;
  const plan = planDistAttn({
    mask,
    totalSeqlenQ: totalQ,
    totalSeqlenK: totalK,
    cpSize: group.size,
    dispatchConfig: o.dispatchConfig,
    overlapConfig: o.overlapConfig,
    ...(shape === null ? {} : { mesh: shape }),
  });
  const key = new DistAttnRuntimeKey(id, group, plan, o.numHeadsQ, o.numHeadsKv, o.headDim, mesh);
  cache.set(key);
  return key;
}

/**
 * The key of a self-attention mask given as slices: plans once (dispatch, per-rank slices, overlap
 * stages, GroupCast / GroupReduce arguments) and caches the key by value for its group.
 */
export function magiAttnFlexKey(options: FlexKeyOptions): DistAttnRuntimeKey {
  requireKnownOptions(options, 'options', [...SHAPE_OPTION_NAMES, 'qRanges', 'kRanges', 'maskTypes', 'totalSeqlenQ', 'totalSeqlenK']);
  const totalQ = options.totalSeqlenQ;
  const totalK = options.totalSeqlenK ?? totalQ;
  const mask = makeSliceList(options.qRanges, options.kRanges, options.maskTypes);
  return keyFromMask(mask, totalQ, totalK, options);
}

/** The key of a packed batch described by cu_seqlens (full, causal or sliding-window samples). */
export function magiAttnVarlenKey(options: VarlenKeyOptions): DistAttnRuntimeKey {
  requireKnownOptions(options, 'options', [...SHAPE_OPTION_NAMES, 'cuSeqlensQ', 'cuSeqlensK', 'causal', 'windowSize']);
  const cuK = options.cuSeqlensK ?? options.cuSeqlensQ;
  const inferred = inferMaskFromCuSeqlens(options.cuSeqlensQ, cuK, { causal: options.causal, windowSize: options.windowSize });
  return keyFromMask(inferred.slices, inferred.totalQ, inferred.totalK, options);
}

export interface NewMaskOptions {
  readonly qRanges: RangeListLike;
  readonly kRanges: RangeListLike;
  readonly maskTypes: MaskTypesLike;
  /** Head counts and head dim default to the dispatch key's. */
  readonly numHeadsQ?: number;
  readonly numHeadsKv?: number;
  readonly headDim?: number;
  /** Defaults to the dispatch key's; the dispatch config is always the dispatch key's. */
  readonly overlapConfig?: OverlapConfig;
}

/**
 * A key for another mask over the SAME dispatched activations: partitions, chunk size, padding and
 * local layout are the dispatch key's; only the per-rank slices, stages and comm arguments are
 * planned for the new mask (so balance and comm volume are whatever that layout gives).
 * The new mask must lie inside the dispatch key's unpadded sequence.
 *
 * The solver has no entry point taking an existing DispatchMeta, so this assembles the plan from
 * its exported pieces (buildChunkBuckets, makeDispatchMeta with the old partitions, planAllRanks,
 * buildStageGroupCast) the same way planDistAttn does.
 */
export function makeKeyForNewMaskAfterDispatch(options: NewMaskOptions, keyForDispatch: DistAttnRuntimeKey): DistAttnRuntimeKey {
  if (!(keyForDispatch instanceof DistAttnRuntimeKey)) throw new InvalidArgumentError('keyForDispatch', 'must be a key made by magiAttnFlexKey / magiAttnVarlenKey');
  requireKnownOptions(options, 'options', ['qRanges', 'kRanges', 'maskTypes', 'numHeadsQ', 'numHeadsKv', 'headDim', 'overlapConfig']);
  const old = keyForDispatch.plan;
  const d = old.dispatch;
  const shape = {
    numHeadsQ: options.numHeadsQ ?? keyForDispatch.numHeadsQ,
    numHeadsKv: options.numHeadsKv ?? keyForDispatch.numHeadsKv,
    headDim: options.headDim ?? keyForDispatch.headDim,
    group: keyForDispatch.group,
    overlapConfig: options.overlapConfig,
  };
  checkHeadShape(shape);
  const mask = makeSliceList(options.qRanges, options.kRanges, options.maskTypes);
  validateMask(mask, d.unpaddedSeqlen, d.unpaddedSeqlen);
  const id = keyId('after-dispatch', mask, d.unpaddedSeqlen, shape, old.mesh, keyForDispatch.id);
  const cache = cacheOf(shape.group);
  const hit = cache.get(id);
  if (hit !== undefined) return hit;

  const overlapConfig = options.overlapConfig === undefined ? old.overlapConfig : resolveOverlapConfig(options.overlapConfig);
  const buckets = buildChunkBuckets(mask, d);
  // Position ids must not change with the mask: keep the dispatch key's clamp.
  const dispatch = { ...makeDispatchMeta(d, buckets, d.partitions, old.dispatchConfig.alg, d.maxValidIds), algorithm: d.algorithm };
  const { perRank, degree } = planRanksForDispatch(dispatch, buckets, overlapConfig, old.mesh);
  const plan: DistAttnPlan = {
    formatVersion: 1,
    cpSize: old.cpSize,
    globalMask: { qRanges: mask.qRanges.slice(), kRanges: mask.kRanges.slice(), maskTypes: mask.maskTypes.slice() },
    totalSeqlenQ: old.totalSeqlenQ,
    totalSeqlenK: old.totalSeqlenK,
    dispatchConfig: old.dispatchConfig,
    overlapConfig,
    overlapDegree: degree,
    mesh: old.mesh,
    dispatch,
    perRank,
  };
  const key = new DistAttnRuntimeKey(id, shape.group, plan, shape.numHeadsQ, shape.numHeadsKv, shape.headDim, keyForDispatch.mesh);
  cache.set(key);
  return key;
}

export interface VarlenNewMaskOptions {
  readonly cuSeqlensQ: ArrayLike<number>;
  /** Defaults to cuSeqlensQ. */
  readonly cuSeqlensK?: ArrayLike<number>;
  readonly causal?: boolean;
  /** [left, right], -1 unbounded; default [-1, -1] (no window). */
  readonly windowSize?: readonly [number, number];
  /** Defaults to the dispatch key's. */
  readonly overlapConfig?: OverlapConfig;
}

/**
 * The varlen form of makeKeyForNewMaskAfterDispatch: the new mask is inferred from cu_seqlens
 * (full, causal or sliding-window samples, as magiAttnVarlenKey does); head counts are the
 * dispatch key's. The samples must lie inside the dispatch key's unpadded sequence.
 */
export function makeVarlenKeyForNewMaskAfterDispatch(options: VarlenNewMaskOptions, keyForDispatch: DistAttnRuntimeKey): DistAttnRuntimeKey {
  requireKnownOptions(options, 'options', ['cuSeqlensQ', 'cuSeqlensK', 'causal', 'windowSize', 'overlapConfig']);
  const inferred = inferMaskFromCuSeqlens(options.cuSeqlensQ, options.cuSeqlensK ?? options.cuSeqlensQ, { causal: options.causal, windowSize: options.windowSize });
  const m = inferred.slices;
  return makeKeyForNewMaskAfterDispatch(
    { qRanges: m.qRanges, kRanges: m.kRanges, maskTypes: m.maskTypes, ...(options.overlapConfig === undefined ? {} : { overlapConfig: options.overlapConfig }) },
    keyForDispatch,
  );
}

/** Throws unless `key` is a runtime key; names the argument. */
export function requireKey(key: unknown, argument = 'key'): asserts key is DistAttnRuntimeKey {
  if (!(key instanceof DistAttnRuntimeKey)) throw new InvalidArgumentError(argument, 'must be a runtime key made by magiAttnFlexKey / magiAttnVarlenKey');
}
