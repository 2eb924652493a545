/**
 * The GPU machine as a trainer backend: the bf16 ops of ops.ts, and the attention cores that run
 * on DeviceTensors: 'ffa' (the library's flexFlashAttn with the CUDA backend that
 * 'magi-attention/device' registers) and 'naive' (naive-attention.ts, the float32 oracle).
 * Context parallelism: the trainer's cp path (dispatch once, getPositionIds, calcAttn in every
 * layer through attention.ts's cpAttention, which is generic over tensor kinds, partial gradients
 * added with ops.addInto, gradients summed over the group) runs on the CPU today. On the GPU it
 * needs two public pieces of the GPU runtime that are not on main yet: calcAttn's device
 * implementation (registerDeviceAttnOps for 'cuda') and a device process group reachable from
 * 'magi-attention/device' (for the gradient all-reduce); then `cp` below is
 * { attention: (key) => cpAttention(key, ops), allReduceSum: (t, group) => ... }.
 */
import { InvalidArgumentError } from 'magi-attention';
import type { CudaDevice, DeviceBuffer, DeviceTensor } from 'magi-attention/device';
import { ffaAttention } from '../attention.js';
import type { Backend } from '../train.js';
import { naiveAttention } from './naive-attention.js';
import { createGpuOps, openGpuContext, type GpuContext } from './ops.js';

export interface GpuBackend extends Backend<DeviceTensor, DeviceBuffer> {
  readonly ctx: GpuContext;
}

export function gpuBackend(device: CudaDevice, options: { cacheDir?: string } = {}): GpuBackend {
  const ctx = openGpuContext(device, options);
  return {
    ctx,
    ops: createGpuOps(ctx),
    device: `${device.name} (sm_${device.computeCapability.join('')}, ${device.smCount} SMs), cuBLASLt ${ctx.lt.version} from ${ctx.lt.libraryPath}`,
    attention: (kind, mask, rows) => {
      if (kind === 'ffa') return ffaAttention<DeviceTensor>(mask);
      if (kind === 'naive') return naiveAttention(ctx, mask, rows);
      throw new InvalidArgumentError('attention', "'dense' is the CPU's oracle; on the GPU use 'naive' (cuBLAS float32)");
    },
  };
}
