/**
 * The WebAssembly SIMD kernel of the CPU backend (AssemblyScript, compiled by `npm run build`).
 * It is the float32 form of the TypeScript engine's loops (../../forward.ts, ../../backward.ts):
 * the same work list, the same items, the same NaN rules, with the tile products done by a
 * register-blocked micro-kernel (4 rows x 8 columns of float32 accumulators in 128-bit
 * registers) and the softmax by a vector exp2. The fused multiply-add is the relaxed-SIMD one
 * where the build enables it (ASC_FEATURE_RELAXED_SIMD), mul + add otherwise; the loader picks
 * the build the runtime validates.
 *
 * It owns no memory: the host lays out every buffer in the (imported, possibly shared) memory,
 * writes a job descriptor and calls run(job, tid) on every thread. The inputs stay token-major
 * as the caller holds them ([T, H, D], each row padded to DIMP), so the host copies them in with
 * one block copy and no thread waits for a per-head rearrangement; a head's rows are then a
 * strided walk (stride H·DIMP). Forward items are (kv head, q tile) pairs taken dynamically
 * through an atomic counter over every head at once (each item owns its rows, so the result does
 * not depend on who ran it); backward items are the k tiles of one kv head, as fixed per-thread
 * lists (each thread zeroes its own dQ buffer and adds into it, so a fixed assignment keeps the
 * sums in a fixed order), and a last job sums the dQ buffers in thread order into dq. A first job
 * checks that the inputs are all finite, in chunks taken through the counter.
 *
 * Layouts (float32 rows padded to DIMP = D rounded up to 4, padding zero): q, dout, out, dq
 * [Tq, Hq, DIMP]; k, v, dk, dv [Tk, Hkv, DIMP]; lse, delta, and the forward's row max and row sum
 * float64 [Tq, Hq]; the per-thread dQ buffers [G, Tq, DIMP]; max logits float32 [threads, Hq].
 */

// Job descriptor: 32-bit words. The host (../engine.ts, JOB) writes the same indices.
const J_KIND = 0; // 1 forward, 2 backward, 3 sum the dQ buffers
const J_NEXT = 48; // forward: next item (atomic), alone in the descriptor's last cache line
const J_TQ = 3;
const J_GROUP = 5;
const J_DIM = 6;
const J_DIMP = 7;
const J_SCALE = 8; // f32
const J_SOFTCAP = 9; // f32
const J_FINITE = 10;
const J_Q = 11;
const J_K = 12;
const J_V = 13;
const J_OUT = 14;
const J_LSE = 15;
const J_MAXL = 16;
const J_DOUT = 17;
const J_DELTA = 18;
const J_DQ = 19;
const J_DQ_STRIDE = 20;
const J_DK = 21;
const J_DV = 22;
const J_SCRATCH = 23;
const J_SCRATCH_STRIDE = 24;
const J_QT_START = 25;
const J_QT_ROWS = 26;
const J_QT_PIECES = 27;
const J_P_TILE = 28;
const J_P_SPAN_LO = 29;
const J_P_SPAN_HI = 30;
const J_P_ROW_OFF = 31;
const J_LO = 32;
const J_HI = 33;
const J_KT_START = 34;
const J_KT_COLS = 35;
const J_KT_PIECES = 36;
const J_K_PIECES = 37;
const J_ITEMS = 38;
const J_N_ITEMS = 39;
const J_THREAD_OFF = 40;
const J_THREADS = 1;
const J_ROWSUM = 42; // forward: float64 [Tq, Hq] softmax sums (J_LSE then holds the row maxima)
const J_HQ = 43;
const J_HKV = 44;
const J_NQT = 45; // forward: q tiles per kv head (an item is hk·NQT + tile)
const J_HK = 46; // backward and dQ sum: the kv head
const J_DQ_OUT = 47; // backward: dq [Tq, Hq, DIMP]
const J_CHECK = 49; // finiteness check: up to 4 regions as (pointer, floats) word pairs, 0 floats = none
const J_CHECK_OUT = 57; // finiteness check: pointer to an i32 that stays 1 if every value is finite
const J_HOST = 41; // 1: dense tile products go to the host's gemm import (the BLAS engine), 0: the micro-kernel below

const J_TILE_Q = 58; // rows of a q tile (the work list's, work.ts)
const J_TILE_K = 59; // keys of a k tile, and of a forward step along a piece's keys

// The current job's tile sizes (run sets them; scratchBytes for the host's layout): 64 x 64 for
// the micro-kernel, larger where the host's products want them (the BLAS engine).
let TQ = 64;
let TK = 64;

@inline function ji(job: usize, f: i32): i32 {
  return load<i32>(job + (<usize>f << 2));
}
@inline function jp(job: usize, f: i32): usize {
  return <usize>load<u32>(job + (<usize>f << 2));
}
@inline function jf(job: usize, f: i32): f32 {
  return load<f32>(job + (<usize>f << 2));
}
/** Element i of the i32 array whose pointer is job field f. */
@inline function at(job: usize, f: i32, i: i32): i32 {
  return load<i32>(jp(job, f) + (<usize>i << 2));
}

// ---------------------------------------------------------------------------------------------
// Vector arithmetic

@inline function fma(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

const LOG2E: f32 = 1.44269504088896341;

/**
 * 2^x per lane for x <= 127 (every caller passes x <= 0 or NaN but a stray backward lse): n =
 * round(x), f = x - n in [-1/2, 1/2] exactly, 2^f by a degree-6 polynomial (a relative minimax
 * fit, 1.2 ulp in float32), 2^n built in the exponent bits. Below -127 the result is 0 (so
 * 2^-inf = 0), NaN stays NaN. Working in base 2 makes the range reduction exact (no Cody-Waite
 * pair of ln 2 constants) and lets callers fold log2(e) into the scale they multiply by anyway.
 *
 * Written for what V8 emits on x86-64: pmin/pmax are one instruction each (min/max are about
 * eight, for their NaN and -0 rules; with x as the first operand pmin/pmax keep a NaN x), and n
 * comes out of the float addition of 1.5·2^23, which rounds x to an integer in the low mantissa
 * bits (no roundps, no saturating conversion sequence); those bits plus the bias are the exponent.
 */
@inline function vexp2(x: v128): v128 {
  const xc = f32x4.pmin(f32x4.pmax(x, f32x4.splat(-127.0)), f32x4.splat(127.0));
  const magic = f32x4.splat(12582912.0); // 1.5·2^23
  const r = f32x4.add(xc, magic);
  const f = f32x4.sub(xc, f32x4.sub(r, magic));
  let y = f32x4.splat(1.5345809515565634e-4);
  y = fma(y, f, f32x4.splat(1.3399932067841291e-3));
  y = fma(y, f, f32x4.splat(9.618489071726799e-3));
  y = fma(y, f, f32x4.splat(5.550328642129898e-2));
  y = fma(y, f, f32x4.splat(2.4022646248340607e-1));
  y = fma(y, f, f32x4.splat(6.931471824645996e-1));
  y = fma(y, f, f32x4.splat(1.0));
  const scale = i32x4.shl(i32x4.add(r, i32x4.splat(127 - 0x4b400000)), 23); // 0x4b400000: the bits of 1.5·2^23
  return f32x4.mul(y, scale);
}

/** e^x for one value (the online softmax's rescale factor). */
@inline function exp1(x: f32): f32 {
  return f32x4.extract_lane(vexp2(f32x4.splat(x * LOG2E)), 0);
}

/** tanh per lane as (1 - e)/(1 + e)·sign, e = e^{-2|y|}: absolute error ~1e-7, NaN stays NaN. */
@inline function vtanh(y: v128): v128 {
  const e = vexp2(f32x4.mul(f32x4.abs(y), f32x4.splat(-2.0 * LOG2E)));
  const t = f32x4.div(f32x4.sub(f32x4.splat(1.0), e), f32x4.add(f32x4.splat(1.0), e));
  return v128.or(t, v128.and(y, f32x4.splat(-0.0)));
}

/** Max of the four lanes, NaN-propagating (f32.max). */
@inline function hmax(v: v128): f32 {
  return max<f32>(max<f32>(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max<f32>(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** Lanes c .. c+3 that lie in [lo, hi). */
@inline function colMask(c: i32, lo: i32, hi: i32): v128 {
  const idx = i32x4.add(i32x4.splat(c), i32x4(0, 1, 2, 3));
  return v128.and(i32x4.ge_s(idx, i32x4.splat(lo)), i32x4.lt_s(idx, i32x4.splat(hi)));
}

// ---------------------------------------------------------------------------------------------
// Tile products

/**
 * The host's tile product (the BLAS engine: cblas_sgemm through koffi, ../../blas.ts):
 * C[M, N] = A·B + beta·C, row-major, A transposed when transA is 1 (stored K x M, lda apart),
 * pointers into this memory. An instance made for the plain WebAssembly engine gets an import
 * that throws: its jobs never set J_HOST.
 */
@external("env", "gemm")
declare function hostGemm(transA: i32, M: i32, N: i32, K: i32, A: usize, lda: i32, B: usize, ldb: i32, beta: f32, C: usize, ldc: i32): void;

/** Whether this thread's current job sends the dense products to hostGemm (set by run from J_HOST). */
let host = false;

/**
 * C[M, N] (+)= A·B with A(r, k) at A + 4(r·aRow + k·aCol) (a transposed operand is swapped
 * strides) and row k of B at B + 4k·ldb; N must be a multiple of 4. Blocks of 4 rows x 8
 * columns keep 8 accumulators, 2 B vectors and a broadcast A value in registers through the
 * whole inner loop (11 of the 16 vector registers V8 uses on x64).
 */
function gemm(C: usize, ldc: i32, A: usize, aRow: i32, aCol: i32, B: usize, ldb: i32, M: i32, K: i32, N: i32, acc: bool): void {
  if (host) {
    // Every caller passes A row-major (aCol 1) or transposed (aRow 1).
    if (aCol == 1) hostGemm(0, M, N, K, A, aRow, B, ldb, acc ? 1 : 0, C, ldc);
    else hostGemm(1, M, N, K, A, aCol, B, ldb, acc ? 1 : 0, C, ldc);
    return;
  }
  const ar = <usize>aRow << 2;
  const ac = <usize>aCol << 2;
  const lb = <usize>ldb << 2;
  const lc = <usize>ldc << 2;
  let r = 0;
  for (; r + 4 <= M; r += 4) {
    const a0 = A + <usize>r * ar;
    const c0 = C + <usize>r * lc;
    let n = 0;
    for (; n + 8 <= N; n += 8) block4x8(c0 + (<usize>n << 2), lc, a0, ar, ac, B + (<usize>n << 2), lb, K, acc);
    if (n < N) block4x4(c0 + (<usize>n << 2), lc, a0, ar, ac, B + (<usize>n << 2), lb, K, acc);
  }
  for (; r < M; r++) {
    const a0 = A + <usize>r * ar;
    const c0 = C + <usize>r * lc;
    for (let n = 0; n < N; n += 4) block1x4(c0 + (<usize>n << 2), a0, ac, B + (<usize>n << 2), lb, K, acc);
  }
}

@inline function block4x8(c: usize, lc: usize, a: usize, ar: usize, ac: usize, b: usize, lb: usize, K: i32, acc: bool): void {
  const z = f32x4.splat(0);
  let x00 = z, x01 = z, x10 = z, x11 = z, x20 = z, x21 = z, x30 = z, x31 = z;
  const c1 = c + lc;
  const c2 = c1 + lc;
  const c3 = c2 + lc;
  if (acc) {
    x00 = v128.load(c); x01 = v128.load(c, 16);
    x10 = v128.load(c1); x11 = v128.load(c1, 16);
    x20 = v128.load(c2); x21 = v128.load(c2, 16);
    x30 = v128.load(c3); x31 = v128.load(c3, 16);
  }
  const a1 = ar;
  const a2 = ar + ar;
  const a3 = a2 + ar;
  let pa = a;
  let pb = b;
  for (let k = 0; k < K; k++) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    let s = v128.load32_splat(pa);
    x00 = fma(s, b0, x00); x01 = fma(s, b1, x01);
    s = v128.load32_splat(pa + a1);
    x10 = fma(s, b0, x10); x11 = fma(s, b1, x11);
    s = v128.load32_splat(pa + a2);
    x20 = fma(s, b0, x20); x21 = fma(s, b1, x21);
    s = v128.load32_splat(pa + a3);
    x30 = fma(s, b0, x30); x31 = fma(s, b1, x31);
    pa += ac;
    pb += lb;
  }
  v128.store(c, x00); v128.store(c, x01, 16);
  v128.store(c1, x10); v128.store(c1, x11, 16);
  v128.store(c2, x20); v128.store(c2, x21, 16);
  v128.store(c3, x30); v128.store(c3, x31, 16);
}

@inline function block4x4(c: usize, lc: usize, a: usize, ar: usize, ac: usize, b: usize, lb: usize, K: i32, acc: bool): void {
  const z = f32x4.splat(0);
  let x0 = z, x1 = z, x2 = z, x3 = z;
  const c1 = c + lc;
  const c2 = c1 + lc;
  const c3 = c2 + lc;
  if (acc) {
    x0 = v128.load(c); x1 = v128.load(c1); x2 = v128.load(c2); x3 = v128.load(c3);
  }
  const a2 = ar + ar;
  const a3 = a2 + ar;
  let pa = a;
  let pb = b;
  for (let k = 0; k < K; k++) {
    const b0 = v128.load(pb);
    x0 = fma(v128.load32_splat(pa), b0, x0);
    x1 = fma(v128.load32_splat(pa + ar), b0, x1);
    x2 = fma(v128.load32_splat(pa + a2), b0, x2);
    x3 = fma(v128.load32_splat(pa + a3), b0, x3);
    pa += ac;
    pb += lb;
  }
  v128.store(c, x0); v128.store(c1, x1); v128.store(c2, x2); v128.store(c3, x3);
}

@inline function block1x4(c: usize, a: usize, ac: usize, b: usize, lb: usize, K: i32, acc: bool): void {
  let x = acc ? v128.load(c) : f32x4.splat(0);
  let pa = a;
  let pb = b;
  for (let k = 0; k < K; k++) {
    x = fma(v128.load32_splat(pa), v128.load(pb), x);
    pa += ac;
    pb += lb;
  }
  v128.store(c, x);
}

/**
 * The tile product over visible cells only, for inputs that hold NaN or Inf (see ../../tile.ts
 * gemmVisible): cell (i, c) of A is visible iff colLo[i] <= c < colHi[i], i < rows.
 *   byRow: C[i] += Σ_c A(i, c)·B[c];   else: C[c] += Σ_i A(i, c)·B[i]   (rows of N floats)
 */
function gemmVisible(byRow: bool, C: usize, ldc: i32, A: usize, aRow: i32, aCol: i32, B: usize, ldb: i32, rows: i32, colLo: usize, colHi: usize, N: i32): void {
  for (let i = 0; i < rows; i++) {
    const lo = load<i32>(colLo + (<usize>i << 2));
    const hi = load<i32>(colHi + (<usize>i << 2));
    for (let c = lo; c < hi; c++) {
      const a = v128.load32_splat(A + ((<usize>i * aRow + <usize>c * aCol) << 2));
      const o = C + ((<usize>(byRow ? i : c) * ldc) << 2);
      const b = B + ((<usize>(byRow ? c : i) * ldb) << 2);
      for (let n = 0; n < N; n += 4) {
        const off = <usize>n << 2;
        v128.store(o + off, fma(a, v128.load(b + off), v128.load(o + off)));
      }
    }
  }
}

/**
 * dst[d·TK + j] = src[j·ld + d] for j < nc, d < dim; 0 for nc <= j < ncp. Blocks of 4 keys x 4
 * dimensions go through a 4x4 register transpose (unpack shuffles), the edges one float at a time.
 */
function packTransposed(dst: usize, src: usize, nc: i32, ncp: i32, dim: i32, ld: i32): void {
  const lb = <usize>ld << 2;
  const tb = <usize>TK << 2;
  const nc4 = nc & ~3;
  const dim4 = dim & ~3;
  for (let j = 0; j < nc4; j += 4) {
    const s0 = src + <usize>j * lb;
    const o = dst + (<usize>j << 2);
    for (let d = 0; d < dim4; d += 4) {
      const off = <usize>d << 2;
      const r0 = v128.load(s0 + off);
      const r1 = v128.load(s0 + lb + off);
      const r2 = v128.load(s0 + 2 * lb + off);
      const r3 = v128.load(s0 + 3 * lb + off);
      const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
      const t1 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
      const t2 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
      const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
      const od = o + <usize>d * tb;
      v128.store(od, v128.shuffle<f32>(t0, t1, 0, 1, 4, 5));
      v128.store(od + tb, v128.shuffle<f32>(t0, t1, 2, 3, 6, 7));
      v128.store(od + 2 * tb, v128.shuffle<f32>(t2, t3, 0, 1, 4, 5));
      v128.store(od + 3 * tb, v128.shuffle<f32>(t2, t3, 2, 3, 6, 7));
    }
    for (let d = dim4; d < dim; d++) {
      for (let u = 0; u < 4; u++) store<f32>(o + <usize>d * tb + (<usize>u << 2), load<f32>(s0 + <usize>u * lb + (<usize>d << 2)));
    }
  }
  for (let d = 0; d < dim; d++) {
    const o = dst + <usize>d * tb;
    for (let j = nc4; j < nc; j++) store<f32>(o + (<usize>j << 2), load<f32>(src + <usize>j * lb + (<usize>d << 2)));
    for (let j = nc; j < ncp; j++) store<f32>(o + (<usize>j << 2), 0);
  }
}

@inline function zero(ptr: usize, floats: i32): void {
  memory.fill(ptr, 0, <usize>floats << 2);
}

// ---------------------------------------------------------------------------------------------
// Per-thread scratch: packed Kᵀ and Vᵀ tiles, two score tiles, then per query head of the group
// (forward) an output accumulator and the running max and sum of each row, or (backward) the dK
// and dV accumulators; the visible columns of each row.

function scratchKT(s: usize): usize {
  return s;
}
function scratchVT(s: usize, dimP: i32): usize {
  return s + (<usize>(dimP * TK) << 2);
}
function scratchS(s: usize, dimP: i32): usize {
  return s + (<usize>(2 * dimP * TK) << 2);
}
function scratchS2(s: usize, dimP: i32): usize {
  return scratchS(s, dimP) + (<usize>(TQ * TK) << 2);
}
function scratchColLo(s: usize, dimP: i32): usize {
  return scratchS2(s, dimP) + (<usize>(TQ * TK) << 2);
}
function scratchColHi(s: usize, dimP: i32): usize {
  return scratchColLo(s, dimP) + (<usize>TQ << 2);
}
/** Output (forward, per head: TQ rows) or dK then dV (backward: TK rows) accumulators, rows of dimP. */
function scratchAcc(s: usize, dimP: i32, g: i32): usize {
  return scratchColHi(s, dimP) + (<usize>TQ << 2) + (<usize>(g * max(TQ, TK) * dimP) << 2);
}
/** Running row max (float32) of head g, after the group's accumulators. */
function scratchM(s: usize, dimP: i32, group: i32, g: i32): usize {
  return scratchAcc(s, dimP, max(group, 2)) + (<usize>(g * TQ) << 2);
}
/** Running row sum (float64) of head g. */
function scratchL(s: usize, dimP: i32, group: i32, g: i32): usize {
  return ((scratchM(s, dimP, group, group) + 7) & ~7) + (<usize>(g * TQ) << 3);
}

/**
 * Backward: contiguous copies (rows of dimP floats) of the q tile's rows of q and dout for one
 * head, and of the k tile's keys. In the token-major inputs a head's rows lie H·DIMP floats apart
 * (2 or 4 KB at 8 heads of D 64 or 128), so a tile's rows fall into a few L1 cache sets and evict
 * each other while a product passes over them again and again; copied, they sit in L1.
 */
function scratchQP(s: usize, dimP: i32, group: i32): usize {
  return (scratchL(s, dimP, group, group) + 63) & ~63;
}
function scratchDOP(s: usize, dimP: i32, group: i32): usize {
  return scratchQP(s, dimP, group) + (<usize>(TQ * dimP) << 2);
}
function scratchKP(s: usize, dimP: i32, group: i32): usize {
  return scratchDOP(s, dimP, group) + (<usize>(TQ * dimP) << 2);
}

/** rows rows of `bytes` bytes from src (rows srcStride bytes apart) to dst, packed. */
function copyRows(dst: usize, src: usize, rows: i32, bytes: usize, srcStride: usize): void {
  for (let i = 0; i < rows; i++) memory.copy(dst + <usize>i * bytes, src + <usize>i * srcStride, bytes);
}

/**
 * Bytes of one thread's scratch for rows of dimP floats, `group` query heads per kv head and
 * tiles of tq rows by tk keys, rounded up to a 64-byte cache line so that threads never write
 * into one line.
 */
export function scratchBytes(dimP: i32, group: i32, tq: i32, tk: i32): i32 {
  TQ = tq;
  TK = tk;
  return (<i32>scratchKP(0, dimP, group) + (tk * dimP << 2) + 63) & ~63;
}

/** Whether floats [ptr, ptr + 4n) are all finite: x - x is 0 for finite x and NaN for NaN and ±Inf. */
function allFinite(ptr: usize, n: i32): bool {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const x = v128.load(ptr + (<usize>i << 2));
    acc = f32x4.add(acc, f32x4.sub(x, x));
  }
  let tail: f32 = 0;
  for (; i < n; i++) {
    const x = load<f32>(ptr + (<usize>i << 2));
    tail += x - x;
  }
  return v128.all_true<i32>(f32x4.eq(acc, f32x4.splat(0))) && tail == 0;
}

const CHECK_CHUNK = 65536; // floats per item of the finiteness check

/**
 * Items of the finiteness check taken through the atomic counter (a thread that starts late
 * leaves its share to the others): any thread that meets a non-finite value clears the flag,
 * which the host set to 1, so the result does not depend on who checked what.
 */
function checkFinite(job: usize): void {
  for (;;) {
    let item = atomic.add<i32>(job + (<usize>J_NEXT << 2), 1);
    let r = 0;
    for (; r < 4; r++) {
      const chunks = (ji(job, J_CHECK + 2 * r + 1) + CHECK_CHUNK - 1) / CHECK_CHUNK;
      if (item < chunks) break;
      item -= chunks;
    }
    if (r == 4) break;
    const n = ji(job, J_CHECK + 2 * r + 1);
    const first = item * CHECK_CHUNK;
    if (!allFinite(jp(job, J_CHECK + 2 * r) + (<usize>first << 2), min(CHECK_CHUNK, n - first))) atomic.store<i32>(jp(job, J_CHECK_OUT), 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward: one (kv head, q tile) item, every query head of the group (one packed Kᵀ tile serves
// them all)

function forwardItem(job: usize, item: i32, s: usize, maxl: usize): void {
  const nqt = ji(job, J_NQT);
  const hk = item / nqt;
  const t = item - hk * nqt;
  const hq = ji(job, J_HQ);
  const hkv = ji(job, J_HKV);
  const group = ji(job, J_GROUP);
  const dim = ji(job, J_DIM);
  const dimP = ji(job, J_DIMP);
  const scale = jf(job, J_SCALE);
  const softcap = jf(job, J_SOFTCAP);
  const capInv = softcap > 0 ? scale / softcap : <f32>0;
  // pass 1 leaves raw scores (times `pre` they are logits) or, with softcap, the logits
  const pre: f32 = softcap > 0 ? 1 : scale;
  const finite = ji(job, J_FINITE) != 0;
  const qLd = hq * dimP;
  const kLd = hkv * dimP;
  const h0 = hk * group;
  const Q = jp(job, J_Q) + (<usize>(h0 * dimP) << 2);
  const K = jp(job, J_K) + (<usize>(hk * dimP) << 2);
  const V = jp(job, J_V) + (<usize>(hk * dimP) << 2);
  const q0 = at(job, J_QT_START, t);
  const nr = at(job, J_QT_ROWS, t);
  const p0 = at(job, J_QT_PIECES, t);
  const p1 = at(job, J_QT_PIECES, t + 1);
  const KT = scratchKT(s);
  const S = scratchS(s, dimP);
  const CLO = scratchColLo(s, dimP);
  const CHI = scratchColHi(s, dimP);
  const rowBytes = <usize>dimP << 2;
  const kRowBytes = <usize>kLd << 2;

  for (let g = 0; g < group; g++) {
    zero(scratchAcc(s, dimP, g), nr * dimP);
    const Mx = scratchM(s, dimP, group, g);
    const L = scratchL(s, dimP, group, g);
    for (let i = 0; i < nr; i++) {
      store<f32>(Mx + (<usize>i << 2), -Infinity);
      store<f64>(L + (<usize>i << 3), 0);
    }
  }

  for (let piece = p0; piece < p1; piece++) {
    const rowOff = at(job, J_P_ROW_OFF, piece);
    const spanLo = at(job, J_P_SPAN_LO, piece);
    const spanHi = at(job, J_P_SPAN_HI, piece);
    for (let k0 = spanLo; k0 < spanHi; k0 += TK) {
      const nc = min(TK, spanHi - k0);
      const ncp = (nc + 3) & ~3;
      const k1 = k0 + nc;
      const Vt = V + <usize>k0 * kRowBytes;
      packTransposed(KT, K + <usize>k0 * kRowBytes, nc, ncp, dim, kLd);
      for (let g = 0; g < group; g++) {
        const O = scratchAcc(s, dimP, g);
        const Mx = scratchM(s, dimP, group, g);
        const L = scratchL(s, dimP, group, g);
        gemm(S, TK, Q + ((<usize>q0 * <usize>qLd + <usize>(g * dimP)) << 2), qLd, 1, KT, TK, nr, dim, ncp, false);
        let headMax = load<f32>(maxl + (<usize>(h0 + g) << 2));

        // Online softmax, row by row; S becomes unnormalised probabilities in place. Pass 1 finds
        // the row max (of raw scores: scale > 0 keeps their order) and writes only what the second
        // pass cannot recompute: -inf on masked cells, the logits under softcap.
        for (let i = 0; i < nr; i++) {
          const row = S + (<usize>(i * TK) << 2);
          const cLo = max(at(job, J_LO, rowOff + i), k0) - k0;
          const cHi = min(at(job, J_HI, rowOff + i), k1) - k0;
          store<i32>(CLO + (<usize>i << 2), 0);
          store<i32>(CHI + (<usize>i << 2), 0);
          if (cHi <= cLo) {
            zero(row, ncp);
            continue;
          }
          const whole = cLo == 0 && cHi == ncp;
          // The row max by pmax (one instruction), NaN tracked on the side: a NaN logit makes it NaN.
          let vmx = f32x4.splat(-Infinity);
          let vnan = f32x4.splat(0);
          for (let c = 0; c < ncp; c += 4) {
            let z = v128.load(row + (<usize>c << 2));
            if (softcap > 0) z = f32x4.mul(f32x4.splat(softcap), vtanh(f32x4.mul(z, f32x4.splat(capInv))));
            if (!whole) z = v128.bitselect(z, f32x4.splat(-Infinity), colMask(c, cLo, cHi));
            if (softcap > 0 || !whole) v128.store(row + (<usize>c << 2), z);
            vmx = f32x4.pmax(vmx, z);
            vnan = v128.or(vnan, f32x4.ne(z, z));
          }
          const mx = v128.any_true(vnan) ? <f32>NaN : hmax(vmx) * pre;
          headMax = max<f32>(headMax, mx);
          const mOld = load<f32>(Mx + (<usize>i << 2));
          const mNew = max<f32>(mx, mOld);
          if (mNew == -Infinity) {
            zero(row, ncp);
            continue;
          }
          store<i32>(CLO + (<usize>i << 2), cLo);
          store<i32>(CHI + (<usize>i << 2), cHi);
          // p = e^(z - m) = 2^((x·pre - m)·log2 e)
          const mv = f32x4.splat(mNew);
          const pv = f32x4.splat(pre);
          const lv = f32x4.splat(LOG2E);
          let vsum = f32x4.splat(0);
          for (let c = 0; c < ncp; c += 4) {
            const x = f32x4.mul(f32x4.sub(f32x4.mul(v128.load(row + (<usize>c << 2)), pv), mv), lv);
            const e = vexp2(x);
            v128.store(row + (<usize>c << 2), e);
            vsum = f32x4.add(vsum, e);
          }
          const sum = <f64>hsum(vsum);
          const lp = L + (<usize>i << 3);
          if (!(mNew == mOld)) {
            const alpha = exp1(mOld - mNew); // 0 while the row is empty; NaN once NaN arrived
            const av = f32x4.splat(alpha);
            const o = O + <usize>i * rowBytes;
            for (let d = 0; d < dimP; d += 4) v128.store(o + (<usize>d << 2), f32x4.mul(v128.load(o + (<usize>d << 2)), av));
            store<f64>(lp, load<f64>(lp) * <f64>alpha + sum);
            store<f32>(Mx + (<usize>i << 2), mNew);
          } else {
            store<f64>(lp, load<f64>(lp) + sum);
          }
        }
        store<f32>(maxl + (<usize>(h0 + g) << 2), headMax);
        if (finite) gemm(O, dimP, S, TK, 1, Vt, kLd, nr, nc, dimP, true);
        else gemmVisible(true, O, dimP, S, TK, 1, Vt, kLd, nr, CLO, CHI, dimP);
      }
    }
  }

  // The host finishes lse = max + log(sum) (-inf where sum = 0): no log tables in here.
  const qRowBytes = <usize>qLd << 2;
  for (let g = 0; g < group; g++) {
    const h = h0 + g;
    const O = scratchAcc(s, dimP, g);
    const Mx = scratchM(s, dimP, group, g);
    const L = scratchL(s, dimP, group, g);
    const OUT = jp(job, J_OUT) + <usize>q0 * qRowBytes + (<usize>(h * dimP) << 2);
    const ROWMAX = jp(job, J_LSE) + (<usize>(q0 * hq + h) << 3);
    const ROWSUM = jp(job, J_ROWSUM) + (<usize>(q0 * hq + h) << 3);
    for (let i = 0; i < nr; i++) {
      const l = load<f64>(L + (<usize>i << 3));
      const dst = OUT + <usize>i * qRowBytes;
      store<f64>(ROWMAX + (<usize>(i * hq) << 3), <f64>load<f32>(Mx + (<usize>i << 2)));
      store<f64>(ROWSUM + (<usize>(i * hq) << 3), l);
      if (l == 0) {
        zero(dst, dimP);
        continue;
      }
      const inv = f32x4.splat(<f32>(1 / l));
      const o = O + <usize>i * rowBytes;
      for (let d = 0; d < dimP; d += 4) v128.store(dst + (<usize>d << 2), f32x4.mul(v128.load(o + (<usize>d << 2)), inv));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: one k tile of kv head J_HK, every piece that sees it, every query head of the group

function backwardItem(job: usize, kt: i32, s: usize, dqBuf: usize): void {
  const tq = ji(job, J_TQ);
  const hq = ji(job, J_HQ);
  const hkv = ji(job, J_HKV);
  const hk = ji(job, J_HK);
  const group = ji(job, J_GROUP);
  const dim = ji(job, J_DIM);
  const dimP = ji(job, J_DIMP);
  const scale = jf(job, J_SCALE);
  const softcap = jf(job, J_SOFTCAP);
  const capInv = softcap > 0 ? scale / softcap : <f32>0;
  const finite = ji(job, J_FINITE) != 0;
  const qLd = hq * dimP;
  const kLd = hkv * dimP;
  const h0 = hk * group;
  const Q = jp(job, J_Q) + (<usize>(h0 * dimP) << 2);
  const DO = jp(job, J_DOUT) + (<usize>(h0 * dimP) << 2);
  const LSE = jp(job, J_LSE);
  const DELTA = jp(job, J_DELTA);
  const rowBytes = <usize>dimP << 2;
  const qRowBytes = <usize>qLd << 2;
  const kRowBytes = <usize>kLd << 2;
  const k0 = at(job, J_KT_START, kt);
  const nc = at(job, J_KT_COLS, kt);
  const ncp = (nc + 3) & ~3;
  const k1 = k0 + nc;
  const Kt = jp(job, J_K) + <usize>k0 * kRowBytes + (<usize>(hk * dimP) << 2);
  const Vt = jp(job, J_V) + <usize>k0 * kRowBytes + (<usize>(hk * dimP) << 2);
  const KT = scratchKT(s);
  const VT = scratchVT(s, dimP);
  const P = scratchS(s, dimP);
  const DS = scratchS2(s, dimP);
  const DK = scratchAcc(s, dimP, 0);
  const DV = scratchAcc(s, dimP, 1);
  const CLO = scratchColLo(s, dimP);
  const CHI = scratchColHi(s, dimP);
  const QP = scratchQP(s, dimP, group);
  const DOP = scratchDOP(s, dimP, group);
  const KP = scratchKP(s, dimP, group);
  packTransposed(KT, Kt, nc, ncp, dim, kLd);
  packTransposed(VT, Vt, nc, ncp, dim, kLd);
  // Copies pay off at D > 64 (measured: backward -20% time at D 128, +2% at D 64).
  const pack = dimP > 64;
  if (pack) copyRows(KP, Kt, nc, rowBytes, kRowBytes);
  const Kb = pack ? KP : Kt;
  const kbLd = pack ? dimP : kLd;
  const qbLd = pack ? dimP : qLd;
  zero(DK, nc * dimP);
  zero(DV, nc * dimP);
  const sv = f32x4.splat(scale);
  const l2 = f32x4.splat(LOG2E);

  const x1 = at(job, J_KT_PIECES, kt + 1);
  for (let x = at(job, J_KT_PIECES, kt); x < x1; x++) {
    const piece = at(job, J_K_PIECES, x);
    const t = at(job, J_P_TILE, piece);
    const rowOff = at(job, J_P_ROW_OFF, piece);
    const q0 = at(job, J_QT_START, t);
    const nr = at(job, J_QT_ROWS, t);
    for (let g = 0; g < group; g++) {
      const h = h0 + g;
      let Qg = Q + <usize>q0 * qRowBytes + (<usize>(g * dimP) << 2);
      let DOg = DO + <usize>q0 * qRowBytes + (<usize>(g * dimP) << 2);
      if (pack) {
        copyRows(QP, Qg, nr, rowBytes, qRowBytes);
        copyRows(DOP, DOg, nr, rowBytes, qRowBytes);
        Qg = QP;
        DOg = DOP;
      }
      gemm(P, TK, Qg, qbLd, 1, KT, TK, nr, dim, ncp, false);
      gemm(DS, TK, DOg, qbLd, 1, VT, TK, nr, dim, ncp, false);

      // P = exp(z - lse) on visible cells, dS = P (dP - Δ) [· softcap slope] · scale, 0 elsewhere.
      for (let i = 0; i < nr; i++) {
        const pRow = P + (<usize>(i * TK) << 2);
        const dRow = DS + (<usize>(i * TK) << 2);
        const rowAt = <usize>((q0 + i) * hq + h) << 3;
        const lse = <f32>load<f64>(LSE + rowAt);
        const cLo = max(at(job, J_LO, rowOff + i), k0) - k0;
        const cHi = min(at(job, J_HI, rowOff + i), k1) - k0;
        store<i32>(CLO + (<usize>i << 2), 0);
        store<i32>(CHI + (<usize>i << 2), 0);
        if (cHi <= cLo || lse == -Infinity) {
          zero(pRow, ncp);
          zero(dRow, ncp);
          continue;
        }
        store<i32>(CLO + (<usize>i << 2), cLo);
        store<i32>(CHI + (<usize>i << 2), cHi);
        const lv = f32x4.splat(lse);
        const dv = f32x4.splat(<f32>load<f64>(DELTA + rowAt));
        const whole = cLo == 0 && cHi == ncp;
        for (let c = 0; c < ncp; c += 4) {
          const off = <usize>c << 2;
          const sc = v128.load(pRow + off);
          let p: v128;
          let ds: v128;
          if (softcap > 0) {
            const th = vtanh(f32x4.mul(sc, f32x4.splat(capInv)));
            p = vexp2(f32x4.mul(f32x4.sub(f32x4.mul(f32x4.splat(softcap), th), lv), l2));
            const slope = f32x4.mul(f32x4.sub(f32x4.splat(1), f32x4.mul(th, th)), sv);
            ds = f32x4.mul(f32x4.mul(p, f32x4.sub(v128.load(dRow + off), dv)), slope);
          } else {
            p = vexp2(f32x4.mul(f32x4.sub(f32x4.mul(sc, sv), lv), l2));
            ds = f32x4.mul(f32x4.mul(p, f32x4.sub(v128.load(dRow + off), dv)), sv);
          }
          if (!whole) {
            const m = colMask(c, cLo, cHi);
            p = v128.and(p, m);
            ds = v128.and(ds, m);
          }
          v128.store(pRow + off, p);
          v128.store(dRow + off, ds);
        }
      }

      // dV += Pᵀ dO, dK += dSᵀ Q (transposed operands via swapped strides), dQ += dS K.
      const DQg = dqBuf + (<usize>((g * tq + q0) * dimP) << 2);
      if (finite) {
        gemm(DV, dimP, P, 1, TK, DOg, qbLd, nc, nr, dimP, true);
        gemm(DK, dimP, DS, 1, TK, Qg, qbLd, nc, nr, dimP, true);
        gemm(DQg, dimP, DS, TK, 1, Kb, kbLd, nr, nc, dimP, true);
      } else {
        gemmVisible(false, DV, dimP, P, TK, 1, DOg, qbLd, nr, CLO, CHI, dimP);
        gemmVisible(false, DK, dimP, DS, TK, 1, Qg, qbLd, nr, CLO, CHI, dimP);
        gemmVisible(true, DQg, dimP, DS, TK, 1, Kb, kbLd, nr, CLO, CHI, dimP);
      }
    }
  }
  const dkOut = jp(job, J_DK) + <usize>k0 * kRowBytes + (<usize>(hk * dimP) << 2);
  const dvOut = jp(job, J_DV) + <usize>k0 * kRowBytes + (<usize>(hk * dimP) << 2);
  for (let j = 0; j < nc; j++) {
    memory.copy(dkOut + <usize>j * kRowBytes, DK + <usize>j * rowBytes, rowBytes);
    memory.copy(dvOut + <usize>j * kRowBytes, DV + <usize>j * rowBytes, rowBytes);
  }
}

/** dq rows of kv head J_HK = dQ buffer 0 + buffer 1 + ... in thread order, for this thread's share of the group's rows. */
function sumDq(job: usize, tid: i32, threads: i32): void {
  const tq = ji(job, J_TQ);
  const hq = ji(job, J_HQ);
  const group = ji(job, J_GROUP);
  const dimP = ji(job, J_DIMP);
  const h0 = ji(job, J_HK) * group;
  const rows = group * tq;
  const chunk = (rows + threads - 1) / threads;
  const first = min(rows, tid * chunk);
  const last = min(rows, first + chunk);
  const dq = jp(job, J_DQ);
  const stride = jp(job, J_DQ_STRIDE);
  const out = jp(job, J_DQ_OUT);
  const rowBytes = <usize>dimP << 2;
  for (let r = first; r < last; r++) {
    const g = r / tq;
    const t = r - g * tq;
    const dst = out + (<usize>((t * hq + h0 + g) * dimP) << 2);
    const src = dq + <usize>r * rowBytes;
    for (let d = 0; d < dimP; d += 4) {
      const off = <usize>d << 2;
      let acc = v128.load(src + off);
      for (let u = 1; u < threads; u++) acc = f32x4.add(acc, v128.load(src + <usize>u * stride + off));
      v128.store(dst + off, acc);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Entry

/** Floats between two threads' max logits: Hq rounded up to a 64-byte line (no false sharing). */
export function maxlStride(hq: i32): i32 {
  return (hq + 15) & ~15;
}

/** Thread `tid`'s share of the job at `job`. */
export function run(job: usize, tid: i32): void {
  const kind = ji(job, J_KIND);
  const threads = ji(job, J_THREADS);
  host = ji(job, J_HOST) != 0;
  TQ = ji(job, J_TILE_Q);
  TK = ji(job, J_TILE_K);
  const scratch = jp(job, J_SCRATCH) + <usize>tid * jp(job, J_SCRATCH_STRIDE);
  if (kind == 1) {
    const maxl = jp(job, J_MAXL) + (<usize>(tid * maxlStride(ji(job, J_HQ))) << 2);
    const n = ji(job, J_N_ITEMS);
    for (;;) {
      const i = atomic.add<i32>(job + (<usize>J_NEXT << 2), 1);
      if (i >= n) break;
      forwardItem(job, at(job, J_ITEMS, i), scratch, maxl);
    }
  } else if (kind == 2) {
    const dq = jp(job, J_DQ) + <usize>tid * jp(job, J_DQ_STRIDE);
    zero(dq, ji(job, J_GROUP) * ji(job, J_TQ) * ji(job, J_DIMP));
    const end = at(job, J_THREAD_OFF, tid + 1);
    for (let x = at(job, J_THREAD_OFF, tid); x < end; x++) backwardItem(job, at(job, J_ITEMS, x), scratch, dq);
  } else if (kind == 3) {
    sumDq(job, tid, threads);
  } else if (kind == 4) {
    checkFinite(job);
  }
}
