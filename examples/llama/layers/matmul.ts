/**
 * The CPU matrix product every linear layer uses (the CPU side of the one GEMM wrapper; the GPU
 * side is cuBLASLt, gpu/cublaslt.ts). Row-major, PyTorch's Linear layout in mind: y = x·Wᵀ is
 * matmul(y, x, W, transB), dx = dy·W is matmul(dx, dy, W), dW += dyᵀ·x is matmul(dW, dy, x,
 * transA, beta 1). Each output row is summed in float64 and rounded once.
 */
export type FloatArray = Float32Array | Float64Array;

export interface MatmulShape {
  /** Rows of C. */
  m: number;
  /** Columns of C. */
  n: number;
  /** The contracted dimension. */
  k: number;
  /** A is stored [k, m] and used transposed (else stored [m, k]). */
  transA?: boolean;
  /** B is stored [n, k] and used transposed (else stored [k, n]). */
  transB?: boolean;
  /** 1: add into C; 0: overwrite it. */
  beta?: 0 | 1;
}

/**
 * C[m, n] = op(A)·op(B) + beta·C. Blocked by four (four rows of C share each row of B; four
 * columns share each row of A), but every element is still its own float64 sum over p in
 * ascending order, rounded once: the same bits as computing one element at a time.
 */
export function matmul(c: FloatArray, a: FloatArray, b: FloatArray, s: MatmulShape): void {
  const { m, n, k } = s;
  const transA = s.transA ?? false;
  const transB = s.transB ?? false;
  const at = (i: number, p: number): number => (transA ? a[p * m + i] : a[i * k + p]);
  const accs = [new Float64Array(n), new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  for (let i0 = 0; i0 < m; i0 += 4) {
    const rows = Math.min(4, m - i0);
    for (let r = 0; r < rows; r++) {
      if (s.beta === 1) for (let j = 0; j < n; j++) accs[r][j] = c[(i0 + r) * n + j];
      else accs[r].fill(0);
    }
    if (!transB) {
      const [acc0, acc1, acc2, acc3] = accs;
      for (let p = 0; p < k; p++) {
        const row = p * n;
        if (rows === 4) {
          const x0 = at(i0, p);
          const x1 = at(i0 + 1, p);
          const x2 = at(i0 + 2, p);
          const x3 = at(i0 + 3, p);
          if (x0 !== 0 && x1 !== 0 && x2 !== 0 && x3 !== 0) {
            for (let j = 0; j < n; j++) {
              const y = b[row + j];
              acc0[j] += x0 * y;
              acc1[j] += x1 * y;
              acc2[j] += x2 * y;
              acc3[j] += x3 * y;
            }
            continue;
          }
        }
        // A zero of A adds nothing (not even 0·Inf): its row is skipped, as one row at a time.
        for (let r = 0; r < rows; r++) {
          const x = at(i0 + r, p);
          if (x === 0) continue;
          const acc = accs[r];
          for (let j = 0; j < n; j++) acc[j] += x * b[row + j];
        }
      }
    } else {
      for (let r = 0; r < rows; r++) {
        const i = i0 + r;
        const acc = accs[r];
        let j = 0;
        for (; j + 4 <= n; j += 4) {
          const r0 = j * k;
          const r1 = r0 + k;
          const r2 = r1 + k;
          const r3 = r2 + k;
          let s0 = 0;
          let s1 = 0;
          let s2 = 0;
          let s3 = 0;
          for (let p = 0; p < k; p++) {
            const x = at(i, p);
            s0 += x * b[r0 + p];
            s1 += x * b[r1 + p];
            s2 += x * b[r2 + p];
            s3 += x * b[r3 + p];
          }
          acc[j] += s0;
          acc[j + 1] += s1;
          acc[j + 2] += s2;
          acc[j + 3] += s3;
        }
        for (; j < n; j++) {
          let sum = 0;
          for (let p = 0, row = j * k; p < k; p++) sum += at(i, p) * b[row + p];
          acc[j] += sum;
        }
      }
    }
    for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) c[(i0 + r) * n + j] = accs[r][j];
  }
}
