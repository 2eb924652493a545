/**
 * GPU check of the Hopper backward (src/kernels/cuda/ffa_bwd_sm90.cu) against the float64
 * reference, plus a speed read against the mma.sync backward (not a CI test: it needs an
 * H100/H200). Run on the GPU machine:
 *   node dist/test/device/ffa-bwd-sm90-gpu.js [--seed N] [--only NAME] [--no-speed]
 * Per case: fresh random inputs; the Hopper forward gives out and lse; the backward gets them with
 * a random dout; referenceBackward is fed the same out (as float64) and lse. dq/dk/dv and every
 * fp32 scratch buffer are poisoned with NaN bits first. One PASS/FAIL line per case, exit 1 on any
 * failure.
 *
 * Tolerance (the same as ffa-bwd-gpu.ts): per tensor, |got − ref| ≤ 2e-2 · max|ref| element-wise,
 * no NaN, and key rows no slice covers come back as exactly dk = dv = 0.
 */
import { CudaDevice, CuFuncAttr } from '../../src/device/index.js';
import { Tensor } from '../../src/tensor.js';
import type { DType } from '../../src/dtype.js';
import { referenceBackward } from '../../src/kernels/reference.js';
import { CudaFfaBackward } from '../../src/kernels/cuda/ffa-backward.js';
import { CudaFfaForward } from '../../src/kernels/cuda/ffa-forward.js';
import { blockCausalMask, causalMask, fullMask, makeSliceList, slidingWindowMask, varlenCausalMask, type SliceList } from '../../src/mask/index.js';
import { Rng } from '../../src/util/rng.js';

const argv = process.argv;
const seedArg = argv.indexOf('--seed');
const seed = seedArg >= 0 ? Number(argv[seedArg + 1]) : (Date.now() ^ (process.pid << 8)) >>> 0;
const onlyArg = argv.indexOf('--only');
const only = onlyArg >= 0 ? argv[onlyArg + 1] : undefined;
console.log(`seed ${seed}`);
const rng = new Rng(seed);

function randomTensor(dtype: DType, shape: number[], amp: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rng.next() * 2 - 1;
    values[i] = (Math.abs(u) < 1e-3 ? 1e-3 : u) * amp;
  }
  return Tensor.fromValues(dtype, shape, values);
}

/** Key rows that no slice covers (their dk / dv must be exactly 0). */
function uncoveredKeys(slices: SliceList, tokensK: number): Uint8Array {
  const covered = new Uint8Array(tokensK);
  for (let b = 0; b < slices.types.length; b++) covered.fill(1, slices.kRanges[2 * b], slices.kRanges[2 * b + 1]);
  return covered.map((c) => 1 - c);
}

interface Case {
  name: string;
  slices: SliceList;
  tokensQ: number;
  tokensK: number;
  headsQ: number;
  headsKv: number;
  dtype: DType;
  softcap?: number;
}
const D = 128;
const cases: Case[] = [
  { name: 'full 512, 4:2 heads, bf16', slices: fullMask(512), tokensQ: 512, tokensK: 512, headsQ: 4, headsKv: 2, dtype: 'bfloat16' },
  { name: 'causal 1024, 8:2 heads, bf16', slices: causalMask(1024), tokensQ: 1024, tokensK: 1024, headsQ: 8, headsKv: 2, dtype: 'bfloat16' },
  {
    name: 'varlen causal [300,700,37,987], 4:1 heads, bf16',
    slices: varlenCausalMask([0, 300, 1000, 1037, 2024]),
    tokensQ: 2024, tokensK: 2024, headsQ: 4, headsKv: 1, dtype: 'bfloat16',
  },
  {
    name: 'block-causal [1000,536] block 200, 4:4 heads, bf16',
    slices: blockCausalMask([0, 1000, 1536], 200),
    tokensQ: 1536, tokensK: 1536, headsQ: 4, headsKv: 4, dtype: 'bfloat16',
  },
  { name: 'sliding window 1500 [200,0], 4:2 heads, bf16', slices: slidingWindowMask(1500, [200, 0]), tokensQ: 1500, tokensK: 1500, headsQ: 4, headsKv: 2, dtype: 'bfloat16' },
  {
    name: 'overlapping q ranges + uncovered keys, 4:2 heads, bf16',
    slices: makeSliceList(
      [[0, 1024], [256, 1024], [0, 700], [900, 1024]],
      [[0, 512], [512, 1024], [1024, 1400], [1450, 1500]],
      ['full', 'causal', 'inv_causal', 'bi_causal'],
    ),
    tokensQ: 1100, tokensK: 1500, headsQ: 4, headsKv: 2, dtype: 'bfloat16',
  },
  {
    name: 'Lq > Lk: causal 1000x600 + inv_causal 400x200, 4:2 heads, fp16',
    slices: makeSliceList([[0, 1000], [1000, 1400]], [[0, 600], [600, 800]], ['causal', 'inv_causal']),
    tokensQ: 1400, tokensK: 800, headsQ: 4, headsKv: 2, dtype: 'float16',
  },
  { name: 'causal 777, 4:2 heads, fp16, softcap 5', slices: causalMask(777), tokensQ: 777, tokensK: 777, headsQ: 4, headsKv: 2, dtype: 'float16', softcap: 5 },
];

const dev = CudaDevice.open(0);
console.log(`device 0: ${dev.name}, cc ${dev.computeCapability.join('.')}, ${dev.smCount} SMs`);
const t0 = performance.now();
const fwd = new CudaFfaForward(dev, { kernel: 'sm90' });
const base = new CudaFfaBackward(dev, { kernel: 'mma' });
const bwd = new CudaFfaBackward(dev, { kernel: 'sm90' });
console.log(`nvrtc compile + load: ${(performance.now() - t0).toFixed(0)} ms`);
for (const name of ['ffa_bwd_sm90_bf16_d128', 'ffa_bwd_sm90_bf16_d128_softcap']) {
  const kern = bwd.sm90!.module.kernel(name);
  console.log(`${name}: ${kern.attribute(CuFuncAttr.NUM_REGS)} regs, ${kern.attribute(CuFuncAttr.LOCAL_SIZE_BYTES)} B local`);
}

let failures = 0;
for (const c of cases) {
  if (only !== undefined && !c.name.includes(only)) continue;
  try {
    const q = randomTensor(c.dtype, [c.tokensQ, c.headsQ, D], 3);
    const k = randomTensor(c.dtype, [c.tokensK, c.headsKv, D], 1);
    const v = randomTensor(c.dtype, [c.tokensK, c.headsKv, D], 1);
    const dout = randomTensor(c.dtype, [c.tokensQ, c.headsQ, D], 1);
    const softmaxScale = 1 / Math.sqrt(D);
    const softcap = c.softcap ?? 0;
    const f = fwd.forward({ q, k, v, slices: c.slices, softmaxScale, softcap, returnMaxLogits: false, outDtype: c.dtype, deterministic: false });
    const args = { dout, q, k, v, out: f.out, lse: f.lse, slices: c.slices, softmaxScale, softcap, deterministic: false };
    const ref = referenceBackward(args);
    const unc = uncoveredKeys(c.slices, c.tokensK);
    const got = bwd.backward(args, { poison: true });
    const parts: string[] = [];
    let bad = 0;
    let firstBad = '';
    for (const [name, g, r, rowWidth] of [
      ['dq', got.dq, ref.dq, 0],
      ['dk', got.dk, ref.dk, c.headsKv * D],
      ['dv', got.dv, ref.dv, c.headsKv * D],
    ] as const) {
      const gd = g.toFloat64();
      const rd = r.data as Float64Array;
      let maxRef = 0;
      for (let i = 0; i < rd.length; i++) maxRef = Math.max(maxRef, Math.abs(rd[i]));
      const tol = 2e-2 * maxRef;
      let err = 0;
      for (let i = 0; i < rd.length; i++) {
        const e = Math.abs(gd[i] - rd[i]);
        const row = rowWidth > 0 ? Math.floor(i / rowWidth) : -1;
        const mustBeZero = row >= 0 && unc[row] === 1;
        if (!(e <= tol) || (mustBeZero && gd[i] !== 0)) {
          bad++;
          if (!firstBad) firstBad = `${name}[${i}] = ${gd[i]} vs ${rd[i]}${mustBeZero ? ' (uncovered key)' : ''}`;
        }
        if (Number.isFinite(e)) err = Math.max(err, e);
      }
      parts.push(`${name} rel err ${(err / maxRef).toExponential(2)}`);
    }
    const ok = bad === 0;
    if (!ok) failures++;
    console.log(`${ok ? 'PASS' : 'FAIL'} ${c.name}: ${parts.join(', ')}` + (ok ? '' : `; ${bad} bad, first ${firstBad}`));
  } catch (e) {
    failures++;
    console.log(`FAIL ${c.name}: threw ${(e as Error).stack ?? String(e)}`);
  }
}

if (!argv.includes('--no-speed')) {
  const HQ = 64;
  const HKV = 8;
  for (const [label, S, slices] of [
    ['full', 16384, fullMask(16384)],
    ['causal', 16384, causalMask(16384)],
    ['varlen-causal', 16384, varlenCausalMask([0, 3000, 5000, 9000, 9100, 14000, 16384])],
  ] as Array<[string, number, SliceList]>) {
    const bufs = {
      q: dev.upload(randomTensor('bfloat16', [S, HQ, D], 1).data),
      k: dev.upload(randomTensor('bfloat16', [S, HKV, D], 1).data),
      v: dev.upload(randomTensor('bfloat16', [S, HKV, D], 1).data),
      out: dev.upload(randomTensor('bfloat16', [S, HQ, D], 1).data),
      dout: dev.upload(randomTensor('bfloat16', [S, HQ, D], 1).data),
      lse: dev.alloc(S * HQ * 4),
      dq: dev.alloc(S * HQ * D * 2),
      dk: dev.alloc(S * HKV * D * 2),
      dv: dev.alloc(S * HKV * D * 2),
    };
    const shape = { tokensQ: S, tokensK: S, headsQ: HQ, headsKv: HKV, dim: D, dtype: 'bfloat16' as DType };
    // a real lse for these inputs, from the forward
    const fp = fwd.prepare(shape, slices);
    fp.launch(bufs.q, bufs.k, bufs.v, bufs.out, bufs.lse, 1 / Math.sqrt(D));
    fp.free();
    let area = 0;
    for (let b = 0; b < slices.types.length; b++) {
      const lq = slices.qRanges[2 * b + 1] - slices.qRanges[2 * b];
      const lk = slices.kRanges[2 * b + 1] - slices.kRanges[2 * b];
      area += slices.types[b] === 1 ? (lq <= lk ? lq * lk - (lq * (lq - 1)) / 2 : (lk * (lk + 1)) / 2) : lq * lk;
    }
    const line: string[] = [];
    for (const [kname, kern] of [['sm90', bwd], ['mma', base]] as const) {
      try {
        const problem = kern.prepare(shape, slices);
        const launch = (): void => problem.launch(bufs, 1 / Math.sqrt(D));
        for (let i = 0; i < 3; i++) launch();
        const times: number[] = [];
        for (let i = 0; i < 10; i++) {
          const a = dev.createEvent();
          const b = dev.createEvent();
          a.record();
          launch();
          b.record();
          times.push(b.elapsedSince(a));
          a.destroy();
          b.destroy();
        }
        times.sort((x, y) => x - y);
        const ms = times[times.length >> 1];
        line.push(`${kname} ${ms.toFixed(2)} ms ${((2.5 * 4 * area * HQ * D) / (ms * 1e-3) / 1e12).toFixed(0)} TFLOP/s`);
        problem.free();
      } catch (e) {
        line.push(`${kname} threw ${(e as Error).message}`);
      }
    }
    console.log(`speed bwd ${label} S=${S} 64:8 D128 bf16: ${line.join(' | ')}`);
    for (const b of Object.values(bufs)) b.free();
  }
}

dev.close();
console.log(failures === 0 ? 'ALL PASS' : `${failures} FAILED`);
process.exit(failures === 0 ? 0 : 1);
