/**
 * bench:dist-cpu: the distributed pipeline on worker-thread ranks of one process (CPU kernel,
 * threads backend) over a varlen-causal mask of packed documents: per rank and per stage, the
 * cells computed, compute time, time blocked waiting on the stage's fetch, and bytes moved; and how
 * much of the communication the pipeline hid: the forward's GroupCasts are also run back to back
 * with no compute (comm-only time), and hidden = 1 − (exposed wait in the forward) / (comm-only),
 * clamped at 0. The exposed wait also contains skew (waiting for a slower peer to reach the
 * collective), so when ranks are unbalanced or share cores it can exceed the comm-only time and
 * "hidden" reads 0% although the transfer itself was short: read both columns.
 * The last of `--repeats` runs is reported (the first pays the JIT warm-up of every thread).
 * Prints a table, writes bench/results/dist-cpu.json.
 *
 * On the threads backend a rank's incoming data is only unpacked when its thread yields, so
 * "hidden" here measures the pipeline's structure (fetches issued ahead of compute) more than a
 * real NIC's concurrency; with P ranks on fewer cores the compute times also include contention.
 */
import { Command } from 'commander';
import { outputPath, withOutputOptions } from './output.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname } from 'node:path';
import { profileTotals, runDistributed, sum, type DistRunSpec } from '../src/cli/demo-dist.js';
import type { DType } from '../src/dtype.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../src/kernels/flex-flash-attn.js';
import { cuSeqlensFromLengths, sampleDocLengths, varlenCausalMask } from '../src/mask/helpers.js';
import { sliceListArea } from '../src/mask/slice-list.js';
import { Tensor } from '../src/tensor.js';
import { Rng } from '../src/util/rng.js';

const program = withOutputOptions(
  new Command()
    .option('--seqlen <n>', 'total tokens', '8192')
    .option('--cp <p>', 'ranks (worker threads)', '4')
    .option('--heads-q <n>', 'query heads', '4')
    .option('--heads-kv <n>', 'key/value heads', '2')
    .option('--head-dim <n>', 'head dimension', '32')
    .option('--degree <n>', 'overlap degree (remote stages)', '2')
    .option('--dtype <dtype>', 'float32 or bfloat16', 'float32')
    .option('--repeats <n>', 'forward+backward runs per rank; the last is reported', '2')
    .option('--seed <n>', 'seed of the documents and inputs', '42')
    .option('--single', 'also time single-device flexFlashAttn on the whole sequence (main thread)'),
  'dist-cpu.json',
).parse();

const o = program.opts<{ seqlen: string; cp: string; headsQ: string; headsKv: string; headDim: string; degree: string; dtype: string; repeats: string; seed: string; single?: boolean; out?: string; updateResults?: boolean }>();

const seqlen = Number(o.seqlen);
const seed = Number(o.seed);
const lengths = sampleDocLengths(seqlen, new Rng(seed));
const mask = varlenCausalMask(cuSeqlensFromLengths(lengths));
const spec: DistRunSpec = {
  cp: Number(o.cp),
  seqlen,
  headsQ: Number(o.headsQ),
  headsKv: Number(o.headsKv),
  headDim: Number(o.headDim),
  dtype: o.dtype as DType,
  seed,
  mask: { qRanges: Array.from(mask.qRanges), kRanges: Array.from(mask.kRanges), maskTypes: Array.from(mask.maskTypes) },
  overlap: { degree: Number(o.degree) },
  repeats: Number(o.repeats),
  compare: false,
};

const ms = (x: number): string => x.toFixed(1).padStart(8);
const kib = (b: number): string => (b / 1024).toFixed(0).padStart(9);

console.log(`bench:dist-cpu  ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), node ${process.version}`);
console.log(`  ${seqlen} tokens, ${lengths.length} documents varlen-causal, area ${sliceListArea(mask)} cells; cp ${spec.cp}, heads ${spec.headsQ}:${spec.headsKv}, dim ${spec.headDim}, ${spec.dtype}, degree ${spec.overlap.degree}`);
const t0 = performance.now();
const ranks = await runDistributed(spec);
const wall = performance.now() - t0;

console.log('\n  rank  pass  stage     cells   compute ms   wait ms   sent KiB   recv KiB');
for (const r of ranks) {
  for (const [pass, p] of [['fwd', r.forward.at(-1)], ['bwd', r.backward.at(-1)]] as const) {
    if (p === undefined) continue;
    for (const s of p.stages) {
      console.log(`  ${String(r.rank).padStart(4)}  ${pass}  ${String(s.stage).padStart(5)}  ${String(s.area).padStart(8)}  ${ms(s.computeMs)}    ${ms(s.waitMs)}  ${kib(s.sendBytes)}  ${kib(s.recvBytes)}`);
    }
    console.log(`  ${String(r.rank).padStart(4)}  ${pass}  final                          ${ms(p.finalWaitMs)}   (total ${p.totalMs.toFixed(1)} ms)`);
  }
}

console.log('\n  rank  fwd total  fwd compute  fwd wait (skew+comm)  comm-only  hidden   bwd total  bwd wait (skew+comm)');
const summary = ranks.map((r) => {
  const f = r.forward.at(-1);
  const b = r.backward.at(-1);
  if (f === undefined || b === undefined) throw new Error(`rank ${r.rank} returned no profile`);
  const ft = profileTotals(f);
  const bt = profileTotals(b);
  const hidden = r.commOnlyMs > 0 ? Math.max(0, 1 - ft.waitMs / r.commOnlyMs) : 1;
  console.log(
    `  ${String(r.rank).padStart(4)}  ${ms(f.totalMs)}   ${ms(ft.computeMs)}           ${ms(ft.waitMs)}   ${ms(r.commOnlyMs)}  ${(100 * hidden).toFixed(0).padStart(4)}%   ${ms(b.totalMs)}            ${ms(bt.waitMs)}`,
  );
  return { rank: r.rank, area: r.area, stages: r.stages, forward: f, backward: b, commOnlyMs: r.commOnlyMs, hidden, forwardTotals: ft, backwardTotals: bt };
});

let single: { forwardMs: number; backwardMs: number } | undefined;
if (o.single) {
  const rng = new Rng(seed);
  const rand = (shape: number[]): Tensor => Tensor.fromValues(spec.dtype, shape, rng.normals(shape.reduce((a, b) => a * b, 1)));
  const q = rand([seqlen, spec.headsQ, spec.headDim]);
  const k = rand([seqlen, spec.headsKv, spec.headDim]);
  const v = rand([seqlen, spec.headsKv, spec.headDim]);
  const m = { qRanges: mask.qRanges, kRanges: mask.kRanges, maskTypes: mask.maskTypes };
  flexFlashAttn(q, k, v, m); // warm-up
  let t = performance.now();
  const r = flexFlashAttn(q, k, v, m);
  const forwardMs = performance.now() - t;
  t = performance.now();
  flexFlashAttnBackward(q, q, k, v, r.out, r.lse, m);
  single = { forwardMs, backwardMs: performance.now() - t };
  const slowest = Math.max(...summary.map((s) => s.forward.totalMs));
  console.log(`\n  single device (main thread): forward ${single.forwardMs.toFixed(1)} ms, backward ${single.backwardMs.toFixed(1)} ms; slowest rank's forward ${slowest.toFixed(1)} ms`);
}
console.log(`\n  wall time with worker start-up: ${(wall / 1000).toFixed(1)} s; mean forward hidden ${(100 * (sum(summary.map((s) => s.hidden)) / summary.length)).toFixed(0)}%`);

const outFile = outputPath(o, 'dist-cpu.json');
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(
  outFile,
  JSON.stringify(
    {
      machine: { cores: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
      spec: { ...spec, mask: { slices: mask.maskTypes.length, documents: lengths.length, area: sliceListArea(mask) } },
      ranks: summary,
      singleDevice: single ?? null,
      wallMs: wall,
    },
    null,
    2,
  ),
);
console.log(`  wrote ${outFile}`);
