/**
 * bench/kernel/bwd-walk: how the Hopper backward's blocks walk the work, 64:8 heads, D 128, bf16,
 * bench:kernel's masks (seed 42) and N(0, 1) inputs:
 *
 *   source .device/boot.sh && node dist/bench/kernel/bwd-walk.js [--out FILE]
 *     [--seqlens 16384,32768,65536] [--masks full,causal,varlen_causal,sw_causal]
 *     [--variants uncut,cut,c2048] [--iters 10] [--warmup 3] [--verify-seqlen 16384]
 *
 * Variants (CudaFfaBackward options):
 *   uncut       one work item per (slice, k tile) with all its q rows (qRangeCut: null)
 *   cut         long items of full and causal slices cut into pieces (qRangeCut: DEFAULT_Q_RANGE_CUT,
 *               the default; causal longer than 1,024 rows at 1,024 since 2026-12-04)
 *   cutf        only the items of full slices longer than 16,384 rows cut (the default until
 *               2026-12-03; bench/results/kernel-bwd-causal-cut-2026-12-03.json names it cut)
 *   cutc        full slices longer than 16,384 rows and causal ones longer than 4,096 cut at
 *               2,048 (the default from 2026-12-03 to 12-04; kernel-bwd-causal-cut names it cutc)
 *   c<N>        every item cut at the multiples of N rows (qRangeCut cutEveryItem(N))
 *   kv-major    cut, the blocks kv-head-major whatever the plan (blockOrder; cut picks a split
 *               per plan, ffa-backward-order.ts)
 *   item-major  cut, the blocks item-major whatever the plan
 *   s<P>        cut, the longest P% of the items kv-major, the rest item-major (blockOrder
 *               { kvMajorShare: P / 100 })
 * Each row records the block order each variant's plan runs in, and the SM clock, board power and
 * clock-event reasons nvidia-smi sampled while each variant was timed (gpu-sampler.ts: under the
 * H200's power cap the clock is part of what a schedule changes).
 * Per (seqlen, mask) the variants in order, then the first one again (the drift within the run),
 * each the whole backward (pre-pass, zeroing, main kernel, conversions) timed by timing.ts
 * timeLaunches (one untimed call, warm-ups, then each call between its own CUDA events, the
 * median); TFLOP/s = 2.5 · 4 · area · Hq · D / t. At --verify-seqlen each variant's fp32 dq / dk /
 * dv sums must agree with the first variant's within 1e-3 of its max |value| (the same adds in
 * another order), no NaN; a failed verify sets exit code 1.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { renderTable } from '../../src/cli/table.js';
import { intAtLeast, wordList } from '../../src/cli/flags.js';
import { SCRATCH_RESULTS_DIR } from '../output.js';
import { backwardBuffers, backwardSums, backwardTflops, benchShape, exitWith, forwardInto, sumsAgree } from './bwd-bench.js';
import { timeLaunches } from './timing.js';
import { buildMask, MASK_NAMES, type MaskName } from './masks.js';
import { describeBlockOrder } from '../../src/kernels/cuda/ffa-backward-order.js';
import { GpuSampler, type WindowStats } from './gpu-sampler.js';

const HQ = 64;
/** The backward's default q-range cut until 2026-12-03 (variant cutf). */
const FULL_ONLY_CUT = { full: { longerThan: 16384, pieceRows: 2048 } } as const;
/** The default from 2026-12-03 to 2026-12-04 (variant cutc). */
const CAUSAL_4096_CUT = { full: { longerThan: 16384, pieceRows: 2048 }, causal: { longerThan: 4096, pieceRows: 2048 } } as const;
const HKV = 8;
const DIM = 128;

const VARIANT_RE = /^(uncut|cut|cutf|cutc|c\d+|kv-major|item-major|s\d+)$/;
const program = new Command()
  .name('bwd-walk')
  .option('--out <file>', 'JSON output', `${SCRATCH_RESULTS_DIR}/bwd-walk.json`)
  .option('--seqlens <list>', 'tokens', (v: string) => v.split(',').map(Number), [16384, 32768, 65536])
  .option('--masks <list>', `masks: ${MASK_NAMES.join(', ')}`, wordList(MASK_NAMES), ['full', 'causal', 'varlen_causal', 'sw_causal'] as MaskName[])
  .option('--variants <list>', 'uncut, cut, cutf, cutc, c<N>, kv-major, item-major, s<P>', (v: string) => v.split(','), ['uncut', 'cut'])
  .option('--iters <n>', 'timed calls', intAtLeast(1), 10)
  .option('--warmup <n>', 'warm-up calls', intAtLeast(0), 3)
  .option('--verify-seqlen <n>', 'seqlen at which every variant is checked against the first', intAtLeast(0), 16384)
  .parse();
const opts = program.opts<{ out: string; seqlens: number[]; masks: MaskName[]; variants: string[]; iters: number; warmup: number; verifySeqlen: number }>();
for (const v of opts.variants) if (!VARIANT_RE.test(v)) throw new Error(`unknown variant ${v} (uncut, cut, cutf, cutc, c<N>, kv-major, item-major, s<P>)`);
for (const n of opts.seqlens) if (!Number.isInteger(n) || n < 1024) throw new Error(`--seqlens: ${n} is not an integer >= 1024`);

interface Row {
  mask: string;
  seqlen: number;
  items: Record<string, number>;
  /** The block order each variant's plan runs in. */
  orders: Record<string, string | null>;
  ms: Record<string, number>;
  tflops: Record<string, number>;
  /** nvidia-smi's samples while each variant was timed. */
  clock: Record<string, WindowStats>;
  verify?: string;
  error?: string;
}

async function main(): Promise<number> {
  const { CudaDevice } = await import('../../src/device/index.js');
  const { CudaFfaForward } = await import('../../src/kernels/cuda/ffa-forward.js');
  const { CudaFfaBackward, DEFAULT_Q_RANGE_CUT, cutEveryItem } = await import('../../src/kernels/cuda/ffa-backward.js');
  const dev = CudaDevice.open(0);
  const again = `${opts.variants[0]} again`;
  const labels = [...opts.variants, again];
  const kernels = new Map<string, InstanceType<typeof CudaFfaBackward>>();
  for (const v of opts.variants) {
    const c = /^c(\d+)$/.exec(v);
    const qRangeCut = c !== null ? cutEveryItem(Number(c[1])) : v === 'uncut' ? null : v === 'cutf' ? FULL_ONLY_CUT : v === 'cutc' ? CAUSAL_4096_CUT : DEFAULT_Q_RANGE_CUT;
    const share = /^s(\d+)$/.exec(v);
    const blockOrder = v === 'kv-major' || v === 'item-major' ? v : share !== null ? { kvMajorShare: Number(share[1]) / 100 } : 'auto';
    kernels.set(v, new CudaFfaBackward(dev, { qRangeCut, blockOrder }));
  }
  kernels.set(again, kernels.get(opts.variants[0])!);
  if (!kernels.get(again)!.usesSm90(DIM)) throw new Error('needs the Hopper backward (compute capability 9.0)');
  const fwd = new CudaFfaForward(dev);
  const sampler = await GpuSampler.start();
  const scale = 1 / Math.sqrt(DIM);
  const rows: Row[] = [];
  let failed = false;
  const save = (): void => {
    mkdirSync(dirname(opts.out), { recursive: true });
    const what = `backward ms / TFLOP/s, ${HQ}:${HKV} heads, D ${DIM}, bf16; variants ${labels.join(', ')} (bench/kernel/bwd-walk.ts header); cut = ${JSON.stringify(DEFAULT_Q_RANGE_CUT)}; timeLaunches median, --iters ${opts.iters} --warmup ${opts.warmup}`;
    writeFileSync(opts.out, JSON.stringify({ date: new Date().toISOString(), gpu: dev.name, what, rows }, null, 2));
  };
  console.log(`bwd-walk on ${dev.name} (${dev.smCount} SMs), ${HQ}:${HKV} heads, D ${DIM}, bf16; variants: ${labels.join(', ')}`);
  for (const S of opts.seqlens) {
    const bufs = await backwardBuffers(dev, S, HQ, HKV, DIM);
    for (const name of opts.masks) {
      const m = buildMask(name, S, 42);
      const row: Row = { mask: name, seqlen: S, items: {}, orders: {}, ms: {}, tflops: {}, clock: {} };
      rows.push(row);
      const shape = benchShape(S, HQ, HKV, DIM);
      try {
        forwardInto(fwd, shape, m.slices, bufs, scale);
        const problems = new Map(labels.map((l) => [l, kernels.get(l)!.prepare(shape, m.slices)]));
        for (const [l, p] of problems) {
          row.items[l] = p.defaultItems;
          row.orders[l] = p.kvMajorItems === null ? null : describeBlockOrder(p.kvMajorItems, p.defaultItems);
        }
        if (S === opts.verifySeqlen) {
          const sums = (l: string): Float32Array[] => backwardSums(problems.get(l)!, bufs, scale);
          const ref = sums(opts.variants[0]);
          const parts: string[] = [];
          let ok = true;
          for (const c of opts.variants.slice(1)) {
            const agree = sumsAgree(sums(c), ref);
            ok &&= agree.ok;
            parts.push(`${c} vs ${opts.variants[0]}: ${agree.line}`);
          }
          row.verify = parts.join('; ');
          failed ||= !ok;
          console.log(`${ok ? 'PASS' : 'FAIL'} bwd-walk verify ${name} S=${S}: ${row.verify}`);
        }
        const spans: Array<[string, number, number]> = [];
        for (const l of labels) {
          const p = problems.get(l)!;
          const t0 = Date.now();
          const t = timeLaunches(dev, () => p.launch(bufs, scale), opts.iters, opts.warmup);
          spans.push([l, t0, Date.now()]);
          row.ms[l] = t.ms;
          row.tflops[l] = backwardTflops(m.area, HQ, DIM, t.ms);
        }
        for (const p of new Set(problems.values())) p.free();
        await sampler.settled();
        for (const [l, t0, t1] of spans) row.clock[l] = sampler.window(t0, t1);
        const mhz = (l: string): string => (row.clock[l].mhz === null ? '' : ` @ ${row.clock[l].mhz!.toFixed(0)} MHz`);
        console.log(`bwd-walk ${name} S=${S}: ${labels.map((l) => `${l} ${row.ms[l].toFixed(2)} ms ${row.tflops[l].toFixed(0)} TF${mhz(l)} (${row.items[l]} items, ${row.orders[l]})`).join(' | ')}`);
      } catch (e) {
        row.error = (e as Error).stack ?? String(e);
        failed = true;
        console.log(`FAIL bwd-walk ${name} S=${S}: threw ${row.error}`);
      }
      save();
    }
    bufs.free();
  }
  const mean = (r: Row): number => (r.tflops[opts.variants[0]] + r.tflops[again]) / 2;
  console.log(
    renderTable(
      ['mask', 'tokens', ...labels.map((l) => `${l} TF`), ...opts.variants.slice(1).map((v) => `${v} / mean ${opts.variants[0]}`)],
      rows.filter((r) => r.error === undefined).map((r) => [r.mask, String(r.seqlen), ...labels.map((l) => r.tflops[l].toFixed(0)), ...opts.variants.slice(1).map((v) => (r.tflops[v] / mean(r)).toFixed(3))]),
    ),
  );
  console.log(`wrote ${opts.out}`);
  await sampler.stop();
  dev.close();
  return failed ? 1 : 0;
}

exitWith(main);
