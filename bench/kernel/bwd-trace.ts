/**
 * bench/kernel/bwd-trace: where in a step of the Hopper backward the time goes (issue 11). Runs the
 * step-trace build of ffa_bwd_sm90.cu (CudaFfaBackward option traceSteps; -DFFA_BWD_SM90_TRACE),
 * whose consumer warpgroups of a sample of blocks write clock64() at the phase boundaries of their
 * first 256 steps, and prints per phase the median and mean cycles and the phase's share of a step,
 * per consumer warpgroup (src/kernels/cuda/ffa-backward-trace.ts: layout, phases, statistics).
 * 64:8 heads, D 128, bf16, bench:kernel's masks (seed 42) and N(0, 1) inputs:
 *
 *   source .device/boot.sh && node dist/bench/kernel/bwd-trace.js [--out FILE] [--seqlen 16384]
 *     [--masks full,causal,sw_causal] [--iters 5] [--warmup 2] [--skip-first 2] [--raw] [--no-verify]
 *
 * Per mask: the whole backward (pre-pass, zeroing, main kernel, conversions) timed with the
 * kernel and with its trace build (timing.ts timeLaunches: one untimed call, warm-ups, the median
 * of --iters calls; these are also the warm-up of the traced launch), then one more launch of the
 * trace build whose trace is read. Verify (before that, unless --no-verify): the trace build's fp32
 * dq / dk / dv sums against the kernel's, within 1e-3 of max |value| (the same adds, dq in another
 * order), no NaN, and the trace holds one record per consumer warpgroup of every sampled block; a
 * failed verify sets exit code 1. --raw also writes each mask's trace words (uint32,
 * little-endian) beside the JSON.
 * Diagnostic figures: the trace build adds a clock read and a store per phase boundary (its time
 * is printed beside the kernel's), and ptxas may move independent arithmetic across a clock read;
 * the waits (wgmma, barriers, mbarriers) are where the phase boundaries are exact. First run on an
 * H200 on 2026-12-02 (16k and 64k; the trace build 1.005-1.039x the kernel's time, its sums within
 * 2e-7 of the kernel's): bench/kernel/README.md, "Hopper backward: the Pᵀ step".
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { renderTable } from '../../src/cli/table.js';
import { intAtLeast, wordList } from '../../src/cli/flags.js';
import { SCRATCH_RESULTS_DIR } from '../output.js';
import { backwardSums, backwardTflops, benchShape, exitWith, forwardInto, openBackwardBench, sumsAgree } from './bwd-bench.js';
import { timeLaunches } from './timing.js';
import { buildMask, MASK_NAMES, type MaskName } from './masks.js';
import { BWD_TRACE, bwdBlockTimeline, bwdTraceStats, decodeBwdTrace, type BwdBlockTimeline, type BwdTraceStats } from '../../src/kernels/cuda/ffa-backward-trace.js';

const HQ = 64;
const HKV = 8;
const DIM = 128;

const program = new Command()
  .name('bwd-trace')
  .option('--out <file>', 'JSON output', `${SCRATCH_RESULTS_DIR}/bwd-trace.json`)
  .option('--seqlen <n>', 'tokens', intAtLeast(1024), 16384)
  .option('--masks <list>', `masks: ${MASK_NAMES.join(', ')}`, wordList(MASK_NAMES), ['full', 'causal', 'sw_causal'] as MaskName[])
  .option('--iters <n>', 'timed calls of each build', intAtLeast(1), 5)
  .option('--warmup <n>', 'warm-up calls of each build', intAtLeast(0), 2)
  .option('--skip-first <n>', "steps of each block left out of the statistics (the pipeline's fill)", intAtLeast(1), 2)
  .option('--raw', "also write each mask's trace words beside the JSON")
  .option('--no-verify', "skip the check of the trace build's sums against the kernel's")
  .parse();
const opts = program.opts<{ out: string; seqlen: number; masks: MaskName[]; iters: number; warmup: number; skipFirst: number; raw?: boolean; verify: boolean }>();

interface Row {
  mask: string;
  seqlen: number;
  area: number;
  /** The whole backward, the kernel and its trace build. */
  ms?: number;
  msTraced?: number;
  tflops?: number;
  /** Records written and expected (2 per sampled block). */
  records?: number;
  expectedRecords?: number;
  stats?: BwdTraceStats[];
  /** How the blocks filled the SMs (the first BWD_TRACE.gridMax blocks). */
  timeline?: BwdBlockTimeline;
  verify?: string;
  verifyOk?: boolean;
  error?: string;
}

async function main(): Promise<number> {
  const { CudaFfaBackward } = await import('../../src/kernels/cuda/ffa-backward.js');
  const S = opts.seqlen;
  const { dev, bufs, fwd } = await openBackwardBench('bwd-trace', S, HQ, HKV, DIM);
  const plain = new CudaFfaBackward(dev);
  const traced = new CudaFfaBackward(dev, { traceSteps: true });
  if (!plain.usesSm90(DIM)) throw new Error('needs the Hopper backward (compute capability 9.0)');
  const scale = 1 / Math.sqrt(DIM);
  const rows: Row[] = [];
  let failed = false;
  const save = (): void => {
    mkdirSync(dirname(opts.out), { recursive: true });
    const what =
      `Hopper backward step trace (diagnostic build, -DFFA_BWD_SM90_TRACE), ${S} tokens, ${HQ}:${HKV} heads, D ${DIM}, bf16; ` +
      `cycles per phase per consumer warpgroup over steps ${opts.skipFirst}..${BWD_TRACE.steps - 1} of blocks blockIdx.x % ${BWD_TRACE.every} == 0 (at most ${BWD_TRACE.blocks}); ` +
      `ms: whole backward, timeLaunches median, --iters ${opts.iters} --warmup ${opts.warmup}`;
    writeFileSync(opts.out, JSON.stringify({ date: new Date().toISOString(), gpu: dev.name, smCount: dev.smCount, what, rows }, null, 2));
  };
  for (const name of opts.masks) {
    const m = buildMask(name, S, 42);
    const row: Row = { mask: name, seqlen: S, area: m.area };
    rows.push(row);
    const shape = benchShape(S, HQ, HKV, DIM);
    try {
      forwardInto(fwd, shape, m.slices, bufs, scale);
      const pPlain = plain.prepare(shape, m.slices);
      const pTraced = traced.prepare(shape, m.slices);
      const grid = pTraced.defaultItems * HKV;
      row.expectedRecords = 2 * Math.min(BWD_TRACE.blocks, Math.ceil(grid / BWD_TRACE.every));
      let ok = true;
      if (opts.verify) {
        const agree = sumsAgree(backwardSums(pTraced, bufs, scale), backwardSums(pPlain, bufs, scale));
        ok &&= agree.ok;
        row.verify = `trace build vs kernel ${agree.line}`;
      }
      row.ms = timeLaunches(dev, () => pPlain.launch(bufs, scale), opts.iters, opts.warmup).ms;
      row.msTraced = timeLaunches(dev, () => pTraced.launch(bufs, scale), opts.iters, opts.warmup).ms;
      row.tflops = backwardTflops(m.area, HQ, DIM, row.ms);
      pTraced.launch(bufs, scale);
      const words = traced.downloadTrace();
      row.records = decodeBwdTrace(words).length;
      row.timeline = bwdBlockTimeline(words);
      if (opts.verify) {
        const recOk = row.records === row.expectedRecords;
        const tlOk = row.timeline.blocks === Math.min(grid, BWD_TRACE.gridMax);
        ok &&= recOk && tlOk;
        row.verify += `; ${row.records} of ${row.expectedRecords} records${recOk ? '' : ' BAD'}; timeline ${row.timeline.blocks} of ${Math.min(grid, BWD_TRACE.gridMax)} blocks${tlOk ? '' : ' BAD'}`;
        row.verifyOk = ok;
        failed ||= !ok;
        console.log(`${ok ? 'PASS' : 'FAIL'} bwd-trace verify ${name} S=${S}: ${row.verify}`);
      }
      row.stats = bwdTraceStats(words, opts.skipFirst);
      if (opts.raw === true) writeFileSync(opts.out.replace(/\.json$/, '') + `-${name}.u32`, Buffer.from(words.buffer, words.byteOffset, words.byteLength));
      pPlain.free();
      pTraced.free();
      printMask(row);
    } catch (e) {
      row.error = (e as Error).stack ?? String(e);
      failed = true;
      console.log(`FAIL bwd-trace ${name} S=${S}: threw ${row.error}`);
    }
    save();
  }
  console.log(`wrote ${opts.out}`);
  dev.close();
  return failed ? 1 : 0;
}

const cyc = (x: number): string => (Number.isNaN(x) ? '—' : x.toFixed(0));
const pct = (x: number): string => (Number.isNaN(x) ? '—' : `${(100 * x).toFixed(1)}%`);

/** One table per mask: phases down, per warpgroup median / mean cycles and share of the mean step. */
function printMask(r: Row): void {
  const st = r.stats!;
  console.log(
    `\n${r.mask} S=${r.seqlen}: backward ${r.ms!.toFixed(2)} ms (${r.tflops!.toFixed(0)} TFLOP/s), trace build ${r.msTraced!.toFixed(2)} ms (${(r.msTraced! / r.ms!).toFixed(3)}x); ` +
      st.map((s) => `wg${s.warpgroup + 1}: ${s.blocks} blocks, ${s.steps} steps, step median ${cyc(s.stepMedian)} / mean ${cyc(s.stepMean)} cycles, later steps ${cyc(s.laterStepMean)} cycles each (epilogue included), block ${cyc(s.blockCyclesMedian)} cycles`).join('; '),
  );
  const header = ['phase (ends at)', ...st.flatMap((s) => [`wg${s.warpgroup + 1} median`, `wg${s.warpgroup + 1} mean`, `wg${s.warpgroup + 1} share`])];
  const body = st[0].phases.map((_, e) => [st[0].phases[e].phase, ...st.flatMap((s) => [cyc(s.phases[e].median), cyc(s.phases[e].mean), pct(s.phases[e].share)])]);
  body.push(['step', ...st.flatMap((s) => [cyc(s.stepMedian), cyc(s.stepMean), pct(1)])]);
  console.log(renderTable(header, body));
  const tl = r.timeline!;
  console.log(
    `block timeline: ${tl.blocks} blocks on ${tl.sms} SMs; longest SM span ${cyc(tl.spanMax)} cycles, mean ${cyc(tl.spanMean)}; SMs idle ${pct(tl.idleShare)} of the longest span ` +
      `(waiting for the grid's end ${pct(tl.tailShare)}, between blocks ${pct(tl.gapShare)}); cycles per step by block length: ` +
      tl.bySteps.map((b) => `${b.steps} steps ${cyc(b.cyclesPerStep)} (${b.blocks} blocks)`).join(', '),
  );
}

exitWith(main);
