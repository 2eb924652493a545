/**
 * Moving whole sequences in and out of the dispatched layout (reference 03 §5): `dispatch` keeps
 * this rank's chunks of a tensor every rank holds in full (no communication), `undispatch`
 * all-gathers the shards and puts the chunks back in sequence order, and `getPositionIds` gives
 * the global position of every local row. Tensors are sequence-first: [N, ...], host Tensors or
 * device tensors (through the same AttnOps as calcAttn). Browser-safe.
 */
import { ShapeError } from '../errors.js';
import type { AttnTensor } from '../kernels/flex-flash-attn.js';
import { RangeBuffer } from '../mask/range-list.js';
import { positionIds } from '../solver/chunk-assignment.js';
import { Tensor } from '../tensor.js';
import { attnOpsFor, type AttnOps } from './attn-ops.js';
import { requireKey, type DistAttnRuntimeKey } from './key.js';

/** Local rows of this rank's shard that hold real tokens, as source ranges of the full sequence. */
function shardSourceRanges(key: DistAttnRuntimeKey): Int32Array {
  const d = key.plan.dispatch;
  const cs = d.chunkSize;
  const out = new RangeBuffer(d.partitions[key.rank].length);
  for (const c of d.partitions[key.rank]) {
    const end = Math.min((c + 1) * cs, d.unpaddedSeqlen);
    if (end > c * cs) out.push(c * cs, end);
  }
  return out.toArray();
}

/** Where each chunk of the sequence sits in the all-gathered shards, in sequence order, clipped to N. */
function unpermuteRanges(key: DistAttnRuntimeKey): Int32Array {
  const d = key.plan.dispatch;
  const cs = d.chunkSize;
  const out = new RangeBuffer(d.numChunks);
  for (let c = 0; c < d.numChunks; c++) {
    const len = Math.min(cs, d.unpaddedSeqlen - c * cs);
    if (len > 0) out.push(d.unpermIdxs[c] * cs, d.unpermIdxs[c] * cs + len);
  }
  return out.toArray();
}

/**
 * This rank's shard of the full tensor `x` [N, ...] (a host Tensor, or a device tensor with a
 * key of a device group): its chunks in ascending chunk order, the padding rows (past N) filled
 * with `padValue`. Local length = key.shardSeqlen. No communication.
 */
export function dispatch<T extends AttnTensor>(x: T, key: DistAttnRuntimeKey, padValue = 0): T {
  requireKey(key);
  if (!isAttnTensor(x) || x.rank < 1) throw new ShapeError('x', 'must be a Tensor (or device tensor) of shape [N, ...]');
  const d = key.plan.dispatch;
  if (x.shape[0] !== d.unpaddedSeqlen) {
    throw new ShapeError('x', `must hold the whole sequence: shape[0] = ${d.unpaddedSeqlen} (the key's total length, without padding)`, `got ${x.shape[0]}`);
  }
  const ops = attnOpsFor(x, key.group) as AttnOps<T>;
  ops.begin();
  const local = ops.gatherRows(x, shardSourceRanges(key), d.shardSeqlen, padValue);
  ops.end();
  return local;
}

/**
 * The full tensor [N, ...] from every rank's shard (a collective: all ranks call it). Chunks are
 * put back in sequence order and the padding rows dropped.
 */
export async function undispatch<T extends AttnTensor>(local: T, key: DistAttnRuntimeKey): Promise<T> {
  requireKey(key);
  if (!isAttnTensor(local) || local.rank < 1) throw new ShapeError('local', 'must be a Tensor (or device tensor) of shape [shardSeqlen, ...]');
  const d = key.plan.dispatch;
  if (local.shape[0] !== d.shardSeqlen) {
    throw new ShapeError('local', `must be this rank's shard: shape[0] = ${d.shardSeqlen} rows (padding included)`, `got ${local.shape[0]}`);
  }
  const ops = attnOpsFor(local, key.group) as AttnOps<T>;
  ops.begin();
  // The gathered shards hold chunks in permuted order: position p is chunk permIdxs[p].
  const gathered = await ops.allGather(local);
  ops.joinComm();
  const full = ops.gatherRows(gathered, unpermuteRanges(key), d.unpaddedSeqlen, 0);
  ops.release(gathered);
  ops.end();
  return full;
}

function isAttnTensor(x: unknown): x is AttnTensor {
  return x instanceof Tensor || (typeof x === 'object' && x !== null && typeof (x as { location?: unknown }).location === 'string' && Array.isArray((x as { shape?: unknown }).shape));
}

/** Global position of every local row, clamped so padding rows repeat the last valid position. */
export function getPositionIds(key: DistAttnRuntimeKey): Int32Array {
  requireKey(key);
  return positionIds(key.plan.dispatch, key.rank);
}
