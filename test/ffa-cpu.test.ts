/**
 * The CPU flex-flash-attention kernel against the dense float64 reference, on fresh random
 * inputs and masks (every test prints its seed; replay one with MAGI_SEED=<seed>), plus the
 * reference itself against finite differences, the -inf rules, accumulation, determinism and
 * argument validation.
 *
 * Tolerances (element-wise: |got - want| <= rtol·|want| + atol·max|want|, see test/util/attn-check.ts).
 * Kernel and reference see the SAME inputs: 16-bit inputs are rounded once when the test makes
 * them and the reference widens those rounded values exactly (float64 inputs are made
 * float32-exact, since the kernel computes from float32 copies). The only error sources are then:
 * (1) float32: the backend's default engine (WebAssembly SIMD) computes tiles in float32, the
 *     TypeScript engine in float64 with float32 storage (see src/kernels/tolerance.ts): a few
 *     float32 ulps (2^-24 ≈ 6e-8 relative). We allow 1e-6 (≈16 ulps) for out, lse and maxLogits;
 *     gradients and dsink, sums whose terms cancel, get 1e-5, relative to the element and to the
 *     tensor's largest element. Observed: mostly under 0.16 of these bounds (WebAssembly), 0.01
 *     (TypeScript); the worst seen is in src/kernels/tolerance.ts.
 * (2) rounding the result to a 16-bit output dtype: at most half an ulp of the result (2^-11
 *     relative for float16, 2^-8 for bfloat16) plus the float32 error of (1). We allow one ulp
 *     (2^-10, 2^-7) on top of (1) for out, dq, dk and dv; observed: 0.5 of that, as predicted.
 * lse, maxLogits and dsink are float32 for every input dtype, so they keep the float32 bounds.
 * FFA_TOL_REPORT=1 prints every comparison's worst error as a fraction of its bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/tensor.js';
import type { DType } from '../src/dtype.js';
import { InvalidArgumentError } from '../src/errors.js';
import { makeSliceList, type SliceList } from '../src/mask/slice-list.js';
import type { FfaBackwardArgs, FfaForwardArgs, KernelBackend } from '../src/kernels/backend.js';
import { cpuBackend, mergeOutLseInto } from '../src/kernels/cpu/index.js';
import { referenceBackward, referenceForward } from '../src/kernels/reference.js';
import { flexFlashAttn, flexFlashAttnBackward, registerKernelBackend, selectKernelBackend } from '../src/kernels/flex-flash-attn.js';
import { Rng } from '../src/util/rng.js';
import { CPU_KERNEL_TOLERANCES } from '../src/kernels/tolerance.js';
import { type AttnProblem, type Tolerance, compareClose, randomSlices, randomTensor, seeded } from './util/attn-check.js';
import { stratifiedSample } from '../src/cli/demo-check.js';

const TOLERANCES = CPU_KERNEL_TOLERANCES;

function expectClose(actual: Tensor | undefined, expected: Tensor | undefined, tol: Tolerance, label: string, seed: number): void {
  assert.ok(actual !== undefined && expected !== undefined, `${label}: missing (seed ${seed})`);
  const r = compareClose(actual, expected, tol, label);
  if (process.env.FFA_TOL_REPORT) console.log(`TOL ${r.worstRatio.toExponential(2)} ${label}`);
  assert.ok(r.ok, `${r.message} (seed ${seed})`);
}

/** float64 values that float32 holds exactly, so the kernel's float32 copy loses nothing. */
function float32Exact(rng: Rng, shape: number[]): Tensor {
  const t = randomTensor(rng, 'float64', shape);
  const d = t.data as Float64Array;
  for (let i = 0; i < d.length; i++) d[i] = Math.fround(d[i]);
  return t;
}

interface Problem extends AttnProblem {
  sink?: Tensor;
  softmaxScale: number;
}

function randomProblem(
  rng: Rng,
  dtype: DType,
  cfg: { tq: number; tk: number; hq: number; hkv: number; dim: number; slices: number; sink?: number; softcap?: number; sharedCells?: boolean },
): Problem {
  const make = (shape: number[]) => (dtype === 'float64' ? float32Exact(rng, shape) : randomTensor(rng, dtype, shape));
  return {
    q: make([cfg.tq, cfg.hq, cfg.dim]),
    k: make([cfg.tk, cfg.hkv, cfg.dim]),
    v: make([cfg.tk, cfg.hkv, cfg.dim]),
    dout: make([cfg.tq, cfg.hq, cfg.dim]),
    slices: randomSlices(rng, cfg.tq, cfg.tk, { slices: cfg.slices, allowSharedCells: cfg.sharedCells }),
    sink: cfg.sink ? randomTensor(rng, 'float32', [cfg.sink, cfg.hq], 1.5) : undefined,
    softmaxScale: 1 / Math.sqrt(cfg.dim),
    softcap: cfg.softcap ?? 0,
  };
}

function fwdArgs(p: Problem, extra: Partial<FfaForwardArgs<Tensor>> = {}): FfaForwardArgs<Tensor> {
  return {
    q: p.q,
    k: p.k,
    v: p.v,
    slices: p.slices,
    softmaxScale: p.softmaxScale,
    softcap: p.softcap,
    sink: p.sink,
    returnMaxLogits: true,
    outDtype: p.q.dtype,
    deterministic: false,
    ...extra,
  };
}

function bwdArgs(p: Problem, out: Tensor, lse: Tensor, extra: Partial<FfaBackwardArgs<Tensor>> = {}): FfaBackwardArgs<Tensor> {
  return { dout: p.dout, q: p.q, k: p.k, v: p.v, out, lse, slices: p.slices, softmaxScale: p.softmaxScale, softcap: p.softcap, sink: p.sink, deterministic: false, ...extra };
}

/** Forward and backward of the CPU kernel through the public functions, checked against the reference. */
function checkAgainstReference(p: Problem, seed: number, label: string): void {
  const tol = TOLERANCES[p.q.dtype];
  const opts = {
    qRanges: p.slices.qRanges,
    kRanges: p.slices.kRanges,
    maskTypes: p.slices.maskTypes,
    softmaxScale: p.softmaxScale,
    softcap: p.softcap,
    sink: p.sink,
  };
  const got = flexFlashAttn(p.q, p.k, p.v, { ...opts, returnMaxLogits: true });
  const want = referenceForward(fwdArgs(p));
  assert.equal(got.out.dtype, p.q.dtype);
  assert.equal(got.lse.dtype, 'float32');
  expectClose(got.out, want.out, tol.out, `${label} out`, seed);
  expectClose(got.lse, want.lse, tol.lse, `${label} lse`, seed);
  expectClose(got.maxLogits, want.maxLogits, tol.maxLogits, `${label} maxLogits`, seed);

  // Both backward passes start from the kernel's own (out, lse): the same inputs for both.
  const grads = flexFlashAttnBackward(p.dout, p.q, p.k, p.v, got.out, got.lse, opts);
  const ref = referenceBackward(bwdArgs(p, got.out, got.lse));
  for (const name of ['dq', 'dk', 'dv'] as const) {
    assert.equal(grads[name].dtype, p.q.dtype);
    expectClose(grads[name], ref[name], tol.grad, `${label} ${name}`, seed);
  }
  if (p.sink !== undefined) expectClose(grads.dsink, ref.dsink, tol.dsink, `${label} dsink`, seed);
  else assert.equal(grads.dsink, undefined);
}

// ---------------------------------------------------------------------------------------------
// The reference itself

test('reference gradients equal central finite differences of L = Σ out·W (softcap, sink, GQA, shared cells)', (t) => {
  const { seed, rng } = seeded(t);
  for (const variant of [
    { softcap: 0, sink: 0 },
    { softcap: 1.3, sink: 2 },
  ]) {
    const tq = 6;
    const tk = 7;
    const hq = 2;
    const hkv = 1;
    const dim = 3;
    const q = randomTensor(rng, 'float64', [tq, hq, dim]);
    const k = randomTensor(rng, 'float64', [tk, hkv, dim]);
    const v = randomTensor(rng, 'float64', [tk, hkv, dim]);
    const w = randomTensor(rng, 'float64', [tq, hq, dim]);
    const sink = variant.sink ? randomTensor(rng, 'float64', [variant.sink, hq]) : undefined;
    // Overlapping q ranges, one cell range covered twice, every type, an uncovered row (5).
    const slices = makeSliceList(
      [[0, 4], [2, 5], [0, 3], [1, 4]],
      [[0, 5], [3, 7], [4, 7], [0, 2]],
      ['causal', 'inv_causal', 'bi_causal', 'full'],
    );
    const base = { q, k, v, slices, softmaxScale: 0.7, softcap: variant.softcap, sink, returnMaxLogits: false, outDtype: 'float64' as const, deterministic: false };
    const loss = (args: FfaForwardArgs<Tensor>): number => {
      const out = referenceForward(args).out.data as Float64Array;
      let s = 0;
      for (let i = 0; i < out.length; i++) s += out[i] * (w.data as Float64Array)[i];
      return s;
    };
    const fwd = referenceForward(base);
    const grads = referenceBackward({ dout: w, q, k, v, out: fwd.out, lse: fwd.lse, slices, softmaxScale: 0.7, softcap: variant.softcap, sink, deterministic: false });
    const h = 1e-5;
    const inputs: [string, Tensor, Tensor | undefined][] = [
      ['q', q, grads.dq],
      ['k', k, grads.dk],
      ['v', v, grads.dv],
      ['sink', sink as Tensor, grads.dsink],
    ];
    for (const [name, x, grad] of inputs) {
      if (x === undefined) continue;
      assert.ok(grad !== undefined);
      const data = x.data as Float64Array;
      for (let i = 0; i < data.length; i++) {
        const keep = data[i];
        data[i] = keep + h;
        const up = loss(base);
        data[i] = keep - h;
        const down = loss(base);
        data[i] = keep;
        const fd = (up - down) / (2 * h);
        const an = grad.at(i);
        assert.ok(Math.abs(fd - an) <= 1e-7 * (1 + Math.abs(fd)), `d${name}[${i}] analytic ${an} vs finite difference ${fd} (softcap ${variant.softcap}, seed ${seed})`);
      }
    }
  }
});

test('the reference on a subset of rows and keys gives exactly the full reference\'s values there (the demo\'s sampled check)', (t) => {
  const { seed, rng } = seeded(t);
  const p = randomProblem(rng, 'float32', { tq: 90, tk: 70, hq: 4, hkv: 2, dim: 8, slices: 5, sink: 2, softcap: 1.5, sharedCells: true });
  const rows = stratifiedSample(90, 17, rng);
  const keys = stratifiedSample(70, 13, rng);
  assert.equal(rows.length, 17);
  for (let i = 1; i < rows.length; i++) assert.ok(rows[i] > rows[i - 1] && rows[i] < 90);
  const full = referenceForward(fwdArgs(p));
  const part = referenceForward(fwdArgs(p), { rows });
  const fullGrad = referenceBackward(bwdArgs(p, full.out, full.lse));
  const partGrad = referenceBackward(bwdArgs(p, full.out, full.lse), { rows, keys });
  const same = (a: Tensor, b: Tensor, tokens: Int32Array, label: string) => {
    const per = a.size / a.shape[0];
    for (let i = 0; i < tokens.length; i++) for (let e = 0; e < per; e++) assert.equal(b.at(i * per + e), a.at(tokens[i] * per + e), `${label} token ${tokens[i]} (seed ${seed})`);
  };
  same(full.out, part.out, rows, 'out');
  same(full.lse, part.lse, rows, 'lse');
  same(fullGrad.dq, partGrad.dq, rows, 'dq');
  same(fullGrad.dk, partGrad.dk, keys, 'dk');
  same(fullGrad.dv, partGrad.dv, keys, 'dv');
  assert.deepEqual(partGrad.dsink!.data, fullGrad.dsink!.data);
});

// ---------------------------------------------------------------------------------------------
// Kernel vs reference on random problems

const RANDOM_CASES: { dtype: DType; hq: number; hkv: number; dim: number }[] = [
  { dtype: 'float32', hq: 4, hkv: 2, dim: 64 },
  { dtype: 'float32', hq: 8, hkv: 1, dim: 16 },
  { dtype: 'float32', hq: 3, hkv: 3, dim: 13 },
  { dtype: 'float16', hq: 6, hkv: 3, dim: 32 },
  { dtype: 'float16', hq: 2, hkv: 2, dim: 64 },
  { dtype: 'bfloat16', hq: 4, hkv: 2, dim: 16 },
  { dtype: 'bfloat16', hq: 8, hkv: 1, dim: 32 },
  { dtype: 'bfloat16', hq: 8, hkv: 2, dim: 128 },
  { dtype: 'float64', hq: 2, hkv: 1, dim: 20 },
];

for (const c of RANDOM_CASES) {
  test(`${c.dtype} ${c.hq}:${c.hkv} heads, D=${c.dim}: random masks of all four types with overlapping q ranges, softcap and sink match the reference`, (t) => {
    const { seed, rng } = seeded(t);
    for (let round = 0; round < 6; round++) {
      const p = randomProblem(rng, c.dtype, {
        tq: rng.int(20, 200),
        tk: rng.int(20, 200),
        hq: c.hq,
        hkv: c.hkv,
        dim: c.dim,
        slices: rng.int(1, 8),
        sink: round % 2 === 0 ? 0 : rng.int(1, 4),
        softcap: round % 3 === 2 ? 0.5 + 4 * rng.next() : 0,
        sharedCells: round % 4 >= 2,
      });
      checkAgainstReference(p, seed, `${c.dtype} round ${round}`);
    }
  });
}

test('masks larger than a tile (causal and bi-causal bands, 300-700 tokens) exercise tile skipping and match the reference', (t) => {
  const { seed, rng } = seeded(t);
  const n = rng.int(300, 700);
  const w = rng.int(20, 150);
  const q = randomTensor(rng, 'float32', [n, 2, 16]);
  const k = randomTensor(rng, 'float32', [n, 1, 16]);
  const v = randomTensor(rng, 'float32', [n, 1, 16]);
  const dout = randomTensor(rng, 'float32', [n, 2, 16]);
  const masks: [string, SliceList][] = [
    ['causal', makeSliceList([[0, n]], [[0, n]], 'causal')],
    // Sliding window: rows < w causal over [0, w), later rows see [q - w, q] through a bi-causal band.
    ['window', makeSliceList([[0, w], [w, n]], [[0, w], [0, n]], ['causal', 'bi_causal'])],
    ['inv-causal tail', makeSliceList([[n - 200, n]], [[0, n]], 'inv_causal')],
  ];
  for (const [name, slices] of masks) {
    const p: Problem = { q, k, v, dout, slices, softmaxScale: 0.25, softcap: 0 };
    checkAgainstReference(p, seed, `${name} n=${n} w=${w}`);
  }
});

test('random multi-slice masks spanning several tiles (400-600 tokens, GQA, sink, softcap) match the reference', (t) => {
  const { seed, rng } = seeded(t);
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const p = randomProblem(rng, dtype, {
      tq: rng.int(400, 600),
      tk: rng.int(400, 600),
      hq: 4,
      hkv: 2,
      dim: 24,
      slices: rng.int(3, 10),
      sink: rng.int(1, 4),
      softcap: dtype === 'float32' ? 0 : 3,
      sharedCells: dtype === 'bfloat16',
    });
    checkAgainstReference(p, seed, `${dtype} ${p.q.shape[0]}x${p.k.shape[0]}`);
  }
});

test('zero-token inputs and slices with empty ranges produce empty or untouched results', () => {
  const q = Tensor.zeros('float32', [0, 2, 8]);
  const k = Tensor.zeros('float32', [5, 1, 8]);
  const r = flexFlashAttn(q, k, k, { qRanges: [[0, 0]], kRanges: [[0, 5]], maskTypes: 'full' });
  assert.deepEqual(r.out.shape, [0, 2, 8]);
  assert.deepEqual(r.lse.shape, [0, 2]);
  const q2 = randomTensor(new Rng(1), 'float32', [3, 2, 8]);
  const r2 = flexFlashAttn(q2, k, k, { qRanges: [[0, 3], [1, 1]], kRanges: [[2, 2], [0, 5]], maskTypes: 'full' });
  for (let i = 0; i < 6; i++) assert.equal(r2.lse.at(i), -Infinity);
  const g = flexFlashAttnBackward(q2, q2, k, k, r2.out, r2.lse, { qRanges: [], kRanges: [], maskTypes: [] });
  for (const x of [g.dq, g.dk, g.dv]) for (let i = 0; i < x.size; i++) assert.equal(x.at(i), 0);
});

// ---------------------------------------------------------------------------------------------
// Empty rows and the -inf rules

test('rows covered by no slice get out exactly 0 and lse exactly -inf, never NaN', (t) => {
  const { seed, rng } = seeded(t);
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const q = randomTensor(rng, dtype, [40, 2, 8]);
    const k = randomTensor(rng, dtype, [30, 2, 8]);
    // Rows 0-9 and 30-39 are uncovered; causal with Lq > Lk leaves rows 10-14 empty too.
    const { out, lse } = flexFlashAttn(q, k, k, { qRanges: [[10, 30]], kRanges: [[0, 15]], maskTypes: 'causal' });
    for (let t2 = 0; t2 < 40; t2++) {
      const empty = t2 < 15 || t2 >= 30;
      for (let h = 0; h < 2; h++) {
        const l = lse.at(t2 * 2 + h);
        if (empty) assert.equal(l, -Infinity, `lse[${t2}, ${h}] (seed ${seed})`);
        else assert.ok(Number.isFinite(l), `lse[${t2}, ${h}] = ${l} (seed ${seed})`);
        for (let d = 0; d < 8; d++) {
          const o = out.at((t2 * 2 + h) * 8 + d);
          assert.ok(!Number.isNaN(o));
          if (empty) assert.ok(Object.is(o, 0), `out[${t2}, ${h}, ${d}] = ${o} (seed ${seed})`);
        }
      }
    }
    // The backward of empty rows is 0 too, and no NaN anywhere.
    const dout = randomTensor(rng, dtype, [40, 2, 8]);
    const g = flexFlashAttnBackward(dout, q, k, k, out, lse, { qRanges: [[10, 30]], kRanges: [[0, 15]], maskTypes: 'causal' });
    for (const x of [g.dq, g.dk, g.dv]) for (let i = 0; i < x.size; i++) assert.ok(!Number.isNaN(x.at(i)));
    for (let i = 0; i < 15 * 2 * 8; i++) assert.equal(g.dq.at(i), 0);
    // Keys never seen (15-29) get zero dk/dv.
    for (let i = 15 * 2 * 8; i < 30 * 2 * 8; i++) assert.equal(g.dk.at(i) + g.dv.at(i), 0);
  }
});

test('causal slice with Lq > Lk leaves the first Lq - Lk rows empty; bi-causal with Lq > Lk is empty', () => {
  const rng = new Rng(5);
  const q = randomTensor(rng, 'float32', [10, 1, 4]);
  const k = randomTensor(rng, 'float32', [4, 1, 4]);
  const causal = flexFlashAttn(q, k, k, { qRanges: [[0, 10]], kRanges: [[0, 4]], maskTypes: 'causal' });
  for (let t = 0; t < 10; t++) assert.equal(Number.isFinite(causal.lse.at(t)), t >= 6, `row ${t}`);
  const inv = flexFlashAttn(q, k, k, { qRanges: [[0, 10]], kRanges: [[0, 4]], maskTypes: 'inv_causal' });
  for (let t = 0; t < 10; t++) assert.equal(Number.isFinite(inv.lse.at(t)), t < 4, `row ${t}`);
  const bi = flexFlashAttn(q, k, k, { qRanges: [[0, 10]], kRanges: [[0, 4]], maskTypes: 3 });
  for (let t = 0; t < 10; t++) assert.equal(bi.lse.at(t), -Infinity);
});

test('with a sink, uncovered rows get lse = logsumexp(sink) and out = 0', (t) => {
  const { seed, rng } = seeded(t);
  const q = randomTensor(rng, 'float16', [12, 3, 8]);
  const k = randomTensor(rng, 'float16', [12, 3, 8]);
  const sink = randomTensor(rng, 'float32', [3, 3]);
  const { out, lse } = flexFlashAttn(q, k, k, { qRanges: [[0, 6]], kRanges: [[0, 12]], maskTypes: 'full', sink });
  for (let h = 0; h < 3; h++) {
    const s = [0, 1, 2].map((i) => sink.at(i * 3 + h));
    const m = Math.max(...s);
    const want = m + Math.log(s.reduce((a, x) => a + Math.exp(x - m), 0));
    for (let row = 6; row < 12; row++) {
      assert.ok(Math.abs(lse.at(row * 3 + h) - want) < 1e-6, `lse[${row}, ${h}] (seed ${seed})`);
      for (let d = 0; d < 8; d++) assert.ok(Object.is(out.at((row * 3 + h) * 8 + d), 0));
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Accumulation

test('accumulating into an existing (out, lse) equals the log-sum-exp merge, in place; -inf rows with NaN garbage are overwritten', (t) => {
  const { seed, rng } = seeded(t);
  for (const [dtype, accDtype] of [
    ['float32', 'float32'],
    ['bfloat16', 'float32'],
    ['float16', 'float16'],
  ] as const) {
    const p = randomProblem(rng, dtype, { tq: 90, tk: 80, hq: 4, hkv: 2, dim: 16, slices: 5, sink: rng.int(0, 2) });
    const outAcc = randomTensor(rng, accDtype, [90, 4, 16]);
    const lseAcc = randomTensor(rng, 'float32', [90, 4], 2);
    // Poison: a third of the rows hold nothing yet (lse -inf) and garbage in out.
    for (let row = 0; row < 90 * 4; row++) {
      if (rng.next() < 0.33) {
        (lseAcc.data as Float32Array)[row] = -Infinity;
        for (let d = 0; d < 16; d++) outAcc.data[row * 16 + d] = accDtype === 'float32' ? NaN : 0x7e00;
      }
    }
    const want = referenceForward(fwdArgs(p, { outAcc, lseAcc }));
    const got = cpuBackend.forward(fwdArgs(p, { outAcc, lseAcc }));
    assert.equal(got.out, outAcc, 'the accumulator itself is returned');
    assert.equal(got.lse, lseAcc);
    const tol = TOLERANCES[accDtype];
    expectClose(got.out, want.out, tol.out, `${dtype} -> ${accDtype} merged out`, seed);
    expectClose(got.lse, want.lse, tol.lse, `${dtype} merged lse`, seed);

    // The same through the public function.
    const outAcc2 = randomTensor(rng, 'float32', [90, 4, 16]);
    const lseAcc2 = Tensor.full('float32', [90, 4], -Infinity);
    outAcc2.data.fill(NaN);
    const pub = flexFlashAttn(p.q, p.k, p.v, {
      qRanges: p.slices.qRanges,
      kRanges: p.slices.kRanges,
      maskTypes: p.slices.maskTypes,
      softmaxScale: p.softmaxScale,
      sink: p.sink,
      out: outAcc2,
      lse: lseAcc2,
    });
    assert.equal(pub.out, outAcc2);
    const fresh = referenceForward(fwdArgs(p));
    expectClose(pub.out, fresh.out, TOLERANCES.float32.out, `${dtype} into an empty accumulator`, seed);
  }
});

test('two calls on disjoint key halves accumulate to one call over all keys', (t) => {
  const { seed, rng } = seeded(t);
  const q = randomTensor(rng, 'float32', [70, 2, 16]);
  const k = randomTensor(rng, 'float32', [100, 2, 16]);
  const v = randomTensor(rng, 'float32', [100, 2, 16]);
  const whole = flexFlashAttn(q, k, v, { qRanges: [[0, 70]], kRanges: [[0, 100]], maskTypes: 'causal', returnMaxLogits: true });
  const out = Tensor.zeros('float32', [70, 2, 16]);
  const lse = Tensor.full('float32', [70, 2], -Infinity);
  const maxLogits = Tensor.full('float32', [2], -Infinity);
  // The causal slice (row i sees keys <= i + 30) cut at key 50 into three calls: the right part
  // is causal again, the left part causal for rows < 20 and full below.
  flexFlashAttn(q, k, v, { qRanges: [[0, 70]], kRanges: [[50, 100]], maskTypes: 'causal', out, lse, maxLogits });
  flexFlashAttn(q, k, v, { qRanges: [[20, 70]], kRanges: [[0, 50]], maskTypes: 'full', out, lse, maxLogits });
  flexFlashAttn(q, k, v, { qRanges: [[0, 20]], kRanges: [[0, 50]], maskTypes: 'causal', out, lse, maxLogits });
  expectClose(out, whole.out, TOLERANCES.float32.out, 'out', seed);
  expectClose(lse, whole.lse, TOLERANCES.float32.lse, 'lse', seed);
  expectClose(maxLogits, whole.maxLogits, TOLERANCES.float32.maxLogits, 'maxLogits', seed);
  // The same with separate results folded by the tensor-level merge the runtime uses.
  const left = flexFlashAttn(q, k, v, { qRanges: [[20, 70], [0, 20]], kRanges: [[0, 50], [0, 50]], maskTypes: ['full', 'causal'] });
  const right = flexFlashAttn(q, k, v, { qRanges: [[0, 70]], kRanges: [[50, 100]], maskTypes: 'causal' });
  mergeOutLseInto(left.out, left.lse, right.out, right.lse);
  expectClose(left.out, whole.out, TOLERANCES.float32.out, 'merged out', seed);
  expectClose(left.lse, whole.lse, TOLERANCES.float32.lse, 'merged lse', seed);
});

test('maxLogits: returned when asked, max-merged into a given buffer, absent otherwise', (t) => {
  const { seed, rng } = seeded(t);
  const p = randomProblem(rng, 'float32', { tq: 50, tk: 60, hq: 4, hkv: 1, dim: 16, slices: 4, softcap: 2 });
  const opts = { qRanges: p.slices.qRanges, kRanges: p.slices.kRanges, maskTypes: p.slices.maskTypes, softcap: 2 };
  assert.equal(flexFlashAttn(p.q, p.k, p.v, opts).maxLogits, undefined);
  const want = referenceForward(fwdArgs(p)).maxLogits!;
  const got = flexFlashAttn(p.q, p.k, p.v, { ...opts, returnMaxLogits: true }).maxLogits;
  expectClose(got, want, TOLERANCES.float32.maxLogits, 'maxLogits', seed);
  // With softcap the max is in logit units after the cap: never above the cap.
  for (let h = 0; h < 4; h++) assert.ok(got!.at(h) <= 2);
  const acc = Tensor.fromValues('float32', [4], [1e9, -1e9, -Infinity, want.at(3) - 0.5]);
  const merged = flexFlashAttn(p.q, p.k, p.v, { ...opts, maxLogits: acc });
  assert.equal(merged.maxLogits, acc);
  const wantMerged = referenceForward(fwdArgs(p, { maxLogitsAcc: Tensor.fromValues('float32', [4], [1e9, -1e9, -Infinity, want.at(3) - 0.5]) })).maxLogits;
  expectClose(acc, wantMerged, TOLERANCES.float32.maxLogits, 'merged maxLogits', seed);
  assert.equal(acc.at(0), Math.fround(1e9));
});

test('dq/dk/dv are added into given float32 buffers in place', (t) => {
  const { seed, rng } = seeded(t);
  const p = randomProblem(rng, 'bfloat16', { tq: 60, tk: 50, hq: 6, hkv: 3, dim: 16, slices: 4, sink: 2 });
  const fwd = cpuBackend.forward(fwdArgs(p));
  const dqAcc = randomTensor(rng, 'float32', [60, 6, 16]);
  const dkAcc = randomTensor(rng, 'float32', [50, 3, 16]);
  const dvAcc = randomTensor(rng, 'float32', [50, 3, 16]);
  const want = referenceBackward(bwdArgs(p, fwd.out, fwd.lse, { dqAcc, dkAcc, dvAcc }));
  const got = flexFlashAttnBackward(p.dout, p.q, p.k, p.v, fwd.out, fwd.lse, {
    qRanges: p.slices.qRanges,
    kRanges: p.slices.kRanges,
    maskTypes: p.slices.maskTypes,
    sink: p.sink,
    dq: dqAcc,
    dk: dkAcc,
    dv: dvAcc,
  });
  assert.equal(got.dq, dqAcc);
  assert.equal(got.dk, dkAcc);
  assert.equal(got.dv, dvAcc);
  for (const name of ['dq', 'dk', 'dv'] as const) expectClose(got[name], want[name], TOLERANCES.float32.grad, name, seed);
  expectClose(got.dsink, want.dsink, TOLERANCES.float32.dsink, 'dsink', seed);
});

// ---------------------------------------------------------------------------------------------
// Determinism and the public surface

test('two runs are bit-identical (forward and backward)', (t) => {
  const { rng } = seeded(t);
  const p = randomProblem(rng, 'float16', { tq: 150, tk: 130, hq: 4, hkv: 2, dim: 32, slices: 6, sink: 2, softcap: 3 });
  const a = cpuBackend.forward(fwdArgs(p, { deterministic: true }));
  const b = cpuBackend.forward(fwdArgs(p, { deterministic: true }));
  assert.deepEqual(a.out.data, b.out.data);
  assert.deepEqual(a.lse.data, b.lse.data);
  assert.deepEqual(a.maxLogits!.data, b.maxLogits!.data);
  const ga = cpuBackend.backward(bwdArgs(p, a.out, a.lse, { deterministic: true }));
  const gb = cpuBackend.backward(bwdArgs(p, a.out, a.lse, { deterministic: true }));
  for (const name of ['dq', 'dk', 'dv', 'dsink'] as const) assert.deepEqual(ga[name]!.data, gb[name]!.data, name);
});

test('ranges are accepted as pairs, flat Int32Array or an object with toNaiveRanges(); mask types as names or codes; scale defaults to 1/sqrt(D)', (t) => {
  const { seed, rng } = seeded(t);
  const q = randomTensor(rng, 'float32', [20, 2, 9]);
  const k = randomTensor(rng, 'float32', [24, 1, 9]);
  const v = randomTensor(rng, 'float32', [24, 1, 9]);
  const a = flexFlashAttn(q, k, v, { qRanges: [[0, 10], [10, 20]], kRanges: [[0, 12], [5, 24]], maskTypes: ['causal', 'bi_causal'] });
  const b = flexFlashAttn(q, k, v, {
    qRanges: new Int32Array([0, 10, 10, 20]),
    kRanges: { toNaiveRanges: () => [[0, 12], [5, 24]] },
    maskTypes: [1, 3],
    softmaxScale: 1 / 3,
  });
  assert.deepEqual(a.out.data, b.out.data);
  const want = referenceForward({
    q,
    k,
    v,
    slices: makeSliceList([[0, 10], [10, 20]], [[0, 12], [5, 24]], ['causal', 'bi_causal']),
    softmaxScale: 1 / 3,
    softcap: 0,
    returnMaxLogits: false,
    outDtype: 'float32',
    deterministic: false,
  });
  expectClose(a.out, want.out, TOLERANCES.float32.out, 'out', seed);
});

test('backend choice: the first registered backend that accepts q, CPU otherwise; by name or object', () => {
  const calls: string[] = [];
  const fake: KernelBackend<Tensor> = {
    name: 'fake',
    accepts: (x) => x.dtype === 'float64',
    forward: (args) => {
      calls.push('forward');
      return cpuBackend.forward(args);
    },
    backward: (args) => {
      calls.push('backward');
      return cpuBackend.backward(args);
    },
  };
  const q32 = Tensor.zeros('float32', [2, 1, 4]);
  const q64 = Tensor.zeros('float64', [2, 1, 4]);
  const unregister = registerKernelBackend(fake);
  try {
    assert.equal(selectKernelBackend(q64).name, 'fake');
    assert.equal(selectKernelBackend(q32).name, 'cpu');
    assert.equal(selectKernelBackend(q64, 'cpu').name, 'cpu');
    flexFlashAttn(q64, q64, q64, { qRanges: [[0, 2]], kRanges: [[0, 2]], maskTypes: 'full' });
    assert.deepEqual(calls, ['forward']);
    assert.throws(() => selectKernelBackend(q32, 'fake'), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'backend');
    assert.throws(() => selectKernelBackend(q32, 'nope'), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'backend');
  } finally {
    unregister();
  }
  assert.equal(selectKernelBackend(q64).name, 'cpu');
});

// ---------------------------------------------------------------------------------------------
// Validation

test('bad arguments are rejected before any work, naming the argument', () => {
  const q = Tensor.zeros('float32', [8, 4, 16]);
  const k = Tensor.zeros('float32', [6, 2, 16]);
  const r = { qRanges: [[0, 8]] as [number, number][], kRanges: [[0, 6]] as [number, number][], maskTypes: 'full' as const };
  const names = (argument: string) => (e: unknown) => {
    assert.ok(e instanceof InvalidArgumentError, String(e));
    assert.equal(e.argument, argument, e.message);
    return true;
  };
  const fwd = (over: Partial<{ q: Tensor; k: Tensor; v: Tensor }>, opts: Record<string, unknown> = {}) => () =>
    flexFlashAttn(over.q ?? q, over.k ?? k, over.v ?? k, { ...r, ...opts } as Parameters<typeof flexFlashAttn>[3]);
  assert.throws(fwd({ q: Tensor.zeros('float32', [8, 64]) }), names('q'));
  assert.throws(fwd({ k: Tensor.zeros('float32', [6, 2, 8]) }), names('v'));
  assert.throws(fwd({ k: Tensor.zeros('float32', [6, 2, 8]), v: Tensor.zeros('float32', [6, 2, 8]) }), names('k'));
  assert.throws(fwd({ k: Tensor.zeros('float32', [6, 3, 16]), v: Tensor.zeros('float32', [6, 3, 16]) }), names('k'));
  assert.throws(fwd({ k: Tensor.zeros('float16', [6, 2, 16]), v: Tensor.zeros('float16', [6, 2, 16]) }), names('k'));
  assert.throws(fwd({ v: Tensor.zeros('bfloat16', [6, 2, 16]) }), names('v'));
  assert.throws(fwd({}, { qRanges: [[0, 9]] }), names('qRanges[0]'));
  assert.throws(fwd({}, { kRanges: [[2, 1]] }), names('kRanges[0]'));
  assert.throws(fwd({}, { kRanges: [[0, 7]] }), names('kRanges[0]'));
  assert.throws(fwd({}, { kRanges: [[0, 6], [0, 6]] }), names('kRanges'));
  assert.throws(fwd({}, { maskTypes: 'sideways' }), names('maskTypes'));
  assert.throws(fwd({}, { maskTypes: [4] }), names('maskTypes[0]'));
  assert.throws(fwd({}, { softcap: -1 }), names('softcap'));
  assert.throws(fwd({}, { softmaxScale: 0 }), names('softmaxScale'));
  assert.throws(fwd({}, { softmaxScale: NaN }), names('softmaxScale'));
  assert.throws(fwd({}, { sink: Tensor.zeros('float16', [1, 4]) }), names('sink'));
  assert.throws(fwd({}, { sink: Tensor.zeros('float32', [1, 2]) }), names('sink'));
  assert.throws(fwd({}, { sink: Tensor.zeros('float32', [0, 4]) }), names('sink'));
  assert.throws(fwd({}, { out: Tensor.zeros('float32', [8, 4, 16]) }), names('lse'));
  assert.throws(fwd({}, { out: Tensor.zeros('float32', [8, 4, 15]), lse: Tensor.zeros('float32', [8, 4]) }), names('out'));
  assert.throws(fwd({}, { out: Tensor.zeros('float32', [8, 4, 16]), lse: Tensor.zeros('float16', [8, 4]) }), names('lse'));
  assert.throws(fwd({}, { out: Tensor.zeros('float32', [8, 4, 16]), lse: Tensor.zeros('float32', [4, 8]) }), names('lse'));
  assert.throws(fwd({}, { maxLogits: Tensor.zeros('float32', [2]) }), names('maxLogits'));
  assert.throws(fwd({}, { backend: 'nope' }), names('backend'));

  const out = Tensor.zeros('float32', [8, 4, 16]);
  const lse = Tensor.zeros('float32', [8, 4]);
  const bwd = (dout: Tensor, o: Tensor, l: Tensor, opts: Record<string, unknown> = {}) => () =>
    flexFlashAttnBackward(dout, q, k, k, o, l, { ...r, ...opts } as Parameters<typeof flexFlashAttnBackward>[6]);
  assert.throws(bwd(Tensor.zeros('float32', [8, 4, 8]), out, lse), names('dout'));
  assert.throws(bwd(out, Tensor.zeros('float32', [8, 2, 16]), lse), names('out'));
  assert.throws(bwd(out, out, Tensor.zeros('float32', [8])), names('lse'));
  assert.throws(bwd(out, out, lse, { dq: Tensor.zeros('float16', [8, 4, 16]) }), names('dq'));
  assert.throws(bwd(out, out, lse, { dk: Tensor.zeros('float32', [6, 4, 16]) }), names('dk'));
  assert.throws(bwd(out, out, lse, { dv: Tensor.zeros('float32', [6, 2, 8]) }), names('dv'));
  assert.throws(bwd(out, out, lse, { softcap: Infinity }), names('softcap'));
  assert.throws(bwd(out, out, lse, { qRanges: [[-1, 3]] }), names('qRanges[0]'));
});
