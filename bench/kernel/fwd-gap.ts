/**
 * bench/kernel/fwd-gap: why one Hopper forward read ~550 TFLOP/s in bench:kernel and ~650 in
 * bench:dist-scaling (causal, 16k tokens, 64:8 heads, D 128, bf16, the same H200 kind). Both run
 * the same kernel on the same slice list and work list (checked below), so what differs is the
 * inputs, the timing, or the GPU's state. This times one kernel and mask with every input recipe
 * and every timing method side by side in one process, with the SM clock, board power,
 * temperature and throttle reasons nvidia-smi sampled during each cell, and prints one table:
 *
 *   source .device/boot.sh && node dist/bench/kernel/fwd-gap.js [--out FILE] [--seqlen 16384]
 *     [--masks causal,full,varlen-causal] [--recipes normal,uniform,pattern,pattern64k,tile4096] [--rounds 2]
 *     [--no-bwd] [--no-state]
 *
 * Input recipes (q, k, v, dout):
 *   normal      N(0, 1) drawn on the device, nothing repeated: the benches' inputs from now on
 *               (bench/kernel/inputs.ts; torch.randn's distribution, as baselines.py)
 *   uniform     uniform (-1, 1) drawn the same way: the distribution alone, against `normal`
 *   pattern     bench:kernel's old randomBf16: uniform ±1, one 1M-element pattern reused with a
 *               shifting offset (q every 128 tokens, k/v every 1024), buffers of --seqlen tokens
 *   pattern64k  the same in buffers of 65536 tokens, of which the first --seqlen are read: exactly
 *               what bench:kernel's default run times at 16k (it allocates for its largest length)
 *   tile4096    bench:dist-scaling's old tiledRandom: N(0, 1), one 4096-row block repeated
 * Timing methods (columns, TFLOP/s = 4 · area · Hq · D / t, backward 2.5x):
 *   ev/launch   bench:kernel's (timing.ts) with the recorded runs' --iters 10 --warmup 3: each call
 *               between its own events on the legacy stream, all queued, one wait at the end
 *               (until 2026-12-04 the host waited between calls here, as bench:kernel did); median
 *   3 after 1   bench:dist-scaling's counts and wait: 1 warm-up, 3 timed calls, the host waiting
 *               for each before queuing the next, median
 *   b2b         calls queued back to back between one pair of events (~0.3 s, no host gap); mean
 *   calcAttn    bench:dist-scaling's own measurement (measureScaling: cp 1, calcAttn only, 1 warm-up,
 *               median of 3; calcAttn on the runtime's blocking compute stream, events on the
 *               legacy stream, host time inside the call included); forward and backward
 * Each round times every mask and recipe (the second round in reverse recipe order, so drift over
 * time shows as a difference between rounds). The state rows (first recipe and mask): `3 after 1`
 * right after 3 s idle, right after 3 s of back-to-back forwards, and right after 1 s of
 * back-to-back backwards (bench:kernel times each mask's forward right after the previous mask's
 * backward).
 *
 * Reading the table: recipes that differ within a round and method point at the inputs (look at
 * W and MHz, and 'pwr' among the throttle reasons); methods that differ for one recipe point at
 * the timing (e.g. `3 after 1` above `ev/launch` and `b2b`: short bursts run at higher clocks);
 * rounds or state rows that differ point at the GPU's state (heat, power history). calcAttn
 * against `3 after 1` is what the runtime adds around the kernel (its host time is inside the
 * bracket: it weighs most on the short varlen-causal kernel, ~2 ms).
 * Writes the table's numbers, every timing's window statistics and the GPU's limits as JSON
 * (default bench/out/fwd-gap.json).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { renderTable } from '../../src/cli/table.js';
import { intAtLeast, wordList } from '../../src/cli/flags.js';
import type { CudaDevice, DeviceBuffer } from '../../src/device/device.js';
import type { DeviceTensor } from '../../src/device/device-tensor.js';
import type { SliceList } from '../../src/mask/slice-list.js';
import { measureScaling, planCase, type BenchMask, type Inputs, type ScalingOptions } from '../dist-scaling.js';
import { SCRATCH_RESULTS_DIR } from '../output.js';
import { randomDeviceTensor } from './inputs.js';
import { meanEventMs, timeLaunches } from './timing.js';
import { GpuSampler, type WindowStats } from './gpu-sampler.js';

const HQ = 64;
const HKV = 8;
const DIM = 128;
const RECIPES = ['normal', 'uniform', 'pattern', 'pattern64k', 'tile4096'] as const;
type Recipe = (typeof RECIPES)[number];
const MASKS = ['causal', 'full', 'varlen-causal'] as const;
type Mask = (typeof MASKS)[number] & BenchMask;


const program = new Command()
  .name('fwd-gap')
  .option('--out <file>', 'JSON output', `${SCRATCH_RESULTS_DIR}/fwd-gap.json`)
  .option('--seqlen <n>', 'tokens', intAtLeast(1024), 16384)
  .option('--masks <list>', `masks: ${MASKS.join(', ')}`, wordList(MASKS), [...MASKS])
  .option('--recipes <list>', `input recipes: ${RECIPES.join(', ')}`, wordList(RECIPES), [...RECIPES])
  .option('--rounds <n>', 'rounds over every mask and recipe', intAtLeast(1), 2)
  .option('--no-bwd', 'skip the backward columns')
  .option('--no-state', 'skip the idle / loaded state rows')
  .parse();
const opts = program.opts<{ out: string; seqlen: number; masks: Mask[]; recipes: Recipe[]; rounds: number; bwd: boolean; state: boolean }>();

// ---------------------------------------------------------------------------------------------
// The two old recipes, kept here only to be compared (the benches no longer use them).

/** bench:kernel's old randomBf16: uniform ±1 bf16 bits, a 1M-element pattern repeated with a shifting offset. */
function oldPatternBf16(n: number, seed: number): Uint16Array {
  const pattern = new Uint16Array(1 << 20);
  let s = seed >>> 0 || 1;
  const f = new Float32Array(1);
  const u32 = new Uint32Array(f.buffer);
  for (let i = 0; i < pattern.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const u = ((s >>> 0) / 4294967296) * 2 - 1;
    f[0] = u === 0 ? 0.5 : u;
    pattern[i] = u32[0] >>> 16;
  }
  const out = new Uint16Array(n);
  for (let off = 0, r = 0; off < n; off += pattern.length, r++) {
    const len = Math.min(pattern.length, n - off);
    const shift = (r * 7919) % pattern.length;
    out.set(pattern.subarray(shift, Math.min(pattern.length, shift + len)), off);
    const done = Math.min(pattern.length - shift, len);
    if (done < len) out.set(pattern.subarray(0, len - done), off + done);
  }
  return out;
}

/** bench:dist-scaling's old tiledRandom: a random N(0, 1) block of 4096 rows repeated along the sequence. */
async function oldTiledRandom(device: CudaDevice, N: number, H: number, seed: number): Promise<DeviceTensor> {
  const { DeviceTensor } = await import('../../src/device/device-tensor.js');
  const { Tensor } = await import('../../src/tensor.js');
  const { Rng } = await import('../../src/util/rng.js');
  const R = Math.min(N, 4096);
  const block = DeviceTensor.fromHost(device, Tensor.fromValues('bfloat16', [R, H, DIM], new Rng(seed).normals(R * H * DIM)));
  const out = DeviceTensor.empty(device, 'bfloat16', [N, H, DIM]);
  const rowBytes = H * DIM * 2;
  for (let at = 0; at < N; at += R) out.buffer.copyFrom(block.buffer, Math.min(R, N - at) * rowBytes, device.defaultStream, 0, at * rowBytes);
  device.synchronize();
  block.free();
  return out;
}

/** q, k, v, dout of `recipe`: tensors of `rows` tokens (the buffers) and [N, H, D] views of their first N (what calcAttn takes). */
async function makeRecipe(device: CudaDevice, recipe: Recipe, N: number): Promise<{ own: Inputs; views: Inputs }> {
  const { DeviceTensor } = await import('../../src/device/device-tensor.js');
  const heads = [HQ, HKV, HKV, HQ];
  const rows = recipe === 'pattern64k' ? Math.max(N, 65536) : N;
  const make = async (H: number, seed: number): Promise<DeviceTensor> => {
    switch (recipe) {
      case 'normal':
      case 'uniform':
        return randomDeviceTensor(device, [rows, H, DIM], seed, recipe);
      case 'pattern':
      case 'pattern64k': {
        const t = DeviceTensor.empty(device, 'bfloat16', [rows, H, DIM]);
        t.buffer.upload(oldPatternBf16(rows * H * DIM, seed));
        return t;
      }
      case 'tile4096':
        return oldTiledRandom(device, rows, H, seed);
    }
  };
  const [q, k, v, dout] = await Promise.all(heads.map((H, i) => make(H, i + 1)));
  const view = (t: DeviceTensor): DeviceTensor => (rows === N ? t : new DeviceTensor(device, 'bfloat16', [N, t.shape[1], DIM], t.buffer.view(0, N * t.shape[1] * DIM * 2)));
  return { own: { q, k, v, dout }, views: { q: view(q), k: view(k), v: view(v), dout: view(dout) } };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------

interface Timed {
  ms: number;
  tflops: number;
  window: WindowStats;
}
interface Row {
  round: string;
  mask: Mask;
  recipe: Recipe;
  fwdEvLaunch?: Timed;
  fwd3after1?: Timed;
  fwdB2b?: Timed;
  calcAttnFwd?: Timed;
  bwdEvLaunch?: Timed;
  calcAttnBwd?: Timed;
  /** nvidia-smi over the three raw forward timings together. */
  fwdWindow?: WindowStats;
}

async function main(): Promise<void> {
  const { CudaDevice, runLocalDeviceRanks } = await import('../../src/device/index.js');
  const { CudaFfaForward } = await import('../../src/kernels/cuda/ffa-forward.js');
  const { CudaFfaBackward } = await import('../../src/kernels/cuda/ffa-backward.js');
  const { presetMask } = await import('../../src/mask/presets.js');
  const { sliceListArea } = await import('../../src/mask/slice-list.js');
  const { createLocalGroups } = await import('../../src/comm/local-group.js');

  const N = opts.seqlen;
  const dev = CudaDevice.open(0);
  const limits = spawnSync('nvidia-smi', ['--query-gpu=name,driver_version,power.limit,enforced.power.limit,clocks.max.sm,temperature.gpu', '--format=csv', '-i', '0'], { encoding: 'utf8' });
  const gpuInfo = limits.status === 0 ? limits.stdout.trim() : 'nvidia-smi did not answer';
  console.log(`${dev.name} (${dev.smCount} SMs), Node ${process.version}, ${N} tokens, ${HQ}:${HKV} heads, D ${DIM}, bf16`);
  console.log(gpuInfo);

  const scalingOpts = (mask: Mask): ScalingOptions => ({
    scaling: ['weak'],
    tokensPerGpu: N,
    totalTokens: N,
    masks: [mask],
    methods: ['magi'],
    heads: [HQ, HKV],
    headDim: DIM,
    reps: 3,
    warmup: 1,
    link: 'nvlink',
    check: false,
    blockSize: 2048,
  });

  // The kernels and problems, one per mask; the slice list is bench:dist-scaling's preset, and
  // calcAttn's cp-1 host slices are checked to be the same list (so both paths launch one work list).
  const fwd = new CudaFfaForward(dev);
  const bwd = new CudaFfaBackward(dev);
  console.log(`main kernels: fwd ${fwd.sm90 !== null ? 'sm90' : 'mma'}, bwd ${bwd.usesSm90(DIM) ? 'sm90' : 'mma'}`);
  const shape = { tokensQ: N, tokensK: N, headsQ: HQ, headsKv: HKV, dim: DIM, dtype: 'bfloat16' as const };
  const sameSlices = (a: SliceList, b: SliceList): boolean =>
    a.maskTypes.length === b.maskTypes.length && a.qRanges.every((x, i) => x === b.qRanges[i]) && a.kRanges.every((x, i) => x === b.kRanges[i]) && a.maskTypes.every((x, i) => x === b.maskTypes[i]);
  const problems = new Map<Mask, { slices: SliceList; flops: number; fwd: ReturnType<typeof fwd.prepare>; bwd: ReturnType<typeof bwd.prepare> | null }>();
  for (const mask of opts.masks) {
    const slices = presetMask(mask, N, { seed: 42 }).mask;
    const group = createLocalGroups(1)[0];
    const magiHost = (await planCase(group, scalingOpts(mask), 'weak', mask)).magiKey.rankPlan.hostSlices;
    group.close();
    const p = fwd.prepare(shape, slices);
    console.log(`${mask}: ${slices.maskTypes.length} slice(s), area ${sliceListArea(slices)}, ${p.plan.numWork} q tiles x ${HQ} heads, ${p.merge ? 'merge' : 'direct'} epilogue; calcAttn's cp-1 host slices the same list: ${sameSlices(slices, magiHost) ? 'yes' : 'NO'}`);
    problems.set(mask, { slices, flops: 4 * sliceListArea(slices) * HQ * DIM, fwd: p, bwd: opts.bwd ? bwd.prepare(shape, slices) : null });
  }

  const t0 = performance.now();
  const recipes = new Map<Recipe, { own: Inputs; views: Inputs }>();
  for (const r of opts.recipes) recipes.set(r, await makeRecipe(dev, r, N));
  console.log(`inputs made in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
  const out = dev.alloc(N * HQ * DIM * 2);
  const lse = dev.alloc(N * HQ * 4);
  const grads: DeviceBuffer[] = opts.bwd ? [dev.alloc(N * HQ * DIM * 2), dev.alloc(N * HKV * DIM * 2), dev.alloc(N * HKV * DIM * 2)] : [];
  const scale = 1 / Math.sqrt(DIM);
  const fwdRun = (mask: Mask, own: Inputs) => (): void => problems.get(mask)!.fwd.launch(own.q.buffer, own.k.buffer, own.v.buffer, out, lse, scale);
  /** The backward of these inputs (their forward run first, for out / lse), or null with --no-bwd. */
  const bwdRun = (mask: Mask, own: Inputs): (() => void) | null => {
    const bp = problems.get(mask)!.bwd;
    if (bp === null) return null;
    fwdRun(mask, own)();
    const [dq, dk, dv] = grads;
    const bufs = { q: own.q.buffer, k: own.k.buffer, v: own.v.buffer, out, dout: own.dout.buffer, lse, dq, dk, dv };
    return () => bp.launch(bufs, scale);
  };

  const sampler = await GpuSampler.start();
  // Collect windows now, read them once the sampler has caught up (the event loop is blocked
  // while the timing loops wait on events).
  const windows: Array<{ t0: number; t1: number; set: (w: WindowStats) => void }> = [];
  const timed = (flops: number, f: () => number): Timed => {
    const w0 = Date.now();
    const ms = f();
    const row: Timed = { ms, tflops: flops / (ms * 1e-3) / 1e12, window: { samples: 0, mhz: null, watts: null, maxTemp: null, reasons: '?' } };
    windows.push({ t0: w0, t1: Date.now(), set: (w) => (row.window = w) });
    return row;
  };
  const calcAttn = async (mask: Mask, inputs: Inputs, flops: number): Promise<{ f: Timed; b: Timed | undefined }> => {
    const w0 = Date.now();
    const [rows] = await runLocalDeviceRanks(dev, 1, (group) => measureScaling(group, scalingOpts(mask), async () => inputs, () => undefined));
    const w1 = Date.now();
    const pick = (pass: 'forward' | 'backward', mult: number): Timed => {
      const x = rows.find((r) => r.pass === pass)!;
      const t: Timed = { ms: x.ms, tflops: (mult * flops) / (x.ms * 1e-3) / 1e12, window: { samples: 0, mhz: null, watts: null, maxTemp: null, reasons: '?' } };
      windows.push({ t0: w0, t1: w1, set: (w) => (t.window = w) });
      return t;
    };
    return { f: pick('forward', 1), b: opts.bwd ? pick('backward', 2.5) : undefined };
  };

  const rows: Row[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const order = round % 2 === 1 ? opts.recipes : [...opts.recipes].reverse();
    for (const mask of opts.masks) {
      const p = problems.get(mask)!;
      for (const recipe of order) {
        const { own, views } = recipes.get(recipe)!;
        const run = fwdRun(mask, own);
        const row: Row = { round: String(round), mask, recipe };
        const f0 = Date.now();
        row.fwdEvLaunch = timed(p.flops, () => timeLaunches(dev, run, 10, 3).ms);
        row.fwd3after1 = timed(p.flops, () => timeLaunches(dev, run, 3, 1, { fixed: true, waitEach: true }).ms);
        row.fwdB2b = timed(p.flops, () => meanEventMs(dev, run, 1, Math.max(10, Math.round(300 / row.fwdEvLaunch!.ms))));
        windows.push({ t0: f0, t1: Date.now(), set: (w) => (row.fwdWindow = w) });
        const back = bwdRun(mask, own);
        if (back !== null) row.bwdEvLaunch = timed(2.5 * p.flops, () => timeLaunches(dev, back, 10, 3).ms);
        const c = await calcAttn(mask, views, p.flops);
        row.calcAttnFwd = c.f;
        row.calcAttnBwd = c.b;
        rows.push(row);
        const f = (t: Timed | undefined): string => (t === undefined ? '-' : t.tflops.toFixed(0));
        console.log(`round ${round} ${mask} ${recipe}: fwd ${f(row.fwdEvLaunch)} / ${f(row.fwd3after1)} / ${f(row.fwdB2b)} / calcAttn ${f(row.calcAttnFwd)}; bwd ${f(row.bwdEvLaunch)} / calcAttn ${f(row.calcAttnBwd)}`);
        await sleep(0); // let the sampler's output in
      }
    }
  }

  if (opts.state) {
    // `3 after 1` of the first mask and recipe after three histories: idle, forwards, backwards
    // (bench:kernel times a mask's forward right after the previous mask's backward)
    const mask = opts.masks[0];
    const recipe = opts.recipes[0];
    const p = problems.get(mask)!;
    const { own } = recipes.get(recipe)!;
    const run = fwdRun(mask, own);
    const after = (round: string): void => {
      rows.push({ round, mask, recipe, fwd3after1: timed(p.flops, () => timeLaunches(dev, run, 3, 1, { fixed: true, waitEach: true }).ms) });
    };
    const first = rows.find((r) => r.mask === mask && r.recipe === recipe);
    await sleep(3000);
    after('after 3 s idle');
    meanEventMs(dev, run, 1, Math.ceil(3000 / (first?.fwdEvLaunch?.ms ?? 10)));
    after('after 3 s of fwd');
    const back = bwdRun(mask, own);
    if (back !== null) {
      meanEventMs(dev, back, 1, Math.ceil(1000 / (first?.bwdEvLaunch?.ms ?? 30)));
      after('after 1 s of bwd');
    }
  }

  await sampler.stop();
  for (const w of windows) w.set(sampler.window(w.t0, w.t1));
  for (const r of rows) if (r.fwdWindow === undefined && r.fwd3after1 !== undefined) r.fwdWindow = r.fwd3after1.window;

  const f = (t: Timed | undefined): string => (t === undefined ? '' : t.tflops.toFixed(0));
  const n = (x: number | null | undefined, d = 0): string => (x === null || x === undefined ? '-' : x.toFixed(d));
  console.log(`\n${dev.name}, ${N} tokens, ${HQ}:${HKV} heads, D ${DIM}, bf16: TFLOP/s (4·area·Hq·D / time, backward 2.5x); MHz / W / °C / throttle reasons: nvidia-smi over each row's raw forward timings`);
  console.log(
    renderTable(
      ['round', 'mask', 'inputs', 'fwd ev/launch', 'fwd 3 after 1', 'fwd b2b', 'calcAttn fwd', 'bwd ev/launch', 'calcAttn bwd', 'SM MHz', 'W', '°C', 'throttle'],
      rows.map((r) => [r.round, r.mask, r.recipe, f(r.fwdEvLaunch), f(r.fwd3after1), f(r.fwdB2b), f(r.calcAttnFwd), f(r.bwdEvLaunch), f(r.calcAttnBwd), n(r.fwdWindow?.mhz), n(r.fwdWindow?.watts), n(r.fwdWindow?.maxTemp), r.fwdWindow?.reasons ?? '?']),
    ),
  );
  mkdirSync(dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, JSON.stringify({ machine: dev.name, nvidiaSmi: gpuInfo, date: new Date().toISOString(), node: process.version, seqlen: N, heads: [HQ, HKV], headDim: DIM, samples: sampler.samples.length, rows }, null, 1) + '\n');
  console.log(`wrote ${opts.out}`);

  for (const p of problems.values()) {
    p.fwd.free();
    p.bwd?.free();
  }
  for (const { own } of recipes.values()) for (const t of [own.q, own.k, own.v, own.dout]) t.free();
  for (const b of [out, lse, ...grads]) b.free();
  dev.close();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
