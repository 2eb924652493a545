/**
 * Where the rows of the sequence live once dispatched: which rank holds each chunk and at which
 * local row, and the row ranges and GroupReduce arguments that move whole sequences in and out of
 * that layout (dispatch, undispatch and its reduce-scatter backward). Pure functions of a
 * DispatchMeta, browser-safe; the runtime (runtime/shard.ts) runs them over a process group.
 *
 * Coordinates: "global" rows are positions in the caller's sequence (padding past N); "local"
 * rows are positions in a rank's shard (its chunks in ascending order; chunk i at i·chunkSize);
 * "gathered" rows are positions in every rank's shard concatenated in rank order.
 */
import type { GroupReduceArgs } from '../comm/group-collective-args.js';
import { RangeBuffer } from '../mask/range-list.js';
import { chunkEnd } from './chunking.js';
import type { DispatchMeta } from './plan.js';

/** The rank that holds every chunk, and the local row where the chunk starts there. */
export interface ChunkPlacement {
  readonly owner: Int32Array;
  readonly localStart: Int32Array;
}

const placements = new WeakMap<DispatchMeta, ChunkPlacement>();

export function chunkPlacement(d: DispatchMeta): ChunkPlacement {
  let p = placements.get(d);
  if (p === undefined) {
    const owner = new Int32Array(d.numChunks);
    const localStart = new Int32Array(d.numChunks);
    d.partitions.forEach((part, r) =>
      part.forEach((c, i) => {
        owner[c] = r;
        localStart[c] = i * d.chunkSize;
      }),
    );
    placements.set(d, (p = { owner, localStart }));
  }
  return p;
}

/** End of chunk c's real rows (rows at or past N are padding). */
function realEnd(d: DispatchMeta, c: number): number {
  return Math.min(chunkEnd(d, c), d.unpaddedSeqlen);
}

/** Rank r's rows that hold real tokens, as global ranges in local order (what dispatch copies). */
export function shardSourceRanges(d: DispatchMeta, r: number): Int32Array {
  const cs = d.chunkSize;
  const out = new RangeBuffer(d.partitions[r].length);
  for (const c of d.partitions[r]) {
    const end = realEnd(d, c);
    if (end > c * cs) out.push(c * cs, end);
  }
  return out.toArray();
}

/**
 * Where every chunk's real rows sit in the gathered shards, in sequence order: gathering these
 * ranges of the all-gathered buffer gives the sequence [0, N) (what undispatch does).
 */
export function unpermuteRanges(d: DispatchMeta): Int32Array {
  const cs = d.chunkSize;
  const { owner, localStart } = chunkPlacement(d);
  const rankStart = new Float64Array(d.cpSize);
  for (let r = 1; r < d.cpSize; r++) rankStart[r] = rankStart[r - 1] + d.shardSeqlens[r - 1];
  const out = new RangeBuffer(d.numChunks);
  for (let c = 0; c < d.numChunks; c++) {
    const len = realEnd(d, c) - c * cs;
    if (len <= 0) continue;
    const at = rankStart[owner[c]] + localStart[c];
    out.pushJoined(at, at + len);
  }
  return out.toArray();
}

/**
 * Rank r's GroupReduce arguments for a reduce-scatter of whole sequences: every rank's input is a
 * full [N, ...] tensor (in sequence order), cut at chunk boundaries, each chunk's rows sent to its
 * owner; rank r's output is its shard, each real chunk summed over all ranks, padding rows left
 * alone. Splits are the chunks in ascending order on both sides, so the ordering contract holds.
 */
export function reduceScatterArgs(d: DispatchMeta, r: number): GroupReduceArgs {
  const cs = d.chunkSize;
  const { owner } = chunkPlacement(d);
  const inputSplitSizes: number[] = [];
  const dstIndex: number[] = [];
  for (let c = 0; c < d.numChunks; c++) {
    const len = realEnd(d, c) - c * cs;
    if (len <= 0) continue;
    inputSplitSizes.push(len);
    dstIndex.push(owner[c]);
  }
  const everyRank = Array.from({ length: d.cpSize }, (_, s) => s);
  const outputSplitSizes: number[] = [];
  const srcIndices: number[][] = [];
  for (const c of d.partitions[r]) {
    const real = Math.max(0, realEnd(d, c) - c * cs);
    const pad = chunkEnd(d, c) - c * cs - real;
    if (real > 0) {
      outputSplitSizes.push(real);
      srcIndices.push(everyRank);
    }
    if (pad > 0) {
      outputSplitSizes.push(pad);
      srcIndices.push([]);
    }
  }
  return { inputSplitSizes: Int32Array.from(inputSplitSizes), dstIndex: Int32Array.from(dstIndex), outputSplitSizes: Int32Array.from(outputSplitSizes), srcIndices };
}
