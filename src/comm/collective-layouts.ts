/**
 * The row layouts a device runs a lowered GroupCast / GroupReduce with (pure data, no device):
 * which input rows to pack into the send buffer, and how the rank-ordered receive buffer maps
 * onto the output: a gather in output order for a cast, a list of (source run, destination row)
 * pairs for a reduce, applied in receive order (ascending source rank, so sums are deterministic).
 * The device code uploads these once per stage (comm/device/device-group-collective.ts); tests
 * check them against the host GroupCast / GroupReduce without a GPU.
 */
import type { PreparedGroupCollective } from './group-collective.js';

export interface CollectiveLayouts {
  /** Input row ranges to pack, flat [s, e), in send order; null when the input is sent as it is. */
  readonly pack: Int32Array | null;
  /** Cast: receive-buffer row ranges in output order (they tile the output); null when received in place. */
  readonly place: Int32Array | null;
  /** Reduce: receive-buffer row ranges and the output row each one adds onto, in receive order. */
  readonly reduce: { readonly srcRanges: Int32Array; readonly dstStarts: Int32Array } | null;
}

export function collectiveLayouts(prep: PreparedGroupCollective, cast: boolean): CollectiveLayouts {
  const l = prep.lowering;
  const pack = prep.sendIsInput ? null : l.sendGather;
  const triples: Array<[number, number, number]> = [];
  for (let i = 0; i < l.recvPlace.length; i += 3) triples.push([l.recvPlace[i], l.recvPlace[i + 1], l.recvPlace[i + 2]]);
  if (cast) {
    if (prep.receiveInPlace) return { pack, place: null, reduce: null };
    triples.sort((a, b) => a[1] - b[1]);
    return { pack, place: Int32Array.from(triples.flatMap(([from, , n]) => [from, from + n])), reduce: null };
  }
  return {
    pack,
    place: null,
    reduce: { srcRanges: Int32Array.from(triples.flatMap(([from, , n]) => [from, from + n])), dstStarts: Int32Array.from(triples, (t) => t[1]) },
  };
}
