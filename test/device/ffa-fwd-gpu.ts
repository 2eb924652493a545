/**
 * GPU check of the CUDA flex-flash-attention forward (src/kernels/cuda/ffa_fwd.cu) against the
 * float64 reference (not a CI test: it needs a GPU). Run on the GPU machine:
 *   node dist/test/device/ffa-fwd-gpu.js [--seed N] [--only NAME] [--tiles 8x64,8x128,4x64] [--sm90]
 * (--tiles: the mma.sync kernel's warps x blockN tile shapes to check, each against the same
 * reference; --sm90: also check the Hopper kernel (ffa_fwd_sm90.cu) on every case.)
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
if (argv.includes('--sm90')) kernels.push(new CudaFfaForward(dev, { kernel: 'sm90' }));
console.log(`nvrtc compile + load ffa_fwd.cu (${tiles.length} tile shapes): ${(performance.now() - t0).toFixed(0)} ms`);
for (const ffa of kernels) {
  for (const name of ['ffa_fwd_bf16_d128_direct', 'ffa_fwd_bf16_d128_merge', 'ffa_fwd_bf16_d64_direct']) {
    const kern = ffa.module.kernel(name);
    console.log(`tile ${ffa.blockM}x${ffa.blockN} ${name}: ${kern.attribute(CuFuncAttr.NUM_REGS)} regs, ${kern.attribute(CuFuncAttr.LOCAL_SIZE_BYTES)} B local`);
  }
}
const ffa = kernels[kernels.length - 1]; // the option checks below run on the last kernel (sm90 with --sm90)

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
        `${ok ? 'PASS' : 'FAIL'} ${c.name} [${ffa.sm90 !== null ? 'sm90 ' : ''}tile ${ffa.blockM}x${ffa.blockN}]: ${plan.numWork} work tiles (${plan.overlappingQ || c.forceMerge || c.outDtype === 'float32' ? 'merge' : 'direct'}), ` +
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

// ---------------------------------------------------------------------------------------------
// Options around the main launch: sink, accumulation into (out, lse), max_logits, deterministic.
// Same tolerances as above, plus: maxLogits |got − ref| ≤ 1e-3·(1 + |ref|); accumulator rows this
// call does not reach (and no sink) keep their exact bits; accumulator rows with lse = -inf hold
// NaN bits (never read).

/** Random slices: q ranges overlap freely, some rows uncovered, mixed types, some empty. */
function randomSlices(tokensQ: number, tokensK: number, n: number): SliceList {
  const qr: Array<[number, number]> = [];
  const kr: Array<[number, number]> = [];
  const types: number[] = [];
  for (let i = 0; i < n; i++) {
    const qs = Math.floor(rand() * tokensQ * 0.9);
    const qe = Math.min(tokensQ - Math.floor(tokensQ / 20), qs + 1 + Math.floor(rand() * tokensQ * 0.6));
    const ks = Math.floor(rand() * tokensK * 0.8);
    const ke = Math.min(tokensK, ks + 1 + Math.floor(rand() * tokensK * 0.7));
    qr.push([qs, Math.max(qs, qe)]);
    kr.push([ks, ke]);
    types.push(Math.floor(rand() * 4));
  }
  return makeSliceList(qr, kr, Uint8Array.from(types));
}

const isNegInf = (x: number): boolean => x === -Infinity;

/** Element-wise check of out/lse against the float64 reference; returns [ok, summary]. */
function checkOutLse(got: { out: Tensor; lse: Tensor }, ref: { out: Tensor; lse: Tensor }, dim: number): [boolean, string] {
  const o = got.out.toFloat64();
  const l = got.lse.toFloat64();
  const ro = ref.out.data as Float64Array;
  const rl = ref.lse.data as Float64Array;
  let maxRef = 0;
  for (const x of ro) maxRef = Math.max(maxRef, Math.abs(x));
  let outErr = 0;
  let lseErr = 0;
  let bad = 0;
  let firstBad = '';
  for (let row = 0; row < rl.length; row++) {
    if (isNegInf(rl[row])) {
      let ok = isNegInf(l[row]);
      for (let d = 0; d < dim; d++) if (o[row * dim + d] !== 0) ok = false;
      if (!ok && bad++ === 0) firstBad = `row ${row}: expected empty (lse ${l[row]}, out[0] ${o[row * dim]})`;
      continue;
    }
    const le = Math.abs(l[row] - rl[row]);
    if (!(le <= 1e-3 * (1 + Math.abs(rl[row]))) && bad++ === 0) firstBad = `row ${row}: lse ${l[row]} vs ${rl[row]}`;
    if (Number.isFinite(le)) lseErr = Math.max(lseErr, le);
    for (let d = 0; d < dim; d++) {
      const e = Math.abs(o[row * dim + d] - ro[row * dim + d]);
      if (!(e <= 2e-2 * maxRef) && bad++ === 0) firstBad = `row ${row} d ${d}: out ${o[row * dim + d]} vs ${ro[row * dim + d]}`;
      if (Number.isFinite(e)) outErr = Math.max(outErr, e);
    }
  }
  return [bad === 0, `out err ${outErr.toExponential(2)} (rel ${(outErr / (maxRef || 1)).toExponential(2)}), lse err ${lseErr.toExponential(2)}` + (bad ? `; ${bad} bad, first ${firstBad}` : '')];
}

function checkMaxLogits(got: Tensor | undefined, ref: Tensor | undefined): [boolean, string] {
  if (got === undefined || ref === undefined) return [false, 'maxLogits missing'];
  const g = got.toFloat64();
  const r = ref.toFloat64();
  let worst = 0;
  let ok = true;
  for (let h = 0; h < r.length; h++) {
    if (isNegInf(r[h])) {
      if (!isNegInf(g[h])) ok = false;
      continue;
    }
    const e = Math.abs(g[h] - r[h]) / (1 + Math.abs(r[h]));
    if (!(e <= 1e-3)) ok = false;
    if (Number.isFinite(e)) worst = Math.max(worst, e);
  }
  return [ok, `maxLogits err/(1+|ref|) ${worst.toExponential(2)}`];
}

/** A random accumulator pair: lse in [0, 6) with `emptyFrac` rows at -inf whose out holds NaN bits. */
function randomAccumulators(dtype: DType, tokensQ: number, headsQ: number, dim: number, emptyFrac: number): { out: Tensor; lse: Tensor } {
  const out = randomTensor(dtype, [tokensQ, headsQ, dim], 1);
  const lse = Tensor.zeros('float32', [tokensQ, headsQ]);
  const ld = lse.data as Float32Array;
  for (let r = 0; r < ld.length; r++) {
    if (rand() < emptyFrac) {
      ld[r] = -Infinity;
      for (let d = 0; d < dim; d++) out.data[r * dim + d] = dtype === 'float32' ? NaN : 0xffff;
    } else {
      ld[r] = rand() * 6;
    }
  }
  return { out, lse };
}

const cloneT = (t: Tensor): Tensor => new Tensor(t.dtype, t.shape, t.data.slice());
const sameBits = (x: Tensor, y: Tensor): boolean => Buffer.compare(Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength), Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength)) === 0;

interface OptCase {
  name: string;
  slices: SliceList;
  tokensQ: number;
  tokensK: number;
  headsQ: number;
  headsKv: number;
  dim: number;
  dtype: DType;
  softcap?: number;
  sink?: number;
  /** accumulator out dtype */
  acc?: DType;
  maxLogits?: 'fresh' | 'merge';
  deterministic?: boolean;
  outDtype?: DType;
}

const optCases: OptCase[] = [
  { name: 'sink 2, random overlapping mask, 8:2 heads, bf16 d128', slices: randomSlices(700, 900, 6), tokensQ: 700, tokensK: 900, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16', sink: 2 },
  { name: 'sink 3 + softcap 8, varlen causal (direct), 4:1 heads, fp16 d64', slices: varlenCausalMask([0, 200, 517, 800]), tokensQ: 800, tokensK: 800, headsQ: 4, headsKv: 1, dim: 64, dtype: 'float16', sink: 3, softcap: 8 },
  { name: 'acc bf16 + maxLogits merge, random overlapping mask, 8:2 heads, bf16 d128', slices: randomSlices(640, 700, 5), tokensQ: 640, tokensK: 700, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16', acc: 'bfloat16', maxLogits: 'merge' },
  { name: 'acc f32 + sink 1 + maxLogits fresh, random mask, 4:2 heads, fp16 d64', slices: randomSlices(600, 600, 4), tokensQ: 600, tokensK: 600, headsQ: 4, headsKv: 2, dim: 64, dtype: 'float16', acc: 'float32', sink: 1, maxLogits: 'fresh' },
  { name: 'maxLogits fresh + softcap 5, unaligned causal 333x500 (direct), 4:2 heads, bf16 d128', slices: makeSliceList([[0, 333]], [[0, 500]], 'causal'), tokensQ: 400, tokensK: 500, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16', softcap: 5, maxLogits: 'fresh' },
  { name: 'maxLogits merge, random mask, 4:4 heads, fp16 d128, float32 out', slices: randomSlices(500, 500, 4), tokensQ: 500, tokensK: 500, headsQ: 4, headsKv: 4, dim: 128, dtype: 'float16', maxLogits: 'merge', outDtype: 'float32' },
  { name: 'deterministic + sink + acc f32, random overlapping mask, 8:2 heads, bf16 d128', slices: randomSlices(600, 600, 8), tokensQ: 600, tokensK: 600, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16', deterministic: true, sink: 2, acc: 'float32', maxLogits: 'fresh' },
];

for (const c of optCases) {
  if (only !== undefined && !c.name.includes(only)) continue;
  try {
    const q = randomTensor(c.dtype, [c.tokensQ, c.headsQ, c.dim], 3);
    const k = randomTensor(c.dtype, [c.tokensK, c.headsKv, c.dim], 1);
    const v = randomTensor(c.dtype, [c.tokensK, c.headsKv, c.dim], 1);
    const sink = c.sink === undefined ? undefined : randomTensor('float32', [c.sink, c.headsQ], 3);
    const acc = c.acc === undefined ? undefined : randomAccumulators(c.acc, c.tokensQ, c.headsQ, c.dim, 0.25);
    let maxAcc: Tensor | undefined;
    if (c.maxLogits === 'merge') {
      maxAcc = randomTensor('float32', [c.headsQ], 4);
      (maxAcc.data as Float32Array)[0] = 100; // above any logit: must stay
      (maxAcc.data as Float32Array)[1] = -Infinity;
    }
    const args = {
      q, k, v, slices: c.slices, softmaxScale: 1 / Math.sqrt(c.dim), softcap: c.softcap ?? 0,
      returnMaxLogits: c.maxLogits === 'fresh', outDtype: c.outDtype ?? c.dtype, deterministic: c.deterministic ?? false,
      ...(sink === undefined ? {} : { sink }),
      ...(acc === undefined ? {} : { outAcc: acc.out, lseAcc: acc.lse }),
      ...(maxAcc === undefined ? {} : { maxLogitsAcc: maxAcc }),
    };
    const ref = referenceForward(args);
    const run = () =>
      ffa.forward(
        {
          ...args,
          ...(acc === undefined ? {} : { outAcc: cloneT(acc.out), lseAcc: cloneT(acc.lse) }),
          ...(maxAcc === undefined ? {} : { maxLogitsAcc: cloneT(maxAcc) }),
        },
        { poison: true, outDtype: c.outDtype ?? c.dtype },
      );
    const got = run();
    const parts: string[] = [];
    let [ok, msg] = checkOutLse(got, ref, c.dim);
    parts.push(msg);
    if (acc !== undefined) {
      if (got.out.dtype !== c.acc) {
        ok = false;
        parts.push(`out dtype ${got.out.dtype}, expected the accumulator's ${c.acc}`);
      }
      if (sink === undefined) {
        // rows this call does not reach keep their exact bits
        const part = referenceForward({ ...args, outAcc: undefined, lseAcc: undefined });
        let kept = 0;
        let changed = 0;
        const al = acc.lse.data as Float32Array;
        for (let r = 0; r < al.length; r++) {
          if (!isNegInf((part.lse.data as Float64Array)[r]) || isNegInf(al[r])) continue;
          kept++;
          let same = (got.lse.data as Float32Array)[r] === al[r];
          for (let d = 0; d < c.dim; d++) if (got.out.data[r * c.dim + d] !== acc.out.data[r * c.dim + d]) same = false;
          if (!same) changed++;
        }
        if (changed > 0) ok = false;
        parts.push(`${kept} untouched accumulator rows, ${changed} changed`);
      }
    }
    if (c.maxLogits !== undefined) {
      const [okM, msgM] = checkMaxLogits(got.maxLogits, ref.maxLogits);
      ok &&= okM;
      parts.push(msgM);
    }
    if (c.deterministic) {
      const again = run();
      const same = sameBits(got.out, again.out) && sameBits(got.lse, again.lse) && (got.maxLogits === undefined || sameBits(got.maxLogits, again.maxLogits!));
      ok &&= same;
      parts.push(same ? 'second run bit-identical' : 'second run DIFFERS');
    }
    if (!ok) failures++;
    console.log(`${ok ? 'PASS' : 'FAIL'} [options] ${c.name}: ${parts.join('; ')}`);
  } catch (e) {
    failures++;
    console.log(`FAIL [options] ${c.name}: threw ${(e as Error).stack ?? String(e)}`);
  }
}

// Deterministic mode on heavily overlapping q ranges (16 slices over the same rows): two runs
// bit-identical (fp32 out, so no rounding hides a difference) and within tolerance; the default
// mode is shown for contrast (informational). Then timing, default vs deterministic.
try {
  const T = 1024;
  const n = 16;
  const slices = makeSliceList(
    Array.from({ length: n }, (_, i) => [Math.floor((i * T) / (4 * n)), T - Math.floor((i * T) / (8 * n))] as [number, number]),
    Array.from({ length: n }, (_, i) => [i * 64, i * 64 + 256] as [number, number]),
    Uint8Array.from({ length: n }, (_, i) => i % 4),
  );
  const q = randomTensor('bfloat16', [T, 8, 128], 3);
  const k = randomTensor('bfloat16', [T + 256, 2, 128], 1);
  const v = randomTensor('bfloat16', [T + 256, 2, 128], 1);
  const base = { q, k, v, slices, softmaxScale: 1 / Math.sqrt(128), softcap: 0, returnMaxLogits: false, outDtype: 'float32' as DType };
  const ref = referenceForward({ ...base, deterministic: true });
  const a = ffa.forward({ ...base, deterministic: true }, { poison: true, outDtype: 'float32' });
  const b = ffa.forward({ ...base, deterministic: true }, { poison: true, outDtype: 'float32' });
  const [okTol, msg] = checkOutLse(a, ref, 128);
  const same = sameBits(a.out, b.out) && sameBits(a.lse, b.lse);
  let nondetDiffers = false;
  for (let i = 0; i < 4 && !nondetDiffers; i++) {
    const x = ffa.forward({ ...base, deterministic: false }, { outDtype: 'float32' });
    const y = ffa.forward({ ...base, deterministic: false }, { outDtype: 'float32' });
    nondetDiffers = !sameBits(x.out, y.out);
  }
  const ok = okTol && same;
  if (!ok) failures++;
  console.log(`${ok ? 'PASS' : 'FAIL'} deterministic forward, ${n} slices over overlapping q ranges, 8:2 heads, bf16 d128, fp32 out: ${same ? 'two runs bit-identical' : 'runs DIFFER'}; ${msg}; (default mode runs ${nondetDiffers ? 'differ' : 'happened to agree'})`);

  // timing on the same shape scaled up: default vs deterministic, fp32 out
  const S = 8192;
  const big = makeSliceList(
    Array.from({ length: n }, (_, i) => [Math.floor((i * S) / (4 * n)), S - Math.floor((i * S) / (8 * n))] as [number, number]),
    Array.from({ length: n }, (_, i) => [i * 512, i * 512 + 2048] as [number, number]),
    Uint8Array.from({ length: n }, (_, i) => i % 4),
  );
  const shape = { tokensQ: S, tokensK: S + 2048, headsQ: 32, headsKv: 8, dim: 128, dtype: 'bfloat16' as DType };
  const bq = dev.alloc(S * 32 * 128 * 2);
  const bk = dev.alloc((S + 2048) * 8 * 128 * 2);
  const bv = dev.alloc((S + 2048) * 8 * 128 * 2);
  for (const x of [bq, bk, bv]) x.fill(0x3c);
  const bo = dev.alloc(S * 32 * 128 * 2);
  const bl = dev.alloc(S * 32 * 4);
  const p = ffa.prepare(shape, big);
  const time = (det: boolean): number => {
    for (let i = 0; i < 2; i++) p.launch(bq, bk, bv, bo, bl, 0.088, 0, undefined, { deterministic: det });
    const e0 = dev.createEvent().record();
    for (let i = 0; i < 5; i++) p.launch(bq, bk, bv, bo, bl, 0.088, 0, undefined, { deterministic: det });
    const e1 = dev.createEvent().record();
    const ms = e1.elapsedSince(e0) / 5;
    e0.destroy();
    e1.destroy();
    return ms;
  };
  const tDef = time(false);
  const tDet = time(true);
  console.log(`TIME fwd ${n} overlapping slices, S=${S}, 32:8 heads, D128 bf16: default ${tDef.toFixed(3)} ms, deterministic ${tDet.toFixed(3)} ms (${(tDet / tDef).toFixed(2)}x, ${p.deterministicWork().plan.groups.length / 2} launches)`);
  p.free();
  for (const x of [bq, bk, bv, bo, bl]) x.free();
} catch (e) {
  failures++;
  console.log(`FAIL deterministic forward: threw ${(e as Error).stack ?? String(e)}`);
}

dev.close();
console.log(failures === 0 ? 'ALL PASS' : `${failures} FAILED`);
process.exit(failures === 0 ? 0 : 1);
