/**
 * bench/kernel/bwd-parts: where the Hopper backward's time goes, per bench:kernel mask (64:8
 * heads, D 128, bf16, seed 42, N(0, 1) inputs): the passes whose cost grows with the tokens
 * (zeroing the fp32 accumulators, the pre-pass Δ = rowsum(out · dout), which also zeroes dq, and
 * the conversions of the accumulators to bf16) against the main kernel, whose cost grows with
 * the mask's area. On short-range masks (the sliding window, varlen with short documents) the
 * first kind is a large share of the whole.
 *
 *   source .device/boot.sh && node dist/bench/kernel/bwd-parts.js [--out FILE]
 *     [--seqlens 8192,16384] [--masks full,causal,varlen_causal,sw_causal] [--iters 10] [--warmup 3]
 *
 * Timed per mask, each by timing.ts timeLaunches (medians of CUDA-event pairs), in this order:
 *   whole     FfaBackwardProblem.launch: what bench:kernel times
 *   preMain   launchMain onto caller fp32 accumulators (extras.accumulate): pre-pass, main kernel
 *   pre       the same on an empty slice list: the pre-pass alone (no work item, no main launch)
 *   prepass   launchMain on an empty slice list: dk / dv zeroed, the pre-pass zeroing dq
 *   convert   launchConversions: dq, dk, dv to bf16
 * and derived: main = preMain − pre. Each part is timed on its own (after the others, at another
 * point of the GPU's power and clock state), so prepass + main + convert need not add up to
 * whole exactly.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { intAtLeast, wordList } from '../../src/cli/flags.js';
import { renderTable } from '../../src/cli/table.js';
import { makeSliceList } from '../../src/mask/index.js';
import { SCRATCH_RESULTS_DIR } from '../output.js';
import { backwardBuffers, backwardTflops, benchShape, exitWith, forwardInto } from './bwd-bench.js';
import { buildMask, MASK_NAMES, type MaskName } from './masks.js';
import { timeLaunches } from './timing.js';

const HQ = 64;
const HKV = 8;
const DIM = 128;
const PARTS = ['whole', 'preMain', 'pre', 'prepass', 'convert'] as const;
type Part = (typeof PARTS)[number];

const opts = new Command()
  .name('bwd-parts')
  .option('--out <file>', 'JSON output', `${SCRATCH_RESULTS_DIR}/bwd-parts.json`)
  .option('--seqlens <list>', 'tokens', (v: string) => v.split(',').map(Number), [8192, 16384])
  .option('--masks <list>', `masks: ${MASK_NAMES.join(', ')}`, wordList(MASK_NAMES), ['full', 'causal', 'varlen_causal', 'sw_causal'] as MaskName[])
  .option('--iters <n>', 'timed calls', intAtLeast(1), 10)
  .option('--warmup <n>', 'warm-up calls', intAtLeast(0), 3)
  .parse()
  .opts<{ out: string; seqlens: number[]; masks: MaskName[]; iters: number; warmup: number }>();
for (const n of opts.seqlens) if (!Number.isInteger(n) || n < 1024) throw new Error(`--seqlens: ${n} is not an integer >= 1024`);

interface Row {
  mask: MaskName;
  seqlen: number;
  ms: Record<Part | 'main', number>;
  /** TFLOP/s of the whole backward and of the main kernel alone (bench:kernel's count). */
  tflops: { whole: number; main: number };
}

async function main(): Promise<number> {
  const { CudaDevice } = await import('../../src/device/index.js');
  const { CudaFfaForward } = await import('../../src/kernels/cuda/ffa-forward.js');
  const { CudaFfaBackward } = await import('../../src/kernels/cuda/ffa-backward.js');
  const dev = CudaDevice.open(0);
  const bwd = new CudaFfaBackward(dev);
  if (!bwd.usesSm90(DIM)) throw new Error('needs the Hopper backward (compute capability 9.0)');
  const fwd = new CudaFfaForward(dev);
  const scale = 1 / Math.sqrt(DIM);
  const rows: Row[] = [];
  console.log(`bwd-parts on ${dev.name} (${dev.smCount} SMs), ${HQ}:${HKV} heads, D ${DIM}, bf16; median of ${opts.iters} after ${opts.warmup} warm-ups`);
  const time = (run: () => void): number => timeLaunches(dev, run, opts.iters, opts.warmup).ms;
  for (const S of opts.seqlens) {
    const bufs = await backwardBuffers(dev, S, HQ, HKV, DIM);
    // the caller's fp32 accumulators of preMain / pre
    const acc = { ...bufs, dq: dev.alloc(S * HQ * DIM * 4), dk: dev.alloc(S * HKV * DIM * 4), dv: dev.alloc(S * HKV * DIM * 4) };
    const onto = { accumulate: { dq: true, dk: true, dv: true } };
    const shape = benchShape(S, HQ, HKV, DIM);
    const empty = bwd.prepare(shape, makeSliceList([], [], []));
    for (const name of opts.masks) {
      const m = buildMask(name, S, 42);
      forwardInto(fwd, shape, m.slices, bufs, scale);
      const p = bwd.prepare(shape, m.slices);
      const ms = {} as Row['ms'];
      ms.whole = time(() => p.launch(bufs, scale));
      ms.preMain = time(() => p.launchMain(acc, scale, 0, undefined, onto));
      ms.pre = time(() => empty.launchMain(acc, scale, 0, undefined, onto));
      ms.prepass = time(() => empty.launchMain(bufs, scale));
      ms.convert = time(() => p.launchConversions(bufs));
      ms.main = ms.preMain - ms.pre;
      p.free();
      const row: Row = { mask: name, seqlen: S, ms, tflops: { whole: backwardTflops(m.area, HQ, DIM, ms.whole), main: backwardTflops(m.area, HQ, DIM, ms.main) } };
      rows.push(row);
      console.log(
        `bwd-parts ${name} S=${S}: whole ${ms.whole.toFixed(3)} ms (${row.tflops.whole.toFixed(0)} TF), main ${ms.main.toFixed(3)} (${row.tflops.main.toFixed(0)} TF), ` +
          `pre-pass with the zeroing ${ms.prepass.toFixed(3)} (without ${ms.pre.toFixed(3)}), convert ${ms.convert.toFixed(3)}`,
      );
      mkdirSync(dirname(opts.out), { recursive: true });
      const what = `backward parts, ms (timeLaunches median, --iters ${opts.iters} --warmup ${opts.warmup}), ${HQ}:${HKV} heads, D ${DIM}, bf16; bench/kernel/bwd-parts.ts header`;
      writeFileSync(opts.out, JSON.stringify({ date: new Date().toISOString(), gpu: dev.name, what, rows }, null, 2));
    }
    empty.free();
    for (const b of [acc.dq, acc.dk, acc.dv]) b.free();
    bufs.free();
  }
  console.log(
    renderTable(
      ['mask', 'tokens', 'whole ms', 'main ms', 'zero + pre-pass', 'convert', 'their share', 'TF whole', 'TF main'],
      rows.map((r) => {
        const fixed = r.ms.prepass + r.ms.convert;
        return [r.mask, String(r.seqlen), r.ms.whole.toFixed(3), r.ms.main.toFixed(3), r.ms.prepass.toFixed(3), r.ms.convert.toFixed(3), `${((100 * fixed) / r.ms.whole).toFixed(1)}%`, r.tflops.whole.toFixed(0), r.tflops.main.toFixed(0)];
      }),
    ),
  );
  console.log(`wrote ${opts.out}`);
  dev.close();
  return 0;
}

exitWith(main);
