/**
 * Tile-level building blocks of the CPU kernel: loading a block of head-major rows into a
 * float64 scratch tile (plain or transposed), and the one small matrix product every attention
 * step is made of.
 *
 * Tiles are zero-padded (rows and columns to a multiple of 8, the head dim to a multiple of 4)
 * so the micro-kernel works in fixed 8x4 register blocks with no remainder loops; callers mask
 * the padding. The scratch is float64 so the hot loops never convert float32 <-> double (JS
 * computes in double anyway); the values loaded are the float32 inputs, unchanged.
 */

/** Rounds a row/column count up to the 8-row block of the micro-kernel. */
export function pad8(n: number): number {
  return (n + 7) & ~7;
}

/** Rounds the head dim up to the 4-wide inner block of the micro-kernel. */
export function pad4(n: number): number {
  return (n + 3) & ~3;
}

/**
 * dst[i * ld + d] = src[srcOff + i * dim + d] for i < rows, d < dim; zero elsewhere in the
 * rowsPad x ld block (so padding rows and columns read as 0).
 */
export function loadTile(dst: Float64Array, ld: number, src: Float32Array, srcOff: number, rows: number, rowsPad: number, dim: number): void {
  if (ld === dim) {
    const n = rows * dim;
    for (let i = 0; i < n; i++) dst[i] = src[srcOff + i];
  } else {
    for (let i = 0; i < rows; i++) {
      const s = srcOff + i * dim;
      const o = i * ld;
      for (let d = 0; d < dim; d++) dst[o + d] = src[s + d];
      for (let d = dim; d < ld; d++) dst[o + d] = 0;
    }
  }
  dst.fill(0, rows * ld, rowsPad * ld);
}

/**
 * The transpose of loadTile: dst[d * ld + i] = src[srcOff + i * dim + d] for i < rows, d < dim,
 * zero for rows <= i < rowsPad and for dim <= d < dimPad.
 */
export function loadTileTransposed(
  dst: Float64Array,
  ld: number,
  src: Float32Array,
  srcOff: number,
  rows: number,
  rowsPad: number,
  dim: number,
  dimPad: number,
): void {
  for (let d = 0; d < dimPad; d++) {
    const o = d * ld;
    if (d < dim) {
      for (let i = 0; i < rows; i++) dst[o + i] = src[srcOff + i * dim + d];
      for (let i = rows; i < rowsPad; i++) dst[o + i] = 0;
    } else {
      for (let i = 0; i < rowsPad; i++) dst[o + i] = 0;
    }
  }
}

/**
 * out[r * ldOut + d] += Σ_{c < inner} A(r, c) · B[c * ldB + d]   for r < rows, d < width,
 * with A(r, c) = A[r * aRow + c * aCol] (a transposed operand is just swapped strides).
 * rows must be a multiple of 8 and inner a multiple of 4.
 *
 * Eight rows by four inner indices per register block: 32 A values stay in registers while the
 * innermost loop streams over d with four loads of B feeding 32 multiply-adds. Of the shapes
 * measured (2x4 dot-product form, 2x4 / 4x4 / 4x8 / 8x8 / 12x4 / 16x4 of this form) it was the
 * fastest or tied, in V8 on x86-64.
 */
export function gemmAcc(
  out: Float64Array,
  ldOut: number,
  A: Float64Array,
  aRow: number,
  aCol: number,
  B: Float64Array,
  ldB: number,
  rows: number,
  inner: number,
  width: number,
): void {
  for (let r = 0; r < rows; r += 8) {
    const o0 = r * ldOut;
    const o1 = (r + 1) * ldOut;
    const o2 = (r + 2) * ldOut;
    const o3 = (r + 3) * ldOut;
    const o4 = (r + 4) * ldOut;
    const o5 = (r + 5) * ldOut;
    const o6 = (r + 6) * ldOut;
    const o7 = (r + 7) * ldOut;
    const a0 = r * aRow;
    const a1 = (r + 1) * aRow;
    const a2 = (r + 2) * aRow;
    const a3 = (r + 3) * aRow;
    const a4 = (r + 4) * aRow;
    const a5 = (r + 5) * aRow;
    const a6 = (r + 6) * aRow;
    const a7 = (r + 7) * aRow;
    for (let c = 0; c < inner; c += 4) {
      const ac0 = c * aCol;
      const ac1 = ac0 + aCol;
      const ac2 = ac1 + aCol;
      const ac3 = ac2 + aCol;
      const p00 = A[a0 + ac0]; const p01 = A[a0 + ac1]; const p02 = A[a0 + ac2]; const p03 = A[a0 + ac3];
      const p10 = A[a1 + ac0]; const p11 = A[a1 + ac1]; const p12 = A[a1 + ac2]; const p13 = A[a1 + ac3];
      const p20 = A[a2 + ac0]; const p21 = A[a2 + ac1]; const p22 = A[a2 + ac2]; const p23 = A[a2 + ac3];
      const p30 = A[a3 + ac0]; const p31 = A[a3 + ac1]; const p32 = A[a3 + ac2]; const p33 = A[a3 + ac3];
      const p40 = A[a4 + ac0]; const p41 = A[a4 + ac1]; const p42 = A[a4 + ac2]; const p43 = A[a4 + ac3];
      const p50 = A[a5 + ac0]; const p51 = A[a5 + ac1]; const p52 = A[a5 + ac2]; const p53 = A[a5 + ac3];
      const p60 = A[a6 + ac0]; const p61 = A[a6 + ac1]; const p62 = A[a6 + ac2]; const p63 = A[a6 + ac3];
      const p70 = A[a7 + ac0]; const p71 = A[a7 + ac1]; const p72 = A[a7 + ac2]; const p73 = A[a7 + ac3];
      const b0 = c * ldB;
      const b1 = b0 + ldB;
      const b2 = b1 + ldB;
      const b3 = b2 + ldB;
      for (let d = 0; d < width; d++) {
        const y0 = B[b0 + d];
        const y1 = B[b1 + d];
        const y2 = B[b2 + d];
        const y3 = B[b3 + d];
        out[o0 + d] += p00 * y0 + p01 * y1 + p02 * y2 + p03 * y3;
        out[o1 + d] += p10 * y0 + p11 * y1 + p12 * y2 + p13 * y3;
        out[o2 + d] += p20 * y0 + p21 * y1 + p22 * y2 + p23 * y3;
        out[o3 + d] += p30 * y0 + p31 * y1 + p32 * y2 + p33 * y3;
        out[o4 + d] += p40 * y0 + p41 * y1 + p42 * y2 + p43 * y3;
        out[o5 + d] += p50 * y0 + p51 * y1 + p52 * y2 + p53 * y3;
        out[o6 + d] += p60 * y0 + p61 * y1 + p62 * y2 + p63 * y3;
        out[o7 + d] += p70 * y0 + p71 * y1 + p72 * y2 + p73 * y3;
      }
    }
  }
}

/**
 * The tile product restricted to visible cells, for inputs that hold NaN or Inf (a masked cell
 * must contribute nothing, where the dense product would add 0·NaN = NaN). Cell (i, c) of A,
 * read at A[i * aRow + c * aCol], is visible iff colLo[i] <= c < colHi[i], for i < rows.
 *   byRow:  out[i * ldOut + d] += Σ_{visible c} A(i, c) · B[c * ldB + d]   (P·V, dS·K)
 *   !byRow: out[c * ldOut + d] += Σ_{visible i} A(i, c) · B[i * ldB + d]   (Pᵀ·dO, dSᵀ·Q)
 * for d < width.
 */
export function gemmVisible(
  byRow: boolean,
  out: Float64Array,
  ldOut: number,
  A: Float64Array,
  aRow: number,
  aCol: number,
  B: Float64Array,
  ldB: number,
  rows: number,
  colLo: Int32Array,
  colHi: Int32Array,
  width: number,
): void {
  for (let i = 0; i < rows; i++) {
    for (let c = colLo[i]; c < colHi[i]; c++) {
      const a = A[i * aRow + c * aCol];
      const o = (byRow ? i : c) * ldOut;
      const b = (byRow ? c : i) * ldB;
      for (let d = 0; d < width; d++) out[o + d] += a * B[b + d];
    }
  }
}
