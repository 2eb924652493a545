/** A rank that reports how many threads the CPU kernel would use in it by default, and which build of it loads there. */
import { defaultThreadCount } from '../../src/kernels/cpu/wasm/node-threads.js';
import { wasmKernelInfo } from '../../src/kernels/cpu/index.js';

export default function (): { threads: number; simd: string | undefined } {
  return { threads: defaultThreadCount(), simd: wasmKernelInfo()?.simd };
}
