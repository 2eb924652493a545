/**
 * GroupCast / GroupReduce arguments and what they mean: the per-rank split lists of reference 03
 * §1.1, the ordering contract that pairs a sender's splits with a receiver's (for any sender s and
 * receiver r, the splits s sends to r, in s's input order, are the splits r receives from s, in
 * r's output order, size for size), and the lowering of either collective onto one all-to-all-v
 * (03 §1.4). The planners build these arguments (solver/group-collective-args.ts); the runtime
 * runs them (group-collective.ts); the plan checker proves them with matchGroupCast.
 */
import { InvalidArgumentError } from '../errors.js';

/**
 * What one rank passes to an all-to-all-v based GroupCast in one stage (reference 03 §1.1).
 * Input: its whole local k/v buffer cut into splits, each with its sorted destination ranks
 * (empty: not sent). Output: the stage buffer cut into splits, each from one source rank.
 * For any sender s and receiver r, s's splits that list r (in input order) match, size for size,
 * r's splits whose source is s (in output order).
 */
export interface GroupCastArgs {
  readonly inputSplitSizes: Int32Array;
  readonly dstIndices: readonly (readonly number[])[];
  readonly outputSplitSizes: Int32Array;
  readonly srcIndex: Int32Array;
}

/** The mirror of a GroupCast (sends partial dk/dv back to their owners, summed there). */
export interface GroupReduceArgs {
  readonly inputSplitSizes: Int32Array;
  readonly dstIndex: Int32Array;
  readonly outputSplitSizes: Int32Array;
  readonly srcIndices: readonly (readonly number[])[];
}

/** The mirror of a GroupCast: what was cast out is reduced back, split for split. */
export function toGroupReduceArgs(cast: GroupCastArgs): GroupReduceArgs {
  return {
    inputSplitSizes: cast.outputSplitSizes,
    dstIndex: cast.srcIndex,
    outputSplitSizes: cast.inputSplitSizes,
    srcIndices: cast.dstIndices,
  };
}

/**
 * For every rank r and output split j of a GroupCast, the source rank and the index of the
 * source's input split that fills it, found purely by the ordering contract. Throws when the
 * arguments of different ranks disagree (sizes, counts).
 */
export function matchGroupCast(args: readonly GroupCastArgs[]): Array<Array<[number, number]>> {
  const P = args.length;
  // queues[s][r]: s's input splits that list r, in input order.
  const queues: number[][][] = args.map((a) => {
    const q: number[][] = Array.from({ length: P }, () => []);
    a.dstIndices.forEach((dsts, i) => {
      for (const d of dsts) {
        if (!Number.isInteger(d) || d < 0 || d >= P) throw new InvalidArgumentError('dstIndices', `ranks must be in [0, ${P})`, `got ${d}`);
        q[d].push(i);
      }
    });
    return q;
  });
  const heads: number[][] = args.map(() => new Array<number>(P).fill(0));
  const result = args.map((a, r) =>
    Array.from(a.srcIndex, (s, j): [number, number] => {
      if (!Number.isInteger(s) || s < 0 || s >= P) throw new InvalidArgumentError(`rank ${r} srcIndex[${j}]`, `must be a rank in [0, ${P})`, `got ${s}`);
      const q = queues[s][r];
      const i = q[heads[s][r]++];
      if (i === undefined) throw new InvalidArgumentError(`rank ${r} srcIndex[${j}]`, `rank ${s} sends fewer splits to rank ${r} than it expects`);
      if (args[s].inputSplitSizes[i] !== a.outputSplitSizes[j]) {
        throw new InvalidArgumentError(`rank ${r} outputSplitSizes[${j}]`, `must equal the size of the matching input split ${i} of rank ${s}`, `${a.outputSplitSizes[j]} vs ${args[s].inputSplitSizes[i]}`);
      }
      return [s, i];
    }),
  );
  for (let s = 0; s < P; s++) {
    for (let r = 0; r < P; r++) {
      if (heads[s][r] !== queues[s][r].length) {
        throw new InvalidArgumentError(`rank ${s} dstIndices`, `sends ${queues[s][r].length} splits to rank ${r}, which expects ${heads[s][r]}`);
      }
    }
  }
  return result;
}

function prefix(sizes: ArrayLike<number>): number[] {
  const out = [0];
  for (let i = 0; i < sizes.length; i++) out.push(out[i] + sizes[i]);
  return out;
}

/**
 * One rank's side of a GroupCast or GroupReduce run as an all-to-all-v:
 *   sendGather    input row ranges [start, end) to pack, in order, into the send buffer (grouped by
 *                 destination rank, input order inside a group; a row sent to m ranks is packed m times);
 *   sendCounts    rows packed for each rank;
 *   recvCounts    rows arriving from each rank (the receive buffer is in rank order);
 *   recvPlace     triples [receive offset, output offset, length]: where each received run goes
 *                 (a cast places it, a reduce reduces it into the output).
 */
export interface A2AVLowering {
  readonly sendGather: Int32Array;
  readonly sendCounts: Int32Array;
  readonly recvCounts: Int32Array;
  readonly recvPlace: Int32Array;
}

/** Input split i goes to every rank of dsts[i]; output split j is filled from every rank of srcs[j]. */
function lower(inputSizes: ArrayLike<number>, dsts: readonly (readonly number[])[], outputSizes: ArrayLike<number>, srcs: readonly (readonly number[])[], worldSize: number): A2AVLowering {
  const inOff = prefix(inputSizes);
  const sendCounts = new Int32Array(worldSize);
  const byDst: number[][] = Array.from({ length: worldSize }, () => []);
  dsts.forEach((list, i) => {
    for (const d of list) {
      byDst[d].push(inOff[i], inOff[i + 1]);
      sendCounts[d] += inputSizes[i];
    }
  });
  const outOff = prefix(outputSizes);
  const recvCounts = new Int32Array(worldSize);
  const bySrc: number[][] = Array.from({ length: worldSize }, () => []);
  srcs.forEach((list, j) => {
    for (const s of list) {
      bySrc[s].push(j);
      recvCounts[s] += outputSizes[j];
    }
  });
  const place: number[] = [];
  let at = 0;
  for (let s = 0; s < worldSize; s++) {
    for (const j of bySrc[s]) {
      place.push(at, outOff[j], outputSizes[j]);
      at += outputSizes[j];
    }
  }
  return { sendGather: Int32Array.from(byDst.flat()), sendCounts, recvCounts, recvPlace: Int32Array.from(place) };
}

export function lowerGroupCast(args: GroupCastArgs, worldSize: number): A2AVLowering {
  return lower(args.inputSplitSizes, args.dstIndices, args.outputSplitSizes, Array.from(args.srcIndex, (s) => [s]), worldSize);
}

/** Each input split goes to its one destination; each output split receives from all its sources. */
export function lowerGroupReduce(args: GroupReduceArgs, worldSize: number): A2AVLowering {
  return lower(args.inputSplitSizes, Array.from(args.dstIndex, (d) => [d]), args.outputSplitSizes, args.srcIndices, worldSize);
}
