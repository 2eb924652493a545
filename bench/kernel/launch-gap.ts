/**
 * How much of a short forward's reading is the host's launch time, by timing method. bench:kernel
 * (timing.ts timeLaunches, and baselines.py's time_calls alike) brackets each call with its own
 * CUDA events and queues all calls before one wait, so each launch overlaps the call before it.
 * Until 2026-12-04 timeLaunches waited for each call's second event before queuing the next (the
 * baselines never did): the GPU then idled from the first event until the host had queued the
 * kernel, and that host time was inside our readings only. Per mask (bench:kernel's masks, 64:8
 * heads, D 128, bf16, the forward's own build pick) this prints:
 *   host     the host time of one `problem.launch` (median over 200 calls queued without waiting)
 *   waited   timeLaunches with waitEach (the old reading: host waits after each call), median
 *   queued   timeLaunches (bench:kernel's reading now), median
 *   b2b      calls queued back to back between one pair of events (no host gap), mean
 *   gap      waited - queued: what waiting after each call adds
 *
 *   node dist/bench/kernel/launch-gap.js [--seqlen 4096] [--masks sw_causal,causal] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { CudaDevice } from '../../src/device/index.js';
import { CudaFfaForward } from '../../src/kernels/cuda/ffa-forward.js';
import { median } from '../../src/util/stats.js';
import { buildMask, MASK_NAMES, type MaskName } from './masks.js';
import { randomDeviceTensor } from './inputs.js';
import { meanEventMs, settle, timeLaunches } from './timing.js';

const HQ = 64;
const HKV = 8;
const DIM = 128;

const cli = new Command()
  .option('--seqlen <n>', 'tokens', '4096')
  .option('--masks <list>', `comma-separated, of ${MASK_NAMES.join(', ')}`, 'sw_causal,causal,full')
  .option('--json <file>', 'write the rows here')
  .parse();
const o = cli.opts<{ seqlen: string; masks: string; json?: string }>();
const S = Number(o.seqlen);
if (!Number.isInteger(S) || S <= 0) throw new Error(`--seqlen: a positive whole number of tokens, got ${JSON.stringify(o.seqlen)}`);
const masks = o.masks.split(',') as MaskName[];
for (const m of masks) if (!MASK_NAMES.includes(m)) throw new Error(`--masks: unknown mask ${m} (one of ${MASK_NAMES.join(', ')})`);

const dev = CudaDevice.open(0);
const fwd = new CudaFfaForward(dev, { kernel: 'sm90' });
const [q, k, v] = (await Promise.all([randomDeviceTensor(dev, [S, HQ, DIM], 1), randomDeviceTensor(dev, [S, HKV, DIM], 2), randomDeviceTensor(dev, [S, HKV, DIM], 3)])).map((t) => t.buffer);
const out = dev.alloc(S * HQ * DIM * 2);
const lse = dev.alloc(S * HQ * 4);
const scale = 1 / Math.sqrt(DIM);
console.log(`${dev.name}: S ${S}, ${HQ}:${HKV} heads, D ${DIM}, bf16`);
console.log('| mask | build | host µs / launch | waited ms | queued ms | b2b ms | gap µs | waited TFLOP/s | queued TFLOP/s | b2b TFLOP/s |');
console.log('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|');
const rows: Array<Record<string, unknown>> = [];
for (const name of masks) {
  const m = buildMask(name, S, 42);
  const p = fwd.prepare({ tokensQ: S, tokensK: S, headsQ: HQ, headsKv: HKV, dim: DIM, dtype: 'bfloat16' }, m.slices);
  const run = (): void => p.launch(q, k, v, out, lse, scale);
  run();
  dev.synchronize();
  const host: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    run();
    host.push((performance.now() - t0) * 1e3);
  }
  dev.synchronize();
  settle(dev, 2);
  const waited = timeLaunches(dev, run, 20, 5, { waitEach: true }).ms;
  settle(dev, 2);
  const queued = timeLaunches(dev, run, 20, 5).ms;
  settle(dev, 2);
  const b2b = meanEventMs(dev, run, 5, 50);
  const flops = 4 * m.area * HQ * DIM;
  const tf = (ms: number): number => flops / ms / 1e9;
  const row = { mask: name, seqlen: S, build: p.build, hostUs: median(host), waitedMs: waited, queuedMs: queued, b2bMs: b2b, gapUs: (waited - queued) * 1e3, waitedTflops: tf(waited), queuedTflops: tf(queued), b2bTflops: tf(b2b) };
  rows.push(row);
  console.log(
    `| ${name} | ${p.build} | ${row.hostUs.toFixed(1)} | ${waited.toFixed(4)} | ${queued.toFixed(4)} | ${b2b.toFixed(4)} | ${row.gapUs.toFixed(1)} | ${row.waitedTflops.toFixed(0)} | ${row.queuedTflops.toFixed(0)} | ${row.b2bTflops.toFixed(0)} |`,
  );
}
if (o.json !== undefined) writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), gpu: dev.name, settings: { seqlen: S, headsQ: HQ, headsKv: HKV, dim: DIM, dtype: 'bfloat16' }, rows }, null, 1) + '\n');
