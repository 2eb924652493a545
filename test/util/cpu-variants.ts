/**
 * The CPU kernel's variants that tests run side by side: the TypeScript tiles (the oracle) and,
 * for each build of the WebAssembly kernel this runtime has (relaxed SIMD, plain SIMD), that build
 * on one thread and on three (more threads than this 2-core machine has, so work is really split
 * and interleaved), and the BLAS engine (the same kernel, tile products in cblas_sgemm) on one
 * thread and on three where a BLAS loads here (ffa-cpu-blas.test.ts fails when none does in CI).
 */
import type { Tensor } from '../../src/tensor.js';
import assert from 'node:assert/strict';
import type { FfaForwardArgs, KernelBackend } from '../../src/kernels/backend.js';
import { blasInfo, createCpuBackend, wasmKernelInfo } from '../../src/kernels/cpu/index.js';
import { BlasUnavailableError } from '../../src/errors.js';

export interface CpuVariant {
  name: string;
  backend: KernelBackend<Tensor>;
}

/** The WebAssembly kernel's builds, both of which Node 20 loads (relaxed SIMD through V8's flag, set by the loader). */
export const WASM_BUILDS = ['relaxed-simd', 'simd'] as const;

/** The BLAS this process loads, or the error saying why none does. */
export function blasHere(): ReturnType<typeof blasInfo> | BlasUnavailableError {
  try {
    return blasInfo();
  } catch (e) {
    if (e instanceof BlasUnavailableError) return e;
    throw e;
  }
}

export function cpuVariants(): CpuVariant[] {
  const variants: CpuVariant[] = [{ name: 'typescript', backend: createCpuBackend({ engine: 'typescript' }) }];
  for (const simd of WASM_BUILDS) {
    const wasm = wasmKernelInfo(simd);
    if (wasm === undefined) continue;
    variants.push({ name: `wasm-${simd} x1`, backend: createCpuBackend({ engine: 'wasm', simd, threads: 1 }) });
    if (wasm.shared) variants.push({ name: `wasm-${simd} x3`, backend: createCpuBackend({ engine: 'wasm', simd, threads: 3 }) });
  }
  if (!(blasHere() instanceof BlasUnavailableError)) {
    for (const threads of [1, 3]) variants.push({ name: `blas x${threads}`, backend: createCpuBackend({ engine: 'blas', threads }) });
  }
  return variants;
}

/**
 * Bit-reproducibility of a CPU engine: two backends made alike (`make(threads)`) give bit-identical
 * forward and backward results at 1, 2 and 3 threads, and the forward's bits (out, maxLogits) do
 * not depend on the thread count. `what` names the engine in the messages.
 */
export function assertBitReproducible(make: (threads: number) => KernelBackend<Tensor>, args: FfaForwardArgs<Tensor>, dout: Tensor, what: string): void {
  const forward1 = make(1).forward(args);
  for (const threads of [1, 2, 3]) {
    const a = make(threads);
    const b = make(threads);
    const fa = a.forward(args);
    const fb = b.forward(args);
    const at = `${what}, ${threads} threads`;
    assert.deepEqual(fa.out.data, fb.out.data, `out, ${at}`);
    assert.deepEqual(fa.lse.data, fb.lse.data, `lse, ${at}`);
    assert.deepEqual(fa.out.data, forward1.out.data, `out, ${at} vs 1`);
    assert.deepEqual(fa.maxLogits!.data, forward1.maxLogits!.data, `maxLogits, ${at} vs 1`);
    const bargs = { ...args, dout, out: fa.out, lse: fa.lse };
    const ga = a.backward(bargs);
    const gb = b.backward(bargs);
    for (const name of ['dq', 'dk', 'dv'] as const) assert.deepEqual(ga[name].data, gb[name].data, `${name}, ${at}`);
    if (args.sink !== undefined) assert.deepEqual(ga.dsink!.data, gb.dsink!.data, `dsink, ${at}`);
  }
}
