/**
 * The CPU backend's BLAS engine (the WebAssembly kernel's loop, tile products in a native
 * cblas_sgemm through koffi): forward and backward against the float64 reference on every mask
 * type (full, causal, varlen, sliding window, inv_causal, bi_causal), GQA, D 64 and 128, on one
 * thread and on three; bit-identical results run to run for a given thread count; the error
 * that names what was tried when no BLAS loads. ffa-cpu-engines.test.ts and
 * ffa-cpu-nonfinite.test.ts run it too (test/util/cpu-variants.ts), on random masks and on
 * NaN / Inf inputs. Every random test prints its seed.
 *
 * Where no BLAS loads these tests are skipped, saying why, unless MAGI_ATTN_TEST_REQUIRE_BLAS=1
 * (CI sets it, after installing libopenblas0), where they fail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/tensor.js';
import type { DType } from '../src/dtype.js';
import { BlasUnavailableError, InvalidArgumentError } from '../src/errors.js';
import { makeSliceList, type SliceList } from '../src/mask/slice-list.js';
import { causalMask, fullMask, slidingWindowMask, varlenCausalMask, varlenFullMask } from '../src/mask/helpers.js';
import type { FfaBackwardResult, FfaForwardArgs } from '../src/kernels/backend.js';
import { referenceForward } from '../src/kernels/reference.js';
import { CPU_KERNEL_TOLERANCES } from '../src/kernels/tolerance.js';
import { BLAS_ENV, BLAS_SONAMES, cpuEngineName, createCpuBackend } from '../src/kernels/cpu/index.js';
import type { Rng } from '../src/util/rng.js';
import { assertKernelMatchesReference, randomTensor, seeded } from './util/attn-check.js';
import { assertBitReproducible, blasHere } from './util/cpu-variants.js';

const REQUIRE_ENV = 'MAGI_ATTN_TEST_REQUIRE_BLAS';
const here = blasHere();
const missing = here instanceof BlasUnavailableError ? here.message : undefined;
const skip = missing !== undefined && process.env[REQUIRE_ENV] !== '1' ? `no BLAS loads here (${missing})` : false;

test(`a BLAS loads here (required where ${REQUIRE_ENV}=1, as in CI)`, { skip }, (t) => {
  assert.equal(missing, undefined);
  t.diagnostic(`BLAS: ${JSON.stringify(here)}`);
  assert.equal(cpuEngineName({ engine: 'blas', threads: 2 }), 'blas x2');
  assert.equal(createCpuBackend({ engine: 'blas', threads: 3 }).name, 'cpu');
});

interface Case {
  name: string;
  tq: number;
  tk: number;
  slices: SliceList;
  hq: number;
  hkv: number;
  dim: number;
  dtype: DType;
  softcap?: number;
  sink?: boolean;
}

/** One case per mask type, across GQA ratios, D 64 and 128, float32 and bfloat16, softcap and sink. */
function cases(rng: Rng): Case[] {
  const n = rng.int(250, 330);
  const a = rng.int(40, 120);
  const b = rng.int(a + 60, n - 20);
  return [
    { name: 'full', tq: n, tk: n, slices: fullMask(n), hq: 8, hkv: 2, dim: 64, dtype: 'float32' },
    { name: 'causal', tq: n, tk: n, slices: causalMask(n), hq: 4, hkv: 1, dim: 128, dtype: 'float32', softcap: 5 },
    { name: 'varlen causal', tq: n, tk: n, slices: varlenCausalMask([0, a, b, n]), hq: 6, hkv: 3, dim: 64, dtype: 'bfloat16', sink: true },
    { name: 'varlen full', tq: n, tk: n, slices: varlenFullMask([0, a, b, n]), hq: 4, hkv: 2, dim: 128, dtype: 'float32' },
    { name: 'sliding window', tq: n, tk: n, slices: slidingWindowMask(n, [rng.int(20, 90), rng.int(0, 30)]), hq: 8, hkv: 2, dim: 64, dtype: 'float32' },
    { name: 'inv_causal, Tq < Tk', tq: a + 100, tk: n, slices: makeSliceList([[0, a + 100]], [[0, n]], 'inv_causal'), hq: 4, hkv: 2, dim: 64, dtype: 'float32' },
    { name: 'bi_causal, Tq > Tk', tq: n, tk: a + 70, slices: makeSliceList([[0, n]], [[0, a + 70]], 'bi_causal'), hq: 2, hkv: 1, dim: 128, dtype: 'float32', softcap: 3 },
    {
      name: 'mixed slices sharing cells',
      tq: n,
      tk: n,
      slices: makeSliceList([[0, b], [a, n], [0, n]], [[0, b], [a, n], [b - 30, b + 10]], ['causal', 'bi_causal', 'full']),
      hq: 4,
      hkv: 4,
      dim: 64,
      dtype: 'float32',
    },
  ];
}

function args(rng: Rng, c: Case): { args: FfaForwardArgs<Tensor>; dout: Tensor } {
  return {
    args: {
      q: randomTensor(rng, c.dtype, [c.tq, c.hq, c.dim]),
      k: randomTensor(rng, c.dtype, [c.tk, c.hkv, c.dim]),
      v: randomTensor(rng, c.dtype, [c.tk, c.hkv, c.dim]),
      slices: c.slices,
      softmaxScale: 1 / Math.sqrt(c.dim),
      softcap: c.softcap ?? 0,
      sink: c.sink ? randomTensor(rng, 'float32', [2, c.hq], 1.5) : undefined,
      returnMaxLogits: true,
      outDtype: c.dtype,
      deterministic: true,
    },
    dout: randomTensor(rng, c.dtype, [c.tq, c.hq, c.dim]),
  };
}

test('forward and backward match the float64 reference on every mask type (GQA, D 64 and 128, softcap, sink), one thread and three', { skip }, (t) => {
  const { seed, rng } = seeded(t);
  const backends = [1, 3].map((threads) => ({ threads, backend: createCpuBackend({ engine: 'blas', threads }) }));
  for (const c of cases(rng)) {
    const p = args(rng, c);
    const want = referenceForward({ ...p.args, outDtype: 'float64' });
    const tol = CPU_KERNEL_TOLERANCES[c.dtype];
    // The forward is bit-identical across thread counts (asserted here), so both thread counts'
    // backwards get the same inputs and one float64 reference backward serves both.
    let first: { out: Tensor; lse: Tensor } | undefined;
    let ref: FfaBackwardResult<Tensor> | undefined;
    for (const { threads, backend } of backends) {
      const label = `${c.name}, ${c.tq}x${c.tk}, ${c.hq}:${c.hkv} D${c.dim} ${c.dtype} [blas x${threads}] (seed ${seed})`;
      const r = assertKernelMatchesReference(backend, p.args, p.dout, want, tol, label, ref);
      ref = r.ref;
      if (first === undefined) first = r.got;
      else {
        assert.deepEqual(r.got.out.data, first.out.data, `out bits, ${label} vs one thread`);
        assert.deepEqual(r.got.lse.data, first.lse.data, `lse bits, ${label} vs one thread`);
      }
    }
  }
});

test('results are bit-identical run to run for a given thread count, and the forward for every thread count', { skip }, (t) => {
  const { rng } = seeded(t);
  const n = 700;
  const c: Case = { name: 'varlen causal', tq: n, tk: n, slices: varlenCausalMask([0, 130, 480, n]), hq: 8, hkv: 2, dim: 64, dtype: 'float32', softcap: 4 };
  const p = args(rng, c);
  assertBitReproducible((threads) => createCpuBackend({ engine: 'blas', threads }), p.args, p.dout, 'blas');
});

test('calls alternating between the BLAS engine and the WebAssembly builds (their own instances, tiles and threads) stay bit-identical to the first result of each', { skip }, (t) => {
  const { rng } = seeded(t);
  const c: Case = { name: 'causal', tq: 300, tk: 300, slices: causalMask(300), hq: 4, hkv: 2, dim: 32, dtype: 'float32' };
  const p = args(rng, c);
  const backends = [
    createCpuBackend({ engine: 'blas', threads: 2 }),
    createCpuBackend({ engine: 'wasm', simd: 'relaxed-simd', threads: 3 }),
    createCpuBackend({ engine: 'blas', threads: 1 }),
    createCpuBackend({ engine: 'wasm', simd: 'simd', threads: 2 }),
  ];
  const run = (i: number) => {
    const f = backends[i].forward(p.args);
    return { f, g: backends[i].backward({ ...p.args, dout: p.dout, out: f.out, lse: f.lse }) };
  };
  const first = backends.map((_, i) => run(i));
  // The BLAS engine's products round differently from the micro-kernel's: the two must not agree to the bit.
  assert.notDeepEqual(first[0].f.out.data, first[1].f.out.data);
  for (let round = 0; round < 16; round++) {
    const i = round % backends.length;
    const { f, g } = run(i);
    assert.deepEqual(f.out.data, first[i].f.out.data, `out, backend ${i}, round ${round}`);
    for (const name of ['dq', 'dk', 'dv'] as const) assert.deepEqual(g[name].data, first[i].g[name].data, `${name}, backend ${i}, round ${round}`);
  }
});

/** Runs `f` with $MAGI_ATTN_BLAS set to `value` (read at each load attempt), restoring it after. */
function withBlasEnv<T>(value: string, f: () => T): T {
  const saved = process.env[BLAS_ENV];
  process.env[BLAS_ENV] = value;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env[BLAS_ENV];
    else process.env[BLAS_ENV] = saved;
  }
}

test(`${BLAS_ENV} naming a missing file, or a library without cblas_sgemm, is a BlasUnavailableError that says what was tried and how to install one`, () => {
  const path = '/nonexistent/dir/libopenblas.so.0';
  const isError = (want: RegExp) => (e: unknown) => {
    assert.ok(e instanceof BlasUnavailableError, `a BlasUnavailableError, got ${String(e)}`);
    assert.match(e.message, want);
    assert.match(e.message, /apt install libopenblas0/);
    assert.equal(e.tried.length, 1);
    return true;
  };
  withBlasEnv(path, () => assert.throws(() => createCpuBackend({ engine: 'blas' }), isError(new RegExp(`${BLAS_ENV}=${path} did not load.*${path}:`))));
  // libm opens everywhere glibc runs and exports no BLAS.
  withBlasEnv('libm.so.6', () => assert.throws(() => createCpuBackend({ engine: 'blas', threads: 2 }), isError(/libm\.so\.6: loads, but does not export cblas_sgemm/)));
  // Options are checked before the library is looked for.
  withBlasEnv(path, () => assert.throws(() => createCpuBackend({ engine: 'blas', threads: 0 }), (e) => e instanceof InvalidArgumentError && e.argument === 'threads'));
  // Without the variable the lookup goes through the common sonames (and the default engine never needs one).
  assert.deepEqual(BLAS_SONAMES.slice(0, 2), ['libopenblas.so.0', 'libopenblas.so']);
  withBlasEnv(path, () => assert.match(cpuEngineName({ threads: 1 }), /^wasm-/));
});
