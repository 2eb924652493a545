/**
 * GroupCast and GroupReduce on a device process group: the same lowering onto one all-to-all-v as
 * the host version (comm/group-collective.ts: `prepareGroupCast` / `prepareGroupReduce`), with the
 * rows packed, placed and reduced by the range kernels (range_ops.cu) on the group's stream. The
 * device layouts of a stage's arguments are uploaded once per arguments object and reused by
 * every call; a call only queues kernels and the exchange, and never waits for the device.
 * Node-only.
 */
import { bytesPerElement } from '../../dtype.js';
import { InvalidArgumentError } from '../../errors.js';
import type { CudaDevice } from '../../device/device.js';
import { DeviceTensor } from '../../device/device-tensor.js';
import type { DeviceArray } from '../../device/device-array.js';
import { CudaRangeOps, type RangeGatherPlan, type RangeReducePlan } from '../../kernels/cuda/range-ops.js';
import { prepareGroupCast, prepareGroupReduce, type PreparedGroupCollective } from '../group-collective.js';
import type { GroupCastArgs, GroupReduceArgs } from '../group-collective-args.js';
import { collectiveLayouts } from '../collective-layouts.js';
import type { DeviceProcessGroup } from './device-buffers.js';

const rangeOpsByDevice = new WeakMap<CudaDevice, CudaRangeOps>();

/** The device's range kernels (compiled once, through the NVRTC disk cache). */
export function rangeOpsFor(device: CudaDevice): CudaRangeOps {
  let ops = rangeOpsByDevice.get(device);
  if (ops === undefined) rangeOpsByDevice.set(device, (ops = new CudaRangeOps(device)));
  return ops;
}

interface DeviceLayouts {
  readonly prep: PreparedGroupCollective;
  /** Input rows to pack, in send order (null: the input is sent as it is). */
  readonly pack: RangeGatherPlan | null;
  /** Cast: received rows into output order (null: received in place). */
  readonly place: RangeGatherPlan | null;
  /** Reduce: received rows into the accumulator rows they add to. */
  readonly reduce: RangeReducePlan | null;
}

const layoutCache = new WeakMap<GroupCastArgs | GroupReduceArgs, Map<CudaDevice, DeviceLayouts>>();

function layoutsFor(device: CudaDevice, args: GroupCastArgs | GroupReduceArgs, prep: PreparedGroupCollective, cast: boolean): DeviceLayouts {
  let byDevice = layoutCache.get(args);
  const hit = byDevice?.get(device);
  if (hit !== undefined) return hit;
  const ops = rangeOpsFor(device);
  const l = collectiveLayouts(prep, cast);
  const layouts = {
    prep,
    pack: l.pack === null ? null : ops.prepareGather(l.pack, prep.inputRows),
    place: l.place === null ? null : ops.prepareGather(l.place, prep.recvRows),
    reduce: l.reduce === null ? null : ops.prepareReduce(l.reduce.srcRanges, l.reduce.dstStarts, prep.recvRows, prep.outputRows),
  };
  if (byDevice === undefined) layoutCache.set(args, (byDevice = new Map()));
  byDevice.set(device, layouts);
  return layouts;
}

function rowsOf(t: DeviceTensor): number {
  return t.shape[0];
}

/** Elements per row, from the shape (a tensor of 0 rows still has a row width). */
function rowElems(t: DeviceTensor): number {
  return t.shape.slice(1).reduce((a, b) => a * b, 1);
}

function rowBytes(t: DeviceTensor): number {
  return rowElems(t) * bytesPerElement(t.dtype);
}

function asArray(buffer: DeviceTensor['buffer'], rows: number, rowElems: number, dtype: DeviceTensor['dtype']): DeviceArray {
  return { buffer, byteOffset: 0, length: rows * rowElems, dtype };
}

/** The send buffer of a call: the input itself, or its rows packed in send order (queued on the group's stream). */
function packed(group: DeviceProcessGroup, input: DeviceTensor, layouts: DeviceLayouts): { send: DeviceArray; owned: boolean } {
  const w = rowElems(input);
  const prep = layouts.prep;
  if (layouts.pack === null) return { send: asArray(input.buffer, prep.inputRows, w, input.dtype), owned: false };
  const buf = group.device.alloc(prep.sendRows * rowBytes(input));
  rangeOpsFor(group.device).gatherBuffers(layouts.pack, input.buffer, buf, rowBytes(input), { stream: group.stream });
  return { send: asArray(buf, prep.sendRows, w, input.dtype), owned: true };
}

function counts(rows: Int32Array, w: number): number[] {
  return Array.from(rows, (r) => r * w);
}

/**
 * GroupCast of the rows of `input` ([rows, ...], on the group's device) into `output` ([stage
 * rows, ...], same dtype and row shape), all queued on the group's stream. Resolves once queued:
 * work ordered after the group's stream sees the output.
 */
export async function deviceGroupCast(group: DeviceProcessGroup, input: DeviceTensor, args: GroupCastArgs, output: DeviceTensor): Promise<void> {
  const prep = prepareGroupCast(args, group.size);
  if (rowsOf(input) !== prep.inputRows) throw new InvalidArgumentError('input', `must have ${prep.inputRows} rows (the GroupCast's input splits)`, `got ${rowsOf(input)}`);
  if (rowsOf(output) !== prep.outputRows) throw new InvalidArgumentError('output', `must have ${prep.outputRows} rows (the GroupCast's output splits)`, `got ${rowsOf(output)}`);
  const layouts = layoutsFor(group.device, args, prep, true);
  const w = rowElems(input);
  const { send, owned } = packed(group, input, layouts);
  const recv = layouts.place === null ? asArray(output.buffer, prep.recvRows, w, input.dtype) : asArray(group.device.alloc(prep.recvRows * rowBytes(input)), prep.recvRows, w, input.dtype);
  try {
    await group.allToAllV(send, counts(prep.lowering.sendCounts, w), recv, counts(prep.lowering.recvCounts, w));
    if (layouts.place !== null) rangeOpsFor(group.device).gatherBuffers(layouts.place, recv.buffer, output.buffer, rowBytes(input), { stream: group.stream });
  } finally {
    if (owned) send.buffer.freeAfter(group.stream);
    if (layouts.place !== null) recv.buffer.freeAfter(group.stream);
  }
}

/**
 * GroupReduce(sum) of the rows of `partial` into the float32 accumulator `into`, queued on the
 * group's stream after the work queued so far on its compute stream (which produced the partial).
 * Contributions add in source-rank order, so results are deterministic.
 */
export async function deviceGroupReduceSum(group: DeviceProcessGroup, partial: DeviceTensor, into: DeviceTensor, args: GroupReduceArgs): Promise<void> {
  const prep = prepareGroupReduce(args, group.size);
  if (rowsOf(partial) !== prep.inputRows) throw new InvalidArgumentError('partial', `must have ${prep.inputRows} rows (the GroupReduce's input splits)`, `got ${rowsOf(partial)}`);
  if (rowsOf(into) !== prep.outputRows) throw new InvalidArgumentError('into', `must have ${prep.outputRows} rows (the GroupReduce's output splits)`, `got ${rowsOf(into)}`);
  if (partial.dtype !== 'float32' || into.dtype !== 'float32') throw new InvalidArgumentError('partial', 'a device GroupReduce sums float32 rows');
  if (rowElems(partial) !== rowElems(into)) throw new InvalidArgumentError('partial', "must have the accumulator's row shape", `${rowElems(partial)} vs ${rowElems(into)} elements per row`);
  group.stream.waitStream(group.computeStream);
  const layouts = layoutsFor(group.device, args, prep, false);
  const w = rowElems(partial);
  const { send, owned } = packed(group, partial, layouts);
  const recvBuf = group.device.alloc(prep.recvRows * rowBytes(partial));
  try {
    await group.allToAllV(send, counts(prep.lowering.sendCounts, w), asArray(recvBuf, prep.recvRows, w, 'float32'), counts(prep.lowering.recvCounts, w));
    const recvT = new DeviceTensor(group.device, 'float32', [prep.recvRows, ...partial.shape.slice(1)], recvBuf);
    rangeOpsFor(group.device).reduce('sum', recvT, into, layouts.reduce as RangeReducePlan, { stream: group.stream });
  } finally {
    if (owned) send.buffer.freeAfter(group.stream);
    recvBuf.freeAfter(group.stream);
  }
}
