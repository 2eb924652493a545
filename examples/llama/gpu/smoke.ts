/**
 * GPU smoke checks of the trainer's pieces, run first by gpu-check.sh: each stops the run with a
 * message naming the piece at its first failure.
 *   1. cuBLASLt: the enum values and struct size we hard-code against the machine's cublasLt.h
 *      (when the probe compiled by gpu-check.sh could read it), then GEMMs of every transpose
 *      combination, bf16 → bf16/float32 with beta 0 and 1, and float32 on strided head views,
 *      against a float64 product of the same inputs;
 *   2. every kernel (embedding, RMSNorm, RoPE, SwiGLU, cross-entropy, AdamW, gradient norm,
 *      conversions) against its CPU layer run in float64 on the same (bf16-rounded) inputs;
 *   3. the naive attention oracle and the FFA core (flexFlashAttn on DeviceTensors) against dense
 *      float64 attention, forward and backward.
 * Inputs are fresh random values (the seed is printed; replay with --seed); outputs are poisoned
 * with NaN before each kernel, so an element a kernel fails to write is caught.
 * Tolerances are relative to the largest expected element: float32 results 1e-5 (2e-5 where atomics
 * reorder sums), bf16 results 2^-8 (one bf16 rounding), SwiGLU 2^-7 (bf16 inputs and __expf),
 * the FFA core 2^-6 out and 3e-2 gradients (bf16 probabilities inside the kernel).
 */
import { Rng, Tensor, fromNumbers, toFloat32Array, varlenCausalMask } from 'magi-attention';
import { DeviceTensor, type DeviceBuffer } from 'magi-attention/device';
import { adamwUpdate, sumOfSquares } from '../layers/adamw.js';
import { denseAttentionBackward, denseAttentionForward, maskRows } from '../layers/attention-dense.js';
import { crossEntropy } from '../layers/cross-entropy.js';
import { embeddingBackward, embeddingForward } from '../layers/embedding.js';
import { matmul } from '../layers/matmul.js';
import { rmsnormBackward, rmsnormForward } from '../layers/rmsnorm.js';
import { ropeBackward, ropeForward, ropeTable } from '../layers/rope.js';
import { swigluBackward, swigluForward } from '../layers/swiglu.js';
import type { Ops } from '../ops.js';
import type { GpuBackend } from './backend.js';
import { LT } from './cublaslt.js';
import { addressOf } from './ops.js';

export interface CheckRow {
  name: string;
  /** Largest |actual − expected| / max|expected|. */
  relError: number;
  tolerance: number;
  pass: boolean;
}

export class SmokeCheckFailed extends Error {
  override name = 'SmokeCheckFailed';
  constructor(readonly row: CheckRow, detail: string) {
    super(`GPU smoke check failed: ${row.name}: ${detail}`);
  }
}

const BF16 = 2 ** -8;

/** Values rounded to bfloat16 (what a bf16 tensor of them holds), as float64. */
function bf16Values(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(toFloat32Array('bfloat16', fromNumbers('bfloat16', values) as Uint16Array));
}

export async function runSmokeChecks(backend: GpuBackend, seed: number, ltAbi: Record<string, number> | null, log: (line: string) => void): Promise<CheckRow[]> {
  const rows: CheckRow[] = [];
  const rng = new Rng(seed);
  const ops = backend.ops as Ops<DeviceTensor, DeviceBuffer>;
  const { device, lt } = backend.ctx;
  // float32-representable values, so a float32 upload holds exactly what the float64 reference reads
  const randn = (n: number, scale = 1): Float64Array => Float64Array.from(Float32Array.from(rng.normals(n, scale)));

  const expectClose = (name: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number): void => {
    if (actual.length !== expected.length) throw new SmokeCheckFailed({ name, relError: Infinity, tolerance, pass: false }, `${actual.length} values vs ${expected.length} expected`);
    let scale = 0;
    for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
    let worst = 0;
    let at = -1;
    for (let i = 0; i < expected.length; i++) {
      const e = Math.abs(actual[i] - expected[i]) / (scale || 1);
      if (!(e <= worst)) [worst, at] = [Number.isNaN(e) ? Infinity : e, i];
    }
    const row = { name, relError: worst, tolerance, pass: worst <= tolerance };
    rows.push(row);
    log(`  ${row.pass ? 'ok  ' : 'FAIL'} ${name.padEnd(58)} rel. error ${worst.toExponential(2)} (tolerance ${tolerance.toExponential(1)})`);
    if (!row.pass) throw new SmokeCheckFailed(row, `element ${at}: ${actual[at]} vs ${expected[at]} (seed ${seed})`);
  };
  /** A device tensor of `values` (act: bf16, master: float32). */
  const up = (p: 'act' | 'master', shape: number[], values: ArrayLike<number>): DeviceTensor => ops.fromHost(p, shape, values);
  /** A device tensor full of NaN (0xff bytes), so unwritten elements show. */
  const poisoned = (p: 'act' | 'master', shape: number[]): DeviceTensor => {
    const t = ops.zeros(p, shape);
    t.buffer.fill(0xff, device.defaultStream);
    return t;
  };
  const down = (t: DeviceTensor): Float64Array => ops.toHost(t);

  // ---- 1. cuBLASLt ----
  log('cuBLASLt');
  if (ltAbi !== null) {
    const mismatched = Object.entries(ltAbi).filter(([k, v]) => (LT as Record<string, number>)[k] !== v);
    rows.push({ name: 'cublasLt.h constants and struct sizes', relError: mismatched.length, tolerance: 0, pass: mismatched.length === 0 });
    if (mismatched.length > 0) {
      throw new SmokeCheckFailed(rows[rows.length - 1], `gpu/cublaslt.ts disagrees with this machine's cublasLt.h: ${mismatched.map(([k, v]) => `${k} header ${v} vs ours ${(LT as Record<string, number>)[k]}`).join(', ')}`);
    }
    log(`  ok   cublasLt.h constants and struct sizes match gpu/cublaslt.ts (${Object.keys(ltAbi).length} values)`);
  } else log('  (no cublasLt.h probe: constants not checked against a header; the GEMM checks below still run)');
  const [m, n, k] = [136, 200, 264];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      for (const [out, beta] of [['act', 0], ['master', 0], ['master', 1]] as const) {
        const a = bf16Values(randn(m * k));
        const b = bf16Values(randn(k * n));
        const c0 = beta === 1 ? randn(m * n) : new Float64Array(m * n);
        const want = c0.slice();
        matmul(want, a, b, { m, n, k, transA, transB, beta });
        const c = beta === 1 ? up('master', [m, n], c0) : poisoned(out, [m, n]);
        ops.gemm(c, up('act', transA ? [k, m] : [m, k], a), up('act', transB ? [n, k] : [k, n], b), { m, n, k, transA, transB, beta });
        expectClose(`gemm ${m}x${n}x${k} bf16->${out === 'act' ? 'bf16' : 'f32'} transA=${+transA} transB=${+transB} beta=${beta}`, down(c), out === 'act' ? bf16Values(want) : want, out === 'act' ? BF16 : 1e-5);
      }
    }
  }
  {
    // float32 on strided head views, as the naive attention issues them: S = Q_h·K_gᵀ, O_h += S·V_g
    const [T, Hq, Hkv, D] = [96, 3, 2, 128];
    const q = randn(T * Hq * D);
    const kk = randn(T * Hkv * D);
    const dq = q.length;
    const qd = DeviceTensor.fromHost(device, Tensor.fromValues('float32', [T, Hq, D], q));
    const kd = DeviceTensor.fromHost(device, Tensor.fromValues('float32', [T, Hkv, D], kk));
    const S = poisoned('master', [T, T]);
    const [h, g] = [2, 1];
    lt.gemm({ c: { ptr: S.buffer.ptr, dtype: 'float32', rows: T, cols: T }, a: { ptr: addressOf(qd, h * D), dtype: 'float32', rows: T, cols: D, ld: Hq * D }, b: { ptr: addressOf(kd, g * D), dtype: 'float32', rows: T, cols: D, ld: Hkv * D }, transB: true });
    const want = new Float64Array(T * T);
    for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) for (let d = 0; d < D; d++) want[i * T + j] += q[(i * Hq + h) * D + d] * kk[(j * Hkv + g) * D + d];
    expectClose('gemm f32 strided heads S = Q_h·K_gᵀ (ld = H·D)', down(S), want, 1e-5);
    const o0 = randn(dq);
    const o = DeviceTensor.fromHost(device, Tensor.fromValues('float32', [T, Hq, D], o0));
    lt.gemm({ c: { ptr: addressOf(o, h * D), dtype: 'float32', rows: T, cols: D, ld: Hq * D }, a: { ptr: S.buffer.ptr, dtype: 'float32', rows: T, cols: T }, b: { ptr: addressOf(kd, g * D), dtype: 'float32', rows: T, cols: D, ld: Hkv * D }, beta: 1 });
    const wantO = o0.slice();
    for (let i = 0; i < T; i++) for (let d = 0; d < D; d++) for (let j = 0; j < T; j++) wantO[(i * Hq + h) * D + d] += want[i * T + j] * kk[(j * Hkv + g) * D + d];
    expectClose('gemm f32 strided heads O_h += S·V_g (other heads untouched)', down(o), wantO, 1e-5);
    for (const t of [qd, kd, S, o]) t.free();
  }

  // ---- 2. kernels vs the CPU layers ----
  log('kernels vs CPU layers (float64 on the same inputs)');
  const [T, D, H, hd, F, V] = [37, 320, 4, 128, 704, 1000];
  {
    const table = randn(V * D);
    const tokens = Int32Array.from({ length: T }, () => rng.int(0, 40)); // repeats, so the backward's atomics collide
    const tok = ops.indices(tokens);
    const out = poisoned('master', [T, D]);
    ops.embeddingForward(out, tok, up('master', [V, D], table));
    const want = new Float64Array(T * D);
    embeddingForward(want, tokens, table, D);
    expectClose('embedding forward', down(out), want, 0);
    const dout = randn(T * D);
    const dtable = ops.zeros('master', [V, D]);
    ops.embeddingBackward(dtable, tok, up('master', [T, D], dout));
    const wantD = new Float64Array(V * D);
    embeddingBackward(wantD, tokens, dout, D);
    expectClose('embedding backward (atomic scatter-add)', down(dtable), wantD, 2e-5);
    ops.freeIndices(tok);
  }
  {
    const x = randn(T * D, 3);
    const w = randn(D);
    const out = poisoned('act', [T, D]);
    const rstd = poisoned('master', [T]);
    const [xd, wd] = [up('master', [T, D], x), up('master', [D], w)];
    ops.rmsnormForward(out, rstd, xd, wd, 1e-5);
    const wantOut = new Float64Array(T * D);
    const wantR = new Float64Array(T);
    rmsnormForward(wantOut, wantR, x, w, T, D, 1e-5);
    expectClose('rmsnorm forward: out (bf16)', down(out), bf16Values(wantOut), BF16);
    expectClose('rmsnorm forward: rstd', down(rstd), wantR, 1e-5);
    const dout = randn(T * D);
    const dx0 = randn(T * D);
    const dw0 = randn(D);
    const [dx, dw] = [up('master', [T, D], dx0), up('master', [D], dw0)];
    ops.rmsnormBackward(dx, dw, up('master', [T, D], dout), xd, wd, rstd);
    const [wantDx, wantDw] = [dx0.slice(), dw0.slice()];
    rmsnormBackward(wantDx, wantDw, dout, x, w, Float64Array.from(down(rstd)), T, D);
    expectClose('rmsnorm backward: dx (added into)', down(dx), wantDx, 1e-5);
    expectClose('rmsnorm backward: dw (added into, atomics)', down(dw), wantDw, 2e-5);
  }
  {
    const table = ropeTable(4096, hd, 10000);
    const positions = Int32Array.from({ length: T }, () => rng.int(0, 4095));
    const pos = ops.indices(positions);
    const x = bf16Values(randn(T * H * hd));
    const xd = up('act', [T, H, hd], x);
    ops.ropeForward(xd, pos, table);
    const want = x.slice();
    ropeForward(want, positions, H, table);
    expectClose('rope forward (bf16, in place)', down(xd), bf16Values(want), BF16);
    const g = randn(T * H * hd);
    const dst = poisoned('act', [T, H, hd]);
    ops.ropeBackward(dst, up('master', [T, H, hd], g), pos, table);
    const wantG = new Float64Array(g.length);
    ropeBackward(wantG, g, positions, H, table);
    expectClose('rope backward (float32 -> bf16)', down(dst), bf16Values(wantG), BF16);
    ops.freeIndices(pos);
  }
  {
    const a = bf16Values(randn(T * F, 2));
    const b = bf16Values(randn(T * F));
    const [ad, bd] = [up('act', [T, F], a), up('act', [T, F], b)];
    const out = poisoned('act', [T, F]);
    ops.swigluForward(out, ad, bd);
    const want = new Float64Array(T * F);
    swigluForward(want, a, b, T * F);
    expectClose('swiglu forward', down(out), want, 2 * BF16);
    const dout = bf16Values(randn(T * F));
    const [da, db] = [poisoned('act', [T, F]), poisoned('act', [T, F])];
    ops.swigluBackward(da, db, up('act', [T, F], dout), ad, bd);
    const [wantA, wantB] = [new Float64Array(T * F), new Float64Array(T * F)];
    swigluBackward(wantA, wantB, dout, a, b, T * F);
    expectClose('swiglu backward: da', down(da), wantA, 2 * BF16);
    expectClose('swiglu backward: db', down(db), wantB, 2 * BF16);
  }
  {
    const logits = randn(T * V, 3);
    const targets = Int32Array.from({ length: T }, (_, i) => (i % 7 === 3 ? -1 : rng.int(0, V - 1)));
    const tg = ops.indices(targets);
    const [dl, loss] = [poisoned('act', [T, V]), poisoned('master', [T])];
    ops.crossEntropy(dl, loss, up('master', [T, V], logits), tg, 1 / 30);
    const [wantD, wantL] = [new Float64Array(T * V), new Float64Array(T)];
    crossEntropy(wantD, wantL, logits, targets, V, 1 / 30);
    expectClose('cross-entropy: row losses', down(loss), wantL, 1e-5);
    expectClose('cross-entropy: dlogits (bf16)', down(dl), bf16Values(wantD), BF16);
    ops.freeIndices(tg);
  }
  {
    const N = 10007;
    const [p, g, mm, v] = [randn(N), randn(N), randn(N, 0.1), Float64Array.from(randn(N, 0.1), Math.abs)];
    const ds = [p, g, mm, v].map((x) => up('master', [N], x));
    const h = { lr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 7 };
    ops.adamw(ds[0], ds[1], ds[2], ds[3], h, 0.6);
    const want = [p, g, mm, v].map((x) => x.slice());
    adamwUpdate(want[0], want[1], want[2], want[3], N, h, 0.6);
    expectClose('adamw: weights', down(ds[0]), want[0], 1e-6);
    expectClose('adamw: first moment', down(ds[2]), want[2], 1e-6);
    expectClose('adamw: second moment', down(ds[3]), want[3], 1e-6);
    const x = randn(1_000_003);
    const got = ops.sumOfSquares(up('master', [x.length], x));
    expectClose('gradient norm: sum of squares (float32 data, double sums)', [got], [sumOfSquares(x, x.length)], 1e-10);
    const bfd = ops.zeros('act', [x.length]);
    const back = ops.zeros('master', [x.length]);
    const xd = up('master', [x.length], x);
    ops.copy(bfd, xd);
    ops.copy(back, bfd);
    const xb = bf16Values(x);
    expectClose('conversion float32 -> bf16 -> float32 (round to nearest even)', down(back), xb, 0);
    const acc0 = randn(x.length);
    const acc = up('master', [x.length], acc0);
    ops.addInto(acc, bfd);
    ops.addInto(acc, xd);
    expectClose('addInto float32 += bf16, += float32', down(acc), acc0.map((a, i) => Math.fround(Math.fround(a + xb[i]) + x[i])), 0);
  }

  // ---- 3. attention cores vs dense float64 ----
  log('attention cores vs dense float64 attention (varlen causal, 3 documents, GQA 4:2, head dim 128)');
  {
    const [Ta, Hq, Hkv, Da] = [300, 4, 2, 128];
    const mask = varlenCausalMask([0, 71, 190, 300]);
    const q = bf16Values(randn(Ta * Hq * Da));
    const kk = bf16Values(randn(Ta * Hkv * Da));
    const v = bf16Values(randn(Ta * Hkv * Da));
    const dout = bf16Values(randn(Ta * Hq * Da));
    const shape = { tokens: Ta, headsQ: Hq, headsKv: Hkv, headDim: Da, scale: 1 / Math.sqrt(Da) };
    const rowsM = maskRows(mask, Ta);
    const [wantO, wantL] = [new Float64Array(q.length), new Float64Array(Ta * Hq)];
    denseAttentionForward(wantO, wantL, q, kk, v, rowsM, shape);
    const [wq, wk, wv] = [new Float64Array(q.length), new Float64Array(kk.length), new Float64Array(v.length)];
    denseAttentionBackward(wq, wk, wv, dout, q, kk, v, wantL, rowsM, shape);
    for (const [kind, tol] of [
      ['naive', { out: BF16, lse: 1e-5, grad: 1e-4 }],
      ['ffa', { out: 2 ** -6, lse: 1e-3, grad: 3e-2 }],
    ] as const) {
      const core = backend.attention(kind, mask, Ta);
      const [qd, kd, vd] = [up('act', [Ta, Hq, Da], q), up('act', [Ta, Hkv, Da], kk), up('act', [Ta, Hkv, Da], v)];
      const fwd = await core.forward(qd, kd, vd);
      expectClose(`${kind} attention forward: out`, down(fwd.out), wantO, tol.out);
      expectClose(`${kind} attention forward: lse`, down(fwd.lse), wantL, tol.lse);
      const g = { dq: ops.zeros('master', [Ta, Hq, Da]), dk: ops.zeros('master', [Ta, Hkv, Da]), dv: ops.zeros('master', [Ta, Hkv, Da]) };
      await core.backward(up('act', [Ta, Hq, Da], dout), qd, kd, vd, fwd, g);
      expectClose(`${kind} attention backward: dq`, down(g.dq), wq, tol.grad);
      expectClose(`${kind} attention backward: dk`, down(g.dk), wk, tol.grad);
      expectClose(`${kind} attention backward: dv`, down(g.dv), wv, tol.grad);
      core.dispose?.();
    }
  }
  device.synchronize();
  return rows;
}
