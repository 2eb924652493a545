/**
 * The WebAssembly SIMD kernel of the CPU backend (AssemblyScript, compiled by `npm run build`).
 * It is the float32 form of the TypeScript engine's loops (../../forward.ts, ../../backward.ts):
 * the same work list, the same items, the same NaN rules, with the tile products done by a
 * register-blocked micro-kernel (4 rows x 8 columns of float32 accumulators in 128-bit
 * registers) and the softmax by a vector exp. The fused multiply-add is the relaxed-SIMD one
 * where the build enables it (ASC_FEATURE_RELAXED_SIMD), mul + add otherwise; the loader picks
 * the build the runtime validates.
 *
 * It owns no memory: the host lays out every buffer in the (imported, possibly shared) memory,
 * writes a job descriptor and calls run(job, tid) on every thread. Forward items are taken
 * dynamically through an atomic counter (each q tile owns its rows, so the result does not depend
 * on who ran it); backward items come as fixed per-thread lists (each thread adds dQ into its own
 * buffer, so a fixed assignment keeps the sums in a fixed order), and a last job sums the dQ
 * buffers in thread order.
 *
 * Layouts (all float32 rows padded to DIMP = D rounded up to 4, padding zero): q, dout, out, dq
 * [G, Tq, DIMP]; k, v, dk, dv [Tk, DIMP]; lse, delta, and the forward's row max and row sum
 * float64 [G, Tq]; max logits float32 [threads, G].
 */

// Job descriptor: 32-bit words. The host (../engine.ts, JOB) writes the same indices.
const J_KIND = 0; // 1 forward, 2 backward, 3 sum the dQ buffers
const J_NEXT = 2; // forward: next item (atomic)
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
const J_REDUCE_N = 41;
const J_ROWSUM = 42; // forward: float64 [G, Tq] softmax sums (J_LSE then holds the row maxima)

const TILE = 64; // rows of a q tile and keys of a k tile (work.ts)

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

/**
 * e^x per lane: x = n·ln2 + f with |f| <= ln2/2 (Cody-Waite), e^f by a degree-7 polynomial
 * (Cephes' expf, ~1 ulp), 2^n built in the exponent bits. e^-inf = 0 (below -87.5: 0), above 88:
 * +inf (the kernel only takes e^x for x <= 0 but the tanh of softcap), NaN stays NaN.
 *
 * Written for what V8 emits on x86-64: pmin/pmax are one instruction each (min/max are about
 * eight, for their NaN and -0 rules; with x as the first operand pmin/pmax keep a NaN x), and n
 * comes out of the float addition of 1.5·2^23, which rounds t to an integer in the low mantissa
 * bits (no roundps, no saturating conversion sequence).
 */
@inline function vexp(x: v128): v128 {
  const xc = f32x4.pmin(f32x4.pmax(x, f32x4.splat(-87.5)), f32x4.splat(88.0));
  const magic = f32x4.splat(12582912.0); // 1.5·2^23
  const r = f32x4.add(f32x4.mul(xc, f32x4.splat(1.44269504088896341)), magic);
  const n = f32x4.sub(r, magic);
  let f = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(0.693359375)));
  f = f32x4.sub(f, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let y = f32x4.splat(1.9875691500e-4);
  y = fma(y, f, f32x4.splat(1.3981999507e-3));
  y = fma(y, f, f32x4.splat(8.3334519073e-3));
  y = fma(y, f, f32x4.splat(4.1665795894e-2));
  y = fma(y, f, f32x4.splat(1.6666665459e-1));
  y = fma(y, f, f32x4.splat(5.0000001201e-1));
  y = f32x4.add(fma(f32x4.mul(y, f), f, f), f32x4.splat(1.0));
  const scale = i32x4.shl(i32x4.add(i32x4.sub(r, magic), i32x4.splat(127)), 23);
  let e = f32x4.mul(y, scale);
  e = v128.andnot(e, f32x4.lt(x, f32x4.splat(-87.5)));
  e = v128.bitselect(f32x4.splat(Infinity), e, f32x4.gt(x, f32x4.splat(88.0)));
  return e;
}

/** tanh per lane as (1 - e)/(1 + e)·sign, e = e^{-2|y|}: absolute error ~1e-7, NaN stays NaN. */
@inline function vtanh(y: v128): v128 {
  const e = vexp(f32x4.mul(f32x4.abs(y), f32x4.splat(-2.0)));
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
 * C[M, N] (+)= A·B with A(r, k) at A + 4(r·aRow + k·aCol) (a transposed operand is swapped
 * strides) and row k of B at B + 4k·ldb; N must be a multiple of 4. Blocks of 4 rows x 8
 * columns keep 8 accumulators, 2 B vectors and a broadcast A value in registers through the
 * whole inner loop (11 of the 16 vector registers V8 uses on x64).
 */
function gemm(C: usize, ldc: i32, A: usize, aRow: i32, aCol: i32, B: usize, ldb: i32, M: i32, K: i32, N: i32, acc: bool): void {
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

/** dst[d·TILE + j] = src[j·dimP + d] for j < nc, d < dim; 0 for nc <= j < ncp. */
function packTransposed(dst: usize, src: usize, nc: i32, ncp: i32, dim: i32, dimP: i32): void {
  for (let d = 0; d < dim; d++) {
    const o = dst + (<usize>(d * TILE) << 2);
    for (let j = 0; j < nc; j++) store<f32>(o + (<usize>j << 2), load<f32>(src + (<usize>(j * dimP + d) << 2)));
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
  return s + (<usize>(dimP * TILE) << 2);
}
function scratchS(s: usize, dimP: i32): usize {
  return s + (<usize>(2 * dimP * TILE) << 2);
}
function scratchS2(s: usize, dimP: i32): usize {
  return scratchS(s, dimP) + (<usize>(TILE * TILE) << 2);
}
function scratchColLo(s: usize, dimP: i32): usize {
  return scratchS2(s, dimP) + (<usize>(TILE * TILE) << 2);
}
function scratchColHi(s: usize, dimP: i32): usize {
  return scratchColLo(s, dimP) + (<usize>TILE << 2);
}
/** Output (forward, per head) or dK then dV (backward) accumulators: TILE rows of dimP each. */
function scratchAcc(s: usize, dimP: i32, g: i32): usize {
  return scratchColHi(s, dimP) + (<usize>TILE << 2) + (<usize>(g * TILE * dimP) << 2);
}
/** Running row max (float32) of head g, after the group's accumulators. */
function scratchM(s: usize, dimP: i32, group: i32, g: i32): usize {
  return scratchAcc(s, dimP, max(group, 2)) + (<usize>(g * TILE) << 2);
}
/** Running row sum (float64) of head g. */
function scratchL(s: usize, dimP: i32, group: i32, g: i32): usize {
  return scratchM(s, dimP, group, group) + (<usize>(g * TILE) << 3);
}

/** Bytes of one thread's scratch for rows of dimP floats and `group` query heads per kv head. */
export function scratchBytes(dimP: i32, group: i32): i32 {
  return <i32>scratchL(0, dimP, group, group);
}

// ---------------------------------------------------------------------------------------------
// Forward: one q tile, every query head of the group (one packed Kᵀ tile serves them all)

function forwardItem(job: usize, t: i32, s: usize, maxl: usize): void {
  const tq = ji(job, J_TQ);
  const group = ji(job, J_GROUP);
  const dim = ji(job, J_DIM);
  const dimP = ji(job, J_DIMP);
  const scale = jf(job, J_SCALE);
  const softcap = jf(job, J_SOFTCAP);
  const capInv = softcap > 0 ? scale / softcap : <f32>0;
  const finite = ji(job, J_FINITE) != 0;
  const Q = jp(job, J_Q);
  const K = jp(job, J_K);
  const V = jp(job, J_V);
  const q0 = at(job, J_QT_START, t);
  const nr = at(job, J_QT_ROWS, t);
  const p0 = at(job, J_QT_PIECES, t);
  const p1 = at(job, J_QT_PIECES, t + 1);
  const KT = scratchKT(s);
  const S = scratchS(s, dimP);
  const CLO = scratchColLo(s, dimP);
  const CHI = scratchColHi(s, dimP);
  const rowBytes = <usize>dimP << 2;

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
    for (let k0 = spanLo; k0 < spanHi; k0 += TILE) {
      const nc = min(TILE, spanHi - k0);
      const ncp = (nc + 3) & ~3;
      const k1 = k0 + nc;
      const Vt = V + <usize>k0 * rowBytes;
      packTransposed(KT, K + <usize>k0 * rowBytes, nc, ncp, dim, dimP);
      for (let g = 0; g < group; g++) {
        const O = scratchAcc(s, dimP, g);
        const Mx = scratchM(s, dimP, group, g);
        const L = scratchL(s, dimP, group, g);
        gemm(S, TILE, Q + <usize>(g * tq + q0) * rowBytes, dimP, 1, KT, TILE, nr, dim, ncp, false);
        let headMax = load<f32>(maxl + (<usize>g << 2));

        // Online softmax, row by row; S becomes unnormalised probabilities in place.
        for (let i = 0; i < nr; i++) {
          const row = S + (<usize>(i * TILE) << 2);
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
            const sv = v128.load(row + (<usize>c << 2));
            let z = softcap > 0 ? f32x4.mul(f32x4.splat(softcap), vtanh(f32x4.mul(sv, f32x4.splat(capInv)))) : f32x4.mul(sv, f32x4.splat(scale));
            if (!whole) z = v128.bitselect(z, f32x4.splat(-Infinity), colMask(c, cLo, cHi));
            v128.store(row + (<usize>c << 2), z);
            vmx = f32x4.pmax(vmx, z);
            vnan = v128.or(vnan, f32x4.ne(z, z));
          }
          const mx = v128.any_true(vnan) ? <f32>NaN : hmax(vmx);
          headMax = max<f32>(headMax, mx);
          const mOld = load<f32>(Mx + (<usize>i << 2));
          const mNew = max<f32>(mx, mOld);
          if (mNew == -Infinity) {
            zero(row, ncp);
            continue;
          }
          store<i32>(CLO + (<usize>i << 2), cLo);
          store<i32>(CHI + (<usize>i << 2), cHi);
          const mv = f32x4.splat(mNew);
          let vsum = f32x4.splat(0);
          for (let c = 0; c < ncp; c += 4) {
            const e = vexp(f32x4.sub(v128.load(row + (<usize>c << 2)), mv));
            v128.store(row + (<usize>c << 2), e);
            vsum = f32x4.add(vsum, e);
          }
          const sum = <f64>hsum(vsum);
          const lp = L + (<usize>i << 3);
          if (!(mNew == mOld)) {
            const alpha = f32x4.extract_lane(vexp(f32x4.splat(mOld - mNew)), 0); // 0 while the row is empty; NaN once NaN arrived
            const av = f32x4.splat(alpha);
            const o = O + <usize>i * rowBytes;
            for (let d = 0; d < dimP; d += 4) v128.store(o + (<usize>d << 2), f32x4.mul(v128.load(o + (<usize>d << 2)), av));
            store<f64>(lp, load<f64>(lp) * <f64>alpha + sum);
            store<f32>(Mx + (<usize>i << 2), mNew);
          } else {
            store<f64>(lp, load<f64>(lp) + sum);
          }
        }
        store<f32>(maxl + (<usize>g << 2), headMax);
        if (finite) gemm(O, dimP, S, TILE, 1, Vt, dimP, nr, nc, dimP, true);
        else gemmVisible(true, O, dimP, S, TILE, 1, Vt, dimP, nr, CLO, CHI, dimP);
      }
    }
  }

  // The host finishes lse = max + log(sum) (-inf where sum = 0): no log tables in here.
  for (let g = 0; g < group; g++) {
    const rowBase = g * tq + q0;
    const O = scratchAcc(s, dimP, g);
    const Mx = scratchM(s, dimP, group, g);
    const L = scratchL(s, dimP, group, g);
    const OUT = jp(job, J_OUT) + <usize>rowBase * rowBytes;
    const ROWMAX = jp(job, J_LSE) + (<usize>rowBase << 3);
    const ROWSUM = jp(job, J_ROWSUM) + (<usize>rowBase << 3);
    for (let i = 0; i < nr; i++) {
      const l = load<f64>(L + (<usize>i << 3));
      const dst = OUT + <usize>i * rowBytes;
      store<f64>(ROWMAX + (<usize>i << 3), <f64>load<f32>(Mx + (<usize>i << 2)));
      store<f64>(ROWSUM + (<usize>i << 3), l);
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
// Backward: one k tile, every piece that sees it, every query head of the group

function backwardItem(job: usize, kt: i32, s: usize, dqBuf: usize): void {
  const tq = ji(job, J_TQ);
  const group = ji(job, J_GROUP);
  const dim = ji(job, J_DIM);
  const dimP = ji(job, J_DIMP);
  const scale = jf(job, J_SCALE);
  const softcap = jf(job, J_SOFTCAP);
  const capInv = softcap > 0 ? scale / softcap : <f32>0;
  const finite = ji(job, J_FINITE) != 0;
  const Q = jp(job, J_Q);
  const DO = jp(job, J_DOUT);
  const LSE = jp(job, J_LSE);
  const DELTA = jp(job, J_DELTA);
  const rowBytes = <usize>dimP << 2;
  const k0 = at(job, J_KT_START, kt);
  const nc = at(job, J_KT_COLS, kt);
  const ncp = (nc + 3) & ~3;
  const k1 = k0 + nc;
  const Kt = jp(job, J_K) + <usize>k0 * rowBytes;
  const Vt = jp(job, J_V) + <usize>k0 * rowBytes;
  const KT = scratchKT(s);
  const VT = scratchVT(s, dimP);
  const P = scratchS(s, dimP);
  const DS = scratchS2(s, dimP);
  const DK = scratchAcc(s, dimP, 0);
  const DV = scratchAcc(s, dimP, 1);
  const CLO = scratchColLo(s, dimP);
  const CHI = scratchColHi(s, dimP);
  packTransposed(KT, Kt, nc, ncp, dim, dimP);
  packTransposed(VT, Vt, nc, ncp, dim, dimP);
  zero(DK, nc * dimP);
  zero(DV, nc * dimP);
  const sv = f32x4.splat(scale);

  const x1 = at(job, J_KT_PIECES, kt + 1);
  for (let x = at(job, J_KT_PIECES, kt); x < x1; x++) {
    const piece = at(job, J_K_PIECES, x);
    const t = at(job, J_P_TILE, piece);
    const rowOff = at(job, J_P_ROW_OFF, piece);
    const q0 = at(job, J_QT_START, t);
    const nr = at(job, J_QT_ROWS, t);
    for (let g = 0; g < group; g++) {
      const rowBase = g * tq + q0;
      const Qg = Q + <usize>rowBase * rowBytes;
      const DOg = DO + <usize>rowBase * rowBytes;
      gemm(P, TILE, Qg, dimP, 1, KT, TILE, nr, dim, ncp, false);
      gemm(DS, TILE, DOg, dimP, 1, VT, TILE, nr, dim, ncp, false);

      // P = exp(z - lse) on visible cells, dS = P (dP - Δ) [· softcap slope] · scale, 0 elsewhere.
      for (let i = 0; i < nr; i++) {
        const pRow = P + (<usize>(i * TILE) << 2);
        const dRow = DS + (<usize>(i * TILE) << 2);
        const lse = <f32>load<f64>(LSE + (<usize>(rowBase + i) << 3));
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
        const dv = f32x4.splat(<f32>load<f64>(DELTA + (<usize>(rowBase + i) << 3)));
        const whole = cLo == 0 && cHi == ncp;
        for (let c = 0; c < ncp; c += 4) {
          const off = <usize>c << 2;
          const sc = v128.load(pRow + off);
          let p: v128;
          let ds: v128;
          if (softcap > 0) {
            const th = vtanh(f32x4.mul(sc, f32x4.splat(capInv)));
            p = vexp(f32x4.sub(f32x4.mul(f32x4.splat(softcap), th), lv));
            const slope = f32x4.mul(f32x4.sub(f32x4.splat(1), f32x4.mul(th, th)), sv);
            ds = f32x4.mul(f32x4.mul(p, f32x4.sub(v128.load(dRow + off), dv)), slope);
          } else {
            p = vexp(f32x4.sub(f32x4.mul(sc, sv), lv));
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
      const DQg = dqBuf + <usize>rowBase * rowBytes;
      if (finite) {
        gemm(DV, dimP, P, 1, TILE, DOg, dimP, nc, nr, dimP, true);
        gemm(DK, dimP, DS, 1, TILE, Qg, dimP, nc, nr, dimP, true);
        gemm(DQg, dimP, DS, TILE, 1, Kt, dimP, nr, nc, dimP, true);
      } else {
        gemmVisible(false, DV, dimP, P, TILE, 1, DOg, dimP, nr, CLO, CHI, dimP);
        gemmVisible(false, DK, dimP, DS, TILE, 1, Qg, dimP, nr, CLO, CHI, dimP);
        gemmVisible(true, DQg, dimP, DS, TILE, 1, Kt, dimP, nr, CLO, CHI, dimP);
      }
    }
  }
  memory.copy(jp(job, J_DK) + <usize>k0 * rowBytes, DK, <usize>nc * rowBytes);
  memory.copy(jp(job, J_DV) + <usize>k0 * rowBytes, DV, <usize>nc * rowBytes);
}

// ---------------------------------------------------------------------------------------------
// Entry

/** Thread `tid`'s share of the job at `job`. */
export function run(job: usize, tid: i32): void {
  const kind = ji(job, J_KIND);
  const threads = ji(job, J_THREADS);
  const scratch = jp(job, J_SCRATCH) + <usize>tid * jp(job, J_SCRATCH_STRIDE);
  if (kind == 1) {
    const maxl = jp(job, J_MAXL) + (<usize>(tid * ji(job, J_GROUP)) << 2);
    const n = ji(job, J_N_ITEMS);
    for (;;) {
      const i = atomic.add<i32>(job + (<usize>J_NEXT << 2), 1);
      if (i >= n) break;
      forwardItem(job, at(job, J_ITEMS, i), scratch, maxl);
    }
  } else if (kind == 2) {
    const dq = jp(job, J_DQ) + <usize>tid * jp(job, J_DQ_STRIDE);
    const end = at(job, J_THREAD_OFF, tid + 1);
    for (let x = at(job, J_THREAD_OFF, tid); x < end; x++) backwardItem(job, at(job, J_ITEMS, x), scratch, dq);
  } else if (kind == 3) {
    // dQ = buffer 0 + buffer 1 + ... in thread order, this thread's share of the floats.
    const n = ji(job, J_REDUCE_N);
    const chunk = ((n + threads - 1) / threads + 3) & ~3;
    const first = min(n, tid * chunk);
    const last = min(n, first + chunk);
    const dq = jp(job, J_DQ);
    const stride = jp(job, J_DQ_STRIDE);
    for (let u = 1; u < threads; u++) {
      const src = dq + <usize>u * stride;
      let f = first;
      for (; f + 4 <= last; f += 4) {
        const off = <usize>f << 2;
        v128.store(dq + off, f32x4.add(v128.load(dq + off), v128.load(src + off)));
      }
      for (; f < last; f++) {
        const off = <usize>f << 2;
        store<f32>(dq + off, load<f32>(dq + off) + load<f32>(src + off));
      }
    }
  }
}
