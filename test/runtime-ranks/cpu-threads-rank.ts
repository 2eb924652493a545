/** A rank that reports how many threads the CPU kernel would use in it by default. */
import { defaultThreadCount } from '../../src/kernels/cpu/wasm/node-threads.js';

export default function (): number {
  return defaultThreadCount();
}
