/**
 * bench:cpu: forward and backward throughput of the tiled CPU flex-flash-attention kernel on
 * full, causal and varlen-causal masks, against the plain dense (materialised) implementation
 * measured in the same run. FLOPs are counted from the mask's area (4·area·Hq·D forward, 2.5×
 * that backward), so both columns are "useful" GFLOP/s and their ratio is the speed-up.
 * Prints a table, writes bench/results/cpu-kernel.json.
 *
 * Peak RSS is read after each tiled run, smallest size first and before any dense run, so its
 * growth shows what the tiled kernel itself needs.
 */
import { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { Tensor } from '../src/tensor.js';
import type { DType } from '../src/dtype.js';
import type { SliceList } from '../src/mask/slice-list.js';
import { sliceListArea } from '../src/mask/slice-list.js';
import { fullMask, causalMask, varlenCausalMask, sampleDocLengths, cuSeqlensFromLengths } from '../src/mask/helpers.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../src/kernels/flex-flash-attn.js';
import { Rng } from '../src/util/rng.js';
import { denseAttentionForwardBackward } from './dense-attention.js';

const MASKS = ['full', 'causal', 'varlen-causal'] as const;
type MaskName = (typeof MASKS)[number];

const program = new Command()
  .option('--sizes <list>', 'sequence lengths', '2048,4096,8192,16384')
  .option('--masks <list>', `masks among ${MASKS.join(', ')}`, MASKS.join(','))
  .option('--heads <q:kv>', 'query and key/value heads', '8:2')
  .option('--dim <d>', 'head dim', '128')
  .option('--dtype <dtype>', 'input dtype', 'float32')
  .option('--dense-max <n>', 'largest length the dense baseline runs at (it needs ~(Hq+1)·N²·4 bytes)', '16384')
  .option('--seed <n>', 'seed for inputs and the varlen document lengths', '42')
  .option('--out <file>', 'JSON output', 'bench/results/cpu-kernel.json')
  .parse();
const opts = program.opts<{ sizes: string; masks: string; heads: string; dim: string; dtype: DType; denseMax: string; seed: string; out: string }>();
const sizes = opts.sizes.split(',').map(Number);
const masks = opts.masks.split(',') as MaskName[];
const [hq, hkv] = opts.heads.split(':').map(Number);
const dim = Number(opts.dim);
const seed = Number(opts.seed);
for (const m of masks) if (!MASKS.includes(m)) program.error(`--masks: unknown mask ${m}`);

function makeMask(name: MaskName, n: number): { slices: SliceList; docs: number } {
  if (name === 'full') return { slices: fullMask(n), docs: 1 };
  if (name === 'causal') return { slices: causalMask(n), docs: 1 };
  const lengths = sampleDocLengths(n, new Rng(seed));
  return { slices: varlenCausalMask(cuSeqlensFromLengths(lengths)), docs: lengths.length };
}

function randomTensor(rng: Rng, shape: number[]): Tensor {
  return Tensor.fromValues(opts.dtype, shape, rng.normals(shape.reduce((a, b) => a * b, 1)));
}

const peakRssMiB = (): number => process.resourceUsage().maxRSS / 1024;
const gc = (globalThis as { gc?: () => void }).gc;

interface Row {
  mask: MaskName;
  seqlen: number;
  docs: number;
  area: number;
  tiledFwdS: number;
  tiledBwdS: number;
  tiledFwdGflops: number;
  tiledBwdGflops: number;
  peakRssMiBAfterTiled: number;
  denseFwdS?: number;
  denseBwdS?: number;
  denseFwdGflops?: number;
  denseBwdGflops?: number;
  speedupFwd?: number;
  speedupBwd?: number;
}

const rows: Row[] = [];
const cases = sizes.flatMap((n) => masks.map((mask) => ({ n, mask })));
const inputsFor = (n: number) => {
  const rng = new Rng(seed + n);
  return { q: randomTensor(rng, [n, hq, dim]), k: randomTensor(rng, [n, hkv, dim]), v: randomTensor(rng, [n, hkv, dim]), dout: randomTensor(rng, [n, hq, dim]) };
};

console.log(`bench:cpu  ${os.cpus()[0]?.model ?? 'cpu'}  node ${process.version}  heads ${hq}:${hkv}  D=${dim}  ${opts.dtype}  seed ${seed}`);
let idx = 0;
for (const { n, mask } of cases) {
  idx++;
  const { slices, docs } = makeMask(mask, n);
  const area = sliceListArea(slices);
  const flopsFwd = 4 * area * hq * dim;
  const { q, k, v, dout } = inputsFor(n);
  const ranges = { qRanges: slices.qRanges, kRanges: slices.kRanges, maskTypes: slices.maskTypes };
  gc?.();
  const t0 = performance.now();
  const fwd = flexFlashAttn(q, k, v, ranges);
  const t1 = performance.now();
  flexFlashAttnBackward(dout, q, k, v, fwd.out, fwd.lse, ranges);
  const t2 = performance.now();
  const row: Row = {
    mask,
    seqlen: n,
    docs,
    area,
    tiledFwdS: (t1 - t0) / 1000,
    tiledBwdS: (t2 - t1) / 1000,
    tiledFwdGflops: flopsFwd / ((t1 - t0) / 1000) / 1e9,
    tiledBwdGflops: (2.5 * flopsFwd) / ((t2 - t1) / 1000) / 1e9,
    peakRssMiBAfterTiled: peakRssMiB(),
  };
  rows.push(row);
  console.log(
    `[${idx}/${cases.length}] tiled ${mask} ${n}: fwd ${row.tiledFwdS.toFixed(2)} s (${row.tiledFwdGflops.toFixed(2)} GFLOP/s), bwd ${row.tiledBwdS.toFixed(2)} s (${row.tiledBwdGflops.toFixed(2)} GFLOP/s), peak RSS ${row.peakRssMiBAfterTiled.toFixed(0)} MiB`,
  );
}

// The dense baseline computes every cell whatever the mask says (the mask only writes -inf), so
// its cost depends on the length alone: it runs once per length, on the full mask, and that time
// is the denominator of every mask's speed-up at that length.
const denseSizes = [...new Set(rows.map((r) => r.seqlen))].filter((n) => n <= Number(opts.denseMax));
idx = 0;
for (const n of denseSizes) {
  idx++;
  const { q, k, v, dout } = inputsFor(n);
  gc?.();
  const dense = denseAttentionForwardBackward(q, k, v, dout, fullMask(n));
  console.log(`[${idx}/${denseSizes.length}] dense ${n}: fwd ${dense.forwardSeconds.toFixed(2)} s, bwd ${dense.backwardSeconds.toFixed(2)} s`);
  for (const row of rows.filter((r) => r.seqlen === n)) {
    const flopsFwd = 4 * row.area * hq * dim;
    row.denseFwdS = dense.forwardSeconds;
    row.denseBwdS = dense.backwardSeconds;
    row.denseFwdGflops = flopsFwd / dense.forwardSeconds / 1e9;
    row.denseBwdGflops = (2.5 * flopsFwd) / dense.backwardSeconds / 1e9;
    row.speedupFwd = dense.forwardSeconds / row.tiledFwdS;
    row.speedupBwd = dense.backwardSeconds / row.tiledBwdS;
  }
}

const fmt = (x: number | undefined, d = 2): string => (x === undefined ? '-' : x.toFixed(d));
const times = (x: number | undefined): string => (x === undefined ? 'not run' : `${x.toFixed(1)}x`);
console.log('\n| mask | tokens | fwd GFLOP/s tiled | fwd dense | fwd speed-up | bwd GFLOP/s tiled | bwd dense | bwd speed-up | peak RSS MiB (tiled) |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(
    `| ${r.mask} | ${r.seqlen} | ${fmt(r.tiledFwdGflops)} | ${fmt(r.denseFwdGflops)} | ${times(r.speedupFwd)} | ${fmt(r.tiledBwdGflops)} | ${fmt(r.denseBwdGflops)} | ${times(r.speedupBwd)} | ${r.peakRssMiBAfterTiled.toFixed(0)} |`,
  );
}
const result = {
  benchmark: 'cpu-kernel',
  machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, memoryGiB: os.totalmem() / 2 ** 30, node: process.version, platform: `${os.platform()} ${os.arch()}` },
  config: { sizes, masks, headsQ: hq, headsKv: hkv, headDim: dim, dtype: opts.dtype, seed, denseMax: Number(opts.denseMax), flops: '4*area*Hq*D forward, 2.5x backward (useful FLOPs, also for dense)', dense: 'one run per length on the full mask; its time is used for every mask at that length' },
  peakRssMiBEnd: peakRssMiB(),
  rows,
};
mkdirSync('bench/results', { recursive: true });
writeFileSync(opts.out, JSON.stringify(result, null, 2));
console.log(`\nwrote ${opts.out}`);
