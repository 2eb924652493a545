/**
 * GPU check of the Hopper forward (src/kernels/cuda/ffa_fwd_sm90.cu) against the float64
 * reference, plus a quick speed read against the mma.sync forward (not a CI test: it needs an
 * H100/H200). Run on the GPU machine:
 *   node dist/test/device/ffa-fwd-sm90-gpu.js [--seed N] [--only NAME] [--no-speed]
 * Fresh random inputs per case (never zeros), outputs poisoned with NaN bits before every
 * launch, one PASS/FAIL line per case, exit code 1 on any failure.
 *
 * Tolerance (the same as ffa-fwd-gpu.ts): |out - ref| <= 2e-2 * max|ref out| element-wise,
 * |lse - ref| <= 1e-3 * (1 + |ref lse|); rows whose reference lse is -inf must come back as exactly
 * out = 0, lse = -inf; nothing may be NaN.
 */
import { CudaDevice, CuFuncAttr } from '../../src/device/index.js';
import { Tensor } from '../../src/tensor.js';
import type { DType } from '../../src/dtype.js';
import { referenceForward } from '../../src/kernels/reference.js';
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

interface Case {
  name: string;
  slices: SliceList;
  tokensQ: number;
  tokensK: number;
  headsQ: number;
  headsKv: number;
  dim: number;
  dtype: DType;
  softcap?: number;
  forceMerge?: boolean;
  outDtype?: DType;
}

const cases: Case[] = [
  { name: 'full 1024, 8:2 heads, bf16 d128', slices: fullMask(1024), tokensQ: 1024, tokensK: 1024, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16' },
  { name: 'full 200x77 (one partial tile each way), 2:1 heads, bf16 d128', slices: makeSliceList([[0, 200]], [[0, 77]], 'full'), tokensQ: 200, tokensK: 77, headsQ: 2, headsKv: 1, dim: 128, dtype: 'bfloat16' },
  { name: 'causal 2048, 4:4 heads, bf16 d128', slices: causalMask(2048), tokensQ: 2048, tokensK: 2048, headsQ: 4, headsKv: 4, dim: 128, dtype: 'bfloat16' },
  {
    name: 'varlen causal [300,700,37,1011], 8:2 heads, bf16 d128',
    slices: varlenCausalMask([0, 300, 1000, 1037, 2048]),
    tokensQ: 2048, tokensK: 2048, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'block-causal 2 docs [1000,536] block 200, 4:4 heads, bf16 d128',
    slices: blockCausalMask([0, 1000, 1536], 200),
    tokensQ: 1536, tokensK: 1536, headsQ: 4, headsKv: 4, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'sliding window 2048 [200,0], 8:2 heads, bf16 d128',
    slices: slidingWindowMask(2048, [200, 0]),
    tokensQ: 2048, tokensK: 2048, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'overlapping q ranges (merge) + uncovered rows, 4:4 heads, bf16 d128',
    slices: makeSliceList(
      [[0, 1024], [256, 1024], [0, 700], [900, 1024]],
      [[0, 512], [512, 1024], [1024, 1500], [1500, 1500]],
      ['full', 'causal', 'inv_causal', 'full'],
    ),
    tokensQ: 1100, tokensK: 1500, headsQ: 4, headsKv: 4, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'Lq > Lk: causal 1000x600 + inv_causal 400x200, 8:2 heads, bf16 d128',
    slices: makeSliceList([[0, 1000], [1000, 1400]], [[0, 600], [600, 800]], ['causal', 'inv_causal']),
    tokensQ: 1400, tokensK: 800, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'causal 1280 merge epilogue (forced), 8:2 heads, bf16 d128',
    slices: causalMask(1280), tokensQ: 1280, tokensK: 1280, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16', forceMerge: true,
  },
  {
    name: 'varlen causal, 8:2 heads, bf16 d64, float32 out',
    slices: varlenCausalMask([0, 517, 1200, 2048]),
    tokensQ: 2048, tokensK: 2048, headsQ: 8, headsKv: 2, dim: 64, dtype: 'bfloat16', outDtype: 'float32',
  },
  {
    name: 'causal 1024, 4:2 heads, fp16 d128, softcap 5',
    slices: causalMask(1024), tokensQ: 1024, tokensK: 1024, headsQ: 4, headsKv: 2, dim: 128, dtype: 'float16', softcap: 5,
  },
  {
    name: 'full 1000x1300 unaligned, 4:1 heads, fp16 d64',
    slices: makeSliceList([[0, 1000]], [[0, 1300]], 'full'),
    tokensQ: 1000, tokensK: 1300, headsQ: 4, headsKv: 1, dim: 64, dtype: 'float16',
  },
];

const dev = CudaDevice.open(0);
console.log(`device 0: ${dev.name}, cc ${dev.computeCapability.join('.')}, ${dev.smCount} SMs`);
let t0 = performance.now();
const base = new CudaFfaForward(dev, { kernel: 'mma' });
const sm90 = new CudaFfaForward(dev, { kernel: 'sm90' });
console.log(`nvrtc compile + load: ${(performance.now() - t0).toFixed(0)} ms`);
for (const name of ['ffa_fwd_sm90_bf16_d128_direct', 'ffa_fwd_sm90_bf16_d128_merge', 'ffa_fwd_sm90_bf16_d64_direct']) {
  const kern = sm90.sm90!.module.kernel(name);
  console.log(`${name}: ${kern.attribute(CuFuncAttr.NUM_REGS)} regs, ${kern.attribute(CuFuncAttr.LOCAL_SIZE_BYTES)} B local`);
}

let failures = 0;
for (const c of cases) {
  if (only !== undefined && !c.name.includes(only)) continue;
  try {
    const q = randomTensor(c.dtype, [c.tokensQ, c.headsQ, c.dim], 3);
    const k = randomTensor(c.dtype, [c.tokensK, c.headsKv, c.dim], 1);
    const v = randomTensor(c.dtype, [c.tokensK, c.headsKv, c.dim], 1);
    const args = {
      q, k, v, slices: c.slices, softmaxScale: 1 / Math.sqrt(c.dim), softcap: c.softcap ?? 0, returnMaxLogits: false,
      outDtype: c.outDtype ?? c.dtype, deterministic: false,
    };
    const ref = referenceForward(args);
    const got = sm90.forward(args, { poison: true, forceMerge: c.forceMerge ?? false, outDtype: c.outDtype ?? c.dtype });
    const o = got.out.toFloat64();
    const l = got.lse.toFloat64();
    const ro = ref.out.data as Float64Array;
    const rl = ref.lse.data as Float64Array;
    let maxRef = 0;
    for (let i = 0; i < ro.length; i++) maxRef = Math.max(maxRef, Math.abs(ro[i]));
    const outTol = 2e-2 * maxRef;
    let outErr = 0;
    let lseErr = 0;
    let bad = 0;
    let firstBad = '';
    let emptyRows = 0;
    const D = c.dim;
    for (let row = 0; row < rl.length; row++) {
      const refL = rl[row];
      if (refL === -Infinity) {
        emptyRows++;
        let ok = l[row] === -Infinity;
        for (let d = 0; d < D; d++) if (o[row * D + d] !== 0) ok = false;
        if (!ok) {
          bad++;
          if (!firstBad) firstBad = `row ${row}: expected empty (lse ${l[row]}, out[0] ${o[row * D]})`;
        }
        continue;
      }
      const le = Math.abs(l[row] - refL);
      if (!(le <= 1e-3 * (1 + Math.abs(refL)))) {
        bad++;
        if (!firstBad) firstBad = `row ${row}: lse ${l[row]} vs ${refL}`;
      }
      if (Number.isFinite(le)) lseErr = Math.max(lseErr, le);
      for (let d = 0; d < D; d++) {
        const e = Math.abs(o[row * D + d] - ro[row * D + d]);
        if (!(e <= outTol)) {
          bad++;
          if (!firstBad) firstBad = `row ${row} d ${d}: out ${o[row * D + d]} vs ${ro[row * D + d]}`;
        }
        if (Number.isFinite(e)) outErr = Math.max(outErr, e);
      }
    }
    const ok = bad === 0;
    if (!ok) failures++;
    console.log(
      `${ok ? 'PASS' : 'FAIL'} ${c.name}: max|out err| ${outErr.toExponential(2)} (rel ${(outErr / maxRef).toExponential(2)}), ` +
        `max|lse err| ${lseErr.toExponential(2)}, ${emptyRows} empty rows` + (ok ? '' : `; ${bad} bad, first ${firstBad}`),
    );
  } catch (e) {
    failures++;
    console.log(`FAIL ${c.name}: threw ${(e as Error).stack ?? String(e)}`);
  }
}

// Speed read: 64:8 heads, D 128, bf16; median of CUDA-event-timed launches after warm-up.
if (!argv.includes('--no-speed')) {
  const HQ = 64;
  const HKV = 8;
  const D = 128;
  for (const [label, S, slices] of [
    ['full', 16384, fullMask(16384)],
    ['causal', 16384, causalMask(16384)],
    ['varlen-causal', 16384, varlenCausalMask([0, 3000, 5000, 9000, 9100, 14000, 16384])],
  ] as Array<[string, number, SliceList]>) {
    try {
      const q = dev.upload(randomTensor('bfloat16', [S, HQ, D], 1).data);
      const k = dev.upload(randomTensor('bfloat16', [S, HKV, D], 1).data);
      const v = dev.upload(randomTensor('bfloat16', [S, HKV, D], 1).data);
      const out = dev.alloc(S * HQ * D * 2);
      const lse = dev.alloc(S * HQ * 4);
      const shape = { tokensQ: S, tokensK: S, headsQ: HQ, headsKv: HKV, dim: D, dtype: 'bfloat16' as DType };
      let area = 0;
      for (let b = 0; b < slices.types.length; b++) {
        const qs = slices.qRanges[2 * b], qe = slices.qRanges[2 * b + 1], ks = slices.kRanges[2 * b], ke = slices.kRanges[2 * b + 1];
        const lq = qe - qs, lk = ke - ks;
        area += slices.types[b] === 1 ? (lq <= lk ? lq * lk - (lq * (lq - 1)) / 2 : (lk * (lk + 1)) / 2) : lq * lk;
      }
      const line: string[] = [];
      for (const [kname, kern] of [['sm90', sm90], ['mma', base]] as const) {
        try {
        const problem = kern.prepare(shape, slices);
        const launch = (): void => problem.launch(q, k, v, out, lse, 1 / Math.sqrt(D));
        for (let i = 0; i < 3; i++) launch();
        const times: number[] = [];
        for (let i = 0; i < 10; i++) {
          const a = dev.createEvent();
          const b = dev.createEvent();
          a.record();
          launch();
          b.record();
          b.synchronize();
          times.push(b.elapsedSince(a));
          a.destroy();
          b.destroy();
        }
        times.sort((x, y) => x - y);
        const ms = times[times.length >> 1];
        line.push(`${kname} ${ms.toFixed(2)} ms ${((4 * area * HQ * D) / (ms * 1e-3) / 1e12).toFixed(0)} TFLOP/s`);
        problem.free();
        } catch (e) {
          line.push(`${kname} threw ${(e as Error).message}`);
        }
      }
      console.log(`speed ${label} S=${S} 64:8 D128 bf16: ${line.join(' | ')}`);
      for (const b of [q, k, v, out, lse]) b.free();
    } catch (e) {
      console.log(`speed ${label}: threw ${(e as Error).stack ?? String(e)}`);
    }
  }
}

dev.close();
console.log(failures === 0 ? 'ALL PASS' : `${failures} FAILED`);
process.exit(failures === 0 ? 0 : 1);
