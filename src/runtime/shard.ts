/**
 * Moving whole sequences in and out of the dispatched layout (reference 03 §5): `dispatch` keeps
 * this rank's chunks of a tensor every rank holds in full (no communication), `undispatch`
 * all-gathers the shards and puts the chunks back in sequence order, and `getPositionIds` gives
 * the global position of every local row. Tensors are sequence-first: [N, ...]. Browser-safe.
 */
import { fromNumbers } from '../dtype.js';
import { ShapeError } from '../errors.js';
import { positionIds } from '../solver/chunk-assignment.js';
import { Tensor } from '../tensor.js';
import { requireKey, type DistAttnRuntimeKey } from './key.js';

function rowWidth(x: Tensor): number {
  return x.shape.slice(1).reduce((a, b) => a * b, 1);
}

/**
 * This rank's shard of the full tensor `x` [N, ...]: its chunks in ascending chunk order, the
 * padding rows (past N) filled with `padValue`. Local length = key.shardSeqlen.
 */
export function dispatch(x: Tensor, key: DistAttnRuntimeKey, padValue = 0): Tensor {
  requireKey(key);
  if (!(x instanceof Tensor) || x.rank < 1) throw new ShapeError('x', 'must be a Tensor of shape [N, ...]');
  const d = key.plan.dispatch;
  if (x.shape[0] !== d.unpaddedSeqlen) {
    throw new ShapeError('x', `must hold the whole sequence: shape[0] = ${d.unpaddedSeqlen} (the key's total length, without padding)`, `got ${x.shape[0]}`);
  }
  const w = rowWidth(x);
  const cs = d.chunkSize;
  const local = Tensor.zeros(x.dtype, [d.shardSeqlen, ...x.shape.slice(1)]);
  if (padValue !== 0) local.data.fill(fromNumbers(x.dtype, [padValue])[0]);
  let row = 0;
  for (const c of d.partitions[key.rank]) {
    const start = c * cs;
    const end = Math.min((c + 1) * cs, d.unpaddedSeqlen);
    if (end > start) local.data.set(x.data.subarray(start * w, end * w), row * w);
    row += cs;
  }
  return local;
}

/**
 * The full tensor [N, ...] from every rank's shard (a collective: all ranks call it). Chunks are
 * put back in sequence order and the padding rows dropped.
 */
export async function undispatch(local: Tensor, key: DistAttnRuntimeKey): Promise<Tensor> {
  requireKey(key);
  if (!(local instanceof Tensor) || local.rank < 1) throw new ShapeError('local', 'must be a Tensor of shape [shardSeqlen, ...]');
  const d = key.plan.dispatch;
  if (local.shape[0] !== d.shardSeqlen) {
    throw new ShapeError('local', `must be this rank's shard: shape[0] = ${d.shardSeqlen} rows (padding included)`, `got ${local.shape[0]}`);
  }
  const w = rowWidth(local);
  const cs = d.chunkSize;
  const gathered = Tensor.zeros(local.dtype, [d.paddedSeqlen, ...local.shape.slice(1)]);
  await key.group.allGather(local.data, gathered.data).wait();
  // gathered holds chunks in permuted order: position p is chunk permIdxs[p].
  const full = Tensor.zeros(local.dtype, [d.unpaddedSeqlen, ...local.shape.slice(1)]);
  for (let c = 0; c < d.numChunks; c++) {
    const start = c * cs;
    const end = Math.min((c + 1) * cs, d.unpaddedSeqlen);
    if (end <= start) continue;
    const from = d.unpermIdxs[c] * cs;
    full.data.set(gathered.data.subarray(from * w, (from + end - start) * w), start * w);
  }
  return full;
}

/** Global position of every local row, clamped so padding rows repeat the last valid position. */
export function getPositionIds(key: DistAttnRuntimeKey): Int32Array {
  requireKey(key);
  return positionIds(key.plan.dispatch, key.rank);
}
