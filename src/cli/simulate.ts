/**
 * `magi-attn simulate`: plans each (mask, cp) asked for and predicts what one attention call
 * costs on real hardware: forward and backward step time, exposed communication and TFLOP/s per
 * GPU, for magi-attention's plan and for ring attention (zig-zag) and Ulysses on the same mask.
 * Compute comes from measured kernel throughput (the kernel benchmark's JSON), communication from
 * a link preset (src/cost). Prints a table, and writes JSON and an SVG plot when asked.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { Option, type Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { BENCH_HEAD_SHAPE, DISPATCH_ALG_TYPES, planDistAttnTimed, planStats, type DispatchAlg, type DispatchAlgType, type HeadShape } from '../solver/index.js';
import { autoOverlapConfig, KERNEL_SHAPES, KernelThroughput, kernelShapeOf, parseLink, planMemory, predictRun, type KernelShape, type LinkModel } from '../cost/index.js';
import { MASK_PRESETS } from '../mask/presets.js';
import { addCostModelOptions, defaultKernelJson, loadThroughput } from './cost-model.js';
import { intAtLeast, intOrWord } from './flags.js';
import { buildMask } from './plan.js';
import type { CliContext } from './program.js';

export interface SimulateOptions {
  readonly masks: readonly string[];
  readonly seqlen: number | undefined;
  readonly cps: readonly number[];
  /** Remote stages, or 'auto': the overlap solver's dynamic mode with this cost model's factors. */
  readonly degree: number | 'auto';
  readonly alg: DispatchAlgType;
  readonly chunk?: number;
  readonly docs?: number;
  readonly seed: number;
  readonly heads: HeadShape;
  readonly link: LinkModel;
  readonly kernelJson: string;
  readonly kernelShape?: KernelShape;
}

export interface SimulateRow {
  readonly mask: string;
  readonly description: string;
  readonly seqlen: number;
  readonly cp: number;
  readonly method: string;
  readonly kernelShape: KernelShape;
  readonly forwardMs: number;
  readonly backwardMs: number;
  readonly forwardExposedMs: number;
  readonly backwardExposedMs: number;
  readonly forwardTflopsPerGpu: number;
  readonly backwardTflopsPerGpu: number;
  /** magi-attention only: overlap degree, max/mean area, max received k/v tokens, peak memory per rank, planner time. */
  readonly degree?: number;
  readonly imbalance?: number;
  readonly maxRecvTokens?: number;
  readonly peakMemoryBytes?: number;
  readonly planMs?: number;
  readonly note?: string;
}

/** Plans and predicts every (mask, cp); `progress` hears of each row as it is done. */
export function simulate(opts: SimulateOptions, progress: (row: SimulateRow) => void = () => {}): { rows: SimulateRow[]; throughput: KernelThroughput } {
  const throughput = loadThroughput(opts.kernelJson);
  const rows: SimulateRow[] = [];
  for (const kind of opts.masks) {
    const spec = buildMask(kind, opts.seqlen, { seed: opts.seed, ...(opts.docs === undefined ? {} : { docs: opts.docs }) });
    const shape = opts.kernelShape ?? kernelShapeOf(spec.mask, kind);
    for (const cp of opts.cps) {
      const model = { throughput, shape, link: opts.link, heads: opts.heads };
      const { plan, timings } = planDistAttnTimed({
        mask: spec.mask,
        totalSeqlenQ: spec.totalSeqlen,
        cpSize: cp,
        dispatchConfig: { ...(opts.chunk === undefined ? {} : { chunkSize: opts.chunk }), alg: { type: opts.alg } as DispatchAlg },
        overlapConfig: opts.degree === 'auto' ? autoOverlapConfig(model, spec.totalSeqlen, cp) : { degree: opts.degree },
      });
      const prediction = predictRun(plan, model, spec.cuSeqlens);
      const stats = planStats(plan);
      const peak = Math.max(...planMemory(plan, opts.heads).map((m) => m.peak));
      for (const m of prediction.methods) {
        const row: SimulateRow = {
          mask: kind,
          description: spec.description,
          seqlen: spec.totalSeqlen,
          cp,
          method: m.method,
          kernelShape: shape,
          forwardMs: m.forwardSeconds * 1e3,
          backwardMs: m.backwardSeconds * 1e3,
          forwardExposedMs: m.forwardExposedSeconds * 1e3,
          backwardExposedMs: m.backwardExposedSeconds * 1e3,
          forwardTflopsPerGpu: m.forwardTflopsPerGpu,
          backwardTflopsPerGpu: m.backwardTflopsPerGpu,
          ...(m.method === 'magi-attention'
            ? { degree: plan.overlapDegree, imbalance: stats.imbalance, maxRecvTokens: Math.max(...stats.recvTokensPerRank), peakMemoryBytes: peak, planMs: timings.total }
            : {}),
          ...(m.note === undefined ? {} : { note: m.note }),
        };
        rows.push(row);
        progress(row);
      }
    }
  }
  return { rows, throughput };
}

const f1 = (x: number): string => x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2);

export function formatRows(rows: readonly SimulateRow[]): string[] {
  const header = ['mask', 'cp', 'method', 'fwd ms', 'bwd ms', 'exposed fwd/bwd ms', 'TFLOP/s/GPU fwd/bwd', 'degree', 'imbalance', 'plan s'];
  const body = rows.map((r) => [
    r.mask,
    String(r.cp),
    r.method + (r.note !== undefined ? ' (n/a)' : ''),
    f1(r.forwardMs),
    f1(r.backwardMs),
    `${f1(r.forwardExposedMs)} / ${f1(r.backwardExposedMs)}`,
    `${r.forwardTflopsPerGpu.toFixed(0)} / ${r.backwardTflopsPerGpu.toFixed(0)}`,
    r.degree === undefined ? '' : String(r.degree),
    r.imbalance === undefined ? '' : r.imbalance.toFixed(3),
    r.planMs === undefined ? '' : (r.planMs / 1e3).toFixed(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [fmt(header), ...body.map(fmt)];
}

interface SimulateCliOptions {
  mask: string;
  seqlen: number;
  cp: number[];
  degree: number | 'auto';
  alg: DispatchAlgType;
  chunk?: number;
  docs?: number;
  seed: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
  link: string;
  kernelJson?: string;
  kernelShape?: KernelShape;
  json?: string;
  plot?: string;
}

/** "8,16,32": a list of integers >= 1. */
function cpList(value: string): number[] {
  return value.split(',').map((c) => intAtLeast(1)(c));
}

export function parseSimulateOptions(o: SimulateCliOptions): SimulateOptions {
  const masks = o.mask.split(',').map((m) => m.trim()).filter((m) => m !== '');
  if (masks.length === 0) throw new InvalidArgumentError('--mask', 'must name at least one mask');
  return {
    masks,
    seqlen: o.seqlen,
    cps: o.cp,
    degree: o.degree,
    alg: o.alg,
    ...(o.chunk === undefined ? {} : { chunk: o.chunk }),
    ...(o.docs === undefined ? {} : { docs: o.docs }),
    seed: o.seed,
    heads: { numHeadsQ: o.headsQ, numHeadsKv: o.headsKv, headDim: o.headDim, bytesPerElement: BENCH_HEAD_SHAPE.bytesPerElement },
    link: parseLink(o.link),
    kernelJson: o.kernelJson ?? defaultKernelJson(),
    ...(o.kernelShape === undefined ? {} : { kernelShape: o.kernelShape }),
  };
}

export async function runSimulateCommand(o: SimulateCliOptions, write: (text: string) => void): Promise<number> {
  const opts = parseSimulateOptions(o);
  const t0 = performance.now();
  const { rows, throughput } = simulate(opts);
  const h = opts.heads;
  write(`kernel throughput: ${throughput.gpu} (${opts.kernelJson}); links: ${opts.link.name} (${opts.link.source})\n`);
  write(`heads q/kv ${h.numHeadsQ}/${h.numHeadsKv}, head dim ${h.headDim}, bf16; overlap degree ${opts.degree}; dispatch ${opts.alg}; seed ${opts.seed}\n\n`);
  write(formatRows(rows).join('\n') + '\n');
  for (const note of new Set(rows.filter((r) => r.note !== undefined).map((r) => `${r.method} ${r.note}`))) write(`note (n/a rows): ${note}\n`);
  write(`\n${rows.filter((r) => r.planMs !== undefined).length} plans in ${((performance.now() - t0) / 1e3).toFixed(1)} s\n`);
  const settings = { ...opts, link: opts.link, kernelGpu: throughput.gpu };
  if (o.json !== undefined) {
    writeFileSync(o.json, JSON.stringify({ benchmark: 'simulate', date: new Date().toISOString(), machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version }, settings, rows }, null, 1) + '\n');
    write(`wrote ${o.json}\n`);
  }
  if (o.plot !== undefined) {
    const seqlens = [...new Set(rows.map((r) => r.seqlen))].join(', ');
    const { simulatePlotSvg } = await import('./simulate-plot.js');
    writeFileSync(o.plot, simulatePlotSvg(rows, `Predicted attention step, ${seqlens} tokens, ${h.numHeadsQ}:${h.numHeadsKv} heads, D ${h.headDim}; kernels: ${throughput.gpu}; links: ${opts.link.name}`));
    write(`wrote ${o.plot}\n`);
  }
  return 0;
}

export function registerSimulate(program: Command, ctx: CliContext): void {
  const command = program
    .command('simulate')
    .description('predict forward/backward step time, exposed communication and TFLOP/s per GPU, vs ring and Ulysses, from measured kernel throughput and link presets')
    .option('--mask <kinds|file>', `comma-separated: ${MASK_PRESETS.join(' | ')} | a JSON mask file`, MASK_PRESETS.join(','))
    .option('--seqlen <n>', 'total tokens (for the preset masks)', intAtLeast(1), 10 * 1024 * 1024)
    .option('--cp <list>', 'comma-separated cp sizes', cpList, [8, 16, 32, 64, 128, 256, 512, 1024])
    .option('--degree <d>', 'overlap degree (remote stages), or auto: chosen per rank by the overlap solver with this cost model', intOrWord(0, ['auto'] as const), 'auto' as const)
    .addOption(new Option('--alg <name>', 'dispatch algorithm').choices(DISPATCH_ALG_TYPES).default('min-heap'))
    .option('--chunk <c>', 'upper bound on the dispatch chunk size', intAtLeast(1))
    .option('--docs <n>', 'varlen masks: number of documents (default: lengths sampled from the dataset histogram)', intAtLeast(1))
    .option('--seed <s>', 'seed of the sampled documents', intAtLeast(0), 42)
    .option('--heads-q <n>', 'query heads', intAtLeast(1), BENCH_HEAD_SHAPE.numHeadsQ)
    .option('--heads-kv <n>', 'key/value heads', intAtLeast(1), BENCH_HEAD_SHAPE.numHeadsKv)
    .option('--head-dim <n>', 'head dimension', intAtLeast(1), BENCH_HEAD_SHAPE.headDim);
  addCostModelOptions(command)
    .addOption(new Option('--kernel-shape <shape>', 'benchmark mask whose throughput to use (default: from the mask)').choices(KERNEL_SHAPES))
    .option('--json <path>', 'write the rows as JSON')
    .option('--plot <path>', 'write an SVG plot of TFLOP/s per GPU against cp')
    .action(async (opts: SimulateCliOptions) => {
      ctx.exitCode = await runSimulateCommand(opts, ctx.out);
    });
}
