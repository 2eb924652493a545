/**
 * AdamW over the parameter set, with fp32 master weights, global-norm gradient clipping and a
 * warmup + cosine learning-rate schedule (the PyTorch twin gets the same per-step rates).
 * Norm weights are not decayed.
 */
import { InvalidArgumentError } from 'magi-attention';
import { clipCoefficient } from './layers/adamw.js';
import type { ParamSet } from './params.js';

export interface OptimConfig {
  /** Peak learning rate. */
  lr: number;
  /** Rate at the end of the cosine decay. */
  minLr: number;
  warmupSteps: number;
  /** Steps of the whole run (the cosine ends here). */
  totalSteps: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Max global gradient norm; 0 disables clipping. */
  clip: number;
}

export const DEFAULT_OPTIM: Omit<OptimConfig, 'totalSteps'> = { lr: 3e-4, minLr: 3e-5, warmupSteps: 20, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1.0 };

export function checkOptim(o: OptimConfig): OptimConfig {
  for (const name of ['lr', 'minLr', 'eps', 'weightDecay', 'clip'] as const) {
    if (!Number.isFinite(o[name]) || o[name] < 0) throw new InvalidArgumentError(name, 'must be a finite number >= 0', `got ${o[name]}`);
  }
  for (const name of ['beta1', 'beta2'] as const) if (!(o[name] >= 0 && o[name] < 1)) throw new InvalidArgumentError(name, 'must be in [0, 1)', `got ${o[name]}`);
  for (const name of ['warmupSteps', 'totalSteps'] as const) {
    if (!Number.isSafeInteger(o[name]) || o[name] < 0) throw new InvalidArgumentError(name, 'must be an integer >= 0', `got ${o[name]}`);
  }
  return o;
}

/** Learning rate of step `step` (1-based): linear warmup to lr, then cosine down to minLr at totalSteps. */
export function lrAt(step: number, o: OptimConfig): number {
  if (o.warmupSteps > 0 && step <= o.warmupSteps) return (o.lr * step) / o.warmupSteps;
  const span = Math.max(1, o.totalSteps - o.warmupSteps);
  const t = Math.min(1, (step - o.warmupSteps) / span);
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * t));
}

export interface OptimStepInfo {
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  clipCoef: number;
}

export class AdamW<T, I> {
  constructor(
    readonly params: ParamSet<T, I>,
    readonly config: OptimConfig,
  ) {
    checkOptim(config);
  }

  /** Clips, updates every parameter, refreshes the matmul copies. `step` is 1-based. */
  step(step: number): OptimStepInfo {
    const { ops } = this.params;
    const o = this.config;
    const gradNorm = Math.sqrt(ops.sumOfSquares(this.params.grad));
    const clipCoef = o.clip > 0 ? clipCoefficient(gradNorm, o.clip) : 1;
    const lr = lrAt(step, o);
    for (const p of this.params.list()) {
      ops.adamw(p.master, p.grad, p.m, p.v, { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: p.spec.decay ? o.weightDecay : 0, step }, clipCoef);
    }
    this.params.refreshAct();
    return { lr, gradNorm, clipCoef };
  }
}
