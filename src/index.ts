/**
 * magi-attention: the public surface. Everything a user needs is re-exported here; deeper
 * imports are for the project's own modules.
 */
export * from './errors.js';
export * from './dtype.js';
export { Tensor } from './tensor.js';
export * from './mask/index.js';
export type { KernelBackend, FfaForwardArgs, FfaForwardResult, FfaBackwardArgs, FfaBackwardResult } from './kernels/backend.js';
export {
  flexFlashAttn,
  flexFlashAttnBackward,
  registerKernelBackend,
  selectKernelBackend,
  type AttnTensor,
  type DeviceTensorLike,
  type DeviceKernelBackend,
  type FlexFlashAttnMaskOptions,
  type FlexFlashAttnOptions,
  type FlexFlashAttnBackwardOptions,
  type FlexFlashAttnResult,
  type FlexFlashAttnGrads,
} from './kernels/flex-flash-attn.js';
export { cpuBackend, createCpuBackend, loadWasmKernel, wasmKernelInfo, type CpuKernelOptions, type WasmKernelInfo, type WasmSimdChoice } from './kernels/cpu/index.js';
export { referenceForward, referenceBackward } from './kernels/reference.js';
export { CPU_KERNEL_TOLERANCES, compareClose, type Tolerance, type CloseReport } from './kernels/tolerance.js';
export * from './solver/index.js';
export * from './comm/index.js';
export { spawnRanks } from './comm/threads/index.js';
export * from './runtime/index.js';
export * from './baselines/index.js';
export { Rng, freshSeed } from './util/rng.js';
export { median } from './util/stats.js';
