/**
 * bench/kernel/det-speed: the Hopper backward's deterministic mode against its default (issue 11:
 * "deterministic mode within 1.3x of the default backward"), both deterministic schedules side by
 * side, 64:8 heads, D 128, bf16:
 *
 *   source .device/boot.sh && node dist/bench/kernel/det-speed.js [--out FILE] [--seqlen 16384]
 *     [--masks full,causal,varlen_causal,sw_causal] [--schedules default,grouped,ordered,ordered_inner,ordered_item]
 *     [--iters 10] [--warmup 3] [--no-verify]
 *
 * Columns (the whole backward: pre-pass, zeroing, main kernel(s), conversions; bench:kernel's
 * timing rule, timing.ts timeLaunches: one untimed call, warm-ups, then each call between its own
 * CUDA events, the median; TFLOP/s = 2.5 · 4 · area · Hq · D / t):
 *   default   deterministic off (dq by unordered TMA reduce-adds)
 *   grouped   deterministic, one launch per group of work pieces that share no q row and no key
 *             (planDeterministicBackward; deterministic mode's schedule at head dim 64 and on the
 *             mma.sync kernel)
 *   ordered   deterministic, one launch whose blocks take turns per 64-row dQ tile
 *             (ffa-backward-ordered.ts; deterministic mode's schedule here, on the Hopper kernel at
 *             D 128), each item walked as the walk rule says (heads inner or outer per group of tiles)
 *   ordered_inner  the same with every item walked heads inner (CudaFfaBackward orderedWalk
 *             'inner': the ordered schedule before the walk rule), for the rule's gain in one run
 *   ordered_item  ordered with every launch's blocks item-major (CudaFfaBackward blockOrder
 *             'item-major': the ordered schedule's order until 2026-12-03), for the split order's
 *             gain in one run
 * Verify (before the timing, per mask, on the fp32 sums in dqAcc / dkAcc / dvAcc): each
 * deterministic schedule run twice must be bit-identical; each against default within 1e-3 of
 * max |default| per tensor (the same sums in another order), no NaN; ordered_inner's dq
 * bit-identical to ordered's (either walk adds a dQ tile's contributions in rank order), and
 * ordered_item's dq, dk and dv to ordered's (ranks and launches do not depend on the block order). A failed
 * verify sets exit code 1; the timing still runs.
 * Inputs: q, k, v, dout N(0, 1) on the device (inputs.ts), out / lse from the default forward;
 * masks from masks.ts (bench:kernel's, seed 42).
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { renderTable } from '../../src/cli/table.js';
import { intAtLeast, wordList } from '../../src/cli/flags.js';
import { SCRATCH_RESULTS_DIR } from '../output.js';
import { backwardSums, backwardTflops, benchShape, exitWith, forwardInto, openBackwardBench, sameBits, sumsAgree } from './bwd-bench.js';
import { timeLaunches } from './timing.js';
import { buildMask, MASK_NAMES, type MaskName } from './masks.js';
import { orderedHeadsOuterShare, orderedLaunches } from '../../src/kernels/cuda/ffa-backward-ordered.js';
import { describeBlockOrder } from '../../src/kernels/cuda/ffa-backward-order.js';
import type { FfaBackwardProblem } from '../../src/kernels/cuda/ffa-backward.js';

const HQ = 64;
const HKV = 8;
const DIM = 128;
const SCHEDULES = ['default', 'grouped', 'ordered', 'ordered_inner', 'ordered_item'] as const;
type Schedule = (typeof SCHEDULES)[number];


const program = new Command()
  .name('det-speed')
  .option('--out <file>', 'JSON output', `${SCRATCH_RESULTS_DIR}/det-speed.json`)
  .option('--seqlen <n>', 'tokens', intAtLeast(1024), 16384)
  .option('--masks <list>', `masks: ${MASK_NAMES.join(', ')}`, wordList(MASK_NAMES), ['full', 'causal', 'varlen_causal', 'sw_causal'] as MaskName[])
  .option('--schedules <list>', `schedules: ${SCHEDULES.join(', ')} (default always runs: the others' reference)`, wordList(SCHEDULES), [...SCHEDULES])
  .option('--iters <n>', 'timed calls', intAtLeast(1), 10)
  .option('--warmup <n>', 'warm-up calls', intAtLeast(0), 3)
  .option('--no-verify', 'skip the bit-identity and agreement checks')
  .parse();
const opts = program.opts<{ out: string; seqlen: number; masks: MaskName[]; schedules: Schedule[]; iters: number; warmup: number; verify: boolean }>();
const schedules = SCHEDULES.filter((s) => s === 'default' || opts.schedules.includes(s));
interface Row {
  mask: string;
  seqlen: number;
  area: number;
  ms: Partial<Record<Schedule, number>>;
  tflops: Partial<Record<Schedule, number>>;
  launches: { grouped?: number; ordered?: number };
  /** Share of the ordered plan's items the walk rule walks with the heads outer. */
  orderedHeadsOuter?: number;
  /** The block order of each of ordered's launches (describeBlockOrder). */
  orderedBlockOrder?: string;
  verify?: string;
  verifyOk?: boolean;
  error?: string;
}

async function main(): Promise<number> {
  const { CudaFfaBackward } = await import('../../src/kernels/cuda/ffa-backward.js');
  const S = opts.seqlen;
  const { dev, bufs, fwd } = await openBackwardBench('det-speed', S, HQ, HKV, DIM);
  const kernels = {
    grouped: new CudaFfaBackward(dev, { deterministicSchedule: 'grouped' }),
    ordered: new CudaFfaBackward(dev, { deterministicSchedule: 'ordered' }),
    ordered_inner: new CudaFfaBackward(dev, { deterministicSchedule: 'ordered', orderedWalk: 'inner' }),
    ordered_item: new CudaFfaBackward(dev, { deterministicSchedule: 'ordered', blockOrder: 'item-major' }),
  };
  if (!kernels.ordered.usesSm90(DIM)) throw new Error('the ordered schedule needs the Hopper backward (compute capability 9.0)');
  const scale = 1 / Math.sqrt(DIM);
  const rows: Row[] = [];
  let failed = false;
  // written after every mask, so that a run stopped by its time limit keeps what it measured
  const save = (): void => {
    mkdirSync(dirname(opts.out), { recursive: true });
    const what = `backward ms / TFLOP/s, ${S} tokens, ${HQ}:${HKV} heads, D ${DIM}, bf16; default vs deterministic (${schedules.filter((s) => s !== 'default').join(', ')}; ordered: the walk rule and split block order, ordered_inner: every item heads inner, ordered_item: blocks item-major); timeLaunches median, --iters ${opts.iters} --warmup ${opts.warmup}`;
    writeFileSync(opts.out, JSON.stringify({ date: new Date().toISOString(), gpu: dev.name, what, rows }, null, 2));
  };
  for (const name of opts.masks) {
    const m = buildMask(name, S, 42);
    const row: Row = { mask: name, seqlen: S, area: m.area, ms: {}, tflops: {}, launches: {} };
    rows.push(row);
    const shape = benchShape(S, HQ, HKV, DIM);
    try {
      forwardInto(fwd, shape, m.slices, bufs, scale);
      const problems: Partial<Record<Schedule, FfaBackwardProblem>> = {};
      for (const s of schedules) problems[s] = (s === 'default' ? kernels.grouped : kernels[s]).prepare(shape, m.slices);
      if (problems.grouped !== undefined) row.launches.grouped = problems.grouped.deterministicWork().plan.groups.length / 2;
      const ordered = (problems.ordered ?? problems.ordered_inner)?.orderedWork().plan;
      if (ordered !== undefined) row.launches.ordered = orderedLaunches(ordered, true).length / 2;
      if (problems.ordered !== undefined) {
        const w = problems.ordered.orderedWork();
        row.orderedHeadsOuter = orderedHeadsOuterShare(w.plan);
        const launches = orderedLaunches(w.plan, true);
        row.orderedBlockOrder = Array.from(w.kvMajorItems.fromZero, (k, i) => describeBlockOrder(k, launches[2 * i + 1])).join(', ');
      }
      const det = (s: Schedule): boolean => s !== 'default';
      if (opts.verify) {
        const sums = (s: Schedule): Float32Array[] => backwardSums(problems[s]!, bufs, scale, det(s));
        const parts: string[] = [];
        let ok = true;
        const ref = sums('default');
        const got: Partial<Record<Schedule, Float32Array[]>> = {};
        for (const s of schedules.filter(det)) {
          const a = (got[s] = sums(s));
          const bit = sameBits(a, sums(s));
          const agree = sumsAgree(a, ref);
          ok &&= bit && agree.ok;
          parts.push(`${s}: two runs ${bit ? 'bit-identical' : 'DIFFER'}, vs default ${agree.line}`);
        }
        if (got.ordered !== undefined && got.ordered_inner !== undefined) {
          const dq = sameBits(got.ordered.slice(0, 1), got.ordered_inner.slice(0, 1));
          ok &&= dq;
          parts.push(`ordered_inner's dq ${dq ? 'bit-identical to' : 'DIFFERS from'} ordered's`);
        }
        if (got.ordered !== undefined && got.ordered_item !== undefined) {
          const all = sameBits(got.ordered, got.ordered_item);
          ok &&= all;
          parts.push(`ordered_item's dq / dk / dv ${all ? 'bit-identical to' : 'DIFFER from'} ordered's`);
        }
        row.verify = parts.join('; ');
        row.verifyOk = ok;
        failed ||= !ok;
        console.log(`${ok ? 'PASS' : 'FAIL'} det-speed verify ${name} S=${S}: ${row.verify}`);
      }
      for (const s of schedules) {
        const p = problems[s]!;
        const t = timeLaunches(dev, () => p.launch(bufs, scale, 0, undefined, { deterministic: det(s) }), opts.iters, opts.warmup);
        row.ms[s] = t.ms;
        row.tflops[s] = backwardTflops(m.area, HQ, DIM, t.ms);
      }
      for (const p of Object.values(problems)) p.free();
      console.log(`det-speed ${name} S=${S}: ${schedules.map((s) => `${s} ${row.ms[s]!.toFixed(2)} ms`).join(', ')}${row.orderedBlockOrder !== undefined ? ` (ordered's blocks: ${row.orderedBlockOrder})` : ''}`);
    } catch (e) {
      row.error = (e as Error).stack ?? String(e);
      failed = true;
      console.log(`FAIL det-speed ${name} S=${S}: threw ${row.error}`);
    }
    save();
  }
  const cell = (r: Row, s: Schedule): string => (r.ms[s] === undefined ? '—' : `${r.ms[s]!.toFixed(2)} ms ${r.tflops[s]!.toFixed(0)} TF`);
  const ratio = (r: Row, s: Schedule): string => (r.ms[s] === undefined || r.ms.default === undefined ? '—' : `${(r.ms[s]! / r.ms.default).toFixed(2)}x`);
  console.log(
    renderTable(
      ['mask', ...schedules, ...schedules.filter((s) => s !== 'default').map((s) => `${s} / default`), 'ordered: heads outer', 'launches grouped / ordered'],
      rows.map((r) => [
        r.mask,
        ...schedules.map((s) => cell(r, s)),
        ...schedules.filter((s) => s !== 'default').map((s) => ratio(r, s)),
        r.orderedHeadsOuter === undefined ? '—' : `${(100 * r.orderedHeadsOuter).toFixed(0)}% of items`,
        `${r.launches.grouped ?? '—'} / ${r.launches.ordered ?? '—'}`,
      ]),
    ),
  );
  console.log(`wrote ${opts.out}`);
  dev.close();
  return failed ? 1 : 0;
}

exitWith(main);
