/**
 * The Llama example's layers (examples/llama/layers): every hand-written backward against
 * central finite differences of its forward in float64 (loss = Σ out ∘ R for a fixed random R,
 * so dL/dout = R), the FFA attention core against the dense one in float32, and the whole
 * model's gradient against finite differences of its loss (float64, dense attention).
 *
 * Finite differences with step 1e-5 on float64 have truncation error ~1e-10 relative for these
 * smooth functions; we allow 1e-6 relative to the largest gradient. Random inputs print their
 * seed; replay with MAGI_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, freshSeed, varlenCausalMask, Tensor, type SliceList } from 'magi-attention';
import { denseAttentionBackward, denseAttentionForward, maskRows, type AttnShape } from '../examples/llama/layers/attention-dense.js';
import { crossEntropy } from '../examples/llama/layers/cross-entropy.js';
import { embeddingBackward, embeddingForward } from '../examples/llama/layers/embedding.js';
import { matmul } from '../examples/llama/layers/matmul.js';
import { rmsnormBackward, rmsnormForward } from '../examples/llama/layers/rmsnorm.js';
import { ropeBackward, ropeForward, ropeTable } from '../examples/llama/layers/rope.js';
import { swigluBackward, swigluForward } from '../examples/llama/layers/swiglu.js';
import { adamwUpdate, clipCoefficient } from '../examples/llama/layers/adamw.js';
import { denseAttention, ffaAttention } from '../examples/llama/attention.js';
import { paramSpecs, type LlamaConfig } from '../examples/llama/config.js';
import { Llama } from '../examples/llama/model.js';
import { ParamSet } from '../examples/llama/params.js';
import { createCpuOps } from '../examples/llama/cpu-ops.js';
import { lrAt } from '../examples/llama/optim.js';

const seed = freshSeed();
console.log(`example-llama-layers seed ${seed} (replay with MAGI_SEED=${seed})`);
const rng = new Rng(seed);
const randn = (n: number, scale = 1): Float64Array => rng.normals(n, scale);

/** Central differences of f at x, entry by entry (x is restored). */
function numericGrad(x: Float64Array, f: () => number, h = 1e-5): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const keep = x[i];
    x[i] = keep + h;
    const up = f();
    x[i] = keep - h;
    const down = f();
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    assert.ok(err <= rel * Math.max(scale, 1e-12), `${label}[${i}]: ${actual[i]} vs ${expected[i]} (error ${err.toExponential(2)}, allowed ${(rel * scale).toExponential(2)}; seed ${seed})`);
  }
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

test('matmul: every transpose combination and beta match a triple loop', () => {
  const [m, n, k] = [5, 7, 3];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      for (const beta of [0, 1] as const) {
        const a = randn(m * k);
        const b = randn(k * n);
        const c = randn(m * n);
        const want = Float64Array.from(c, (x) => (beta === 1 ? x : 0));
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            for (let p = 0; p < k; p++) want[i * n + j] += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
          }
        }
        matmul(c, a, b, { m, n, k, transA, transB, beta });
        assertClose(c, want, 1e-14, `matmul transA=${transA} transB=${transB} beta=${beta}`);
      }
    }
  }
});

test('rmsnorm backward (dx and dw, added into) equals finite differences', () => {
  const [T, D, eps] = [3, 8, 1e-5];
  const x = randn(T * D);
  const w = randn(D);
  const R = randn(T * D);
  const loss = (): number => {
    const out = new Float64Array(T * D);
    rmsnormForward(out, new Float64Array(T), x, w, T, D, eps);
    return dot(out, R);
  };
  const out = new Float64Array(T * D);
  const rstd = new Float64Array(T);
  rmsnormForward(out, rstd, x, w, T, D, eps);
  const dx0 = randn(T * D);
  const dw0 = randn(D);
  const dx = dx0.slice();
  const dw = dw0.slice();
  rmsnormBackward(dx, dw, R, x, w, rstd, T, D);
  assertClose(dx.map((v, i) => v - dx0[i]), numericGrad(x, loss), 1e-6, 'dx');
  assertClose(dw.map((v, i) => v - dw0[i]), numericGrad(w, loss), 1e-6, 'dw');
});

test('rope: position 0 is the identity, backward is the inverse rotation and equals finite differences', () => {
  const [T, H, D] = [4, 3, 8];
  const table = ropeTable(64, D, 10000);
  const positions = Int32Array.from([0, 5, 17, 63]);
  const x = randn(T * H * D);
  const y = x.slice();
  ropeForward(y, positions, H, table);
  assertClose(y.subarray(0, H * D), x.subarray(0, H * D), 0, 'position 0');
  const back = new Float64Array(x.length);
  ropeBackward(back, y, positions, H, table);
  assertClose(back, x, 1e-6, 'inverse'); // the table is float32, so cos² + sin² = 1 only to ~1e-7
  const R = randn(x.length);
  const loss = (): number => {
    const z = x.slice();
    ropeForward(z, positions, H, table);
    return dot(z, R);
  };
  const dx = new Float64Array(x.length);
  ropeBackward(dx, R, positions, H, table);
  assertClose(dx, numericGrad(x, loss), 1e-6, 'dx');
});

test('rope angles are float32 products of float32 inverse frequencies and positions (transformers does the same)', () => {
  const D = 128;
  const t = ropeTable(16384, D, 10000);
  const p = 16000;
  const j = 5;
  const inv = Math.fround(1 / Math.fround(10000 ** Math.fround((2 * j) / D)));
  assert.equal(t.cos[p * (D / 2) + j], Math.fround(Math.cos(Math.fround(p * inv))));
});

test('swiglu backward equals finite differences', () => {
  const n = 20;
  const a = randn(n, 2);
  const b = randn(n);
  const R = randn(n);
  const loss = (): number => {
    const out = new Float64Array(n);
    swigluForward(out, a, b, n);
    return dot(out, R);
  };
  const da = new Float64Array(n);
  const db = new Float64Array(n);
  swigluBackward(da, db, R, a, b, n);
  assertClose(da, numericGrad(a, loss), 1e-6, 'da');
  assertClose(db, numericGrad(b, loss), 1e-6, 'db');
});

test('embedding backward scatters every row into its token (repeated tokens add)', () => {
  const [V, D] = [5, 4];
  const tokens = Int32Array.from([2, 0, 2, 4]);
  const table = randn(V * D);
  const R = randn(tokens.length * D);
  const loss = (): number => {
    const out = new Float64Array(tokens.length * D);
    embeddingForward(out, tokens, table, D);
    return dot(out, R);
  };
  const dtable = new Float64Array(V * D);
  embeddingBackward(dtable, tokens, R, D);
  assertClose(dtable, numericGrad(table, loss), 1e-6, 'dtable');
});

test('cross-entropy: loss and gradient equal finite differences; target -1 rows give nothing', () => {
  const [T, V, scale] = [4, 6, 1 / 3];
  const logits = randn(T * V, 3);
  const targets = Int32Array.from([1, -1, 5, 0]);
  const loss = (): number => crossEntropy(new Float64Array(T * V), new Float64Array(T), logits, targets, V, 1) * scale;
  const d = new Float64Array(T * V);
  const rows = new Float64Array(T);
  const total = crossEntropy(d, rows, logits, targets, V, scale);
  assert.equal(rows[1], 0);
  assert.ok(d.subarray(V, 2 * V).every((x) => x === 0));
  let lse = -Infinity;
  const row0 = logits.subarray(0, V);
  const m = Math.max(...row0);
  lse = m + Math.log(row0.reduce((s, z) => s + Math.exp(z - m), 0));
  assert.ok(Math.abs(rows[0] - (lse - row0[1])) < 1e-12);
  assert.ok(Math.abs(total - (rows[0] + rows[2] + rows[3])) < 1e-12);
  assertClose(d, numericGrad(logits, loss), 1e-6, 'dlogits');
});

function attnCase(): { mask: SliceList; shape: AttnShape; q: Float64Array; k: Float64Array; v: Float64Array } {
  const shape: AttnShape = { tokens: 9, headsQ: 4, headsKv: 2, headDim: 4, scale: 0.5 };
  const n = shape.tokens;
  return {
    mask: varlenCausalMask([0, 4, 9]),
    shape,
    q: randn(n * shape.headsQ * shape.headDim),
    k: randn(n * shape.headsKv * shape.headDim),
    v: randn(n * shape.headsKv * shape.headDim),
  };
}

test('dense attention: lse is the log-sum-exp of the visible scores; dq, dk, dv equal finite differences (GQA, two causal documents)', () => {
  const { mask, shape, q, k, v } = attnCase();
  const rows = maskRows(mask, shape.tokens);
  const nOut = shape.tokens * shape.headsQ * shape.headDim;
  const R = randn(nOut);
  const loss = (): number => {
    const out = new Float64Array(nOut);
    denseAttentionForward(out, new Float64Array(shape.tokens * shape.headsQ), q, k, v, rows, shape);
    return dot(out, R);
  };
  const out = new Float64Array(nOut);
  const lse = new Float64Array(shape.tokens * shape.headsQ);
  denseAttentionForward(out, lse, q, k, v, rows, shape);
  // row 5 (second document's second token), head 3 (kv head 1): keys 4 and 5
  const score = (j: number): number => dot(q.subarray((5 * 4 + 3) * 4, (5 * 4 + 3) * 4 + 4), k.subarray((j * 2 + 1) * 4, (j * 2 + 1) * 4 + 4)) * 0.5;
  assert.ok(Math.abs(lse[5 * 4 + 3] - Math.log(Math.exp(score(4)) + Math.exp(score(5)))) < 1e-12);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  denseAttentionBackward(dq, dk, dv, R, q, k, v, lse, rows, shape);
  assertClose(dq, numericGrad(q, loss), 1e-6, 'dq');
  assertClose(dk, numericGrad(k, loss), 1e-6, 'dk');
  assertClose(dv, numericGrad(v, loss), 1e-6, 'dv');
});

test('the FFA attention core equals the dense one in float32 (out, lse, dq, dk, dv)', async () => {
  const { mask, shape, q, k, v } = attnCase();
  const T = shape.tokens;
  const t = (d: Float64Array, h: number): Tensor => Tensor.fromValues('float32', [T, h, shape.headDim], d);
  const [tq, tk, tv] = [t(q, 4), t(k, 2), t(v, 2)];
  const dout = t(randn(T * 4 * shape.headDim), 4);
  const results = [];
  for (const core of [ffaAttention<Tensor>(mask), denseAttention(mask, T)]) {
    const fwd = await core.forward(tq, tk, tv);
    const g = { dq: Tensor.zeros('float32', tq.shape), dk: Tensor.zeros('float32', tk.shape), dv: Tensor.zeros('float32', tv.shape) };
    await core.backward(dout, tq, tk, tv, fwd, g);
    results.push({ out: fwd.out.toFloat64(), lse: fwd.lse.toFloat64(), dq: g.dq.toFloat64(), dk: g.dk.toFloat64(), dv: g.dv.toFloat64() });
  }
  // the FFA core scales by 1/sqrt(D) = 0.5, the case's scale
  for (const name of ['out', 'lse', 'dq', 'dk', 'dv'] as const) assertClose(results[0][name], results[1][name], 2e-6, name);
});

test('AdamW: the clip coefficient is PyTorch\'s, the first step moves each weight by lr (bias-corrected), decay multiplies first', () => {
  assert.equal(clipCoefficient(0.5, 1), 1);
  assert.ok(Math.abs(clipCoefficient(4, 1) - 1 / (4 + 1e-6)) < 1e-15);
  const p = Float64Array.from([1, -2, 3]);
  const g = Float64Array.from([0.5, -0.25, 2]);
  const m = new Float64Array(3);
  const v = new Float64Array(3);
  adamwUpdate(p, g, m, v, 3, { lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 0, weightDecay: 0.01, step: 1 }, 1);
  // step 1: m̂ = g, v̂ = g², so the update is lr·sign(g) after the decay p·(1 − lr·wd)
  assertClose(p, [1 * 0.999 - 0.1, -2 * 0.999 + 0.1, 3 * 0.999 - 0.1], 1e-12, 'p');
  const o = { lr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, clip: 1 };
  assert.equal(lrAt(5, o), 5e-4);
  assert.equal(lrAt(10, o), 1e-3);
  assert.ok(Math.abs(lrAt(60, o) - 5.5e-4) < 1e-15);
  assert.ok(Math.abs(lrAt(110, o) - 1e-4) < 1e-15);
});

const MICRO: LlamaConfig = { vocabSize: 11, dim: 8, nLayers: 2, nHeads: 2, nKvHeads: 1, headDim: 4, ffnDim: 12, normEps: 1e-5, ropeTheta: 10000, tieEmbeddings: false, initStd: 0.3 };

for (const tied of [false, true]) {
  test(`the whole model's gradient equals finite differences of its loss (float64, dense attention, ${tied ? 'tied' : 'untied'} head)`, async () => {
    const config = { ...MICRO, tieEmbeddings: tied };
    const ops = createCpuOps('float64');
    const params = new ParamSet(ops, config);
    params.initRandom(rng.int(0, 2 ** 31));
    const T = 10;
    const tokens = Int32Array.from({ length: T }, () => rng.int(0, config.vocabSize - 1));
    const targets = Int32Array.from({ length: T }, (_, i) => (i === 3 || i === T - 1 ? -1 : rng.int(0, config.vocabSize - 1)));
    const cu = [0, 4, T];
    const model = new Llama(config, ops, params, ropeTable(T, config.headDim, config.ropeTheta));
    const inputs = { tokens, targets, positions: Int32Array.from({ length: T }, (_, i) => i), rows: T };
    const attention = denseAttention(varlenCausalMask(cu), T);
    const scale = 1 / 8;
    params.zeroGrads();
    await model.forwardBackward(inputs, attention, scale);
    const grad = ops.toHost(params.grad);
    const master = params.master.data as Float64Array;
    const loss = async (): Promise<number> => (await model.forwardBackward(inputs, attention, scale)) * scale;
    // every parameter tensor, three random entries of each
    for (const spec of paramSpecs(config)) {
      const p = params.get(spec.name);
      for (let r = 0; r < 3; r++) {
        const i = p.offset + rng.int(0, p.size - 1);
        const keep = master[i];
        master[i] = keep + 1e-6;
        const up = await loss();
        master[i] = keep - 1e-6;
        const down = await loss();
        master[i] = keep;
        const fd = (up - down) / 2e-6;
        assert.ok(Math.abs(grad[i] - fd) <= 1e-6 * Math.max(1, Math.abs(fd)), `${spec.name}[${i - p.offset}]: analytic ${grad[i]} vs finite difference ${fd} (seed ${seed})`);
      }
    }
  });
}
