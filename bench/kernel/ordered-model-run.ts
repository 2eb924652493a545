/**
 * bench/kernel/ordered-model-run: the timing model of the ordered deterministic backward
 * (ordered-model.ts) against H200 measurements of the default backward (issue 11: deterministic
 * mode within 1.3x of the default backward), per walk of the ordered plan. CPU only, no GPU:
 *
 *   node --import tsx bench/kernel/ordered-model-run.ts [--out FILE] [--masks full,causal,...] [--seqlens 16384,65536]
 *     [--add-read 0.5] [--add-done 1.5] [--poll 0.3] [--l2-mb 30] [--miss-cost 2]
 *
 * (the six bench:kernel masks at 16k and 64k: ~2 minutes on one core). Per mask and length
 * (64:8 heads, bench:kernel's masks with seed 42) and per measured default time the step time is
 * fitted so that the modeled default backward takes that time; then the ordered plan
 * (planOrderedBackward) is replayed with it, walked three ways: by the walk rule (the plan's own,
 * orderedWalkHeadsOuter per group of tiles), every item heads inner (the kernel's only walk before
 * the rule), every item heads outer. The default times, read at run time: det-speed's at 16k,
 * before and after the default kernel's Pᵀ step (bench/results/kernel-det-ordered-2026-12-02.json,
 * kernel-det-ptile-2026-12-02.json; with the ordered time measured then, heads inner), else
 * bench:kernel's (bench/results/kernel.json, method 'ours'). Columns:
 *   step µs        the fitted step, without / with the L2 model
 *   turns          ordered / default with turn-taking only (no L2 model), heads inner / the rule
 *   L2: inner, outer, rule
 *                  ordered / default with the L2 model (a step waits for a fetch of its q tile
 *                  when the tile was last touched more than the L2's worth of steps before)
 *   rule: outer    share of the items the rule walks with the heads outer
 *   waited rule    share of the rule's blocks' time their dQ thread waited for a turn (with the L2)
 *   fetches        share of steps that waited for a fetch: default / heads inner / the rule
 *   reuse gap      median steps between two steps on the same q tile (turns only)
 *
 * What it found (2026-12-02, model numbers, not measurements; defaults as above;
 * bench/results/ordered-model-walk-2026-12-02.json):
 *   - Turn-taking alone explains none of the gap: ordered / default 1.00-1.03 on all six masks,
 *     either walk. What sets the sliding window apart is locality: its band items are 18 tiles
 *     each, every one 2 tiles above the one before, and walked with the heads inner an item
 *     reaches a tile 2 x 8 = 16 steps after the item before it did (the default, heads outer, 2):
 *     a q tile's Q, dO and dQ rows are touched again after ~16 x 132 steps' worth of other tiles,
 *     far past the L2 (the model: 99% of steps fetch against the default's 24%; with a 30 MB L2
 *     and 2 µs per fetch, causal 1.08, varlen causal 1.04 and sliding window 1.50 against the
 *     measured 1.12, 1.03 and 1.50 after the Pᵀ step). ncu on the H200 (first launch of each, 16k) confirmed it for
 *     the sliding window, not for causal: L2 hit rate default 78.5% / ordered 33.9% (DRAM 25% /
 *     68% busy), causal 71.2% / 67.1% (bench/results/kernel-bwd-next-2026-12-02.json).
 *   - Heads outer for every item: sliding window 1.29 (16k) / 1.24 (64k), but causal 1.18 / 1.11
 *     and varlen causal 1.07 / 1.09 (heads inner: 1.08 / 1.09, 1.04 / 1.05): a causal item, 2
 *     tiles shorter than the one before and starting on the same tile, waits for it at every
 *     change of head. Full, varlen full and varlen block-causal: the same either way (their items
 *     on a tile are alike).
 *   - The rule (heads outer for a group of tiles when 2 Σ|Δd| > Σ|Δn| over its consecutive items:
 *     the sliding window's band, not its causal head, nor any item of the other five masks):
 *     sliding window 1.28 (16k, after) / 1.25 (64k; heads inner 1.50 at both), every other mask
 *     at its heads-inner ratio (the same plan). The sliding window's remaining cost is turns with
 *     the L2: the rule's blocks wait 38% of their time, behind the first item of each batch of
 *     blocks started together, which is the first on its tiles and fetches every one of them.
 *   - Sensitivity (16k, after): the sliding window under the rule 1.28 at 20, 30 and 50 MB of
 *     L2 (heads inner 1.50), 1.10 at 1 µs a fetch (heads inner 1.24).
 *   - Plan changes tried in the model before the rule, none of which helped the sliding window
 *     without costing elsewhere: walking each item cyclically from the tile where the item before
 *     it on its tiles was; the heads outer only for items shifted against the item before them
 *     (1.55: the two walks meet at the tail, and an item walked heads outer behind one walked
 *     heads inner waits for it; hence one walk per group of tiles).
 *
 * To measure the rule on an H200 (the lead's run; staged as in bench/kernel/README.md's re-run
 * block): det-speed's ordered column is the rule's walk; the L2 hit rate of the ordered
 * sliding-window launch should come back near the default's:
 *
 *   source .device/boot.sh && node dist/bench/kernel/det-speed.js --out "$OUT/det-speed.json"
 *   source .device/boot.sh && for k in 'ffa_bwd_sm90_bf16_d128$' 'ffa_bwd_sm90_ordered_bf16_d128$'; do
 *     ncu --clock-control none -k "regex:$k" --launch-count 1 --section MemoryWorkloadAnalysis --section SpeedOfLight \
 *       node dist/bench/kernel/det-speed.js --masks sw_causal --iters 1 --warmup 0 --no-verify --out "$OUT/det-sw.json"; done
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { renderTable } from '../../src/cli/table.js';
import { intAtLeast, positiveNumber, wordList } from '../../src/cli/flags.js';
import { planFfaBackward } from '../../src/kernels/cuda/ffa-backward.js';
import { ORDERED_RECORD, orderedHeadsOuterShare, orderedItemHeadsOuter, planOrderedBackward, type OrderedWalk } from '../../src/kernels/cuda/ffa-backward-ordered.js';
import { COMMITTED_RESULTS_DIR, SCRATCH_RESULTS_DIR } from '../output.js';
import { MASK_NAMES, buildMask, type MaskName } from './masks.js';
import { MODEL_BLOCK_M, MODEL_BLOCK_N, defaultSchedule, fitStep, orderedSchedule, reuseGaps, simulateSchedule, type ModelParams, type ModelResult, type ModelSchedule } from './ordered-model.js';

const HEADS = { headsQ: 64, headsKv: 8 };

/**
 * det-speed runs on an H200 (default and ordered ms per mask; the ordered schedule walked heads
 * inner then), read at run time: before and after the default kernel's Pᵀ step (p_tile).
 */
const DET_SPEED = [
  { source: 'det-speed before', file: `${COMMITTED_RESULTS_DIR}/kernel-det-ordered-2026-12-02.json` },
  { source: 'det-speed after', file: `${COMMITTED_RESULTS_DIR}/kernel-det-ptile-2026-12-02.json` },
] as const;
/** The default backward's times of the other cells: bench:kernel's run (method 'ours'), read at run time. */
const BENCH_KERNEL = `${COMMITTED_RESULTS_DIR}/kernel.json`;

const program = new Command()
  .name('ordered-model-run')
  .option('--out <file>', 'JSON output', `${SCRATCH_RESULTS_DIR}/ordered-model.json`)
  .option('--masks <list>', `masks: ${MASK_NAMES.join(', ')}`, wordList(MASK_NAMES), [...MASK_NAMES])
  .option('--seqlens <list>', 'tokens, comma separated', (v: string) => v.split(',').map(intAtLeast(MODEL_BLOCK_N)), [16384, 65536])
  .option('--add-read <us>', 'reduce-adds issued to the staging buffer read, µs', positiveNumber, 0.5)
  .option('--add-done <us>', 'ordered: reduce-adds issued to the counter released, µs', positiveNumber, 1.5)
  .option('--poll <us>', 'ordered: a release to the waiting dQ thread seeing it, µs', positiveNumber, 0.3)
  .option('--l2-mb <mb>', 'L2 that holds recently touched q tiles, MB', positiveNumber, 30)
  .option('--miss-cost <us>', 'a fetch of a q tile from DRAM, µs', positiveNumber, 2)
  .parse();
const opts = program.opts<{ out: string; masks: MaskName[]; seqlens: number[]; addRead: number; addDone: number; poll: number; l2Mb: number; missCost: number }>();

/** One default time the step is fitted to: det-speed's (with its ordered time) or bench:kernel's. */
interface Cell {
  mask: MaskName;
  seqlen: number;
  source: (typeof DET_SPEED)[number]['source'] | 'bench:kernel';
  defaultMs: number;
  orderedMs: number | null;
}

function cells(): Cell[] {
  const read = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;
  const bench = read<{ results: Array<{ mask: string; seqlen: number; method: string; bwd_ms?: number }> }>(BENCH_KERNEL).results;
  const det = DET_SPEED.map(({ source, file }) => ({ source, rows: read<{ rows: Array<{ mask: string; seqlen: number; ms: { default?: number; ordered?: number } }> }>(file).rows }));
  const out: Cell[] = [];
  for (const seqlen of opts.seqlens)
    for (const mask of opts.masks) {
      const measured: Cell[] = [];
      for (const { source, rows } of det) {
        const r = rows.find((x) => x.mask === mask && x.seqlen === seqlen && x.ms.default !== undefined && x.ms.ordered !== undefined);
        if (r !== undefined) measured.push({ mask, seqlen, source, defaultMs: r.ms.default!, orderedMs: r.ms.ordered! });
      }
      if (measured.length > 0) {
        out.push(...measured);
        continue;
      }
      const r = bench.find((x) => x.mask === mask && x.seqlen === seqlen && x.method === 'ours' && x.bwd_ms !== undefined);
      if (r === undefined) throw new Error(`${BENCH_KERNEL} has no backward time of ours for ${mask} at ${seqlen}`);
      out.push({ mask, seqlen, source: 'bench:kernel', defaultMs: r.bwd_ms!, orderedMs: null });
    }
  return out;
}

/** Per walk (the rule, every item heads inner, every item heads outer): ordered / default, with and without the L2 model. */
interface WalkRatios {
  turns: number;
  l2: number;
  waited: number;
  fetches: number;
  reuseGap: number;
}

interface Row {
  mask: MaskName;
  seqlen: number;
  source: Cell['source'];
  measured: { defaultMs: number; orderedMs: number | null; ratio: number | null };
  /** Fitted step without / with the L2 model, µs. */
  step: number;
  stepL2: number;
  /** Share of the items the rule walks with the heads outer. */
  ruleOuter: number;
  default: { fetches: number; reuseGap: number };
  walks: Record<'inner' | 'outer' | 'rule', WalkRatios>;
}

const median = (a: Float64Array): number => (a.length > 0 ? a[Math.floor(a.length / 2)] : NaN);

function main(): void {
  const base: Omit<ModelParams, 'step'> = {
    sms: 132,
    addRead: opts.addRead,
    addDone: opts.addDone,
    poll: opts.poll,
    blockStart: 0,
    blockEnd: 0,
    l2Bytes: opts.l2Mb * 1e6,
    stepBytes: 65536,
    missCost: opts.missCost,
  };
  const rows: Row[] = [];
  const todo = cells();
  for (let c = 0; c < todo.length; c++) {
    const cell = todo[c];
    const shape = { tokensQ: cell.seqlen, tokensK: cell.seqlen, ...HEADS };
    const { slices } = buildMask(cell.mask, cell.seqlen, 42);
    const plan = planFfaBackward(slices, cell.seqlen, cell.seqlen, MODEL_BLOCK_N, MODEL_BLOCK_M);
    const def = defaultSchedule(plan, slices, shape);
    // fitted twice: without the L2 model (turns) and with it
    const noL2 = { ...base, l2Bytes: 0, step: fitStep(def, { ...base, l2Bytes: 0 }, cell.defaultMs * 1000) };
    const p = { ...base, step: fitStep(def, base, cell.defaultMs * 1000) };
    const d0 = simulateSchedule(def, noL2);
    const d = simulateSchedule(def, p);
    const walks = {} as Row['walks'];
    let ruleOuter = 0;
    const done = new Map<string, WalkRatios>(); // the rule's plan is often one of the forced ones: replayed once
    for (const walk of ['inner', 'outer', 'rule'] as const satisfies readonly OrderedWalk[]) {
      const ord = planOrderedBackward(plan, slices, MODEL_BLOCK_N, MODEL_BLOCK_M, walk);
      if (walk === 'rule') ruleOuter = orderedHeadsOuterShare(ord);
      const key = Array.from({ length: ord.work.length / ORDERED_RECORD }, (_, at) => (orderedItemHeadsOuter(ord, at) ? 'o' : 'i')).join('');
      const again = done.get(key);
      if (again !== undefined) {
        walks[walk] = again;
        continue;
      }
      const sched: ModelSchedule = orderedSchedule(ord, shape);
      const o0: ModelResult = simulateSchedule(sched, noL2);
      const o = simulateSchedule(sched, p);
      walks[walk] = { turns: o0.time / d0.time, l2: o.time / d.time, waited: o.waited / o.busy, fetches: o.missRate, reuseGap: median(reuseGaps(sched, o0, noL2.step)) };
      done.set(key, walks[walk]);
    }
    const row: Row = {
      mask: cell.mask,
      seqlen: cell.seqlen,
      source: cell.source,
      measured: { defaultMs: cell.defaultMs, orderedMs: cell.orderedMs, ratio: cell.orderedMs === null ? null : cell.orderedMs / cell.defaultMs },
      step: noL2.step,
      stepL2: p.step,
      ruleOuter,
      default: { fetches: d.missRate, reuseGap: median(reuseGaps(def, d0, noL2.step)) },
      walks,
    };
    rows.push(row);
    const x = (v: number): string => `${v.toFixed(2)}x`;
    console.log(
      `[${c + 1}/${todo.length}] ${cell.mask} ${cell.seqlen} (${cell.source}): measured ${row.measured.ratio === null ? '-' : x(row.measured.ratio)}, ` +
        `model with the L2: heads inner ${x(walks.inner.l2)}, outer ${x(walks.outer.l2)}, rule ${x(walks.rule.l2)} (${(100 * ruleOuter).toFixed(0)}% of items outer)`,
    );
  }
  const x = (v: number): string => `${v.toFixed(2)}x`;
  console.log(
    renderTable(
      ['mask', 'S', 'default from', 'default ms', 'step µs', 'measured', 'turns inner / rule', 'L2: inner', 'L2: outer', 'L2: rule', 'rule: outer items', 'waited rule', 'fetches def / inner / rule', 'reuse gap def / inner / rule'],
      rows.map((r) => [
        r.mask,
        `${r.seqlen / 1024}k`,
        r.source,
        r.measured.defaultMs.toFixed(2),
        `${r.step.toFixed(2)} / ${r.stepL2.toFixed(2)}`,
        r.measured.ratio === null ? '-' : x(r.measured.ratio),
        `${x(r.walks.inner.turns)} / ${x(r.walks.rule.turns)}`,
        x(r.walks.inner.l2),
        x(r.walks.outer.l2),
        x(r.walks.rule.l2),
        `${(100 * r.ruleOuter).toFixed(0)}%`,
        `${(100 * r.walks.rule.waited).toFixed(0)}%`,
        `${r.default.fetches.toFixed(2)} / ${r.walks.inner.fetches.toFixed(2)} / ${r.walks.rule.fetches.toFixed(2)}`,
        `${r.default.reuseGap.toFixed(1)} / ${r.walks.inner.reuseGap.toFixed(1)} / ${r.walks.rule.reuseGap.toFixed(1)}`,
      ]),
    ),
  );
  mkdirSync(dirname(opts.out), { recursive: true });
  const what = `timing model of the ordered deterministic backward (bench/kernel/ordered-model.ts), 64:8 heads, D 128, 132 SMs, walks: the rule (planOrderedBackward), every item heads inner, every item heads outer; model numbers against H200 measurements of the default (det-speed, ${BENCH_KERNEL})`;
  writeFileSync(opts.out, JSON.stringify({ date: new Date().toISOString(), what, params: base, rows }, null, 2));
  console.log(`wrote ${opts.out}`);
}

main();
