/**
 * GPU check of the CUDA flex-flash-attention forward (src/kernels/cuda/ffa_fwd.cu, and with --sm90
 * the Hopper ffa_fwd_sm90.cu) against the float64 reference (not a CI test: it needs a GPU). Run on
 * the GPU machine:
 *   node dist/test/device/ffa-fwd-gpu.js [--seed N] [--only NAME] [--tiles 8x64,8x128,4x64] [--sm90] [--speed]
 * (--tiles: the mma.sync kernel's warps x blockN tile shapes to check, each against the same
 * reference; --sm90: also check the Hopper kernel on every case, and run the option checks on it;
 * --speed: after the checks, a speed read of the Hopper kernel against the mma.sync one at 16k
 * tokens, full / causal / varlen-causal, 64:8 heads, D 128, bf16: median of 10 CUDA-event-timed
 * launches after 3 warm-ups, TFLOP/s = 4 · area · Hq · D / time; informational, never fails.)
 * --sm90 checks every build of the Hopper kernel (each forced; the forward picks one per plan):
 * one block per work item on 128-key and on 176-key k tiles (the wide build, forced on every
 * mask, not only the full slices it is picked for), and persistent twice: on its full grid (one
 * block per SM) and on a grid of 7 blocks, so that every block walks many work items (the test
 * cases have fewer items than an H200 has SMs). Each case's references are computed once and
 * every kernel is checked against them; the determinism and option checks run on both
 * one-block-per-item kernels and the 7-block persistent one (without --sm90: on the last mma.sync
 * tile shape).
 * Fresh random inputs per case (never zeros; q is scaled up so the softmax is peaked), output
 * buffers poisoned with NaN bits before every launch, one PASS/FAIL line per case, exit code 1 on
 * any failure.
 *
 * Tolerance of the main cases: the reference's two-criterion form per tensor and dtype
 * (test/device/common.ts checkForwardTwoCriterion: error against float64 at most 2x that of the
 * same attention computed in the input dtype, and a mismatch fraction at most 2x that one's);
 * rows whose reference lse is -inf must come back as exactly out = 0, lse = -inf, and nothing may
 * be NaN. The option checks below keep the element-wise bound of checkForward
 * (|out − ref| ≤ 2e-2·max|ref out|, |lse − ref| ≤ 1e-3·(1 + |ref lse|)).
 */
import { CuFuncAttr } from '../../src/device/index.js';
import { Tensor } from '../../src/tensor.js';
import type { DType } from '../../src/dtype.js';
import { referenceForward } from '../../src/kernels/reference.js';
import { CudaFfaForward, planFfaForward } from '../../src/kernels/cuda/ffa-forward.js';
import { blockCausalMask, causalMask, fullMask, makeSliceList, sliceListArea, slidingWindowMask, varlenCausalMask, type SliceList } from '../../src/mask/index.js';
import {
  type AttnCase, Tally, checkForward, checkForwardTwoCriterion, cloneTensor, lowPrecisionReference, nestedQSlices, openDevice, randomOverlappingSlices, randomQkv, randomTensor as uniformTensor,
  sameResults, scriptArgs, secondRunSame, speedCases, speedEntry,
} from './common.js';
import { meanEventMs } from '../../bench/kernel/timing.js';
import { hostForward } from './host-harness.js';

const args = scriptArgs();
const { rng } = args;
const tiles = args.value('--tiles', '8x64').split(',').map((t) => t.split('x').map(Number) as [number, number]);
const randomTensor = (dtype: DType, shape: number[], amp: number): Tensor => uniformTensor(rng, dtype, shape, amp);

interface Case extends AttnCase {
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

const dev = openDevice();
let t0 = performance.now();
const kernels = tiles.map(([warps, blockN]) => new CudaFfaForward(dev, { tile: { warps, blockN } }));
/** Grid of the second persistent Hopper kernel checked (see the file comment). */
const PERSISTENT_TEST_BLOCKS = 7;
/** The kernels the determinism and option checks run on (see the file comment). */
let checked = [kernels[kernels.length - 1]];
if (args.has('--sm90')) {
  const perItem = new CudaFfaForward(dev, { kernel: 'sm90', sm90: { build: 'block' } });
  const wide = new CudaFfaForward(dev, { kernel: 'sm90', sm90: { build: 'wide' } });
  const persistent = new CudaFfaForward(dev, { kernel: 'sm90', sm90: { build: 'persistent' } });
  const persistent7 = new CudaFfaForward(dev, { kernel: 'sm90', sm90: { build: 'persistent', maxBlocks: PERSISTENT_TEST_BLOCKS } });
  kernels.push(perItem, wide, persistent, persistent7);
  checked = [perItem, wide, persistent7];
}
/** `sm90 per item`, `sm90 per item wide`, `sm90 persistent`, `sm90 persistent 7 blocks` or `mma tile 128x64`. */
const kernelName = (f: CudaFfaForward): string =>
  f.sm90 === null
    ? `mma tile ${f.blockM}x${f.blockN}`
    : f.sm90.build !== 'persistent'
      ? `sm90 per item${f.sm90.build === 'wide' ? ' wide' : ''}`
      : `sm90 persistent${f.sm90.maxBlocks === undefined ? '' : ` ${f.sm90.maxBlocks} blocks`}`;
for (const ffa of kernels) {
  // the Hopper modules compile on first use: here, so that the time and register counts show
  const [module, names] =
    ffa.sm90 !== null
      ? [ffa.sm90.module(ffa.sm90.build === 'auto' ? 'block' : ffa.sm90.build), ['ffa_fwd_sm90_bf16_d128_direct', 'ffa_fwd_sm90_bf16_d128_merge', 'ffa_fwd_sm90_bf16_d64_direct']]
      : [ffa.module, ['ffa_fwd_bf16_d128_direct', 'ffa_fwd_bf16_d128_merge', 'ffa_fwd_bf16_d64_direct']];
  if (ffa.sm90?.maxBlocks !== undefined) continue; // the same module as the full-grid persistent one
  for (const name of names) {
    const kern = module.kernel(name);
    console.log(`${kernelName(ffa)} ${name}: ${kern.attribute(CuFuncAttr.NUM_REGS)} regs, ${kern.attribute(CuFuncAttr.LOCAL_SIZE_BYTES)} B local`);
  }
}
console.log(`nvrtc compile + load (${tiles.length} mma tile shapes${args.has('--sm90') ? ' + the three sm90 builds' : ''}): ${(performance.now() - t0).toFixed(0)} ms`);

const tally = new Tally();
tally.forEach(cases, args.selects, '', (c) => {
  const { q, k, v } = randomQkv(rng, c);
  const softmaxScale = 1 / Math.sqrt(c.dim);
  const fargs = {
    q, k, v, slices: c.slices, softmaxScale, softcap: c.softcap ?? 0, returnMaxLogits: false,
    outDtype: c.outDtype ?? c.dtype, deterministic: false,
  };
  t0 = performance.now();
  const ref = referenceForward(fargs);
  const lp = lowPrecisionReference({ q, k, v, slices: c.slices, softmaxScale, softcap: fargs.softcap }, c.dtype);
  const refMs = performance.now() - t0;
  for (const ffa of kernels) {
    const plan = planFfaForward(c.slices, c.tokensQ, ffa.blockM, ffa.blockN);
    t0 = performance.now();
    const got = hostForward(ffa, fargs, { poison: true, forceMerge: c.forceMerge ?? false, outDtype: c.outDtype ?? c.dtype });
    const gpuMs = performance.now() - t0;
    const r = checkForwardTwoCriterion(got, ref, lp, c.dim, c.dtype);
    tally.record(
      r.ok,
      `${c.name} [${kernelName(ffa)}]: ${plan.numWork} work tiles (${plan.overlappingQ || c.forceMerge || c.outDtype === 'float32' ? 'merge' : 'direct'}), ` +
        `${r.line}; gpu ${gpuMs.toFixed(0)} ms, refs ${refMs.toFixed(0)} ms`,
    );
  }
});

// determinism of the direct path: two launches give bit-equal outputs
try {
  const c = cases.find((x) => x.name.startsWith('varlen causal [300,700,37,1011]'))!;
  const { q, k, v } = randomQkv(rng, c);
  const fargs = { q, k, v, slices: c.slices, softmaxScale: 1 / Math.sqrt(c.dim), softcap: 0, returnMaxLogits: false, outDtype: c.dtype, deterministic: false };
  for (const ffa of checked) {
    const a = hostForward(ffa, fargs, { poison: true });
    const b = hostForward(ffa, fargs, { poison: true });
    tally.record(sameResults(a, b, ['out', 'lse']), `direct epilogue is deterministic [${kernelName(ffa)}] (bit-equal out and lse over two launches)`);
  }
} catch (e) {
  tally.threw('determinism', e);
}

// ---------------------------------------------------------------------------------------------
// Options around the main launch: sink, accumulation into (out, lse), max_logits, deterministic.
// Same tolerances as above, plus: maxLogits |got − ref| ≤ 1e-3·(1 + |ref|); accumulator rows this
// call does not reach (and no sink) keep their exact bits; accumulator rows with lse = -inf hold
// NaN bits (never read).

/** Random slices: q ranges overlap freely, the last twentieth of the rows uncovered, mixed types. */
const randomSlices = (tokensQ: number, tokensK: number, n: number): SliceList => randomOverlappingSlices(rng, tokensQ, tokensK, n, 'q');

/** checkForward as one summary line. */
function checkOutLse(got: { out: Tensor; lse: Tensor }, ref: { out: Tensor; lse: Tensor }, dim: number): [boolean, string] {
  const r = checkForward(got, ref, dim);
  return [r.ok, `out err ${r.outErr.toExponential(2)} (rel ${(r.outErr / (r.maxRef || 1)).toExponential(2)}), lse err ${r.lseErr.toExponential(2)}` + (r.bad ? `; ${r.bad} bad, first ${r.firstBad}` : '')];
}

const isNegInf = (x: number): boolean => x === -Infinity;

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
    if (rng.next() < emptyFrac) {
      ld[r] = -Infinity;
      for (let d = 0; d < dim; d++) out.data[r * dim + d] = dtype === 'float32' ? NaN : 0xffff;
    } else {
      ld[r] = rng.next() * 6;
    }
  }
  return { out, lse };
}

interface OptCase extends AttnCase {
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

tally.forEach(optCases, args.selects, '[options] ', (c) => {
  const { q, k, v } = randomQkv(rng, c);
  const sink = c.sink === undefined ? undefined : randomTensor('float32', [c.sink, c.headsQ], 3);
  const acc = c.acc === undefined ? undefined : randomAccumulators(c.acc, c.tokensQ, c.headsQ, c.dim, 0.25);
  let maxAcc: Tensor | undefined;
  if (c.maxLogits === 'merge') {
    maxAcc = randomTensor('float32', [c.headsQ], 4);
    (maxAcc.data as Float32Array)[0] = 100; // above any logit: must stay
    (maxAcc.data as Float32Array)[1] = -Infinity;
  }
  const fargs = {
    q, k, v, slices: c.slices, softmaxScale: 1 / Math.sqrt(c.dim), softcap: c.softcap ?? 0,
    returnMaxLogits: c.maxLogits === 'fresh', outDtype: c.outDtype ?? c.dtype, deterministic: c.deterministic ?? false,
    ...(sink === undefined ? {} : { sink }),
    ...(acc === undefined ? {} : { outAcc: acc.out, lseAcc: acc.lse }),
    ...(maxAcc === undefined ? {} : { maxLogitsAcc: maxAcc }),
  };
  const ref = referenceForward(fargs);
  // without a sink: the rows this call does not reach, which must keep the accumulator's bits
  const part = acc !== undefined && sink === undefined ? referenceForward({ ...fargs, outAcc: undefined, lseAcc: undefined }) : undefined;
  for (const ffa of checked) {
    const run = () =>
      hostForward(ffa,
        {
          ...fargs,
          ...(acc === undefined ? {} : { outAcc: cloneTensor(acc.out), lseAcc: cloneTensor(acc.lse) }),
          ...(maxAcc === undefined ? {} : { maxLogitsAcc: cloneTensor(maxAcc) }),
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
      if (part !== undefined) {
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
    if (c.deterministic) ok = secondRunSame(got, run(), ['out', 'lse', 'maxLogits'], parts) && ok;
    tally.record(ok, `[options] ${c.name} [${kernelName(ffa)}]: ${parts.join('; ')}`);
  }
});

// Deterministic mode on heavily overlapping q ranges (16 slices over the same rows): two runs
// bit-identical (fp32 out, so no rounding hides a difference) and within tolerance; the default
// mode is shown for contrast (informational). Then timing, default vs deterministic.
try {
  const T = 1024;
  const n = 16;
  const slices = nestedQSlices(T, n, (i) => [i * 64, i * 64 + 256]);
  const { q, k, v } = randomQkv(rng, { tokensQ: T, tokensK: T + 256, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16' });
  const base = { q, k, v, slices, softmaxScale: 1 / Math.sqrt(128), softcap: 0, returnMaxLogits: false, outDtype: 'float32' as DType };
  const ref = referenceForward({ ...base, deterministic: true });
  for (const ffa of checked) {
    const a = hostForward(ffa, { ...base, deterministic: true }, { poison: true, outDtype: 'float32' });
    const b = hostForward(ffa, { ...base, deterministic: true }, { poison: true, outDtype: 'float32' });
    const [okTol, msg] = checkOutLse(a, ref, 128);
    const same = sameResults(a, b, ['out', 'lse']);
    let nondetDiffers = false;
    for (let i = 0; i < 4 && !nondetDiffers; i++) {
      const x = hostForward(ffa, { ...base, deterministic: false }, { outDtype: 'float32' });
      const y = hostForward(ffa, { ...base, deterministic: false }, { outDtype: 'float32' });
      nondetDiffers = !sameResults(x, y, ['out']);
    }
    tally.record(okTol && same, `deterministic forward [${kernelName(ffa)}], ${n} slices over overlapping q ranges, 8:2 heads, bf16 d128, fp32 out: ${same ? 'two runs bit-identical' : 'runs DIFFER'}; ${msg}; (default mode runs ${nondetDiffers ? 'differ' : 'happened to agree'})`);
  }

  // timing on the same shape scaled up: default vs deterministic, fp32 out
  const S = 8192;
  const big = nestedQSlices(S, n, (i) => [i * 512, i * 512 + 2048]);
  const shape = { tokensQ: S, tokensK: S + 2048, headsQ: 32, headsKv: 8, dim: 128, dtype: 'bfloat16' as DType };
  const bq = dev.alloc(S * 32 * 128 * 2);
  const bk = dev.alloc((S + 2048) * 8 * 128 * 2);
  const bv = dev.alloc((S + 2048) * 8 * 128 * 2);
  for (const x of [bq, bk, bv]) x.fill(0x3c);
  const bo = dev.alloc(S * 32 * 128 * 2);
  const bl = dev.alloc(S * 32 * 4);
  // timed on each checked schedule with its full grid (not the 7-block persistent one)
  const timedKernels = args.has('--sm90') ? kernels.filter((f) => f.sm90 !== null && f.sm90.maxBlocks === undefined) : checked;
  for (const timed of timedKernels) {
    const p = timed.prepare(shape, big);
    const time = (det: boolean): number => meanEventMs(dev, () => p.launch(bq, bk, bv, bo, bl, 0.088, 0, undefined, { deterministic: det }), 2, 5);
    const tDef = time(false);
    const tDet = time(true);
    console.log(`TIME fwd [${kernelName(timed)}] ${n} overlapping slices, S=${S}, 32:8 heads, D128 bf16: default ${tDef.toFixed(3)} ms, deterministic ${tDet.toFixed(3)} ms (${(tDet / tDef).toFixed(2)}x, ${p.deterministicWork().plan.groups.length / 2} launches)`);
    p.free();
  }
  for (const x of [bq, bk, bv, bo, bl]) x.free();
} catch (e) {
  tally.threw('deterministic forward', e);
}

// Speed read (--speed): the Hopper kernel against the mma.sync one, 64:8 heads, D 128, bf16.
if (args.has('--speed')) {
  try {
    const kernels = [['sm90', new CudaFfaForward(dev, { kernel: 'sm90' })], ['mma', new CudaFfaForward(dev, { kernel: 'mma' })]] as const;
    for (const { label, slices, shape } of speedCases()) {
      try {
        const { tokensQ: S, headsQ: HQ, headsKv: HKV, dim: D } = shape;
        const q = dev.upload(randomTensor('bfloat16', [S, HQ, D], 1).data);
        const k = dev.upload(randomTensor('bfloat16', [S, HKV, D], 1).data);
        const v = dev.upload(randomTensor('bfloat16', [S, HKV, D], 1).data);
        const out = dev.alloc(S * HQ * D * 2);
        const lse = dev.alloc(S * HQ * 4);
        const flops = 4 * sliceListArea(slices) * HQ * D;
        const line = kernels.map(([name, kern]) =>
          speedEntry(dev, name, flops, () => {
            const problem = kern.prepare(shape, slices);
            return { launch: () => problem.launch(q, k, v, out, lse, 1 / Math.sqrt(D)), free: () => problem.free() };
          }),
        );
        console.log(`speed ${label} S=${S} 64:8 D128 bf16: ${line.join(' | ')}`);
        for (const b of [q, k, v, out, lse]) b.free();
      } catch (e) {
        console.log(`speed ${label}: threw ${(e as Error).stack ?? String(e)}`);
      }
    }
  } catch (e) {
    console.log(`speed: threw ${(e as Error).stack ?? String(e)}`);
  }
}

dev.close();
tally.exit();
