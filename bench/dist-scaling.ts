/**
 * bench:dist-scaling: calcAttn, ring attention (zig-zag, per document) and Ulysses measured in the
 * same run, on the same inputs, with the same kernels and process group, so that only the
 * distribution strategy differs; the planner's predicted time (src/cost) beside each measurement.
 *
 * For every scaling (weak: --tokens-per-gpu × cp tokens; strong: --total-tokens) and every mask
 * (full, causal, varlen-causal, varlen block-causal), every method runs forward and backward:
 * warm-up calls, then per call a barrier, CUDA events on the legacy default stream around it (the
 * runtime's streams are blocking streams, so the events bracket all of its work; the host's time
 * inside the call counts too), the slowest rank's time of each call (an all-reduce max), and the
 * median over calls. TFLOP/s per GPU = the mask's FLOPs (forward 4·area·Hq·D, backward 2.5×) / cp
 * / time. Each baseline's lse is checked against calcAttn's (16-bit run tolerance) before it is
 * timed. Inputs: N(0, 1) drawn on the device, the same on every rank (makeInputs).
 *
 * Three ways to run it:
 *   one process per GPU over NCCL (cp = number of GPUs; rank 0 writes the results):
 *     node dist/src/cli/main.js run --gpus N dist/bench/dist-scaling.js -- [options]
 *   cp ranks sharing one GPU (LocalDeviceGroup; every --cp in one process). The times are the
 *   whole group's work on one GPU: a check that everything runs, not a scaling figure:
 *     node dist/bench/dist-scaling.js --cp 1,2,4 [options]
 *   no GPU: the table and plot of saved runs (several files merge, e.g. one per GPU count):
 *     node dist/bench/dist-scaling.js --replot bench/out/dist-scaling-*.json
 * Writes JSON (default bench/out/dist-scaling-<mode>-cp<P>.json; --update-results: bench/results/),
 * an SVG plot beside it, and prints a table.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { intAtLeast, wordList } from '../src/cli/flags.js';
import { renderTable } from '../src/cli/table.js';
import { median } from '../src/util/stats.js';
import { outputPath, withOutputOptions } from './output.js';
import type { DeviceProcessGroup } from '../src/comm/device/device-buffers.js';
import type { GroupInfo } from '../src/comm/process-group.js';
import type { CudaDevice } from '../src/device/device.js';
import type { DeviceTensor } from '../src/device/device-tensor.js';

export const METHODS = ['magi', 'ring', 'ulysses'] as const;
export type Method = (typeof METHODS)[number];
export const BENCH_MASKS = ['full', 'causal', 'varlen-causal', 'block-causal'] as const;
export type BenchMask = (typeof BENCH_MASKS)[number];
export type Scaling = 'weak' | 'strong';

export interface ScalingOptions {
  scaling: Scaling[];
  tokensPerGpu: number;
  totalTokens: number;
  masks: BenchMask[];
  methods: Method[];
  heads: [number, number];
  headDim: number;
  reps: number;
  warmup: number;
  link: string;
  kernelJson?: string;
  check: boolean;
  blockSize: number;
  out?: string;
  updateResults?: boolean;
}

export interface Row {
  scaling: Scaling;
  mask: BenchMask;
  description: string;
  tokens: number;
  cp: number;
  method: Method;
  pass: 'forward' | 'backward';
  /** Median over calls of the slowest rank's time. */
  ms: number;
  tflopsPerGpu: number;
  /** The cost model's step time for cp GPUs (not for cp ranks sharing one GPU). */
  predictedMs: number | null;
  predictedTflopsPerGpu: number | null;
  /** Worst lse error / allowed against calcAttn (baselines only, when checked). */
  lseCheck?: number;
  note?: string;
}

export interface Result {
  machine: string;
  date: string;
  /** 'nccl': one process per GPU; 'local-device': cp ranks sharing one GPU. */
  mode: 'nccl' | 'local-device';
  gpus: number;
  heads: [number, number];
  headDim: number;
  dtype: 'bfloat16';
  reps: number;
  warmup: number;
  link: string;
  kernelModel: string;
  node: string;
  rows: Row[];
}


export function scalingProgram(): Command {
  return withOutputOptions(
    new Command()
      .name('dist-scaling')
      .option('--scaling <list>', 'weak (tokens per GPU fixed) and/or strong (total fixed)', wordList(['weak', 'strong'] as const), ['weak', 'strong'])
      .option('--tokens-per-gpu <n>', 'weak scaling: tokens per GPU', intAtLeast(1024), 65536)
      .option('--total-tokens <n>', 'strong scaling: total tokens', intAtLeast(1024), 262144)
      .option('--masks <list>', `masks: ${BENCH_MASKS.join(', ')}`, wordList(BENCH_MASKS), [...BENCH_MASKS])
      .option('--methods <list>', `methods: ${METHODS.join(', ')}`, wordList(METHODS), [...METHODS])
      .option('--heads <q:kv>', 'query and key/value heads', '64:8')
      .option('--head-dim <d>', 'head dim', intAtLeast(8), 128)
      .option('--reps <n>', 'timed calls (median)', intAtLeast(1), 5)
      .option('--warmup <n>', 'warm-up calls', intAtLeast(0), 2)
      .option('--block-size <n>', 'block-causal block size', intAtLeast(1), 2048)
      .option('--link <preset|GB/s>', 'links for the predictions: nvlink (one node), nvlink-ib, ib or GB/s', 'nvlink')
      .option('--kernel-json <path>', 'kernel throughput for the predictions (default: bench/results/kernel.json)')
      .option('--no-check', "skip the baselines' lse check against calcAttn")
      .option('--cp <list>', 'one GPU: cp values to run as ranks sharing it (LocalDeviceGroup)', (v) => v.split(',').map((s) => intAtLeast(1)(s)), [1, 2, 4])
      .option('--replot <files...>', 'no GPU: table and plot of saved runs')
      .option('--plan-only', 'no GPU: build every key (rank 0 of each --cp) and print the predictions and the host time of planning'),
    'dist-scaling.json',
  );
}

function parseHeads(s: string): [number, number] {
  const [q, kv] = s.split(':').map(Number);
  if (!(Number.isInteger(q) && Number.isInteger(kv) && q > 0 && kv > 0 && q % kv === 0)) throw new Error(`--heads: must be q:kv with kv dividing q, got ${s}`);
  return [q, kv];
}

export function resolveOptions(program: Command): ScalingOptions & { cp: number[]; replot?: string[]; planOnly?: boolean } {
  const o = program.opts<Omit<ScalingOptions, 'heads'> & { heads: string; cp: number[]; replot?: string[]; planOnly?: boolean }>();
  return { ...o, heads: parseHeads(o.heads) };
}

// ---------------------------------------------------------------------------------------------
// Tables and plots (no GPU)

export function printTable(r: Result): void {
  console.log(`${r.machine}, ${r.date}, ${r.mode === 'nccl' ? `${r.gpus} GPUs, one process each over NCCL` : `cp ranks sharing one GPU (times: the whole group on one GPU)`}`);
  console.log(`${r.heads[0]}:${r.heads[1]} heads, D ${r.headDim}, ${r.dtype}; median of ${r.reps} calls after ${r.warmup} warm-up; predictions: ${r.kernelModel}, ${r.link} links; Node ${r.node}`);
  const f = (x: number | null | undefined, d: number): string => (x === null || x === undefined ? '-' : x.toFixed(d));
  console.log(
    renderTable(
      ['scaling', 'mask', 'tokens', 'cp', 'method', 'pass', 'ms', 'TFLOP/s/GPU', 'predicted ms', 'measured/predicted', 'lse check'],
      r.rows.map((x) => [
        x.scaling,
        x.mask,
        String(x.tokens),
        String(x.cp),
        x.method,
        x.pass,
        f(x.ms, 2),
        f(x.tflopsPerGpu, 0),
        f(x.predictedMs, 2),
        x.predictedMs === null ? '-' : (x.ms / x.predictedMs).toFixed(2),
        x.lseCheck === undefined ? '' : x.lseCheck.toFixed(3),
      ]),
    ),
  );
  for (const x of r.rows) if (x.note !== undefined) console.log(`note: ${x.scaling} ${x.mask} cp ${x.cp} ${x.method}: ${x.note}`);
}

export async function plot(results: Result[], file: string): Promise<void> {
  const { plotToSvg } = await import('../src/cli/plot-svg.js');
  const Plot = await import('@observablehq/plot');
  const rows = results.flatMap((r) => r.rows.map((x) => ({ ...x, panel: `${x.scaling} ${x.pass}`, series: `${x.method} ${x.mask}` })));
  const predicted = rows.filter((x) => x.predictedTflopsPerGpu !== null);
  const machines = [...new Set(results.map((r) => `${r.machine} (${r.mode === 'nccl' ? 'NCCL' : 'ranks sharing one GPU'})`))].join('; ');
  const svg = plotToSvg({
    width: 1100,
    height: 700,
    marginRight: 120,
    grid: true,
    x: { label: `cp (GPUs). calcAttn blue, ring orange, Ulysses green; dots measured, diamonds predicted. ${machines}`, type: 'log', base: 2 },
    y: { label: 'TFLOP/s per GPU' },
    fx: { label: null },
    fy: { label: null },
    color: { domain: [...METHODS], range: ['#4e79a7', '#f28e2b', '#59a14f'] },
    marks: [
      Plot.line(rows, { x: 'cp', y: 'tflopsPerGpu', z: 'series', stroke: 'method', fx: 'mask', fy: 'panel', sort: 'cp' }),
      Plot.dot(rows, { x: 'cp', y: 'tflopsPerGpu', stroke: 'method', fill: 'method', fx: 'mask', fy: 'panel', tip: true }),
      Plot.dot(predicted, { x: 'cp', y: 'predictedTflopsPerGpu', stroke: 'method', symbol: 'diamond', fx: 'mask', fy: 'panel' }),
    ],
  });
  writeFileSync(file, svg);
  console.log(`plot written to ${file}`);
}

function writeResult(r: Result, opts: ScalingOptions): string {
  const out = outputPath(opts, `dist-scaling-${r.mode}-cp${r.gpus}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(r, null, 1));
  console.log(`written to ${out}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Measurement (every rank of a device group runs this)

/** The whole-sequence inputs of one length, shared by every method (and, on one GPU, every rank). */
export interface Inputs {
  q: DeviceTensor;
  k: DeviceTensor;
  v: DeviceTensor;
  dout: DeviceTensor;
}

/**
 * q, k, v, dout of N tokens: N(0, 1) drawn on the device, no row repeated (bench/kernel/inputs.ts;
 * this bench used to repeat one 4096-row block along the sequence).
 */
export async function makeInputs(device: CudaDevice, N: number, heads: [number, number], D: number): Promise<Inputs> {
  const { randomDeviceTensor } = await import('./kernel/inputs.js');
  return { q: await randomDeviceTensor(device, [N, heads[0], D], 1), k: await randomDeviceTensor(device, [N, heads[1], D], 2), v: await randomDeviceTensor(device, [N, heads[1], D], 3), dout: await randomDeviceTensor(device, [N, heads[0], D], 4) };
}

function freeInputs(x: Inputs): void {
  [x.q, x.k, x.v, x.dout].forEach((t) => t.free());
}

/** The inputs of the last length asked for (a new length frees the old ones). */
function inputsCache(device: CudaDevice, opts: ScalingOptions): { get: (N: number) => Promise<Inputs>; free: () => void } {
  let cached: { N: number; inputs: Inputs } | undefined;
  return {
    get: async (N) => {
      if (cached?.N !== N) {
        if (cached !== undefined) freeInputs(cached.inputs);
        cached = { N, inputs: await makeInputs(device, N, opts.heads, opts.headDim) };
      }
      return cached.inputs;
    },
    free: () => {
      if (cached !== undefined) freeInputs(cached.inputs);
      cached = undefined;
    },
  };
}

export const tokensOf = (opts: ScalingOptions, scaling: Scaling, cp: number): number => (scaling === 'weak' ? opts.tokensPerGpu * cp : opts.totalTokens);

/** Everything about one (scaling, mask) at cp = group size that needs no GPU: the mask, its FLOPs, calcAttn's key and the three predictions. */
export async function planCase(group: GroupInfo, opts: ScalingOptions, scaling: Scaling, maskName: BenchMask) {
  const { presetMask } = await import('../src/mask/presets.js');
  const { sliceListArea } = await import('../src/mask/slice-list.js');
  const rt = await import('../src/runtime/index.js');
  const cost = await import('../src/cost/index.js');
  const { loadThroughput, defaultKernelJson } = await import('../src/cli/cost-model.js');
  const P = group.size;
  const [hq, hkv] = opts.heads;
  const D = opts.headDim;
  const N = tokensOf(opts, scaling, P);
  const spec =
    maskName === 'block-causal'
      ? presetMask('block-causal', N, { seed: 42, blockSize: opts.blockSize, docs: Math.max(2, Math.round(N / 32768)) })
      : presetMask(maskName, N, { seed: 42 });
  const area = sliceListArea(spec.mask);
  const model = {
    throughput: loadThroughput(opts.kernelJson ?? defaultKernelJson()),
    shape: cost.kernelShapeOf(spec.mask, maskName),
    link: cost.parseLink(opts.link),
    heads: { numHeadsQ: hq, numHeadsKv: hkv, headDim: D, bytesPerElement: 2 },
  };
  const keyArgs = { ...spec.mask, totalSeqlenQ: N, numHeadsQ: hq, numHeadsKv: hkv, headDim: D, group };
  const magiKey = rt.magiAttnFlexKey({ ...keyArgs, overlapConfig: cost.autoOverlapConfig(model, N, P) });
  const [magi, ring, ulysses] = cost.predictRun(magiKey.plan, model, spec.cuSeqlens).methods;
  return { N, spec, keyArgs, magiKey, fwdFlops: cost.passFlops('fwd', area, hq, D), bwdFlops: cost.passFlops('bwd', area, hq, D), predicted: { magi, ring, ulysses } };
}

/**
 * Runs every (scaling, mask, method) on this rank of `group`, a collective: every rank calls it
 * with the same options. `inputsFor(N)` gives the whole-sequence inputs (shared between ranks on
 * one GPU). Returns the rows (the same on every rank: times are all-reduced).
 */
export async function measureScaling(group: DeviceProcessGroup, opts: ScalingOptions, inputsFor: (N: number) => Promise<Inputs>, log: (line: string) => void): Promise<Row[]> {
  const { DeviceTensor, deviceArrayOf } = await import('../src/device/index.js');
  const { Tensor } = await import('../src/tensor.js');
  const { compareClose, SIXTEEN_BIT_RUN_TOLERANCES } = await import('../src/kernels/tolerance.js');
  const rt = await import('../src/runtime/index.js');
  const bl = await import('../src/baselines/index.js');
  const { ulyssesHeadsFeasible } = await import('../src/solver/baselines.js');

  const device = group.device;
  const P = group.size;
  const [hq, hkv] = opts.heads;
  const D = opts.headDim;
  type DT = InstanceType<typeof DeviceTensor>;
  const free = (...ts: Array<DT | undefined>): void => ts.forEach((t) => t?.free());

  /** Median over calls of the slowest rank's CUDA-event time of `call` (ms). */
  const timeIt = async (call: () => Promise<DT[]>): Promise<number> => {
    for (let i = 0; i < opts.warmup; i++) free(...(await call()));
    const times = new Float32Array(opts.reps);
    for (let i = 0; i < opts.reps; i++) {
      await group.barrier();
      device.synchronize();
      const e0 = device.createEvent().record();
      const outs = await call();
      const e1 = device.createEvent().record();
      e1.synchronize();
      times[i] = e1.elapsedSince(e0);
      e0.destroy();
      e1.destroy();
      free(...outs);
    }
    const t = DeviceTensor.fromHost(device, Tensor.fromValues('float32', [opts.reps], times));
    await group.allReduce(deviceArrayOf(t), 'max');
    device.synchronize();
    const slowest = Array.from(t.toHost().toFloat32());
    t.free();
    return median(slowest);
  };

  const rows: Row[] = [];
  for (const scaling of opts.scaling) {
    const inputs = await inputsFor(tokensOf(opts, scaling, P));
    for (const maskName of opts.masks) {
      const { N, spec, keyArgs, magiKey, fwdFlops, bwdFlops, predicted } = await planCase(group, opts, scaling, maskName);
      log(`${scaling} ${spec.description}, cp ${P}: ${magiKey.plan.overlapDegree} stage(s) for calcAttn`);
      let referenceLse: DT | undefined;
      for (const method of opts.methods) {
        const row = (pass: 'forward' | 'backward', ms: number, extra: Partial<Row> = {}): Row => {
          const p = predicted[method];
          const ps = pass === 'forward' ? p.forwardSeconds : p.backwardSeconds;
          return {
            scaling,
            mask: maskName,
            description: spec.description,
            tokens: N,
            cp: P,
            method,
            pass,
            ms,
            tflopsPerGpu: (pass === 'forward' ? fwdFlops : bwdFlops) / P / (ms * 1e-3) / 1e12,
            predictedMs: Number.isFinite(ps) ? ps * 1e3 : null,
            predictedTflopsPerGpu: pass === 'forward' ? p.forwardTflopsPerGpu : p.backwardTflopsPerGpu,
            ...extra,
          };
        };
        if (method === 'ulysses' && !ulyssesHeadsFeasible(hq, hkv, P)) {
          log(`  ulysses: skipped (cp ${P} does not fit ${hq}:${hkv} heads)`);
          continue;
        }
        // One shape for the three: key, dispatch, forward, backward, undispatch.
        const s =
          method === 'magi'
            ? { key: magiKey, dispatch: (x: DT) => rt.dispatch(x, magiKey), undispatch: (x: DT) => rt.undispatch(x, magiKey), fwd: (q: DT, k: DT, v: DT) => rt.calcAttn(q, k, v, magiKey), bwd: (d: DT, q: DT, k: DT, v: DT, o: DT, l: DT) => rt.calcAttnBackward(d, q, k, v, o, l, magiKey) }
            : method === 'ring'
              ? (() => {
                  const key = bl.ringAttnKey({ ...keyArgs, ...(spec.cuSeqlens === undefined ? {} : { cuSeqlens: spec.cuSeqlens }) });
                  return { key, dispatch: (x: DT) => bl.ringDispatch(x, key), undispatch: (x: DT) => bl.ringUndispatch(x, key), fwd: (q: DT, k: DT, v: DT) => bl.ringAttn(q, k, v, key), bwd: (d: DT, q: DT, k: DT, v: DT, o: DT, l: DT) => bl.ringAttnBackward(d, q, k, v, o, l, key) };
                })()
              : (() => {
                  const key = bl.ulyssesAttnKey(keyArgs);
                  return { key, dispatch: (x: DT) => bl.ulyssesDispatch(x, key), undispatch: (x: DT) => bl.ulyssesUndispatch(x, key), fwd: (q: DT, k: DT, v: DT) => bl.ulyssesAttn(q, k, v, key), bwd: (d: DT, q: DT, k: DT, v: DT, o: DT, l: DT) => bl.ulyssesAttnBackward(d, q, k, v, o, l, key) };
                })();
        const [lq, lk, lv, ld] = [inputs.q, inputs.k, inputs.v, inputs.dout].map(s.dispatch);
        const f = await s.fwd(lq, lk, lv);
        let lseCheck: number | undefined;
        if (opts.check) {
          const full = await s.undispatch(f.lse);
          device.synchronize();
          if (method === 'magi') referenceLse = full;
          else {
            if (referenceLse !== undefined) {
              const r = compareClose(full.toHost(), referenceLse.toHost(), SIXTEEN_BIT_RUN_TOLERANCES.lse, `${method} lse`);
              lseCheck = r.worstRatio;
              if (!r.ok) throw new Error(`${method} ${maskName} ${N} tokens cp ${P}: ${r.message}`);
            }
            full.free();
          }
        }
        const fwdMs = await timeIt(async () => {
          const r = await s.fwd(lq, lk, lv);
          return [r.out, r.lse];
        });
        // Ulysses at its best keeps the forward's head-sharded tensors (as DeepSpeed's autograd
        // does), so its backward moves only dout in and dq, dk, dv out.
        let saved: import('../src/baselines/index.js').UlyssesSaved<DT> | undefined;
        if (method === 'ulysses') {
          const withSaved = await bl.ulyssesAttn(lq, lk, lv, s.key as InstanceType<typeof bl.UlyssesAttnKey>, { saveForBackward: true });
          free(withSaved.out, withSaved.lse);
          saved = withSaved.saved;
        }
        const bwdMs = await timeIt(async () => {
          const g = saved === undefined ? await s.bwd(ld, lq, lk, lv, f.out, f.lse) : await bl.ulyssesAttnBackward(ld, lq, lk, lv, f.out, f.lse, s.key as InstanceType<typeof bl.UlyssesAttnKey>, { saved });
          return [g.dq, g.dk, g.dv];
        });
        if (saved !== undefined) free(saved.q, saved.k, saved.v, saved.out, saved.lse);
        const extra = lseCheck === undefined ? {} : { lseCheck };
        rows.push(row('forward', fwdMs, extra), row('backward', bwdMs, extra));
        log(`  ${method}: forward ${fwdMs.toFixed(2)} ms (${rows[rows.length - 2].tflopsPerGpu.toFixed(0)} TFLOP/s/GPU), backward ${bwdMs.toFixed(2)} ms (${rows[rows.length - 1].tflopsPerGpu.toFixed(0)})`);
        free(lq, lk, lv, ld, f.out, f.lse);
      }
      free(referenceLse);
    }
  }
  return rows;
}

/** The host side of a run without a GPU: every key rank 0 would build, its planning time, and the predictions. */
async function planOnly(opts: ScalingOptions & { cp: number[] }): Promise<void> {
  const { createLocalGroups } = await import('../src/comm/local-group.js');
  const bl = await import('../src/baselines/index.js');
  const { ulyssesHeadsFeasible } = await import('../src/solver/baselines.js');
  const table: string[][] = [];
  for (const P of opts.cp) {
    const groups = createLocalGroups(P);
    for (const scaling of opts.scaling) {
      for (const maskName of opts.masks) {
        let t0 = performance.now();
        const c = await planCase(groups[0], opts, scaling, maskName);
        const magiMs = performance.now() - t0;
        t0 = performance.now();
        const ring = bl.ringAttnKey({ ...c.keyArgs, ...(c.spec.cuSeqlens === undefined ? {} : { cuSeqlens: c.spec.cuSeqlens }) });
        const ringMs = performance.now() - t0;
        t0 = performance.now();
        const uly = ulyssesHeadsFeasible(opts.heads[0], opts.heads[1], P) ? bl.ulyssesAttnKey(c.keyArgs) : null;
        const ulyMs = performance.now() - t0;
        for (const m of METHODS) {
          const p = c.predicted[m];
          const planMs = m === 'magi' ? magiMs : m === 'ring' ? ringMs : ulyMs;
          const detail = m === 'magi' ? `${c.magiKey.plan.overlapDegree} stage(s)` : m === 'ring' ? `${ring.cuSeqlens.length - 1} doc(s), ${ring.shardSeqlen} rows/rank` : uly === null ? 'heads do not fit cp' : `${uly.shardSeqlen} rows/rank`;
          table.push([scaling, maskName, String(c.N), String(P), m, (p.forwardSeconds * 1e3).toFixed(2), p.forwardTflopsPerGpu.toFixed(0), (p.backwardSeconds * 1e3).toFixed(2), p.backwardTflopsPerGpu.toFixed(0), planMs.toFixed(0), detail]);
        }
      }
    }
    groups.forEach((g) => g.close());
  }
  console.log(`predictions: ${await kernelModelName(opts)}, ${opts.link} links, ${opts.heads[0]}:${opts.heads[1]} heads, D ${opts.headDim}, bf16`);
  console.log(renderTable(['scaling', 'mask', 'tokens', 'cp', 'method', 'fwd ms', 'fwd TFLOP/s/GPU', 'bwd ms', 'bwd TFLOP/s/GPU', 'key ms (host)', 'plan'], table));
}

function resultOf(machine: string, mode: Result['mode'], gpus: number, opts: ScalingOptions, rows: Row[], kernelModel: string): Result {
  return {
    machine,
    date: new Date().toISOString().slice(0, 10),
    mode,
    gpus,
    heads: opts.heads,
    headDim: opts.headDim,
    dtype: 'bfloat16',
    reps: opts.reps,
    warmup: opts.warmup,
    link: opts.link,
    kernelModel,
    node: process.version,
    rows,
  };
}

async function kernelModelName(opts: ScalingOptions): Promise<string> {
  const { loadThroughput, defaultKernelJson } = await import('../src/cli/cost-model.js');
  return `kernel throughput of ${loadThroughput(opts.kernelJson ?? defaultKernelJson()).gpu}`;
}

/** Rank script for `magi-attn run --gpus N dist/bench/dist-scaling.js -- [options]` (NCCL, one process per GPU). */
export default async function main(group: DeviceProcessGroup, args: string[]): Promise<string> {
  const opts = resolveOptions(scalingProgram().exitOverride().parse(args, { from: 'user' }));
  const log = (line: string): void => {
    if (group.rank === 0) console.log(line);
  };
  const device = group.device;
  const inputs = inputsCache(device, opts);
  const rows = await measureScaling(group, opts, inputs.get, log);
  inputs.free();
  if (group.rank !== 0) return `rank ${group.rank}: ${rows.length} rows`;
  const r = resultOf(device.name, 'nccl', group.size, opts, rows, await kernelModelName(opts));
  printTable(r);
  const out = writeResult(r, opts);
  await plot([r], out.replace(/\.json$/, '.svg'));
  return `wrote ${out}`;
}

// Run as a command, not imported by the launcher as a rank script. Compared through realpath: the
// module's URL is the resolved file, argv[1] may name it through a link (a dist/ linked elsewhere).
const isMain = process.argv[1] !== undefined && existsSync(process.argv[1]) && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const opts = resolveOptions(scalingProgram().parse());
  if (opts.replot !== undefined) {
    const results = opts.replot.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Result);
    results.forEach(printTable);
    await plot(results, opts.replot.length === 1 ? opts.replot[0].replace(/\.json$/, '.svg') : outputPath(opts, 'dist-scaling-merged.svg'));
  } else if (opts.planOnly === true) {
    await planOnly(opts);
  } else {
    const dev = await import('../src/device/index.js');
    const device = dev.CudaDevice.open(0);
    const inputs = inputsCache(device, opts);
    const rows: Row[] = [];
    for (const P of opts.cp) {
      console.log(`${device.name}: ${P} rank(s) sharing the GPU`);
      // Ranks share one host thread: the first to need a length creates it, the others wait for it.
      const pending = new Map<number, Promise<Inputs>>();
      const shared = (N: number): Promise<Inputs> => {
        let p = pending.get(N);
        if (p === undefined) pending.set(N, (p = inputs.get(N)));
        return p;
      };
      const perRank = await dev.runLocalDeviceRanks(device, P, (group) => measureScaling(group, opts, shared, (line) => (group.rank === 0 ? console.log(line) : undefined)));
      rows.push(...perRank[0]);
    }
    inputs.free();
    const r = resultOf(device.name, 'local-device', Math.max(...opts.cp), opts, rows, await kernelModelName(opts));
    printTable(r);
    const out = writeResult(r, opts);
    await plot([r], out.replace(/\.json$/, '.svg'));
  }
}
