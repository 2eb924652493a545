/**
 * GroupCast and GroupReduce (reference 03 §1.1-1.4) on any ProcessGroup, each lowered onto one
 * all-to-all-v. A "row" is one token's contiguous elements (heads × headDim for k/v/out, heads
 * for lse); split sizes count rows.
 *
 * The lowering (which input rows to pack for each peer, and where each received block goes) is
 * a pure function of the per-rank arguments, so it is computed once per arguments object and
 * cached: the plan's stage arguments are built once and reused by every forward and backward
 * call, and then a call only packs, exchanges and places. Arguments are treated as immutable.
 *
 * A call returns at once with a handle; the pack and the exchange start immediately, and the
 * placement (cast) or reduction (reduce) runs when the handle is waited on, as the reference's
 * post-process function does. This module is browser-safe.
 */
import { InvalidArgumentError } from '../errors.js';
import { bf16BitsToFloat, f16BitsToFloat, floatToBf16Bits, floatToF16Bits } from '../dtype.js';
import { mergeRow } from '../lse-merge.js';
import { lowerGroupCast, lowerGroupReduce, type A2AVLowering, type GroupCastArgs, type GroupReduceArgs } from './group-collective-args.js';
import type { CommWork, HalfType, HostArray, ProcessGroup } from './process-group.js';

/** One rank's side of a GroupCast or GroupReduce, lowered onto all-to-all-v (rows, not elements). */
export interface PreparedGroupCollective {
  readonly worldSize: number;
  readonly lowering: A2AVLowering;
  readonly inputRows: number;
  readonly outputRows: number;
  /** Packing is the identity (every input row once, in order): the input is sent as it is. */
  readonly sendIsInput: boolean;
  /** Cast only: the rank-ordered receive layout is already the output order, so receive in place. */
  readonly receiveInPlace: boolean;
  /** Rows this rank sends, and receives (copies to itself included), as in 03 §1.10. */
  readonly sendRows: number;
  readonly recvRows: number;
  /** Reduce only: [output row offset, rows, number of contributors] per output split that receives any. */
  readonly reducedSplits: Int32Array;
}

export type GroupReduceOp = 'sum' | 'avg' | 'lse';

export interface GroupReduceOptions {
  /** Elements per row of `input` / `output`. */
  rowWidth: number;
  /** Uint16Array data only: the 16-bit float format (reduction runs in float32). */
  halfType?: HalfType;
  /** op 'lse': heads per row; the lse arrays hold `heads` values per row, the data `rowWidth` = heads × headDim. */
  heads?: number;
  /** op 'lse': log-sum-exp of the partial rows. */
  inputLse?: Float32Array | Float64Array;
  /** op 'lse': log-sum-exp of the accumulator rows, merged in place. */
  outputLse?: Float32Array | Float64Array;
}

const castCache = new WeakMap<GroupCastArgs, Map<number, PreparedGroupCollective>>();
const reduceCache = new WeakMap<GroupReduceArgs, Map<number, PreparedGroupCollective>>();

function total(sizes: ArrayLike<number>): number {
  let t = 0;
  for (let i = 0; i < sizes.length; i++) t += sizes[i];
  return t;
}

function checkSizes(sizes: Int32Array, what: string): void {
  sizes.forEach((s, i) => {
    if (s < 0) throw new InvalidArgumentError(`${what}[${i}]`, 'must be a non-negative row count', `got ${s}`);
  });
}

function checkRank(r: number, worldSize: number, what: string): void {
  if (!Number.isInteger(r) || r < 0 || r >= worldSize) throw new InvalidArgumentError(what, `must be a rank in [0, ${worldSize})`, `got ${r}`);
}

function checkRankList(list: readonly number[], worldSize: number, what: string): void {
  list.forEach((r, k) => {
    checkRank(r, worldSize, `${what}[${k}]`);
    if (k > 0 && r <= list[k - 1]) throw new InvalidArgumentError(what, 'must list distinct ranks in ascending order', `got [${list.join(', ')}]`);
  });
}

function isIdentityGather(gather: Int32Array, rows: number): boolean {
  let at = 0;
  for (let i = 0; i < gather.length; i += 2) {
    if (gather[i] !== at) return false;
    at = gather[i + 1];
  }
  return at === rows;
}

function prepared(lowering: A2AVLowering, worldSize: number, inputRows: number, outputRows: number, cast: boolean, reducedSplits: Int32Array): PreparedGroupCollective {
  let inPlace = cast;
  for (let i = 0; inPlace && i < lowering.recvPlace.length; i += 3) inPlace = lowering.recvPlace[i] === lowering.recvPlace[i + 1];
  return {
    worldSize,
    lowering,
    inputRows,
    outputRows,
    sendIsInput: isIdentityGather(lowering.sendGather, inputRows),
    receiveInPlace: inPlace && total(lowering.recvCounts) === outputRows,
    sendRows: total(lowering.sendCounts),
    recvRows: total(lowering.recvCounts),
    reducedSplits,
  };
}

/** The lowering of one rank's GroupCast arguments, computed once per arguments object. */
export function prepareGroupCast(args: GroupCastArgs, worldSize: number): PreparedGroupCollective {
  const cached = castCache.get(args)?.get(worldSize);
  if (cached !== undefined) return cached;
  const n = args.inputSplitSizes.length;
  if (args.dstIndices.length !== n) throw new InvalidArgumentError('dstIndices', 'must have one rank list per input split', `${args.dstIndices.length} vs ${n}`);
  if (args.srcIndex.length !== args.outputSplitSizes.length) {
    throw new InvalidArgumentError('srcIndex', 'must have one rank per output split', `${args.srcIndex.length} vs ${args.outputSplitSizes.length}`);
  }
  checkSizes(args.inputSplitSizes, 'inputSplitSizes');
  checkSizes(args.outputSplitSizes, 'outputSplitSizes');
  args.dstIndices.forEach((d, i) => checkRankList(d, worldSize, `dstIndices[${i}]`));
  args.srcIndex.forEach((s, j) => checkRank(s, worldSize, `srcIndex[${j}]`));
  const p = prepared(lowerGroupCast(args, worldSize), worldSize, total(args.inputSplitSizes), total(args.outputSplitSizes), true, new Int32Array(0));
  const byWorld = castCache.get(args) ?? new Map<number, PreparedGroupCollective>();
  byWorld.set(worldSize, p);
  castCache.set(args, byWorld);
  return p;
}

/** The lowering of one rank's GroupReduce arguments, computed once per arguments object. */
export function prepareGroupReduce(args: GroupReduceArgs, worldSize: number): PreparedGroupCollective {
  const cached = reduceCache.get(args)?.get(worldSize);
  if (cached !== undefined) return cached;
  const n = args.inputSplitSizes.length;
  if (args.dstIndex.length !== n) throw new InvalidArgumentError('dstIndex', 'must have one rank per input split', `${args.dstIndex.length} vs ${n}`);
  if (args.srcIndices.length !== args.outputSplitSizes.length) {
    throw new InvalidArgumentError('srcIndices', 'must have one rank list per output split', `${args.srcIndices.length} vs ${args.outputSplitSizes.length}`);
  }
  checkSizes(args.inputSplitSizes, 'inputSplitSizes');
  checkSizes(args.outputSplitSizes, 'outputSplitSizes');
  args.dstIndex.forEach((d, i) => checkRank(d, worldSize, `dstIndex[${i}]`));
  args.srcIndices.forEach((s, j) => checkRankList(s, worldSize, `srcIndices[${j}]`));
  const splits: number[] = [];
  let at = 0;
  args.outputSplitSizes.forEach((size, j) => {
    const k = args.srcIndices[j].length;
    if (k > 0 && size > 0) splits.push(at, size, k);
    at += size;
  });
  const p = prepared(lowerGroupReduce(args, worldSize), worldSize, total(args.inputSplitSizes), at, false, Int32Array.from(splits));
  const byWorld = reduceCache.get(args) ?? new Map<number, PreparedGroupCollective>();
  byWorld.set(worldSize, p);
  reduceCache.set(args, byWorld);
  return p;
}

function alloc<T extends HostArray>(like: T, length: number): T {
  return new (like.constructor as new (n: number) => T)(length);
}

function checkLength(a: { length: number }, rows: number, width: number, what: string): void {
  if (a.length !== rows * width) throw new InvalidArgumentError(`${what}.length`, `must be rows × rowWidth = ${rows} × ${width}`, `got ${a.length}`);
}

function checkWidth(rowWidth: number): void {
  if (!Number.isInteger(rowWidth) || rowWidth < 1) throw new InvalidArgumentError('rowWidth', 'must be a positive integer', `got ${rowWidth}`);
}

/** Packs the rows each peer gets, grouped by peer, and starts the all-to-all-v. */
function launch<T extends HostArray>(group: ProcessGroup, prep: PreparedGroupCollective, input: T, recv: T, w: number): CommWork<T> {
  const l = prep.lowering;
  let send = input;
  if (!prep.sendIsInput) {
    send = alloc(input, prep.sendRows * w);
    let at = 0;
    for (let i = 0; i < l.sendGather.length; i += 2) {
      const rows = input.subarray(l.sendGather[i] * w, l.sendGather[i + 1] * w);
      send.set(rows, at);
      at += rows.length;
    }
  }
  const sendCounts = Array.from(l.sendCounts, (c) => c * w);
  const recvCounts = Array.from(l.recvCounts, (c) => c * w);
  return group.allToAllV(send, sendCounts, recv, recvCounts);
}

/** A handle whose post-processing runs once, on the first wait(). */
function withPost<T>(inner: readonly CommWork<unknown>[], post: () => T): CommWork<T> {
  let result: Promise<T> | undefined;
  return {
    get completed(): boolean {
      return inner.every((w) => w.completed);
    },
    wait(): Promise<T> {
      result ??= Promise.all(inner.map((w) => w.wait())).then(post);
      return result;
    },
    then(onFulfilled, onRejected) {
      return this.wait().then(onFulfilled, onRejected);
    },
  };
}

/**
 * GroupCast: every input split goes to each rank in its destination list, and lands in that
 * rank's output split matched by the ordering contract (03 §1.1). `input` and `output` hold
 * `rowWidth` elements per row; `output` is allocated when not given. The handle resolves with
 * the output, filled in split order.
 */
export function groupCast<T extends HostArray>(group: ProcessGroup, input: T, args: GroupCastArgs, rowWidth: number, output?: T): CommWork<T> {
  checkWidth(rowWidth);
  const prep = prepareGroupCast(args, group.size);
  checkLength(input, prep.inputRows, rowWidth, 'input');
  const out = output ?? alloc(input, prep.outputRows * rowWidth);
  checkLength(out, prep.outputRows, rowWidth, 'output');
  if (out.constructor !== input.constructor) throw new InvalidArgumentError('output', 'must have the same element type as input', `${out.constructor.name} vs ${input.constructor.name}`);
  if (prep.receiveInPlace) return withPost([launch(group, prep, input, out, rowWidth)], () => out);
  const recv = alloc(input, prep.recvRows * rowWidth);
  const work = launch(group, prep, input, recv, rowWidth);
  return withPost([work], () => {
    const place = prep.lowering.recvPlace;
    for (let i = 0; i < place.length; i += 3) {
      out.set(recv.subarray(place[i] * rowWidth, (place[i] + place[i + 2]) * rowWidth), place[i + 1] * rowWidth);
    }
    return out;
  });
}

/**
 * GroupReduce: every input split is reduced into the output split of its destination rank that
 * the mirrored ordering contract matches. The output is the accumulator and is updated in place:
 *   sum  out += Σ contributions;
 *   avg  out = (out + Σ contributions) / (1 + contributors), splits with no contributor unchanged;
 *   lse  (out, outputLse) merged by log-sum-exp with every (input, inputLse) contribution.
 * Contributions are applied in ascending source rank, so results are deterministic. Sums of 16-bit
 * data run in float32 and are rounded once; 'lse' needs float32/float64 data.
 */
export function groupReduce<T extends HostArray>(group: ProcessGroup, input: T, output: T, args: GroupReduceArgs, op: GroupReduceOp, options: GroupReduceOptions): CommWork<T> {
  const w = options.rowWidth;
  checkWidth(w);
  if (op !== 'sum' && op !== 'avg' && op !== 'lse') throw new InvalidArgumentError('op', "must be 'sum', 'avg' or 'lse'", `got ${String(op)}`);
  const prep = prepareGroupReduce(args, group.size);
  checkLength(input, prep.inputRows, w, 'input');
  checkLength(output, prep.outputRows, w, 'output');
  if (output.constructor !== input.constructor) throw new InvalidArgumentError('output', 'must have the same element type as input', `${output.constructor.name} vs ${input.constructor.name}`);
  if (input instanceof Uint16Array && op !== 'lse' && options.halfType !== 'bfloat16' && options.halfType !== 'float16') {
    throw new InvalidArgumentError('options.halfType', "must be 'bfloat16' or 'float16' for Uint16Array data");
  }
  if (input instanceof Int32Array && op !== 'sum') throw new InvalidArgumentError('op', "Int32Array data reduce with 'sum' only", `got ${op}`);

  const recv = alloc(input, prep.recvRows * w);
  if (op !== 'lse') {
    const data = launch(group, prep, input, recv, w);
    return withPost([data], () => reduceRows(output, recv, prep, w, op, options.halfType));
  }

  // Everything is checked before the first exchange starts, so a bad call never leaves the
  // ranks' collective sequences out of step.
  const heads = options.heads;
  if (heads === undefined || !Number.isInteger(heads) || heads < 1 || w % heads !== 0) {
    throw new InvalidArgumentError('options.heads', 'must be a positive integer dividing rowWidth for op lse', `got ${heads} with rowWidth ${w}`);
  }
  if (!(input instanceof Float32Array || input instanceof Float64Array)) throw new InvalidArgumentError('input', "op 'lse' needs Float32Array or Float64Array data");
  const inLse = options.inputLse;
  const outLse = options.outputLse;
  if (inLse === undefined || outLse === undefined) throw new InvalidArgumentError('options.inputLse/outputLse', "are required for op 'lse'");
  checkLength(inLse, prep.inputRows, heads, 'options.inputLse');
  checkLength(outLse, prep.outputRows, heads, 'options.outputLse');
  const recvLse = alloc(inLse, prep.recvRows * heads);
  const data = launch(group, prep, input, recv, w);
  const lse = launch(group, prep, inLse, recvLse, heads);
  const dim = w / heads;
  return withPost([data, lse], () => {
    const acc = output as Float32Array | Float64Array;
    const part = recv as unknown as Float32Array | Float64Array;
    const place = prep.lowering.recvPlace;
    for (let i = 0; i < place.length; i += 3) {
      const from = place[i] * heads;
      const to = place[i + 1] * heads;
      const n = place[i + 2] * heads;
      for (let x = 0; x < n; x++) outLse[to + x] = mergeRow(acc, (to + x) * dim, outLse[to + x], part, (from + x) * dim, recvLse[from + x], dim);
    }
    return output;
  });
}

/** Sum or average of received rows into the accumulator, in receive (source rank) order. */
function reduceRows<T extends HostArray>(output: T, recv: T, prep: PreparedGroupCollective, w: number, op: 'sum' | 'avg', halfType: HalfType | undefined): T {
  const place = prep.lowering.recvPlace;
  const splits = prep.reducedSplits;
  let acc: Float32Array | Float64Array | Int32Array;
  let part: Float32Array | Float64Array | Int32Array;
  if (output instanceof Uint16Array) {
    // Widen only the rows that receive something; the rest keep their exact bits.
    const widen = halfType === 'bfloat16' ? bf16BitsToFloat : f16BitsToFloat;
    acc = new Float32Array(output.length);
    for (let s = 0; s < splits.length; s += 3) for (let e = splits[s] * w; e < (splits[s] + splits[s + 1]) * w; e++) acc[e] = widen(output[e]);
    part = new Float32Array(recv.length);
    for (let e = 0; e < recv.length; e++) part[e] = widen(recv[e]);
  } else {
    acc = output as Float32Array | Float64Array | Int32Array;
    part = recv as Float32Array | Float64Array | Int32Array;
  }
  for (let i = 0; i < place.length; i += 3) {
    const from = place[i] * w;
    const to = place[i + 1] * w;
    const n = place[i + 2] * w;
    for (let x = 0; x < n; x++) acc[to + x] += part[from + x];
  }
  if (op === 'avg') {
    for (let s = 0; s < splits.length; s += 3) {
      const d = 1 + splits[s + 2];
      for (let e = splits[s] * w; e < (splits[s] + splits[s + 1]) * w; e++) acc[e] /= d;
    }
  }
  if (output instanceof Uint16Array) {
    const narrow = halfType === 'bfloat16' ? floatToBf16Bits : floatToF16Bits;
    for (let s = 0; s < splits.length; s += 3) for (let e = splits[s] * w; e < (splits[s] + splits[s + 1]) * w; e++) output[e] = narrow(acc[e]);
  }
  return output;
}
