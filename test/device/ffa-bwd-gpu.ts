/**
 * GPU check of the CUDA flex-flash-attention backward (src/kernels/cuda/ffa_bwd.cu, and on
 * compute capability 9.0 the Hopper ffa_bwd_sm90.cu for head dims 64 and 128) against the float64
 * reference (not a CI test: it needs a GPU). Run on the GPU machine:
 *   node dist/test/device/ffa-bwd-gpu.js [--seed N] [--only NAME] [--warps 4,8] [--dims 64,128] [--shard K/N] [--det-schedule ordered|grouped] [--bench] [--bench-only] [--speed | --speed-only] [--speed-dims 128,64]
 * --dims: only the main and option cases of these head dims (the deterministic block below is
 * head dim 128); --shard K/N: only every N-th of those cases from the K-th (main cases, then option
 * cases), so that N processes split the CPU-bound float64 references.
 * Kernels checked: one default CudaFfaBackward per --warps entry (4 warps: mma.sync; 8 warps: the
 * Hopper kernel for head dims 64 and 128 where available, else mma.sync) and, next to a default one that
 * picked the Hopper kernel, a { kernel: 'mma' } one of the same warps, so the mma.sync backward
 * stays covered on H100. The option checks run on the default kernel of the last --warps entry,
 * whose deterministic mode (CudaFfaBackward.deterministicScheduleAt) takes the ordered schedule on
 * the Hopper kernel at head dim 128 and the grouped one at head dim 64 and on the mma.sync kernel;
 * --det-schedule grouped checks the grouped one at head dim 128 as well (the schedule
 * bench/kernel/det-speed.ts times next to it). Under the ordered schedule every deterministic head
 * dim 128 check also runs both walks forced for every item (CudaFfaBackward's orderedWalk 'inner'
 * and 'outer'; the rule picks per group of tiles) and two forced block orders (blockOrder
 * 'kv-major' and { kvMajorShare: 0.5 }; the cases' small grids run item-major by the rule), each
 * against the reference (the option cases also twice), and requires dq bit-identical to the rule's
 * (each dQ tile gets its adds in rank order whichever walk and block order), and dk / dv too
 * under the forced block orders.
 * Per case: fresh random inputs; the default CUDA forward (ffa-forward.ts) gives out (input dtype)
 * and lse; the CUDA backward gets them with a random dout; referenceBackward is fed the SAME out
 * (the kernel's 16-bit out as float64) and lse. dq/dk/dv device buffers and every fp32 scratch
 * buffer are poisoned with NaN bits before the launch. One PASS/FAIL line per case and kernel,
 * exit 1 on any failure.
 *
 * Tolerance of the main cases: the reference's two-criterion form per tensor and dtype
 * (test/device/common.ts checkBackwardTwoCriterion: error against float64 at most 2x that of the
 * same attention computed in the input dtype, and a mismatch fraction at most 2x that one's), no
 * NaN, and key rows no slice covers must come back as exactly dk = dv = 0. The option checks below
 * keep an element-wise bound stated where they are.
 *
 * --bench: after the checks, times each checked backward (pre-pass + zero + main + convert, CUDA
 * events, 3 warm-ups, median of 10) at 8k/16k full and causal, 64:8 heads, D 128, bf16;
 * TFLOP/s = 2.5 · 4 · area · Hq · D / time. --bench-only: the same without the checks.
 * --speed: the Hopper backward against the mma.sync one at 16k tokens, full / causal /
 * varlen-causal / sliding window, 64:8 heads, bf16, per head dim of --speed-dims (default 128)
 * (same timing and TFLOP/s); informational, never fails; --speed-only: the same without the checks.
 */
import { CuFuncAttr } from '../../src/device/index.js';
import { Tensor } from '../../src/tensor.js';
import type { DType } from '../../src/dtype.js';
import { referenceBackward } from '../../src/kernels/reference.js';
import { CudaFfaForward } from '../../src/kernels/cuda/ffa-forward.js';
import { CudaFfaBackward, cutEveryItem, planFfaBackward, splitLongItems, type QRangeCut } from '../../src/kernels/cuda/ffa-backward.js';
import { orderedLaunches } from '../../src/kernels/cuda/ffa-backward-ordered.js';
import { blockCausalMask, causalMask, fullMask, makeSliceList, sliceListArea, slidingWindowMask, varlenCausalMask, type SliceList } from '../../src/mask/index.js';
import {
  type AttnCase, Tally, checkBackwardTwoCriterion, cloneTensor, lowPrecisionReference, nestedQSlices, openDevice, randomOverlappingSlices, randomQkv,
  randomTensor as uniformTensor, sameResults, scriptArgs, secondRunSame, speedCases, speedEntry, uncoveredKeys,
} from './common.js';
import { meanEventMs, medianEventMs } from '../../bench/kernel/timing.js';
import { backwardTflops, benchShape } from '../../bench/kernel/bwd-bench.js';
import { hostBackward, hostForward } from './host-harness.js';

const args = scriptArgs();
const { rng } = args;
const warpList = args.value('--warps', '4,8').split(',').map(Number);
const bench = args.has('--bench') || args.has('--bench-only');
const checks = !args.has('--bench-only') && !args.has('--speed-only');
const caseDims = args.value('--dims', '64,128').split(',').map(Number);
const detSchedule = args.value('--det-schedule', 'ordered');
if (detSchedule !== 'ordered' && detSchedule !== 'grouped') throw new Error(`--det-schedule must be ordered or grouped, got ${detSchedule}`);
const [shardK, shardN] = args.value('--shard', '0/1').split('/').map(Number);
if (!(Number.isInteger(shardK) && Number.isInteger(shardN) && shardN >= 1 && shardK >= 0 && shardK < shardN)) throw new Error(`--shard must be K/N with 0 <= K < N, got ${args.value('--shard', '0/1')}`);
/** The cases of --dims that fall to this --shard (`offset`: index of the list's first case in the main + option sequence). */
const pick = <C extends { dim: number }>(list: readonly C[], offset: number): C[] =>
  list.filter((c) => caseDims.includes(c.dim)).filter((_, i) => (offset + i) % shardN === shardK);
const randomTensor = (dtype: DType, shape: number[], amp: number): Tensor => uniformTensor(rng, dtype, shape, amp);

type Case = AttnCase;

const cases: Case[] = [
  { name: 'full 512, 8:2 heads, bf16 d128', slices: fullMask(512), tokensQ: 512, tokensK: 512, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16' },
  { name: 'causal 1024, 4:4 heads, bf16 d128', slices: causalMask(1024), tokensQ: 1024, tokensK: 1024, headsQ: 4, headsKv: 4, dim: 128, dtype: 'bfloat16' },
  {
    name: 'varlen causal [300,400,37,287], 4:2 heads, bf16 d128',
    slices: varlenCausalMask([0, 300, 700, 737, 1024]),
    tokensQ: 1024, tokensK: 1024, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'block-causal 2 docs [600,400] block 150, 4:2 heads, bf16 d128',
    slices: blockCausalMask([0, 600, 1000], 150),
    tokensQ: 1000, tokensK: 1000, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'sliding window 768 [100,0] (causal + bi_causal band), 8:2 heads, bf16 d128',
    slices: slidingWindowMask(768, [100, 0]),
    tokensQ: 768, tokensK: 768, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'overlapping q ranges + uncovered q rows 512..560 and keys 800..850, 4:4 heads, bf16 d128',
    slices: makeSliceList(
      [[0, 512], [128, 512], [0, 400], [450, 512]],
      [[0, 256], [256, 512], [512, 800], [800, 800]],
      ['full', 'causal', 'inv_causal', 'full'],
    ),
    tokensQ: 560, tokensK: 850, headsQ: 4, headsKv: 4, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'Lq > Lk: causal 600x300 (first 300 rows empty) + inv_causal 300x150, 8:2 heads, bf16 d128',
    slices: makeSliceList([[0, 600], [600, 900]], [[0, 300], [300, 450]], ['causal', 'inv_causal']),
    tokensQ: 900, tokensK: 450, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'bi_causal band 300x500 + full 200x100 (disjoint), 4:1 heads, bf16 d64',
    slices: makeSliceList([[0, 300], [300, 500]], [[0, 500], [500, 600]], ['bi_causal', 'full']),
    tokensQ: 500, tokensK: 600, headsQ: 4, headsKv: 1, dim: 64, dtype: 'bfloat16',
  },
  {
    name: 'varlen causal, 4:2 heads, bf16 d64',
    slices: varlenCausalMask([0, 517, 800, 1024]),
    tokensQ: 1024, tokensK: 1024, headsQ: 4, headsKv: 2, dim: 64, dtype: 'bfloat16',
  },
  {
    name: 'causal 768, 4:2 heads, fp16 d128, softcap 5',
    slices: causalMask(768), tokensQ: 768, tokensK: 768, headsQ: 4, headsKv: 2, dim: 128, dtype: 'float16', softcap: 5,
  },
  {
    name: 'full 512, 8:2 heads, bf16 d128, softcap 30',
    slices: fullMask(512), tokensQ: 512, tokensK: 512, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16', softcap: 30,
  },
  {
    name: 'full 700x900 unaligned, 4:1 heads, fp16 d64',
    slices: makeSliceList([[0, 700]], [[0, 900]], 'full'),
    tokensQ: 700, tokensK: 900, headsQ: 4, headsKv: 1, dim: 64, dtype: 'float16',
  },
  {
    name: 'varlen causal [300,700,37,987] (2024 tokens), 4:1 heads, bf16 d128',
    slices: varlenCausalMask([0, 300, 1000, 1037, 2024]),
    tokensQ: 2024, tokensK: 2024, headsQ: 4, headsKv: 1, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'block-causal 2 docs [1000,536] block 200, 4:4 heads, bf16 d128',
    slices: blockCausalMask([0, 1000, 1536], 200),
    tokensQ: 1536, tokensK: 1536, headsQ: 4, headsKv: 4, dim: 128, dtype: 'bfloat16',
  },
  { name: 'sliding window 1500 [200,0], 4:2 heads, bf16 d128', slices: slidingWindowMask(1500, [200, 0]), tokensQ: 1500, tokensK: 1500, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16' },
  {
    name: 'overlapping q ranges, all four types + uncovered keys 1400..1450 mid-sequence, 4:2 heads, bf16 d128',
    slices: makeSliceList(
      [[0, 1024], [256, 1024], [0, 700], [900, 1024]],
      [[0, 512], [512, 1024], [1024, 1400], [1450, 1500]],
      ['full', 'causal', 'inv_causal', 'bi_causal'],
    ),
    tokensQ: 1100, tokensK: 1500, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16',
  },
  {
    name: 'Lq > Lk: causal 1000x600 + inv_causal 400x200, 4:2 heads, fp16 d128',
    slices: makeSliceList([[0, 1000], [1000, 1400]], [[0, 600], [600, 800]], ['causal', 'inv_causal']),
    tokensQ: 1400, tokensK: 800, headsQ: 4, headsKv: 2, dim: 128, dtype: 'float16',
  },
  { name: 'causal 777 unaligned, 4:2 heads, fp16 d128, softcap 5', slices: causalMask(777), tokensQ: 777, tokensK: 777, headsQ: 4, headsKv: 2, dim: 128, dtype: 'float16', softcap: 5 },
  // head dim 64 (the Hopper kernel steps 128 q rows at a time there, each consumer warpgroup
  // owning 64 of them for dQ): q lengths that are not multiples of 128 or of 64, every mask type
  { name: 'causal 1000, 8:2 heads, bf16 d64', slices: causalMask(1000), tokensQ: 1000, tokensK: 1000, headsQ: 8, headsKv: 2, dim: 64, dtype: 'bfloat16' },
  { name: 'full 512, 4:4 heads, bf16 d64', slices: fullMask(512), tokensQ: 512, tokensK: 512, headsQ: 4, headsKv: 4, dim: 64, dtype: 'bfloat16' },
  { name: 'sliding window 900 [150,0], 8:2 heads, bf16 d64', slices: slidingWindowMask(900, [150, 0]), tokensQ: 900, tokensK: 900, headsQ: 8, headsKv: 2, dim: 64, dtype: 'bfloat16' },
  {
    name: 'block-causal 2 docs [600,400] block 150, 4:2 heads, bf16 d64, softcap 20',
    slices: blockCausalMask([0, 600, 1000], 150),
    tokensQ: 1000, tokensK: 1000, headsQ: 4, headsKv: 2, dim: 64, dtype: 'bfloat16', softcap: 20,
  },
  {
    name: 'overlapping q ranges, all four types + uncovered keys 1400..1450 mid-sequence, 4:2 heads, bf16 d64',
    slices: makeSliceList(
      [[0, 1024], [256, 1024], [0, 700], [900, 1024]],
      [[0, 512], [512, 1024], [1024, 1400], [1450, 1500]],
      ['full', 'causal', 'inv_causal', 'bi_causal'],
    ),
    tokensQ: 1100, tokensK: 1500, headsQ: 4, headsKv: 2, dim: 64, dtype: 'bfloat16',
  },
  {
    name: 'Lq > Lk: causal 1000x600 + inv_causal 400x200, 4:2 heads, fp16 d64',
    slices: makeSliceList([[0, 1000], [1000, 1400]], [[0, 600], [600, 800]], ['causal', 'inv_causal']),
    tokensQ: 1400, tokensK: 800, headsQ: 4, headsKv: 2, dim: 64, dtype: 'float16',
  },
  { name: 'causal 777 unaligned, 4:1 heads, fp16 d64, softcap 5', slices: causalMask(777), tokensQ: 777, tokensK: 777, headsQ: 4, headsKv: 1, dim: 64, dtype: 'float16', softcap: 5 },
];

const dev = openDevice();
let t0 = performance.now();
const fwd = new CudaFfaForward(dev);
// one default backward per --warps entry; next to one that picked the Hopper kernel, its mma twin
const defaults = warpList.map((w) => new CudaFfaBackward(dev, { warps: w, deterministicSchedule: detSchedule }));
// (and one more Hopper one: work items cut at every 256 q rows, so that the cases run through
// splitLongItems' pieces as long full and causal slices do, half the items kv-major and half item-major, so
// that every case runs both halves of the split order (the small cases' plans mostly pick all
// kv-major, ffa-backward-order.ts))
const CUT_256: QRangeCut = cutEveryItem(256);
const bwds = defaults.flatMap((b) =>
  b.sm90 !== null
    ? [b, new CudaFfaBackward(dev, { warps: b.warps, kernel: 'mma' }), new CudaFfaBackward(dev, { warps: b.warps, qRangeCut: CUT_256, blockOrder: { kvMajorShare: 0.5 } })]
    : [b],
);
console.log(`nvrtc compile + load ffa_fwd.cu and ffa_bwd.cu (${bwds.length} configs): ${(performance.now() - t0).toFixed(0)} ms`);
/** `sm90 8 warps` / `mma 4 warps`: which main kernel a backward runs at head dim `dim`. */
const kernelLabel = (b: CudaFfaBackward, dim = 128): string =>
  `${b.usesSm90(dim) ? 'sm90' : 'mma'} ${b.warps} warps${b.qRangeCut === CUT_256 ? ', q ranges cut at 256 rows' : ''}${b.blockOrder !== 'auto' && b.usesSm90(dim) ? `, block order ${JSON.stringify(b.blockOrder)}` : ''}`;
for (const b of bwds) {
  for (const name of ['ffa_bwd_bf16_d128', 'ffa_bwd_bf16_d128_softcap', 'ffa_bwd_bf16_d64', 'ffa_bwd_pre_bf16_d128']) {
    const kern = b.module.kernel(name);
    console.log(`bwd ${kernelLabel(b)} ${name}: ${kern.attribute(CuFuncAttr.NUM_REGS)} regs, ${kern.attribute(CuFuncAttr.LOCAL_SIZE_BYTES)} B local`);
  }
  for (const name of b.sm90 !== null ? ['ffa_bwd_sm90_bf16_d128', 'ffa_bwd_sm90_bf16_d128_softcap', 'ffa_bwd_sm90_bf16_d64', 'ffa_bwd_sm90_bf16_d64_softcap'] : []) {
    const kern = b.sm90!.module.kernel(name);
    console.log(`bwd ${kernelLabel(b)} ${name}: ${kern.attribute(CuFuncAttr.NUM_REGS)} regs, ${kern.attribute(CuFuncAttr.LOCAL_SIZE_BYTES)} B local`);
  }
}

const tally = new Tally();
if (checks) {
  tally.forEach(pick(cases, 0), args.selects, '', (c) => {
    const { q, k, v } = randomQkv(rng, c);
    const dout = randomTensor(c.dtype, [c.tokensQ, c.headsQ, c.dim], 1);
    const softmaxScale = 1 / Math.sqrt(c.dim);
    const softcap = c.softcap ?? 0;
    const f = hostForward(fwd, { q, k, v, slices: c.slices, softmaxScale, softcap, returnMaxLogits: false, outDtype: c.dtype, deterministic: false });
    const bargs = { dout, q, k, v, out: f.out, lse: f.lse, slices: c.slices, softmaxScale, softcap, deterministic: false };
    t0 = performance.now();
    const ref = referenceBackward(bargs);
    const lp = lowPrecisionReference({ q, k, v, dout, slices: c.slices, softmaxScale, softcap }, c.dtype);
    const refMs = performance.now() - t0;
    const unc = uncoveredKeys(c.slices, c.tokensK);
    for (const bwd of bwds) {
      const uncut = planFfaBackward(c.slices, c.tokensQ, c.tokensK, bwd.blockN, bwd.stepRows(c.dim));
      const plan = bwd.qRangeCut !== null ? splitLongItems(uncut, c.slices, bwd.qRangeCut, bwd.stepRows(c.dim)) : uncut;
      t0 = performance.now();
      const got = hostBackward(bwd, bargs, { poison: true });
      const gpuMs = performance.now() - t0;
      const r = checkBackwardTwoCriterion(got, ref, lp, c.dtype, c.headsKv * c.dim, unc);
      tally.record(
        r.ok,
        `${c.name} [${kernelLabel(bwd, c.dim)}]: ${plan.numWork} work items, ${plan.qTiles} q-tile steps/head; ${r.line}; ` +
          `gpu ${gpuMs.toFixed(0)} ms, refs ${refMs.toFixed(0)} ms`,
      );
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Options: sink (dsink, and dq/dk/dv through a sink-corrected forward), dq/dk/dv accumulation,
// deterministic mode. Tolerances as above for dq/dk/dv (relative to the largest |gradient|, the
// accumulator's own values added on top), and |dsink − ref| ≤ 2e-2·max|ref dsink| + 1e-6.

/** Random slices: q ranges overlap freely, the last twentieth of the keys uncovered, mixed types. */
const randomSlices = (tokensQ: number, tokensK: number, n: number): SliceList => randomOverlappingSlices(rng, tokensQ, tokensK, n, 'k');

/** |got − ref| ≤ 2e-2·max|ref − acc| + 1e-6·max|acc| element-wise (acc: the accumulator's initial values, or none). */
function checkGrad(name: string, got: Tensor, ref: Tensor, acc: Tensor | undefined): [boolean, string] {
  const g = got.toFloat64();
  const r = ref.toFloat64();
  const a = acc?.toFloat64();
  let scale = 0;
  let accScale = 0;
  for (let i = 0; i < r.length; i++) {
    scale = Math.max(scale, Math.abs(r[i] - (a?.[i] ?? 0)));
    accScale = Math.max(accScale, Math.abs(a?.[i] ?? 0));
  }
  const tol = 2e-2 * scale + 1e-6 * accScale + 1e-6;
  let err = 0;
  let bad = 0;
  let first = '';
  for (let i = 0; i < r.length; i++) {
    const e = Math.abs(g[i] - r[i]);
    if (!(e <= tol) && bad++ === 0) first = `${name}[${i}] = ${g[i]} vs ${r[i]}`;
    if (Number.isFinite(e)) err = Math.max(err, e);
  }
  return [bad === 0, `${name} err ${err.toExponential(2)} (rel ${(err / (scale || 1)).toExponential(2)})` + (bad ? ` ${bad} bad, first ${first}` : '')];
}

interface OptCase extends AttnCase {
  sink?: number;
  /** which gradients go into fp32 accumulators */
  acc?: Array<'dq' | 'dk' | 'dv'>;
  deterministic?: boolean;
}

const optCases: OptCase[] = [
  { name: 'sink 2, random overlapping mask, 8:2 heads, bf16 d128', slices: randomSlices(600, 700, 6), tokensQ: 600, tokensK: 700, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16', sink: 2 },
  { name: 'sink 3 + softcap 10, varlen causal, 4:1 heads, fp16 d64', slices: varlenCausalMask([0, 300, 517, 700]), tokensQ: 700, tokensK: 700, headsQ: 4, headsKv: 1, dim: 64, dtype: 'float16', sink: 3, softcap: 10 },
  { name: 'dq/dk/dv accumulation, random overlapping mask, 8:2 heads, bf16 d128', slices: randomSlices(512, 600, 5), tokensQ: 512, tokensK: 600, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16', acc: ['dq', 'dk', 'dv'] },
  { name: 'dk accumulation only + sink 1, causal 500, 4:2 heads, fp16 d128', slices: causalMask(500), tokensQ: 500, tokensK: 500, headsQ: 4, headsKv: 2, dim: 128, dtype: 'float16', acc: ['dk'], sink: 1 },
  { name: 'deterministic + sink 2 + dq/dk/dv accumulation, random overlapping mask (10 slices), 8:2 heads, bf16 d128', slices: randomSlices(640, 640, 10), tokensQ: 640, tokensK: 640, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16', sink: 2, acc: ['dq', 'dk', 'dv'], deterministic: true },
  { name: 'deterministic, random overlapping mask (8 slices), 4:4 heads, fp16 d64', slices: randomSlices(700, 500, 8), tokensQ: 700, tokensK: 500, headsQ: 4, headsKv: 4, dim: 64, dtype: 'float16', deterministic: true },
  { name: 'sink 2, random overlapping mask, 8:2 heads, bf16 d64', slices: randomSlices(600, 700, 6), tokensQ: 600, tokensK: 700, headsQ: 8, headsKv: 2, dim: 64, dtype: 'bfloat16', sink: 2 },
  { name: 'dq/dk/dv accumulation, random overlapping mask, 8:2 heads, bf16 d64', slices: randomSlices(512, 600, 5), tokensQ: 512, tokensK: 600, headsQ: 8, headsKv: 2, dim: 64, dtype: 'bfloat16', acc: ['dq', 'dk', 'dv'] },
  { name: 'deterministic + sink 2 + dq/dk/dv accumulation + softcap 15, random overlapping mask (10 slices), 8:2 heads, bf16 d64', slices: randomSlices(640, 640, 10), tokensQ: 640, tokensK: 640, headsQ: 8, headsKv: 2, dim: 64, dtype: 'bfloat16', sink: 2, acc: ['dq', 'dk', 'dv'], deterministic: true, softcap: 15 },
  // the masks the deterministic schedules are timed on (bench/kernel/det-speed.ts), small: causal,
  // varlen causal (documents not on 64-row boundaries), the sliding window (a causal slice and a
  // bi-causal band on shared keys: two key-disjoint groups in one ordered launch), block-causal with softcap
  // (four key-disjoint groups on its first keys: three ordered launches)
  { name: 'deterministic, causal 1024, 8:2 heads, bf16 d128', slices: causalMask(1024), tokensQ: 1024, tokensK: 1024, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16', deterministic: true },
  { name: 'deterministic, varlen causal [300,400,37,287], 4:2 heads, bf16 d128', slices: varlenCausalMask([0, 300, 700, 737, 1024]), tokensQ: 1024, tokensK: 1024, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16', deterministic: true },
  { name: 'deterministic, sliding window 1200 [200,0], 4:2 heads, bf16 d128', slices: slidingWindowMask(1200, [200, 0]), tokensQ: 1200, tokensK: 1200, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16', deterministic: true },
  { name: 'deterministic + softcap 5, block-causal 2 docs [600,400] block 150, 4:2 heads, fp16 d128', slices: blockCausalMask([0, 600, 1000], 150), tokensQ: 1000, tokensK: 1000, headsQ: 4, headsKv: 2, dim: 128, dtype: 'float16', softcap: 5, deterministic: true },
];

const bwdMain = defaults[defaults.length - 1];
console.log(`option checks on ${kernelLabel(bwdMain)}, deterministic schedule: ${[128, 64].map((d) => `${bwdMain.deterministicScheduleAt(d)} at head dim ${d}`).join(', ')}`);
// The ordered schedule's variants, each checked like bwdMain and against bwdMain's result:
// - the two walks forced for every item (bwdMain walks by the rule, which picks one per group of
//   tiles: the sliding-window case gets both, causal and varlen only heads inner): dq
//   bit-identical, since either walk adds a dQ tile's contributions in the same (rank) order; dk /
//   dv sum a block's steps in walk order, so they may differ in the last bits between walks;
// - the blocks kv-major and half the items kv-major (the cases' small grids take item-major by
//   the rule): dq, dk and dv bit-identical, since neither ranks nor walks depend on the block order.
const orderedVariants = bwdMain.deterministicScheduleAt(128) === 'ordered'
  ? [
      ...(['inner', 'outer'] as const).map((walk) => ({ label: `heads ${walk} for every item`, same: ['dq'] as const, bwd: new CudaFfaBackward(dev, { warps: bwdMain.warps, deterministicSchedule: 'ordered', orderedWalk: walk }) })),
      ...([['kv-major', 'kv-major'], ['half the items kv-major', { kvMajorShare: 0.5 }]] as const).map(([label, blockOrder]) => ({
        label: `blocks ${label}`,
        same: ['dq', 'dk', 'dv'] as const,
        bwd: new CudaFfaBackward(dev, { warps: bwdMain.warps, deterministicSchedule: 'ordered', blockOrder }),
      })),
    ]
  : [];
if (checks) {
  tally.forEach(pick(optCases, cases.filter((c) => caseDims.includes(c.dim)).length), args.selects, '[options] ', (c) => {
    const { q, k, v } = randomQkv(rng, c);
    const dout = randomTensor(c.dtype, [c.tokensQ, c.headsQ, c.dim], 1);
    const sink = c.sink === undefined ? undefined : randomTensor('float32', [c.sink, c.headsQ], 3);
    const softmaxScale = 1 / Math.sqrt(c.dim);
    const softcap = c.softcap ?? 0;
    const f = hostForward(fwd, { q, k, v, slices: c.slices, softmaxScale, softcap, returnMaxLogits: false, outDtype: c.dtype, deterministic: false, ...(sink === undefined ? {} : { sink }) });
    const accs: Partial<Record<'dq' | 'dk' | 'dv', Tensor>> = {};
    for (const name of c.acc ?? []) accs[name] = randomTensor('float32', name === 'dq' ? [c.tokensQ, c.headsQ, c.dim] : [c.tokensK, c.headsKv, c.dim], 0.05);
    const bargs = {
      dout, q, k, v, out: f.out, lse: f.lse, slices: c.slices, softmaxScale, softcap, deterministic: c.deterministic ?? false,
      ...(sink === undefined ? {} : { sink }),
      ...(accs.dq === undefined ? {} : { dqAcc: accs.dq }),
      ...(accs.dk === undefined ? {} : { dkAcc: accs.dk }),
      ...(accs.dv === undefined ? {} : { dvAcc: accs.dv }),
    };
    const ref = referenceBackward(bargs);
    const run = (bwd = bwdMain) =>
      hostBackward(bwd,
        {
          ...bargs,
          ...(accs.dq === undefined ? {} : { dqAcc: cloneTensor(accs.dq) }),
          ...(accs.dk === undefined ? {} : { dkAcc: cloneTensor(accs.dk) }),
          ...(accs.dv === undefined ? {} : { dvAcc: cloneTensor(accs.dv) }),
        },
        { poison: true },
      );
    const got = run();
    const parts: string[] = [];
    let ok = true;
    for (const name of ['dq', 'dk', 'dv'] as const) {
      const [o, m] = checkGrad(name, got[name], ref[name], accs[name]);
      const wantDtype = accs[name] !== undefined ? 'float32' : c.dtype;
      if (got[name].dtype !== wantDtype) {
        ok = false;
        parts.push(`${name} dtype ${got[name].dtype}, expected ${wantDtype}`);
      }
      ok &&= o;
      parts.push(m);
    }
    if (sink !== undefined) {
      if (got.dsink === undefined || ref.dsink === undefined) {
        ok = false;
        parts.push('dsink missing');
      } else {
        const g = got.dsink.toFloat64();
        const r = ref.dsink.toFloat64();
        let scale = 0;
        for (const x of r) scale = Math.max(scale, Math.abs(x));
        let err = 0;
        for (let i = 0; i < r.length; i++) err = Math.max(err, Number.isNaN(g[i]) ? Infinity : Math.abs(g[i] - r[i]));
        const okS = err <= 2e-2 * scale + 1e-6;
        ok &&= okS;
        parts.push(`dsink err ${err.toExponential(2)} (max|ref| ${scale.toExponential(2)})${okS ? '' : ' TOO LARGE'}`);
      }
    }
    if (c.deterministic) ok = secondRunSame(got, run(), ['dq', 'dk', 'dv', 'dsink'], parts) && ok;
    if (c.deterministic && bwdMain.deterministicScheduleAt(c.dim) === 'ordered') {
      for (const { label, same, bwd } of orderedVariants) {
        const g = run(bwd);
        const wparts: string[] = [];
        for (const name of ['dq', 'dk', 'dv'] as const) {
          const [o, m] = checkGrad(name, g[name], ref[name], accs[name]);
          ok &&= o;
          wparts.push(m);
        }
        ok = secondRunSame(g, run(bwd), ['dq', 'dk', 'dv'], wparts) && ok;
        const isSame = sameResults(got, g, [...same]);
        ok &&= isSame;
        const others = (['dq', 'dk', 'dv'] as const).filter((n) => !(same as readonly string[]).includes(n));
        wparts.push(`${same.join(' / ')} ${isSame ? 'bit-identical to' : 'DIFFER from'} bwdMain's${others.length > 0 ? `, ${others.join(' / ')} ${sameResults(got, g, others) ? 'identical' : 'not identical'}` : ''}`);
        parts.push(`${label}: ${wparts.join(', ')}`);
      }
    }
    tally.record(ok, `[options] ${c.name} [${kernelLabel(bwdMain, c.dim)}${c.deterministic ? `, ${bwdMain.deterministicScheduleAt(c.dim)}` : ''}]: ${parts.join('; ')}`);
  });

  // Deterministic mode on heavily overlapping q ranges (16 slices over the same rows and keys):
  // fp32 accumulators (zeros) so that the comparison sees the fp32 sums, two runs bit-identical,
  // within tolerance; default mode shown for contrast. Then timing, default vs deterministic.
  // Under --only, when the name "deterministic backward" matches.
  if (args.selects('deterministic backward') && caseDims.includes(128) && shardK === 0) {
    try {
      const T = 1024;
      const n = 16;
      const mk = (S: number): SliceList => nestedQSlices(S, n, (i) => [Math.floor((i * S) / (2 * n)), Math.floor((i * S) / (2 * n)) + S / 2]);
      const slices = mk(T);
      const { q, k, v } = randomQkv(rng, { tokensQ: T, tokensK: T, headsQ: 8, headsKv: 2, dim: 128, dtype: 'bfloat16' });
      const dout = randomTensor('bfloat16', [T, 8, 128], 1);
      const f = hostForward(fwd, { q, k, v, slices, softmaxScale: 1 / Math.sqrt(128), softcap: 0, returnMaxLogits: false, outDtype: 'bfloat16', deterministic: true });
      const base = { dout, q, k, v, out: f.out, lse: f.lse, slices, softmaxScale: 1 / Math.sqrt(128), softcap: 0 };
      const zeros = () => ({ dqAcc: Tensor.zeros('float32', [T, 8, 128]), dkAcc: Tensor.zeros('float32', [T, 2, 128]), dvAcc: Tensor.zeros('float32', [T, 2, 128]) });
      const ref = referenceBackward({ ...base, deterministic: true });
      const a = hostBackward(bwdMain, { ...base, deterministic: true, ...zeros() }, { poison: true });
      const b = hostBackward(bwdMain, { ...base, deterministic: true, ...zeros() }, { poison: true });
      const same = sameResults(a, b, ['dq', 'dk', 'dv']);
      const parts = (['dq', 'dk', 'dv'] as const).map((x) => checkGrad(x, a[x], ref[x], undefined));
      let nondetDiffers = false;
      for (let i = 0; i < 3 && !nondetDiffers; i++) {
        const x = hostBackward(bwdMain, { ...base, deterministic: false, ...zeros() });
        const y = hostBackward(bwdMain, { ...base, deterministic: false, ...zeros() });
        nondetDiffers = !sameResults(x, y, ['dq', 'dk', 'dv']);
      }
      // the ordered variants (the rule walks these slices heads outer; one launch per group of
      // slices here, each with its own block order): within tolerance, bit-identical where stated
      const walks = orderedVariants.map(({ label, same: tensors, bwd }) => {
        const x = hostBackward(bwd, { ...base, deterministic: true, ...zeros() }, { poison: true });
        const checks = (['dq', 'dk', 'dv'] as const).map((g) => checkGrad(g, x[g], ref[g], undefined));
        const isSame = sameResults(a, x, [...tensors]);
        return [checks.every(([o]) => o) && isSame, `${label}: ${checks.map(([, m]) => m).join(', ')}, ${tensors.join(' / ')} ${isSame ? 'bit-identical' : 'DIFFER'}`] as const;
      });
      const ok = same && parts.every(([o]) => o) && walks.every(([o]) => o);
      tally.record(ok, `deterministic backward, ${n} overlapping slices, 8:2 heads, bf16 d128 [${kernelLabel(bwdMain)}, ${bwdMain.deterministicScheduleAt(128)}], fp32 grads: ${same ? 'two runs bit-identical' : 'runs DIFFER'}; ${parts.map(([, m]) => m).join('; ')}; ${walks.map(([, m]) => `${m}; `).join('')}(default mode runs ${nondetDiffers ? 'differ' : 'happened to agree'})`);

      // timing: default vs deterministic (pre-pass + zero + main + convert), causal and the overlapping mask
      const S = 8192;
      const H = 32;
      const HK = 8;
      const shape = benchShape(S, H, HK, 128);
      const bq = dev.alloc(S * H * 128 * 2);
      const bk = dev.alloc(S * HK * 128 * 2);
      const bv = dev.alloc(S * HK * 128 * 2);
      const bdo = dev.alloc(S * H * 128 * 2);
      for (const x of [bq, bk, bv, bdo]) x.fill(0x3c);
      const bo = dev.alloc(S * H * 128 * 2);
      const bl = dev.alloc(S * H * 4);
      const bdq = dev.alloc(S * H * 128 * 2);
      const bdk = dev.alloc(S * HK * 128 * 2);
      const bdv = dev.alloc(S * HK * 128 * 2);
      for (const [maskName, m] of [['causal', causalMask(S)], [`${n} overlapping slices`, mk(S)]] as const) {
        const fp = fwd.prepare(shape, m);
        fp.launch(bq, bk, bv, bo, bl, 0.088);
        const p = bwdMain.prepare(shape, m);
        const bufs = { q: bq, k: bk, v: bv, out: bo, dout: bdo, lse: bl, dq: bdq, dk: bdk, dv: bdv };
        const time = (det: boolean): number => meanEventMs(dev, () => p.launch(bufs, 0.088, 0, undefined, { deterministic: det }), 2, 5);
        const tDef = time(false);
        const tDet = time(true);
        const how = bwdMain.deterministicScheduleAt(128) === 'ordered'
          ? `ordered, ${orderedLaunches(p.orderedWork().plan, true).length / 2} launches`
          : `grouped, ${p.deterministicWork().plan.groups.length / 2} launches, ${p.plan.numWork} -> ${p.deterministicWork().plan.work.length / 4} items`;
        console.log(`TIME bwd ${maskName}, S=${S}, ${H}:${HK} heads, D128 bf16: default ${tDef.toFixed(3)} ms, deterministic ${tDet.toFixed(3)} ms (${(tDet / tDef).toFixed(2)}x, ${how})`);
        p.free();
        fp.free();
      }
      for (const x of [bq, bk, bv, bdo, bo, bl, bdq, bdk, bdv]) x.free();
    } catch (e) {
      tally.threw('deterministic backward', e);
    }
  }
}

if (bench) {
  const H = 64;
  const HK = 8;
  const D = 128;
  for (const S of [8192, 16384]) {
    // random bf16 bits in ±1 (a 1M-entry random pattern, repeated)
    const pattern = new Uint16Array(1 << 20);
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    for (let i = 0; i < pattern.length; i++) {
      f32[0] = rng.next() * 2 - 1;
      pattern[i] = u32[0] >>> 16;
    }
    const fillBf16 = (n: number): Uint16Array => {
      const a = new Uint16Array(n);
      for (let o = 0; o < n; o += pattern.length) a.set(pattern.subarray(0, Math.min(pattern.length, n - o)), o);
      return a;
    };
    const nq = S * H * D;
    const nk = S * HK * D;
    const bq = dev.upload(fillBf16(nq));
    const bk = dev.upload(fillBf16(nk));
    const bv = dev.upload(fillBf16(nk));
    const bdo = dev.upload(fillBf16(nq));
    const bout = dev.alloc(nq * 2);
    const blse = dev.alloc(S * H * 4);
    const bdq = dev.alloc(nq * 2);
    const bdk = dev.alloc(nk * 2);
    const bdv = dev.alloc(nk * 2);
    for (const [maskName, slices, area] of [
      ['full', fullMask(S), S * S],
      ['causal', causalMask(S), (S * (S + 1)) / 2],
    ] as const) {
      const shape = benchShape(S, H, HK, D);
      const fp = fwd.prepare(shape, slices);
      fp.launch(bq, bk, bv, bout, blse, 1 / Math.sqrt(D));
      for (const bwd of bwds) {
        const p = bwd.prepare(shape, slices);
        const bufs = { q: bq, k: bk, v: bv, out: bout, dout: bdo, lse: blse, dq: bdq, dk: bdk, dv: bdv };
        const { median: ms, min } = medianEventMs(dev, () => p.launch(bufs, 1 / Math.sqrt(D)));
        const tflops = backwardTflops(area, H, D, ms);
        // sanity: no NaN in dq
        const probe = new Uint16Array(1 << 16);
        bdq.download(probe);
        let nan = 0;
        for (const x of probe) if ((x & 0x7f80) === 0x7f80 && (x & 0x7f) !== 0) nan++;
        console.log(
          `BENCH bwd ${maskName} S=${S} ${H}:${HK} D${D} bf16 [${kernelLabel(bwd, D)}]: median ${ms.toFixed(3)} ms (min ${min.toFixed(3)}), ${tflops.toFixed(1)} TFLOP/s, ${p.plan.numWork * HK} blocks${nan ? `, ${nan} NaN in dq probe!` : ''}`,
        );
        p.free();
      }
      fp.free();
    }
    for (const b of [bq, bk, bv, bdo, bout, blse, bdq, bdk, bdv]) b.free();
  }
}

// Speed read (--speed): the Hopper backward against the mma.sync one, 64:8 heads, bf16, per head dim of --speed-dims.
if (args.has('--speed') || args.has('--speed-only')) {
  try {
    const kernels = [['sm90', new CudaFfaBackward(dev, { kernel: 'sm90' })], ['mma', new CudaFfaBackward(dev, { kernel: 'mma' })]] as const;
    const sm90Fwd = new CudaFfaForward(dev, { kernel: 'sm90' });
    const dims = args.value('--speed-dims', '128').split(',').map(Number);
    for (const { label, slices, shape } of dims.flatMap((dim) => speedCases().map((c) => ({ ...c, shape: { ...c.shape, dim } })))) {
      try {
        const { tokensQ: S, headsQ: HQ, headsKv: HKV, dim: D } = shape;
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
        // a real out and lse for these inputs, from the forward
        const fp = sm90Fwd.prepare(shape, slices);
        fp.launch(bufs.q, bufs.k, bufs.v, bufs.out, bufs.lse, 1 / Math.sqrt(D));
        fp.free();
        const flops = 2.5 * 4 * sliceListArea(slices) * HQ * D;
        const line = kernels.map(([name, kern]) =>
          speedEntry(dev, name, flops, () => {
            const problem = kern.prepare(shape, slices);
            return { launch: () => problem.launch(bufs, 1 / Math.sqrt(D)), free: () => problem.free() };
          }),
        );
        console.log(`speed bwd ${label} S=${S} ${HQ}:${HKV} D${D} bf16: ${line.join(' | ')}`);
        for (const b of Object.values(bufs)) b.free();
      } catch (e) {
        console.log(`speed bwd ${label}: threw ${(e as Error).stack ?? String(e)}`);
      }
    }
  } catch (e) {
    console.log(`speed: threw ${(e as Error).stack ?? String(e)}`);
  }
}

dev.close();
tally.exit(!checks);
