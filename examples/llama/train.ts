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
  runLocalRanks,
  sliceListArea,
  varlenCausalMask,
  type DistAttnRuntimeKey,
  type GroupInfo,
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

/**
 * Context parallelism on a machine: how its cp ranks run, how a rank takes its shard of the
 * batch's int arrays (dispatch), its attention core (calcAttn), and the sums over the group.
 */
export interface CpHooks<T> {
  /** Runs `fn` on `size` cp ranks (CPU: in-process ranks; GPU: ranks on one GPU), results in rank order. */
  run<R>(size: number, fn: (group: GroupInfo, rank: number) => Promise<R>): Promise<R[]>;
  /** This rank's shard of an int32 array of the whole sequence (dispatch; padding rows get `pad`). */
  shardIds(ids: Int32Array, key: DistAttnRuntimeKey, pad: number): Int32Array;
  attention(key: DistAttnRuntimeKey): Attention<T>;
  /** Sums a master tensor over the group, in place. */
  allReduceSum(t: T, group: GroupInfo): Promise<void>;
  /** Sums a number over the group. */
  allReduceNumber(x: number, group: GroupInfo): Promise<number>;
}

/** A machine to train on: its ops and how it builds the attention core of a batch. */
export interface Backend<T, I> {
  readonly ops: Ops<T, I>;
  /** Human-readable device description for logs and result files. */
  readonly device: string;
  attention(kind: AttentionKind, mask: SliceList, rows: number): Attention<T>;
  readonly cp?: CpHooks<T>;
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
      run: (size, fn) => runLocalRanks(size, fn),
      shardIds: (ids, key, pad) => Int32Array.from(dispatch(Tensor.fromValues('float32', [ids.length, 1], ids), key, pad).data as Float32Array),
      attention: (key) => cpAttention<Tensor, Int32Array>(key, ops),
      allReduceSum: async (t, group) => {
        await (group as ProcessGroup).allReduce(t.data as Float32Array, 'sum').wait();
      },
      allReduceNumber: async (x, group) => {
        const a = Float64Array.of(x);
        await (group as ProcessGroup).allReduce(a, 'sum').wait();
        return a[0];
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
  /** The cp group this rank belongs to (cp > 1), from the backend's cp.run. */
  group?: GroupInfo;
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
      // Context parallel: dispatch the batch once; every layer then calls calcAttn with this key.
      const cp = this.backend.cp!;
      const key = magiAttnFlexKey({ ...mask, totalSeqlenQ: batch.tokens.length, numHeadsQ: c.nHeads, numHeadsKv: c.nKvHeads, headDim: c.headDim, group });
      host = { tokens: cp.shardIds(batch.tokens, key, 0), targets: cp.shardIds(batch.targets, key, -1), positions: getPositionIds(key) };
      attention = cp.attention(key);
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
      lossSum = await this.backend.cp!.allReduceNumber(lossSum, group);
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
