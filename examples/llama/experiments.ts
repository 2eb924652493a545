/**
 * The loss-alignment experiments of issue 14 and the throughput measurement, each a function that
 * trains, writes a JSON result (machine, model, data, steps, numbers, verdict) and a plot, and
 * returns whether its pass bar holds (alignment.ts):
 *   gradients   step-1 gradients of FFA vs the oracle attention (naive on the GPU, dense on the
 *               CPU) and of cp 2 vs cp 1, per-tensor cosine; also writes the initial checkpoint,
 *               the batch and our gradients for the PyTorch twin (twin/llama_twin.py grads);
 *   twinGrads   our step-1 gradients vs the twin's;
 *   experimentA FFA vs the oracle attention, same seed and data, mean |Δloss| over the steps;
 *   experimentB cp 1 vs cp 2/4/8 at equal global batch (ranks of one process: CPU, or one GPU);
 *   experimentC ours for N steps, recording every batch and learning rate for the twin, then
 *               (compareC) our losses vs the twin's in moving windows;
 *   throughput  tokens/s, model FLOP utilisation and attention's share of the step at each
 *               sequence length, then (throughputReport) next to the twin's numbers.
 */
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { median } from 'magi-attention';
import { compareGradients, compareLosses, GRAD_COSINE_BAR, type GradientVerdict, type LossVerdict } from './alignment.js';
import type { Attention } from './attention.js';
import { hfConfig, paramCount, PRESETS, type LlamaConfig, type PresetName } from './config.js';
import { writeBatches, type Corpus, type PackedBatch } from './data.js';
import { DEFAULT_OPTIM, lrAt, type OptimConfig } from './optim.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';
import { Trainer, progressLine, type AttentionKind, type Backend, type StepRecord } from './train.js';

/** Peak dense bf16 tensor throughput of an H100/H200 SXM (the MFU denominator). */
export const PEAK_BF16_FLOPS = 989e12;

export interface ExperimentSetup<T, I> {
  backend: Backend<T, I>;
  corpus: Corpus;
  preset: PresetName;
  seqLen: number;
  seed: number;
  /** Where JSON and SVG results go. */
  out: string;
  /** Where large exchange files with the twin go (checkpoints, batches, gradients). */
  work: string;
  log: (line: string) => void;
  /** Optimizer settings except totalSteps (default DEFAULT_OPTIM). */
  optim?: Omit<OptimConfig, 'totalSteps'>;
}

function model(s: ExperimentSetup<unknown, unknown>): LlamaConfig {
  return PRESETS[s.preset];
}

function optimFor(s: ExperimentSetup<unknown, unknown>, totalSteps: number): OptimConfig {
  const o = s.optim ?? DEFAULT_OPTIM;
  return { ...o, warmupSteps: Math.min(o.warmupSteps, Math.max(1, Math.floor(totalSteps / 10))), totalSteps };
}

function trainer<T, I>(s: ExperimentSetup<T, I>, attention: AttentionKind, totalSteps: number, backend: Backend<T, I> = s.backend): Trainer<T, I> {
  return new Trainer(backend, s.corpus, { model: model(s), optim: optimFor(s, totalSteps), seqLen: s.seqLen, seed: s.seed, attention });
}

/** What every result file says about where and how it was made. */
function provenance(s: ExperimentSetup<unknown, unknown>, steps: number): Record<string, unknown> {
  const c = model(s);
  return {
    date: new Date().toISOString(),
    machine: s.backend.device,
    node: process.version,
    model: { preset: s.preset, ...c, parameters: paramCount(c) },
    data: { corpus: s.corpus.name, documents: s.corpus.docOffsets.length - 1, tokens: s.corpus.tokens.length, tokenizer: 'gpt-tokenizer r50k_base', packing: 'documents capped at a quarter pack (reference 05 §5.3), varlen-causal mask' },
    seqLen: s.seqLen,
    seed: s.seed,
    steps,
    optimizer: optimFor(s, steps),
  };
}

function writeJson(dir: string, name: string, value: unknown): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2) + '\n');
  return path;
}

/**
 * Draws the charts of a result file (plot.ts, Observable Plot). A machine without the plotting
 * packages (the GPU machine carries only what the run needs) keeps the JSON and says how to draw
 * them later.
 */
async function drawCharts(dir: string, file: string, json: unknown, log: (line: string) => void): Promise<void> {
  let plot: typeof import('./plot.js');
  try {
    plot = await import('./plot.js');
  } catch (e) {
    log(`  (charts not drawn here: ${(e as Error).message.split('\n')[0]}; run \`npm run example:llama -- plot --dir ${dir}\` where npm is)`);
    return;
  }
  for (const [name, svg] of plot.chartsFor(file, json)) {
    writeFileSync(join(dir, name), svg);
    log(`  wrote ${join(dir, name)}`);
  }
}

function oracleOf(b: Backend<unknown, unknown>): AttentionKind {
  return b.device.startsWith('CPU') ? 'dense' : 'naive';
}

async function trainSteps<T, I>(s: ExperimentSetup<T, I>, t: Trainer<T, I>, steps: number, label: string, onBatch?: (b: PackedBatch, r: StepRecord) => void): Promise<StepRecord[]> {
  const records: StepRecord[] = [];
  const t0 = performance.now();
  const every = Math.max(1, Math.floor(steps / 10));
  for (let i = 0; i < steps; i++) {
    const batch = t.packer.nextBatch();
    const r = await t.step(batch);
    records.push(r);
    onBatch?.(batch, r);
    if (!Number.isFinite(r.loss)) throw new Error(`${label}: loss is ${r.loss} at step ${r.step}`);
    if (r.step % every === 0 || r.step === 1) s.log(`  [${label}] ${progressLine(r, steps, i + 1, steps - i - 1, performance.now() - t0)}`);
  }
  return records;
}

function gradTable(v: GradientVerdict): string[] {
  const lines = v.tensors.map((t) => `  ${t.cosine >= GRAD_COSINE_BAR ? '    ' : 'FAIL'} ${t.name.padEnd(44)} cosine ${t.cosine.toFixed(6)}  rel. L2 ${t.relL2.toExponential(2)}`);
  lines.push(`  min cosine ${v.minCosine.toFixed(6)} (${v.worst}); bar >= ${GRAD_COSINE_BAR}: ${v.pass ? 'PASS' : 'FAIL'}`);
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Step-1 gradients

/** FFA vs the oracle at step 1 (same weights, same batch); writes the twin's inputs into s.work. */
export async function gradients<T, I>(s: ExperimentSetup<T, I>): Promise<boolean> {
  const oracle = oracleOf(s.backend);
  s.log(`step-1 gradients: FFA vs ${oracle} attention, ${s.preset} model, ${s.seqLen} tokens`);
  const ffa = trainer(s, 'ffa', 1);
  const batch = ffa.packer.nextBatch();
  mkdirSync(s.work, { recursive: true });
  const c = model(s);
  ffa.params.save(join(s.work, 'init.safetensors'), { format: 'pt', step: '0' });
  writeBatches(join(s.work, 'batch.safetensors'), [batch]);
  writeJson(s.work, 'run.json', { hf_config: hfConfig(c, s.seqLen), seq_len: s.seqLen, optimizer: optimFor(s, 1) });
  const lossFfa = await ffa.gradients(batch);
  const gFfa = ffa.params.hostGrads();
  writeSafetensors(
    join(s.work, 'grads-ffa.safetensors'),
    [...gFfa].map(([name, g]) => [name, { dtype: 'F32', shape: ffa.params.get(name).spec.shape, data: g }] as const),
    { loss: String(lossFfa) },
  );
  ffa.dispose();
  const ref = trainer(s, oracle, 1);
  const lossRef = await ref.gradients(batch);
  const gRef = ref.params.hostGrads();
  ref.dispose();
  const v = compareGradients(gFfa, gRef);
  for (const line of gradTable(v)) s.log(line);
  s.log(`  loss: FFA ${lossFfa.toFixed(6)}, ${oracle} ${lossRef.toFixed(6)}`);
  // The same step on 2 cp ranks (dispatch, calcAttn in every layer, gradients summed) against cp 1.
  let cp: { loss: number; verdict: GradientVerdict } | null = null;
  if (s.backend.cp !== undefined) {
    s.log('step-1 gradients: cp 2 (ranks of one process) vs cp 1, both FFA');
    const perRank = await s.backend.cp.run(2, async (group) => {
      const t = new Trainer(s.backend, s.corpus, { model: c, optim: optimFor(s, 1), seqLen: s.seqLen, seed: s.seed, attention: 'ffa', group });
      const loss = await t.gradients(batch);
      const grads = t.params.hostGrads();
      t.dispose();
      return { loss, grads };
    });
    cp = { loss: perRank[0].loss, verdict: compareGradients(perRank[0].grads, gFfa) };
    for (const line of gradTable(cp.verdict)) s.log(line);
    s.log(`  loss: cp 2 ${cp.loss.toFixed(6)}, cp 1 ${lossFfa.toFixed(6)}`);
  }
  writeJson(s.out, 'llama-grads-a.json', { ...provenance(s, 1), comparison: `FFA vs ${oracle} attention`, loss: { ffa: lossFfa, [oracle]: lossRef }, verdict: v, cp2: cp });
  return v.pass && (cp === null || cp.verdict.pass);
}

/** Our step-1 gradients vs the twin's (twin/llama_twin.py grads wrote grads-twin.safetensors). */
export function twinGradients(s: Pick<ExperimentSetup<unknown, unknown>, 'work' | 'out' | 'log'>): boolean {
  const read = (file: string) => readSafetensors(join(s.work, file));
  const ours = read('grads-ffa.safetensors');
  const twin = read('grads-twin.safetensors');
  const toMap = (f: ReturnType<typeof read>) => new Map([...f.tensors].map(([n, t]) => [n, t.data as Float32Array]));
  const v = compareGradients(toMap(ours), toMap(twin));
  s.log('step-1 gradients: ours (FFA) vs the PyTorch twin');
  for (const line of gradTable(v)) s.log(line);
  const loss = { ours: Number(ours.metadata.loss), twin: Number(twin.metadata.loss) };
  s.log(`  loss: ours ${loss.ours.toFixed(6)}, twin ${loss.twin.toFixed(6)}`);
  const run = JSON.parse(readFileSync(join(s.work, 'run.json'), 'utf8')) as unknown;
  writeJson(s.out, 'llama-grads-c.json', { date: new Date().toISOString(), comparison: 'ours (FFA, bf16) vs transformers LlamaForCausalLM (autocast bf16)', run, twin: twin.metadata, loss, verdict: v });
  return v.pass;
}

// ---------------------------------------------------------------------------------------------
// Experiments A and B

/** A: FFA vs the oracle attention for `steps` steps from the same seed and data. */
export async function experimentA<T, I>(s: ExperimentSetup<T, I>, steps: number): Promise<boolean> {
  const oracle = oracleOf(s.backend);
  s.log(`experiment A: FFA vs ${oracle} attention, ${steps} steps of ${s.seqLen} tokens (${s.preset})`);
  const runs: Record<string, StepRecord[]> = {};
  for (const kind of ['ffa', oracle] as const) {
    const t = trainer(s, kind, steps);
    runs[kind] = await trainSteps(s, t, steps, kind);
    t.dispose();
  }
  const losses = (k: string): number[] => runs[k].map((r) => r.loss);
  const v: LossVerdict = compareLosses(losses('ffa'), losses(oracle), 'mean');
  s.log(`  mean |Δloss| ${v.meanAbsDelta.toExponential(3)}, max ${v.maxAbsDelta.toExponential(3)}; bar <= ${v.bar}: ${v.pass ? 'PASS' : 'FAIL'}`);
  const name = `llama-a-${s.backend.device.startsWith('CPU') ? 'cpu' : 'gpu'}.json`;
  const result = {
    ...provenance(s, steps),
    comparison: `FFA vs ${oracle} attention`,
    losses: { ffa: losses('ffa'), [oracle]: losses(oracle) },
    msPerStep: { ffa: median(runs.ffa.map((r) => r.ms)), [oracle]: median(runs[oracle].map((r) => r.ms)) },
    verdict: v,
  };
  writeJson(s.out, name, result);
  await drawCharts(s.out, name, result, s.log);
  return v.pass;
}

/** B: cp 1 vs cp N at equal global batch (CPU: in-process ranks; GPU: ranks on one GPU), every rank calling calcAttn. */
export async function experimentB<T, I>(s: ExperimentSetup<T, I>, steps: number, cps: readonly number[]): Promise<boolean> {
  const cp = s.backend.cp;
  if (cp === undefined) throw new Error(`experiment B: the ${s.backend.device} backend has no context-parallel path`);
  s.log(`experiment B: cp 1 vs cp ${cps.join('/')}, ${steps} steps of ${s.seqLen} tokens (${s.preset}, ranks of one process)`);
  const base = trainer(s, 'ffa', steps);
  const curves: Array<{ name: string; losses: number[] }> = [{ name: 'cp 1', losses: (await trainSteps(s, base, steps, 'cp 1')).map((r) => r.loss) }];
  base.dispose();
  const verdicts: Record<string, LossVerdict> = {};
  for (const size of cps) {
    const perRank = await cp.run(size, async (group, rank) => {
      const t = new Trainer(s.backend, s.corpus, { model: model(s), optim: optimFor(s, steps), seqLen: s.seqLen, seed: s.seed, attention: 'ffa', group });
      const log = rank === 0 ? s.log : () => {};
      const losses = (await trainSteps({ ...s, log }, t, steps, `cp ${size}`)).map((r) => r.loss);
      t.dispose();
      return losses;
    });
    curves.push({ name: `cp ${size}`, losses: perRank[0] });
    const v = compareLosses(curves[0].losses, perRank[0], 'mean');
    verdicts[`cp${size}`] = v;
    s.log(`  cp ${size}: mean |Δloss| ${v.meanAbsDelta.toExponential(3)}, max ${v.maxAbsDelta.toExponential(3)}: ${v.pass ? 'PASS' : 'FAIL'}`);
  }
  const pass = Object.values(verdicts).every((v) => v.pass);
  const result = { ...provenance(s, steps), comparison: `cp 1 vs cp ${cps.join('/')} at equal global batch`, method: 'dispatch once per step, calcAttn in every layer, gradients and loss summed over the group; the ranks of one process (one GPU)', losses: Object.fromEntries(curves.map((c) => [c.name, c.losses])), verdicts, pass };
  const name = `llama-b-${s.backend.device.startsWith('CPU') ? 'cpu' : 'gpu'}.json`;
  writeJson(s.out, name, result);
  await drawCharts(s.out, name, result, s.log);
  return pass;
}

// ---------------------------------------------------------------------------------------------
// Experiment C

/** Ours for `steps` steps; writes init.safetensors, batches.safetensors (tokens, targets, doc ids, lr) and our losses for the twin. */
export async function experimentC<T, I>(s: ExperimentSetup<T, I>, steps: number): Promise<void> {
  s.log(`experiment C (ours): ${steps} steps of ${s.seqLen} tokens (${s.preset}); the twin trains on the same batches next`);
  const t = trainer(s, 'ffa', steps);
  mkdirSync(s.work, { recursive: true });
  t.params.save(join(s.work, 'c-init.safetensors'), { format: 'pt', step: '0' });
  const batches: PackedBatch[] = [];
  const records = await trainSteps(s, t, steps, 'ours', (b) => batches.push(b));
  t.dispose();
  const lrs = records.map((r) => r.lr);
  writeBatches(join(s.work, 'c-batches.safetensors'), batches, lrs);
  const o = optimFor(s, steps);
  writeJson(s.work, 'c-run.json', { hf_config: hfConfig(model(s), s.seqLen), seq_len: s.seqLen, steps, optimizer: o, lr_check: [lrAt(1, o), lrAt(steps, o)] });
  writeJson(s.work, 'c-ours.json', { ...provenance(s, steps), losses: records.map((r) => r.loss), msPerStep: records.map((r) => r.ms) });
}

/** Our losses vs the twin's (c-twin.json): moving-window |Δloss| over all steps. */
export async function compareC(s: Pick<ExperimentSetup<unknown, unknown>, 'work' | 'out' | 'log'>, window = 50): Promise<boolean> {
  const ours = JSON.parse(readFileSync(join(s.work, 'c-ours.json'), 'utf8')) as { losses: number[] };
  const twin = JSON.parse(readFileSync(join(s.work, 'c-twin.json'), 'utf8')) as { losses: number[] };
  const v = compareLosses(ours.losses, twin.losses, 'window', window);
  s.log(`experiment C: ours vs the PyTorch twin over ${v.steps} steps: mean |Δloss| ${v.meanAbsDelta.toExponential(3)}, max ${v.maxAbsDelta.toExponential(3)}, worst ${v.window}-step window ${v.worstWindow.toExponential(3)}; first step over ${v.bar}: ${v.firstExceeded ?? 'none'}: ${v.pass ? 'PASS' : 'FAIL'}`);
  const result = { ours, twin, verdict: v };
  writeJson(s.out, 'llama-c.json', result);
  await drawCharts(s.out, 'llama-c.json', result, s.log);
  return v.pass;
}

// ---------------------------------------------------------------------------------------------
// Throughput

/** Host wall-clock and event-timed attention share; `timing` wraps the backend's attention cores. */
export interface AttentionTimer<T> {
  wrap(a: Attention<T>): Attention<T>;
  /** Milliseconds spent in attention since the last call (waits for the device). */
  take(): number;
}

export interface ThroughputRow {
  seqLen: number;
  msPerStep: number;
  tokensPerSecond: number;
  mfu: number;
  attentionShare: number;
  flopsPerStep: number;
}

/** Ours: tokens/s, MFU and attention share at each sequence length (warm-up steps first). */
export async function throughput<T, I>(s: ExperimentSetup<T, I>, seqLens: readonly number[], timer: AttentionTimer<T>, warmup = 2, timed = 8): Promise<ThroughputRow[]> {
  const rows: ThroughputRow[] = [];
  const timedBackend: Backend<T, I> = { ...s.backend, attention: (k, m, r) => timer.wrap(s.backend.attention(k, m, r)) };
  mkdirSync(s.work, { recursive: true });
  writeJson(s.work, 'bench-run.json', { hf_config: hfConfig(model(s), Math.max(...seqLens)), optimizer: optimFor(s, warmup + timed) });
  for (const seqLen of seqLens) {
    const sub = { ...s, seqLen };
    s.log(`throughput: ${seqLen} tokens/step (${s.preset}), ${warmup} warm-up + ${timed} timed steps`);
    const t = trainer(sub, 'ffa', warmup + timed, timedBackend);
    const first = t.packer.nextBatch();
    writeBatches(join(s.work, `bench-${seqLen}.safetensors`), [first]);
    await t.step(first);
    for (let i = 1; i < warmup; i++) await t.step();
    timer.take();
    const ms: number[] = [];
    const attn: number[] = [];
    let flops = 0;
    for (let i = 0; i < timed; i++) {
      const r = await t.step();
      ms.push(r.ms);
      attn.push(timer.take());
      flops = r.flops;
    }
    t.dispose();
    const m = median(ms);
    const row = { seqLen, msPerStep: m, tokensPerSecond: (seqLen * 1000) / m, mfu: flops / (m / 1000) / PEAK_BF16_FLOPS, attentionShare: median(attn) / m, flopsPerStep: flops };
    s.log(`  ${seqLen}: ${m.toFixed(1)} ms/step, ${Math.round(row.tokensPerSecond).toLocaleString('en-US')} tokens/s, MFU ${(row.mfu * 100).toFixed(1)}%, attention ${(row.attentionShare * 100).toFixed(1)}% of the step`);
    rows.push(row);
  }
  writeJson(s.work, 'throughput-ours.json', { ...provenance(s, timed), method: `median of ${timed} steps after ${warmup} warm-up steps; a step is forward, backward, clip and AdamW, host-timed to completion; attention timed with CUDA events around every attention call`, peakFlops: PEAK_BF16_FLOPS, rows });
  return rows;
}

/** Merges ours and the twin's throughput into llama-throughput.json (and its chart). */
export async function throughputReport(s: Pick<ExperimentSetup<unknown, unknown>, 'work' | 'out' | 'log'>): Promise<void> {
  const ours = JSON.parse(readFileSync(join(s.work, 'throughput-ours.json'), 'utf8')) as { rows: ThroughputRow[] };
  const twinPath = join(s.work, 'throughput-twin.json');
  const twin = existsSync(twinPath)
    ? (JSON.parse(readFileSync(twinPath, 'utf8')) as { rows: Array<{ seqLen: number; variant: string; tokensPerSecond: number | null; error?: string }>; versions: Record<string, string> })
    : { rows: [], versions: {} };
  for (const o of ours.rows) {
    const eager = twin.rows.filter((r) => r.seqLen === o.seqLen && r.variant.endsWith('eager') && r.tokensPerSecond !== null).map((r) => r.tokensPerSecond as number);
    const best = eager.length > 0 ? Math.max(...eager) : null;
    s.log(`  ${o.seqLen}: ours ${Math.round(o.tokensPerSecond)} tokens/s${best === null ? '' : ` vs the twin's best eager ${Math.round(best)} (${(o.tokensPerSecond / best).toFixed(2)}x)`}`);
  }
  const result = { ours, twin };
  writeJson(s.out, 'llama-throughput.json', result);
  await drawCharts(s.out, 'llama-throughput.json', result, s.log);
}
