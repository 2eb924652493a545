/**
 * The training loop: a packed batch per step, its varlen-causal mask, forward + backward, AdamW.
 * With cp > 1 (CPU today: in-process ranks) every rank packs the same batch, dispatches it once
 * with the step's key (load-balanced chunks of the sequence; positions from getPositionIds), runs
 * the same model on its shard with calcAttn in every layer, and the gradients and loss are summed
 * over the group before the (replicated) optimizer step. The loss is the mean over the whole
 * batch's valid targets however it is split, so cp 1 and cp N train the same model.
 */
import {
  InvalidArgumentError,
  Tensor,
  dispatch,
  getPositionIds,
  magiAttnFlexKey,
  sliceListArea,
  varlenCausalMask,
  type DistAttnRuntimeKey,
  type ProcessGroup,
  type SliceList,
} from 'magi-attention';
import { cpAttention, denseAttention, ffaAttention, type Attention } from './attention.js';
import { checkConfig, stepFlops, type LlamaConfig } from './config.js';
import { createCpuOps, type CpuDtype } from './cpu-ops.js';
import { DocumentPacker, compactVocab, type Corpus, type PackedBatch } from './data.js';
import { ropeTable } from './layers/rope.js';
import { Llama, type StepInputs } from './model.js';
import type { Ops } from './ops.js';
import { AdamW, type OptimConfig, type OptimStepInfo } from './optim.js';
import { ParamSet } from './params.js';

export const ATTENTION_KINDS = ['ffa', 'dense', 'naive'] as const;
export type AttentionKind = (typeof ATTENTION_KINDS)[number];

/** A machine to train on: its ops and how it builds the attention core of a batch. */
export interface Backend<T, I> {
  readonly ops: Ops<T, I>;
  /** Human-readable device description for logs and result files. */
  readonly device: string;
  attention(kind: AttentionKind, mask: SliceList, rows: number): Attention<T>;
  /** Context parallelism over `group`: the attention core of a dispatched shard, and the sum of a master tensor over the group. */
  readonly cp?: {
    attention(key: DistAttnRuntimeKey): Attention<T>;
    allReduceSum(t: T, group: ProcessGroup): Promise<void>;
  };
}

export function cpuBackend(dtype: CpuDtype = 'float32'): Backend<Tensor, Int32Array> {
  const ops = createCpuOps(dtype);
  return {
    ops,
    device: `CPU (plain TypeScript, ${dtype})`,
    attention: (kind, mask, rows) => {
      if (kind === 'ffa') return ffaAttention<Tensor>(mask);
      if (kind === 'dense') return denseAttention(mask, rows);
      throw new InvalidArgumentError('attention', "'naive' is the GPU's float32 oracle; on the CPU use 'dense'");
    },
    cp: {
      attention: (key) => cpAttention<Tensor, Int32Array>(key, ops),
      allReduceSum: async (t, group) => {
        await group.allReduce(t.data as Float32Array, 'sum').wait();
      },
    },
  };
}

export interface TrainerOptions {
  model: LlamaConfig;
  optim: OptimConfig;
  seqLen: number;
  /** Seeds the weights and the data order. */
  seed: number;
  docCapFraction?: number;
  attention: AttentionKind;
  /** The cp group this rank belongs to (cp > 1). */
  group?: ProcessGroup;
}

export interface StepRecord {
  step: number;
  /** Mean cross-entropy over the batch's valid targets. */
  loss: number;
  lr: number;
  gradNorm: number;
  clipCoef: number;
  tokens: number;
  ms: number;
  /** Model FLOPs of the step (config.stepFlops). */
  flops: number;
}

export class Trainer<T, I> {
  readonly params: ParamSet<T, I>;
  readonly model: Llama<T, I>;
  readonly optimizer: AdamW<T, I>;
  readonly packer: DocumentPacker;
  readonly corpus: Corpus;
  stepCount = 0;

  constructor(
    readonly backend: Backend<T, I>,
    corpus: Corpus,
    readonly options: TrainerOptions,
  ) {
    const c = checkConfig(options.model);
    if (options.group !== undefined && options.group.size > 1 && backend.cp === undefined) {
      throw new InvalidArgumentError('cp', `the ${backend.device} backend has no context-parallel path yet`);
    }
    this.corpus = corpus.vocabSize > c.vocabSize ? compactVocab(corpus, c.vocabSize) : corpus;
    this.packer = new DocumentPacker(this.corpus, options.seqLen, { seed: options.seed, docCapFraction: options.docCapFraction });
    this.params = new ParamSet(backend.ops, c);
    this.params.initRandom(options.seed);
    this.model = new Llama(c, backend.ops, this.params, ropeTable(options.seqLen, c.headDim, c.ropeTheta));
    this.optimizer = new AdamW(this.params, options.optim);
  }

  /** Gives the parameters' memory back (GPU runs that build several trainers in one process). */
  dispose(): void {
    this.params.dispose();
  }

  /** Loads weights (and moments, when saved) from a checkpoint; returns its step. */
  load(path: string): number {
    this.stepCount = this.params.load(path);
    return this.stepCount;
  }

  /** Forward + backward of `batch` into the (zeroed) gradients; returns the batch's mean loss. No optimizer step. */
  async gradients(batch: PackedBatch): Promise<number> {
    const { ops } = this.backend;
    const mask = varlenCausalMask(batch.cuSeqlens);
    const group = this.options.group;
    const c = this.options.model;
    let host: { tokens: Int32Array; targets: Int32Array; positions: Int32Array };
    let attention: Attention<T>;
    if (group === undefined || group.size === 1) {
      host = { tokens: batch.tokens, targets: batch.targets, positions: Int32Array.from({ length: batch.tokens.length }, (_, i) => i) };
      attention = this.backend.attention(this.options.attention, mask, batch.tokens.length);
    } else {
      const key = magiAttnFlexKey({ ...mask, totalSeqlenQ: batch.tokens.length, numHeadsQ: c.nHeads, numHeadsKv: c.nKvHeads, headDim: c.headDim, group });
      const shard = (ids: Int32Array, pad: number): Int32Array =>
        Int32Array.from(dispatch(Tensor.fromValues('float32', [ids.length, 1], ids), key, pad).data as Float32Array);
      host = { tokens: shard(batch.tokens, 0), targets: shard(batch.targets, -1), positions: getPositionIds(key) };
      attention = this.backend.cp!.attention(key);
    }
    const inputs: StepInputs<I> = { tokens: ops.indices(host.tokens), targets: ops.indices(host.targets), positions: ops.indices(host.positions), rows: host.tokens.length };
    this.params.zeroGrads();
    let lossSum: number;
    try {
      lossSum = await this.model.forwardBackward(inputs, attention, 1 / batch.validTargets);
    } finally {
      for (const i of [inputs.tokens, inputs.targets, inputs.positions]) ops.freeIndices(i);
      attention.dispose?.();
    }
    if (group !== undefined && group.size > 1) {
      await this.backend.cp!.allReduceSum(this.params.grad, group);
      const l = new Float64Array([lossSum]);
      await group.allReduce(l, 'sum').wait();
      lossSum = l[0];
    }
    return lossSum / batch.validTargets;
  }

  /** One optimizer step on `batch` (default: the packer's next one). */
  async step(batch: PackedBatch = this.packer.nextBatch()): Promise<StepRecord> {
    const t0 = performance.now();
    const loss = await this.gradients(batch);
    const info: OptimStepInfo = this.optimizer.step(++this.stepCount);
    this.backend.ops.synchronize();
    const ms = performance.now() - t0;
    const area = sliceListArea(varlenCausalMask(batch.cuSeqlens));
    return { step: this.stepCount, loss, ...info, tokens: batch.tokens.length, ms, flops: stepFlops(this.options.model, batch.tokens.length, area).total };
  }
}

/**
 * "step 12/200 | loss 6.1234 | lr 3.00e-4 | |g| 1.23 | 45,210 tok/s | ETA 1m20s": `done` steps of
 * this run took `elapsedMs`; `remaining` are still to go.
 */
export function progressLine(r: StepRecord, lastStep: number, done: number, remaining: number, elapsedMs: number): string {
  const eta = (remaining * elapsedMs) / Math.max(1, done) / 1000;
  const etaText = eta >= 60 ? `${Math.floor(eta / 60)}m${String(Math.round(eta % 60)).padStart(2, '0')}s` : `${eta.toFixed(0)}s`;
  const tps = Math.round((r.tokens * 1000) / r.ms).toLocaleString('en-US');
  return `step ${r.step}/${lastStep} | loss ${r.loss.toFixed(4)} | lr ${r.lr.toExponential(2)} | |g| ${r.gradNorm.toFixed(3)} | ${tps} tok/s | ETA ${etaText}`;
}
