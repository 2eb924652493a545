/**
 * Moving whole sequences in and out of the dispatched layout (reference 03 §5): `dispatch` keeps
 * this rank's chunks of a tensor every rank holds in full (no communication), `undispatch`
 * all-gathers the shards and puts the chunks back in sequence order, `roll` shifts a dispatched
 * tensor along the sequence, and `getPositionIds` gives the global position of every local row.
 * Without autograd the backward passes are functions too: `dispatchBackward` (the all-gather) and
 * `undispatchBackward` (this rank's chunks of the gradient, or with partial gradients their sum
 * over ranks: a reduce-scatter). Tensors are sequence-first: [N, ...], host Tensors or device
 * tensors (through the same AttnOps as calcAttn); the row layouts are planned in
 * solver/shard-layout.ts and solver/roll.ts. Browser-safe.
 */
import { InvalidArgumentError, ShapeError } from '../errors.js';
import type { AttnTensor } from '../kernels/flex-flash-attn.js';
import type { GroupReduceArgs } from '../comm/group-collective-args.js';
import { positionIds } from '../solver/chunk-assignment.js';
import type { DispatchMeta } from '../solver/plan.js';
import { normalizeShift, planRoll, type RankRoll } from '../solver/roll.js';
import { reduceScatterArgs, shardSourceRanges, unpermuteRanges } from '../solver/shard-layout.js';
import { requireKnownOptions } from '../util/options.js';
import { Tensor } from '../tensor.js';
import { attnOpsFor, type AttnOps } from './attn-ops.js';
import { requireKey, type DistAttnRuntimeKey } from './key.js';

/** Layouts derived from a dispatch, built once: every key over that dispatch reuses them (and the collectives' cached lowerings). */
interface ShardLayouts {
  readonly unpermute: Int32Array;
  readonly reduceScatter: Map<number, GroupReduceArgs>;
  readonly rolls: Map<number, RankRoll[]>;
}

const layoutsByDispatch = new WeakMap<DispatchMeta, ShardLayouts>();

function layoutsOf(d: DispatchMeta): ShardLayouts {
  let l = layoutsByDispatch.get(d);
  if (l === undefined) layoutsByDispatch.set(d, (l = { unpermute: unpermuteRanges(d), reduceScatter: new Map(), rolls: new Map() }));
  return l;
}

/** Distinct shifts whose roll plans a dispatch keeps (a training loop uses one or two). */
const ROLL_PLANS_KEPT = 8;

function rollOf(d: DispatchMeta, shift: number): RankRoll[] {
  const rolls = layoutsOf(d).rolls;
  let plan = rolls.get(shift);
  if (plan === undefined) {
    plan = planRoll(d, shift);
    if (rolls.size >= ROLL_PLANS_KEPT) rolls.delete(rolls.keys().next().value as number);
    rolls.set(shift, plan);
  }
  return plan;
}

function isAttnTensor(x: unknown): x is AttnTensor {
  return x instanceof Tensor || (typeof x === 'object' && x !== null && typeof (x as { location?: unknown }).location === 'string' && Array.isArray((x as { shape?: unknown }).shape));
}

/** Throws unless `x` is this rank's shard ([key.shardSeqlen, ...]). */
function requireShard(x: unknown, key: DistAttnRuntimeKey, name: string): asserts x is AttnTensor {
  if (!isAttnTensor(x) || x.rank < 1) throw new ShapeError(name, 'must be a Tensor (or device tensor) of shape [shardSeqlen, ...]');
  if (x.shape[0] !== key.shardSeqlen) {
    throw new ShapeError(name, `must be this rank's shard: shape[0] = ${key.shardSeqlen} rows (padding included)`, `got ${x.shape[0]}`);
  }
}

/** Throws unless `x` holds the whole sequence ([N, ...]). */
function requireWhole(x: unknown, key: DistAttnRuntimeKey, name: string): asserts x is AttnTensor {
  if (!isAttnTensor(x) || x.rank < 1) throw new ShapeError(name, 'must be a Tensor (or device tensor) of shape [N, ...]');
  const n = key.unpaddedSeqlen;
  if (x.shape[0] !== n) throw new ShapeError(name, `must hold the whole sequence: shape[0] = ${n} (the key's total length, without padding)`, `got ${x.shape[0]}`);
}

/**
 * This rank's shard of the full tensor `x` [N, ...] (a host Tensor, or a device tensor with a
 * key of a device group): its chunks in ascending chunk order, the padding rows (past N) filled
 * with `padValue`. Local length = key.shardSeqlen. No communication.
 */
export function dispatch<T extends AttnTensor>(x: T, key: DistAttnRuntimeKey, padValue = 0): T {
  requireKey(key);
  requireWhole(x, key, 'x');
  const d = key.plan.dispatch;
  const ops = attnOpsFor(x, key.group) as AttnOps<T>;
  ops.begin();
  const local = ops.gatherRows(x, shardSourceRanges(d, key.rank), key.shardSeqlen, padValue);
  ops.end();
  return local;
}

/**
 * The full tensor [N, ...] from every rank's shard (a collective: all ranks call it). Chunks are
 * put back in sequence order and the padding rows dropped.
 */
export async function undispatch<T extends AttnTensor>(local: T, key: DistAttnRuntimeKey): Promise<T> {
  requireKey(key);
  requireShard(local, key, 'local');
  const d = key.plan.dispatch;
  const ops = attnOpsFor(local, key.group) as AttnOps<T>;
  ops.begin();
  // The gathered shards hold the chunks in permuted order (rank 0's, then rank 1's, ...).
  const gathered = await ops.allGather(local, d.shardSeqlens);
  ops.joinComm();
  const full = ops.gatherRows(gathered, layoutsOf(d).unpermute, d.unpaddedSeqlen, 0);
  ops.release(gathered);
  ops.end();
  return full;
}

/**
 * The gradient of `dispatch` with respect to its full input, from this rank's gradient of the
 * shard: the shards' gradients gathered back into sequence order (padding rows dropped). Every
 * rank gets the whole gradient; a collective, like undispatch, which it is.
 */
export async function dispatchBackward<T extends AttnTensor>(gradLocal: T, key: DistAttnRuntimeKey): Promise<T> {
  requireKey(key);
  requireShard(gradLocal, key, 'gradLocal');
  return undispatch(gradLocal, key);
}

export interface UndispatchBackwardOptions {
  /**
   * Each rank's `gradFull` is only its part of the gradient (its own loss terms): the shards are
   * summed over ranks (a reduce-scatter), the reference's `is_partial_grad`. Default false: every
   * rank holds the same, whole gradient and keeps its chunks (no communication).
   */
  readonly isPartialGrad?: boolean;
}

/**
 * The gradient of `undispatch` with respect to this rank's shard, from the gradient of the full
 * tensor [N, ...]: this rank's chunks of it (padding rows zero), or with `isPartialGrad` the sum
 * of every rank's `gradFull` restricted to this rank's chunks (a collective then: all ranks call
 * it). The sum runs in float32, contributions added in rank order (the same bits on every run),
 * and the result comes back in gradFull's dtype.
 */
export async function undispatchBackward<T extends AttnTensor>(gradFull: T, key: DistAttnRuntimeKey, options: UndispatchBackwardOptions = {}): Promise<T> {
  requireKey(key);
  requireKnownOptions(options, 'options', ['isPartialGrad']);
  const partial = options.isPartialGrad ?? false;
  if (typeof partial !== 'boolean') throw new InvalidArgumentError('options.isPartialGrad', 'must be a boolean', `got ${JSON.stringify(partial)}`);
  requireWhole(gradFull, key, 'gradFull');
  if (!partial) return dispatch(gradFull, key);
  const d = key.plan.dispatch;
  const ops = attnOpsFor(gradFull, key.group) as AttnOps<T>;
  const layouts = layoutsOf(d);
  let args = layouts.reduceScatter.get(key.rank);
  if (args === undefined) layouts.reduceScatter.set(key.rank, (args = reduceScatterArgs(d, key.rank)));
  ops.begin();
  // The GroupReduce consumes its input: a float32 copy (also the precision the sum runs in).
  const contribution = ops.cast(gradFull, 'float32');
  const sum = ops.zeros('float32', [key.shardSeqlen, ...ops.shape(gradFull).slice(1)]);
  await ops.groupReduceSum(contribution, sum, args);
  ops.joinComm();
  let out = sum;
  if (ops.dtype(gradFull) !== 'float32') {
    out = ops.cast(sum, ops.dtype(gradFull));
    ops.release(sum);
  }
  ops.end();
  return out;
}

/**
 * The dispatched tensor rolled by `shift` rows along the sequence: rank r gets its shard of
 * y[g] = x[(g − shift) mod N] (torch.roll on the undispatched tensor), where `local` is its shard
 * of x. Rows move point to point, each straight to the rank that holds its new position; padding
 * rows (past N) stay as they are. A collective: every rank calls it with the same shift. The
 * gradient of a roll is the roll by −shift.
 */
export async function roll<T extends AttnTensor>(local: T, shift: number, key: DistAttnRuntimeKey): Promise<T> {
  requireKey(key);
  requireShard(local, key, 'local');
  const d = key.plan.dispatch;
  const s = normalizeShift(shift, d.unpaddedSeqlen);
  const ops = attnOpsFor(local, key.group) as AttnOps<T>;
  ops.begin();
  if (s === 0) {
    const copy = ops.cast(local, ops.dtype(local));
    ops.end();
    return copy;
  }
  const plan = rollOf(d, s)[key.rank];
  const received = await ops.groupCast(local, plan.groupCast, key.shardSeqlen);
  ops.joinComm();
  const out = ops.gatherRows(received, plan.placeRanges, key.shardSeqlen, 0);
  ops.release(received);
  ops.end();
  return out;
}

/** Global position of every local row, clamped so padding rows repeat the last valid position. */
export function getPositionIds(key: DistAttnRuntimeKey): Int32Array {
  requireKey(key);
  return positionIds(key.plan.dispatch, key.rank);
}
