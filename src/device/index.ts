/**
 * The CUDA device layer (Node only): the driver API and NVRTC through koffi, and a small object
 * model (device, stream, event, buffer, module, kernel) for the CUDA kernel backend.
 *
 * Importing it registers the CUDA backend for DeviceTensors (location 'cuda'), so the one public
 * `flexFlashAttn` / `flexFlashAttnBackward` run on the GPU when handed DeviceTensors. The core
 * entry cannot do this itself: it must load without koffi (browsers, machines without CUDA).
 */
import { DeviceTensor } from './device-tensor.js';
import { InvalidArgumentError } from '../errors.js';
import { registerKernelBackend } from '../kernels/flex-flash-attn.js';
import { cudaBackendFor } from '../kernels/cuda/backend.js';
import { registerDeviceAttnOps } from '../runtime/attn-ops.js';
import { deviceAttnOps } from '../runtime/device-attn-ops.js';
import { isDeviceProcessGroup } from '../comm/device/device-buffers.js';

export * from './cuda-driver.js';
export * from './nvrtc.js';
export * from './device.js';
export * from './device-tensor.js';
export { createCudaBackend, cudaBackendFor } from '../kernels/cuda/backend.js';
export { CudaRangeOps, RangeGatherPlan, RangeReducePlan, type RangeReduceOp, type RowRanges } from '../kernels/cuda/range-ops.js';
export { CudaTensorOps, tensorOpsFor } from '../kernels/cuda/tensor-ops.js';
export * from './device-array.js';
export { type DeviceProcessGroup, deviceBuffers, isDeviceProcessGroup } from '../comm/device/device-buffers.js';
export { LocalDeviceGroup, createLocalDeviceGroups, runLocalDeviceRanks } from '../comm/device/local-device-group.js';
export { deviceGroupCast, deviceGroupReduceSum, rangeOpsFor } from '../comm/device/device-group-collective.js';

// One registered backend for every device: each call goes to the shared backend of q's device
// (created on first use), which also checks that the other tensors live there.
registerKernelBackend<DeviceTensor>({
  name: 'cuda',
  location: 'cuda',
  accepts: (t) => t instanceof DeviceTensor,
  forward: (args) => cudaBackendFor(args.q.device).forward(args),
  backward: (args) => cudaBackendFor(args.q.device).backward(args),
});

// The distributed runtime on DeviceTensors: calcAttn / dispatch / undispatch with a key made on a
// device process group run their steps through these operations.
registerDeviceAttnOps('cuda', (q, group, backend) => {
  if (!isDeviceProcessGroup(group)) throw new InvalidArgumentError('key', 'must be made with a device process group for DeviceTensors');
  if (!(q instanceof DeviceTensor) || q.device !== group.device) throw new InvalidArgumentError('q', "must live on the key's group's GPU", `group on GPU ${group.device.ordinal}`);
  return deviceAttnOps(group, backend as Parameters<typeof deviceAttnOps>[1]) as ReturnType<Parameters<typeof registerDeviceAttnOps>[1]>;
});
