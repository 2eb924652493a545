/**
 * The GPU machine as a trainer backend: the bf16 ops of ops.ts, and the attention cores that run
 * on DeviceTensors: 'ffa' (the library's flexFlashAttn with the CUDA backend that
 * 'magi-attention/device' registers) and 'naive' (naive-attention.ts, the float32 oracle).
 * Context parallelism: cp ranks on this GPU (the library's runLocalDeviceRanks), each taking its
 * shard of the batch with dispatch on a DeviceTensor, calcAttn in every layer (attention.ts's
 * cpAttention), and the gradients and loss summed over the device group.
 */
import { InvalidArgumentError, Tensor, dispatch, type GroupInfo } from 'magi-attention';
import { DeviceTensor, deviceArrayOf, isDeviceProcessGroup, runLocalDeviceRanks, type CudaDevice, type DeviceBuffer, type DeviceProcessGroup } from 'magi-attention/device';
import { cpAttention, ffaAttention } from '../attention.js';
import type { Backend } from '../train.js';
import { naiveAttention } from './naive-attention.js';
import { createGpuOps, openGpuContext, type GpuContext } from './ops.js';

export interface GpuBackend extends Backend<DeviceTensor, DeviceBuffer> {
  readonly ctx: GpuContext;
}

export function gpuBackend(device: CudaDevice, options: { cacheDir?: string } = {}): GpuBackend {
  const ctx = openGpuContext(device, options);
  const ops = createGpuOps(ctx);
  const deviceGroup = (g: GroupInfo): DeviceProcessGroup => {
    if (!isDeviceProcessGroup(g)) throw new InvalidArgumentError('group', 'must be a device process group (from runLocalDeviceRanks or NCCL)', `got a '${g.backend}' group`);
    return g;
  };
  return {
    ctx,
    ops,
    cp: {
      run: (size, fn) => runLocalDeviceRanks(device, size, fn),
      shardIds: (ids, key, pad) => {
        const full = DeviceTensor.fromHost(device, Tensor.fromValues('float32', [ids.length, 1], ids));
        const local = dispatch(full, key, pad);
        const host = Int32Array.from(local.toHost().data as Float32Array);
        full.free();
        local.free();
        return host;
      },
      attention: (key) => cpAttention<DeviceTensor, DeviceBuffer>(key, ops),
      allReduceSum: async (t, group) => {
        await deviceGroup(group).allReduce(deviceArrayOf(t), 'sum').wait();
      },
      allReduceNumber: async (x, group) => {
        const t = ops.fromHost('master', [1], [x]);
        await deviceGroup(group).allReduce(deviceArrayOf(t), 'sum').wait();
        const sum = ops.toHost(t)[0];
        ops.free(t);
        return sum;
      },
    },
    device: `${device.name} (sm_${device.computeCapability.join('')}, ${device.smCount} SMs), cuBLASLt ${ctx.lt.version} from ${ctx.lt.libraryPath}`,
    attention: (kind, mask, rows) => {
      if (kind === 'ffa') return ffaAttention<DeviceTensor>(mask);
      if (kind === 'naive') return naiveAttention(ctx, mask, rows);
      throw new InvalidArgumentError('attention', "'dense' is the CPU's oracle; on the GPU use 'naive' (cuBLAS float32)");
    },
  };
}
