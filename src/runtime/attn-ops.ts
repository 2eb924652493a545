/**
 * What the distributed pipeline (calc-attn.ts, shard.ts) needs of a kind of tensor: allocate and
 * free, cast, move rows, run the kernels, and run GroupCast / GroupReduce / all-reduce over the
 * key's process group. The pipeline is written once against this interface; host Tensors get the
 * implementation below, device tensors one that 'magi-attention/device' registers for their
 * location (queued on a compute and a communication stream, ordered by events, the host never
 * waiting for the device). Browser-safe: this module never loads the device layer.
 */
import { bytesPerElement, fromNumbers, type DType } from '../dtype.js';
import { InvalidArgumentError } from '../errors.js';
import { groupCast, groupReduce } from '../comm/group-collective.js';
import type { GroupCastArgs, GroupReduceArgs } from '../comm/group-collective-args.js';
import type { GroupInfo, HostArray, ProcessGroup } from '../comm/process-group.js';
import type { FfaBackwardArgs, FfaBackwardResult, FfaForwardArgs, FfaForwardResult, KernelBackend } from '../kernels/backend.js';
import { selectKernelBackend, type AttnTensor, type DeviceTensorLike } from '../kernels/flex-flash-attn.js';
import { Tensor } from '../tensor.js';

/** A point in time on one lane of a rank's timeline (resolved to milliseconds after the call). */
export interface TimeMark {
  /** Milliseconds since `origin` (only valid once the call's work is done). */
  since(origin: TimeMark): number;
}

/** The lanes of a rank's timeline: compute (kernels) and communication (collectives, packing). */
export type Lane = 'compute' | 'comm';

export interface AttnOps<T> {
  /** 'host' or a device location ('cuda'). */
  readonly kind: string;
  readonly group: GroupInfo;
  /** Orders this call after the caller's earlier work on its tensors (device: stream waits). */
  begin(): void;
  /** Orders the caller's later work after this call's results (device: stream waits). */
  end(): void;

  shape(t: T): readonly number[];
  dtype(t: T): DType;
  zeros(dtype: DType, shape: readonly number[]): T;
  /** A tensor whose every element the caller writes before reading (device: no fill queued). */
  empty(dtype: DType, shape: readonly number[]): T;
  /** Every element of a float32 tensor set to `value`. */
  full(shape: readonly number[], value: number): T;
  /** A new tensor: `t` converted to `dtype` (a copy when the dtype is the same). */
  cast(t: T, dtype: DType): T;
  /** Frees `t` once the work queued so far no longer needs it (host: nothing to do). */
  release(t: T): void;
  /** Rows [start, end) of `t` ([rows, ...]) as a tensor sharing its memory (releasing a view frees nothing). */
  rowsView(t: T, start: number, end: number): T;
  /** `t`'s elements under another shape of the same size, sharing its memory (releasing a view frees nothing). */
  reshape(t: T, shape: readonly number[]): T;
  /** dst = src, element for element (same dtype and size). */
  copyInto(dst: T, src: T): void;
  /** Rows `ranges` (flat [s, e) pairs) of `src` back to back into a new [outRows, ...] tensor; rows past the ranges get `padValue`. */
  gatherRows(src: T, ranges: Int32Array, outRows: number, padValue: number): T;
  /** `t` scaled by `s` in place (float32). */
  scale(t: T, s: number): void;

  forward(args: FfaForwardArgs<T>): FfaForwardResult<T>;
  backward(args: FfaBackwardArgs<T>): FfaBackwardResult<T>;

  /**
   * Starts a GroupCast of the rows of `input`; resolves with the received rows once compute may
   * read them (after joinComm). It runs over `where.group` (a sub-group of the ops' group, of the
   * same kind; default the ops' group) and writes into `where.into` when given (a tensor or view
   * of outputRows rows), else into a new tensor.
   */
  groupCast(input: T, args: GroupCastArgs, outputRows: number, where?: CollectiveTarget<T>): Promise<T>;
  /**
   * Starts a GroupReduce(sum) of `partial` into `into` (float32), consuming `partial` (a view is
   * not freed); over `group` when given (a sub-group, as for groupCast). Resolves once queued or done.
   */
  groupReduceSum(partial: T, into: T, args: GroupReduceArgs, group?: GroupInfo): Promise<void>;
  /** In-place all-reduce over the group. */
  allReduce(t: T, op: 'sum' | 'max'): Promise<void>;
  /** Every rank's `local` (rowsPerRank[r] rows on rank r) concatenated in rank order. */
  allGather(local: T, rowsPerRank: ArrayLike<number>): Promise<T>;
  /** After the group's collectives so far, before the compute queued next (device: compute waits for the comm stream). */
  joinComm(): void;

  /** A mark on `lane` now (device: an event recorded on that lane's stream). */
  mark(lane: Lane): TimeMark;
}

/** Where a GroupCast runs and lands. */
export interface CollectiveTarget<T> {
  /** A sub-group of the ops' group (split from it, same kind); default the ops' group. */
  readonly group?: GroupInfo;
  /** Pre-allocated output rows (a tensor or a view); default a new tensor. */
  readonly into?: T;
}

// ---------------------------------------------------------------------------------------------
// Host tensors

class HostMark implements TimeMark {
  readonly t = performance.now();
  since(origin: TimeMark): number {
    return this.t - (origin as HostMark).t;
  }
}

function rowWidthOf(shape: readonly number[]): number {
  return shape.slice(1).reduce((a, b) => a * b, 1);
}

/** The pipeline's operations on host Tensors over a host ProcessGroup. */
export function hostAttnOps(group: ProcessGroup, backend: KernelBackend<Tensor>): AttnOps<Tensor> {
  return {
    kind: 'host',
    group,
    begin: () => undefined,
    end: () => undefined,
    shape: (t) => t.shape,
    dtype: (t) => t.dtype,
    zeros: (dtype, shape) => Tensor.zeros(dtype, shape),
    empty: (dtype, shape) => Tensor.zeros(dtype, shape),
    full: (shape, value) => Tensor.full('float32', shape, value),
    cast: (t, dtype) => t.to(dtype),
    release: () => undefined,
    rowsView: (t, start, end) => {
      const w = rowWidthOf(t.shape);
      return new Tensor(t.dtype, [end - start, ...t.shape.slice(1)], t.data.subarray(start * w, end * w));
    },
    reshape: (t, shape) => new Tensor(t.dtype, shape, t.data),
    copyInto: (dst, src) => dst.data.set(src.data),
    gatherRows: (src, ranges, outRows, padValue) => {
      const w = rowWidthOf(src.shape);
      const out = Tensor.zeros(src.dtype, [outRows, ...src.shape.slice(1)]);
      if (padValue !== 0) out.data.fill(fromNumbers(src.dtype, [padValue])[0]);
      let at = 0;
      for (let i = 0; i < ranges.length; i += 2) {
        out.data.set(src.data.subarray(ranges[i] * w, ranges[i + 1] * w), at * w);
        at += ranges[i + 1] - ranges[i];
      }
      return out;
    },
    scale: (t, s) => {
      for (let i = 0; i < t.data.length; i++) t.data[i] *= s;
    },
    forward: (args) => backend.forward(args),
    backward: (args) => backend.backward(args),
    groupCast: (input, args, outputRows, where = {}) => {
      const w = rowWidthOf(input.shape);
      const into = where.into;
      return groupCast((where.group ?? group) as ProcessGroup, input.data, args, w, into?.data)
        .wait()
        .then((data) => into ?? new Tensor(input.dtype, [outputRows, ...input.shape.slice(1)], data as Tensor['data']));
    },
    groupReduceSum: async (partial, into, args, on) => {
      await groupReduce((on ?? group) as ProcessGroup, partial.data as Float32Array, into.data as Float32Array, args, 'sum', { rowWidth: rowWidthOf(partial.shape) });
    },
    allReduce: async (t, op) => {
      await group.allReduce(t.data as HostArray, op);
    },
    allGather: async (local, rowsPerRank) => {
      const w = rowWidthOf(local.shape);
      const counts = Array.from(rowsPerRank, (r) => r * w);
      const out = Tensor.zeros(local.dtype, [counts.reduce((a, b) => a + b, 0) / w, ...local.shape.slice(1)]);
      await group.allGatherV(local.data as HostArray, out.data as HostArray, counts);
      return out;
    },
    joinComm: () => undefined,
    mark: () => new HostMark(),
  };
}

// ---------------------------------------------------------------------------------------------
// Choosing the operations for a call

/** Makes the pipeline's operations for device tensors of one location (registered by the device entry). */
export type DeviceAttnOpsFactory = (q: DeviceTensorLike, group: GroupInfo, backend: KernelBackend<DeviceTensorLike>) => AttnOps<DeviceTensorLike>;

const deviceFactories = new Map<string, DeviceAttnOpsFactory>();

/** Registers the pipeline's operations for device tensors of `location` (done by 'magi-attention/device'). */
export function registerDeviceAttnOps(location: string, factory: DeviceAttnOpsFactory): void {
  deviceFactories.set(location, factory);
}

/** The operations for tensors of q's kind on `group`; refuses a mix of kinds with a clear error. */
export function attnOpsFor(q: AttnTensor, group: GroupInfo, backendChoice?: KernelBackend<AttnTensor> | string): AttnOps<AttnTensor> {
  if (q instanceof Tensor) {
    if (isDeviceGroup(group)) throw new InvalidArgumentError('key', "was made with a device process group, but q is a host Tensor (dispatch host tensors with a host group's key)");
    return hostAttnOps(group as ProcessGroup, selectKernelBackend(q, backendChoice as KernelBackend<Tensor> | string | undefined)) as AttnOps<AttnTensor>;
  }
  const factory = deviceFactories.get(q.location);
  if (factory === undefined) {
    throw new InvalidArgumentError('q', `is a device tensor on '${q.location}' but no distributed runtime is registered for it`, q.location === 'cuda' ? "import 'magi-attention/device'" : undefined);
  }
  if (!isDeviceGroup(group)) throw new InvalidArgumentError('key', `was made with a host process group ('${group.backend}'), but q is a device tensor: use a device group (NCCL, or createLocalDeviceGroups)`);
  return factory(q, group, selectKernelBackend(q, backendChoice as KernelBackend<DeviceTensorLike> | string | undefined)) as AttnOps<AttnTensor>;
}

function isDeviceGroup(g: GroupInfo): boolean {
  return 'computeStream' in g;
}

/** Bytes of one row of `t` in `ops` (for traffic figures). */
export function rowBytes<T>(ops: AttnOps<T>, t: T): number {
  return rowWidthOf(ops.shape(t)) * bytesPerElement(ops.dtype(t));
}

/** `t` as a new tensor of `dtype`, `t` freed: how a call hands back its float32 accumulators in the caller's dtype. */
export function castAndRelease<T>(ops: AttnOps<T>, t: T, dtype: DType): T {
  const c = ops.cast(t, dtype);
  ops.release(t);
  return c;
}
