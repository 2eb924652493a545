/**
 * GPU check of the CUDA kernel backend through its public entry points (not a CI test: it needs
 * a GPU). Run on the GPU machine:  node dist/test/device/cuda-backend-gpu.js [--seed N]
 *
 * Per case: fresh random bf16 q/k/v/dout on the host, uploaded as DeviceTensors;
 * flexFlashAttn + flexFlashAttnBackward on DeviceTensors, results downloaded; the CPU
 * flexFlashAttn + flexFlashAttnBackward on the same host tensors are the reference.
 * Tolerance (stated): element-wise |got − ref| ≤ 2e-2 · max|ref| for out, dq, dk, dv (each
 * separately); |got − ref| ≤ 1e-3 · (1 + |ref|) for lse (equal infinities pass); no NaN.
 * Then every option through the public entry points (sink, out/lse/maxLogits accumulators,
 * returnMaxLogits, dq/dk/dv accumulators, dsink, deterministic), same tolerances (maxLogits and
 * dsink like lse / 2e-2·max|ref|), against the CPU backend on host copies of the same buffers.
 * Then: what stays unsupported (float32 inputs) must throw InvalidArgumentError naming the
 * argument. One PASS/FAIL line per check, exit 1 on any failure.
 */
import { DeviceTensor } from '../../src/device/device-tensor.js';
import { Tensor } from '../../src/tensor.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { createCudaBackend } from '../../src/kernels/cuda/backend.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../../src/kernels/flex-flash-attn.js';
import { blockCausalMask, makeSliceList, varlenCausalMask, type SliceList } from '../../src/mask/index.js';
import { Tally, cloneTensor, openDevice, randomTensor, scriptArgs } from './common.js';

const { rng } = scriptArgs();
const rand = (): number => rng.next();

/** bf16 uniform in ±1 (never exactly 0). */
const randomBf16 = (shape: number[]): Tensor => randomTensor(rng, 'bfloat16', shape, 1);

const tally = new Tally();
const report = (ok: boolean, line: string): boolean => tally.record(ok, line);

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

type OutGrads = Record<'out' | 'lse' | 'dq' | 'dk' | 'dv', Tensor>;

/** One line each for out, dq, dk, dv (|got − ref| ≤ 2e-2·max|ref|) and lse (err/(1+|ref|) ≤ 1e-3); `scaleNote`: also print max|ref|. */
function reportOutGrads(label: string, got: OutGrads, ref: OutGrads, scaleNote: boolean): void {
  for (const name of ['out', 'dq', 'dk', 'dv'] as const) {
    const { err, scale } = relInf(got[name], ref[name]);
    report(err <= 2e-2 * scale, `${label}: ${name} max err ${err.toExponential(3)} vs bound ${(2e-2 * scale).toExponential(3)}${scaleNote ? ` (2e-2 · max|ref| ${scale.toFixed(4)})` : ''}`);
  }
  const le = lseErr(got.lse, ref.lse);
  report(le <= 1e-3, `${label}: lse max err/(1+|ref|) ${le.toExponential(3)} vs bound 1e-3`);
}

function maskOptions(slices: SliceList): { qRanges: Int32Array; kRanges: Int32Array; maskTypes: Uint8Array } {
  return { qRanges: slices.qRanges, kRanges: slices.kRanges, maskTypes: slices.maskTypes };
}

const dev = openDevice();

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
  const fwd = flexFlashAttn(gq, gk, gv, opts);
  const grads = flexFlashAttnBackward(gdout, gq, gk, gv, fwd.out, fwd.lse, opts);
  const got = {
    out: fwd.out.toHost(),
    lse: fwd.lse.toHost(),
    dq: grads.dq.toHost(),
    dk: grads.dk.toHost(),
    dv: grads.dv.toHost(),
  };
  const gpuMs = performance.now() - t0;
  // the second run reuses the cached problems: results must be identical
  const fwd2 = flexFlashAttn(gq, gk, gv, opts);
  const out2 = fwd2.out.toHost();
  const sameSecond = out2.data.every((x, i) => x === got.out.data[i]);
  for (const t of [gq, gk, gv, gdout, fwd.out, fwd.lse, grads.dq, grads.dk, grads.dv, fwd2.out, fwd2.lse]) t.free();

  const t1 = performance.now();
  const ref = flexFlashAttn(q, k, v, opts);
  const refGrads = flexFlashAttnBackward(dout, q, k, v, ref.out, ref.lse, opts);
  const cpuMs = performance.now() - t1;

  report(got.out.dtype === 'bfloat16' && got.lse.dtype === 'float32' && got.lse.shape.join() === [tokens, headsQ].join(), `${label}: dtypes/shapes (out ${got.out.dtype}, lse ${got.lse.dtype} [${got.lse.shape.join(', ')}])`);
  reportOutGrads(label, got, { ...ref, ...refGrads }, true);
  report(sameSecond, `${label}: second forward (cached problem) bit-identical`);
  console.log(`     gpu (upload+fwd+bwd+download, first call incl. compile) ${gpuMs.toFixed(0)} ms, cpu ${cpuMs.toFixed(0)} ms`);
}

// Every option through the public entry points, against the CPU backend.
{
  const T = 768;
  const overlapping = makeSliceList(
    [[0, 500], [200, 700], [100, 300], [0, 768]],
    [[0, 400], [300, 768], [0, 768], [700, 768]],
    ['causal', 'full', 'bi_causal', 'inv_causal'],
  );
  for (const [maskName, slices] of [['varlen causal [0,300,700,768]', varlenCausalMask([0, 300, 700, 768])], ['4 overlapping slices', overlapping]] as const) {
    const label = `options (sink 2, bf16 out/lse accumulators with -inf rows, maxLogits merge, dq/dk accumulators, deterministic), ${maskName}, ${T} tokens, ${headsQ}:${headsKv} heads, bf16 d${dim}`;
    try {
      const q = randomBf16([T, headsQ, dim]);
      const k = randomBf16([T, headsKv, dim]);
      const v = randomBf16([T, headsKv, dim]);
      const dout = randomBf16([T, headsQ, dim]);
      const sink = Tensor.fromValues('float32', [2, headsQ], Array.from({ length: 2 * headsQ }, () => rand() * 4 - 2));
      const outAcc = randomBf16([T, headsQ, dim]);
      const lseAcc = Tensor.fromValues('float32', [T, headsQ], Array.from({ length: T * headsQ }, () => (rand() < 0.3 ? -Infinity : rand() * 4)));
      const maxAcc = Tensor.fromValues('float32', [headsQ], Array.from({ length: headsQ }, (_, h) => (h === 0 ? 50 : -Infinity)));
      const dqAcc = Tensor.fromValues('float32', [T, headsQ, dim], Array.from({ length: T * headsQ * dim }, () => rand() * 0.02 - 0.01));
      const dkAcc = Tensor.fromValues('float32', [T, headsKv, dim], Array.from({ length: T * headsKv * dim }, () => rand() * 0.02 - 0.01));
      const opts = maskOptions(slices);
      const up = (t: Tensor): DeviceTensor => DeviceTensor.fromHost(dev, t);
      const [gq, gk, gv, gdout, gsink, gOut, gLse, gMax, gdq, gdk] = [q, k, v, dout, sink, outAcc, lseAcc, maxAcc, dqAcc, dkAcc].map(up);
      const fwd = flexFlashAttn(gq, gk, gv, { ...opts, sink: gsink, out: gOut, lse: gLse, maxLogits: gMax, deterministic: true });
      const grads = flexFlashAttnBackward(gdout, gq, gk, gv, fwd.out, fwd.lse, { ...opts, sink: gsink, dq: gdq, dk: gdk, deterministic: true });
      const got = { out: fwd.out.toHost(), lse: fwd.lse.toHost(), maxLogits: fwd.maxLogits?.toHost(), dq: grads.dq.toHost(), dk: grads.dk.toHost(), dv: grads.dv.toHost(), dsink: grads.dsink?.toHost() };
      const identity = fwd.out === gOut && fwd.lse === gLse && fwd.maxLogits === gMax && grads.dq === gdq && grads.dk === gdk;
      for (const t of [gq, gk, gv, gdout, gsink, gOut, gLse, gMax, gdq, gdk, grads.dv, grads.dsink]) t?.free();

      const ref = flexFlashAttn(q, k, v, { ...opts, sink, out: cloneTensor(outAcc), lse: cloneTensor(lseAcc), maxLogits: cloneTensor(maxAcc) });
      const refGrads = flexFlashAttnBackward(dout, q, k, v, ref.out, ref.lse, { ...opts, sink, dq: cloneTensor(dqAcc), dk: cloneTensor(dkAcc) });
      report(identity && got.dq.dtype === 'float32' && got.dv.dtype === 'bfloat16', `${label}: accumulators are returned as the results (dq ${got.dq.dtype}, dv ${got.dv.dtype})`);
      reportOutGrads(label, got, { ...ref, ...refGrads }, false);
      const me = got.maxLogits === undefined || ref.maxLogits === undefined ? Infinity : lseErr(got.maxLogits, ref.maxLogits);
      report(me <= 1e-3 && got.maxLogits?.data[0] === 50, `${label}: maxLogits max err/(1+|ref|) ${me.toExponential(3)} (head 0 kept its 50: ${got.maxLogits?.data[0]})`);
      if (got.dsink === undefined || refGrads.dsink === undefined) report(false, `${label}: dsink missing`);
      else {
        const { err, scale } = relInf(got.dsink, refGrads.dsink);
        report(err <= 2e-2 * scale + 1e-6, `${label}: dsink max err ${err.toExponential(3)} vs bound ${(2e-2 * scale).toExponential(3)}`);
      }
    } catch (e) {
      report(false, `${label}: threw ${(e as Error).stack ?? String(e)}`);
    }
  }
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
  expectUnsupported('float32 inputs', 'q', () => flexFlashAttn(q32, k32, k32, mask));
  const fwd = flexFlashAttn(q, k, v, { ...mask, sink, returnMaxLogits: true });
  report(fwd.maxLogits !== undefined && fwd.maxLogits.shape.join() === '4' && fwd.maxLogits.dtype === 'float32', `returnMaxLogits gives a fresh float32 [Hq] (${fwd.maxLogits?.dtype} [${fwd.maxLogits?.shape.join(', ')}])`);
  const backend = createCudaBackend(dev);
  try {
    backend.forward({ q, k, v, slices: varlenCausalMask([0, 256]), softmaxScale: 0.1, softcap: 0, outAcc: fwd.out, returnMaxLogits: false, outDtype: 'bfloat16', deterministic: false });
    report(false, 'outAcc without lseAcc (backend.forward): did not throw');
  } catch (e) {
    report(e instanceof InvalidArgumentError && e.argument === 'lse', `outAcc without lseAcc (backend.forward): ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  try {
    flexFlashAttnBackward(fwd.out, q, k, v, fwd.out, fwd.lse, { ...mask, dq: q });
    report(false, 'bf16 dq accumulator (backward): did not throw');
  } catch (e) {
    report(e instanceof Error && /float32/.test(e.message), `bf16 dq accumulator (backward): ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  report(backend.accepts(q) && !backend.accepts(undefined as unknown as DeviceTensor), 'backend.accepts: DeviceTensor on its device yes, other values no');
  for (const t of [q, k, v, q32, k32, sink, fwd.out, fwd.lse, fwd.maxLogits]) t?.free();
}

dev.close();
tally.exit();
