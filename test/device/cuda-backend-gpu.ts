/**
 * GPU check of the CUDA kernel backend through its public entry points (not a CI test: it needs
 * a GPU). Run on the GPU machine:  node dist/test/device/cuda-backend-gpu.js [--seed N]
 *
 * Per case: fresh random bf16 q/k/v/dout on the host, uploaded as DeviceTensors;
 * flexFlashAttnCuda + flexFlashAttnBackwardCuda on the device, results downloaded; the CPU
 * flexFlashAttn + flexFlashAttnBackward on the same host tensors are the reference.
 * Tolerance (stated): element-wise |got − ref| ≤ 2e-2 · max|ref| for out, dq, dk, dv (each
 * separately); |got − ref| ≤ 1e-3 · (1 + |ref|) for lse (equal infinities pass); no NaN.
 * Then: unsupported options must throw InvalidArgumentError naming the option and saying the
 * CUDA backend does not support it. One PASS/FAIL line per check, exit 1 on any failure.
 */
import { CudaDevice } from '../../src/device/index.js';
import { DeviceTensor } from '../../src/device/device-tensor.js';
import { Tensor } from '../../src/tensor.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../../src/kernels/flex-flash-attn.js';
import { createCudaBackend } from '../../src/kernels/cuda/backend.js';
import { flexFlashAttnBackwardCuda, flexFlashAttnCuda } from '../../src/kernels/cuda/flex-flash-attn-cuda.js';
import { blockCausalMask, varlenCausalMask, type SliceList } from '../../src/mask/index.js';

const argv = process.argv;
const seedArg = argv.indexOf('--seed');
const seed = seedArg >= 0 ? Number(argv[seedArg + 1]) : (Date.now() ^ (process.pid << 8)) >>> 0;
console.log(`seed ${seed}`);

function rng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(seed);

function randomBf16(shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = rand() * 2 - 1;
  return Tensor.fromValues('bfloat16', shape, values);
}

let failures = 0;
function report(ok: boolean, line: string): void {
  console.log(`${ok ? 'PASS' : 'FAIL'} ${line}`);
  if (!ok) failures++;
}

/** max |got − ref| / max |ref| (NaN in got gives Infinity). */
function relInf(got: Tensor, ref: Tensor): { err: number; scale: number } {
  const g = got.toFloat32();
  const r = ref.toFloat32();
  let err = 0;
  let scale = 0;
  for (let i = 0; i < r.length; i++) {
    const d = Number.isNaN(g[i]) ? Infinity : Math.abs(g[i] - r[i]);
    if (d > err) err = d;
    if (Math.abs(r[i]) > scale) scale = Math.abs(r[i]);
  }
  return { err, scale };
}

/** max over elements of |got − ref| / (1 + |ref|); equal infinities count 0. */
function lseErr(got: Tensor, ref: Tensor): number {
  const g = got.toFloat32();
  const r = ref.toFloat32();
  let worst = 0;
  for (let i = 0; i < r.length; i++) {
    if (g[i] === r[i]) continue;
    const e = Number.isFinite(r[i]) && Number.isFinite(g[i]) ? Math.abs(g[i] - r[i]) / (1 + Math.abs(r[i])) : Infinity;
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}

function maskOptions(slices: SliceList): { qRanges: Int32Array; kRanges: Int32Array; maskTypes: Uint8Array } {
  return { qRanges: slices.qRanges, kRanges: slices.kRanges, maskTypes: slices.types };
}

const dev = CudaDevice.open(0);
console.log(`device 0: ${dev.name}, cc ${dev.computeCapability.join('.')}, ${dev.smCount} SMs`);

const tokens = 1024;
const headsQ = 8;
const headsKv = 2;
const dim = 128;
const cases: Array<{ name: string; slices: SliceList }> = [
  { name: 'varlen causal [0,300,700,737,1024]', slices: varlenCausalMask([0, 300, 700, 737, 1024]) },
  { name: 'block-causal 2 docs [600,424] block 128', slices: blockCausalMask([0, 600, 1024], 128) },
];

for (const c of cases) {
  const label = `${c.name}, ${tokens} tokens, ${headsQ}:${headsKv} heads, bf16 d${dim}`;
  const q = randomBf16([tokens, headsQ, dim]);
  const k = randomBf16([tokens, headsKv, dim]);
  const v = randomBf16([tokens, headsKv, dim]);
  const dout = randomBf16([tokens, headsQ, dim]);
  const opts = maskOptions(c.slices);

  const t0 = performance.now();
  const [gq, gk, gv, gdout] = [q, k, v, dout].map((t) => DeviceTensor.fromHost(dev, t));
  const fwd = flexFlashAttnCuda(gq, gk, gv, opts);
  const grads = flexFlashAttnBackwardCuda(gdout, gq, gk, gv, fwd.out, fwd.lse, opts);
  const got = {
    out: fwd.out.toHost(),
    lse: fwd.lse.toHost(),
    dq: grads.dq.toHost(),
    dk: grads.dk.toHost(),
    dv: grads.dv.toHost(),
  };
  const gpuMs = performance.now() - t0;
  // the second run reuses the cached problems: results must be identical
  const fwd2 = flexFlashAttnCuda(gq, gk, gv, opts);
  const out2 = fwd2.out.toHost();
  const sameSecond = out2.data.every((x, i) => x === got.out.data[i]);
  for (const t of [gq, gk, gv, gdout, fwd.out, fwd.lse, grads.dq, grads.dk, grads.dv, fwd2.out, fwd2.lse]) t.free();

  const t1 = performance.now();
  const ref = flexFlashAttn(q, k, v, opts);
  const refGrads = flexFlashAttnBackward(dout, q, k, v, ref.out, ref.lse, opts);
  const cpuMs = performance.now() - t1;

  report(got.out.dtype === 'bfloat16' && got.lse.dtype === 'float32' && got.lse.shape.join() === [tokens, headsQ].join(), `${label}: dtypes/shapes (out ${got.out.dtype}, lse ${got.lse.dtype} [${got.lse.shape.join(', ')}])`);
  for (const [name, g, r] of [
    ['out', got.out, ref.out],
    ['dq', got.dq, refGrads.dq],
    ['dk', got.dk, refGrads.dk],
    ['dv', got.dv, refGrads.dv],
  ] as const) {
    const { err, scale } = relInf(g, r);
    report(err <= 2e-2 * scale, `${label}: ${name} max err ${err.toExponential(3)} vs bound ${(2e-2 * scale).toExponential(3)} (2e-2 · max|ref| ${scale.toFixed(4)})`);
  }
  const le = lseErr(got.lse, ref.lse);
  report(le <= 1e-3, `${label}: lse max err/(1+|ref|) ${le.toExponential(3)} vs bound 1e-3`);
  report(sameSecond, `${label}: second forward (cached problem) bit-identical`);
  console.log(`     gpu (upload+fwd+bwd+download, first call incl. compile) ${gpuMs.toFixed(0)} ms, cpu ${cpuMs.toFixed(0)} ms`);
}

// Unsupported options: a clear InvalidArgumentError naming the option.
function expectUnsupported(what: string, option: string, fn: () => unknown): void {
  try {
    fn();
    report(false, `unsupported ${what}: did not throw`);
  } catch (e) {
    const ok = e instanceof InvalidArgumentError && e.argument === option && /CUDA backend does not support/.test(e.message);
    report(ok, `unsupported ${what}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
}
{
  const q = DeviceTensor.fromHost(dev, randomBf16([256, 4, 128]));
  const k = DeviceTensor.fromHost(dev, randomBf16([256, 2, 128]));
  const v = DeviceTensor.fromHost(dev, randomBf16([256, 2, 128]));
  const q32 = DeviceTensor.fromHost(dev, Tensor.zeros('float32', [256, 4, 128]));
  const k32 = DeviceTensor.fromHost(dev, Tensor.zeros('float32', [256, 2, 128]));
  const sink = DeviceTensor.fromHost(dev, Tensor.zeros('float32', [1, 4]));
  const mask = { qRanges: [[0, 256]] as Array<[number, number]>, kRanges: [[0, 256]] as Array<[number, number]>, maskTypes: 'causal' };
  expectUnsupported('sink (forward)', 'sink', () => flexFlashAttnCuda(q, k, v, { ...mask, sink }));
  expectUnsupported('deterministic (forward)', 'deterministic', () => flexFlashAttnCuda(q, k, v, { ...mask, deterministic: true }));
  expectUnsupported('returnMaxLogits', 'returnMaxLogits', () => flexFlashAttnCuda(q, k, v, { ...mask, returnMaxLogits: true }));
  expectUnsupported('float32 inputs', 'q', () => flexFlashAttnCuda(q32, k32, k32, mask));
  const fwd = flexFlashAttnCuda(q, k, v, mask);
  expectUnsupported('dq accumulator (backward)', 'dq', () => flexFlashAttnBackwardCuda(fwd.out, q, k, v, fwd.out, fwd.lse, { ...mask, dq: q32 }));
  const backend = createCudaBackend(dev);
  expectUnsupported('outAcc (backend.forward)', 'out', () =>
    backend.forward({ q, k, v, slices: varlenCausalMask([0, 256]), softmaxScale: 0.1, softcap: 0, outAcc: fwd.out, lseAcc: fwd.lse, returnMaxLogits: false, outDtype: 'bfloat16', deterministic: false }),
  );
  report(backend.accepts(q) && !backend.accepts(undefined as unknown as DeviceTensor), 'backend.accepts: DeviceTensor on its device yes, other values no');
  for (const t of [q, k, v, q32, k32, sink, fwd.out, fwd.lse]) t.free();
}

dev.close();
console.log(failures === 0 ? 'ALL PASS' : `${failures} FAILED`);
process.exit(failures === 0 ? 0 : 1);
