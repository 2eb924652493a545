/**
 * The CPU kernel's variants that tests run side by side: the TypeScript tiles (the oracle) and,
 * for each build of the WebAssembly kernel this runtime has (relaxed SIMD, plain SIMD), that build
 * on one thread and on three (more threads than this 2-core machine has, so work is really split
 * and interleaved).
 */
import type { Tensor } from '../../src/tensor.js';
import type { KernelBackend } from '../../src/kernels/backend.js';
import { createCpuBackend, wasmKernelInfo } from '../../src/kernels/cpu/index.js';

export interface CpuVariant {
  name: string;
  backend: KernelBackend<Tensor>;
}

/** The WebAssembly kernel's builds, both of which Node 20 loads (relaxed SIMD through V8's flag, set by the loader). */
export const WASM_BUILDS = ['relaxed-simd', 'simd'] as const;

export function cpuVariants(): CpuVariant[] {
  const variants: CpuVariant[] = [{ name: 'typescript', backend: createCpuBackend({ engine: 'typescript' }) }];
  for (const simd of WASM_BUILDS) {
    const wasm = wasmKernelInfo(simd);
    if (wasm === undefined) continue;
    variants.push({ name: `wasm-${simd} x1`, backend: createCpuBackend({ engine: 'wasm', simd, threads: 1 }) });
    if (wasm.shared) variants.push({ name: `wasm-${simd} x3`, backend: createCpuBackend({ engine: 'wasm', simd, threads: 3 }) });
  }
  return variants;
}
