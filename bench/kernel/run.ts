/**
 * The kernel benchmark (issue 5, 04 §3): our CUDA flex-flash-attention forward (and backward,
 * once src/kernels/cuda/ffa-backward.ts exists) against PyTorch's SDPA (cuDNN and flash backends)
 * and FlexAttention, on the same six masks (bench/kernel/masks.ts) at 4k-64k tokens, 64 q heads :
 * 8 kv heads, D = 128, bf16, in one device command:
 *
 *   source .device/boot.sh && node dist/bench/kernel/run.js [--out DIR | --update-results]
 *     [--seqlens 4096,8192,16384,32768,65536] [--masks full,causal,...] [--seed 42]
 *     [--iters 20] [--warmup 5] [--python python3] [--no-baselines] [--no-ours]
 *     [--baseline-budget-s S]   (baselines.py skips its remaining rows after S seconds; 0 = none)
 *     [--methods cudnn,flash,flex] (the baselines to run)
 *     [--ours-bwd-budget-s S]   (our backward rows are skipped once our part has run S seconds)
 *     [--settle-s S]            (GPU idle before each method's forward timing of a cell; default 2)
 *   node dist/bench/kernel/run.js --replot bench/results/kernel.json   (table + plot again, no GPU)
 *   node dist/bench/kernel/run.js --merge A/kernel.json,B/kernel.json --out DIR
 *     (runs over disjoint sequence lengths, e.g. two device calls, as one result: merge.ts)
 *
 * Writes under --out (default bench/out; bench/results with --update-results): kernel-masks.json (the masks, read by
 * baselines.py), kernel-baselines.json (its raw rows), kernel-partial.json (the rows so far, after
 * each part), kernel.json, kernel.csv and kernel.svg
 * (grouped bars per mask at the largest size), and prints a markdown table with the GPU's name.
 *
 * Timing, ours and the baselines alike (timingCounts in timing.ts, timing_counts in baselines.py): one
 * untimed call, then `warmup` warm-up calls (fewer when they would take over 1 s, at least 1),
 * then `iters` calls (fewer when they would take over 2 s, at least 5), each bracketed by its own
 * pair of CUDA events, all queued before one wait at the end (timeLaunches, time_calls); the
 * median. Before each method's forward timing of each cell, the GPU idles
 * --settle-s seconds (timing.ts SETTLE_S_DEFAULT says why: the board's power limit makes a reading
 * depend on what ran just before). The baselines run in one Python process per sequence length,
 * FlexAttention compiled with static shapes for it (baselines.py).
 * TFLOP/s = 4 · area · Hq · D / t forward and 2.5x that backward (04 §3.3), area = the slice
 * list's area. Only kernel launches are timed (planning and uploads happen in prepare()). Our
 * inputs: N(0, 1) drawn on the device, as the baselines' torch.randn (inputs.ts says why).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildMasks, describeMask, maskToJson, MASK_NAMES, type BenchMask, type MaskName, type MasksFile } from './masks.js';
import { kernelSvg, type PlotRow } from './plot.js';
import { randomDeviceTensor } from './inputs.js';
import { mergeKernelResults } from './merge.js';
import { SETTLE_S_DEFAULT, settle, timeLaunches } from './timing.js';
import { COMMITTED_RESULTS_DIR, SCRATCH_RESULTS_DIR } from '../output.js';

const HQ = 64;
const HKV = 8;
const DIM = 128;

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const flag = (name: string): boolean => argv.includes(name);

export const METHODS = ['ours', 'cudnn', 'flash', 'flex'] as const;
export type Method = (typeof METHODS)[number];
const METHOD_LABEL: Record<Method, string> = { ours: 'ours (FFA)', cudnn: 'SDPA cuDNN', flash: 'SDPA flash', flex: 'FlexAttention' };

export interface ResultRow {
  mask: MaskName;
  seqlen: number;
  area: number;
  method: Method;
  fwd_ms: number | null;
  fwd_tflops: number | null;
  fwd_iters?: number;
  bwd_ms: number | null;
  bwd_tflops: number | null;
  bwd_iters?: number;
  /** Why a method does not run this mask (N/A), or the error it raised. */
  na?: string;
  error?: string;
  note?: string;
  max_abs_err_vs_dense?: number;
}

export interface KernelBenchResult {
  gpu: string;
  env: Record<string, unknown>;
  settings: { headsQ: number; headsKv: number; dim: number; dtype: string; seed: number; iters: number; warmup: number; seqlens: number[]; settleS?: number };
  masks: Array<{ name: MaskName; seqlen: number; area: number; slices: number; docs: number; window: number | null; block: number | null }>;
  results: ResultRow[];
}

// ---------------------------------------------------------------------------------------------
// our kernels

async function timeOurs(masks: BenchMask[], iters: number, warmup: number, budgetS: number, settleS: number): Promise<{ gpu: string; rows: ResultRow[] }> {
  const tStart = performance.now();
  const { CudaDevice } = await import('../../src/device/index.js');
  const { CudaFfaForward } = await import('../../src/kernels/cuda/ffa-forward.js');
  const { CudaFfaBackward } = await import('../../src/kernels/cuda/ffa-backward.js');
  const dev = CudaDevice.open(0);
  const gpu = dev.name;
  console.log(`ours on ${gpu} (${dev.smCount} SMs), bf16, D=${DIM}, heads ${HQ}:${HKV}`);
  const maxS = Math.max(...masks.map((m) => m.seqlen));
  // N(0, 1) drawn on the device, as the baselines' torch.randn (bench/kernel/inputs.ts says why)
  const inputs = await Promise.all([randomDeviceTensor(dev, [maxS, HQ, DIM], 1), randomDeviceTensor(dev, [maxS, HKV, DIM], 2), randomDeviceTensor(dev, [maxS, HKV, DIM], 3), randomDeviceTensor(dev, [maxS, HQ, DIM], 4)]);
  const [q, k, v, dout] = inputs.map((t) => t.buffer);
  const out = dev.alloc(maxS * HQ * DIM * 2);
  const lse = dev.alloc(maxS * HQ * 4);
  const grads = { dout, dq: dev.alloc(maxS * HQ * DIM * 2), dk: dev.alloc(maxS * HKV * DIM * 2), dv: dev.alloc(maxS * HKV * DIM * 2) };
  // the default main kernels: Hopper (TMA + wgmma) on compute capability 9.0, mma.sync elsewhere
  const fwdKernel = new CudaFfaForward(dev);
  const bwdKernel = new CudaFfaBackward(dev);
  const kernels = `fwd ${fwdKernel.sm90 !== null ? 'sm90' : 'mma'}, bwd ${bwdKernel.usesSm90(DIM) ? 'sm90' : 'mma'}`;
  console.log(`our main kernels: ${kernels}`);
  const scale = 1 / Math.sqrt(DIM);
  const rows: ResultRow[] = [];
  for (const m of masks) {
    const shape = { tokensQ: m.seqlen, tokensK: m.seqlen, headsQ: HQ, headsKv: HKV, dim: DIM, dtype: 'bfloat16' as const };
    const flopsFwd = 4 * m.area * HQ * DIM;
    const row: ResultRow = { mask: m.name, seqlen: m.seqlen, area: m.area, method: 'ours', fwd_ms: null, fwd_tflops: null, bwd_ms: null, bwd_tflops: null };
    try {
      const problem = fwdKernel.prepare(shape, m.slices);
      settle(dev, settleS);
      const f = timeLaunches(dev, () => problem.launch(q, k, v, out, lse, scale), iters, warmup);
      row.fwd_ms = f.ms;
      row.fwd_iters = f.n;
      row.fwd_tflops = flopsFwd / (f.ms * 1e-3) / 1e12;
      row.note = kernels + (problem.merge ? '; merge epilogue' : '');
      const elapsed = (performance.now() - tStart) / 1e3;
      if (elapsed > budgetS) {
        row.note = `${row.note ? row.note + '; ' : ''}bwd skipped: past the ${budgetS} s budget of our rows`;
      } else {
        try {
          problem.launch(q, k, v, out, lse, scale); // out / lse of this mask for the backward
          const bp = bwdKernel.prepare(shape, m.slices);
          const bufs = { q, k, v, out, dout: grads.dout, lse, dq: grads.dq, dk: grads.dk, dv: grads.dv };
          const launch = (): void => bp.launch(bufs, scale);
          const b = timeLaunches(dev, launch, iters, warmup);
          row.bwd_ms = b.ms;
          row.bwd_iters = b.n;
          row.bwd_tflops = (2.5 * flopsFwd) / (b.ms * 1e-3) / 1e12;
          bp.free();
        } catch (e) {
          row.note = `${row.note ? row.note + '; ' : ''}bwd failed: ${(e as Error).message.split('\n')[0].slice(0, 160)}`;
        }
      }
      problem.free();
    } catch (e) {
      row.error = (e as Error).message.split('\n')[0].slice(0, 200);
    }
    rows.push(row);
    const show = row.error ?? `fwd ${row.fwd_ms!.toFixed(3)} ms ${row.fwd_tflops!.toFixed(1)} TF/s` + (row.bwd_ms !== null ? `, bwd ${row.bwd_ms.toFixed(3)} ms ${row.bwd_tflops!.toFixed(1)} TF/s` : '');
    console.log(`[ours] ${m.name.padStart(20)} S=${String(m.seqlen).padStart(6)}: ${show}`);
  }
  for (const b of [q, k, v, out, lse, ...Object.values(grads)]) b.free();
  dev.close();
  return { gpu, rows };
}

// ---------------------------------------------------------------------------------------------
// baselines

function baselinesScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'baselines.py'), resolve(here, '../../../bench/kernel/baselines.py'), resolve('bench/kernel/baselines.py')];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) throw new Error(`bench/kernel/baselines.py not found (looked in ${candidates.join(', ')})`);
  return found;
}

/**
 * Runs baselines.py once per sequence length (a fresh Python process each, so every compiled
 * baseline is built for its own shape) and gathers the rows; each process writes its own JSON,
 * the merged rows go to `outPath`. `budgetS` bounds the whole baseline part (lengths not started
 * by then are skipped and reported).
 */
function runBaselines(
  python: string,
  masksPath: string,
  outPath: string,
  seqlens: number[],
  iters: number,
  warmup: number,
  budgetS: number,
  methods: string,
  settleS: number,
  onRows: (rows: ResultRow[]) => void,
): { env: Record<string, unknown>; rows: ResultRow[] } | null {
  const script = baselinesScript();
  const t0 = performance.now();
  let env: Record<string, unknown> | null = null;
  const raw: Array<Record<string, unknown>> = [];
  const skipped: number[] = [];
  const smallest = Math.min(...seqlens);
  for (const S of seqlens) {
    const spent = (performance.now() - t0) / 1e3;
    if (budgetS > 0 && spent > budgetS) {
      skipped.push(S);
      continue;
    }
    const part = outPath.replace(/\.json$/, `-${S}.json`);
    const left = budgetS > 0 ? String(Math.max(1, budgetS - spent)) : '0';
    const cmd = [script, masksPath, part, '--seqlen', String(S), '--check-seqlen', String(smallest), '--iters', String(iters), '--warmup', String(warmup), '--budget-s', left, '--methods', methods, '--settle-s', String(settleS)];
    console.log(`$ ${python} ${cmd.join(' ')}`);
    const r = spawnSync(python, cmd, { stdio: 'inherit' });
    if (!existsSync(part)) {
      console.log(`note: the baselines for S=${S} exited with ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ''}; no rows`);
      continue;
    }
    const json = JSON.parse(readFileSync(part, 'utf8')) as { env: Record<string, unknown>; results: Array<Record<string, unknown>> };
    env ??= { ...json.env, wall_s_by_seqlen: {} as Record<string, unknown> };
    (env.wall_s_by_seqlen as Record<string, unknown>)[String(S)] = json.env.wall_s ?? null;
    raw.push(...json.results);
    rmSync(part);
    onRows(json.results.map(toResultRow));
  }
  if (env === null) return null;
  if (skipped.length > 0) env.skipped_seqlens = skipped;
  writeFileSync(outPath, JSON.stringify({ env, results: raw }, null, 1) + '\n');
  return { env, rows: raw.map(toResultRow) };
}

function toResultRow(x: Record<string, unknown>): ResultRow {
  return {
    mask: x.mask as MaskName,
    seqlen: x.seqlen as number,
    area: x.area as number,
    method: x.method as Method,
    fwd_ms: (x.fwd_ms as number | undefined) ?? null,
    fwd_tflops: (x.fwd_tflops as number | undefined) ?? null,
    ...(x.fwd_iters !== undefined ? { fwd_iters: x.fwd_iters as number } : {}),
    bwd_ms: (x.bwd_ms as number | undefined) ?? null,
    bwd_tflops: (x.bwd_tflops as number | undefined) ?? null,
    ...(x.bwd_iters !== undefined ? { bwd_iters: x.bwd_iters as number } : {}),
    ...(x.na !== undefined ? { na: x.na as string } : {}),
    ...(x.error !== undefined ? { error: x.error as string } : {}),
    ...(x.note !== undefined ? { note: x.note as string } : {}),
    ...(x.max_abs_err_vs_dense !== undefined ? { max_abs_err_vs_dense: x.max_abs_err_vs_dense as number } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// report

function cell(r: ResultRow | undefined, pass: 'fwd' | 'bwd'): string {
  if (r === undefined) return '—';
  if (r.na !== undefined) return 'N/A';
  if (r.error !== undefined) return 'err';
  const v = pass === 'fwd' ? r.fwd_tflops : r.bwd_tflops;
  return v === null ? '—' : v.toFixed(0);
}

export function markdownTable(res: KernelBenchResult): string {
  const lines: string[] = [];
  lines.push(`${res.gpu}: TFLOP/s = 4·area·Hq·D / median time (bwd 2.5x), bf16, ${res.settings.headsQ}:${res.settings.headsKv} heads, D=${res.settings.dim}; N/A = not supported by that method, — = not run`);
  lines.push('');
  const ran = methodsRun(res);
  const head = ['mask', 'seqlen', ...ran.map((m) => `${m} fwd`), ...ran.map((m) => `${m} bwd`)];
  lines.push(`| ${head.join(' | ')} |`);
  lines.push(`|${head.map(() => '---').join('|')}|`);
  for (const mk of res.masks) {
    const find = (method: Method): ResultRow | undefined => res.results.find((r) => r.mask === mk.name && r.seqlen === mk.seqlen && r.method === method);
    const cells = [mk.name, String(mk.seqlen), ...ran.map((m) => cell(find(m), 'fwd')), ...ran.map((m) => cell(find(m), 'bwd'))];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** The methods that have rows in this run (a run with --methods or --no-ours leaves some out: no empty columns or bars for them). */
function methodsRun(res: KernelBenchResult): Method[] {
  return METHODS.filter((m) => res.results.some((r) => r.method === m));
}

function csv(res: KernelBenchResult): string {
  const cols = ['mask', 'seqlen', 'area', 'method', 'fwd_ms', 'fwd_tflops', 'bwd_ms', 'bwd_tflops', 'status', 'note'] as const;
  const q = (s: string): string => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const lines = [cols.join(',')];
  for (const r of res.results) {
    const status = r.na !== undefined ? `N/A: ${r.na}` : r.error !== undefined ? `error: ${r.error}` : 'ok';
    const num = (x: number | null, d: number): string => (x === null ? '' : x.toFixed(d));
    lines.push(
      [r.mask, String(r.seqlen), String(r.area), r.method, num(r.fwd_ms, 4), num(r.fwd_tflops, 1), num(r.bwd_ms, 4), num(r.bwd_tflops, 1), q(status), q(r.note ?? '')].join(','),
    );
  }
  return lines.join('\n') + '\n';
}

function plot(res: KernelBenchResult): string {
  // the largest length at which a baseline ran on more than one mask (else the largest)
  const measured = (S: number): boolean => new Set(res.results.filter((r) => r.seqlen === S && r.method !== 'ours' && r.fwd_tflops !== null).map((r) => r.mask)).size > 1;
  const lengths = [...new Set(res.masks.map((m) => m.seqlen))].sort((a, b) => b - a);
  const maxS = lengths.find(measured) ?? lengths[0];
  const masks = res.masks.filter((m) => m.seqlen === maxS).map((m) => m.name);
  const rows: PlotRow[] = res.results
    .filter((r) => r.seqlen === maxS)
    .map((r) => ({ mask: r.mask, method: METHOD_LABEL[r.method], fwd: r.na || r.error ? null : r.fwd_tflops, bwd: r.na || r.error ? null : r.bwd_tflops }));
  const methods = methodsRun(res).map((m) => METHOD_LABEL[m]);
  // the baselines' versions (cuDNN as torch reports it: 91900 = 9.19.0)
  const cudnn = typeof res.env.cudnn === 'number' ? `, cuDNN ${Math.floor(res.env.cudnn / 10000)}.${Math.floor(res.env.cudnn / 100) % 100}.${res.env.cudnn % 100}` : '';
  const torch = typeof res.env.torch === 'string' ? ` (torch ${res.env.torch}${cudnn})` : '';
  return kernelSvg(rows, masks, methods, `Attention kernels on ${res.gpu}${torch}, S = ${maxS}, bf16, 64:8 heads, D = 128`);
}

function writeReport(res: KernelBenchResult, outDir: string): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'kernel.json'), JSON.stringify(res, null, 1) + '\n');
  writeFileSync(join(outDir, 'kernel.csv'), csv(res));
  writeFileSync(join(outDir, 'kernel.svg'), plot(res));
  console.log('\n' + markdownTable(res) + '\n');
  const notes = res.results.filter((r) => r.na !== undefined || r.error !== undefined || r.note !== undefined);
  const seen = new Set<string>();
  for (const r of notes) {
    const text = r.na !== undefined ? `N/A: ${r.na}` : r.error !== undefined ? `error: ${r.error}` : r.note!;
    const key = `${r.method} ${r.mask} ${text}`;
    if (seen.has(key)) continue;
    seen.add(key);
    console.log(`- ${r.method} / ${r.mask}: ${text}`);
  }
  console.log(`wrote ${join(outDir, 'kernel.json')}, kernel.csv, kernel.svg`);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const merge = opt('--merge', '');
  if (merge !== '') {
    const files = merge.split(',');
    const res = mergeKernelResults(files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as KernelBenchResult));
    writeReport(res, opt('--out', dirname(files[0])));
    return;
  }
  const replot = opt('--replot', '');
  if (replot !== '') {
    const res = JSON.parse(readFileSync(replot, 'utf8')) as KernelBenchResult;
    writeReport(res, opt('--out', dirname(replot)));
    return;
  }
  // bench/out (untracked) unless --update-results (bench/output.ts: what the READMEs quote)
  const outDir = opt('--out', flag('--update-results') ? COMMITTED_RESULTS_DIR : SCRATCH_RESULTS_DIR);
  const seed = Number(opt('--seed', '42'));
  const iters = Number(opt('--iters', '20'));
  const warmup = Number(opt('--warmup', '5'));
  const settleS = Number(opt('--settle-s', String(SETTLE_S_DEFAULT)));
  if (!(settleS >= 0)) throw new Error(`--settle-s must be a number of seconds >= 0, got ${opt('--settle-s', '')}`);
  const seqlens = opt('--seqlens', '4096,8192,16384,32768,65536').split(',').map(Number);
  const names = opt('--masks', MASK_NAMES.join(',')).split(',') as MaskName[];
  for (const n of names) if (!MASK_NAMES.includes(n)) throw new Error(`unknown mask ${n} (known: ${MASK_NAMES.join(', ')})`);
  mkdirSync(outDir, { recursive: true });

  const t0 = performance.now();
  const masks = buildMasks(names, seqlens, seed);
  console.log(`masks (seed ${seed}; documents: sampleDocLengths(S, new Rng(seed + S))):`);
  for (const m of masks) console.log(`  ${describeMask(m)}`);
  const masksFile: MasksFile = { seed, heads_q: HQ, heads_kv: HKV, head_dim: DIM, dtype: 'bfloat16', masks: masks.map(maskToJson) };
  const masksPath = join(outDir, 'kernel-masks.json');
  writeFileSync(masksPath, JSON.stringify(masksFile) + '\n');

  let gpu = 'unknown GPU';
  const results: ResultRow[] = [];
  // the rows so far, after each part (a run stopped early still leaves its numbers)
  const partial = (): void => writeFileSync(join(outDir, 'kernel-partial.json'), JSON.stringify({ gpu, results }, null, 1) + '\n');
  if (!flag('--no-ours')) {
    const ours = await timeOurs(masks, iters, warmup, Number(opt('--ours-bwd-budget-s', '1e9')), settleS);
    gpu = ours.gpu;
    results.push(...ours.rows);
    partial();
  }
  console.log(`ours done at ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
  let env: Record<string, unknown> = {};
  if (!flag('--no-baselines')) {
    const b = runBaselines(opt('--python', 'python3'), masksPath, join(outDir, 'kernel-baselines.json'), seqlens, iters, warmup, Number(opt('--baseline-budget-s', '0')), opt('--methods', 'cudnn,flash,flex'), settleS, (rows) => {
      results.push(...rows);
      partial();
    });
    if (b) {
      env = b.env;
      if (gpu === 'unknown GPU' && typeof env.gpu === 'string') gpu = env.gpu;
    }
  }
  env.total_wall_s = Number(((performance.now() - t0) / 1e3).toFixed(1));
  const order = (r: ResultRow): number => seqlens.indexOf(r.seqlen) * 1000 + names.indexOf(r.mask) * 10 + METHODS.indexOf(r.method);
  results.sort((a, b) => order(a) - order(b));
  const res: KernelBenchResult = {
    gpu,
    env,
    settings: { headsQ: HQ, headsKv: HKV, dim: DIM, dtype: 'bfloat16', seed, iters, warmup, seqlens, settleS },
    masks: masks.map((m) => ({ name: m.name, seqlen: m.seqlen, area: m.area, slices: m.slices.maskTypes.length, docs: m.cuSeqlens.length - 1, window: m.window, block: m.block })),
    results,
  };
  writeReport(res, outDir);
  rmSync(join(outDir, 'kernel-partial.json'), { force: true });
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
