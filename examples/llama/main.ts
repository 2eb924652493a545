/**
 * `npm run example:llama -- <command>`: train the Llama-style model from TypeScript, prepare its
 * data, or run the loss-alignment experiments and GPU checks (see README.md beside this file).
 *   train          a training run on the CPU or the GPU, with a progress line per --log-every steps
 *   prepare-data   tokenise a dataset into the cache (what the GPU machine, which has no npm, reads)
 *   experiment     one experiment or check: writes JSON + SVG under --out and exits 1 when its bar fails
 */
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeFileSync, readFileSync } from 'node:fs';
import { Argument, Command, InvalidArgumentError as CliArgumentError, Option } from 'commander';
import { freshSeed, type GroupInfo, type Tensor } from 'magi-attention';
import { PRESETS, PRESET_NAMES, paramCount, type PresetName } from './config.js';
import { DATASETS, corpusPath, loadCorpus, tokeniseDataset, writeCorpus, type DatasetName } from './data.js';
import { compareC, experimentA, experimentB, experimentC, gradients, throughput, throughputReport, twinGradients, type ExperimentSetup } from './experiments.js';
import type { GpuBackend } from './gpu/backend.js';
import { DEFAULT_OPTIM } from './optim.js';
import { ATTENTION_KINDS, Trainer, cpuBackend, progressLine, type AttentionKind, type Backend, type StepRecord } from './train.js';

function int(name: string, min = 1): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new CliArgumentError(`${name} must be an integer >= ${min} (got "${v}")`);
    return n;
  };
}

function num(name: string, min = 0): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new CliArgumentError(`${name} must be a number >= ${min} (got "${v}")`);
    return n;
  };
}

function intList(name: string): (v: string) => number[] {
  return (v) => v.split(',').map((x) => int(name)(x.trim()));
}

type Device = 'cpu' | 'gpu';

interface CommonOptions {
  device: Device;
  preset?: PresetName;
  dataset?: DatasetName;
  seqLen?: number;
  seed?: number;
  lr: number;
  minLr: number;
  warmup: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  clip: number;
}

function addCommon(cmd: Command): Command {
  return cmd
    .addOption(new Option('--device <device>', 'where to train: cpu (plain TypeScript, CPU flex-flash-attention) or gpu (CUDA: cuBLASLt + our kernels + the FFA kernels)').choices(['cpu', 'gpu']).default('cpu'))
    .addOption(new Option('--preset <name>', `model size (default: tiny on the CPU, gpu on the GPU); ${PRESET_NAMES.map((p) => `${p}: ${(paramCount(PRESETS[p]) / 1e6).toFixed(2)} M params`).join(', ')}`).choices(PRESET_NAMES))
    .addOption(new Option('--dataset <name>', 'text to train on (default: moby-dick on the CPU, sotu on the GPU); one document per chapter / speech').choices([...DATASETS]))
    .option('--seq-len <n>', 'tokens per packed sequence, i.e. per step (default: 256 on the CPU, 16384 on the GPU)', int('--seq-len', 2))
    .option('--seed <n>', 'seed of the initial weights and of the data order (default: fresh, printed)', int('--seed', 0))
    .option('--lr <x>', 'peak learning rate (AdamW)', num('--lr'), DEFAULT_OPTIM.lr)
    .option('--min-lr <x>', 'learning rate at the end of the cosine decay', num('--min-lr'), DEFAULT_OPTIM.minLr)
    .option('--warmup <n>', 'linear warm-up steps', int('--warmup', 0), DEFAULT_OPTIM.warmupSteps)
    .option('--weight-decay <x>', 'AdamW weight decay (matrices only; norm weights are not decayed)', num('--weight-decay'), DEFAULT_OPTIM.weightDecay)
    .option('--beta1 <x>', 'AdamW beta1', num('--beta1'), DEFAULT_OPTIM.beta1)
    .option('--beta2 <x>', 'AdamW beta2', num('--beta2'), DEFAULT_OPTIM.beta2)
    .option('--eps <x>', 'AdamW epsilon', num('--eps'), DEFAULT_OPTIM.eps)
    .option('--clip <x>', 'clip the global gradient norm to this (0: no clipping)', num('--clip'), DEFAULT_OPTIM.clip);
}

function resolveCommon(o: CommonOptions): { preset: PresetName; dataset: DatasetName; seqLen: number; seed: number } {
  const gpu = o.device === 'gpu';
  const seed = o.seed ?? freshSeed();
  if (o.seed === undefined) console.log(`seed ${seed} (replay with --seed ${seed})`);
  return { preset: o.preset ?? (gpu ? 'gpu' : 'tiny'), dataset: o.dataset ?? (gpu ? 'sotu' : 'moby-dick'), seqLen: o.seqLen ?? (gpu ? 16384 : 256), seed };
}

type Opened = { kind: 'cpu'; backend: Backend<Tensor, Int32Array> } | { kind: 'gpu'; backend: GpuBackend };

/** The CPU backend, or the GPU one (loaded only then, so CPU runs never touch the device layer). */
async function openBackend(device: Device): Promise<Opened> {
  if (device === 'cpu') return { kind: 'cpu', backend: cpuBackend() };
  const { CudaDevice } = await import('magi-attention/device');
  const { gpuBackend } = await import('./gpu/backend.js');
  return { kind: 'gpu', backend: gpuBackend(CudaDevice.open(0)) };
}

const program = new Command();
program
  .name('example:llama')
  .description('A Llama-style decoder trained from TypeScript with magi-attention (flex-flash-attention in every layer); see examples/llama/README.md')
  .showHelpAfterError();

addCommon(
  program
    .command('train', { isDefault: true })
    .description('train the model and print a progress line (step, loss, learning rate, gradient norm, tokens/s, ETA)')
    .option('--steps <n>', 'optimizer steps', int('--steps'), 50)
    .addOption(new Option('--attention <kind>', 'attention core: ffa (flexFlashAttn: the CPU or CUDA kernels), dense (CPU oracle), naive (GPU float32 oracle)').choices([...ATTENTION_KINDS]).default('ffa'))
    .option('--cp <n>', 'context-parallel ranks (CPU: in-process ranks; GPU: ranks on one GPU); each step is dispatched once and every layer calls calcAttn', int('--cp'), 1)
    .option('--doc-cap <fraction>', 'documents are cut into pieces of at most this fraction of a sequence (the reference uses 0.25)', num('--doc-cap'), 0.25)
    .option('--init <path>', 'start from this checkpoint (safetensors written by --save): its weights, its AdamW moments when saved, and its step count (the data order starts over)')
    .option('--save <path>', 'write the final weights here as safetensors (Hugging Face names, float32)')
    .option('--save-optimizer', 'with --save: also store the AdamW moments, so --init resumes exactly')
    .option('--log <path>', 'write every step\'s record (loss, lr, gradient norm, ms, FLOPs) to this JSON file')
    .option('--log-every <n>', 'print the progress line every n steps', int('--log-every'), 10),
).action(async (o: CommonOptions & { steps: number; attention: AttentionKind; cp: number; docCap: number; init?: string; save?: string; saveOptimizer?: boolean; log?: string; logEvery: number }) => {
  const c = resolveCommon(o);
  const corpus = await loadCorpus(c.dataset);
  const model = PRESETS[c.preset];
  const optim = { lr: o.lr, minLr: o.minLr, warmupSteps: o.warmup, totalSteps: o.steps, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, clip: o.clip };
  const run = async <T, I>(backend: Backend<T, I>, group: GroupInfo | undefined, print: boolean): Promise<StepRecord[]> => {
    const t = new Trainer(backend, corpus, { model, optim, seqLen: c.seqLen, seed: c.seed, docCapFraction: o.docCap, attention: o.attention, group });
    if (o.init !== undefined) t.load(o.init);
    if (print) console.log(`${c.preset} model, ${(paramCount(model) / 1e6).toFixed(2)} M parameters; ${corpus.name}: ${corpus.docOffsets.length - 1} documents, ${corpus.tokens.length} tokens; ${c.seqLen} tokens/step, attention ${o.attention}${o.cp > 1 ? `, cp ${o.cp}` : ''}; ${backend.device}`);
    const records: StepRecord[] = [];
    const lastStep = t.stepCount + o.steps;
    const t0 = performance.now();
    for (let i = 0; i < o.steps; i++) {
      const r = await t.step();
      records.push(r);
      if (print && (r.step % o.logEvery === 0 || i === 0 || i === o.steps - 1)) console.log(progressLine(r, lastStep, i + 1, o.steps - i - 1, performance.now() - t0));
    }
    if (print && o.save !== undefined) {
      t.params.save(o.save, { step: String(t.stepCount), config: JSON.stringify(model) }, o.saveOptimizer ?? false);
      console.log(`saved ${o.save}`);
    }
    return records;
  };
  const opened = await openBackend(o.device);
  const runOn = async <T, I>(backend: Backend<T, I>): Promise<StepRecord[]> => {
    if (o.cp === 1) return run(backend, undefined, true);
    if (backend.cp === undefined) throw new CliArgumentError(`--cp: the ${backend.device} backend has no context-parallel path`);
    return (await backend.cp.run(o.cp, (group, rank) => run(backend, group, rank === 0)))[0];
  };
  const records = opened.kind === 'gpu' ? await runOn(opened.backend) : await runOn(opened.backend);
  if (o.log !== undefined) {
    writeFileSync(o.log, JSON.stringify({ preset: c.preset, model, dataset: c.dataset, seqLen: c.seqLen, seed: c.seed, attention: o.attention, cp: o.cp, optim, records }, null, 2) + '\n');
    console.log(`wrote ${o.log}`);
  }
});

program
  .command('prepare-data')
  .description('tokenise a dataset (gpt-tokenizer, r50k) and cache it as safetensors, so machines without the npm datasets can train on it')
  .addOption(new Option('--dataset <name>', 'which text').choices([...DATASETS]).default('sotu'))
  .option('--out <path>', 'cache file (default: examples/llama/.data/<dataset>-r50k.safetensors, where training looks first)')
  .action(async (o: { dataset: DatasetName; out?: string }) => {
    const c = await tokeniseDataset(o.dataset);
    const path = o.out ?? corpusPath(o.dataset);
    writeCorpus(path, c);
    console.log(`${o.dataset}: ${c.docOffsets.length - 1} documents, ${c.tokens.length} tokens -> ${path}`);
  });

const EXPERIMENTS = ['smoke', 'grads', 'twin-grads', 'a', 'b', 'c', 'c-compare', 'throughput', 'throughput-report'] as const;

addCommon(
  program
    .command('experiment')
    .description(
      'run one experiment or check and write JSON + SVG under --out; exits 1 when its pass bar fails. ' +
        'smoke: GPU kernels and cuBLASLt against the CPU layers; grads: step-1 gradients, FFA vs the oracle attention (also writes the twin\'s inputs); ' +
        'twin-grads: ours vs the PyTorch twin\'s step-1 gradients; a: FFA vs oracle attention losses; b: cp 1 vs cp N at equal global batch (CPU: in-process ranks; GPU: ranks on one GPU); ' +
        'c: ours for --steps steps, recording the batches for the twin; c-compare: ours vs the twin\'s losses; ' +
        'throughput: tokens/s, MFU, attention share (GPU); throughput-report: ours next to the twin\'s numbers',
    )
    .addArgument(new Argument('<name>', 'experiment').choices([...EXPERIMENTS]))
    .option('--steps <n>', 'steps (default: a 200, b 200, c 1000)', int('--steps'))
    .option('--out <dir>', 'where JSON and SVG results go (default bench/out/, untracked; bench/results/ with --update-results)')
    .option('--update-results', 'write to the committed bench/results/ (what the READMEs quote)')
    .option('--work <dir>', 'where the exchange files with the PyTorch twin go (checkpoints, batches, gradients)', join(tmpdir(), 'llama-work'))
    .option('--cp-sizes <list>', 'b: the cp sizes compared with cp 1', intList('--cp-sizes'), [2, 4])
    .option('--seq-lens <list>', 'throughput: sequence lengths', intList('--seq-lens'), [16384, 65536])
    .option('--lt-abi <path>', "smoke: JSON printed by gpu/cublaslt_probe.cpp (this machine's cublasLt.h values)"),
).action(async (name: (typeof EXPERIMENTS)[number], o: CommonOptions & { steps?: number; out?: string; updateResults?: boolean; work: string; cpSizes: number[]; seqLens: number[]; ltAbi?: string }) => {
  const log = (line: string): void => console.log(line);
  const files = { out: resolve(o.out ?? (o.updateResults === true ? 'bench/results' : 'bench/out')), work: resolve(o.work), log };
  let pass = true;
  if (name === 'twin-grads') pass = twinGradients(files);
  else if (name === 'c-compare') pass = await compareC(files);
  else if (name === 'throughput-report') await throughputReport(files);
  else {
    const c = resolveCommon(o);
    const opened = await openBackend(o.device);
    log(opened.backend.device);
    const corpus = await loadCorpus(c.dataset);
    const setupOf = <T, I>(backend: Backend<T, I>): ExperimentSetup<T, I> => ({
      backend,
      corpus,
      preset: c.preset,
      seqLen: c.seqLen,
      seed: c.seed,
      ...files,
      optim: { lr: o.lr, minLr: o.minLr, warmupSteps: o.warmup, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, clip: o.clip },
    });
    const common = async <T, I>(s: ExperimentSetup<T, I>): Promise<boolean> => {
      if (name === 'grads') return gradients(s);
      if (name === 'a') return experimentA(s, o.steps ?? 200);
      if (name === 'b') return experimentB(s, o.steps ?? 200, o.cpSizes);
      if (name === 'c') {
        await experimentC(s, o.steps ?? 1000);
        return true;
      }
      throw new CliArgumentError(`${name} runs on the ${o.device === 'gpu' ? 'CPU' : 'GPU'} only (--device ${o.device === 'gpu' ? 'cpu' : 'gpu'})`);
    };
    if (opened.kind === 'gpu') {
      const s = setupOf(opened.backend);
      if (name === 'smoke') {
        const { runSmokeChecks } = await import('./gpu/smoke.js');
        const abi = o.ltAbi === undefined ? null : (JSON.parse(readFileSync(o.ltAbi, 'utf8')) as Record<string, number>);
        const rows = await runSmokeChecks(opened.backend, c.seed, abi, log);
        log(`smoke: all ${rows.length} checks pass`);
      } else if (name === 'throughput') {
        const { eventAttentionTimer } = await import('./gpu/timer.js');
        await throughput(s, o.seqLens, eventAttentionTimer(opened.backend.ctx.device));
      } else pass = await common(s);
    } else pass = await common(setupOf(opened.backend));
  }
  if (!pass) {
    console.error(`experiment ${name}: FAIL (see above)`);
    process.exitCode = 1;
  }
});

program
  .command('plot')
  .description('draw the SVG charts of every llama-*.json result file in a folder (Observable Plot), e.g. results brought back from the GPU machine')
  .requiredOption('--dir <dir>', 'folder of the result files')
  .action(async (o: { dir: string }) => {
    const { plotDirectory } = await import('./plot.js');
    for (const f of plotDirectory(resolve(o.dir))) console.log(`wrote ${f}`);
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  process.exitCode = 2;
}
