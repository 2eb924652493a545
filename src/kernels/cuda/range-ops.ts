/**
 * The launcher of the range kernels (range_ops.cu): the row movement of GroupCast / GroupReduce
 * for tensors on a GPU.
 *
 *   gather     out = rows ranges[0] ++ rows ranges[1] ++ ...             (any dtype, byte copies)
 *   reduce     dst[d_i + j] (op)= src[s_i + j] for every range i          (sum | avg, fp32 math)
 *   lseMerge   (dstOut, dstLse)[d_i + j] merged with (srcOut, srcLse)[s_i + j] by log-sum-exp
 *
 * with the semantics of the host GroupReduce (src/comm/group-collective.ts): contributions to a
 * row apply in the order the ranges are listed; avg divides each receiving row by 1 + the number
 * of ranges that cover it (rows covered by none are left alone); 16-bit data is summed in fp32
 * and rounded once; the lse merge follows mergeRow's -inf rules (src/kernels/cpu/merge.ts).
 *
 * The range lists are turned into device-resident layouts by pure host functions
 * (`planGatherLayout`, `planReduceLayout`: validation and prefix building, unit-tested without a
 * GPU). `prepareGather` / `prepareReduce` upload one for reuse across launches (the runtime's
 * arguments are fixed per plan); the methods also take plain lists, in which case the layout is
 * uploaded, used and freed, and the call waits for its stream before returning.
 *
 * Input and output must not overlap. This module imports the device layer for types only, so the
 * host planning functions load without koffi or a GPU.
 */
import type { CuDevicePtr } from '../../device/cuda-driver.js';
import type { CudaDevice, DeviceBuffer, Kernel, KernelArg, Module, Stream } from '../../device/device.js';
import type { DeviceTensor } from '../../device/device-tensor.js';
import { type DType, bytesPerElement } from '../../dtype.js';
import { InvalidArgumentError, ShapeError } from '../../errors.js';
import { readKernelSource } from './source.js';

/** [start, end) row ranges: pairs, or a flat Int32Array [s0, e0, s1, e1, ...]. */
export type RowRanges = Int32Array | ReadonlyArray<readonly [number, number]>;

export type RangeReduceOp = 'sum' | 'avg';

// Must match range_ops.cu.
const THREADS = 256;
const GATHER_UNITS_PER_BLOCK = THREADS * 4 * 2;
const REDUCE_VECS_PER_BLOCK = THREADS * 4;
const LSE_STEPS_PER_BLOCK = 4;

// ---------------------------------------------------------------------------------------------
// Host layouts (pure)

function isCount(x: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= 0x7fffffff;
}

/** The ranges as a flat Int32Array, each checked to be an integer range inside [0, rows). */
export function flattenRowRanges(ranges: RowRanges, rows: number, argument = 'ranges'): Int32Array {
  let flat: Int32Array;
  if (ranges instanceof Int32Array) {
    if (ranges.length % 2 !== 0) throw new InvalidArgumentError(argument, 'a flat Int32Array of ranges must have an even length', `got ${ranges.length}`);
    flat = ranges;
  } else if (Array.isArray(ranges)) {
    flat = new Int32Array(ranges.length * 2);
    ranges.forEach((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2 || !isCount(pair[0]) || !isCount(pair[1])) {
        throw new InvalidArgumentError(`${argument}[${i}]`, 'must be a [start, end) pair of non-negative integers', `got ${JSON.stringify(pair)}`);
      }
      flat[2 * i] = pair[0];
      flat[2 * i + 1] = pair[1];
    });
  } else {
    throw new InvalidArgumentError(argument, 'must be an array of [start, end) pairs or a flat Int32Array');
  }
  for (let i = 0; i < flat.length; i += 2) {
    const s = flat[i];
    const e = flat[i + 1];
    if (s < 0 || e < s || e > rows) {
      throw new InvalidArgumentError(`${argument}[${i / 2}]`, `must satisfy 0 <= start <= end <= ${rows} (the rows of the tensor it indexes)`, `got [${s}, ${e})`);
    }
  }
  return flat;
}

/** A gather's layout: the ranges and the exclusive prefix of their lengths (output row offsets). */
export interface GatherLayout {
  /** [s0, e0, s1, e1, ...] */
  readonly ranges: Int32Array;
  /** [numRanges + 1]: prefix[i] is range i's first output row; prefix[numRanges] the total. */
  readonly prefix: Int32Array;
  readonly numRanges: number;
  readonly totalRows: number;
}

/** Validates `ranges` against an input of `inputRows` rows and builds their output offsets. */
export function planGatherLayout(ranges: RowRanges, inputRows: number, argument = 'ranges'): GatherLayout {
  if (!isCount(inputRows)) throw new InvalidArgumentError('inputRows', 'must be a non-negative int32 row count', `got ${inputRows}`);
  const flat = flattenRowRanges(ranges, inputRows, argument);
  const n = flat.length / 2;
  const prefix = new Int32Array(n + 1);
  let total = 0;
  for (let i = 0; i < n; i++) {
    prefix[i] = total;
    total += flat[2 * i + 1] - flat[2 * i];
    if (total > 0x7fffffff) throw new InvalidArgumentError(argument, 'must select fewer than 2^31 rows in all', `${total} rows at range ${i}`);
  }
  prefix[n] = total;
  return { ranges: flat.slice(), prefix, numRanges: n, totalRows: total };
}

/**
 * A reduce's layout. The destination rows that receive anything are cut into segments, maximal
 * runs covered by the same ranges; the segments, back to back, are the launch's compact row
 * space. Segment j is destination rows [dst[j], dst[j] + len_j), len_j = prefix[j+1] - prefix[j],
 * and its contributions are contribSrc[k] .. (+len_j) for k in [contribPrefix[j], contribPrefix[j+1]),
 * in the order the ranges were listed.
 */
export interface ReduceLayout {
  readonly dst: Int32Array;
  readonly prefix: Int32Array;
  readonly contribPrefix: Int32Array;
  readonly contribSrc: Int32Array;
  readonly numSegments: number;
  /** Destination rows that receive at least one contribution. */
  readonly totalRows: number;
}

function upperBound(sorted: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Validates a reduce's ranges (source rows `srcRanges` of a `srcRows`-row source, each added into
 * the destination rows starting at `dstStarts[i]` of a `dstRows`-row destination) and builds its
 * layout. Ranges may overlap in the destination (that is the point: several contributors).
 */
export function planReduceLayout(srcRanges: RowRanges, dstStarts: ArrayLike<number>, srcRows: number, dstRows: number): ReduceLayout {
  if (!isCount(srcRows)) throw new InvalidArgumentError('srcRows', 'must be a non-negative int32 row count', `got ${srcRows}`);
  if (!isCount(dstRows)) throw new InvalidArgumentError('dstRows', 'must be a non-negative int32 row count', `got ${dstRows}`);
  const src = flattenRowRanges(srcRanges, srcRows, 'srcRanges');
  const n = src.length / 2;
  if (dstStarts === null || typeof dstStarts !== 'object' || typeof dstStarts.length !== 'number') {
    throw new InvalidArgumentError('dstStarts', 'must be an array of destination row offsets, one per range');
  }
  if (dstStarts.length !== n) throw new InvalidArgumentError('dstStarts', 'must have one destination row per source range', `${dstStarts.length} vs ${n}`);
  const ends: number[] = [];
  for (let i = 0; i < n; i++) {
    const d = dstStarts[i];
    const len = src[2 * i + 1] - src[2 * i];
    if (!isCount(d) || d + len > dstRows) {
      throw new InvalidArgumentError(`dstStarts[${i}]`, `must be an integer with 0 <= start and start + rows <= ${dstRows} (the destination's rows)`, `got ${d} for ${len} rows`);
    }
    if (len > 0) ends.push(d, d + len);
  }
  const points = Float64Array.from(ends).sort();
  let u = 0;
  for (let i = 0; i < points.length; i++) if (i === 0 || points[i] !== points[u - 1]) points[u++] = points[i];
  const cuts = points.subarray(0, u);
  const numCuts = Math.max(u - 1, 0);

  // Two passes over the ranges (count, then fill) give the per-segment contribution lists in
  // the ranges' order without a list per segment.
  const counts = new Int32Array(numCuts);
  const first = new Int32Array(n);
  const last = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const len = src[2 * i + 1] - src[2 * i];
    if (len === 0) continue;
    const d = dstStarts[i];
    first[i] = upperBound(cuts, d) - 1;
    last[i] = upperBound(cuts, d + len - 1) - 1;
    for (let j = first[i]; j <= last[i]; j++) counts[j]++;
  }
  const segOf = new Int32Array(numCuts).fill(-1);
  let m = 0;
  for (let j = 0; j < numCuts; j++) if (counts[j] > 0) segOf[j] = m++;
  const dst = new Int32Array(m);
  const prefix = new Int32Array(m + 1);
  const contribPrefix = new Int32Array(m + 1);
  let rows = 0;
  let contribs = 0;
  for (let j = 0; j < numCuts; j++) {
    const s = segOf[j];
    if (s < 0) continue;
    dst[s] = cuts[j];
    prefix[s] = rows;
    contribPrefix[s] = contribs;
    rows += cuts[j + 1] - cuts[j];
    contribs += counts[j];
  }
  prefix[m] = rows;
  contribPrefix[m] = contribs;
  const contribSrc = new Int32Array(contribs);
  const cursor = contribPrefix.slice(0, m);
  for (let i = 0; i < n; i++) {
    const len = src[2 * i + 1] - src[2 * i];
    if (len === 0) continue;
    for (let j = first[i]; j <= last[i]; j++) contribSrc[cursor[segOf[j]]++] = src[2 * i] + (cuts[j] - dstStarts[i]);
  }
  return { dst, prefix, contribPrefix, contribSrc, numSegments: m, totalRows: rows };
}

// ---------------------------------------------------------------------------------------------
// Device-resident layouts

/** Int32 arrays packed into one device buffer (one allocation, one upload). */
class PackedInts {
  readonly buffer: DeviceBuffer | null;
  private readonly offsets: number[] = [];

  constructor(device: CudaDevice, arrays: readonly Int32Array[]) {
    let at = 0;
    for (const a of arrays) {
      this.offsets.push(at);
      at += Math.ceil(a.byteLength / 16) * 16;
    }
    if (at === 0) {
      this.buffer = null;
      return;
    }
    const host = new Uint8Array(at);
    arrays.forEach((a, i) => host.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), this.offsets[i]));
    this.buffer = device.upload(host);
  }

  ptr(i: number): CuDevicePtr {
    return this.buffer === null ? 0n : this.buffer.ptr + BigInt(this.offsets[i]);
  }

  free(after?: Stream): void {
    if (this.buffer === null || this.buffer.isFreed) return;
    if (after === undefined) this.buffer.free();
    else this.buffer.freeAfter(after);
  }
}

/** A gather layout on the device, for reuse across launches; `free()` it when done. */
export class RangeGatherPlan {
  /** @internal */
  readonly ints: PackedInts;
  constructor(
    readonly device: CudaDevice,
    readonly layout: GatherLayout,
    /** Rows of the input it was checked against. */
    readonly inputRows: number,
  ) {
    this.ints = new PackedInts(device, [layout.ranges, layout.prefix]);
  }
  /** Frees the layout; with `after`, once the work queued on that stream is done. */
  free(after?: Stream): void {
    this.ints.free(after);
  }
}

/** A reduce layout on the device, for reuse across launches; `free()` it when done. */
export class RangeReducePlan {
  /** @internal */
  readonly ints: PackedInts;
  constructor(
    readonly device: CudaDevice,
    readonly layout: ReduceLayout,
    readonly srcRows: number,
    readonly dstRows: number,
  ) {
    this.ints = new PackedInts(device, [layout.dst, layout.prefix, layout.contribPrefix, layout.contribSrc]);
  }
  /** Frees the layout; with `after`, once the work queued on that stream is done. */
  free(after?: Stream): void {
    this.ints.free(after);
  }
}

// ---------------------------------------------------------------------------------------------
// Launcher

const REDUCE_DTYPES: Partial<Record<DType, { tag: string; vecs: readonly number[] }>> = {
  float32: { tag: 'f32', vecs: [4, 2, 1] },
  bfloat16: { tag: 'bf16', vecs: [8, 4, 2, 1] },
  float16: { tag: 'f16', vecs: [8, 4, 2, 1] },
};

/** Elements per row of a token-major tensor (the product of all but the first dimension). */
function rowElems(t: DeviceTensor): number {
  return t.shape.slice(1).reduce((a, b) => a * b, 1);
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** The widest of `widths` (bytes) that divides the row size and every pointer's alignment. */
function widestUnit(rowBytes: number, ptrs: readonly CuDevicePtr[], widths: readonly number[]): number {
  for (const w of widths) {
    if (rowBytes % w === 0 && ptrs.every((p) => p % BigInt(w) === 0n)) return w;
  }
  return widths[widths.length - 1];
}

const ptrArg = (value: CuDevicePtr | DeviceBuffer): KernelArg => ({ type: 'ptr', value });
const i32Arg = (value: number): KernelArg => ({ type: 'i32', value });

export interface RangeLaunchOptions {
  /** Stream to queue on (default: the device's legacy default stream). */
  stream?: Stream;
}

/** The compiled range kernels of one device. */
export class CudaRangeOps {
  readonly module: Module;

  constructor(
    readonly device: CudaDevice,
    options: { cacheDir?: string } = {},
  ) {
    const opts: { name: string; cacheDir?: string } = { name: 'range_ops.cu' };
    if (options.cacheDir !== undefined) opts.cacheDir = options.cacheDir;
    this.module = device.compile(readKernelSource('range_ops.cu'), opts);
  }

  /** Uploads a gather layout for an input of `inputRows` rows, for reuse. */
  prepareGather(ranges: RowRanges, inputRows: number): RangeGatherPlan {
    return new RangeGatherPlan(this.device, planGatherLayout(ranges, inputRows), inputRows);
  }

  /** Uploads a reduce / lse-merge layout, for reuse. */
  prepareReduce(srcRanges: RowRanges, dstStarts: ArrayLike<number>, srcRows: number, dstRows: number): RangeReducePlan {
    return new RangeReducePlan(this.device, planReduceLayout(srcRanges, dstStarts, srcRows, dstRows), srcRows, dstRows);
  }

  /**
   * Rows `ranges` of `input` ([T, ...]) back to back into `output` ([sum of lengths, ...], same
   * dtype; allocated when not given). Returns the output.
   */
  gather(input: DeviceTensor, ranges: RowRanges | RangeGatherPlan, output?: DeviceTensor, options: RangeLaunchOptions = {}): DeviceTensor {
    this.requireHere(input, 'input');
    if (input.rank < 1) throw new ShapeError('input', 'must have at least one dimension (rows)', `got ${shapeText(input.shape)}`);
    const rows = input.shape[0];
    const plan = ranges instanceof RangeGatherPlan ? this.checkGatherPlan(ranges, rows) : this.prepareGather(ranges, rows);
    try {
      const shape = [plan.layout.totalRows, ...input.shape.slice(1)];
      let out = output;
      if (out === undefined) {
        out = this.emptyLike(input, shape);
      } else {
        this.requireHere(out, 'output');
        if (out.dtype !== input.dtype) throw new ShapeError('output', "dtype must equal input's", `${out.dtype} vs ${input.dtype}`);
        if (out.rank !== shape.length || out.shape.some((d, i) => d !== shape[i])) {
          throw new ShapeError('output', `must have shape ${shapeText(shape)} (the gathered rows)`, `got ${shapeText(out.shape)}`);
        }
      }
      this.gatherBuffers(plan, input.buffer, out.buffer, rowElems(input) * bytesPerElement(input.dtype), options);
      return out;
    } finally {
      if (!(ranges instanceof RangeGatherPlan)) this.release(plan, options);
    }
  }

  /** Buffer-level gather: rows of `rowBytes` bytes; the buffers' sizes are checked against the plan. */
  gatherBuffers(plan: RangeGatherPlan, input: DeviceBuffer, output: DeviceBuffer, rowBytes: number, options: RangeLaunchOptions = {}): void {
    if (!isCount(rowBytes)) throw new InvalidArgumentError('rowBytes', 'must be a non-negative integer', `got ${rowBytes}`);
    if (input.bytes < plan.inputRows * rowBytes) throw new InvalidArgumentError('input', `must hold ${plan.inputRows} rows of ${rowBytes} bytes`, `${input.bytes} bytes`);
    if (output.bytes < plan.layout.totalRows * rowBytes) throw new InvalidArgumentError('output', `must hold ${plan.layout.totalRows} rows of ${rowBytes} bytes`, `${output.bytes} bytes`);
    const total = plan.layout.totalRows;
    if (total === 0 || rowBytes === 0) return;
    const unit = widestUnit(rowBytes, [input.ptr, output.ptr], [16, 8, 4, 2, 1]);
    const rowUnits = rowBytes / unit;
    const rowsPerBlock = Math.max(1, Math.floor(GATHER_UNITS_PER_BLOCK / rowUnits));
    this.launch(this.module.kernel(`range_gather_b${unit}`), Math.ceil(total / rowsPerBlock), options, [
      ptrArg(input),
      ptrArg(output),
      ptrArg(plan.ints.ptr(0)),
      ptrArg(plan.ints.ptr(1)),
      i32Arg(plan.layout.numRanges),
      i32Arg(total),
      i32Arg(rowUnits),
      i32Arg(rowsPerBlock),
    ]);
  }

  /**
   * For every range i: dst rows [dstStarts[i], +len) (op)= src rows srcRanges[i], in place in
   * `dst` (float32, bfloat16 or float16, same dtype and row shape as `src`).
   */
  reduce(op: RangeReduceOp, src: DeviceTensor, dst: DeviceTensor, ranges: { srcRanges: RowRanges; dstStarts: ArrayLike<number> } | RangeReducePlan, options: RangeLaunchOptions = {}): void {
    if (op !== 'sum' && op !== 'avg') throw new InvalidArgumentError('op', "must be 'sum' or 'avg'", `got ${String(op)}`);
    this.requireHere(src, 'src');
    this.requireHere(dst, 'dst');
    const spec = REDUCE_DTYPES[dst.dtype];
    if (spec === undefined) throw new ShapeError('dst', 'must be float32, bfloat16 or float16 for a range reduce', `got ${dst.dtype}`);
    if (src.dtype !== dst.dtype) throw new ShapeError('src', "dtype must equal dst's", `${src.dtype} vs ${dst.dtype}`);
    this.requireRowShape(src, dst, 'src', 'dst');
    const plan = this.reducePlan(ranges, src.shape[0], dst.shape[0]);
    try {
      const total = plan.layout.totalRows;
      const w = rowElems(dst);
      if (total === 0 || w === 0) return;
      const bpe = bytesPerElement(dst.dtype);
      const vec = widestUnit(w * bpe, [src.buffer.ptr, dst.buffer.ptr], spec.vecs.map((v) => v * bpe)) / bpe;
      const rowVecs = w / vec;
      const rowsPerBlock = Math.max(1, Math.floor(REDUCE_VECS_PER_BLOCK / rowVecs));
      this.launch(this.module.kernel(`range_reduce_${op}_${spec.tag}_v${vec}`), Math.ceil(total / rowsPerBlock), options, [
        ptrArg(src.buffer),
        ptrArg(dst.buffer),
        ...this.segmentArgs(plan),
        i32Arg(rowVecs),
        i32Arg(rowsPerBlock),
      ]);
    } finally {
      if (!(ranges instanceof RangeReducePlan)) this.release(plan, options);
    }
  }

  /**
   * Log-sum-exp merge of the partial results (srcOut [Ts, H, D], srcLse [Ts, H]) into the
   * accumulators (dstOut [Td, H, D], dstLse [Td, H]), all float32, in place, range by range.
   */
  lseMerge(
    src: { out: DeviceTensor; lse: DeviceTensor },
    dst: { out: DeviceTensor; lse: DeviceTensor },
    ranges: { srcRanges: RowRanges; dstStarts: ArrayLike<number> } | RangeReducePlan,
    options: RangeLaunchOptions = {},
  ): void {
    const named: Array<[string, DeviceTensor]> = [['src.out', src.out], ['src.lse', src.lse], ['dst.out', dst.out], ['dst.lse', dst.lse]];
    for (const [name, t] of named) {
      this.requireHere(t, name);
      if (t.dtype !== 'float32') throw new ShapeError(name, 'must be float32 for a range lse merge', `got ${t.dtype}`);
    }
    if (dst.out.rank !== 3) throw new ShapeError('dst.out', 'must be 3-D [tokens, heads, headDim]', `got ${shapeText(dst.out.shape)}`);
    const [rowsD, heads, dim] = dst.out.shape;
    const rowsS = src.out.shape[0];
    this.requireRowShape(src.out, dst.out, 'src.out', 'dst.out');
    if (src.lse.rank !== 2 || src.lse.shape[0] !== rowsS || src.lse.shape[1] !== heads) {
      throw new ShapeError('src.lse', `must have shape ${shapeText([rowsS, heads])} (tokens, heads of src.out)`, `got ${shapeText(src.lse.shape)}`);
    }
    if (dst.lse.rank !== 2 || dst.lse.shape[0] !== rowsD || dst.lse.shape[1] !== heads) {
      throw new ShapeError('dst.lse', `must have shape ${shapeText([rowsD, heads])} (tokens, heads of dst.out)`, `got ${shapeText(dst.lse.shape)}`);
    }
    const plan = this.reducePlan(ranges, rowsS, rowsD);
    try {
      const total = plan.layout.totalRows;
      if (total === 0 || heads === 0 || dim === 0) return;
      const vec = widestUnit(dim * 4, [src.out.buffer.ptr, dst.out.buffer.ptr], [16, 8, 4]) / 4;
      const dimVecs = dim / vec;
      let lanes = 1;
      while (lanes < 32 && lanes < dimVecs) lanes *= 2;
      const groups = THREADS / lanes;
      const rowsPerBlock = Math.max(1, Math.floor((groups * LSE_STEPS_PER_BLOCK) / heads));
      this.launch(this.module.kernel(`range_lse_merge_f32_v${vec}`), Math.ceil(total / rowsPerBlock), options, [
        ptrArg(src.out.buffer),
        ptrArg(src.lse.buffer),
        ptrArg(dst.out.buffer),
        ptrArg(dst.lse.buffer),
        ...this.segmentArgs(plan),
        i32Arg(heads),
        i32Arg(dimVecs),
        i32Arg(lanes),
        i32Arg(rowsPerBlock),
      ]);
    } finally {
      if (!(ranges instanceof RangeReducePlan)) this.release(plan, options);
    }
  }

  private segmentArgs(plan: RangeReducePlan): KernelArg[] {
    return [
      ptrArg(plan.ints.ptr(0)),
      ptrArg(plan.ints.ptr(1)),
      ptrArg(plan.ints.ptr(2)),
      ptrArg(plan.ints.ptr(3)),
      i32Arg(plan.layout.numSegments),
      i32Arg(plan.layout.totalRows),
    ];
  }

  private reducePlan(ranges: { srcRanges: RowRanges; dstStarts: ArrayLike<number> } | RangeReducePlan, srcRows: number, dstRows: number): RangeReducePlan {
    if (ranges instanceof RangeReducePlan) {
      if (ranges.device !== this.device) throw new InvalidArgumentError('ranges', "must be a plan prepared on this launcher's device");
      if (ranges.ints.buffer?.isFreed === true) throw new InvalidArgumentError('ranges', 'plan was freed');
      if (ranges.srcRows !== srcRows || ranges.dstRows !== dstRows) {
        throw new InvalidArgumentError('ranges', `plan was prepared for ${ranges.srcRows} source and ${ranges.dstRows} destination rows`, `got ${srcRows} and ${dstRows}`);
      }
      return ranges;
    }
    if (ranges === null || typeof ranges !== 'object') throw new InvalidArgumentError('ranges', 'must be { srcRanges, dstStarts } or a RangeReducePlan');
    return this.prepareReduce(ranges.srcRanges, ranges.dstStarts, srcRows, dstRows);
  }

  private checkGatherPlan(plan: RangeGatherPlan, rows: number): RangeGatherPlan {
    if (plan.device !== this.device) throw new InvalidArgumentError('ranges', "must be a plan prepared on this launcher's device");
    if (plan.ints.buffer?.isFreed === true) throw new InvalidArgumentError('ranges', 'plan was freed');
    if (plan.inputRows !== rows) throw new InvalidArgumentError('ranges', `plan was prepared for ${plan.inputRows} input rows`, `input has ${rows}`);
    return plan;
  }

  /** A one-shot layout is freed once the stream is done with it: a pooled buffer may be handed out and overwritten by work on another stream. */
  private release(plan: RangeGatherPlan | RangeReducePlan, options: RangeLaunchOptions): void {
    if (plan.ints.buffer !== null) (options.stream ?? this.device.defaultStream).synchronize();
    plan.free();
  }

  private requireHere(t: DeviceTensor, name: string): void {
    if (t === null || typeof t !== 'object' || !('buffer' in t) || !('device' in t)) throw new InvalidArgumentError(name, 'must be a DeviceTensor');
    if (t.device !== this.device) throw new InvalidArgumentError(name, "must live on the launcher's device", `device ${t.device.ordinal} vs ${this.device.ordinal}`);
    if (t.isFreed) throw new InvalidArgumentError(name, 'was freed');
  }

  private requireRowShape(a: DeviceTensor, b: DeviceTensor, nameA: string, nameB: string): void {
    if (a.rank < 1 || b.rank !== a.rank || a.shape.some((d, i) => i > 0 && d !== b.shape[i])) {
      throw new ShapeError(nameA, `must have the row shape of ${nameB} (all but the first dimension)`, `${shapeText(a.shape)} vs ${shapeText(b.shape)}`);
    }
  }

  private emptyLike(like: DeviceTensor, shape: number[]): DeviceTensor {
    // The constructor comes from the instance so that this module needs DeviceTensor as a type only.
    const ctor = like.constructor as typeof DeviceTensor;
    return ctor.empty(this.device, like.dtype, shape);
  }

  private launch(kernel: Kernel, blocks: number, options: RangeLaunchOptions, args: KernelArg[]): void {
    const config: { grid: number; block: number; stream?: Stream } = { grid: blocks, block: THREADS };
    if (options.stream !== undefined) config.stream = options.stream;
    kernel.launch(config, args);
  }
}
