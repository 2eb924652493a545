/**
 * The GPU machine as a trainer backend: the bf16 ops of ops.ts, and the attention cores that run
 * on DeviceTensors: 'ffa' (the library's flexFlashAttn with the CUDA backend that
 * 'magi-attention/device' registers) and 'naive' (naive-attention.ts, the float32 oracle).
 * Context parallelism joins when the library's calcAttn takes DeviceTensors: the trainer's cp
 * path (dispatch once, getPositionIds, calcAttn in every layer, gradients summed over the group)
 * is already written against this interface and runs on the CPU today.
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
