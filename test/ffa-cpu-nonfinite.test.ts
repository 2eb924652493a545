/**
 * NaN and Inf go through the CPU kernel as IEEE arithmetic takes them through the float64
 * reference: a NaN logit makes its row's softmax NaN (out and lse), a NaN or Inf value reaches
 * exactly the output elements whose rows give it weight, and a row that does not see a
 * poisoned key is untouched, even when the key sits in the same tile (a masked cell contributes
 * nothing, not 0·NaN). The -inf rules for rows that see no key stay as they are.
 *
 * Every test runs each CPU kernel variant (the TypeScript tiles and, where this runtime has it,
 * the WebAssembly kernel at one and two threads) and compares with the reference element-wise,
 * NaN equal only where both are NaN, ±Inf only where both are the same infinity.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/tensor.js';
import type { DType } from '../src/dtype.js';
import { makeSliceList } from '../src/mask/slice-list.js';
import { cellMultiplicity, referenceBackward, referenceForward } from '../src/kernels/reference.js';
import { CPU_KERNEL_TOLERANCES, compareClose } from '../src/kernels/tolerance.js';
import { Rng } from '../src/util/rng.js';
import { type AttnProblem, assertAllClose, randomSlices, randomTensor, seeded } from './util/attn-check.js';
import { cpuVariants } from './util/cpu-variants.js';

const HQ = 4;
const HKV = 2;
const DIM = 16;

/** 150 tokens (three 64-row tiles), a causal slice plus a full block, so rows differ in what they see. */
function problem(rng: Rng, dtype: DType = 'float32', softcap = 0): AttnProblem {
  const n = 150;
  return {
    q: randomTensor(rng, dtype, [n, HQ, DIM]),
    k: randomTensor(rng, dtype, [n, HKV, DIM]),
    v: randomTensor(rng, dtype, [n, HKV, DIM]),
    dout: randomTensor(rng, dtype, [n, HQ, DIM]),
    slices: makeSliceList([[0, 120], [120, 150]], [[0, 120], [40, 100]], ['causal', 'full']),
    softcap,
  };
}

const common = (p: AttnProblem) => ({ slices: p.slices, softmaxScale: 1 / Math.sqrt(p.q.shape[2]), softcap: p.softcap, deterministic: true });

/** Sets element [token, head, d] of a [T, H, D] tensor (any dtype: NaN and ±Inf exist in all). */
function poison(t: Tensor, token: number, head: number, d: number, value: number): void {
  const [, heads, dim] = t.shape;
  const flat = (token * heads + head) * dim + d;
  const f = Tensor.fromValues(t.dtype, [1], [value]);
  t.data[flat] = f.data[0];
}

/** Runs one variant forward and backward and checks every result against the reference. */
function checkVariant(variant: ReturnType<typeof cpuVariants>[number], p: AttnProblem, seed: number, label: string) {
  const fwd = variant.backend.forward({ ...common(p), q: p.q, k: p.k, v: p.v, returnMaxLogits: true, outDtype: p.q.dtype });
  const want = referenceForward({ ...common(p), q: p.q, k: p.k, v: p.v, returnMaxLogits: true, outDtype: 'float64' });
  const tol = CPU_KERNEL_TOLERANCES[p.q.dtype];
  const tag = `${label} [${variant.name}] (seed ${seed})`;
  assertAllClose(
    [
      ['out', fwd.out, want.out, tol.out],
      ['lse', fwd.lse, want.lse, tol.lse],
      ['maxLogits', fwd.maxLogits!, want.maxLogits!, tol.maxLogits],
    ],
    tag,
  );
  const grads = variant.backend.backward({ ...common(p), q: p.q, k: p.k, v: p.v, dout: p.dout, out: fwd.out, lse: fwd.lse });
  const ref = referenceBackward({ ...common(p), q: p.q, k: p.k, v: p.v, dout: p.dout, out: fwd.out, lse: fwd.lse });
  assertAllClose((['dq', 'dk', 'dv'] as const).map((name) => [name, grads[name], ref[name], tol.grad] as const), tag);
  return { fwd, grads };
}

/** Which (query token, key token) pairs are covered. */
function sees(p: AttnProblem): (t: number, j: number) => boolean {
  const n = p.q.shape[0];
  const tk = p.k.shape[0];
  const mult = cellMultiplicity(p.slices, n, tk);
  return (t, j) => mult[t * tk + j] !== 0;
}

const isNaNAt = (x: Tensor, i: number) => Number.isNaN(x.at(i));

test('a NaN in one key makes exactly the rows that see it NaN (out and lse) in its kv group; rows that do not see it stay finite', (t) => {
  const { seed, rng } = seeded(t);
  for (const variant of cpuVariants()) {
    const p = problem(rng);
    const j = 70; // in the second key tile; rows 70-119 see it causally, 120-149 through the full block
    poison(p.k, j, 0, 5, NaN);
    const { fwd } = checkVariant(variant, p, seed, 'NaN in k');
    const see = sees(p);
    let nanRows = 0;
    for (let tok = 0; tok < 150; tok++) {
      for (let h = 0; h < HQ; h++) {
        const poisoned = h < HQ / HKV && see(tok, j);
        const row = tok * HQ + h;
        assert.equal(isNaNAt(fwd.lse, row), poisoned, `lse[${tok}, ${h}] = ${fwd.lse.at(row)} [${variant.name}] (seed ${seed})`);
        for (let d = 0; d < DIM; d++) assert.equal(isNaNAt(fwd.out, row * DIM + d), poisoned, `out[${tok}, ${h}, ${d}] [${variant.name}] (seed ${seed})`);
        if (poisoned) nanRows++;
      }
    }
    assert.equal(nanRows, 2 * (50 + 30));
    assert.ok(Number.isNaN(fwd.maxLogits!.at(0)) && Number.isFinite(fwd.maxLogits!.at(HQ - 1)), 'maxLogits: NaN for the heads that read the key');
  }
});

test('a NaN in one query row makes that row (that head) NaN and nothing else in the forward', (t) => {
  const { seed, rng } = seeded(t);
  for (const variant of cpuVariants()) {
    const p = problem(rng);
    poison(p.q, 33, 1, 0, NaN);
    const { fwd, grads } = checkVariant(variant, p, seed, 'NaN in q');
    for (let row = 0; row < 150 * HQ; row++) assert.equal(isNaNAt(fwd.lse, row), row === 33 * HQ + 1, `lse row ${row} [${variant.name}] (seed ${seed})`);
    // Its gradient reaches dq of that row and dk/dv... only through that row's keys (0-33).
    for (let tok = 0; tok < 150; tok++) {
      const anyK = [...Array(DIM).keys()].some((d) => isNaNAt(grads.dk, (tok * HKV + 0) * DIM + d));
      assert.equal(anyK, tok <= 33, `dk[${tok}] NaN iff row 33 sees key ${tok} [${variant.name}] (seed ${seed})`);
    }
  }
});

test('a NaN or +Inf in one value element reaches exactly that output column of the rows that see its key; lse stays finite', (t) => {
  const { seed, rng } = seeded(t);
  for (const variant of cpuVariants()) {
    for (const value of [NaN, Infinity]) {
      const p = problem(rng);
      const j = 90;
      const dBad = 3;
      poison(p.v, j, 1, dBad, value);
      const { fwd } = checkVariant(variant, p, seed, `${value} in v`);
      const see = sees(p);
      for (let tok = 0; tok < 150; tok++) {
        for (let h = 0; h < HQ; h++) {
          const row = tok * HQ + h;
          assert.ok(Number.isFinite(fwd.lse.at(row)) || fwd.lse.at(row) === -Infinity, `lse[${tok}, ${h}] [${variant.name}] (seed ${seed})`);
          for (let d = 0; d < DIM; d++) {
            const o = fwd.out.at(row * DIM + d);
            const hit = h >= HQ / HKV && see(tok, j) && d === dBad;
            if (hit) assert.ok(Object.is(o, value), `out[${tok}, ${h}, ${d}] = ${o}, want ${value} [${variant.name}] (seed ${seed})`);
            else assert.ok(Number.isFinite(o), `out[${tok}, ${h}, ${d}] = ${o} must stay finite [${variant.name}] (seed ${seed})`);
          }
        }
      }
    }
  }
});

test('backward: a NaN in one dout row reaches that row\'s dq and the dk/dv of exactly the keys it sees', (t) => {
  const { seed, rng } = seeded(t);
  for (const variant of cpuVariants()) {
    const p = problem(rng);
    const i = 100; // a causal row: sees keys 0-100, and shares its tiles with rows that see more and fewer
    poison(p.dout, i, 2, 7, NaN);
    const { grads } = checkVariant(variant, p, seed, 'NaN in dout');
    for (let tok = 0; tok < 150; tok++) {
      const rowNaN = [...Array(DIM).keys()].some((d) => isNaNAt(grads.dq, (tok * HQ + 2) * DIM + d));
      assert.equal(rowNaN, tok === i, `dq[${tok}, 2] [${variant.name}] (seed ${seed})`);
      const keyNaN = [...Array(DIM).keys()].some((d) => isNaNAt(grads.dv, (tok * HKV + 1) * DIM + d));
      assert.equal(keyNaN, tok <= i, `dv[${tok}, 1] [${variant.name}] (seed ${seed})`);
      for (let d = 0; d < DIM; d++) assert.ok(!isNaNAt(grads.dk, (tok * HKV + 0) * DIM + d), `dk of the other kv head stays finite [${variant.name}] (seed ${seed})`);
    }
  }
});

test('random NaN and ±Inf in q, k, v and dout (all dtypes, softcap) match the reference element by element, forward and backward', (t) => {
  const { seed, rng } = seeded(t);
  for (const variant of cpuVariants()) {
    for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
      for (let round = 0; round < 3; round++) {
        const n = rng.int(40, 160);
        const p: AttnProblem = {
          q: randomTensor(rng, dtype, [n, HQ, DIM]),
          k: randomTensor(rng, dtype, [n, HKV, DIM]),
          v: randomTensor(rng, dtype, [n, HKV, DIM]),
          dout: randomTensor(rng, dtype, [n, HQ, DIM]),
          slices: randomSlices(rng, n, n, { slices: rng.int(1, 5) }),
          softcap: round === 2 ? 2.5 : 0,
        };
        const targets = [p.q, p.k, p.v, p.dout];
        for (let s = 0; s < 3; s++) {
          const x = targets[rng.int(0, 3)];
          poison(x, rng.int(0, n - 1), rng.int(0, x.shape[1] - 1), rng.int(0, DIM - 1), [NaN, Infinity, -Infinity][rng.int(0, 2)]);
        }
        checkVariant(variant, p, seed, `${dtype} round ${round}`);
      }
    }
  }
});

test('rows that see no key keep lse = -inf and out = 0 when NaN sits in keys they do not see', (t) => {
  const { seed, rng } = seeded(t);
  for (const variant of cpuVariants()) {
    const p = problem(rng);
    p.slices = makeSliceList([[10, 60]], [[0, 30]], ['causal']); // bottom-right aligned: rows < 30 see nothing
    for (let j = 30; j < 150; j++) poison(p.k, j, 0, 0, NaN);
    const { fwd } = checkVariant(variant, p, seed, 'empty rows');
    for (let tok = 0; tok < 150; tok++) {
      const empty = tok < 30 || tok >= 60;
      for (let h = 0; h < HQ; h++) {
        const l = fwd.lse.at(tok * HQ + h);
        if (empty) assert.equal(l, -Infinity, `lse[${tok}, ${h}] [${variant.name}] (seed ${seed})`);
        else assert.ok(Number.isFinite(l), `lse[${tok}, ${h}] = ${l} [${variant.name}] (seed ${seed})`);
        for (let d = 0; d < DIM; d++) if (empty) assert.ok(Object.is(fwd.out.at((tok * HQ + h) * DIM + d), 0));
      }
    }
  }
});

test('compareClose: NaN matches only NaN, an infinity only the same infinity', () => {
  const tol = { rtol: 1e-6, atol: 1e-6 };
  const t = (xs: number[]) => Tensor.fromValues('float64', [xs.length], xs);
  assert.ok(compareClose(t([1, NaN, Infinity, -Infinity]), t([1, NaN, Infinity, -Infinity]), tol, 'x').ok);
  assert.ok(!compareClose(t([1, NaN]), t([1, 2]), tol, 'x').ok);
  assert.ok(!compareClose(t([1, 2]), t([1, NaN]), tol, 'x').ok);
  assert.ok(!compareClose(t([Infinity]), t([NaN]), tol, 'x').ok);
  assert.ok(!compareClose(t([Infinity]), t([-Infinity]), tol, 'x').ok);
  assert.ok(!compareClose(t([5]), t([Infinity]), tol, 'x').ok);
});
