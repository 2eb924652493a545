/**
 * The Hopper forward's builds, each forced through the `build` option (the forward itself picks
 * one per plan: ffa-forward-sm90.ts, sm90ForwardPicksBuild): one block per work item on 128-key
 * k tiles ('block' below), the same on 176-key tiles ('wide') and the persistent walk, on
 * bench:kernel's masks and inputs: 64:8
 * heads, D 128, bf16, N(0, 1) inputs drawn on the device, masks from bench/kernel/masks.ts
 * (documents from the bench's seed), timed as bench:kernel times ours (timeLaunches: CUDA events
 * around each launch, median after warm-up). Per mask the block build is timed first and again
 * last, to show the drift between the two readings; each row also shows the plan's mean k tiles
 * per work item and the build the rules pick from it.
 *
 * Before timing, each build's outputs on the mask are compared with the block build's (at full
 * size, where every persistent block walks ~60 items; the GPU checks run small cases). The persistent
 * build runs each item with the same source arithmetic, so in the direct epilogue (q ranges
 * disjoint, every bench mask) its out and lse are expected bit-identical; the wide build sums the
 * keys in other groups, so it agrees to rounding. The run fails (exit code 1) only where a build
 * disagrees beyond rounding: an element NaN in one and not the other (the outputs are poisoned
 * with NaN bits first, so an unwritten element is NaN), |Δout| > 1e-2 · max|out|, or
 * |Δlse| > 1e-3 · (1 + |lse|).
 *
 *   node dist/bench/kernel/fwd-persist.js [--seqlen 16384] [--masks full,causal,...] [--seed 42]
 *        [--builds block,wide,persistent] [--iters 20] [--warmup 5] [--json FILE]
 * Timed per mask in the order of --builds, then the block build again (the drift within the run).
 */
import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { CudaDevice } from '../../src/device/index.js';
import { bf16BitsToFloat } from '../../src/dtype.js';
import { CudaFfaForward } from '../../src/kernels/cuda/ffa-forward.js';
import { SM90_FORWARD_BUILDS, sm90ForwardPicksBuild, type Sm90ForwardBuild } from '../../src/kernels/cuda/ffa-forward-sm90.js';
import { buildMask, MASK_NAMES, type MaskName } from './masks.js';
import { randomDeviceTensor } from './inputs.js';
import { timeLaunches } from './timing.js';

const HQ = 64;
const HKV = 8;
const DIM = 128;
const DEFAULT_MASKS: readonly MaskName[] = ['full', 'causal', 'varlen_causal', 'sw_causal', 'varlen_block_causal'];

const cli = new Command()
  .option('--seqlen <n>', 'tokens', '16384')
  .option('--masks <list>', `comma-separated, of ${MASK_NAMES.join(', ')}`, DEFAULT_MASKS.join(','))
  .option('--seed <n>', 'documents of the varlen masks (bench:kernel default)', '42')
  .option('--iters <n>', 'timed launches', '20')
  .option('--warmup <n>', 'warm-up launches', '5')
  .option('--builds <list>', `comma-separated, of ${SM90_FORWARD_BUILDS.join(', ')} (block first)`, 'block,wide,persistent')
  .option('--json <file>', 'write the results here')
  .parse();
const o = cli.opts<{ seqlen: string; masks: string; seed: string; iters: string; warmup: string; builds: string; json?: string }>();
const S = Number(o.seqlen);
const iters = Number(o.iters);
const warmup = Number(o.warmup);
const masks = o.masks.split(',') as MaskName[];
for (const m of masks) if (!MASK_NAMES.includes(m)) throw new Error(`--masks: unknown mask ${m} (one of ${MASK_NAMES.join(', ')})`);

const builds = o.builds.split(',') as Sm90ForwardBuild[];
for (const b of builds) if (!SM90_FORWARD_BUILDS.includes(b)) throw new Error(`--builds: unknown build ${b} (${SM90_FORWARD_BUILDS.join(', ')})`);
if (builds[0] !== 'block' || new Set(builds).size !== builds.length) throw new Error('--builds: the block build first, each build once');

const dev = CudaDevice.open(0);
const variants = builds.map((b) => [b, new CudaFfaForward(dev, { kernel: 'sm90', sm90: { build: b } })] as const);
console.log(`${dev.name} (${dev.smCount} SMs): Hopper forward builds ${builds.join(', ')}; S ${S}, ${HQ}:${HKV} heads, D ${DIM}, bf16; median of ${iters} after ${warmup} warm-ups`);
const [q, k, v] = (await Promise.all([randomDeviceTensor(dev, [S, HQ, DIM], 1), randomDeviceTensor(dev, [S, HKV, DIM], 2), randomDeviceTensor(dev, [S, HKV, DIM], 3)])).map((t) => t.buffer);
const outs = variants.map(() => ({ out: dev.alloc(S * HQ * DIM * 2), lse: dev.alloc(S * HQ * 4) }));
const scale = 1 / Math.sqrt(DIM);

interface Row {
  mask: MaskName;
  seqlen: number;
  workItems: number;
  /** k tiles (of 128 keys) per work item, mean; and the build the forward's rules pick from the plan. */
  meanKTiles: number;
  rulePicks: Sm90ForwardBuild;
  merge: boolean;
  /** Per build other than block: its out and lse against block's (bit-identical, else the count of differing elements and the largest differences). */
  compared: Record<string, { identical: boolean; differing: number; maxOutDiff: number; maxLseDiff: number; nanMismatch: number }>;
  ms: Record<string, number>;
  tflops: Record<string, number>;
}

/** Bit differences of two (out bf16, lse fp32) results, and how large they are. */
function compareOutputs(a: { out: Uint16Array; lse: Uint32Array }, b: { out: Uint16Array; lse: Uint32Array }): { differing: number; maxOut: number; maxOutDiff: number; maxLseDiff: number; lseOver: number; nanMismatch: number } {
  let differing = 0;
  let maxOut = 0;
  let maxOutDiff = 0;
  let maxLseDiff = 0;
  let lseOver = 0;
  let nanMismatch = 0;
  for (let i = 0; i < a.out.length; i++) {
    const x = bf16BitsToFloat(a.out[i]);
    if (Math.abs(x) > maxOut) maxOut = Math.abs(x);
    if (a.out[i] === b.out[i]) continue;
    differing++;
    const y = bf16BitsToFloat(b.out[i]);
    if (Number.isNaN(x) !== Number.isNaN(y)) nanMismatch++;
    else if (!Number.isNaN(x)) maxOutDiff = Math.max(maxOutDiff, Math.abs(x - y));
  }
  // the same lse bits as floats (compared as bits first: NaN payloads and -0 count as differences)
  const aLse = new Float32Array(a.lse.buffer, a.lse.byteOffset, a.lse.length);
  const bLse = new Float32Array(b.lse.buffer, b.lse.byteOffset, b.lse.length);
  for (let i = 0; i < a.lse.length; i++) {
    if (a.lse[i] === b.lse[i]) continue;
    differing++;
    const x = aLse[i];
    const y = bLse[i];
    if (Number.isNaN(x) !== Number.isNaN(y)) nanMismatch++;
    else if (!Number.isNaN(x)) {
      const e = Math.abs(x - y);
      if (Number.isFinite(e)) maxLseDiff = Math.max(maxLseDiff, e);
      if (!(e <= 1e-3 * (1 + Math.abs(x)))) lseOver++;
    }
  }
  return { differing, maxOut, maxOutDiff, maxLseDiff, lseOver, nanMismatch };
}

const rows: Row[] = [];
let failed = false;
for (const name of masks) {
  const m = buildMask(name, S, Number(o.seed));
  const shape = { tokensQ: S, tokensK: S, headsQ: HQ, headsKv: HKV, dim: DIM, dtype: 'bfloat16' as const };
  const problems = variants.map(([, f]) => f.prepare(shape, m.slices));
  const flops = 4 * m.area * HQ * DIM;
  // the outputs, poisoned first, then compared bit for bit
  problems.forEach((p, i) => {
    outs[i].out.fill(0xff);
    outs[i].lse.fill(0xff);
    p.launch(q, k, v, outs[i].out, outs[i].lse, scale);
  });
  dev.synchronize();
  const got = outs.map((b) => ({ out: b.out.download(new Uint16Array(S * HQ * DIM)), lse: b.lse.download(new Uint32Array(S * HQ)) }));
  const merge = problems[0].merge;
  const row: Row = {
    mask: name, seqlen: S, workItems: problems[0].plan.numWork,
    meanKTiles: problems[0].plan.kTiles / Math.max(1, problems[0].plan.numWork),
    rulePicks: sm90ForwardPicksBuild(m.slices, problems[0].plan, DIM, HQ, dev.smCount), merge, compared: {}, ms: {}, tflops: {},
  };
  const notes: string[] = [];
  for (let i = 1; i < variants.length; i++) {
    const d = compareOutputs(got[0], got[i]);
    const bad = d.nanMismatch > 0 || d.maxOutDiff > 1e-2 * d.maxOut || d.lseOver > 0;
    if (bad) failed = true;
    row.compared[variants[i][0]] = { identical: d.differing === 0, differing: d.differing, maxOutDiff: d.maxOutDiff, maxLseDiff: d.maxLseDiff, nanMismatch: d.nanMismatch };
    notes.push(
      `${variants[i][0]} ` +
        (d.differing === 0 ? 'bit-identical' : `differs in ${d.differing} elements (max |Δout| ${d.maxOutDiff.toExponential(2)} of max |out| ${d.maxOut.toFixed(3)}, max |Δlse| ${d.maxLseDiff.toExponential(2)}, ${d.nanMismatch} NaN mismatches)${bad ? ' FAIL' : ''}`),
    );
  }
  const order: Array<[string, number]> = [...variants.map(([b], i): [string, number] => [b, i]), ['block again', 0]];
  for (const [label, i] of order) {
    const t = timeLaunches(dev, () => problems[i].launch(q, k, v, outs[i].out, outs[i].lse, scale), iters, warmup);
    row.ms[label] = t.ms;
    row.tflops[label] = flops / (t.ms * 1e-3) / 1e12;
  }
  for (const p of problems) p.free();
  rows.push(row);
  console.log(
    `${name} S=${S}: ${row.workItems} items x ${HQ} heads (${row.meanKTiles.toFixed(1)} k tiles each, the rules pick ${row.rulePicks}), ${merge ? 'merge' : 'direct'}, against block: ${notes.join(', ')}; ` +
      Object.entries(row.ms).map(([l, ms]) => `${l} ${ms.toFixed(3)} ms ${row.tflops[l].toFixed(0)} TFLOP/s`).join(' | '),
  );
}

const others = builds.slice(1);
console.log(`\n| mask | k tiles / item | ${builds.join(' | ')} | block again | ${others.map((b) => `${b} / block`).join(' | ')} | rules pick | outputs |`);
console.log(`|---|--:|${builds.map(() => '--:|').join('')}--:|${others.map(() => '--:|').join('')}---|---|`);
for (const r of rows) {
  const base = (r.tflops['block'] + r.tflops['block again']) / 2;
  const outputs = others.map((b) => `${b} ${r.compared[b].identical ? 'identical' : `${r.compared[b].differing} differ`}`).join(', ');
  console.log(
    `| ${r.mask} ${r.seqlen} | ${r.meanKTiles.toFixed(1)} | ${builds.map((b) => r.tflops[b].toFixed(0)).join(' | ')} | ${r.tflops['block again'].toFixed(0)} | ${others.map((b) => (r.tflops[b] / base).toFixed(3)).join(' | ')} | ${r.rulePicks} | ${outputs} |`,
  );
}
console.log('TFLOP/s = 4 · area · Hq · D / median time; the ratio is over the mean of the two block readings');
if (o.json !== undefined) {
  writeFileSync(
    o.json,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        gpu: dev.name,
        smCount: dev.smCount,
        node: process.version,
        what: 'Hopper forward builds: one block per work item on 128-key k tiles (block), on 176-key tiles (wide), persistent; TFLOP/s of the main launch path (CudaFfaForward problem.launch), bench:kernel masks and inputs',
        settings: { headsQ: HQ, headsKv: HKV, dim: DIM, dtype: 'bfloat16', seed: Number(o.seed), iters, warmup, builds },
        rows,
      },
      null,
      2,
    ),
  );
}
for (const b of [q, k, v, ...outs.flatMap((x) => [x.out, x.lse])]) b.free();
dev.close();
if (failed) {
  console.log("FAIL: a build's output disagrees with the block build's beyond rounding (see the lines above)");
  process.exit(1);
}
