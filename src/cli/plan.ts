/**
 * `magi-attn plan`: plans a distributed attention call for a mask and a cp size and prints what it
 * costs: per-rank area and imbalance, the k/v tokens each rank receives, the same figures for ring
 * attention (zig-zag) and Ulysses on the same mask, and the solver's own run time. `--json` writes
 * the full plan instead (or as well, with a path). The mask and report builders are exported so
 * tests and other tools can reuse them.
 */
import { accessSync, constants, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { Option, type Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { isMaskPreset, MASK_PRESETS, presetMask, type MaskSpec, type PresetOptions } from '../mask/presets.js';
import { describeSliceTypes, maskFromJSON, type ParsedMask } from '../mask/mask-json.js';
import { freshSeed } from '../util/rng.js';
import { median } from '../util/stats.js';
import {
  BENCH_HEAD_SHAPE,
  checkPlan,
  interNodeRows,
  DISPATCH_ALG_TYPES,
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
  type MeshShape,
  type OverlapConfig,
  type PlanTimings,
} from '../solver/index.js';
import { autoOverlapConfig, kernelShapeOf, kvTokenBytes, parseLink } from '../cost/index.js';
import { addCostModelOptions, defaultKernelJson, loadThroughput } from './cost-model.js';
import { intAtLeast, intOrWord, windowPair } from './flags.js';
import type { CliContext } from './program.js';
import { renderTable } from './table.js';

/**
 * A preset mask (src/mask/presets.ts) or, for any other name, a JSON mask file. Errors name the
 * flags (--seqlen, --docs, --mask).
 */
export function buildMask(kind: string, seqlen: number | undefined, options: Omit<PresetOptions, 'argumentPrefix'>): MaskSpec {
  if (!isMaskPreset(kind)) return readMaskFile(kind, seqlen);
  if (seqlen === undefined) throw new InvalidArgumentError('--seqlen', `is required for the ${kind} mask`);
  return presetMask(kind, seqlen, { ...options, argumentPrefix: '--' });
}

/** A JSON mask file (format: mask/mask-json.ts); --seqlen, when given, overrides its totalSeqlen. */
function readMaskFile(path: string, seqlen: number | undefined): MaskSpec {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InvalidArgumentError('--mask', `must be one of ${MASK_PRESETS.join(', ')} or a readable JSON mask file`, `${path}: ${(e as Error).message}`);
  }
  let parsed: ParsedMask;
  try {
    parsed = maskFromJSON(json);
  } catch (e) {
    if (e instanceof InvalidArgumentError) throw new InvalidArgumentError('--mask', `${path}: ${e.message}`);
    throw e;
  }
  const totalSeqlen = seqlen ?? parsed.totalSeqlen;
  return { mask: parsed.mask, totalSeqlen, description: `${path}: ${describeSliceTypes(parsed.mask)}, ${totalSeqlen} tokens` };
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

/** Per-rank rows up to this cp; above it the report summarises them unless asked for every rank. */
export const PER_RANK_ROWS_MAX_CP = 32;

export interface ReportOptions {
  /** Median of more solver runs once warm (--timing), in ms. */
  readonly warmMs?: number;
  /** Ranks per node for the inter-node traffic line (default 8; no line unless cp is a larger multiple). */
  readonly ranksPerNode?: number;
  /** Print every rank's row even above PER_RANK_ROWS_MAX_CP. */
  readonly perRank?: boolean;
  readonly checked?: { ok: boolean; errors: string[] };
}

/** The human-readable report. */
export function formatPlanReport(plan: DistAttnPlan, spec: MaskSpec, timings: PlanTimings, heads: HeadShape, options: ReportOptions = {}): string {
  const lines: string[] = [];
  const d = plan.dispatch;
  const oc = plan.overlapConfig;
  const stats = planStats(plan);
  lines.push(`mask: ${spec.description}`);
  lines.push(
    `cp ${plan.cpSize}: chunk ${d.chunkSize} (${d.numChunks} chunks, ` +
      (d.unevenShard ? `uneven shard: ${fmtInt(Math.min(...d.shardSeqlens))}-${fmtInt(d.shardSeqlen)} tokens per rank), ` : `${d.numChunks / plan.cpSize} per rank), pad ${d.padSize}; `) +
      `dispatch ${d.algorithm}; ` +
      `overlap degree ${plan.overlapDegree}${oc.noOverlap ? ' (no overlap)' : ''} (${oc.mode}, ${oc.alg})`,
  );
  lines.push('');
  const mean = stats.totalArea / plan.cpSize;
  const columns: Array<[string, (r: number) => number, (x: number) => string]> = [
    ['area (cells)', (r) => stats.areaPerRank[r], fmtInt],
    ['area/mean', (r) => (mean > 0 ? stats.areaPerRank[r] / mean : 0), (x) => x.toFixed(3)],
    ['recv k/v tokens', (r) => stats.recvTokensPerRank[r], fmtInt],
    ['sent copies', (r) => stats.sendTokensPerRank[r], fmtInt],
    ['remote ranges', (r) => stats.remoteRangesPerRank[r], String],
    ['slices', (r) => stats.slicesPerRank[r], String],
  ];
  if (plan.cpSize <= PER_RANK_ROWS_MAX_CP || options.perRank === true) {
    lines.push(
      renderTable(
        ['rank', ...columns.map((c) => c[0])],
        plan.perRank.map((r) => [String(r.rank), ...columns.map(([, get, fmt]) => fmt(get(r.rank)))]),
      ),
    );
  } else {
    const ranks = plan.perRank.map((r) => r.rank);
    const summary = (pick: (sorted: number[]) => number): string[] => columns.map(([, get, fmt]) => fmt(pick(ranks.map(get).sort((x, y) => x - y))));
    lines.push(
      renderTable(
        [`over ${plan.cpSize} ranks`, ...columns.map((c) => c[0])],
        [
          ['min', ...summary((v) => v[0])],
          ['median', ...summary(median)],
          ['max', ...summary((v) => v[v.length - 1])],
        ],
      ),
    );
    lines.push(`  (above cp ${PER_RANK_ROWS_MAX_CP} the ranks are summarised; --per-rank prints every rank)`);
  }
  lines.push('');
  lines.push(`imbalance (max/mean area): ${stats.imbalance.toFixed(4)}`);
  lines.push(`communicated k/v tokens: ${fmtInt(stats.totalCommTokens)} in total, max ${fmtInt(Math.max(...stats.recvTokensPerRank))} per rank`);
  lines.push('');
  const baselines: CommSummary[] = [
    planCommSummary(plan, heads),
    ringZigzagBaseline(plan.globalMask, plan.totalSeqlenQ, plan.cpSize, heads, spec.cuSeqlens),
    ulyssesBaseline(plan.globalMask, plan.totalSeqlenQ, plan.cpSize, heads),
  ];
  lines.push(`comparison, forward, heads q/kv ${heads.numHeadsQ}/${heads.numHeadsKv}, head dim ${heads.headDim}, ${heads.bytesPerElement} bytes per element:`);
  lines.push(
    renderTable(
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
  const inter = interNodeTraffic(plan, options.ranksPerNode ?? plan.mesh?.ranksPerNode ?? 8, heads);
  if (inter !== null) {
    lines.push('');
    lines.push(
      `inter-node k/v bytes, forward (${inter.mesh.nodes} nodes of ${inter.mesh.ranksPerNode}): flat ${fmtBytes(inter.flatBytes)}, ` +
        `hierarchical ${fmtBytes(inter.hierBytes)} (${(inter.hierBytes / Math.max(1, inter.flatBytes)).toFixed(3)}x)${plan.mesh === null ? '' : '; this plan is hierarchical'}`,
    );
    lines.push('  (flat: a copy per destination rank in another node; hierarchical: one per destination node, relayed inside it; the backward reduce moves as many float32 rows back)');
  }
  lines.push('');
  const t = timings;
  lines.push(
    `solver time: ${t.total.toFixed(1)} ms (chunking ${t.chunking.toFixed(1)}, dispatch ${t.dispatch.toFixed(1)}, host slices ${t.hostSlices.toFixed(1)}, ` +
      `overlap ${t.overlap.toFixed(1)}, remote slices ${t.remoteSlices.toFixed(1)}, group collectives ${t.groupCollectives.toFixed(1)})` +
      (options.warmMs === undefined ? ' (a first call; --timing adds the warm time)' : ` on the first call; ${options.warmMs.toFixed(1)} ms once warm (median of 5 more calls)`),
  );
  const checked = options.checked;
  if (checked !== undefined) {
    const hier = plan.mesh === null ? '' : ' (the hierarchical ones too, each token crossing into a node once)';
    lines.push(checked.ok ? `check: the plan covers the mask exactly and every GroupCast delivers what its slices read${hier}` : `check FAILED:\n  ${checked.errors.join('\n  ')}`);
  }
  return lines.join('\n');
}

/**
 * Inter-node bytes of a plan's forward GroupCasts (k and v) with `ranksPerNode` ranks per node,
 * flat and hierarchical, from the flat arguments; null unless cp is a multiple of ranksPerNode
 * above it (one node has no inter-node traffic).
 */
export function interNodeTraffic(plan: DistAttnPlan, ranksPerNode: number, heads: HeadShape): { mesh: MeshShape; flatBytes: number; hierBytes: number } | null {
  const P = plan.cpSize;
  if (P <= ranksPerNode || P % ranksPerNode !== 0) return null;
  const mesh = { nodes: P / ranksPerNode, ranksPerNode };
  let flat = 0;
  let hier = 0;
  for (let s = 0; s < plan.overlapDegree; s++) {
    const rows = interNodeRows(plan.perRank.map((rp) => rp.stages[s].groupCast), mesh);
    flat += rows.flat;
    hier += rows.hier;
  }
  const row = kvTokenBytes(heads.numHeadsKv, heads.headDim, heads.bytesPerElement);
  return { mesh, flatBytes: flat * row, hierBytes: hier * row };
}

/** Throws unless `path` can be created or overwritten (checked before any work). */
function requireWritableFile(path: string, flag: string): void {
  try {
    accessSync(dirname(resolvePath(path)), constants.W_OK);
    if (existsSync(path)) accessSync(path, constants.W_OK);
  } catch (e) {
    throw new InvalidArgumentError(flag, 'must be a writable file path', `${path}: ${(e as Error).message}`);
  }
}

/** The flags of `magi-attn plan`, as commander's parsers give them. */
export interface PlanOptions {
  mask: string;
  seqlen?: number;
  cp: number;
  chunk?: number;
  degree: number | 'auto';
  alg: DispatchAlgType;
  overlapAlg: 'uniform' | 'greedy';
  docs?: number;
  seed?: number;
  block: number;
  window: [number, number];
  headsQ: number;
  headsKv: number;
  headDim: number;
  link: string;
  kernelJson?: string;
  check?: boolean;
  timing?: boolean;
  ranksPerNode: number;
  hier?: boolean;
  unevenShard?: boolean;
  perRank?: boolean;
  json?: string | boolean;
}

/** Runs the command; returns the process exit code. `write` receives everything printed. */
export function runPlanCommand(opts: PlanOptions, write: (text: string) => void): number {
  if (typeof opts.json === 'string') requireWritableFile(opts.json, '--json');
  const seed = opts.seed ?? freshSeed();
  const heads: HeadShape = { numHeadsQ: opts.headsQ, numHeadsKv: opts.headsKv, headDim: opts.headDim, bytesPerElement: BENCH_HEAD_SHAPE.bytesPerElement };
  // 'auto' lets the overlap solver weigh each stage's compute against its transfer with the cost
  // model that `magi-attn simulate` and the planner page use (measured kernel throughput, links).
  const link = parseLink(opts.link);
  const stages = opts.degree === 'auto' ? { auto: true as const, throughput: loadThroughput(opts.kernelJson ?? defaultKernelJson()) } : { auto: false as const, degree: opts.degree };
  const spec = buildMask(opts.mask, opts.seqlen, { seed, ...(opts.docs === undefined ? {} : { docs: opts.docs }), blockSize: opts.block, window: opts.window });
  const overlapConfig: OverlapConfig =
    stages.auto
      ? autoOverlapConfig({ throughput: stages.throughput, shape: kernelShapeOf(spec.mask, opts.mask), link, heads }, spec.totalSeqlen, opts.cp, opts.overlapAlg)
      : { degree: stages.degree, alg: opts.overlapAlg };
  let mesh: MeshShape | undefined;
  if (opts.hier === true) {
    if (opts.cp % opts.ranksPerNode !== 0) throw new InvalidArgumentError('--ranks-per-node', 'must divide --cp for a hierarchical plan (--hier)', `${opts.ranksPerNode} and cp ${opts.cp}`);
    mesh = { nodes: opts.cp / opts.ranksPerNode, ranksPerNode: opts.ranksPerNode };
  }
  const request = {
    mask: spec.mask,
    totalSeqlenQ: spec.totalSeqlen,
    cpSize: opts.cp,
    dispatchConfig: { ...(opts.chunk === undefined ? {} : { chunkSize: opts.chunk }), alg: { type: opts.alg } as DispatchAlg, unevenShard: opts.unevenShard === true },
    overlapConfig,
    ...(mesh === undefined ? {} : { mesh }),
  };
  const { plan, timings } = planDistAttnTimed(request);
  // The first call pays for compiling the solver; a few more show the steady-state time.
  const warmMs = opts.timing === true ? Array.from({ length: 5 }, () => planDistAttnTimed(request).timings.total).sort((a, b) => a - b)[2] : undefined;
  const checked = opts.check === true ? checkPlan(plan) : undefined;
  if (opts.json === true) {
    write(JSON.stringify(planToJSON(plan)) + '\n');
  } else {
    write(formatPlanReport(plan, spec, timings, heads, { ...(warmMs === undefined ? {} : { warmMs }), perRank: opts.perRank === true, ranksPerNode: opts.ranksPerNode, ...(checked === undefined ? {} : { checked }) }) + '\n');
    if (typeof opts.json === 'string') {
      try {
        writeFileSync(opts.json, JSON.stringify(planToJSON(plan)));
      } catch (e) {
        throw new InvalidArgumentError('--json', 'must be a writable file path', `${opts.json}: ${(e as Error).message}`);
      }
      write(`plan written to ${opts.json}\n`);
    }
  }
  return checked !== undefined && !checked.ok ? 1 : 0;
}

export function registerPlan(program: Command, ctx: CliContext): void {
  const command = program
    .command('plan')
    .description('plan a distributed attention call: per-rank area, imbalance, communication, vs ring and Ulysses')
    .requiredOption('--mask <kind|file>', `${MASK_PRESETS.join(' | ')} | a JSON mask file (format in the README)`)
    .option('--seqlen <n>', 'total tokens (required for the preset masks)', intAtLeast(1))
    .requiredOption('--cp <p>', 'context-parallel size (number of ranks)', intAtLeast(1))
    .option('--chunk <c>', 'upper bound on the dispatch chunk size (effective: min(c, ceil(N / (8·cp))))', intAtLeast(1))
    .option('--degree <d>', 'overlap degree: remote stages (0: no overlap; auto: chosen per rank by the cost model, as magi-attn simulate does)', intOrWord(0, ['auto'] as const), 1)
    .addOption(new Option('--alg <name>', 'dispatch algorithm').choices(DISPATCH_ALG_TYPES).default('min-heap'))
    .addOption(new Option('--overlap-alg <name>', 'stage split').choices(['uniform', 'greedy']).default('uniform'))
    .option('--docs <k>', 'varlen masks: number of documents, cut uniformly at random (default: lengths sampled from the dataset histogram)', intAtLeast(1))
    .option('--seed <s>', 'seed for the documents (default: fresh, printed)', intAtLeast(0))
    .option('--block <b>', 'block-causal: block size', intAtLeast(1), 2048)
    .option('--window <l,r>', 'sliding-window: left,right window (-1: unbounded)', windowPair, [1024, 0])
    .option('--heads-q <n>', 'query heads (for bytes and Ulysses)', intAtLeast(1), BENCH_HEAD_SHAPE.numHeadsQ)
    .option('--heads-kv <n>', 'key/value heads', intAtLeast(1), BENCH_HEAD_SHAPE.numHeadsKv)
    .option('--head-dim <n>', 'head dimension', intAtLeast(1), BENCH_HEAD_SHAPE.headDim)
    .option('--ranks-per-node <n>', 'ranks per node: the inter-node traffic line (flat vs hierarchical), and the mesh of --hier', intAtLeast(1), 8)
    .option('--hier', 'plan hierarchical GroupCast / GroupReduce over nodes of --ranks-per-node ranks (--check proves them)')
    .option('--uneven-shard', 'no padding: ranks may hold different numbers of tokens (DispatchConfig.unevenShard)');
  addCostModelOptions(command, ' (with --degree auto)')
    .option('--check', 'prove the plan right with the checker (exact cell coverage, GroupCast deliveries)')
    .option('--timing', 'also time 5 more solver runs once warm (the plan is computed once otherwise)')
    .option('--per-rank', `print every rank's row (above cp ${PER_RANK_ROWS_MAX_CP} the ranks are summarised)`)
    .option('--json [path]', 'write the full plan as JSON: to stdout instead of the report, or to the file as well')
    .action((opts: PlanOptions) => {
      ctx.exitCode = runPlanCommand(opts, ctx.out);
    });
}
