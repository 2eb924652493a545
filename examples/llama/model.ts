/**
 * One training step of the Llama-style decoder, forward then backward, readable top to bottom
 * (the llm.c way: no autograd; each layer's backward is called by hand in reverse order).
 *
 *   x₀ = embed(tokens)
 *   per layer:  h = x + attn(rmsnorm(x))·Woᵀ          attn: rope(q), rope(k), v → attention core
 *               x' = h + (silu(n·Wgᵀ) ∘ n·Wuᵀ)·Wdᵀ,  n = rmsnorm(h)
 *   logits = rmsnorm(x_L)·Wheadᵀ,  loss = mean cross-entropy over the valid targets
 *
 * The residual stream and every gradient of it stay in master precision (float32); activations
 * that feed a matmul are in act precision (bfloat16 on the GPU), as PyTorch autocast keeps them.
 * The attention core is whatever `Attention` the step is given (attention.ts), so the same step
 * runs FFA, the dense/naive oracles, or calcAttn on a context-parallel shard; with a shard, the
 * tokens, targets and positions are the shard's (dispatch, getPositionIds) and the caller sums
 * the gradients over the cp group.
 */
import { EMBED, FINAL_NORM, LM_HEAD, layerParamName, type LayerPart, type LlamaConfig } from './config.js';
import type { Attention, AttentionOutput } from './attention.js';
import type { RopeTable } from './layers/rope.js';
import type { Ops } from './ops.js';
import type { Param, ParamSet } from './params.js';

/** The (local) rows of one step. */
export interface StepInputs<I> {
  tokens: I;
  /** Next-token targets, -1 where a row predicts nothing (document ends, padding). */
  targets: I;
  /** Global position of each row (RoPE). */
  positions: I;
  rows: number;
}

interface LayerActivations<T> {
  x: T;
  xn1: T;
  rstd1: T;
  q: T;
  k: T;
  v: T;
  att: AttentionOutput<T>;
  h: T;
  xn2: T;
  rstd2: T;
  a: T;
  b: T;
  m: T;
}

export class Llama<T, I> {
  constructor(
    readonly config: LlamaConfig,
    readonly ops: Ops<T, I>,
    readonly params: ParamSet<T, I>,
    readonly rope: RopeTable,
  ) {}

  private layer(l: number, part: LayerPart): Param<T> {
    return this.params.get(layerParamName(l, part));
  }

  private head(): Param<T> {
    return this.params.get(this.config.tieEmbeddings ? EMBED : LM_HEAD);
  }

  /**
   * Forward and backward of one step. Adds d(lossScale · Σ row losses)/dθ into the gradients and
   * returns Σ row losses (unscaled). lossScale is 1 / (valid targets of the whole batch).
   */
  async forwardBackward(inputs: StepInputs<I>, attention: Attention<T>, lossScale: number): Promise<number> {
    const { ops, config: c } = this;
    const T = inputs.rows;
    const [D, F, V] = [c.dim, c.ffnDim, c.vocabSize];
    const [Hq, Hkv, hd] = [c.nHeads, c.nKvHeads, c.headDim];
    const QD = Hq * hd;
    const KD = Hkv * hd;
    const free = (...ts: T[]): void => ts.forEach((t) => ops.free(t));

    // ---- forward ----
    let x = ops.zeros('master', [T, D]);
    ops.embeddingForward(x, inputs.tokens, this.params.get(EMBED).master);
    const saved: LayerActivations<T>[] = [];
    for (let l = 0; l < c.nLayers; l++) {
      const w = (part: LayerPart): Param<T> => this.layer(l, part);
      const xn1 = ops.zeros('act', [T, D]);
      const rstd1 = ops.zeros('master', [T]);
      ops.rmsnormForward(xn1, rstd1, x, w('attnNorm').master, c.normEps);
      const q = ops.zeros('act', [T, Hq, hd]);
      const k = ops.zeros('act', [T, Hkv, hd]);
      const v = ops.zeros('act', [T, Hkv, hd]);
      ops.gemm(q, xn1, w('wq').act, { m: T, n: QD, k: D, transB: true });
      ops.gemm(k, xn1, w('wk').act, { m: T, n: KD, k: D, transB: true });
      ops.gemm(v, xn1, w('wv').act, { m: T, n: KD, k: D, transB: true });
      ops.ropeForward(q, inputs.positions, this.rope);
      ops.ropeForward(k, inputs.positions, this.rope);
      const att = await attention.forward(q, k, v);
      const h = ops.zeros('master', [T, D]);
      ops.copy(h, x);
      ops.gemm(h, att.out, w('wo').act, { m: T, n: D, k: QD, transB: true, beta: 1 });

      const xn2 = ops.zeros('act', [T, D]);
      const rstd2 = ops.zeros('master', [T]);
      ops.rmsnormForward(xn2, rstd2, h, w('mlpNorm').master, c.normEps);
      const a = ops.zeros('act', [T, F]);
      const b = ops.zeros('act', [T, F]);
      const m = ops.zeros('act', [T, F]);
      ops.gemm(a, xn2, w('wGate').act, { m: T, n: F, k: D, transB: true });
      ops.gemm(b, xn2, w('wUp').act, { m: T, n: F, k: D, transB: true });
      ops.swigluForward(m, a, b);
      const next = ops.zeros('master', [T, D]);
      ops.copy(next, h);
      ops.gemm(next, m, w('wDown').act, { m: T, n: D, k: F, transB: true, beta: 1 });
      saved.push({ x, xn1, rstd1, q, k, v, att, h, xn2, rstd2, a, b, m });
      x = next;
    }
    const finalNorm = this.params.get(FINAL_NORM);
    const head = this.head();
    const xnf = ops.zeros('act', [T, D]);
    const rstdf = ops.zeros('master', [T]);
    ops.rmsnormForward(xnf, rstdf, x, finalNorm.master, c.normEps);
    const logits = ops.zeros('master', [T, V]);
    ops.gemm(logits, xnf, head.act, { m: T, n: V, k: D, transB: true });
    const dlogits = ops.zeros('act', [T, V]);
    const rowLoss = ops.zeros('master', [T]);
    ops.crossEntropy(dlogits, rowLoss, logits, inputs.targets, lossScale);
    free(logits);

    // ---- backward ----
    const dxn = ops.zeros('master', [T, D]);
    ops.gemm(dxn, dlogits, head.act, { m: T, n: D, k: V });
    ops.gemm(head.grad, dlogits, xnf, { m: V, n: D, k: T, transA: true, beta: 1 });
    free(dlogits);
    const dres = ops.zeros('master', [T, D]); // dL/d(residual stream), updated in place layer by layer
    ops.rmsnormBackward(dres, finalNorm.grad, dxn, x, finalNorm.master, rstdf);
    free(xnf, rstdf, x);

    const dresAct = ops.zeros('act', [T, D]);
    const dout = ops.zeros('act', [T, Hq, hd]);
    const dq = ops.zeros('master', [T, Hq, hd]);
    const dk = ops.zeros('master', [T, Hkv, hd]);
    const dv = ops.zeros('master', [T, Hkv, hd]);
    const dqAct = ops.zeros('act', [T, Hq, hd]);
    const dkAct = ops.zeros('act', [T, Hkv, hd]);
    const dvAct = ops.zeros('act', [T, Hkv, hd]);
    const dm = ops.zeros('act', [T, F]);
    const da = ops.zeros('act', [T, F]);
    const db = ops.zeros('act', [T, F]);
    for (let l = c.nLayers - 1; l >= 0; l--) {
      const w = (part: LayerPart): Param<T> => this.layer(l, part);
      const s = saved[l];
      // MLP branch: x' = h + swiglu(rmsnorm(h))·Wdᵀ
      ops.copy(dresAct, dres);
      ops.gemm(dm, dresAct, w('wDown').act, { m: T, n: F, k: D });
      ops.gemm(w('wDown').grad, dresAct, s.m, { m: D, n: F, k: T, transA: true, beta: 1 });
      ops.swigluBackward(da, db, dm, s.a, s.b);
      ops.gemm(dxn, da, w('wGate').act, { m: T, n: D, k: F });
      ops.gemm(dxn, db, w('wUp').act, { m: T, n: D, k: F, beta: 1 });
      ops.gemm(w('wGate').grad, da, s.xn2, { m: F, n: D, k: T, transA: true, beta: 1 });
      ops.gemm(w('wUp').grad, db, s.xn2, { m: F, n: D, k: T, transA: true, beta: 1 });
      ops.rmsnormBackward(dres, w('mlpNorm').grad, dxn, s.h, w('mlpNorm').master, s.rstd2);
      free(s.a, s.b, s.m, s.xn2, s.rstd2, s.h);

      // attention branch: h = x + attn(rope(q), rope(k), v)·Woᵀ
      ops.copy(dresAct, dres);
      ops.gemm(dout, dresAct, w('wo').act, { m: T, n: QD, k: D });
      ops.gemm(w('wo').grad, dresAct, s.att.out, { m: D, n: QD, k: T, transA: true, beta: 1 });
      ops.zero(dq);
      ops.zero(dk);
      ops.zero(dv);
      await attention.backward(dout, s.q, s.k, s.v, s.att, { dq, dk, dv });
      ops.ropeBackward(dqAct, dq, inputs.positions, this.rope);
      ops.ropeBackward(dkAct, dk, inputs.positions, this.rope);
      ops.copy(dvAct, dv);
      ops.gemm(dxn, dqAct, w('wq').act, { m: T, n: D, k: QD });
      ops.gemm(dxn, dkAct, w('wk').act, { m: T, n: D, k: KD, beta: 1 });
      ops.gemm(dxn, dvAct, w('wv').act, { m: T, n: D, k: KD, beta: 1 });
      ops.gemm(w('wq').grad, dqAct, s.xn1, { m: QD, n: D, k: T, transA: true, beta: 1 });
      ops.gemm(w('wk').grad, dkAct, s.xn1, { m: KD, n: D, k: T, transA: true, beta: 1 });
      ops.gemm(w('wv').grad, dvAct, s.xn1, { m: KD, n: D, k: T, transA: true, beta: 1 });
      ops.rmsnormBackward(dres, w('attnNorm').grad, dxn, s.x, w('attnNorm').master, s.rstd1);
      free(s.att.out, s.att.lse, s.q, s.k, s.v, s.xn1, s.rstd1, s.x);
    }
    ops.embeddingBackward(this.params.get(EMBED).grad, inputs.tokens, dres);
    free(dres, dresAct, dout, dq, dk, dv, dqAct, dkAct, dvAct, dm, da, db, dxn);

    const losses = ops.toHost(rowLoss);
    free(rowLoss);
    let sum = 0;
    for (const x of losses) sum += x;
    return sum;
  }
}
