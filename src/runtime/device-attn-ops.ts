/**
 * The distributed pipeline's operations for DeviceTensors (registered for location 'cuda' by
 * 'magi-attention/device'): kernels queue on the group's compute stream, GroupCast / GroupReduce
 * and all-reduces on its communication stream, and the two are ordered by events
 * (`joinComm`: compute waits for communication; a reduce waits for the compute that produced its
 * partial). Temporaries are freed once both streams are done with them, so the host never waits
 * for the device inside the stage loop. Both streams are blocking streams, so the caller's work
 * on the legacy default stream is ordered before and after a call without explicit waits.
 * Node-only.
 */
import { bytesPerElement, type DType } from '../dtype.js';
import { InvalidArgumentError } from '../errors.js';
import type { CudaDevice, Event } from '../device/device.js';
import { DeviceTensor } from '../device/device-tensor.js';
import { deviceArrayOf } from '../device/device-array.js';
import { isDeviceProcessGroup, type DeviceProcessGroup } from '../comm/device/device-buffers.js';
import type { GroupInfo } from '../comm/process-group.js';
import { deviceGroupCast, deviceGroupReduceSum, rangeOpsFor } from '../comm/device/device-group-collective.js';
import type { RangeGatherPlan } from '../kernels/cuda/range-ops.js';
import { tensorOpsFor } from '../kernels/cuda/tensor-ops.js';
import type { KernelBackend } from '../kernels/backend.js';
import type { AttnOps, TimeMark } from './attn-ops.js';

class EventMark implements TimeMark {
  constructor(readonly event: Event) {}
  since(origin: TimeMark): number {
    return this.event.elapsedSince((origin as EventMark).event);
  }
}

const GATHER_PLAN_CACHE = 64;
const gatherPlans = new WeakMap<CudaDevice, Map<string, RangeGatherPlan>>();

/** A reusable gather layout for these ranges (dispatch / undispatch repeat the same few per key). */
function gatherPlan(device: CudaDevice, ranges: Int32Array, inputRows: number, afterStream: Parameters<RangeGatherPlan['free']>[0]): RangeGatherPlan {
  let cache = gatherPlans.get(device);
  if (cache === undefined) gatherPlans.set(device, (cache = new Map()));
  const id = `${inputRows}:${ranges.join(',')}`;
  let plan = cache.get(id);
  if (plan !== undefined) {
    cache.delete(id);
  } else {
    plan = rangeOpsFor(device).prepareGather(ranges, inputRows);
    while (cache.size >= GATHER_PLAN_CACHE) {
      const [oldId, old] = cache.entries().next().value as [string, RangeGatherPlan];
      cache.delete(oldId);
      old.free(afterStream);
    }
  }
  cache.set(id, plan);
  return plan;
}

function rowBytesOf(t: DeviceTensor): number {
  return t.shape.slice(1).reduce((a, b) => a * b, 1) * bytesPerElement(t.dtype);
}

/** The pipeline's operations on DeviceTensors over a device process group. */
export function deviceAttnOps(group: DeviceProcessGroup, backend: KernelBackend<DeviceTensor>): AttnOps<DeviceTensor> {
  const device = group.device;
  const compute = group.computeStream;
  const comm = group.stream;
  const tensorOps = tensorOpsFor(device);
  const requireHere = (t: DeviceTensor, name: string): DeviceTensor => {
    if (!(t instanceof DeviceTensor) || t.device !== device) throw new InvalidArgumentError(name, "must be a DeviceTensor on the key's group's device", `group on GPU ${device.ordinal}`);
    return t;
  };
  const subGroup = (g: GroupInfo | undefined): DeviceProcessGroup => {
    if (g === undefined) return group;
    if (!isDeviceProcessGroup(g) || g.device !== device || g.stream !== comm) {
      throw new InvalidArgumentError('group', "must be a device sub-group split from the key's group (same GPU, same streams)");
    }
    return g;
  };
  return {
    kind: 'cuda',
    group,
    // Blocking streams: the caller's legacy-stream work is ordered before and after by CUDA itself.
    // Inputs may also come from this compute stream (dispatch gathers there): the packing on the
    // communication stream waits for it.
    begin: () => comm.waitStream(compute),
    end: () => undefined,
    shape: (t) => t.shape,
    dtype: (t) => t.dtype,
    zeros: (dtype, shape) => {
      const t = DeviceTensor.empty(device, dtype, shape);
      t.buffer.fill(0, compute);
      return t;
    },
    empty: (dtype, shape) => DeviceTensor.empty(device, dtype, shape),
    full: (shape, value) => {
      const t = DeviceTensor.empty(device, 'float32', shape);
      tensorOps.fill(deviceArrayOf(t), value, compute);
      return t;
    },
    cast: (t, dtype: DType) => {
      requireHere(t, 'tensor');
      const out = DeviceTensor.empty(device, dtype, t.shape);
      if (dtype === t.dtype) out.buffer.copyFrom(t.buffer, t.byteLength, compute);
      else if (t.dtype === 'float32') tensorOps.castFromF32(deviceArrayOf(t), deviceArrayOf(out), compute);
      else throw new InvalidArgumentError('dtype', `device casts go from float32 (got ${t.dtype} to ${dtype})`);
      return out;
    },
    release: (t) => {
      if (t.buffer.viewOf === null && !t.isFreed) t.buffer.freeAfter(compute, comm);
    },
    rowsView: (t, start, end) => {
      const rb = rowBytesOf(t);
      return new DeviceTensor(device, t.dtype, [end - start, ...t.shape.slice(1)], t.buffer.view(start * rb, (end - start) * rb));
    },
    reshape: (t, shape) => new DeviceTensor(device, t.dtype, shape, t.buffer.view(0, t.byteLength)),
    copyInto: (dst, src) => dst.buffer.copyFrom(src.buffer, src.byteLength, compute),
    gatherRows: (src, ranges, outRows, padValue) => {
      requireHere(src, 'x');
      const out = DeviceTensor.empty(device, src.dtype, [outRows, ...src.shape.slice(1)]);
      let rows = 0;
      for (let i = 0; i < ranges.length; i += 2) rows += ranges[i + 1] - ranges[i];
      if (rows < outRows) {
        if (padValue === 0) out.buffer.fill(0, compute);
        else if (src.dtype === 'float32') tensorOps.fill(deviceArrayOf(out), padValue, compute);
        else throw new InvalidArgumentError('padValue', `must be 0 for ${src.dtype} device tensors`, `got ${padValue}`);
      }
      rangeOpsFor(device).gatherBuffers(gatherPlan(device, ranges, src.shape[0], compute), src.buffer, out.buffer, rowBytesOf(src), { stream: compute });
      return out;
    },
    scale: (t, s) => tensorOps.scale(deviceArrayOf(t), s, compute),
    forward: (args) => backend.forward({ ...args, stream: compute }),
    backward: (args) => backend.backward({ ...args, stream: compute }),
    // A sub-group (split from this group) queues on this group's streams too (see its split), so
    // its collectives are ordered with everything else here.
    groupCast: async (input, args, outputRows, where = {}) => {
      const out = where.into ?? DeviceTensor.empty(device, input.dtype, [outputRows, ...input.shape.slice(1)]);
      await deviceGroupCast(subGroup(where.group), input, args, out);
      return out;
    },
    groupReduceSum: async (partial, into, args, on) => {
      try {
        await deviceGroupReduceSum(subGroup(on), partial, into, args);
      } finally {
        if (partial.buffer.viewOf === null) partial.buffer.freeAfter(comm);
      }
    },
    allReduce: async (t, op) => {
      // The data was produced on the compute stream.
      comm.waitStream(compute);
      await group.allReduce(deviceArrayOf(t), op);
    },
    allGather: async (local, rowsPerRank) => {
      const w = local.shape.slice(1).reduce((a, b) => a * b, 1);
      const counts = Array.from(rowsPerRank, (r) => r * w);
      const out = DeviceTensor.empty(device, local.dtype, [counts.reduce((a, b) => a + b, 0) / w, ...local.shape.slice(1)]);
      comm.waitStream(compute);
      // Equal shards take the plain all-gather (one NCCL collective, not P point-to-point pairs).
      if (counts.every((c) => c === counts[0])) await group.allGather(deviceArrayOf(local), deviceArrayOf(out));
      else await group.allGatherV(deviceArrayOf(local), deviceArrayOf(out), counts);
      return out;
    },
    joinComm: () => compute.waitStream(comm),
    mark: (lane) => new EventMark(device.createEvent().record(lane === 'compute' ? compute : comm)),
  };
}
