/**
 * The CUDA device layer (Node only): the driver API and NVRTC through koffi, and a small object
 * model (device, stream, event, buffer, module, kernel) for the CUDA kernel backend.
 */
export * from './cuda-driver.js';
export * from './nvrtc.js';
export * from './device.js';
export * from './device-tensor.js';
export { createCudaBackend } from '../kernels/cuda/backend.js';
export { flexFlashAttnCuda, flexFlashAttnBackwardCuda } from '../kernels/cuda/flex-flash-attn-cuda.js';
