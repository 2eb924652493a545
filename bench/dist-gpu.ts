/**
 * bench:dist-gpu: the distributed runtime on one GPU.
 *
 *   1. cp 1: calcAttn / calcAttnBackward of a 1-rank device group against flexFlashAttn on the
 *      same tensors, varlen-causal 64k, bf16, 64:8 heads, D 128: the runtime's overhead over the
 *      kernel. Both timed the same way: warm-up calls, then the median of CUDA-event intervals
 *      on the legacy default stream (which orders after the runtime's blocking streams).
 *   2. cp P ranks on the same GPU (default 4): each rank's per-stage timeline (compute, fetch,
 *      exposed wait, reduce) from the runtime's trace.
 *   3. The host time of one calcAttn call once its key is cached (planning excluded): the time
 *      the host spends queueing the work.
 *
 * Writes JSON (default bench/out/dist-gpu.json; --update-results: bench/results/) and, with
 * --replot FILE (no GPU needed), the timeline plot and table of a saved run.
 *   node dist/bench/dist-gpu.js [--seqlen 65536] [--cp 4] [--reps 10]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { intAtLeast } from '../src/cli/flags.js';
import { renderTable } from '../src/cli/table.js';
import { median } from '../src/util/stats.js';
import { outputPath, withOutputOptions } from './output.js';

const program = withOutputOptions(
  new Command()
    .option('--seqlen <n>', 'tokens (cp 1 and the timeline)', intAtLeast(1024), 65536)
    .option('--cp <p>', 'ranks on the one GPU for the timeline', intAtLeast(2), 4)
    .option('--reps <n>', 'timed calls (median)', intAtLeast(1), 10)
    .option('--heads <q:kv>', 'query and key/value heads', '64:8')
    .option('--replot <file>', 'draw the plot and print the table of a saved run (no GPU)'),
  'dist-gpu.json',
).parse();
const opts = program.opts<{ seqlen: number; cp: number; reps: number; heads: string; replot?: string; out?: string; updateResults?: boolean }>();

interface Span {
  rank: number;
  pass: 'forward' | 'backward';
  stage: string;
  lane: string;
  kind: string;
  startMs: number;
  endMs: number;
}

interface Result {
  machine: string;
  date: string;
  seqlen: number;
  heads: [number, number];
  headDim: number;
  dtype: string;
  /** Timed calls per median, after 3 warm-up calls (absent in results written before it was recorded). */
  reps?: number;
  cp1: { calcAttnMs: number; flexMs: number; calcAttnBwdMs: number; flexBwdMs: number; ratioFwd: number; ratioBwd: number; tflopsFwd: number; tflopsBwd: number };
  hostMsPerCall: { forward: number; backward: number };
  timeline: { cp: number; degree: number; spans: Span[] };
}

function printTable(r: Result): void {
  const c = r.cp1;
  console.log(`${r.machine}, ${r.date}: varlen-causal ${r.seqlen} tokens, ${r.heads[0]}:${r.heads[1]} heads, D ${r.headDim}, ${r.dtype}`);
  console.log(
    renderTable(
      ['pass', 'calcAttn cp 1 (ms)', 'flexFlashAttn (ms)', 'calcAttn / flex', 'calcAttn TFLOP/s', 'host ms per call'],
      [
        ['forward', c.calcAttnMs.toFixed(3), c.flexMs.toFixed(3), c.ratioFwd.toFixed(3), c.tflopsFwd.toFixed(0), r.hostMsPerCall.forward.toFixed(3)],
        ['backward', c.calcAttnBwdMs.toFixed(3), c.flexBwdMs.toFixed(3), c.ratioBwd.toFixed(3), c.tflopsBwd.toFixed(0), r.hostMsPerCall.backward.toFixed(3)],
      ],
    ),
  );
  const t = r.timeline;
  const exposed = t.spans.filter((s) => s.kind === 'wait').reduce((a, s) => a + (s.endMs - s.startMs), 0);
  console.log(`timeline: cp ${t.cp} ranks on one GPU, ${t.degree} stages; exposed wait summed over ranks and passes ${exposed.toFixed(2)} ms`);
}

async function plot(r: Result, file: string): Promise<void> {
  const { plotToSvg } = await import('../src/cli/plot-svg.js');
  const Plot = await import('@observablehq/plot');
  const spans = r.timeline.spans.map((s) => ({ ...s, row: `rank ${s.rank} ${s.pass} ${s.lane}` }));
  const svg = plotToSvg({
    width: 1000,
    height: 60 + 22 * new Set(spans.map((s) => s.row)).size,
    marginLeft: 170,
    x: { label: `ms from the call's start (${r.machine}, cp ${r.timeline.cp} on one GPU, ${r.seqlen} tokens)` },
    y: { label: null },
    color: { domain: ['compute', 'fetch', 'reduce', 'wait', 'final'], range: ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#9c755f'] },
    marks: [Plot.barX(spans, { x1: 'startMs', x2: 'endMs', y: 'row', fill: 'kind', inset: 1 }), Plot.text(['compute blue, fetch orange, reduce green, exposed wait red'], { frameAnchor: 'top-right' })],
  });
  writeFileSync(file, svg);
  console.log(`plot written to ${file}`);
}

if (opts.replot !== undefined) {
  const r = JSON.parse(readFileSync(opts.replot, 'utf8')) as Result;
  printTable(r);
  await plot(r, opts.replot.replace(/\.json$/, '.svg'));
} else {
  const dev = await import('../src/device/index.js');
  const { flexFlashAttn, flexFlashAttnBackward } = await import('../src/kernels/flex-flash-attn.js');
  const { cuSeqlensFromLengths, sampleDocLengths, varlenCausalMask } = await import('../src/mask/helpers.js');
  const { sliceListArea } = await import('../src/mask/slice-list.js');
  const { AttnTrace, calcAttn, calcAttnBackward, dispatch, magiAttnFlexKey } = await import('../src/runtime/index.js');
  const { Tensor } = await import('../src/tensor.js');
  const { Rng } = await import('../src/util/rng.js');
  type DT = InstanceType<typeof dev.DeviceTensor>;

  const device = dev.CudaDevice.open(0);
  const [hq, hkv] = opts.heads.split(':').map(Number);
  const D = 128;
  const n = opts.seqlen;
  const rng = new Rng(42);
  const mask = varlenCausalMask(cuSeqlensFromLengths(sampleDocLengths(n, rng)));
  const flops = 4 * sliceListArea(mask) * hq * D;
  const randn = (h: number): DT => dev.DeviceTensor.fromHost(device, Tensor.fromValues('bfloat16', [n, h, D], rng.normals(n * h * D)));
  const [q, k, v, dout] = [randn(hq), randn(hkv), randn(hkv), randn(hq)];

  /** Median ms of `reps` calls between events on the legacy default stream, after 3 warm-up calls. */
  const timeIt = async (call: () => Promise<unknown> | unknown): Promise<number> => {
    for (let i = 0; i < 3; i++) await call();
    const times: number[] = [];
    for (let i = 0; i < opts.reps; i++) {
      const e0 = device.createEvent().record();
      await call();
      const e1 = device.createEvent().record();
      times.push(e1.elapsedSince(e0));
      e0.destroy();
      e1.destroy();
    }
    return median(times);
  };
  const free = (...ts: Array<DT | undefined>): void => ts.forEach((t) => t?.free());

  console.log(`${device.name}: ${n} tokens varlen-causal, ${hq}:${hkv} heads; timing flexFlashAttn ...`);
  const flexMs = await timeIt(() => {
    const r = flexFlashAttn(q, k, v, mask);
    free(r.out, r.lse);
  });
  const ref = flexFlashAttn(q, k, v, mask);
  const flexBwdMs = await timeIt(() => {
    const g = flexFlashAttnBackward(dout, q, k, v, ref.out, ref.lse, mask);
    free(g.dq, g.dk, g.dv);
  });

  console.log(`  flexFlashAttn forward ${flexMs.toFixed(3)} ms, backward ${flexBwdMs.toFixed(3)} ms; timing calcAttn at cp 1 ...`);
  const [cp1] = await dev.runLocalDeviceRanks(device, 1, async (group) => {
    const key = magiAttnFlexKey({ ...mask, totalSeqlenQ: n, numHeadsQ: hq, numHeadsKv: hkv, headDim: D, group });
    const [lq, lk, lv, ld] = [q, k, v, dout].map((x) => dispatch(x, key));
    const calcAttnMs = await timeIt(async () => {
      const r = await calcAttn(lq, lk, lv, key);
      free(r.out, r.lse);
    });
    const f = await calcAttn(lq, lk, lv, key);
    const calcAttnBwdMs = await timeIt(async () => {
      const g = await calcAttnBackward(ld, lq, lk, lv, f.out, f.lse, key);
      free(g.dq, g.dk, g.dv);
    });
    console.log(`  calcAttn cp 1 forward ${calcAttnMs.toFixed(3)} ms, backward ${calcAttnBwdMs.toFixed(3)} ms; host time per call ...`);
    // Host time per call: the work is queued and the call returns; the device runs behind it.
    device.synchronize();
    const host = async (call: () => Promise<{ [k: string]: DT | undefined }>): Promise<number> => {
      const ts: number[] = [];
      for (let i = 0; i < opts.reps; i++) {
        const t0 = performance.now();
        const r = await call();
        ts.push(performance.now() - t0);
        device.synchronize();
        free(...Object.values(r));
      }
      return median(ts);
    };
    const hostFwd = await host(() => calcAttn(lq, lk, lv, key) as unknown as Promise<{ [k: string]: DT | undefined }>);
    const hostBwd = await host(() => calcAttnBackward(ld, lq, lk, lv, f.out, f.lse, key) as unknown as Promise<{ [k: string]: DT | undefined }>);
    return { calcAttnMs, calcAttnBwdMs, hostFwd, hostBwd };
  });

  // Timeline at cp P on the one GPU.
  const P = opts.cp;
  console.log(`  host ms per call: forward ${cp1.hostFwd.toFixed(3)}, backward ${cp1.hostBwd.toFixed(3)}; timeline at cp ${P} ...`);
  const spans: Span[] = [];
  let degree = 0;
  await dev.runLocalDeviceRanks(device, P, async (group) => {
    const key = magiAttnFlexKey({ ...mask, totalSeqlenQ: n, numHeadsQ: hq, numHeadsKv: hkv, headDim: D, group, overlapConfig: { degree: 3 } });
    degree = key.plan.overlapDegree;
    const [lq, lk, lv, ld] = [q, k, v, dout].map((x) => dispatch(x, key));
    const warm = await calcAttn(lq, lk, lv, key);
    free(warm.out, warm.lse);
    const ft = new AttnTrace();
    const bt = new AttnTrace();
    const f = await calcAttn(lq, lk, lv, key, { trace: ft });
    const g = await calcAttnBackward(ld, lq, lk, lv, f.out, f.lse, key, { trace: bt });
    device.synchronize();
    for (const [pass, t] of [['forward', ft], ['backward', bt]] as const) {
      for (const s of t.spans()) spans.push({ rank: group.rank, pass, stage: String(s.stage), lane: s.lane, kind: s.kind, startMs: s.startMs, endMs: s.endMs });
    }
    free(f.out, f.lse, g.dq, g.dk, g.dv);
  });

  const result: Result = {
    machine: device.name,
    date: new Date().toISOString().slice(0, 10),
    seqlen: n,
    heads: [hq, hkv],
    headDim: D,
    dtype: 'bfloat16',
    reps: opts.reps,
    cp1: {
      calcAttnMs: cp1.calcAttnMs,
      flexMs,
      calcAttnBwdMs: cp1.calcAttnBwdMs,
      flexBwdMs,
      ratioFwd: cp1.calcAttnMs / flexMs,
      ratioBwd: cp1.calcAttnBwdMs / flexBwdMs,
      tflopsFwd: flops / cp1.calcAttnMs / 1e9,
      tflopsBwd: (2.5 * flops) / cp1.calcAttnBwdMs / 1e9,
    },
    hostMsPerCall: { forward: cp1.hostFwd, backward: cp1.hostBwd },
    timeline: { cp: P, degree, spans },
  };
  printTable(result);
  const out = outputPath(opts, 'dist-gpu.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 1));
  console.log(`written to ${out} (plot: node dist/bench/dist-gpu.js --replot ${out})`);
}
