/**
 * Bundled for a browser page by test/ffa-cpu-browser.test.ts: loads the WebAssembly kernel the
 * way a page must (await loadWasmKernel()), runs forward and backward on a fixed problem and
 * hands the results back to the test as plain arrays.
 */
import { Tensor } from '../../src/tensor.js';
import { Rng } from '../../src/util/rng.js';
import { causalMask } from '../../src/mask/helpers.js';
import { createCpuBackend, loadWasmKernel } from '../../src/kernels/cpu/index.js';

export interface PageResult {
  info: unknown;
  engine: string;
  out: number[];
  lse: number[];
  dq: number[];
  dk: number[];
  dv: number[];
}

export async function run(seed: number, n: number): Promise<PageResult> {
  const info = await loadWasmKernel();
  const rng = new Rng(seed);
  const make = (shape: number[]) => Tensor.fromValues('float32', shape, rng.normals(shape.reduce((a, b) => a * b, 1)));
  const q = make([n, 4, 16]);
  const k = make([n, 2, 16]);
  const v = make([n, 2, 16]);
  const dout = make([n, 4, 16]);
  const backend = createCpuBackend({ engine: 'wasm' });
  const args = { q, k, v, slices: causalMask(n), softmaxScale: 0.25, softcap: 0, returnMaxLogits: false, outDtype: 'float32' as const, deterministic: true };
  const fwd = backend.forward(args);
  const g = backend.backward({ ...args, dout, out: fwd.out, lse: fwd.lse });
  const arr = (t: Tensor) => Array.from(t.data as Float32Array);
  return { info, engine: 'wasm', out: arr(fwd.out), lse: arr(fwd.lse), dq: arr(g.dq), dk: arr(g.dk), dv: arr(g.dv) };
}
