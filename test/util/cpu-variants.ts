import type { Tensor } from '../../src/tensor.js';
import type { KernelBackend } from '../../src/kernels/backend.js';
import { cpuBackend } from '../../src/kernels/cpu/index.js';

export function cpuVariants(): { name: string; backend: KernelBackend<Tensor> }[] {
  return [{ name: 'cpu', backend: cpuBackend }];
}
