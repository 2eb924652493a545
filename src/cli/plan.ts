/**
 * `magi-attn plan`: plans a distributed attention call for a mask and a cp size and prints what it
 * costs: per-rank area and imbalance, the k/v tokens each rank receives, the same figures for ring
 * attention (zig-zag) and Ulysses on the same mask, and the solver's own run time. `--json` writes
 * the full plan instead (or as well, with a path). The mask and report builders are exported so
 * tests and other tools can reuse them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { blockCausalMask, causalMask, cuSeqlensFromLengths, fullMask, sampleDocLengths, slidingWindowMask, varlenCausalMask, varlenFullMask } from '../mask/helpers.js';
import { makeSliceList, sliceCount, type SliceList } from '../mask/slice-list.js';
import { freshSeed, Rng } from '../util/rng.js';
import {
  BENCH_HEAD_SHAPE,
  checkPlan,
  DISPATCH_ALG_TYPES,
  hardwareCostFactors,
  planCommSummary,
  planDistAttnTimed,
  planStats,
  planToJSON,
  ringZigzagBaseline,
  ulyssesBaseline,
  type CommSummary,
  type DispatchAlg,
  type DispatchAlgType,
  type DistAttnPlan,
  type HeadShape,
  type OverlapConfig,
  type PlanTimings,
} from '../solver/index.js';

export const MASK_KINDS = ['full', 'causal', 'varlen-full', 'varlen-causal', 'block-causal', 'sliding-window'] as const;

export interface MaskSpec {
  readonly mask: SliceList;
  readonly totalSeqlen: number;
  /** Document boundaries, when the mask has documents (used for the ring baseline's zig-zag). */
  readonly cuSeqlens?: number[];
  /** One line saying what the mask is. */
  readonly description: string;
}

export interface MaskOptions {
  /** Number of documents for varlen kinds (cut uniformly at random); default: sampled from the dataset histogram. */
  readonly docs?: number;
  readonly seed: number;
  readonly blockSize?: number;
  readonly window?: readonly [number, number];
}

/** Builds one of the preset masks, or reads a JSON mask file. */
export function buildMask(kind: string, seqlen: number | undefined, options: MaskOptions): MaskSpec {
  if (!(MASK_KINDS as readonly string[]).includes(kind)) return readMaskFile(kind, seqlen);
  if (seqlen === undefined) throw new InvalidArgumentError('--seqlen', `is required for the ${kind} mask`);
  const docs = (): number[] => {
    const rng = new Rng(options.seed);
    if (options.docs !== undefined) {
      if (options.docs > seqlen) throw new InvalidArgumentError('--docs', 'must be at most --seqlen', `${options.docs} > ${seqlen}`);
      const cuts = new Set<number>();
      while (cuts.size < options.docs - 1) cuts.add(rng.int(1, seqlen - 1));
      return [0, ...[...cuts].sort((a, b) => a - b), seqlen];
    }
    return cuSeqlensFromLengths(sampleDocLengths(seqlen, rng));
  };
  const docNote = (cu: number[]): string =>
    `${cu.length - 1} documents (${options.docs === undefined ? 'lengths from the dataset histogram' : 'uniform random cuts'}, seed ${options.seed})`;
  switch (kind) {
    case 'full':
      return { mask: fullMask(seqlen), totalSeqlen: seqlen, description: `full, ${seqlen} tokens` };
    case 'causal':
      return { mask: causalMask(seqlen), totalSeqlen: seqlen, description: `causal, ${seqlen} tokens` };
    case 'varlen-full': {
      const cu = docs();
      return { mask: varlenFullMask(cu), totalSeqlen: seqlen, cuSeqlens: cu, description: `varlen-full, ${seqlen} tokens in ${docNote(cu)}` };
    }
    case 'varlen-causal': {
      const cu = docs();
      return { mask: varlenCausalMask(cu), totalSeqlen: seqlen, cuSeqlens: cu, description: `varlen-causal, ${seqlen} tokens in ${docNote(cu)}` };
    }
    case 'block-causal': {
      const block = options.blockSize ?? 2048;
      const cu = options.docs === undefined ? [0, seqlen] : docs();
      const where = cu.length > 2 ? `in ${docNote(cu)}` : 'one document';
      return { mask: blockCausalMask(cu, block), totalSeqlen: seqlen, cuSeqlens: cu, description: `block-causal (blocks of ${block}), ${seqlen} tokens, ${where}` };
    }
    default: {
      const window = options.window ?? [1024, 0];
      const cu = options.docs === undefined ? [0, seqlen] : docs();
      const where = cu.length > 2 ? `in ${docNote(cu)}` : 'one document';
      return { mask: slidingWindowMask(cu, window), totalSeqlen: seqlen, cuSeqlens: cu, description: `sliding-window (${window[0]}, ${window[1]}), ${seqlen} tokens, ${where}` };
    }
  }
}

/**
 * A JSON mask: either an array of [[qs, qe], [ks, ke], type] or an object with `slices` in that
 * form, or `qRanges`, `kRanges` and `maskTypes`; `totalSeqlen` (or --seqlen) gives the length,
 * else the largest range end.
 */
function readMaskFile(path: string, seqlen: number | undefined): MaskSpec {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InvalidArgumentError('--mask', `must be one of ${MASK_KINDS.join(', ')} or a readable JSON mask file`, `${path}: ${(e as Error).message}`);
  }
  const obj = (Array.isArray(json) ? { slices: json } : json) as {
    slices?: Array<[[number, number], [number, number], string | number]>;
    qRanges?: Array<[number, number]>;
    kRanges?: Array<[number, number]>;
    maskTypes?: Array<string | number> | string;
    totalSeqlen?: number;
  };
  let mask: SliceList;
  if (obj.slices !== undefined) {
    mask = makeSliceList(obj.slices.map((s) => s[0]), obj.slices.map((s) => s[1]), obj.slices.map((s) => s[2]));
  } else if (obj.qRanges !== undefined && obj.kRanges !== undefined) {
    mask = makeSliceList(obj.qRanges, obj.kRanges, obj.maskTypes ?? 'full');
  } else {
    throw new InvalidArgumentError('--mask', 'a JSON mask must be a slice array or an object with slices, or with qRanges and kRanges', path);
  }
  let end = 0;
  for (let b = 0; b < sliceCount(mask); b++) end = Math.max(end, mask.qRanges[2 * b + 1], mask.kRanges[2 * b + 1]);
  const totalSeqlen = seqlen ?? obj.totalSeqlen ?? end;
  return { mask, totalSeqlen, description: `${path}: ${sliceCount(mask)} slices, ${totalSeqlen} tokens` };
}

const fmtInt = (x: number): string => Math.round(x).toLocaleString('en-US');
const fmtBytes = (x: number): string => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return `${x.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
};

/** The human-readable report. */
export function formatPlanReport(plan: DistAttnPlan, spec: MaskSpec, timings: PlanTimings, warmMs: number | null, heads: HeadShape, checked?: { ok: boolean; errors: string[] }): string {
  const lines: string[] = [];
  const d = plan.dispatch;
  const oc = plan.overlapConfig;
  const stats = planStats(plan);
  lines.push(`mask: ${spec.description}`);
  lines.push(
    `cp ${plan.cpSize}: chunk ${d.chunkSize} (${d.numChunks} chunks, ${d.numChunks / plan.cpSize} per rank), pad ${d.padSize}; dispatch ${d.algorithm}; ` +
      `overlap degree ${plan.overlapDegree}${oc.noOverlap ? ' (no overlap)' : ''} (${oc.mode}, ${oc.alg})`,
  );
  lines.push('');
  const mean = stats.totalArea / plan.cpSize;
  const header = ['rank', 'area (cells)', 'area/mean', 'recv k/v tokens', 'sent copies', 'remote ranges', 'slices'];
  const rows = plan.perRank.map((r) => [
    String(r.rank),
    fmtInt(stats.areaPerRank[r.rank]),
    mean > 0 ? (stats.areaPerRank[r.rank] / mean).toFixed(3) : '-',
    fmtInt(stats.recvTokensPerRank[r.rank]),
    fmtInt(stats.sendTokensPerRank[r.rank]),
    String(stats.remoteRangesPerRank[r.rank]),
    String(stats.slicesPerRank[r.rank]),
  ]);
  lines.push(...table(header, rows));
  lines.push('');
  lines.push(`imbalance (max/mean area): ${stats.imbalance.toFixed(4)}`);
  lines.push(`communicated k/v tokens: ${fmtInt(stats.totalCommTokens)} in total, max ${fmtInt(Math.max(...stats.recvTokensPerRank))} per rank`);
  lines.push('');
  const baselines: CommSummary[] = [
    planCommSummary(plan, heads),
    ringZigzagBaseline(plan.globalMask, plan.totalSeqlenQ, plan.cpSize, heads, spec.cuSeqlens),
    ulyssesBaseline(plan.globalMask, plan.totalSeqlenQ, plan.cpSize, heads),
  ];
  lines.push(`comparison, forward, heads q/kv ${heads.numHeadsQ}/${heads.numHeadsKV}, head dim ${heads.headDim}, ${heads.bytesPerElement} bytes per element:`);
  lines.push(
    ...table(
      ['method', 'imbalance', 'recv tokens/rank (max)', 'tokens (total)', 'recv bytes/rank (max)', 'bytes (total)'],
      baselines.map((b) => [
        b.method,
        b.imbalance.toFixed(4),
        fmtInt(Math.max(...b.recvTokensPerRank)),
        fmtInt(b.totalTokens),
        fmtBytes(Math.max(...b.recvBytesPerRank)),
        fmtBytes(b.totalBytes),
      ]),
    ),
  );
  lines.push('  (ring: k/v of all other ranks, per-document zig-zag; ulysses: q, k, v and o rows, heads split over cp)');
  for (const b of baselines) if (b.note !== undefined) lines.push(`  note: ${b.method} ${b.note}`);
  lines.push('');
  const t = timings;
  lines.push(
    `solver time: ${t.total.toFixed(1)} ms (chunking ${t.chunking.toFixed(1)}, dispatch ${t.dispatch.toFixed(1)}, host slices ${t.hostSlices.toFixed(1)}, ` +
      `overlap ${t.overlap.toFixed(1)}, remote slices ${t.remoteSlices.toFixed(1)}, group collectives ${t.groupCollectives.toFixed(1)})` +
      (warmMs === null ? '' : ` on the first call; ${warmMs.toFixed(1)} ms once warm (median of 5 more calls)`),
  );
  if (checked !== undefined) lines.push(checked.ok ? 'check: the plan covers the mask exactly and every GroupCast delivers what its slices read' : `check FAILED:\n  ${checked.errors.join('\n  ')}`);
  return lines.join('\n');
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [fmt(header), ...rows.map(fmt)];
}

interface PlanCliOptions {
  mask: string;
  seqlen?: string;
  cp: string;
  chunk?: string;
  degree?: string;
  alg: string;
  overlapAlg: string;
  docs?: string;
  seed?: string;
  block?: string;
  window?: string;
  headsQ: string;
  headsKv: string;
  headDim: string;
  check?: boolean;
  json?: string | boolean;
}

function intOption(value: string | undefined, flag: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(flag, `must be an integer >= ${min}`, `got ${value}`);
  return n;
}

/** Runs the command; returns the process exit code. `write` receives everything printed. */
export function runPlanCommand(opts: PlanCliOptions, write: (text: string) => void): number {
  const seed = intOption(opts.seed, '--seed', 0) ?? freshSeed();
  const seqlen = intOption(opts.seqlen, '--seqlen', 1);
  const cp = intOption(opts.cp, '--cp', 1) as number;
  const chunk = intOption(opts.chunk, '--chunk', 1);
  const docs = intOption(opts.docs, '--docs', 1);
  const block = intOption(opts.block, '--block', 1);
  let window: [number, number] | undefined;
  if (opts.window !== undefined) {
    const parts = opts.window.split(',').map(Number);
    if (parts.length !== 2 || !parts.every((x) => Number.isInteger(x) && x >= -1)) throw new InvalidArgumentError('--window', 'must be "left,right" with integers >= -1 (-1: unbounded)', `got ${opts.window}`);
    window = [parts[0], parts[1]];
  }
  if (!(DISPATCH_ALG_TYPES as readonly string[]).includes(opts.alg)) throw new InvalidArgumentError('--alg', `must be one of ${DISPATCH_ALG_TYPES.join(', ')}`, `got ${opts.alg}`);
  if (opts.overlapAlg !== 'uniform' && opts.overlapAlg !== 'greedy') throw new InvalidArgumentError('--overlap-alg', 'must be uniform or greedy', `got ${opts.overlapAlg}`);
  const heads: HeadShape = {
    numHeadsQ: intOption(opts.headsQ, '--heads-q', 1) as number,
    numHeadsKV: intOption(opts.headsKv, '--heads-kv', 1) as number,
    headDim: intOption(opts.headDim, '--head-dim', 1) as number,
    bytesPerElement: BENCH_HEAD_SHAPE.bytesPerElement,
  };
  let overlapConfig: OverlapConfig;
  // 'auto' weighs compute against transfer with an H100 model of the given head shape, so the
  // chosen degree means something (with unit factors, compute always dominates).
  if (opts.degree === 'auto') overlapConfig = { mode: 'dynamic', alg: opts.overlapAlg, ...hardwareCostFactors(heads) };
  else overlapConfig = { degree: intOption(opts.degree, '--degree', 0) ?? 1, alg: opts.overlapAlg };

  const spec = buildMask(opts.mask, seqlen, { seed, ...(docs === undefined ? {} : { docs }), ...(block === undefined ? {} : { blockSize: block }), ...(window === undefined ? {} : { window }) });
  const request = {
    mask: spec.mask,
    totalSeqlenQ: spec.totalSeqlen,
    cpSize: cp,
    dispatchConfig: { ...(chunk === undefined ? {} : { chunkSize: chunk }), alg: { type: opts.alg as DispatchAlgType } as DispatchAlg },
    overlapConfig,
  };
  const { plan, timings } = planDistAttnTimed(request);
  // The first call pays for compiling the solver; a few more show the steady-state time.
  const again = Array.from({ length: 5 }, () => planDistAttnTimed(request).timings.total).sort((a, b) => a - b);
  const warm = again[2];
  const checked = opts.check === true ? checkPlan(plan) : undefined;
  if (opts.json === true) {
    write(JSON.stringify(planToJSON(plan)) + '\n');
  } else {
    write(formatPlanReport(plan, spec, timings, warm, heads, checked) + '\n');
    if (typeof opts.json === 'string') {
      writeFileSync(opts.json, JSON.stringify(planToJSON(plan)));
      write(`plan written to ${opts.json}\n`);
    }
  }
  return checked !== undefined && !checked.ok ? 1 : 0;
}

export function registerPlan(program: Command, write: (text: string) => void = (t) => process.stdout.write(t)): void {
  program
    .command('plan')
    .description('plan a distributed attention call: per-rank area, imbalance, communication, vs ring and Ulysses')
    .requiredOption('--mask <kind|file>', `${MASK_KINDS.join(' | ')} | a JSON mask file`)
    .option('--seqlen <n>', 'total tokens (required for the preset masks)')
    .requiredOption('--cp <p>', 'context-parallel size (number of ranks)')
    .option('--chunk <c>', 'upper bound on the dispatch chunk size (effective: min(c, ceil(N / (8·cp))))')
    .option('--degree <d>', 'overlap degree: remote stages (0: no overlap; auto: chosen by an H100 cost model of the head shape)', '1')
    .option('--alg <name>', `dispatch algorithm: ${DISPATCH_ALG_TYPES.join(', ')}`, 'min-heap')
    .option('--overlap-alg <name>', 'stage split: uniform or greedy', 'uniform')
    .option('--docs <k>', 'varlen masks: number of documents, cut uniformly at random (default: lengths sampled from the dataset histogram)')
    .option('--seed <s>', 'seed for the documents (default: fresh, printed)')
    .option('--block <b>', 'block-causal: block size', '2048')
    .option('--window <l,r>', 'sliding-window: left,right window (-1: unbounded)', '1024,0')
    .option('--heads-q <n>', 'query heads (for bytes and Ulysses)', String(BENCH_HEAD_SHAPE.numHeadsQ))
    .option('--heads-kv <n>', 'key/value heads', String(BENCH_HEAD_SHAPE.numHeadsKV))
    .option('--head-dim <n>', 'head dimension', String(BENCH_HEAD_SHAPE.headDim))
    .option('--check', 'prove the plan right with the checker (exact cell coverage, GroupCast deliveries)')
    .option('--json [path]', 'write the full plan as JSON: to stdout instead of the report, or to the file as well')
    .action((opts: PlanCliOptions) => {
      try {
        process.exitCode = runPlanCommand(opts, write);
      } catch (e) {
        if (e instanceof InvalidArgumentError) {
          process.stderr.write(`magi-attn plan: ${e.message}\n`);
          process.exitCode = 2;
        } else {
          throw e;
        }
      }
    });
}
