/**
 * The CPU kernel's variants that tests run side by side: the TypeScript tiles (the oracle) and,
 * where this runtime has WebAssembly SIMD, the WebAssembly kernel on one thread and on three
 * (more threads than this 2-core machine has, so work is really split and interleaved).
 */
import type { Tensor } from '../../src/tensor.js';
import type { KernelBackend } from '../../src/kernels/backend.js';
import { createCpuBackend, wasmKernelInfo } from '../../src/kernels/cpu/index.js';

export interface CpuVariant {
  name: string;
  backend: KernelBackend<Tensor>;
}

export function cpuVariants(): CpuVariant[] {
  const variants: CpuVariant[] = [{ name: 'typescript', backend: createCpuBackend({ engine: 'typescript' }) }];
  const wasm = wasmKernelInfo();
  if (wasm !== undefined) {
    variants.push({ name: `wasm-${wasm.simd} x1`, backend: createCpuBackend({ engine: 'wasm', threads: 1 }) });
    if (wasm.shared) variants.push({ name: `wasm-${wasm.simd} x3`, backend: createCpuBackend({ engine: 'wasm', threads: 3 }) });
  }
  return variants;
}
