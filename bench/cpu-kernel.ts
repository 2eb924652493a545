/**
 * bench:cpu: forward and backward throughput of the CPU flex-flash-attention kernel on the shapes
 * of issue 13, every method measured in the same run:
 *   before        the kernel of an older checkout (--baseline DIR: a built checkout, e.g. a git
 *                 worktree of main at 7f6cdad with `npx tsc` run in it), one thread
 *   typescript    this checkout's TypeScript engine (--typescript), one thread
 *   wasm xT       this checkout's WebAssembly kernel on T threads, for each T of --threads (its
 *                 default build); with --simd relaxed-simd,simd one row per build, named
 *                 wasm-relaxed-simd xT and wasm-simd xT, interleaved like every other method
 *   blas xT       the BLAS engine (the same kernel, its tile products in a native cblas_sgemm
 *                 through koffi, single-threaded per thread) on T threads (--blas; its loop in
 *                 the default WebAssembly build)
 *   dense         a plain dense implementation that materialises the scores (--dense)
 *   PyTorch xT    torch's CPU scaled_dot_product_attention at the same thread counts, run by a
 *                 bench/cpu-torch.py --serve process one timed run at a time, interleaved with
 *                 ours (--with-torch PYTHON), or read from earlier runs of it (--torch FILES)
 * FLOPs are counted from the mask's area (4·area·Hq·D forward, 2.5x that backward) for every
 * method, so the columns compare directly. Times are the best of --reps rounds; a round runs
 * every method of a shape, each fast one twice back to back and timed the second time (the first
 * wakes its threads and caches after the other methods ran); the slow 'before', 'typescript' and
 * 'dense' run once in each of the first --slow-reps rounds (default 1). Interleaving the methods
 * makes a burst of load from other processes hit them alike rather than one row. Each row also
 * records the cores its best run used (CPU time over wall time): a T-thread row well under T
 * cores ran while other processes held cores, and the table marks it. A progress bar weighted by
 * the FLOPs still to run shows where a long run is. Prints a table; writes JSON and an SVG plot
 * (under bench/out/, or bench/results/ with --update-results).
 */
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import os from 'node:os';
import { Tensor } from '../src/tensor.js';
import type { SliceList } from '../src/mask/slice-list.js';
import { sliceListArea } from '../src/mask/slice-list.js';
import { causalMask, cuSeqlensFromLengths, fullMask, sampleDocLengths, varlenCausalMask } from '../src/mask/helpers.js';
import type { FfaBackwardArgs, FfaForwardArgs, KernelBackend } from '../src/kernels/backend.js';
import { type WasmSimdChoice, blasInfo, cpuEngineName, createCpuBackend, wasmKernelInfo } from '../src/kernels/cpu/index.js';
import { Rng } from '../src/util/rng.js';
import { denseAttentionForwardBackward } from './dense-attention.js';
import { kernelSvg, type PlotRow } from './kernel/plot.js';
import { outputPath, withOutputOptions } from './output.js';

const MASKS = ['full', 'causal', 'varlen-causal'] as const;
type MaskName = (typeof MASKS)[number];
interface Shape {
  mask: MaskName;
  n: number;
  hq: number;
  hkv: number;
  dim: number;
}
const ISSUE_SHAPES = 'causal:2048:4:1:64,causal:4096:8:2:64,full:4096:8:2:64,causal:4096:8:2:128';

const program = withOutputOptions(new Command(), 'cpu-kernel.json')
  .option('--shapes <list>', 'mask:tokens:headsQ:headsKv:headDim, comma-separated', ISSUE_SHAPES)
  .option('--threads <list>', 'thread counts of the WebAssembly kernel', `1,${os.availableParallelism()}`)
  .option('--simd <list>', "builds of the WebAssembly kernel, comma-separated: auto (the default build, rows 'wasm xT'), relaxed-simd, simd (rows 'wasm-<build> xT')", 'auto')
  .option('--blas', "also time the BLAS engine (rows 'blas xT'; the library: $MAGI_ATTN_BLAS or a common soname such as libopenblas.so.0)")
  .option('--reps <n>', 'rounds: timed runs of each fast method (best kept), each after an untimed one', '3')
  .option('--slow-reps <n>', "timed runs of the slow methods ('before', 'typescript', 'dense'), in the first rounds, best kept", '1')
  .option('--baseline <dir>', "an older built checkout whose kernel is the 'before' column")
  .option('--typescript', "also time this checkout's TypeScript engine")
  .option('--dense', 'also time the plain dense implementation')
  .option('--with-torch <python>', 'also time PyTorch CPU SDPA at the same thread counts, through bench/cpu-torch.py --serve run by this python (one that has torch), interleaved with our runs')
  .option('--torch <files>', 'PyTorch CPU SDPA figures from earlier runs of bench/cpu-torch.py --out on this machine (comma-separated: best of them), instead of --with-torch')
  .option('--seed <n>', 'seed of the inputs and of the varlen document lengths', '42')
  .parse();
const opts = program.opts<{ shapes: string; threads: string; simd: string; reps: string; slowReps: string; baseline?: string; typescript?: boolean; blas?: boolean; dense?: boolean; torch?: string; withTorch?: string; seed: string; out?: string; updateResults?: boolean }>();
const outFile = outputPath(opts, 'cpu-kernel.json');
const partialFile = outFile.replace(/(\.json)?$/, '-partial.json');
const shapes: Shape[] = opts.shapes.split(',').map((s) => {
  const [mask, n, hq, hkv, dim] = s.split(':');
  if (!MASKS.includes(mask as MaskName)) program.error(`--shapes: unknown mask ${mask} (${MASKS.join(', ')})`);
  const nums = [n, hq, hkv, dim].map(Number);
  if (nums.some((x) => !Number.isInteger(x) || x < 1) || nums[1] % nums[2] !== 0) program.error(`--shapes: ${s} is not mask:tokens:headsQ:headsKv:headDim with headsQ a multiple of headsKv`);
  return { mask: mask as MaskName, n: nums[0], hq: nums[1], hkv: nums[2], dim: nums[3] };
});
const threadCounts = opts.threads.split(',').map(Number);
if (threadCounts.some((t) => !Number.isInteger(t) || t < 1)) program.error('--threads: positive integers');
const SIMD_CHOICES = ['auto', 'relaxed-simd', 'simd'] as const;
const simdBuilds = opts.simd.split(',') as WasmSimdChoice[];
if (simdBuilds.some((b) => !SIMD_CHOICES.includes(b))) program.error(`--simd: a comma-separated list of ${SIMD_CHOICES.join(', ')}`);
const reps = Number(opts.reps);
if (!Number.isInteger(reps) || reps < 1) program.error('--reps: a positive integer');
const slowReps = Number(opts.slowReps);
if (!Number.isInteger(slowReps) || slowReps < 1) program.error('--slow-reps: a positive integer');
const seed = Number(opts.seed);
const label = (s: Shape): string => `${s.mask} ${s.n}, ${s.hq}:${s.hkv}, D ${s.dim}`;

function makeMask(s: Shape): SliceList {
  if (s.mask === 'full') return fullMask(s.n);
  if (s.mask === 'causal') return causalMask(s.n);
  return varlenCausalMask(cuSeqlensFromLengths(sampleDocLengths(s.n, new Rng(seed))));
}

/** A method under test: a kernel backend with the Tensor class it takes, the dense implementation, or PyTorch. */
interface Method {
  name: string;
  threads: number;
  /** The WebAssembly kernel's build (wasm rows). */
  simd?: WasmSimdChoice;
  /** The BLAS engine (blas rows). */
  blas?: boolean;
  /** Timed runs (rounds it takes part in). */
  reps: number;
  /** Whether each timed run follows an untimed one (the fast methods; the slow ones run once). */
  warm: boolean;
  backend?: KernelBackend<Tensor>;
  make?: (dtype: 'float32', shape: number[], data: Float32Array) => Tensor;
  torch?: boolean;
}

const methods: Method[] = [];
let baselineNote: string | undefined;
if (opts.baseline !== undefined) {
  const dir = resolve(opts.baseline);
  const cpu = (await import(pathToFileURL(`${dir}/dist/src/kernels/cpu/index.js`).href)) as { cpuBackend: KernelBackend<Tensor> };
  const tensor = (await import(pathToFileURL(`${dir}/dist/src/tensor.js`).href)) as { Tensor: new (dtype: string, shape: number[], data: Float32Array) => Tensor };
  methods.push({ name: 'before', threads: 1, reps: slowReps, warm: false, backend: cpu.cpuBackend, make: (d, shape, data) => new tensor.Tensor(d, shape, data) });
  baselineNote = dir;
}
if (opts.typescript) methods.push({ name: 'typescript', threads: 1, reps: slowReps, warm: false, backend: createCpuBackend({ engine: 'typescript' }) });
for (const t of threadCounts) {
  for (const simd of simdBuilds) methods.push({ name: `wasm${simd === 'auto' ? '' : `-${simd}`} x${t}`, threads: t, simd, reps, warm: true, backend: createCpuBackend({ engine: 'wasm', simd, threads: t }) });
  if (opts.blas) methods.push({ name: `blas x${t}`, threads: t, blas: true, reps, warm: true, backend: createCpuBackend({ engine: 'blas', threads: t }) });
}
if (opts.withTorch !== undefined) for (const t of threadCounts) methods.push({ name: `PyTorch x${t}`, threads: t, reps, warm: true, torch: true });
if (opts.dense) methods.push({ name: 'dense', threads: 1, reps: slowReps, warm: false });

/** One timed forward and backward: wall seconds and CPU seconds of each. */
interface Timing {
  fwdS: number;
  bwdS: number;
  fwdCpuS: number;
  bwdCpuS: number;
}

/** A bench/cpu-torch.py --serve process: one request line, one timed run. */
class TorchServer {
  private readonly child;
  private readonly lines: AsyncIterator<string>;
  constructor(python: string) {
    this.child = spawn(python, ['bench/cpu-torch.py', '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }
  private async next(): Promise<string> {
    const line = await this.lines.next();
    if (line.done) throw new Error(`${opts.withTorch} bench/cpu-torch.py --serve ended early (is torch installed for that python?)`);
    return line.value;
  }
  async hello(): Promise<{ torch: string; cpu: string }> {
    return JSON.parse(await this.next()) as { torch: string; cpu: string };
  }
  async run(s: Shape, threads: number): Promise<Timing> {
    this.child.stdin.write(JSON.stringify({ mask: s.mask, n: s.n, hq: s.hq, hkv: s.hkv, dim: s.dim, threads, seed }) + '\n');
    return JSON.parse(await this.next()) as Timing;
  }
  close(): void {
    this.child.stdin.end();
  }
}
const torchServer = opts.withTorch === undefined ? undefined : new TorchServer(opts.withTorch);
const torchInfo = await torchServer?.hello();

interface TorchRow {
  mask: string;
  n: number;
  hq: number;
  hkv: number;
  dim: number;
  threads: number;
  fwdS: number;
  bwdS: number;
}
/** PyTorch's figures from earlier stand-alone runs; with several files each row keeps its best time. */
function readTorch(files: string): { torch: string; cpu: string; rows: TorchRow[] } {
  const runs = files.split(',').map((f) => JSON.parse(readFileSync(f, 'utf8')) as { torch: string; cpu: string; rows: TorchRow[] });
  const best = new Map<string, TorchRow>();
  for (const r of runs.flatMap((x) => x.rows)) {
    const key = `${r.mask}:${r.n}:${r.hq}:${r.hkv}:${r.dim}:${r.threads}`;
    const b = best.get(key);
    best.set(key, b === undefined ? { ...r } : { ...b, fwdS: Math.min(b.fwdS, r.fwdS), bwdS: Math.min(b.bwdS, r.bwdS) });
  }
  return { torch: runs[0].torch, cpu: runs[0].cpu, rows: [...best.values()] };
}

interface Row {
  shape: string;
  mask: MaskName;
  n: number;
  hq: number;
  hkv: number;
  dim: number;
  area: number;
  method: string;
  threads: number;
  fwdS: number;
  bwdS: number;
  fwdGflops: number;
  bwdGflops: number;
  /** Cores the best forward / backward run kept busy (CPU time over wall time); absent for --torch files. */
  fwdCores?: number;
  bwdCores?: number;
  peakRssMiB?: number;
}
const rows: Row[] = [];
const flopsOf = (s: Shape, area: number): number => 4 * area * s.hq * s.dim;
const peakRssMiB = (): number => process.resourceUsage().maxRSS / 1024;

const wasm = Object.fromEntries(simdBuilds.map((b) => [b, wasmKernelInfo(b)]));
const describe = (b: string): string => {
  const w = wasm[b];
  return w === undefined ? `${b} unavailable` : `${w.simd}${w.v8Flag ? " (V8's relaxed-SIMD flag set by the loader)" : ''}${w.shared ? ', shared memory' : ''}`;
};
const loadStart = os.loadavg();
const header = [
  `bench:cpu  ${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} cores)  node ${process.version}  ${os.platform()} ${os.arch()}`,
  `  WebAssembly kernel: ${simdBuilds.map(describe).join('; ')}; float32 inputs; seed ${seed}; load average at start ${loadStart.map((x) => x.toFixed(2)).join(' ')}`,
];
const blas = opts.blas ? blasInfo() : undefined;
if (blas !== undefined) header.push(`  BLAS engine: ${blas.library} (${blas.config || 'no config string'}; ${blas.threadControl}), loop in the default WebAssembly build`);
if (torchInfo !== undefined) header.push(`  PyTorch ${torchInfo.torch} (${opts.withTorch}), interleaved with our runs`);
for (const line of header) console.log(line);

// The bar advances by estimated seconds (FLOPs over a rough rate), so a long row moves it as much as it weighs.
const runsOf = (m: Method): number => (m.warm ? 2 : 1) * m.reps;
const rateOf = (m: Method): number => (m.torch ? 40 : m.blas ? 25 : m.name.startsWith('wasm') ? 15 : 1) * m.threads;
const work = shapes.flatMap((s) => {
  const area = sliceListArea(makeMask(s));
  return methods.map((m) => ({ s, m, weight: (flopsOf(s, area) * 3.5 * runsOf(m)) / rateOf(m) }));
});
const bar = new cliProgress.SingleBar({ format: '  {bar} {percentage}% | ETA {eta_formatted} | {step}', etaBuffer: 4, noTTYOutput: true, notTTYSchedule: 5_000 }, cliProgress.Presets.shades_classic);
/** The runs are synchronous: let the bar's timer draw (on a terminal it also draws on update). */
const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));
bar.start(work.reduce((a, w) => a + w.weight, 0), 0, { step: '' });

const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};

for (const s of shapes) {
  const slices = makeMask(s);
  const area = sliceListArea(slices);
  const rng = new Rng(seed + s.n);
  const data = (shape: number[]): [number[], Float32Array] => [shape, Float32Array.from(rng.normals(shape.reduce((a, b) => a * b, 1)))];
  const inputs = { q: data([s.n, s.hq, s.dim]), k: data([s.n, s.hkv, s.dim]), v: data([s.n, s.hkv, s.dim]), dout: data([s.n, s.hq, s.dim]) };
  // PyTorch's SDPA has no varlen mask: those rows have no PyTorch figure.
  const active = methods.filter((m) => !(m.torch && s.mask === 'varlen-causal'));

  /** One timed forward and backward of method m. */
  const timeOnce = async (m: Method): Promise<Timing> => {
    if (m.torch) return torchServer!.run(s, m.threads);
    if (m.backend === undefined) {
      const t = (x: [number[], Float32Array]) => new Tensor('float32', x[0], x[1]);
      const c0 = process.cpuUsage();
      const dense = denseAttentionForwardBackward(t(inputs.q), t(inputs.k), t(inputs.v), t(inputs.dout), slices);
      const cpu = cpuSeconds(c0);
      const total = dense.forwardSeconds + dense.backwardSeconds;
      return { fwdS: dense.forwardSeconds, bwdS: dense.backwardSeconds, fwdCpuS: (cpu * dense.forwardSeconds) / total, bwdCpuS: (cpu * dense.backwardSeconds) / total };
    }
    const make = m.make ?? ((d, shape, values) => new Tensor(d, shape, values));
    const [q, k, v, dout] = [inputs.q, inputs.k, inputs.v, inputs.dout].map(([shape, values]) => make('float32', shape, values));
    const fwdArgs: FfaForwardArgs<Tensor> = { q, k, v, slices, softmaxScale: 1 / Math.sqrt(s.dim), softcap: 0, returnMaxLogits: false, outDtype: 'float32', deterministic: false };
    let c0 = process.cpuUsage();
    let t0 = performance.now();
    const fwd = m.backend.forward(fwdArgs);
    const fwdS = (performance.now() - t0) / 1000;
    const fwdCpuS = cpuSeconds(c0);
    const bwdArgs: FfaBackwardArgs<Tensor> = { ...fwdArgs, dout, out: fwd.out, lse: fwd.lse };
    c0 = process.cpuUsage();
    t0 = performance.now();
    m.backend.backward(bwdArgs);
    return { fwdS, bwdS: (performance.now() - t0) / 1000, fwdCpuS, bwdCpuS: cpuSeconds(c0) };
  };

  // Round r runs every method of the shape: a fast method twice back to back, timing the second
  // (the first wakes its threads and caches after the other methods ran), a slow one once in
  // round 0. Best of the rounds.
  const best = new Map<Method, Timing>();
  const rounds = Math.max(...active.map((m) => m.reps));
  for (let r = 0; r < rounds; r++) {
    for (const m of active) {
      if (r >= m.reps) continue;
      const weight = work.find((w) => w.s === s && w.m === m)!.weight;
      bar.update({ step: `${label(s)}: ${m.name} (run ${r + 1}/${m.reps})` });
      await tick();
      if (m.warm) await timeOnce(m);
      const t = await timeOnce(m);
      const b = best.get(m);
      best.set(m, b === undefined ? t : { fwdS: Math.min(b.fwdS, t.fwdS), bwdS: Math.min(b.bwdS, t.bwdS), fwdCpuS: t.fwdS < b.fwdS ? t.fwdCpuS : b.fwdCpuS, bwdCpuS: t.bwdS < b.bwdS ? t.bwdCpuS : b.bwdCpuS });
      bar.increment(weight / m.reps);
      await tick();
    }
  }
  const flops = flopsOf(s, area);
  for (const m of active) {
    const t = best.get(m)!;
    rows.push({
      shape: label(s),
      ...s,
      area,
      method: m.name,
      threads: m.threads,
      fwdS: t.fwdS,
      bwdS: t.bwdS,
      fwdGflops: flops / t.fwdS / 1e9,
      bwdGflops: (2.5 * flops) / t.bwdS / 1e9,
      fwdCores: t.fwdCpuS / t.fwdS,
      bwdCores: t.bwdCpuS / t.bwdS,
      peakRssMiB: m.name.startsWith('wasm') || m.blas ? peakRssMiB() : undefined,
    });
  }
  // The rows so far, so a run stopped by a time limit still leaves its finished shapes.
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(partialFile, JSON.stringify({ benchmark: 'cpu-kernel', partial: true, cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, loadAverageStart: loadStart, rows }, null, 2));
}
bar.stop();
torchServer?.close();
const torchFiles = opts.torch === undefined ? undefined : readTorch(opts.torch);
for (const s of shapes) {
  const area = sliceListArea(makeMask(s));
  const flops = flopsOf(s, area);
  const at = rows.map((r) => r.shape).lastIndexOf(label(s)) + 1;
  const extra: Row[] = [];
  for (const t of torchFiles?.rows ?? []) {
    if (t.mask !== s.mask || t.n !== s.n || t.hq !== s.hq || t.hkv !== s.hkv || t.dim !== s.dim) continue;
    extra.push({ shape: label(s), ...s, area, method: `PyTorch x${t.threads}`, threads: t.threads, fwdS: t.fwdS, bwdS: t.bwdS, fwdGflops: flops / t.fwdS / 1e9, bwdGflops: (2.5 * flops) / t.bwdS / 1e9 });
  }
  rows.splice(at, 0, ...extra);
}
const torch = torchInfo ?? torchFiles;
const loadEnd = os.loadavg();
console.log(`  load average at the end ${loadEnd.map((x) => x.toFixed(2)).join(' ')} (other processes on this machine share its cores)`);

const find = (shape: string, method: string): Row | undefined => rows.find((r) => r.shape === shape && r.method === method);
const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? '' : `${(a / b).toFixed(2)}x`);
console.log('\n| shape | method | fwd s | fwd GFLOP/s | bwd s | bwd GFLOP/s | cores used fwd / bwd | vs before fwd / bwd | vs PyTorch (same threads) fwd / bwd |');
console.log('|---|---|--:|--:|--:|--:|--:|--:|--:|');
/** Cores a run kept busy, starred where a T-thread run got less than 0.85 T of them (other processes held cores). */
const coresCell = (r: Row): string => {
  if (r.fwdCores === undefined || r.bwdCores === undefined) return '';
  const c = (x: number): string => `${x.toFixed(2)}${x < 0.85 * r.threads ? '*' : ''}`;
  return `${c(r.fwdCores)} / ${c(r.bwdCores)}`;
};
for (const r of rows) {
  const before = find(r.shape, 'before');
  const pt = find(r.shape, `PyTorch x${r.threads}`);
  const vsBefore = before && r !== before ? `${ratio(r.fwdGflops, before.fwdGflops)} / ${ratio(r.bwdGflops, before.bwdGflops)}` : '';
  const vsTorch = pt && (r.method.startsWith('wasm') || r.method.startsWith('blas')) ? `${ratio(r.fwdGflops, pt.fwdGflops)} / ${ratio(r.bwdGflops, pt.bwdGflops)}` : '';
  console.log(`| ${r.shape} | ${r.method} | ${r.fwdS.toFixed(3)} | ${r.fwdGflops.toFixed(1)} | ${r.bwdS.toFixed(3)} | ${r.bwdGflops.toFixed(1)} | ${coresCell(r)} | ${vsBefore} | ${vsTorch} |`);
}
if (rows.some((r) => coresCell(r).includes('*'))) console.log('* fewer cores than threads: other processes held cores during that row\'s best run');

const result = {
  benchmark: 'cpu-kernel',
  machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, memoryGiB: os.totalmem() / 2 ** 30, node: process.version, platform: `${os.platform()} ${os.arch()}`, loadAverageStart: loadStart, loadAverageEnd: loadEnd },
  config: {
    shapes,
    threads: threadCounts,
    reps,
    slowReps,
    seed,
    wasm: simdBuilds.length === 1 && simdBuilds[0] === 'auto' ? wasm.auto : wasm,
    engines: Object.fromEntries(methods.filter((m) => m.simd !== undefined || m.blas).map((m) => [m.name, cpuEngineName({ engine: m.blas ? 'blas' : 'wasm', threads: m.threads, simd: m.simd })])),
    blas,
    baseline: baselineNote,
    torch: torch === undefined ? undefined : { version: torch.torch, cpu: torch.cpu },
    flops: '4*area*Hq*D forward, 2.5x backward (useful FLOPs, for every method)',
    timing: 'best of reps rounds; a round runs every method of a shape, each fast one twice back to back, timing the second; before, typescript and dense once in each of the first slowReps rounds; cores = CPU time / wall time of the best run',
  },
  rows,
};
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify(result, null, 2));
rmSync(partialFile, { force: true });
const methodNames = [...new Set(rows.map((r) => r.method))];
const plotRows: PlotRow[] = rows.map((r) => ({ mask: r.shape, method: r.method, fwd: r.fwdGflops, bwd: r.bwdGflops }));
const svgPath = outFile.replace(/\.json$/, '') + '.svg';
writeFileSync(svgPath, kernelSvg(plotRows, [...new Set(rows.map((r) => r.shape))], methodNames, `CPU kernel, ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, float32`, 'GFLOP/s'));
console.log(`\nwrote ${outFile} and ${svgPath}`);
