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

/** The problem both sides build from the seed: causal over n tokens, 4:2 heads, D 16, float32. */
export function pageProblem(seed: number, n: number) {
  const rng = new Rng(seed);
  const make = (shape: number[]) => Tensor.fromValues('float32', shape, rng.normals(shape.reduce((a, b) => a * b, 1)));
  const [q, k, v, dout] = [make([n, 4, 16]), make([n, 2, 16]), make([n, 2, 16]), make([n, 4, 16])];
  return { dout, args: { q, k, v, slices: causalMask(n), softmaxScale: 0.25, softcap: 0, returnMaxLogits: false, outDtype: 'float32' as const, deterministic: true } };
}

export async function run(seed: number, n: number): Promise<PageResult> {
  const info = await loadWasmKernel();
  const { dout, args } = pageProblem(seed, n);
  const backend = createCpuBackend({ engine: 'wasm' });
  const fwd = backend.forward(args);
  const g = backend.backward({ ...args, dout, out: fwd.out, lse: fwd.lse });
  const arr = (t: Tensor) => Array.from(t.data as Float32Array);
  return { info, engine: 'wasm', out: arr(fwd.out), lse: arr(fwd.lse), dq: arr(g.dq), dk: arr(g.dk), dv: arr(g.dv) };
}
