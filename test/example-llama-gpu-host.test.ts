/**
 * The Llama example's GPU path, the parts that need no GPU (the rest runs in
 * examples/llama/gpu-check.sh on the GPU machine):
 *   - the row-major to column-major mapping of every cuBLASLt call, executed by a plain
 *     implementation of cuBLAS's column-major GEMM on the same memory and compared with the CPU
 *     matmul, for every transpose combination, leading dimensions wider than the rows, and beta;
 *   - a missing libcublasLt is a CudaUnavailableError that lists every path tried;
 *   - the kernel sources inline their header and define every kernel the launchers call;
 *   - the pass bars of the alignment experiments.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Rng, freshSeed } from 'magi-attention';
import { CudaUnavailableError, type CudaDevice } from 'magi-attention/device';
import { CublasLt, LT, ltCall, type GemmCall, type GemmMatrix } from '../examples/llama/gpu/cublaslt.js';
import { KERNEL_FILES, kernelSource } from '../examples/llama/gpu/kernels.js';
import { matmul } from '../examples/llama/layers/matmul.js';
import { compareGradients, compareLosses } from '../examples/llama/alignment.js';
import { repoFile } from './util/paths.js';

const seed = freshSeed();
console.log(`example-llama-gpu-host seed ${seed} (replay with MAGI_SEED=${seed})`);

/** cuBLAS semantics: D = alpha·op(A)·op(B) + beta·C, column-major, element (i, j) at i + j·ld. */
function columnMajorGemm(m: number, n: number, k: number, transa: number, transb: number, alpha: number, A: Float64Array, lda: number, B: Float64Array, ldb: number, beta: number, C: Float64Array, ldc: number): void {
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < m; i++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        const a = transa === LT.CUBLAS_OP_N ? A[i + p * lda] : A[p + i * lda];
        const b = transb === LT.CUBLAS_OP_N ? B[p + j * ldb] : B[j + p * ldb];
        s += a * b;
      }
      C[i + j * ldc] = alpha * s + beta * C[i + j * ldc];
    }
  }
}

test('every row-major GEMM maps onto a column-major cuBLASLt call that computes it (transposes, wide leading dimensions, beta)', () => {
  const rng = new Rng(seed);
  const [m, n, k] = [5, 7, 3];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      for (const beta of [0, 1]) {
        const pad = 2; // each matrix's rows are 2 elements wider than its columns
        const mat = (rows: number, cols: number): { spec: GemmMatrix; data: Float64Array } => ({
          spec: { ptr: 0n, dtype: 'float32', rows, cols, ld: cols + pad },
          data: rng.normals(rows * (cols + pad)),
        });
        const a = transA ? mat(k, m) : mat(m, k);
        const b = transB ? mat(n, k) : mat(k, n);
        const c = mat(m, n);
        const call: GemmCall = { a: a.spec, b: b.spec, c: c.spec, transA, transB, beta, alpha: 1 };
        // expected: dense copies through the CPU matmul
        const dense = (x: { spec: GemmMatrix; data: Float64Array }): Float64Array =>
          Float64Array.from({ length: x.spec.rows * x.spec.cols }, (_, i) => x.data[Math.floor(i / x.spec.cols) * (x.spec.cols + pad) + (i % x.spec.cols)]);
        const want = dense(c);
        matmul(want, dense(a), dense(b), { m, n, k, transA, transB, beta: beta as 0 | 1 });
        const before = c.data.slice();
        const lt = ltCall(call);
        const mem = { a: a.data, b: b.data, c: c.data };
        columnMajorGemm(lt.m, lt.n, lt.k, lt.transa, lt.transb, 1, mem[lt.A.from], lt.A.ld, mem[lt.B.from], lt.B.ld, beta, mem[lt.C.from], lt.C.ld);
        assert.equal(lt.A.rows, lt.transa === LT.CUBLAS_OP_N ? lt.m : lt.k, 'layout of A agrees with its op');
        assert.equal(lt.B.rows, lt.transb === LT.CUBLAS_OP_N ? lt.k : lt.n, 'layout of B agrees with its op');
        const got = dense(c);
        for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-12, `transA=${transA} transB=${transB} beta=${beta}: element ${i}: ${got[i]} vs ${want[i]}`);
        for (let r = 0; r < m; r++) for (let p = 0; p < pad; p++) assert.equal(c.data[r * (n + pad) + n + p], before[r * (n + pad) + n + p], 'the padding past each row is not written');
      }
    }
  }
});

test('ltCall rejects shapes that do not multiply, mixed input dtypes and a bf16 result of float32 inputs', () => {
  const m = (rows: number, cols: number, dtype: 'bfloat16' | 'float32' = 'bfloat16'): GemmMatrix => ({ ptr: 0n, dtype, rows, cols });
  assert.throws(() => ltCall({ a: m(4, 3), b: m(5, 6), c: m(4, 6) }), /inner dimensions/);
  assert.throws(() => ltCall({ a: m(4, 3), b: m(3, 6), c: m(6, 4) }), /must be \[4, 6\]/);
  assert.throws(() => ltCall({ a: m(4, 3), b: m(3, 6, 'float32'), c: m(4, 6) }), /dtype must equal/);
  assert.throws(() => ltCall({ a: m(4, 3, 'float32'), b: m(3, 6, 'float32'), c: m(4, 6, 'bfloat16') }), /must be float32/);
  assert.throws(() => ltCall({ a: { ...m(4, 3), ld: 2 }, b: m(3, 6), c: m(4, 6) }), /ld >= cols/);
});

test('a missing libcublasLt is a CudaUnavailableError naming every path tried', () => {
  const tried = ['/nonexistent/cuda/lib64/libcublasLt.so.13', 'libcublasLt-not-a-real-name.so'];
  assert.throws(
    () => new CublasLt({} as CudaDevice, { candidates: tried }),
    (e: unknown) => e instanceof CudaUnavailableError && e.missing === 'libcublasLt' && tried.every((t) => e.message.includes(t)) && /MAGI_ATTN_LIBCUBLASLT/.test(e.message),
  );
});

test('kernel sources inline their header once and define every kernel the launchers call', () => {
  const launchers = ['gpu/ops.ts', 'gpu/naive-attention.ts'].map((f) => readFileSync(repoFile(`examples/llama/${f}`), 'utf8')).join('\n');
  const called = new Set([...launchers.matchAll(/'(llama_[a-z0-9_]+)'/g)].map((x) => x[1]));
  assert.ok(called.size >= 15, `launchers call ${called.size} kernels`);
  const defined = new Set<string>();
  for (const f of KERNEL_FILES) {
    const src = kernelSource(f);
    assert.ok(!/#include "/.test(src), `${f}: local includes are inlined`);
    assert.equal((src.match(/namespace llama \{/g) ?? []).length, 1, `${f}: the header appears once`);
    for (const x of src.matchAll(/extern "C" __global__ void (llama_[a-z0-9_]+)\(/g)) defined.add(x[1]);
  }
  for (const k of called) assert.ok(defined.has(k), `kernel ${k} is launched but defined in no .cu file`);
});

test('alignment bars: gradients by cosine per tensor; A/B by the mean |Δloss|; C by moving windows with the first step over the bar', () => {
  const g = new Map([
    ['x', Float32Array.from([1, 2, 3])],
    ['y', Float32Array.from([0, 0, 1])],
  ]);
  const same = compareGradients(g, new Map([...g].map(([n, v]) => [n, v.map((z) => z * 2)])));
  assert.ok(same.pass && Math.abs(same.minCosine - 1) < 1e-12, 'cosine ignores scale');
  const off = compareGradients(g, new Map([['x', Float32Array.from([1, 2, 3])], ['y', Float32Array.from([0, 1, 0])]]));
  assert.equal(off.pass, false);
  assert.equal(off.worst, 'y');
  assert.throws(() => compareGradients(g, new Map([['x', Float32Array.from([1, 2, 3])]])), /missing/);
  const a = Array.from({ length: 200 }, (_, i) => 10 - i / 50);
  assert.ok(compareLosses(a, a.map((l) => l + 0.009), 'mean').pass);
  assert.ok(!compareLosses(a, a.map((l) => l + 0.011), 'mean').pass);
  const b = a.map((l, i) => (i >= 120 && i < 140 ? l + 0.1 : l));
  const v = compareLosses(a, b, 'window', 50);
  assert.ok(!v.pass);
  assert.equal(v.firstExceeded, 131, 'steps 121-140 are off by 0.1: the 50-step window ending at step 131 holds 11 of them (mean 0.022), the one ending at 130 ten (0.02, not over)');
  assert.ok(!compareLosses(a, a.map(() => NaN), 'mean').pass, 'NaN never passes');
});

test('every result file renders to bare SVG charts (A/B, C, throughput), n/a where a twin variant failed', async () => {
  const { chartsFor } = await import('../examples/llama/plot.js');
  const prov = { machine: 'NVIDIA H200 (sm_90, 132 SMs), cuBLASLt 130100', seqLen: 16384, steps: 3, model: { preset: 'gpu', parameters: 193e6 }, data: { corpus: 'sotu' } };
  const verdict = { meanAbsDelta: 1e-3, worstWindow: 2e-3, window: 2, firstExceeded: null, bar: 0.01, pass: true };
  const cases: Array<[string, unknown, number]> = [
    ['llama-a-gpu.json', { ...prov, comparison: 'FFA vs naive attention', losses: { ffa: [3, 2, 1], naive: [3, 2.01, 1] }, verdict }, 2],
    ['llama-b-cpu.json', { ...prov, comparison: 'cp 1 vs cp 2', losses: { 'cp 1': [3, 2, 1], 'cp 2': [3, 2, 1.001] }, verdicts: { cp2: verdict }, pass: true }, 2],
    ['llama-c.json', { ours: { ...prov, losses: [3, 2, 1] }, twin: { losses: [3, 2.02, 1], attention: 'flex', versions: { torch: '2.11', transformers: '5.17' } }, verdict: { ...verdict, bar: 0.02 } }, 2],
    [
      'llama-throughput.json',
      { ours: { ...prov, rows: [{ seqLen: 16384, tokensPerSecond: 250000 }, { seqLen: 65536, tokensPerSecond: 150000 }] }, twin: { rows: [{ seqLen: 16384, variant: 'sdpa-eager', tokensPerSecond: 200000 }, { seqLen: 65536, variant: 'sdpa-eager', tokensPerSecond: null, error: 'OOM' }], versions: { torch: '2.11' } } },
      1,
    ],
    ['llama-grads-a.json', {}, 0],
  ];
  for (const [file, json, count] of cases) {
    const svgs = chartsFor(file, json);
    assert.equal(svgs.length, count, file);
    for (const [name, svg] of svgs) {
      assert.match(name, /^llama-.*\.svg$/);
      assert.match(svg, /^<\?xml[^>]*>\n<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/, `${file}: a bare <svg> document`);
      assert.ok(!svg.includes('NaN'), `${file}: no NaN coordinates`);
    }
  }
  assert.ok(chartsFor('llama-throughput.json', cases[3][1])[0][1].includes('n/a'), 'a failed twin variant is marked n/a');
});
