/**
 * GPU check of the CUDA flex-flash-attention forward (src/kernels/cuda/ffa_fwd.cu) against the
 * float64 reference (not a CI test: it needs a GPU). Run on the GPU machine:
 *   node dist/test/device/ffa-fwd-gpu.js [--seed N] [--only NAME] [--tiles 8x64,8x128,4x64]
 * (--tiles: the warps x blockN tile shapes to check, each against the same reference.)
 * Fresh random inputs per case (never zeros; q is scaled up so the softmax is peaked), output
 * buffers poisoned with NaN bits before every launch, one PASS/FAIL line per case, exit code 1 on
 * any failure.
 *
 * Tolerance (stated, simpler than 04 §4.3): element-wise
 *   |out - ref| <= 2e-2 * max|ref out|     and     |lse - ref| <= 1e-3 * (1 + |ref lse|),
 * rows whose reference lse is -inf must come back as exactly out = 0, lse = -inf, and nothing may
 * be NaN.
 */
import { CudaDevice, CuFuncAttr } from '../../src/device/index.js';
import { Tensor } from '../../src/tensor.js';
import type { DType } from '../../src/dtype.js';
import { referenceForward } from '../../src/kernels/reference.js';
import { CudaFfaForward, planFfaForward } from '../../src/kernels/cuda/ffa-forward.js';
import { blockCausalMask, causalMask, fullMask, makeSliceList, slidingWindowMask, varlenCausalMask, type SliceList } from '../../src/mask/index.js';

const argv = process.argv;
const seedArg = argv.indexOf('--seed');
const seed = seedArg >= 0 ? Number(argv[seedArg + 1]) : (Date.now() ^ (process.pid << 8)) >>> 0;
const onlyArg = argv.indexOf('--only');
const only = onlyArg >= 0 ? argv[onlyArg + 1] : undefined;
const tilesArg = argv.indexOf('--tiles');
const tiles = (tilesArg >= 0 ? argv[tilesArg + 1] : '8x64').split(',').map((t) => t.split('x').map(Number) as [number, number]);
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

/** Uniform in ±amp, never exactly 0. */
function randomTensor(dtype: DType, shape: number[], amp: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rand() * 2 - 1;
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
    name: 'sliding window 2048 [200,0] (causal + bi_causal band), 8:2 heads, bf16 d128',
    slices: slidingWindowMask(2048, [200, 0]),
    tokensQ: 2048, tokensK: 2048, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'overlapping q ranges (merge epilogue) + 76 uncovered rows, 4:4 heads, bf16 d128',
    slices: makeSliceList(
      [[0, 1024], [256, 1024], [0, 700], [900, 1024]],
      [[0, 512], [512, 1024], [1024, 1500], [1500, 1500]],
      ['full', 'causal', 'inv_causal', 'full'],
    ),
    tokensQ: 1100, tokensK: 1500, headsQ: 4, headsKv: 4, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'Lq > Lk: causal 1000x600 (first 400 rows empty) + inv_causal 400x200, 8:2 heads, bf16 d128',
    slices: makeSliceList([[0, 1000], [1000, 1400]], [[0, 600], [600, 800]], ['causal', 'inv_causal']),
    tokensQ: 1400, tokensK: 800, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'causal 1280 through the merge epilogue (forced), 8:2 heads, bf16 d128',
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
const kernels = tiles.map(([warps, blockN]) => new CudaFfaForward(dev, { tile: { warps, blockN } }));
console.log(`nvrtc compile + load ffa_fwd.cu (${tiles.length} tile shapes): ${(performance.now() - t0).toFixed(0)} ms`);
for (const ffa of kernels) {
  for (const name of ['ffa_fwd_bf16_d128_direct', 'ffa_fwd_bf16_d128_merge', 'ffa_fwd_bf16_d64_direct']) {
    const kern = ffa.module.kernel(name);
    console.log(`tile ${ffa.blockM}x${ffa.blockN} ${name}: ${kern.attribute(CuFuncAttr.NUM_REGS)} regs, ${kern.attribute(CuFuncAttr.LOCAL_SIZE_BYTES)} B local`);
  }
}
const ffa = kernels[0];

let failures = 0;
for (const c of cases) {
  if (only !== undefined && !c.name.includes(only)) continue;
  try {
    const amp = 1;
    const q = randomTensor(c.dtype, [c.tokensQ, c.headsQ, c.dim], 3 * amp);
    const k = randomTensor(c.dtype, [c.tokensK, c.headsKv, c.dim], amp);
    const v = randomTensor(c.dtype, [c.tokensK, c.headsKv, c.dim], amp);
    const softmaxScale = 1 / Math.sqrt(c.dim);
    const args = {
      q, k, v, slices: c.slices, softmaxScale, softcap: c.softcap ?? 0, returnMaxLogits: false,
      outDtype: c.outDtype ?? c.dtype, deterministic: false,
    };
    t0 = performance.now();
    const ref = referenceForward(args);
    const refMs = performance.now() - t0;
    for (const ffa of kernels) {
      const plan = planFfaForward(c.slices, c.tokensQ, ffa.blockM, ffa.blockN);
      t0 = performance.now();
      const got = ffa.forward(args, { poison: true, forceMerge: c.forceMerge ?? false, outDtype: c.outDtype ?? c.dtype });
      const gpuMs = performance.now() - t0;

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
        `${ok ? 'PASS' : 'FAIL'} ${c.name} [tile ${ffa.blockM}x${ffa.blockN}]: ${plan.numWork} work tiles (${plan.overlappingQ || c.forceMerge || c.outDtype === 'float32' ? 'merge' : 'direct'}), ` +
          `max|out err| ${outErr.toExponential(2)} (max|ref| ${maxRef.toFixed(3)}, rel ${(outErr / maxRef).toExponential(2)}), ` +
          `max|lse err| ${lseErr.toExponential(2)}, ${emptyRows} empty rows; gpu ${gpuMs.toFixed(0)} ms, ref ${refMs.toFixed(0)} ms` +
          (ok ? '' : `; ${bad} bad, first ${firstBad}`),
      );
    }
  } catch (e) {
    failures++;
    console.log(`FAIL ${c.name}: threw ${(e as Error).stack ?? String(e)}`);
  }
}

// determinism of the direct path: two launches give bit-equal outputs
try {
  const c = cases[2];
  const q = randomTensor(c.dtype, [c.tokensQ, c.headsQ, c.dim], 3);
  const k = randomTensor(c.dtype, [c.tokensK, c.headsKv, c.dim], 1);
  const v = randomTensor(c.dtype, [c.tokensK, c.headsKv, c.dim], 1);
  const args = { q, k, v, slices: c.slices, softmaxScale: 1 / Math.sqrt(c.dim), softcap: 0, returnMaxLogits: false, outDtype: c.dtype, deterministic: false };
  const a = ffa.forward(args, { poison: true });
  const b = ffa.forward(args, { poison: true });
  const same = (x: Tensor, y: Tensor): boolean => Buffer.compare(Buffer.from(x.data.buffer), Buffer.from(y.data.buffer)) === 0;
  const ok = same(a.out, b.out) && same(a.lse, b.lse);
  if (!ok) failures++;
  console.log(`${ok ? 'PASS' : 'FAIL'} direct epilogue is deterministic (bit-equal out and lse over two launches)`);
} catch (e) {
  failures++;
  console.log(`FAIL determinism: threw ${(e as Error).stack ?? String(e)}`);
}

dev.close();
console.log(failures === 0 ? 'ALL PASS' : `${failures} FAILED`);
process.exit(failures === 0 ? 0 : 1);
